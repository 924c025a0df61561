//! Unusual-activity rules against real TigerBeetle and Postgres: for each rule, ordinary
//! traffic just under its threshold raises nothing, and the smallest scenario over it
//! raises one alert (rule, subject, evidence, severity), counted in the metric and listed
//! for staff. Staff acknowledge with a note and suspend accounts, both audited; a
//! suspended account can neither sign in nor reserve; the rules themselves block nothing.
//!
//! The rules' loop is off in these apps (`alerts.interval_ms = 0`); each test evaluates
//! them itself at the moments it means, so no test depends on when a loop happened to run.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use allot_api::config::{Settings, Threshold};
use allot_api::identity::{totp, Role};
use allot_tests::app::{tickets, TestApp};
use allot_tests::finance::open_payment;
use allot_tests::people::national_id;
use rand::Rng;
use reqwest::Method;
use serde_json::{json, Value};

const PASSWORD: &str = "plum-orbit-kettle-92";
const WAIT: Duration = Duration::from_secs(20);

async fn spawn(configure: impl FnOnce(&mut Settings)) -> TestApp {
    TestApp::spawn_configured(PathBuf::from("/nonexistent"), |s| {
        s.alerts.interval_ms = 0;
        configure(s);
    })
    .await
}

fn at_most(count: u32) -> Threshold {
    Threshold { window_seconds: 3600, count }
}

async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    app.call(method, path, token, body).await
}

/// Registers an account (from the test's loopback address, with `device` as its device
/// id when given); returns (user id, email).
async fn register(app: &TestApp, device: Option<&str>) -> (i64, String) {
    let email = format!("u{}@example.com", rand::thread_rng().gen_range(0..u32::MAX));
    let body = json!({"national_id": national_id(), "email": email, "password": PASSWORD});
    let mut req = app.client.post(app.url("/v1/users")).header("X-Pow", app.pow().await);
    if let Some(device) = device {
        req = req.header("X-Device-Id", device);
    }
    let res = req.json(&body).send().await.unwrap();
    assert_eq!(res.status(), 201);
    (res.json::<Value>().await.unwrap()["user_id"].as_i64().unwrap(), email)
}

async fn sign_in(app: &TestApp, email: &str, totp: Option<&str>) -> (u16, Value) {
    let mut body = json!({"login": email, "password": PASSWORD});
    if let Some(code) = totp {
        body["totp"] = json!(code);
    }
    call(app, Method::POST, "/v1/sessions", None, Some(body)).await
}

/// Runs the rules once, then returns the alerts staff see for `rule`.
async fn alerts_of(app: &TestApp, rule: &str) -> Vec<Value> {
    app.state.alerts.evaluate().await.expect("rules evaluate");
    let admin = app.token(1, Role::Admin);
    let (status, list) = call(app, Method::GET, "/v1/admin/alerts", Some(&admin), None).await;
    assert_eq!(status, 200, "{list}");
    list.as_array().unwrap().iter().filter(|a| a["rule"] == rule).cloned().collect()
}

/// The firing is counted in the metric under its rule's name.
async fn counted(app: &TestApp, rule: &str) -> bool {
    let text = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    text.lines().any(|l| {
        l.starts_with("allot_unusual_activity_alerts_total{")
            && l.contains(&format!("rule=\"{rule}\""))
    })
}

async fn reserve(app: &TestApp, token: &str, offering: &str) -> String {
    let key = uuid::Uuid::new_v4().to_string();
    let (status, r) = app.reserve(token, offering, &key, json!({"quantity": 1})).await;
    assert_eq!(status, 201, "{r}");
    r["reservation_id"].as_str().unwrap().to_owned()
}

#[allot_tests::test]
async fn many_accounts_from_one_network_or_device_fire_and_a_few_do_not() {
    let app = spawn(|s| s.alerts.registrations_per_source = at_most(3)).await;
    register(&app, Some("phone-A")).await;
    register(&app, Some("phone-A")).await;
    register(&app, Some("phone-B")).await;
    // Ordinary: three accounts on one network would be many; two per device is fine.
    let fired = alerts_of(&app, "registrations_per_source").await;
    let subjects: Vec<&str> = fired.iter().map(|a| a["subject"].as_str().unwrap()).collect();
    assert_eq!(subjects, ["network:127.0.0.0/24"], "{fired:?}");
    let first = fired[0].clone();
    assert_eq!(first["severity"], "warning");
    assert_eq!(first["evidence"]["count"], 3);
    assert_eq!(first["evidence"]["accounts"].as_array().unwrap().len(), 3);

    register(&app, Some("phone-A")).await;
    let fired = alerts_of(&app, "registrations_per_source").await;
    assert_eq!(fired.len(), 2, "the device now too, the network not again: {fired:?}");
    assert!(fired.iter().any(|a| a["subject"].as_str().unwrap().starts_with("device:")));
    assert!(counted(&app, "registrations_per_source").await);
}

#[allot_tests::test]
async fn reserve_and_cancel_churn_fires_and_a_change_of_mind_does_not() {
    let app = spawn(|s| s.alerts.reserve_cancel_churn = at_most(3)).await;
    app.create_offering(tickets("show", 100, 4, 600)).await;
    let (person, token) = app.citizen();
    let db = app.db().await;
    let cancelled = |n: i64| {
        let db = &db;
        async move {
            let sql =
                "SELECT count(*) FROM reservations WHERE user_id = $1 AND status = 'cancelled'";
            db.query_one(sql, &[&person]).await.unwrap().get::<_, i64>(0) >= n
        }
    };
    for round in 1..=3 {
        let id = reserve(&app, &token, "show").await;
        let path = format!("/v1/reservations/{id}");
        let (status, _) = call(&app, Method::DELETE, &path, Some(&token), None).await;
        assert_eq!(status, 200);
        app.eventually(WAIT, || cancelled(round)).await;
        let fired = alerts_of(&app, "reserve_cancel_churn").await;
        if round < 3 {
            assert!(fired.is_empty(), "{round} cancellations are ordinary: {fired:?}");
        } else {
            assert_eq!(fired.len(), 1, "{fired:?}");
            assert_eq!(fired[0]["subject"], format!("user:{person}"));
            assert_eq!(fired[0]["evidence"]["cancelled"].as_array().unwrap().len(), 3);
        }
    }
    // The rule blocks nothing: the same person still reserves.
    reserve(&app, &token, "show").await;
    assert!(counted(&app, "reserve_cancel_churn").await);
}

/// The bank reports `amount` under `reference`, paid from `payer`.
async fn bank_pays_from(app: &TestApp, reference: &str, amount: u64, payer: &str) -> Value {
    let now = time::OffsetDateTime::now_utc();
    let body = serde_json::to_vec(&json!({
        "transaction_id": format!("T{}", uuid::Uuid::new_v4().simple()),
        "reference": reference,
        "amount_satang": amount,
        "paid_at": now.format(&time::format_description::well_known::Rfc3339).unwrap(),
        "payer_account": payer,
        "currency": "THB",
    }))
    .unwrap();
    let ts = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs().to_string();
    let signature = app.state.payments.gateways().bank.sign(&ts, &body);
    let res = app
        .client
        .post(app.url("/v1/payments/webhooks/bank"))
        .header("content-type", "application/json")
        .header("X-Allot-Timestamp", ts)
        .header("X-Allot-Signature", signature)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

#[allot_tests::test]
async fn one_payer_paying_for_many_people_fires_and_a_family_payer_does_not() {
    let app = spawn(|s| s.alerts.payer_many_identities = at_most(3)).await;
    app.create_offering(tickets("show", 100, 4, 600)).await;
    let mut pay_for_someone = Vec::new();
    for _ in 0..3 {
        let (_, token) = app.citizen();
        let id = reserve(&app, &token, "show").await;
        pay_for_someone.push(open_payment(&app, &token, &id).await);
    }
    let pay = |intent: &Value, payer: &'static str| {
        let (reference, amount) = (
            intent["reference"].as_str().unwrap().to_owned(),
            intent["amount_satang"].as_u64().unwrap(),
        );
        let app = &app;
        async move { bank_pays_from(app, &reference, amount, payer).await }
    };
    // Ordinary: one account pays for two people (a parent and a child).
    assert_eq!(pay(&pay_for_someone[0], "111-2-33333-4").await["status"], "succeeded");
    assert_eq!(pay(&pay_for_someone[1], "111-2-33333-4").await["status"], "succeeded");
    assert!(alerts_of(&app, "payer_many_identities").await.is_empty());
    // A third person paid from the same account.
    assert_eq!(pay(&pay_for_someone[2], "111-2-33333-4").await["status"], "succeeded");
    let fired = alerts_of(&app, "payer_many_identities").await;
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!(fired[0]["subject"], "payer:111-2-33333-4");
    assert_eq!(fired[0]["severity"], "critical");
    assert_eq!(fired[0]["evidence"]["people"].as_array().unwrap().len(), 3);
    assert!(counted(&app, "payer_many_identities").await);
}

/// An account with an authenticator enrolled: (user id, email, TOTP secret).
async fn with_second_factor(app: &TestApp) -> (i64, String, String) {
    let (user_id, email) = register(app, None).await;
    let (_, session) = sign_in(app, &email, None).await;
    let token = session["access_token"].as_str().unwrap().to_owned();
    let body = Some(json!({"password": PASSWORD}));
    let (status, enrolment) = call(app, Method::POST, "/v1/me/mfa", Some(&token), body).await;
    assert_eq!(status, 201, "{enrolment}");
    let secret = enrolment["secret"].as_str().unwrap().to_owned();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let body = Some(json!({"code": totp::code_at(&secret, now).unwrap()}));
    let (status, _) = call(app, Method::POST, "/v1/me/mfa/confirm", Some(&token), body).await;
    assert_eq!(status, 200);
    (user_id, email, secret)
}

/// A 6-digit code valid at no step near now.
fn wrong_code(secret: &str) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let valid: Vec<String> =
        [now - 30, now, now + 30].iter().map(|t| totp::code_at(secret, *t).unwrap()).collect();
    (0..10).map(|d| d.to_string().repeat(6)).find(|c| !valid.contains(c)).unwrap()
}

#[allot_tests::test]
async fn repeated_second_factor_failures_fire_and_a_typo_does_not() {
    let app = spawn(|s| s.alerts.mfa_failures = at_most(3)).await;
    let (user_id, email, secret) = with_second_factor(&app).await;
    for attempt in 1..=3 {
        let (status, e) = sign_in(&app, &email, Some(&wrong_code(&secret))).await;
        assert_eq!((status, e["code"].as_str()), (401, Some("invalid_mfa_code")), "{e}");
        let fired = alerts_of(&app, "mfa_failures").await;
        if attempt < 3 {
            assert!(fired.is_empty(), "{attempt} typos are ordinary: {fired:?}");
        } else {
            assert_eq!(fired.len(), 1, "{fired:?}");
            assert_eq!(fired[0]["subject"], format!("user:{user_id}"));
            assert_eq!(fired[0]["evidence"]["networks"], json!(["127.0.0.0/24"]));
        }
    }
    assert!(counted(&app, "mfa_failures").await);
}

#[allot_tests::test]
async fn webhook_signature_failures_fire_and_signed_deliveries_do_not_count() {
    let app = spawn(|s| s.alerts.webhook_signature_failures = at_most(3)).await;
    let forged = |n: u32| {
        let app = &app;
        async move {
            let ts = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs().to_string();
            let res = app
                .client
                .post(app.url("/v1/payments/webhooks/bank"))
                .header("content-type", "application/json")
                .header("X-Allot-Timestamp", ts)
                .header("X-Allot-Signature", format!("v1={}", "ab".repeat(32)))
                .body(format!("{{\"transaction_id\":\"F{n}\"}}"))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 401);
        }
    };
    forged(1).await;
    forged(2).await;
    // A genuine delivery (of unknown money) is no signature failure.
    bank_pays_from(&app, "NOSUCHREF", 100, "999").await;
    assert!(alerts_of(&app, "webhook_signature_failures").await.is_empty());
    forged(3).await;
    let fired = alerts_of(&app, "webhook_signature_failures").await;
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!(fired[0]["subject"], "gateway:bank");
    assert_eq!(fired[0]["severity"], "critical");
    assert!(counted(&app, "webhook_signature_failures").await);
}

#[allot_tests::test]
async fn unmatched_money_above_the_rate_fires_and_one_stray_payment_does_not() {
    let app = spawn(|s| s.alerts.refunds_and_unmatched = at_most(2)).await;
    app.create_offering(tickets("show", 100, 4, 600)).await;
    // Ordinary: one payment that matches, one stray.
    let (_, token) = app.citizen();
    let id = reserve(&app, &token, "show").await;
    let intent = open_payment(&app, &token, &id).await;
    let (reference, amount) =
        (intent["reference"].as_str().unwrap(), intent["amount_satang"].as_u64().unwrap());
    assert_eq!(bank_pays_from(&app, reference, amount, "1").await["status"], "succeeded");
    assert_eq!(bank_pays_from(&app, "NOSUCHREF1", 5_000, "2").await["status"], "unmatched");
    assert!(alerts_of(&app, "refunds_and_unmatched").await.is_empty());
    assert_eq!(bank_pays_from(&app, "NOSUCHREF2", 7_000, "3").await["status"], "unmatched");
    let fired = alerts_of(&app, "refunds_and_unmatched").await;
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!(fired[0]["subject"], "outcome:unmatched");
    assert_eq!(fired[0]["evidence"]["amount_satang"], 12_000);
    assert!(counted(&app, "refunds_and_unmatched").await);
}

#[allot_tests::test]
async fn a_ticket_passed_along_a_chain_fires_and_one_gift_does_not() {
    let app = spawn(|s| {
        s.tickets.transfers_max = 3;
        s.alerts.ticket_transfer_chain = at_most(2);
    })
    .await;
    app.create_offering(tickets("show", 100, 4, 600)).await;
    let (a, _) = register(&app, None).await;
    let (b, b_email) = register(&app, None).await;
    let (c, c_email) = register(&app, None).await;
    let (token_a, token_b) = (app.token(a, Role::Citizen), app.token(b, Role::Citizen));
    // Recipients of tickets have verified identities (the sandbox KYC provider here).
    for (user, token) in [(b, token_b.clone()), (c, app.token(c, Role::Citizen))] {
        let (status, _) = call(&app, Method::POST, "/v1/me/kyc", Some(&token), None).await;
        assert!(status == 200 || status == 201);
        let path = format!("/v1/sandbox/kyc/{user}");
        let body = Some(json!({"decision": "approved"}));
        let (status, decided) = call(&app, Method::POST, &path, Some(&token), body).await;
        assert_eq!(status, 200, "{decided}");
    }
    let id = reserve(&app, &token_a, "show").await;
    let intent = open_payment(&app, &token_a, &id).await;
    let (reference, amount) =
        (intent["reference"].as_str().unwrap(), intent["amount_satang"].as_u64().unwrap());
    bank_pays_from(&app, reference, amount, "1").await;
    let mine = |token: String| {
        let app = &app;
        async move { call(app, Method::GET, "/v1/me/tickets", Some(&token), None).await.1 }
    };
    app.eventually(WAIT, || {
        let t = token_a.clone();
        async { mine(t).await.as_array().is_some_and(|l| l.len() == 1) }
    })
    .await;
    let ticket = format!("{id}-1");
    let path = format!("/v1/tickets/{ticket}/transfer");
    let give = |token: &str, to: &str| {
        let (app, path, token, to) = (&app, path.clone(), token.to_owned(), to.to_owned());
        async move {
            let body = Some(json!({"to_email": to}));
            let (status, res) = call(app, Method::POST, &path, Some(&token), body).await;
            assert_eq!(status, 200, "{res}");
        }
    };
    give(&token_a, &b_email).await;
    assert!(alerts_of(&app, "ticket_transfer_chain").await.is_empty(), "one gift is ordinary");
    give(&token_b, &c_email).await;
    let fired = alerts_of(&app, "ticket_transfer_chain").await;
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!(fired[0]["subject"], format!("ticket:{ticket}"));
    assert_eq!(fired[0]["evidence"]["holders"].as_array().unwrap().len(), 2);
    assert!(counted(&app, "ticket_transfer_chain").await);
}

#[allot_tests::test]
async fn staff_acknowledge_with_a_note_and_suspend_accounts_both_audited() {
    let app = spawn(|s| s.alerts.mfa_failures = at_most(1)).await;
    app.create_offering(tickets("show", 100, 4, 600)).await;
    let (user_id, email, secret) = with_second_factor(&app).await;
    sign_in(&app, &email, Some(&wrong_code(&secret))).await;
    let alert = alerts_of(&app, "mfa_failures").await.remove(0);
    let path = format!("/v1/admin/alerts/{}/acknowledge", alert["id"]);
    let (admin, finance, citizen) =
        (app.token(1, Role::Admin), app.token(2, Role::Finance), app.token(3, Role::Citizen));

    let (status, _) =
        call(&app, Method::POST, &path, Some(&citizen), Some(json!({"note": "x"}))).await;
    assert_eq!(status, 403);
    let (status, e) =
        call(&app, Method::POST, &path, Some(&finance), Some(json!({"note": " "}))).await;
    assert_eq!(
        (status, e["code"].as_str(), e["field"].as_str()),
        (400, Some("validation_error"), Some("note"))
    );
    let note = json!({"note": "called the holder: lost phone"});
    let (status, acked) = call(&app, Method::POST, &path, Some(&finance), Some(note)).await;
    assert_eq!(status, 200, "{acked}");
    assert_eq!(acked["acknowledged_by"], 2);
    assert_eq!(acked["note"], "called the holder: lost phone");
    let (_, open) = call(&app, Method::GET, "/v1/admin/alerts?open=true", Some(&admin), None).await;
    assert!(open.as_array().unwrap().iter().all(|a| a["id"] != alert["id"]), "{open}");
    let (status, e) = call(
        &app,
        Method::POST,
        "/v1/admin/alerts/999999/acknowledge",
        Some(&admin),
        Some(json!({"note": "n"})),
    )
    .await;
    assert_eq!((status, e["code"].as_str()), (404, Some("alert_not_found")));

    // Suspension: the holder's live session ends, sign-in and reservations are refused.
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let code = totp::code_at(&secret, now + 30).unwrap();
    let (status, session) = sign_in(&app, &email, Some(&code)).await;
    assert_eq!(status, 200, "{session}");
    let live = session["access_token"].as_str().unwrap().to_owned();
    reserve(&app, &live, "show").await;
    let path = format!("/v1/admin/users/{user_id}/suspension");
    let body = json!({"suspended": true, "reason": "alert: repeated second-factor failures"});
    let (status, _) = call(&app, Method::PUT, &path, Some(&finance), Some(body.clone())).await;
    assert_eq!(status, 403, "admins only");
    let (status, done) = call(&app, Method::PUT, &path, Some(&admin), Some(body)).await;
    assert_eq!((status, done), (200, json!({"user_id": user_id, "suspended": true})));
    let key = uuid::Uuid::new_v4().to_string();
    let (status, _) = app.reserve(&live, "show", &key, json!({"quantity": 1})).await;
    assert_eq!(status, 401, "the suspended account's session ended");
    let (status, e) = sign_in(&app, &email, None).await;
    assert_eq!((status, e["code"].as_str()), (403, Some("account_suspended")), "{e}");

    let db = app.db().await;
    let actions: Vec<String> = db
        .query("SELECT action FROM audit_log WHERE action IN ('alert.acknowledge', 'user.suspend') ORDER BY seq", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(actions, ["alert.acknowledge", "user.suspend"]);
}
