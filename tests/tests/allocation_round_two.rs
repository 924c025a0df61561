//! The second allocation round against real TigerBeetle and Postgres: allottees who do not
//! pay by round one's deadline give their units back, and round two allots them to the
//! unfilled demand of those who paid, by the same rule with a seed derived under
//! `allocation/round-2`; refused before the deadline; recomputable from its export.

use std::time::Duration;

use allot_api::fairness::book::{allotment_hold, round_two_hold, verify_export};
use allot_api::identity::Role;
use allot_ledger::{ConfirmOutcome, HoldState, Payment};
use allot_tests::app::TestApp;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// An app whose clock the test moves: the subscription window closes when the test says,
/// not when enough real time has gone by for every subscription to be in.
async fn spawn() -> TestApp {
    TestApp::spawn().await
}

async fn send(app: &TestApp, method: reqwest::Method, path: &str, token: &str) -> (u16, String) {
    let res = app.client.request(method, app.url(path)).bearer_auth(token).send().await.unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

async fn sleep_until(at: OffsetDateTime, extra: Duration) {
    tokio::time::sleep((at - OffsetDateTime::now_utc()).unsigned_abs() + extra).await;
}

/// Per pseudonym: (requested, allotted) from an export's lines.
fn lines(export: &str) -> Vec<(String, u64, u64)> {
    export
        .lines()
        .skip(1)
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let n = |k: &str| v[k].as_u64().unwrap();
            (v["pseudonym"].as_str().unwrap().to_owned(), n("requested"), n("allotted"))
        })
        .collect()
}

#[allot_tests::test]
async fn unpaid_allotments_go_to_unfilled_demand_in_a_recomputable_second_round() {
    let app = spawn().await;
    let closes = OffsetDateTime::now_utc() + time::Duration::hours(1);
    app.create_offering(json!({
        "id": "book", "kind": "bond", "name": {"en": "Test bond"},
        "zones": [{"id": "main", "supply": 9_500, "price_satang": 100}],
        "min_quantity": 500, "max_per_person": 10_000, "lot": 500, "hold_seconds": 4,
        "deposit_percent": 10, "allocation": "book_building",
        "subscription_closes_at": closes.format(&Rfc3339).unwrap(),
    }))
    .await;
    let people: Vec<(i64, String)> = (0..3).map(|_| app.citizen()).collect();
    for (_, token) in &people {
        let res = app
            .client
            .post(app.url("/v1/offerings/book/subscriptions"))
            .bearer_auth(token)
            .json(&json!({"quantity": 5_000}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 201);
    }
    // The window closes: the app's clock moves past it (the holds' deadline is real time).
    app.clock().advance(Duration::from_secs(3_601));
    let admin = app.token(1, Role::Admin);
    let post = reqwest::Method::POST;
    let (status, run) = send(&app, post.clone(), "/v1/admin/offerings/book/allocate", &admin).await;
    assert_eq!(status, 200, "{run}");
    let run: Value = serde_json::from_str(&run).unwrap();
    let deadline =
        OffsetDateTime::parse(run["result"]["payment_deadline"].as_str().unwrap(), &Rfc3339)
            .unwrap();

    // Round two is refused while round one's allottees may still pay.
    let round_two = "/v1/admin/offerings/book/allocate/round-2";
    let (status, early) = send(&app, post.clone(), round_two, &admin).await;
    assert_eq!(status, 409, "{early}");
    assert!(early.contains("deposit_deadline_not_passed"), "{early}");

    // The first two allottees pay; the third does not.
    let offering = app.state.catalog.get("book").unwrap();
    let mut allotted = Vec::new();
    for (i, (user, _)) in people.iter().enumerate() {
        let id = allotment_hold(&offering, *user as u64);
        let info = app.state.ledger.hold_info(id).await.unwrap().expect("allotment held");
        allotted.push(info.quantity as u64);
        if i < 2 {
            let payment = Payment {
                id: 1_000 + i as u128,
                gateway: allot_api::catalog::GATEWAYS[0],
                amount_satang: info.quantity * 10,
            };
            let paid = app.state.ledger.confirm(&offering.spec, id, &payment).await.unwrap();
            assert_eq!(paid, ConfirmOutcome::Confirmed { replayed: false });
        }
    }
    assert_eq!(allotted.iter().sum::<u64>(), 9_500);

    sleep_until(deadline, Duration::from_secs(1)).await;
    let (status, view) = send(&app, post.clone(), round_two, &admin).await;
    assert_eq!(status, 200, "{view}");
    let view: Value = serde_json::from_str(&view).unwrap();
    assert_eq!(view["supply"].as_u64(), Some(allotted[2]), "{view}");
    assert_eq!(view["applicants"].as_u64(), Some(2), "{view}");
    // The unfilled demand (5,000 - allotted, twice) exceeds the lapsed units: all are allotted.
    assert_eq!(view["allotted_total"].as_u64(), Some(allotted[2]), "{view}");
    assert_eq!(view["context"], "allocation/round-2");

    // Published like round one, and anyone recomputes it from the export alone.
    let get = reqwest::Method::GET;
    let (status, export) =
        send(&app, get.clone(), "/v1/offerings/book/allocation/round-2/export", &admin).await;
    assert_eq!(status, 200, "{export}");
    verify_export(&export).expect("round two recomputes from its export");
    let got = lines(&export);
    assert_eq!(got.len(), 2, "the non-payer gave up their allotment: {export}");
    let demand: Vec<u64> = allotted[..2].iter().map(|a| 5_000 - a).collect();
    let mut demand_sorted = demand.clone();
    demand_sorted.sort();
    let mut got_demand: Vec<u64> = got.iter().map(|l| l.1).collect();
    got_demand.sort();
    assert_eq!(got_demand, demand_sorted);
    // A claim the rule does not give is caught.
    let forged = export.replacen(
        &format!("\"allotted\":{}", got[0].2),
        &format!("\"allotted\":{}", got[0].2 + 500),
        1,
    );
    assert!(verify_export(&forged).is_err(), "a forged allotment must not verify");

    // Each round-two allotment is a ledger hold with round two's one deadline.
    let round_two_deadline =
        OffsetDateTime::parse(view["payment_deadline"].as_str().unwrap(), &Rfc3339).unwrap();
    let mut held = 0;
    for (user, _) in &people[..2] {
        let id = round_two_hold(&offering, *user as u64);
        if let Some(info) = app.state.ledger.hold_info(id).await.unwrap() {
            assert_eq!(info.state, HoldState::Held);
            assert_eq!(OffsetDateTime::from(info.expires_at), round_two_deadline);
            held += info.quantity as u64;
        }
    }
    assert_eq!(held, allotted[2], "the lapsed units are held again, for the paying allottees");
    let unpaid = round_two_hold(&offering, people[2].0 as u64);
    assert!(app.state.ledger.hold_info(unpaid).await.unwrap().is_none());

    // A repeat changes nothing.
    let (status, again) = send(&app, post, round_two, &admin).await;
    assert_eq!(status, 200, "{again}");
    let again: Value = serde_json::from_str(&again).unwrap();
    assert_eq!(again, view);
}
