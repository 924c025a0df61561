//! Money and state at the edges, against real TigerBeetle and Postgres: a payment made by
//! the deadline but reported after it, a replay after the reservation moved on, a waitlist
//! offer whose hold id the ledger refused, an offering whose amounts would overflow.

use std::path::PathBuf;
use std::time::Duration;

use allot_api::config::Settings;
use allot_api::startup::Application;
use allot_ledger::{Deadline, HoldOutcome, HoldRequest};
use allot_store::waitlist::WaitingRow;
use allot_tests::app::{fresh_database, settings, tickets, TestApp};
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// The settlement grace these tests run with: short, so a test waits seconds, not minutes.
const GRACE_SECONDS: u32 = 5;

async fn spawn(tweak: impl FnOnce(&mut Settings)) -> TestApp {
    let database_url = fresh_database().await;
    let data_dir = tempfile::tempdir().unwrap();
    let mut s = settings(&database_url, data_dir.path(), PathBuf::from("/nonexistent"));
    s.payments.settlement_grace_seconds = GRACE_SECONDS;
    tweak(&mut s);
    let app = Application::build(s).await.expect("app builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let state = app.state();
    tokio::spawn(app.run_until_stopped());
    TestApp { address, client: reqwest::Client::new(), state, database_url, data_dir }
}

async fn open_payment(app: &TestApp, token: &str, reservation: &str) -> Value {
    let res = app
        .client
        .post(app.url(&format!("/v1/reservations/{reservation}/payments")))
        .bearer_auth(token)
        .json(&json!({"method": "promptpay"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    res.json().await.unwrap()
}

async fn get_json(app: &TestApp, path: &str, token: &str) -> (u16, Value) {
    let res = app.client.get(app.url(path)).bearer_auth(token).send().await.unwrap();
    (res.status().as_u16(), res.json().await.unwrap_or(Value::Null))
}

fn time_of(value: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(value.as_str().unwrap(), &Rfc3339).unwrap()
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap()
}

/// Sleeps until `t` has passed by `after`.
async fn sleep_until(t: OffsetDateTime, after: Duration) {
    let wait = (t - OffsetDateTime::now_utc()) + after;
    if wait.is_positive() {
        tokio::time::sleep(wait.unsigned_abs()).await;
    }
}

/// `./ops/pay PAYMENT_ID --paid-at T`, the operator's sandbox payment: its JSON answer.
async fn ops_pay(app: &TestApp, token: &str, payment_id: &str, paid_at: &str) -> Value {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../ops/pay");
    let out = tokio::process::Command::new("bash")
        .arg(script)
        .arg(payment_id)
        .args(["--paid-at", paid_at])
        .env("ALLOT_HTTP_ADDR", app.address.trim_start_matches("http://"))
        .env("ALLOT_TOKEN", token)
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A 3-second hold and its payment intent: (token, reservation, intent).
async fn short_hold(app: &TestApp, offering: &str) -> (String, Value, Value) {
    app.create_offering(tickets(offering, 10, 4, 3)).await;
    let (_, token) = app.citizen();
    let (status, r) = app.reserve(&token, offering, "k1", json!({"quantity": 2})).await;
    assert_eq!(status, 201, "{r}");
    let intent = open_payment(app, &token, r["reservation_id"].as_str().unwrap()).await;
    (token, r, intent)
}

async fn refunds_payable(app: &TestApp, offering: &str) -> u128 {
    let offering = app.state.catalog.get(offering).unwrap();
    app.state.ledger.money_balance(&offering.spec).await.unwrap().refunds_payable_satang
}

#[allot_tests::test]
async fn a_deposit_paid_a_second_before_the_deadline_and_reported_two_seconds_after_confirms() {
    let app = spawn(|_| {}).await;
    let (token, r, intent) = short_hold(&app, "on-time").await;
    let id = r["reservation_id"].as_str().unwrap();
    let deadline = time_of(&r["expires_at"]);
    // The holder is told the offering's 3 seconds, not the ledger's grace on top.
    let lead = deadline - OffsetDateTime::now_utc();
    assert!(lead <= time::Duration::seconds(3), "deadline {deadline} is {lead} away");
    assert_eq!(time_of(&intent["expires_at"]), deadline);

    sleep_until(deadline, Duration::from_secs(2)).await;
    let (_, late) = get_json(&app, &format!("/v1/reservations/{id}"), &token).await;
    assert_eq!(
        (late["status"].as_str(), time_of(&late["expires_at"])),
        (Some("expired"), deadline)
    );

    let paid_at = rfc3339(deadline - time::Duration::seconds(1));
    let answer = ops_pay(&app, &token, intent["payment_id"].as_str().unwrap(), &paid_at).await;
    assert_eq!(answer["webhook"]["status"], "succeeded", "{answer}");
    let (_, now) = get_json(&app, &format!("/v1/reservations/{id}"), &token).await;
    assert_eq!(now["status"], "confirmed", "{now}");
    assert_eq!(refunds_payable(&app, "on-time").await, 0);
}

#[allot_tests::test]
async fn a_deposit_paid_a_second_after_the_deadline_is_refunded_though_the_hold_still_stands() {
    let app = spawn(|_| {}).await;
    let (token, r, intent) = short_hold(&app, "too-late").await;
    let id = r["reservation_id"].as_str().unwrap();
    let deadline = time_of(&r["expires_at"]);
    sleep_until(deadline, Duration::from_secs(2)).await;

    let paid_at = rfc3339(deadline + time::Duration::seconds(1));
    let answer = ops_pay(&app, &token, intent["payment_id"].as_str().unwrap(), &paid_at).await;
    assert_eq!(
        (answer["webhook"]["status"].as_str(), answer["webhook"]["reason"].as_str()),
        (Some("refund_due"), Some("hold_expired")),
        "{answer}"
    );
    let (_, now) = get_json(&app, &format!("/v1/reservations/{id}"), &token).await;
    assert_eq!(now["status"], "expired", "{now}");
    let amount = intent["amount_satang"].as_u64().unwrap();
    assert_eq!(refunds_payable(&app, "too-late").await, u128::from(amount));
    let offering = app.state.catalog.get("too-late").unwrap();
    let zone = app.state.ledger.zone_balances(&offering.spec).await.unwrap()[0];
    assert_eq!(zone.confirmed, 0);
}

#[allot_tests::test]
async fn a_paid_at_in_the_future_or_long_ago_is_refused_and_records_nothing() {
    let app = spawn(|_| {}).await;
    let (token, _, intent) = short_hold(&app, "odd-clock").await;
    let payment_id = intent["payment_id"].as_str().unwrap();
    let now = OffsetDateTime::now_utc();
    for paid_at in [now + time::Duration::minutes(10), now - time::Duration::days(30)] {
        let res = app
            .client
            .post(app.url(&format!("/v1/sandbox/payments/{payment_id}/settle")))
            .bearer_auth(&token)
            .json(&json!({"paid_at": rfc3339(paid_at)}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 422);
        let body: Value = res.json().await.unwrap();
        assert_eq!(
            (body["code"].as_str(), body["field"].as_str()),
            (Some("invalid_paid_at"), Some("paid_at")),
            "{body}"
        );
    }
    let db = app.db().await;
    let rows: i64 =
        db.query_one("SELECT count(*) FROM payment_notifications", &[]).await.unwrap().get(0);
    assert_eq!(rows, 0);
}

#[allot_tests::test]
async fn a_retry_after_confirm_cancel_or_expiry_returns_the_reservation_as_it_is_now() {
    let app = spawn(|_| {}).await;
    app.create_offering(tickets("replays", 10, 10, 3)).await;
    let (_, token) = app.citizen();
    let reserve = |key: &'static str| {
        let (app, token) = (&app, &token);
        async move {
            let (status, r) = app.reserve(token, "replays", key, json!({"quantity": 1})).await;
            assert_eq!(status, 201, "{r}");
            r
        }
    };
    let paid = reserve("paid").await;
    let cancelled = reserve("cancelled").await;
    let lapsed = reserve("lapsed").await;

    // Replays before anything happened: the same deadline to the microsecond, every time.
    for (key, first) in [("paid", &paid), ("cancelled", &cancelled), ("lapsed", &lapsed)] {
        let again = reserve(key).await;
        assert_eq!(
            (again["status"].as_str(), &again["expires_at"]),
            (Some("held"), &first["expires_at"])
        );
    }

    let id = paid["reservation_id"].as_str().unwrap();
    let intent = open_payment(&app, &token, id).await;
    let res = app
        .client
        .post(app.url(&format!(
            "/v1/sandbox/payments/{}/settle",
            intent["payment_id"].as_str().unwrap()
        )))
        .bearer_auth(&token)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let id = cancelled["reservation_id"].as_str().unwrap();
    let res =
        app.client.delete(app.url(&format!("/v1/reservations/{id}"))).bearer_auth(&token).send();
    assert!(res.await.unwrap().status().is_success());
    sleep_until(time_of(&lapsed["expires_at"]), Duration::from_millis(500)).await;

    for (key, first, status) in [
        ("paid", &paid, "confirmed"),
        ("cancelled", &cancelled, "cancelled"),
        ("lapsed", &lapsed, "expired"),
    ] {
        let again = reserve(key).await;
        assert_eq!(again["status"], status, "{key}: {again}");
        assert_eq!(again["expires_at"], first["expires_at"], "{key}");
        assert_eq!(again["reservation_id"], first["reservation_id"], "{key}");
    }
}

#[allot_tests::test]
async fn a_waitlist_offer_whose_hold_id_failed_moves_on_to_the_next_freed_unit() {
    let app = spawn(|_| {}).await;
    app.create_offering(tickets("one-seat", 1, 1, 2)).await;
    let (_, first) = app.citizen();
    let (status, _) = app.reserve(&first, "one-seat", "a", json!({"quantity": 1})).await;
    assert_eq!(status, 201);
    let (waiting_user, waiting) = app.citizen();
    let res = app
        .client
        .post(app.url("/v1/offerings/one-seat/waitlist"))
        .bearer_auth(&waiting)
        .json(&json!({"quantity": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);

    // The offer's hold loses a race for the last seat: TigerBeetle records its id as failed.
    let db = app.db().await;
    let seq: i64 = db
        .query_one("SELECT seq FROM waitlist_entries WHERE user_id = $1", &[&waiting_user])
        .await
        .unwrap()
        .get(0);
    let offering = app.state.catalog.get("one-seat").unwrap();
    let entry = WaitingRow { user_id: waiting_user, quantity: 1, seq, attempt: 0 };
    let lost = HoldRequest {
        id: allot_api::fairness::waitlist::offer_hold_id(offering.spec.number, &entry),
        zone: 1,
        person: waiting_user as u64,
        quantity: 1,
        deadline: Deadline::after(60, 0),
        allow_partial: false,
        partner: None,
    };
    assert_eq!(app.state.ledger.hold(&offering.spec, &lost).await.unwrap(), HoldOutcome::SoldOut);
    assert_eq!(app.state.ledger.hold(&offering.spec, &lost).await.unwrap(), HoldOutcome::IdFailed);

    // The first hold lapses unpaid (2 s + the grace): the freed seat goes to the waitlist.
    app.eventually(Duration::from_secs(20), || {
        let (app, waiting) = (&app, &waiting);
        async move {
            let (_, mine) = get_json(app, "/v1/offerings/one-seat/waitlist", waiting).await;
            mine["status"] == "offered"
        }
    })
    .await;
    let (_, mine) = get_json(&app, "/v1/offerings/one-seat/waitlist", &waiting).await;
    let offer = mine["reservation_id"].as_str().unwrap();
    let (status, held) = get_json(&app, &format!("/v1/reservations/{offer}"), &waiting).await;
    assert_eq!((status, held["status"].as_str()), (200, Some("held")), "{held}");
}

#[allot_tests::test]
async fn an_offering_whose_amounts_would_overflow_is_refused_at_creation() {
    let app = spawn(|_| {}).await;
    let admin = app.token(1, allot_api::identity::Role::Admin);
    let create = |config: Value| {
        let (app, admin) = (&app, &admin);
        async move {
            let res = app
                .client
                .post(app.url("/v1/admin/offerings"))
                .bearer_auth(admin)
                .json(&config)
                .send()
                .await
                .unwrap();
            (res.status().as_u16(), res.json::<Value>().await.unwrap())
        }
    };
    // A whole zone at its price overflows 64 bits; one person's maximum at its price does.
    let mut whole_zone = tickets("huge", 1_000_000_000_000, 1, 600);
    whole_zone["zones"][0]["price_satang"] = json!(1_000_000_000);
    let mut one_person = tickets("greedy", 1_000, 1_000_000_000_000, 600);
    one_person["zones"][0]["price_satang"] = json!(1_000_000_000);
    let mut unbounded = tickets("unbounded", 1_000, 1, 600);
    unbounded["max_per_person"] = json!(u64::MAX);
    // Each field within its own bounds, but not together: 422; a field beyond its own: 400.
    for (config, field, (want_status, want_code)) in [
        (whole_zone, "zones[0].price_satang", (422, "inconsistent_request")),
        (one_person, "max_per_person", (422, "inconsistent_request")),
        (unbounded, "max_per_person", (400, "validation_error")),
    ] {
        let (status, body) = create(config).await;
        assert_eq!((status, body["code"].as_str()), (want_status, Some(want_code)), "{body}");
        assert_eq!(body["field"], field, "{body}");
    }
    // Nothing was stored or set up, and the service still answers.
    let db = app.db().await;
    let stored: i64 = db.query_one("SELECT count(*) FROM offerings", &[]).await.unwrap().get(0);
    assert_eq!(stored, 0);
    let res = app.client.get(app.url("/v1/offerings")).send().await.unwrap();
    assert_eq!(res.status(), 200);
}

/// The outbox rows of a reservation: (send key, status).
async fn notices(app: &TestApp, reservation: &str) -> Vec<(String, String)> {
    let db = app.db().await;
    let rows = db
        .query(
            "SELECT send_key, status FROM outbox WHERE args->>'reservation_id' = $1
             ORDER BY send_key",
            &[&reservation],
        )
        .await
        .unwrap();
    rows.iter().map(|r| (r.get(0), r.get(1))).collect()
}

#[allot_tests::test]
async fn every_reservation_is_told_made_reminded_and_expired_without_opening_a_payment() {
    let app = spawn(|_| {}).await;
    app.create_offering(tickets("told", 10, 4, 24 * 3600)).await;
    app.create_offering(tickets("told-short", 10, 4, 2)).await;
    let (user, token) = app.citizen();
    let (_, day) = app.reserve(&token, "told", "day", json!({"quantity": 2})).await;
    let day_id = day["reservation_id"].as_str().unwrap().to_owned();
    app.eventually(Duration::from_secs(10), || {
        let (app, id) = (&app, &day_id);
        async move {
            let keys: Vec<String> = notices(app, id).await.into_iter().map(|n| n.0).collect();
            keys == [
                format!("payment_reminder_1h.{id}"),
                format!("payment_reminder_6h.{id}"),
                format!("reservation_expired.{id}"),
                format!("reservation_made.{id}"),
            ]
        }
    })
    .await;
    app.eventually(Duration::from_secs(10), || {
        let (app, id) = (&app, &day_id);
        async move {
            let made = format!("reservation_made.{id}");
            notices(app, id).await.contains(&(made, "sent".to_owned()))
        }
    })
    .await;
    let db = app.db().await;
    let made = db
        .query_one(
            "SELECT user_id, args FROM outbox WHERE send_key = $1",
            &[&format!("reservation_made.{day_id}")],
        )
        .await
        .unwrap();
    let args: Value = made.get(1);
    assert_eq!(made.get::<_, i64>(0), user);
    assert_eq!(args["amount_satang"], day["deposit_due_satang"], "{args}");
    assert_eq!(args["expires_at"].as_i64().unwrap(), time_of(&day["expires_at"]).unix_timestamp());
    // With no payment opened yet, the message says how to get one, in the user's language.
    let kind = allot_api::notify::outbox::Kind::ReservationMade;
    let (_, en) = allot_api::notify::outbox::render(&app.state.catalog, kind, "en", &args);
    assert!(en.contains("3,000.00 baht") && en.contains("open its payment"), "{en}");
    let (_, th) = allot_api::notify::outbox::render(&app.state.catalog, kind, "th", &args);
    assert!(th.contains("3,000.00") && th.contains("พร้อมเพย์"), "{th}");

    // A short hold left unpaid is told it lapsed once the grace is over; a paid one is
    // told it is confirmed, and its expiry notice is skipped.
    let (_, lapsing) = app.reserve(&token, "told-short", "lapse", json!({"quantity": 1})).await;
    let (_, paid) = app.reserve(&token, "told-short", "pay", json!({"quantity": 1})).await;
    let paid_id = paid["reservation_id"].as_str().unwrap().to_owned();
    let intent = open_payment(&app, &token, &paid_id).await;
    let res = app
        .client
        .post(app.url(&format!(
            "/v1/sandbox/payments/{}/settle",
            intent["payment_id"].as_str().unwrap()
        )))
        .bearer_auth(&token)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let lapsing_id = lapsing["reservation_id"].as_str().unwrap().to_owned();
    app.eventually(Duration::from_secs(30), || {
        let (app, lapsing_id, paid_id) = (&app, &lapsing_id, &paid_id);
        async move {
            let lapsed = notices(app, lapsing_id).await;
            let paid = notices(app, paid_id).await;
            let expired =
                |id: &str, status: &str| (format!("reservation_expired.{id}"), status.to_owned());
            lapsed.contains(&expired(lapsing_id, "sent"))
                && paid.contains(&expired(paid_id, "skipped"))
        }
    })
    .await;
    let confirmed: i64 = db
        .query_one(
            "SELECT count(*) FROM outbox WHERE kind = 'payment_confirmed' AND args->>'reservation_id' = $1",
            &[&paid_id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(confirmed, 1);
}
