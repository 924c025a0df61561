//! Guessing attacks on sign-in over HTTP: wrong second-factor codes lock the account (and
//! the audit trail says so), a code works once, an account backs off after wrong
//! passwords, and an address that keeps failing pays a proof of work before any hash.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use allot_api::config::Settings;
use allot_api::identity::totp;
use allot_tests::app::TestApp;
use serde_json::{json, Value};

async fn spawn(adjust: impl FnOnce(&mut Settings)) -> TestApp {
    TestApp::spawn_configured(PathBuf::from("/nonexistent"), adjust).await
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// The dev admin's email, password and TOTP secret.
fn admin_credentials(app: &TestApp) -> (String, String, String) {
    let path = app.data_dir.path().join("dev-credentials.json");
    let creds: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let field = |name: &str| creds[name].as_str().unwrap().to_owned();
    (field("email"), field("password"), field("totp_secret"))
}

/// A 6-digit code valid at no step near now.
fn wrong_code(secret: &str) -> String {
    let valid: Vec<String> = [now() - 30, now(), now() + 30]
        .iter()
        .map(|t| totp::code_at(secret, *t).unwrap())
        .collect();
    (0..10).map(|d| d.to_string().repeat(6)).find(|c| !valid.contains(c)).unwrap()
}

/// POST /v1/sessions: (status, Retry-After, body).
async fn sign_in(
    app: &TestApp,
    login: &str,
    password: &str,
    code: Option<&str>,
    pow: Option<String>,
) -> (u16, Option<String>, Value) {
    let mut body = json!({"login": login, "password": password});
    if let Some(code) = code {
        body["totp"] = json!(code);
    }
    let mut req = app.client.post(app.url("/v1/sessions")).json(&body);
    if let Some(pow) = pow {
        req = req.header("X-Pow", pow);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let retry = res.headers().get("Retry-After").map(|v| v.to_str().unwrap().to_owned());
    (status, retry, res.json().await.unwrap_or(Value::Null))
}

async fn audit_count(app: &TestApp, action: &str) -> i64 {
    let db = app.db().await;
    let row =
        db.query_one("SELECT count(*) FROM audit_log WHERE action = $1", &[&action]).await.unwrap();
    row.get(0)
}

#[allot_tests::test]
async fn wrong_second_factor_codes_lock_the_admin_out_and_the_lockout_is_audited() {
    let app = TestApp::spawn().await;
    let (email, password, secret) = admin_credentials(&app);
    for attempt in 1..=5 {
        let (status, _, body) =
            sign_in(&app, &email, &password, Some(&wrong_code(&secret)), None).await;
        assert_eq!((status, body["code"].as_str()), (401, Some("invalid_mfa_code")), "{attempt}");
    }
    // The right code no longer helps: the account is locked for a while.
    let code = totp::code_at(&secret, now()).unwrap();
    let (status, retry, body) = sign_in(&app, &email, &password, Some(&code), None).await;
    assert_eq!((status, body["code"].as_str()), (429, Some("rate_limited")), "{body}");
    let retry: u64 = retry.expect("Retry-After").parse().unwrap();
    assert!((60..=900).contains(&retry), "locked for {retry} s");
    assert_eq!(audit_count(&app, "user.lockout").await, 1);
}

#[allot_tests::test]
async fn a_second_factor_code_signs_in_once() {
    let app = TestApp::spawn().await;
    let (email, password, secret) = admin_credentials(&app);
    let code = totp::code_at(&secret, now()).unwrap();
    let (status, _, body) = sign_in(&app, &email, &password, Some(&code), None).await;
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = sign_in(&app, &email, &password, Some(&code), None).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("invalid_mfa_code")), "{body}");
}

#[allot_tests::test]
async fn an_account_backs_off_after_repeated_wrong_passwords() {
    let app = TestApp::spawn().await;
    let (email, password, _) = admin_credentials(&app);
    for _ in 0..5 {
        let (status, _, body) = sign_in(&app, &email, "wrong-password-1", None, None).await;
        assert_eq!((status, body["code"].as_str()), (401, Some("invalid_credentials")));
    }
    // Even the right password waits now: a guesser gets a handful of tries per minute.
    let (status, retry, body) = sign_in(&app, &email, &password, None, None).await;
    assert_eq!((status, body["code"].as_str()), (429, Some("rate_limited")), "{body}");
    assert!(retry.is_some());
}

#[allot_tests::test]
async fn an_address_that_keeps_failing_pays_a_proof_of_work_before_any_hash() {
    let app = spawn(|s| s.identity.sign_in_pow_after_failures = 3).await;
    let (email, password, secret) = admin_credentials(&app);
    for n in 0..3 {
        let login = format!("nobody{n}@example.com");
        let (status, _, _) = sign_in(&app, &login, "whatever-password", None, None).await;
        assert_eq!(status, 401);
    }
    let (status, _, body) = sign_in(&app, "nobody@example.com", "x-password", None, None).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("proof_of_work_required")), "{body}");
    let (status, _, body) =
        sign_in(&app, &email, &password, None, Some("bm90IGEgc29sdXRpb24=".into())).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("proof_of_work_invalid")), "{body}");
    // With a solved challenge the sign-in goes ahead, and success forgets the failures.
    let code = totp::code_at(&secret, now()).unwrap();
    let (status, _, body) =
        sign_in(&app, &email, &password, Some(&code), Some(app.pow().await)).await;
    assert_eq!(status, 200, "{body}");
    let (status, _, _) = sign_in(&app, "nobody@example.com", "x-password", None, None).await;
    assert_eq!(status, 401);
}
