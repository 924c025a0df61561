//! Attacks on a running instance, over HTTP and the command line: production is the
//! default, development is refused where others can reach it, play money pays only its
//! owner's sandbox payment, and seed offerings do not go on sale by themselves.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use allot_api::identity::Role;
use allot_api::startup::Application;
use allot_tests::app::{fresh_database, seed_offerings_dir, settings, tickets, TestApp};
use allot_tests::tigerbeetle;
use serde_json::{json, Value};

fn api_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().unwrap().parent().unwrap().join("allot-api");
    assert!(bin.exists(), "{} missing: ./ops/test builds it before the tests", bin.display());
    bin
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Runs the API binary with only `envs` (and stores to talk to) and waits for it to exit.
/// `None`: still running after `limit`, i.e. it started serving; it is killed then.
async fn run_until_exit(envs: &[(&str, &str)], data_dir: &Path, limit: Duration) -> Option<Output> {
    let database_url = fresh_database().await;
    let mut child = Command::new(api_binary())
        .env_clear()
        .env("ALLOT_CONFIG", "/nonexistent/allot.toml")
        .env("ALLOT_DATABASE_URL", &database_url)
        .env("ALLOT_TB_ADDRESSES", tigerbeetle::shared().address())
        .env("ALLOT_DATA_DIR", data_dir)
        .env("ALLOT_OFFERINGS_DIR", "/nonexistent")
        .envs(envs.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn allot-api");
    let start = Instant::now();
    while start.elapsed() < limit {
        if child.try_wait().unwrap().is_some() {
            return Some(child.wait_with_output().unwrap());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    None
}

#[allot_tests::test]
async fn a_server_started_without_configuration_refuses_and_names_every_missing_setting() {
    let data_dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let envs = [("ALLOT_HTTP_ADDR", addr.as_str())];
    let out = run_until_exit(&envs, data_dir.path(), Duration::from_secs(20))
        .await
        .expect("an unconfigured server must refuse to start, not serve in dev mode");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    for setting in [
        "ALLOT_TOKEN_SECRET",
        "ALLOT_IDENTITY_KEY",
        "ALLOT_WEBHOOK_SECRET_BANK",
        "ALLOT_EXPORT_SIGNING_KEY",
        "ALLOT_TICKET_SIGNING_KEY",
        "ALLOT_PROMPTPAY_BILLER_ID",
    ] {
        assert!(stderr.contains(setting), "{setting} not named: {stderr}");
    }
    // Nothing was generated and no admin written on the way.
    assert_eq!(std::fs::read_dir(data_dir.path()).unwrap().count(), 0, "{stderr}");
}

#[allot_tests::test]
async fn dev_mode_on_an_address_others_can_reach_refuses_to_start() {
    let data_dir = tempfile::tempdir().unwrap();
    let addr = format!("0.0.0.0:{}", free_port());
    let envs = [("ALLOT_DEV_MODE", "true"), ("ALLOT_HTTP_ADDR", addr.as_str())];
    let out = run_until_exit(&envs, data_dir.path(), Duration::from_secs(20))
        .await
        .expect("dev mode on 0.0.0.0 must refuse to start");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("loopback"), "{stderr}");
    assert_eq!(std::fs::read_dir(data_dir.path()).unwrap().count(), 0, "{stderr}");
}

async fn reserve_and_open(app: &TestApp, token: &str, gateway: &str) -> (String, String) {
    let key = uuid::Uuid::new_v4().to_string();
    let (status, r) = app.reserve(token, "show", &key, json!({"quantity": 1})).await;
    assert_eq!(status, 201, "{r}");
    let reservation = r["reservation_id"].as_str().unwrap().to_owned();
    let res = app
        .client
        .post(app.url(&format!("/v1/reservations/{reservation}/payments")))
        .bearer_auth(token)
        .json(&json!({"method": "promptpay", "gateway": gateway}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let intent: Value = res.json().await.unwrap();
    (reservation, intent["payment_id"].as_str().unwrap().to_owned())
}

async fn settle(app: &TestApp, payment_id: &str, bearer: Option<&str>) -> (u16, Value) {
    let mut req = app.client.post(app.url(&format!("/v1/sandbox/payments/{payment_id}/settle")));
    if let Some(token) = bearer {
        req = req.bearer_auth(token);
    }
    let res = req.json(&json!({})).send().await.unwrap();
    (res.status().as_u16(), res.json().await.unwrap_or(Value::Null))
}

async fn reservation_status(app: &TestApp, token: &str, id: &str) -> String {
    let res = app
        .client
        .get(app.url(&format!("/v1/reservations/{id}")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let body: Value = res.json().await.unwrap();
    body["status"].as_str().unwrap().to_owned()
}

#[allot_tests::test]
async fn only_the_owner_can_settle_a_sandbox_payment() {
    let app = TestApp::spawn().await;
    app.create_offering(tickets("show", 10, 4, 600)).await;
    let (_, owner) = app.citizen();
    let (reservation, payment) = reserve_and_open(&app, &owner, "sandbox").await;

    let (status, body) = settle(&app, &payment, None).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("unauthorized")), "{body}");
    let (_, stranger) = app.citizen();
    let (status, body) = settle(&app, &payment, Some(&stranger)).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("payment_not_found")), "{body}");
    let staff = app.token(7, Role::Admin);
    assert_eq!(settle(&app, &payment, Some(&staff)).await.0, 404, "not even an admin");
    assert_eq!(reservation_status(&app, &owner, &reservation).await, "held");

    let (status, body) = settle(&app, &payment, Some(&owner)).await;
    assert_eq!((status, body["webhook"]["status"].as_str()), (200, Some("succeeded")), "{body}");
    assert_eq!(reservation_status(&app, &owner, &reservation).await, "confirmed");
}

#[allot_tests::test]
async fn sandbox_money_never_confirms_a_bank_payment() {
    let app = TestApp::spawn().await;
    app.create_offering(tickets("show", 10, 4, 600)).await;
    let (_, owner) = app.citizen();
    let (reservation, payment) = reserve_and_open(&app, &owner, "bank").await;

    let (status, body) = settle(&app, &payment, Some(&owner)).await;
    assert_eq!((status, body["field"].as_str()), (400, Some("payment_id")), "{body}");

    // A sandbox-signed delivery naming the bank payment's reference: booked for refund.
    let intent: Value = app
        .client
        .get(app.url(&format!("/v1/payments/{payment}")))
        .bearer_auth(&owner)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let body = serde_json::to_vec(&json!({
        "transaction_id": "SBX-forged-1",
        "reference": intent["reference"],
        "amount_satang": intent["amount_satang"],
        "paid_at": time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap(),
        "currency": "THB",
    }))
    .unwrap();
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    let sandbox = app.state.payments.gateways().sandbox.as_ref().unwrap();
    let res = app
        .client
        .post(app.url("/v1/payments/webhooks/sandbox"))
        .header("content-type", "application/json")
        .header("X-Allot-Timestamp", &ts)
        .header("X-Allot-Signature", sandbox.sign(&ts, &body))
        .body(body)
        .send()
        .await
        .unwrap();
    let answer: Value = res.json().await.unwrap();
    assert_eq!(answer["status"], "refund_due", "{answer}");
    assert_eq!(answer["reason"], "wrong_gateway", "{answer}");
    assert_eq!(reservation_status(&app, &owner, &reservation).await, "held");
}

/// A production app: every required setting given, dev mode off.
async fn production_app(offerings: PathBuf) -> TestApp {
    let database_url = fresh_database().await;
    let data_dir = tempfile::tempdir().unwrap();
    let mut s = settings(&database_url, data_dir.path(), offerings);
    s.dev_mode = false;
    s.identity.token_secret = "1a".repeat(32).into();
    s.identity.identity_key = "2b".repeat(32).into();
    s.payments.webhook_secret_bank = "3c".repeat(32).into();
    s.exports.signing_key = "4d".repeat(32).into();
    s.tickets.signing_key = "5e".repeat(32).into();
    s.payments.promptpay_biller_id = "099400016550100".into();
    let app = Application::build(s).await.expect("a configured production app builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let state = app.state();
    tokio::spawn(app.run_until_stopped());
    TestApp { address, client: reqwest::Client::new(), state, database_url, data_dir }
}

#[allot_tests::test]
async fn production_loads_seed_offerings_closed_and_has_no_sandbox() {
    let app = production_app(seed_offerings_dir()).await;
    let offerings: Value =
        app.client.get(app.url("/v1/offerings")).send().await.unwrap().json().await.unwrap();
    let offerings = offerings.as_array().unwrap();
    assert!(!offerings.is_empty());
    for o in offerings {
        assert_eq!(o["open"], false, "{o}");
    }
    let (_, citizen) = app.citizen();
    let (status, body) =
        app.reserve(&citizen, "concert-r1", "k1", json!({"zone": "a", "quantity": 1})).await;
    assert_eq!((status, body["code"].as_str()), (409, Some("offering_not_open")), "{body}");
    let (status, _) = settle(&app, "0123456789abcdef0123456789abcd", Some(&citizen)).await;
    assert_eq!(status, 404);
    assert_eq!(std::fs::read_dir(app.data_dir.path()).unwrap().count(), 0, "no dev files");
}

async fn cancel(app: &TestApp, id: &str, token: &str, reason: Option<&str>) -> (u16, Value) {
    let mut req = app.client.delete(app.url(&format!("/v1/reservations/{id}")));
    if let Some(reason) = reason {
        req = req.query(&[("reason", reason)]);
    }
    let res = req.bearer_auth(token).send().await.unwrap();
    (res.status().as_u16(), res.json().await.unwrap_or(Value::Null))
}

/// The audit entries of `action` on `subject`: (actor, after).
async fn audit(app: &TestApp, action: &str, subject: &str) -> Vec<(String, Value)> {
    let rows = app
        .db()
        .await
        .query(
            "SELECT actor, after FROM audit_log WHERE action = $1 AND subject = $2 ORDER BY seq",
            &[&action, &subject],
        )
        .await
        .unwrap();
    rows.iter().map(|r| (r.get(0), r.get(1))).collect()
}

#[allot_tests::test]
async fn staff_cannot_cancel_a_citizens_reservation_and_an_admin_must_give_a_reason() {
    let app = TestApp::spawn().await;
    app.create_offering(tickets("show", 10, 4, 600)).await;
    let (_, owner) = app.citizen();
    let (id, _) = reserve_and_open(&app, &owner, "sandbox").await;

    for (user, role) in [(11, Role::Official), (12, Role::Regulator)] {
        let (status, body) = cancel(&app, &id, &app.token(user, role), Some("because")).await;
        assert_eq!((status, body["code"].as_str()), (404, Some("reservation_not_found")));
    }
    let finance = app.token(13, Role::Finance);
    let (status, body) = cancel(&app, &id, &finance, Some("because")).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("forbidden")), "{body}");
    let admin = app.token(14, Role::Admin);
    let (status, body) = cancel(&app, &id, &admin, None).await;
    assert_eq!((status, body["field"].as_str()), (422, Some("reason")), "{body}");
    assert_eq!(reservation_status(&app, &owner, &id).await, "held", "nothing changed");

    let (status, body) = cancel(&app, &id, &admin, Some("duplicate account, case 42")).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("cancelled")), "{body}");
    let entries = audit(&app, "reservation.admin_cancel", &format!("reservation:{id}")).await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0].0, "user:14");
    assert_eq!(entries[0].1["reason"], "duplicate account, case 42");
}

#[allot_tests::test]
async fn staff_read_only_what_their_role_needs_and_every_read_is_audited() {
    let app = TestApp::spawn().await;
    app.create_offering(tickets("show", 10, 4, 600)).await;
    let (_, owner) = app.citizen();
    let (id, payment) = reserve_and_open(&app, &owner, "sandbox").await;
    let get = |path: String, token: String| {
        let app = &app;
        async move {
            let res = app.client.get(app.url(&path)).bearer_auth(token).send().await.unwrap();
            res.status().as_u16()
        }
    };
    let (reservation_path, payment_path) =
        (format!("/v1/reservations/{id}"), format!("/v1/payments/{payment}"));
    for (user, role) in [(21, Role::Official), (22, Role::Regulator)] {
        assert_eq!(get(reservation_path.clone(), app.token(user, role)).await, 404, "{role:?}");
        assert_eq!(get(payment_path.clone(), app.token(user, role)).await, 404, "{role:?}");
    }
    // The owner's own reads leave no trace; finance's reads each leave one.
    assert_eq!(get(reservation_path.clone(), owner.clone()).await, 200);
    assert!(audit(&app, "reservation.staff_read", &format!("reservation:{id}")).await.is_empty());
    let finance = app.token(23, Role::Finance);
    assert_eq!(get(reservation_path, finance.clone()).await, 200);
    assert_eq!(get(payment_path, finance).await, 200);
    let reads = audit(&app, "reservation.staff_read", &format!("reservation:{id}")).await;
    assert_eq!(reads.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(), ["user:23"]);
    let reads = audit(&app, "payment.staff_read", &format!("payment:{payment}")).await;
    assert_eq!(reads.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(), ["user:23"]);
}

#[allot_tests::test]
async fn a_forged_forwarded_for_does_not_escape_the_per_ip_limit() {
    // Behind a proxy (the peer, 127.0.0.1) that appends the real client's address.
    let database_url = fresh_database().await;
    let data_dir = tempfile::tempdir().unwrap();
    let mut s = settings(&database_url, data_dir.path(), "/nonexistent".into());
    s.http.trust_forwarded_for = true;
    s.fairness.rate_limit_ip_per_second = 1;
    s.fairness.rate_limit_ip_burst = 1;
    let app = Application::build(s).await.unwrap();
    let address = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    let client = reqwest::Client::new();
    let challenge = |forged: u32| {
        let (client, address) = (&client, &address);
        async move {
            // The client writes any address it likes first; the proxy appends the true one.
            let header = format!("203.0.113.{forged}, 198.51.100.7");
            let res = client
                .get(format!("{address}/v1/challenge"))
                .header("X-Forwarded-For", header)
                .send()
                .await
                .unwrap();
            res.status().as_u16()
        }
    };
    assert_eq!(challenge(1).await, 200);
    assert_eq!(challenge(2).await, 429, "a new forged address bought a new allowance");
    assert_eq!(challenge(3).await, 429);
}

/// A bank delivery for `payment`'s reference, signed with `signature(ts, body)`.
async fn bank_delivery(
    app: &TestApp,
    extra: Value,
    signature: impl Fn(&str, &[u8]) -> String,
) -> (u16, Value) {
    let mut body = json!({
        "transaction_id": format!("BANK-{}", uuid::Uuid::new_v4().simple()),
        "reference": "NO-SUCH-REFERENCE",
        "amount_satang": 150_000,
        "paid_at": time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap(),
        "currency": "THB",
    });
    body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    // A null in `extra` leaves the field out.
    body.as_object_mut().unwrap().retain(|_, value| !value.is_null());
    let body = serde_json::to_vec(&body).unwrap();
    let ts = time::OffsetDateTime::now_utc().unix_timestamp().to_string();
    let res = app
        .client
        .post(app.url("/v1/payments/webhooks/bank"))
        .header("content-type", "application/json")
        .header("X-Allot-Timestamp", &ts)
        .header("X-Allot-Signature", signature(&ts, &body))
        .body(body)
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.json().await.unwrap_or(Value::Null))
}

#[allot_tests::test]
async fn a_bank_rotating_its_key_may_send_two_signatures_and_other_currencies_are_refused() {
    let app = TestApp::spawn().await;
    let bank = &app.state.payments.gateways().bank;
    let retired = allot_api::payments::gateway::SignedWebhook::new(
        allot_api::payments::gateway::GatewayKind::Bank,
        vec![0x42; 32],
    );
    let both =
        |ts: &str, body: &[u8]| format!("{}, {}", retired.sign(ts, body), bank.sign(ts, body));
    let (status, answer) = bank_delivery(&app, json!({}), both).await;
    assert_eq!((status, answer["status"].as_str()), (200, Some("unmatched")), "{answer}");
    let only_retired = |ts: &str, body: &[u8]| retired.sign(ts, body);
    assert_eq!(bank_delivery(&app, json!({}), only_retired).await.0, 401);

    // Dollars are not baht: refused, and nothing is recorded.
    let sign = |ts: &str, body: &[u8]| bank.sign(ts, body);
    let (status, answer) = bank_delivery(&app, json!({"currency": "USD"}), sign).await;
    assert_eq!((status, answer["field"].as_str()), (400, Some("currency")), "{answer}");
    let recorded: i64 = app
        .db()
        .await
        .query_one("SELECT count(*) FROM payment_notifications", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(recorded, 1, "only the first delivery is recorded");
    let (status, _) = bank_delivery(&app, json!({"currency": "THB"}), sign).await;
    assert_eq!(status, 200);
}

#[allot_tests::test]
async fn a_bank_notification_without_a_currency_is_refused_not_taken_for_baht() {
    let app = TestApp::spawn().await;
    let bank = &app.state.payments.gateways().bank;
    let sign = |ts: &str, body: &[u8]| bank.sign(ts, body);
    let (status, answer) = bank_delivery(&app, json!({"currency": null}), sign).await;
    assert_eq!(
        (status, answer["code"].as_str(), answer["field"].as_str()),
        (400, Some("validation_error"), Some("currency")),
        "{answer}"
    );
    let recorded: i64 = app
        .db()
        .await
        .query_one("SELECT count(*) FROM payment_notifications", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(recorded, 0, "a notification without a currency was recorded");
}

#[allot_tests::test]
async fn readiness_and_metrics_answer_on_the_operator_listener_only() {
    let database_url = fresh_database().await;
    let data_dir = tempfile::tempdir().unwrap();
    let mut s = settings(&database_url, data_dir.path(), "/nonexistent".into());
    s.http.ops_addr = "127.0.0.1:0".into();
    let app = Application::build(s).await.unwrap();
    let public = format!("http://127.0.0.1:{}", app.port());
    let ops = format!("http://127.0.0.1:{}", app.ops_port().expect("an operator listener"));
    tokio::spawn(app.run_until_stopped());
    let status = |url: String| async move { reqwest::get(url).await.unwrap().status().as_u16() };
    for path in ["/health/ready", "/metrics"] {
        assert_eq!(status(format!("{public}{path}")).await, 404, "{path} on the public listener");
        assert_eq!(status(format!("{ops}{path}")).await, 200, "{path} for operators");
    }
    assert_eq!(status(format!("{public}/health/live")).await, 200);
    assert_eq!(status(format!("{ops}/v1/offerings")).await, 404, "no API on the operator port");
}

#[allot_tests::test]
async fn a_method_a_path_does_not_take_is_405_with_the_methods_it_does() {
    let app = TestApp::spawn().await;
    let res = app.client.delete(app.url("/v1/offerings")).send().await.unwrap();
    assert_eq!(res.status(), 405);
    assert_eq!(res.headers()["allow"], "GET");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], "method_not_allowed");
    let res = app.client.put(app.url("/v1/reservations/abc")).send().await.unwrap();
    assert_eq!(res.status(), 405);
    let allow = res.headers()["allow"].to_str().unwrap().to_owned();
    assert!(allow.contains("GET") && allow.contains("DELETE"), "{allow}");
    let res = app.client.get(app.url("/v1/no-such-thing")).send().await.unwrap();
    assert_eq!(res.status(), 404);
}
