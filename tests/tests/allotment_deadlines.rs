//! Book-building allotments against real TigerBeetle and Postgres: one payment deadline,
//! fixed by the run, for every allottee, who is told; a rerun after that deadline places
//! nothing late and counts a lapsed hold as lapsed, not placed.

use std::time::Duration;

use allot_api::identity::Role;
use allot_tests::app::TestApp;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// An app whose clock the test moves: the subscription window closes when the test says,
/// not when enough real time has gone by for every subscription to be in.
async fn spawn() -> TestApp {
    TestApp::spawn().await
}

async fn send(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = app.client.request(method, app.url(path)).bearer_auth(token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let res = req.send().await.unwrap();
    (res.status().as_u16(), res.json().await.unwrap_or(Value::Null))
}

fn time_of(value: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(value.as_str().unwrap(), &Rfc3339).unwrap()
}

#[allot_tests::test]
async fn allotments_share_the_runs_deadline_are_told_and_a_late_rerun_places_nothing() {
    let app = spawn().await;
    let closes = OffsetDateTime::now_utc() + time::Duration::hours(1);
    app.create_offering(json!({
        "id": "book", "kind": "bond", "name": {"en": "Test bond"},
        "zones": [{"id": "main", "supply": 10_000, "price_satang": 100}],
        "min_quantity": 500, "max_per_person": 10_000, "lot": 500, "hold_seconds": 4,
        "deposit_percent": 10, "allocation": "book_building",
        "subscription_closes_at": closes.format(&Rfc3339).unwrap(),
    }))
    .await;
    let people: Vec<(i64, String)> = (0..3).map(|_| app.citizen()).collect();
    for (_, token) in &people {
        let body = Some(json!({"quantity": 2_000}));
        let (status, s) =
            send(&app, reqwest::Method::POST, "/v1/offerings/book/subscriptions", token, body)
                .await;
        assert_eq!(status, 201, "{s}");
    }
    // The window closes: the app's clock moves past it (the holds' deadline is real time).
    app.clock().advance(Duration::from_secs(3_601));
    let admin = app.token(1, Role::Admin);
    let (status, run) =
        send(&app, reqwest::Method::POST, "/v1/admin/offerings/book/allocate", &admin, None).await;
    assert_eq!(status, 200, "{run}");
    let deadline = time_of(&run["result"]["payment_deadline"]);

    // Every allottee's hold carries the run's deadline, and every allottee is told.
    let mut holds = Vec::new();
    for (user, token) in &people {
        let (_, view) =
            send(&app, reqwest::Method::GET, "/v1/offerings/book/allocation", token, None).await;
        let id = view["mine"]["reservation_id"].as_str().unwrap().to_owned();
        let (_, r) =
            send(&app, reqwest::Method::GET, &format!("/v1/reservations/{id}"), token, None).await;
        assert_eq!(time_of(&r["expires_at"]), deadline, "{r}");
        holds.push((*user, id));
    }
    let db = app.db().await;
    app.eventually(Duration::from_secs(10), || {
        let (db, holds) = (&db, &holds);
        async move {
            let keys: Vec<String> =
                holds.iter().map(|(_, id)| format!("reservation_made.{id}")).collect();
            let told: i64 = db
                .query_one("SELECT count(*) FROM outbox WHERE send_key = ANY($1)", &[&keys])
                .await
                .unwrap()
                .get(0);
            told == 3
        }
    })
    .await;

    // A crash left two allotments unmarked: one whose hold stood (and lapses unpaid), and
    // one whose hold was never placed. The run is repeated after the deadline.
    let (lapsed_user, _) = holds[0];
    db.execute("UPDATE subscriptions SET hold_placed = FALSE WHERE user_id = $1", &[&lapsed_user])
        .await
        .unwrap();
    let (late_user, _) = app.citizen();
    db.execute(
        "INSERT INTO subscriptions (offering_id, user_id, pseudonym, requested, allotted)
         VALUES ('book', $1, 'late-pseudonym', 500, 500)",
        &[&late_user],
    )
    .await
    .unwrap();
    tokio::time::sleep(
        (deadline - OffsetDateTime::now_utc()).unsigned_abs() + Duration::from_secs(1),
    )
    .await;
    let (status, rerun) =
        send(&app, reqwest::Method::POST, "/v1/admin/offerings/book/allocate", &admin, None).await;
    assert_eq!(status, 200, "{rerun}");
    assert_eq!(time_of(&rerun["result"]["payment_deadline"]), deadline, "fixed once, at the run");
    assert_eq!(
        (rerun["result"]["holds_pending"].as_u64(), rerun["result"]["holds_lapsed"].as_u64()),
        (Some(0), Some(2)),
        "{rerun}"
    );
    let offering = app.state.catalog.get("book").unwrap();
    let late_hold = allot_api::fairness::book::allotment_hold(&offering, late_user as u64);
    assert!(
        app.state.ledger.hold_info(late_hold).await.unwrap().is_none(),
        "no hold placed after the deadline"
    );
    let (_, view) =
        send(&app, reqwest::Method::GET, "/v1/offerings/book/allocation", &people[0].1, None).await;
    assert!(view["mine"]["reservation_id"].is_null(), "{view}");
}
