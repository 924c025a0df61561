//! Payments over HTTP, against real TigerBeetle and Postgres: a reservation is confirmed
//! only by money that really arrived, exactly once, and money that cannot confirm anything
//! is booked for refund and shown to finance. Notifications reach a real HTTP receiver
//! once per event, even across a worker crash.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use allot_api::clock::Clock;
use allot_api::identity::Role;
use allot_api::notify::outbox;
use allot_api::notify::senders::{Message, SendError, Sender, WebhookSender};
use allot_api::payments::promptpay::BillPayment;
use allot_ledger::MoneyBalance;
use allot_tests::app::{fresh_database, settings, tickets, TestApp};
use futures::future::BoxFuture;
use serde_json::{json, Value};

fn now_unix() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

/// An app whose notifications go to `notify_url`.
async fn spawn_app(offerings_dir: PathBuf, notify_url: &str) -> TestApp {
    let database_url = fresh_database().await;
    let data_dir = tempfile::tempdir().unwrap();
    let mut settings = settings(&database_url, data_dir.path(), offerings_dir);
    settings.notify.url = notify_url.into();
    TestApp::start(settings, data_dir, Clock::settable()).await
}

/// Reserves `quantity` and opens its payment; returns (reservation id, intent).
async fn reserve_and_open(
    app: &TestApp,
    token: &str,
    offering: &str,
    body: Value,
) -> (String, Value) {
    let (status, r) = app.reserve(token, offering, &uuid::Uuid::new_v4().to_string(), body).await;
    assert_eq!(status, 201, "{r}");
    let id = r["reservation_id"].as_str().unwrap().to_owned();
    let (status, intent) = open_payment(app, token, &id).await;
    assert_eq!(status, 201, "{intent}");
    (id, intent)
}

async fn open_payment(app: &TestApp, token: &str, reservation: &str) -> (u16, Value) {
    let res = app
        .client
        .post(app.url(&format!("/v1/reservations/{reservation}/payments")))
        .bearer_auth(token)
        .json(&json!({"method": "promptpay"}))
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

async fn get_json(app: &TestApp, path: &str, token: &str) -> (u16, Value) {
    let res = app.client.get(app.url(path)).bearer_auth(token).send().await.unwrap();
    (res.status().as_u16(), res.json().await.unwrap_or(Value::Null))
}

fn notification(transaction_id: &str, reference: &str, amount_satang: u64) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "transaction_id": transaction_id,
        "reference": reference,
        "amount_satang": amount_satang,
        "paid_at": allot_tests::finance::paid_now(),
        "currency": "THB",
    }))
    .unwrap()
}

/// Delivers a bank webhook signed with `signature` (or with the bank's real key).
async fn deliver(
    app: &TestApp,
    body: &[u8],
    timestamp: i64,
    signature: Option<String>,
) -> (u16, Value) {
    let ts = timestamp.to_string();
    let signature = signature.unwrap_or_else(|| app.state.payments.gateways().bank.sign(&ts, body));
    let res = app
        .client
        .post(app.url("/v1/payments/webhooks/bank"))
        .header("content-type", "application/json")
        .header("X-Allot-Timestamp", ts)
        .header("X-Allot-Signature", signature)
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.json().await.unwrap_or(Value::Null))
}

/// Settles through the sandbox as the intent's owner, the only one it lets settle.
async fn settle(app: &TestApp, payment_id: &str, body: Value) -> Value {
    let owner: i64 = app
        .db()
        .await
        .query_one("SELECT user_id FROM payment_intents WHERE payment_id = $1", &[&payment_id])
        .await
        .unwrap()
        .get(0);
    let res = app
        .client
        .post(app.url(&format!("/v1/sandbox/payments/{payment_id}/settle")))
        .bearer_auth(app.token(owner, Role::Citizen))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

async fn money(app: &TestApp, offering: &str) -> MoneyBalance {
    let offering = app.state.catalog.get(offering).unwrap();
    app.state.ledger.money_balance(&offering.spec).await.unwrap()
}

async fn reservation_status(app: &TestApp, token: &str, id: &str) -> String {
    let (_, r) = get_json(app, &format!("/v1/reservations/{id}"), token).await;
    r["status"].as_str().unwrap().to_owned()
}

#[allot_tests::test]
async fn paying_the_deposit_confirms_once_however_often_the_bank_resends() {
    let app = TestApp::spawn_with_seeds().await;
    let (user, token) = app.citizen();
    let (id, intent) =
        reserve_and_open(&app, &token, "bond-2026", json!({"quantity": 100_000})).await;
    // A bond is confirmed by a 10% deposit: 100,000 baht → 10,000 baht.
    assert_eq!(intent["amount_satang"], 1_000_000);
    assert_eq!(intent["status"], "pending");
    let payment_id = intent["payment_id"].as_str().unwrap().to_owned();
    let reference = intent["reference"].as_str().unwrap().to_owned();
    assert!(reference.len() <= 20 && reference.bytes().all(|b| b.is_ascii_alphanumeric()));
    assert_eq!(reference, reference.to_ascii_uppercase());

    // The QR is a dynamic PromptPay bill payment for exactly that amount and reference.
    let qr = BillPayment::parse(intent["promptpay"]["payload"].as_str().unwrap()).unwrap();
    assert_eq!((qr.amount_satang, qr.ref1.as_str()), (Some(1_000_000), reference.as_str()));
    assert_eq!(qr.biller_id, app.state.settings.payments.promptpay_biller_id);
    let svg = app
        .client
        .get(app.url(intent["promptpay"]["qr_svg_url"].as_str().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(svg.headers()["content-type"], "image/svg+xml");
    assert!(svg.text().await.unwrap().contains("<svg"));

    // Asking again gives the same intent; someone else cannot open one.
    let (status, again) = open_payment(&app, &token, &id).await;
    assert_eq!((status, again["payment_id"].as_str()), (200, Some(payment_id.as_str())));
    let (_, stranger) = app.citizen();
    let (status, err) = open_payment(&app, &stranger, &id).await;
    assert_eq!((status, err["code"].as_str()), (404, Some("reservation_not_found")));

    // A 24-hour hold gets reminders 6 h and 1 h before its deadline, and an expiry check.
    let db = app.db().await;
    let keys: Vec<String> = db
        .query("SELECT send_key FROM outbox WHERE user_id = $1 ORDER BY send_key", &[&user])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        keys,
        [
            format!("payment_reminder_1h.{id}"),
            format!("payment_reminder_6h.{id}"),
            format!("reservation_expired.{id}"),
            format!("reservation_made.{id}"),
        ]
    );

    // The bank sends the same notification five times, all at once.
    let body = notification("BANK-TX-1", &reference, 1_000_000);
    let answers =
        futures::future::join_all((0..5).map(|_| deliver(&app, &body, now_unix(), None))).await;
    for (status, answer) in &answers {
        assert_eq!((*status, answer["status"].as_str()), (200, Some("succeeded")), "{answer}");
    }
    assert_eq!(reservation_status(&app, &token, &id).await, "confirmed");
    assert_eq!(
        money(&app, "bond-2026").await,
        MoneyBalance { deposits_satang: 1_000_000, refunds_payable_satang: 0 },
        "one money movement"
    );
    let (status, payment) = get_json(&app, &format!("/v1/payments/{payment_id}"), &token).await;
    assert_eq!((status, payment["status"].as_str()), (200, Some("succeeded")));
    let rows: i64 =
        db.query_one("SELECT count(*) FROM payment_notifications", &[]).await.unwrap().get(0);
    assert_eq!(rows, 1, "one recorded transaction");
    let confirmations: i64 = db
        .query_one("SELECT count(*) FROM outbox WHERE kind = 'payment_confirmed'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(confirmations, 1, "one confirmation message");
    let audited: i64 = db
        .query_one("SELECT count(*) FROM audit_log WHERE action = 'payment.applied'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(audited, 1, "one audit entry");

    // Later resends still get a 2xx, never an error.
    let (status, answer) = deliver(&app, &body, now_unix(), None).await;
    assert_eq!((status, answer["status"].as_str()), (200, Some("succeeded")));

    // Owner and staff read the payment; nobody else.
    let (status, _) = get_json(&app, &format!("/v1/payments/{payment_id}"), &stranger).await;
    assert_eq!(status, 404);
    let finance = app.token(5, Role::Finance);
    let (status, _) = get_json(&app, &format!("/v1/payments/{payment_id}"), &finance).await;
    assert_eq!(status, 200);
    // A confirmed reservation cannot be cancelled any more.
    let res = app
        .client
        .delete(app.url(&format!("/v1/reservations/{id}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 409);
}

#[allot_tests::test]
async fn forged_stale_or_malformed_webhooks_change_nothing() {
    let app = TestApp::spawn().await;
    app.create_offering(tickets("show", 10, 4, 600)).await;
    let (_, token) = app.citizen();
    let (id, intent) = reserve_and_open(&app, &token, "show", json!({"quantity": 2})).await;
    let reference = intent["reference"].as_str().unwrap();
    let amount = intent["amount_satang"].as_u64().unwrap();
    assert_eq!(amount, 300_000, "tickets are paid in full");
    let body = notification("T-1", reference, amount);

    let forged = "ab".repeat(32);
    let (status, err) = deliver(&app, &body, now_unix(), Some(forged)).await;
    assert_eq!((status, err["code"].as_str()), (401, Some("invalid_signature")));
    // Signed with the sandbox's key is still not the bank.
    let ts = now_unix().to_string();
    let sandbox = app.state.payments.gateways().sandbox.as_ref().unwrap().sign(&ts, &body);
    let (status, _) = deliver(&app, &body, now_unix(), Some(sandbox)).await;
    assert_eq!(status, 401);
    // Properly signed, but captured more than five minutes ago (or dated ahead).
    for skew in [-301, 301] {
        let (status, err) = deliver(&app, &body, now_unix() + skew, None).await;
        assert_eq!((status, err["code"].as_str()), (401, Some("invalid_signature")), "{skew}");
    }
    // Signed over another body.
    let ts = now_unix();
    let bank = &app.state.payments.gateways().bank;
    let other = bank.sign(&ts.to_string(), &notification("T-1", reference, 1));
    let (status, _) = deliver(&app, &body, ts, Some(other)).await;
    assert_eq!(status, 401);
    // No headers at all.
    let res = app
        .client
        .post(app.url("/v1/payments/webhooks/bank"))
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    // Authentic but unreadable: the bank's mistake, a 400.
    for bad in [&b"{"[..], br#"{"transaction_id":"T-2","reference":"R","amount_satang":-5,"paid_at":"2026-11-22T10:00:00Z"}"#] {
        let (status, err) = deliver(&app, bad, now_unix(), None).await;
        assert_eq!((status, err["code"].as_str()), (400, Some("malformed_json")));
    }
    let (status, _) = {
        let res = app
            .client
            .post(app.url("/v1/payments/webhooks/paypal"))
            .body(body.clone())
            .send()
            .await
            .unwrap();
        (res.status().as_u16(), ())
    };
    assert_eq!(status, 404, "unknown gateway");

    let db = app.db().await;
    let rows: i64 =
        db.query_one("SELECT count(*) FROM payment_notifications", &[]).await.unwrap().get(0);
    assert_eq!(rows, 0, "nothing recorded");
    assert_eq!(reservation_status(&app, &token, &id).await, "held");
    assert_eq!(money(&app, "show").await, MoneyBalance::default());

    // The genuine article still works afterwards.
    let (status, answer) = deliver(&app, &body, now_unix(), None).await;
    assert_eq!((status, answer["status"].as_str()), (200, Some("succeeded")));
    assert_eq!(reservation_status(&app, &token, &id).await, "confirmed");
}

#[allot_tests::test]
async fn a_payment_after_the_deadline_is_booked_for_refund_not_confirmed() {
    let app = TestApp::spawn().await;
    app.create_offering(tickets("x", 10, 4, 2)).await;
    let (_, token) = app.citizen();
    let (id, intent) = reserve_and_open(&app, &token, "x", json!({"quantity": 4})).await;
    let payment_id = intent["payment_id"].as_str().unwrap();
    let amount = intent["amount_satang"].as_u64().unwrap();
    app.eventually(Duration::from_secs(10), || {
        let (app, token, id) = (&app, &token, &id);
        async move { reservation_status(app, token, id).await == "expired" }
    })
    .await;

    // The sandbox pays through the same signed webhook path a bank uses.
    let settled = settle(&app, payment_id, json!({})).await;
    assert_eq!(settled["webhook_status"], 200);
    assert_eq!(settled["webhook"]["status"], "refund_due");
    assert_eq!(settled["webhook"]["reason"], "hold_expired");
    assert_eq!(reservation_status(&app, &token, &id).await, "expired");
    assert_eq!(
        money(&app, "x").await,
        MoneyBalance { deposits_satang: 0, refunds_payable_satang: amount.into() }
    );
    let (_, payment) = get_json(&app, &format!("/v1/payments/{payment_id}"), &token).await;
    assert_eq!(
        (payment["status"].as_str(), payment["reason"].as_str()),
        (Some("refund_due"), Some("hold_expired"))
    );

    // Finance sees it; a citizen may not look.
    let finance = app.token(7, Role::Finance);
    let (status, refunds) = get_json(&app, "/v1/finance/refunds", &finance).await;
    assert_eq!(status, 200);
    assert_eq!(refunds.as_array().unwrap().len(), 1);
    assert_eq!(refunds[0]["reservation_id"], id.as_str());
    assert_eq!(refunds[0]["amount_satang"], amount);
    assert_eq!(refunds[0]["reason"], "hold_expired");
    let (status, err) = get_json(&app, "/v1/finance/refunds", &token).await;
    assert_eq!((status, err["code"].as_str()), (403, Some("forbidden")));

    // The same late transaction resent: still one refund.
    let tx = settled["transaction_id"].as_str().unwrap();
    settle(&app, payment_id, json!({"transaction_id": tx})).await;
    assert_eq!(money(&app, "x").await.refunds_payable_satang, u128::from(amount));
    // Asking to pay again shows the same, refunded, payment: nothing new to pay.
    let (status, err) = open_payment(&app, &token, &id).await;
    assert_eq!((status, err["payment_id"].as_str()), (200, Some(payment_id)), "{err}");
}

#[allot_tests::test]
async fn a_wrong_amount_or_a_second_payment_is_flagged_and_never_confirms() {
    let app = TestApp::spawn().await;
    app.create_offering(tickets("show", 10, 4, 600)).await;
    let (_, token) = app.citizen();
    let (id, intent) = reserve_and_open(&app, &token, "show", json!({"quantity": 1})).await;
    let payment_id = intent["payment_id"].as_str().unwrap();
    assert_eq!(intent["amount_satang"], 150_000);

    // One satang short.
    let short = settle(&app, payment_id, json!({"amount_satang": 149_999})).await;
    assert_eq!(
        (short["webhook"]["status"].as_str(), short["webhook"]["reason"].as_str()),
        (Some("refund_due"), Some("amount_mismatch"))
    );
    assert_eq!(reservation_status(&app, &token, &id).await, "held");
    assert_eq!(
        money(&app, "show").await,
        MoneyBalance { deposits_satang: 0, refunds_payable_satang: 149_999 }
    );
    let (_, payment) = get_json(&app, &format!("/v1/payments/{payment_id}"), &token).await;
    assert_eq!(payment["status"], "refund_due");

    // Then the right amount: confirmed, and the payment reads succeeded.
    let right = settle(&app, payment_id, json!({})).await;
    assert_eq!(right["webhook"]["status"], "succeeded");
    assert_eq!(reservation_status(&app, &token, &id).await, "confirmed");
    // Then the payer pays again by mistake: a second transaction, refunded.
    let twice = settle(&app, payment_id, json!({})).await;
    assert_eq!(
        (twice["webhook"]["status"].as_str(), twice["webhook"]["reason"].as_str()),
        (Some("refund_due"), Some("paid_twice"))
    );
    assert_eq!(
        money(&app, "show").await,
        MoneyBalance { deposits_satang: 150_000, refunds_payable_satang: 149_999 + 150_000 }
    );
    let (_, payment) = get_json(&app, &format!("/v1/payments/{payment_id}"), &token).await;
    assert_eq!(payment["status"], "succeeded", "a refunded extra does not hide the payment");
    let admin = app.token(1, Role::Admin);
    let (_, refunds) = get_json(&app, "/v1/finance/refunds", &admin).await;
    let mut reasons: Vec<&str> =
        refunds.as_array().unwrap().iter().map(|r| r["reason"].as_str().unwrap()).collect();
    reasons.sort();
    assert_eq!(reasons, ["amount_mismatch", "paid_twice"]);
}

#[allot_tests::test]
async fn money_with_an_unknown_reference_is_acknowledged_and_listed_as_unmatched() {
    let app = TestApp::spawn().await;
    let body = notification("BANK-TX-9", "NOSUCHREF42", 12_345);
    let (status, answer) = deliver(&app, &body, now_unix(), None).await;
    assert_eq!((status, answer["status"].as_str()), (200, Some("unmatched")));
    // The bank resends: same answer, still one row.
    let (status, _) = deliver(&app, &body, now_unix(), None).await;
    assert_eq!(status, 200);
    let finance = app.token(7, Role::Finance);
    let (status, list) = get_json(&app, "/v1/finance/unmatched", &finance).await;
    assert_eq!(status, 200);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(
        (
            list[0]["transaction_id"].as_str(),
            list[0]["reference"].as_str(),
            list[0]["amount_satang"].as_u64()
        ),
        (Some("BANK-TX-9"), Some("NOSUCHREF42"), Some(12_345))
    );
    let (_, citizen) = app.citizen();
    let (status, _) = get_json(&app, "/v1/finance/unmatched", &citizen).await;
    assert_eq!(status, 403);
}

#[allot_tests::test]
async fn a_recorded_but_unapplied_payment_is_finished_by_the_worker() {
    let app = TestApp::spawn().await;
    app.create_offering(tickets("show", 10, 4, 600)).await;
    let (_, token) = app.citizen();
    let (id, intent) = reserve_and_open(&app, &token, "show", json!({"quantity": 1})).await;
    // As if the process died right after recording: the row exists, the ledger saw nothing.
    let db = app.db().await;
    let ledger_id = allot_api::payments::format_payment_id(allot_api::payments::ledger_payment_id(
        allot_api::payments::gateway::GatewayKind::Bank,
        "CRASH-1",
    ));
    db.execute(
        "INSERT INTO payment_notifications
            (gateway, transaction_id, reference, amount_satang, paid_at, payment_id, ledger_id, body, received_at)
         VALUES ('bank', 'CRASH-1', $1, 150000, now(), $2, $3, '{}', now() - interval '1 minute')",
        &[&intent["reference"].as_str().unwrap(), &intent["payment_id"].as_str().unwrap(), &ledger_id],
    )
    .await
    .unwrap();
    app.eventually(Duration::from_secs(10), || {
        let (app, token, id) = (&app, &token, &id);
        async move { reservation_status(app, token, id).await == "confirmed" }
    })
    .await;
    // The ledger confirms first, then the row is marked in its own transaction: wait for
    // the mark rather than hope it came with the confirmation.
    app.eventually(Duration::from_secs(10), || {
        let db = &db;
        async move {
            let row = db
                .query_one("SELECT outcome, applied_at IS NOT NULL FROM payment_notifications", &[])
                .await
                .unwrap();
            (row.get::<_, &str>(0), row.get::<_, bool>(1)) == ("succeeded", true)
        }
    })
    .await;
    assert_eq!(money(&app, "show").await.deposits_satang, 150_000, "money moved once");
}

/// A notification receiver like a real one: it records every delivery, and acts on each
/// `Idempotency-Key` once.
#[derive(Debug, Default)]
struct Receiver {
    deliveries: Mutex<Vec<(String, Value)>>,
    /// Requests still to refuse with a 503, as a receiver that is down would.
    refuse: AtomicUsize,
}

impl Receiver {
    async fn start() -> (Arc<Receiver>, String) {
        let receiver = Arc::new(Receiver::default());
        let data = web::Data::from(receiver.clone());
        let server = HttpServer::new(move || {
            App::new().app_data(data.clone()).route("/hook", web::post().to(record))
        })
        .workers(1)
        .bind("127.0.0.1:0")
        .unwrap();
        let url = format!("http://{}/hook", server.addrs()[0]);
        tokio::spawn(server.run());
        (receiver, url)
    }

    fn deliveries_by_key(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for (key, _) in self.deliveries.lock().unwrap().iter() {
            *counts.entry(key.clone()).or_default() += 1;
        }
        counts
    }

    fn first(&self, key: &str) -> Option<Value> {
        let deliveries = self.deliveries.lock().unwrap();
        deliveries.iter().find(|(k, _)| k == key).map(|(_, body)| body.clone())
    }
}

async fn record(
    receiver: web::Data<Receiver>,
    req: HttpRequest,
    body: web::Json<Value>,
) -> HttpResponse {
    let refuse = &receiver.refuse;
    let down = refuse.fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1)).is_ok();
    if down {
        return HttpResponse::ServiceUnavailable().finish();
    }
    let key = req.headers().get("Idempotency-Key").unwrap().to_str().unwrap().to_owned();
    assert_eq!(body["send_key"].as_str(), Some(key.as_str()));
    receiver.deliveries.lock().unwrap().push((key, body.into_inner()));
    HttpResponse::Ok().finish()
}

#[allot_tests::test]
async fn notifications_reach_a_real_receiver_once_per_event_in_the_users_language() {
    let (receiver, url) = Receiver::start().await;
    let app = spawn_app(PathBuf::from("/nonexistent"), &url).await;
    app.create_offering(tickets("x", 10, 4, 2)).await;
    // A registered user who reads Japanese.
    let (user, token) = app.citizen();
    app.db()
        .await
        .execute(
            "INSERT INTO users (user_id, identity_hash, email, password_hash, locale)
             VALUES ($1, $2, 'fan@example.com', 'x', 'ja')",
            &[&user, &user.to_le_bytes().to_vec()],
        )
        .await
        .unwrap();
    let (paid, intent) = reserve_and_open(&app, &token, "x", json!({"quantity": 1})).await;
    settle(&app, intent["payment_id"].as_str().unwrap(), json!({})).await;
    // A second reservation nobody pays, then pays late.
    let (late, late_intent) = reserve_and_open(&app, &token, "x", json!({"quantity": 1})).await;
    let late_payment = late_intent["payment_id"].as_str().unwrap().to_owned();
    app.eventually(Duration::from_secs(10), || {
        let (app, token, late) = (&app, &token, &late);
        async move { reservation_status(app, token, late).await == "expired" }
    })
    .await;
    let refund = settle(&app, &late_payment, json!({})).await;
    let refund_key = format!(
        "refund_due.{}",
        allot_api::payments::format_payment_id(allot_api::payments::ledger_payment_id(
            allot_api::payments::gateway::GatewayKind::Sandbox,
            refund["transaction_id"].as_str().unwrap(),
        ))
    );
    let expected = [
        format!("reservation_made.{paid}"),
        format!("payment_confirmed.{}", intent["payment_id"].as_str().unwrap()),
        format!("reservation_made.{late}"),
        format!("reservation_expired.{late}"),
        refund_key.clone(),
    ];
    app.eventually(Duration::from_secs(15), || {
        let (receiver, expected) = (&receiver, &expected);
        async move {
            let got = receiver.deliveries_by_key();
            expected.iter().all(|k| got.contains_key(k))
        }
    })
    .await;
    // The paid reservation's expiry notice is checked against the ledger and skipped.
    let db = app.db().await;
    app.eventually(Duration::from_secs(10), || {
        let (db, paid) = (&db, &paid);
        async move {
            let row = db
                .query_one(
                    "SELECT status FROM outbox WHERE send_key = $1",
                    &[&format!("reservation_expired.{paid}")],
                )
                .await
                .unwrap();
            row.get::<_, &str>(0) == "skipped"
        }
    })
    .await;
    // Everything due has reached its end (sent, skipped or failed): then a drain by hand,
    // with the same receiver, finds nothing left to send again. No sleep and hope.
    app.eventually(Duration::from_secs(15), || {
        let db = &db;
        async move {
            let due = db
                .query_one(
                    "SELECT count(*) FROM outbox WHERE status = 'pending' AND due_at <= now()",
                    &[],
                )
                .await
                .unwrap();
            due.get::<_, i64>(0) == 0
        }
    })
    .await;
    let sender = WebhookSender::new(&url).unwrap();
    assert_eq!(outbox::drain_once(&app.state.notify, &sender).await.unwrap(), 0);
    let got = receiver.deliveries_by_key();
    assert_eq!(got.len(), expected.len(), "{got:?}");
    for key in &expected {
        assert_eq!(got[key], 1, "{key} delivered once");
    }
    let confirmed = receiver.first(&expected[1]).unwrap();
    assert_eq!(confirmed["locale"], "ja");
    assert_eq!(confirmed["email"], "fan@example.com");
    assert!(confirmed["body"].as_str().unwrap().contains("1,500.00"), "{confirmed}");
    // Japanese, exactly: any other language's sentence (or another notice's) fails.
    assert_eq!(confirmed["subject"], "入金を確認しました: Test show の予約が確定しました");
    let refund = receiver.first(&refund_key).unwrap();
    assert_eq!(refund["kind"], "refund_due");
}

/// Sends through a real sender, then hangs: a worker that dies between sending and
/// marking (its task is aborted by the test, as a crash would end it).
#[derive(Debug)]
struct DiesAfterSending(WebhookSender);

impl Sender for DiesAfterSending {
    fn send<'a>(&'a self, message: &'a Message) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async move {
            self.0.send(message).await?;
            std::future::pending().await
        })
    }
}

#[allot_tests::test]
async fn a_notification_survives_a_worker_crash_and_keeps_its_key() {
    let (receiver, url) = Receiver::start().await;
    // This process sends nothing by itself: the test plays the workers.
    let app = spawn_app(PathBuf::from("/nonexistent"), "none").await;
    app.create_offering(tickets("show", 10, 4, 600)).await;
    let mut keys = Vec::new();
    for _ in 0..3 {
        let (_, token) = app.citizen();
        let (id, _) = reserve_and_open(&app, &token, "show", json!({"quantity": 1})).await;
        keys.push(format!("reservation_made.{id}"));
    }

    let crashing = {
        let state = app.state.clone();
        let sender = DiesAfterSending(WebhookSender::new(&url).unwrap());
        tokio::spawn(async move { outbox::drain_once(&state.notify, &sender).await })
    };
    app.eventually(Duration::from_secs(10), || {
        let receiver = &receiver;
        async move { receiver.deliveries_by_key().len() == 3 }
    })
    .await;
    crashing.abort();
    assert!(crashing.await.unwrap_err().is_cancelled());

    // The claim died with the worker: the rows are still to be sent.
    let db = app.db().await;
    let pending = || async {
        db.query_one(
            "SELECT count(*) FROM outbox WHERE status = 'pending' AND kind = 'reservation_made'",
            &[],
        )
        .await
        .unwrap()
        .get::<_, i64>(0)
    };
    app.eventually(Duration::from_secs(5), || async { pending().await == 3 }).await;

    // The next worker sends them again, with the same keys, and marks them sent.
    let sender = WebhookSender::new(&url).unwrap();
    assert_eq!(outbox::drain_once(&app.state.notify, &sender).await.unwrap(), 3);
    assert_eq!(outbox::drain_once(&app.state.notify, &sender).await.unwrap(), 0, "nothing left");
    assert_eq!(pending().await, 0);
    let got = receiver.deliveries_by_key();
    let mut seen: Vec<&String> = got.keys().collect();
    seen.sort();
    keys.sort();
    assert_eq!(seen, keys.iter().collect::<Vec<_>>(), "one event key per event");
    assert!(got.values().all(|n| *n == 2), "sent once before the crash and once after: {got:?}");
    // A receiver that acts once per key therefore acted exactly once per event.
}

#[allot_tests::test]
async fn the_openapi_document_lists_the_payment_endpoints() {
    let app = TestApp::spawn().await;
    let doc: Value =
        app.client.get(app.url("/openapi.json")).send().await.unwrap().json().await.unwrap();
    for path in [
        "/v1/reservations/{id}/payments",
        "/v1/payments/{id}",
        "/v1/payments/{id}/qr.svg",
        "/v1/payments/webhooks/{gateway}",
        "/v1/sandbox/payments/{id}/settle",
        "/v1/finance/refunds",
        "/v1/finance/unmatched",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} missing from OpenAPI");
    }
}

#[allot_tests::test]
async fn ops_pay_settles_a_payment_through_the_sandbox() {
    let app = TestApp::spawn().await;
    app.create_offering(tickets("show", 10, 4, 600)).await;
    let (_, token) = app.citizen();
    let (id, intent) = reserve_and_open(&app, &token, "show", json!({"quantity": 2})).await;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../ops/pay");
    let out = tokio::process::Command::new("bash")
        .arg(script)
        .arg(intent["payment_id"].as_str().unwrap())
        .env("ALLOT_HTTP_ADDR", app.address.trim_start_matches("http://"))
        .env("ALLOT_TOKEN", &token)
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["webhook"]["status"], "succeeded", "{answer}");
    assert_eq!(reservation_status(&app, &token, &id).await, "confirmed");
}

async fn outbox_row(db: &tokio_postgres::Client, key: &str) -> (String, i32, bool, Option<String>) {
    let r = db
        .query_one(
            "SELECT status, attempts, due_at > now(), last_error FROM outbox WHERE send_key = $1",
            &[&key],
        )
        .await
        .unwrap();
    (r.get(0), r.get(1), r.get(2), r.get(3))
}

#[allot_tests::test]
async fn a_receiver_that_is_down_gets_the_message_later_with_backoff() {
    let (receiver, url) = Receiver::start().await;
    let app = spawn_app(PathBuf::from("/nonexistent"), "none").await;
    app.create_offering(tickets("show", 10, 4, 600)).await;
    let (_, token) = app.citizen();
    let (id, _) = reserve_and_open(&app, &token, "show", json!({"quantity": 1})).await;
    let key = format!("reservation_made.{id}");
    receiver.refuse.store(2, SeqCst);
    let sender = WebhookSender::new(&url).unwrap();
    let db = app.db().await;
    for attempt in 1..=2 {
        assert_eq!(outbox::drain_once(&app.state.notify, &sender).await.unwrap(), 1);
        let (status, attempts, later, error) = outbox_row(&db, &key).await;
        assert_eq!((status.as_str(), attempts, later), ("pending", attempt, true));
        assert!(error.unwrap().contains("503"));
        // Not due again before its backoff has passed.
        assert_eq!(outbox::drain_once(&app.state.notify, &sender).await.unwrap(), 0);
        db.execute("UPDATE outbox SET due_at = now() WHERE send_key = $1", &[&key]).await.unwrap();
    }
    assert_eq!(outbox::drain_once(&app.state.notify, &sender).await.unwrap(), 1);
    assert_eq!(outbox_row(&db, &key).await.0, "sent");
    assert_eq!(receiver.deliveries_by_key()[&key], 1);
}

/// A minimal SMTP server: accepts one message and hands back its DATA.
async fn smtp_server() -> (u16, tokio::sync::oneshot::Receiver<String>) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        let (read, mut write) = socket.into_split();
        let mut lines = BufReader::new(read).lines();
        write.write_all(b"220 test ESMTP\r\n").await.unwrap();
        let (mut data, mut in_data) = (String::new(), false);
        while let Some(line) = lines.next_line().await.unwrap() {
            if in_data {
                if line == "." {
                    in_data = false;
                    write.write_all(b"250 queued\r\n").await.unwrap();
                } else {
                    data.push_str(&line);
                    data.push('\n');
                }
                continue;
            }
            let reply: &[u8] = match line.get(..4).unwrap_or("").to_ascii_uppercase().as_str() {
                "EHLO" | "HELO" => b"250 test\r\n",
                "DATA" => {
                    in_data = true;
                    b"354 go on\r\n"
                }
                "QUIT" => {
                    write.write_all(b"221 bye\r\n").await.unwrap();
                    break;
                }
                _ => b"250 ok\r\n",
            };
            write.write_all(reply).await.unwrap();
        }
        let _ = tx.send(data);
    });
    (port, rx)
}

#[allot_tests::test]
async fn email_carries_the_send_key_as_its_message_id() {
    use allot_api::notify::senders::SmtpSender;
    let (port, data) = smtp_server().await;
    let sender = SmtpSender::new("127.0.0.1", port, "allot <no-reply@allot.invalid>").unwrap();
    let mut message = Message {
        send_key: "payment_confirmed.0123abc".into(),
        user_id: 42,
        kind: "payment_confirmed",
        locale: "en".into(),
        email: Some("fan@example.com".into()),
        subject: "Payment received".into(),
        body: "We received 1,500.00 baht.".into(),
    };
    sender.send(&message).await.unwrap();
    let data = tokio::time::timeout(Duration::from_secs(10), data).await.unwrap().unwrap();
    assert!(data.contains("Message-ID: <payment_confirmed.0123abc@allot>"), "{data}");
    assert!(data.contains("Subject: Payment received"), "{data}");
    assert!(data.contains("To: fan@example.com"), "{data}");
    // Nobody to write to: a permanent failure, not a retry.
    message.email = None;
    assert!(matches!(sender.send(&message).await, Err(SendError::Permanent(_))));
}
