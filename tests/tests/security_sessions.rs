//! Sessions under attack, over HTTP: an access token dies with its session (sign-out,
//! demotion, a new second factor), a session never gains a second factor it did not pass,
//! enrolling a factor needs the password, a taken-over dev admin keeps no old sessions, and
//! a session ends at its absolute lifetime however often it is refreshed.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use allot_api::config::Settings;
use allot_api::identity::totp;
use allot_tests::app::TestApp;
use allot_tests::people::national_id;
use serde_json::{json, Value};

const PASSWORD: &str = "plum-orbit-kettle-92";

async fn spawn(adjust: impl FnOnce(&mut Settings)) -> TestApp {
    TestApp::spawn_configured(PathBuf::from("/nonexistent"), adjust).await
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

async fn send(
    app: &TestApp,
    req: reqwest::RequestBuilder,
    bearer: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let req = match bearer {
        Some(token) => req.bearer_auth(token),
        None => req,
    };
    let req = match body {
        Some(body) => req.json(&body),
        None => req,
    };
    let res = req.send().await.unwrap();
    let _ = app;
    (res.status().as_u16(), res.json().await.unwrap_or(Value::Null))
}

/// A registered citizen's email, signed in once: (user id, email, session).
async fn citizen(app: &TestApp) -> (i64, String, Value) {
    let email = format!("c{}@example.com", uuid::Uuid::new_v4().simple());
    let body = json!({"national_id": national_id(), "email": email, "password": PASSWORD});
    let req = app.client.post(app.url("/v1/users")).header("X-Pow", app.pow().await);
    let (status, registered) = send(app, req, None, Some(body)).await;
    assert_eq!(status, 201, "{registered}");
    let session = sign_in(app, &email, None).await;
    (registered["user_id"].as_i64().unwrap(), email, session)
}

async fn sign_in(app: &TestApp, login: &str, code: Option<String>) -> Value {
    let mut body = json!({"login": login, "password": PASSWORD});
    if let Some(code) = code {
        body["totp"] = json!(code);
    }
    let (status, session) =
        send(app, app.client.post(app.url("/v1/sessions")), None, Some(body)).await;
    assert_eq!(status, 200, "{session}");
    session
}

fn access(session: &Value) -> &str {
    session["access_token"].as_str().unwrap()
}

async fn me(app: &TestApp, session: &Value) -> u16 {
    send(app, app.client.get(app.url("/v1/me")), Some(access(session)), None).await.0
}

async fn refresh(app: &TestApp, session: &Value) -> (u16, Value) {
    let body = json!({"refresh_token": session["refresh_token"]});
    send(app, app.client.post(app.url("/v1/sessions/refresh")), None, Some(body)).await
}

/// The dev admin, signed in with a fresh code.
async fn admin(app: &TestApp) -> Value {
    let path = app.data_dir.path().join("dev-credentials.json");
    let creds: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let code = totp::code_at(creds["totp_secret"].as_str().unwrap(), now()).unwrap();
    let body = json!({"login": creds["email"], "password": creds["password"], "totp": code});
    let (status, session) =
        send(app, app.client.post(app.url("/v1/sessions")), None, Some(body)).await;
    assert_eq!(status, 200, "{session}");
    session
}

#[allot_tests::test]
async fn an_access_token_stops_working_when_its_session_is_signed_out() {
    let app = TestApp::spawn().await;
    let (_, email, one) = citizen(&app).await;
    let two = sign_in(&app, &email, None).await;
    assert_eq!(me(&app, &one).await, 200);

    let body = json!({"refresh_token": one["refresh_token"]});
    let (status, _) =
        send(&app, app.client.delete(app.url("/v1/sessions")), None, Some(body)).await;
    assert_eq!(status, 204);
    assert_eq!(me(&app, &one).await, 401, "the signed-out session's access token still works");
    assert_eq!(me(&app, &two).await, 200, "another sign-in is untouched");

    // Signing out everywhere with the bearer ends the rest.
    let (status, _) =
        send(&app, app.client.delete(app.url("/v1/sessions")), Some(access(&two)), None).await;
    assert_eq!(status, 204);
    assert_eq!(me(&app, &two).await, 401);
}

#[allot_tests::test]
async fn a_role_change_ends_the_sessions_of_the_person_at_once() {
    let app = TestApp::spawn().await;
    let admin = admin(&app).await;
    let (user_id, _, session) = citizen(&app).await;
    let path = format!("/v1/admin/users/{user_id}/role");
    let body = json!({"role": "finance"});
    let (status, res) =
        send(&app, app.client.put(app.url(&path)), Some(access(&admin)), Some(body)).await;
    assert_eq!(status, 200, "{res}");
    assert_eq!(me(&app, &session).await, 401, "a token minted for the old role still works");
    assert_eq!(refresh(&app, &session).await.0, 401);
}

#[allot_tests::test]
async fn a_session_does_not_gain_a_second_factor_it_never_passed() {
    let app = TestApp::spawn().await;
    let (_, email, elsewhere) = citizen(&app).await;
    let here = sign_in(&app, &email, None).await;
    let body = json!({"password": PASSWORD});
    let (status, enrolment) =
        send(&app, app.client.post(app.url("/v1/me/mfa")), Some(access(&here)), Some(body)).await;
    assert_eq!(status, 201, "{enrolment}");
    let code = totp::code_at(enrolment["secret"].as_str().unwrap(), now()).unwrap();
    let req = app.client.post(app.url("/v1/me/mfa/confirm"));
    let (status, _) = send(&app, req, Some(access(&here)), Some(json!({"code": code}))).await;
    assert_eq!(status, 200);

    // The session that signed in without a code is over; it does not come back with mfa.
    let (status, refreshed) = refresh(&app, &elsewhere).await;
    assert_eq!(status, 401, "refreshed into a second factor it never passed: {refreshed}");
    assert_eq!(me(&app, &elsewhere).await, 401);
    // The session that confirmed the factor carries it.
    let (status, refreshed) = refresh(&app, &here).await;
    assert_eq!(status, 200);
    assert!(app.state.tokens.verify(access(&refreshed)).unwrap().mfa);
}

#[allot_tests::test]
async fn enrolling_a_second_factor_needs_the_password() {
    let app = TestApp::spawn().await;
    let (_, _, session) = citizen(&app).await;
    let enrol = |body: Option<Value>| {
        let (app, token) = (&app, access(&session).to_owned());
        async move { send(app, app.client.post(app.url("/v1/me/mfa")), Some(&token), body).await }
    };
    let (status, res) = enrol(None).await;
    assert_eq!(status, 415, "a token alone enrolled a factor: {res}");
    let (status, res) = enrol(Some(json!({}))).await;
    assert_eq!((status, res["field"].as_str()), (400, Some("password")), "{res}");
    let (status, res) = enrol(Some(json!({"password": "not-my-password-1"}))).await;
    assert_eq!((status, res["code"].as_str()), (401, Some("invalid_credentials")), "{res}");
    let (status, res) = enrol(Some(json!({"password": PASSWORD}))).await;
    assert_eq!(status, 201, "{res}");
}

#[allot_tests::test]
async fn a_taken_over_dev_admin_account_keeps_none_of_its_sessions() {
    let app = TestApp::spawn().await;
    let old = admin(&app).await;
    // The dev admin was demoted; the next start takes the account over again.
    let db = app.db().await;
    db.execute("UPDATE users SET role = 'citizen' WHERE email = 'admin@allot.local'", &[])
        .await
        .unwrap();
    let (identity, data_dir) = (&app.state.identity, &app.state.settings.data_dir);
    allot_api::identity::dev_bootstrap::ensure_admin(identity, data_dir).await.unwrap();
    assert_eq!(refresh(&app, &old).await.0, 401, "an old session of the account lives on");
    assert_eq!(me(&app, &old).await, 401);
}

#[allot_tests::test]
async fn a_session_ends_at_its_absolute_lifetime_however_often_it_is_refreshed() {
    let app = spawn(|s| s.identity.session_seconds_max = 3).await;
    let (_, _, mut session) = citizen(&app).await;
    let (status, next) = refresh(&app, &session).await;
    assert_eq!(status, 200);
    session = next;
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    let (status, res) = refresh(&app, &session).await;
    assert_eq!(status, 401, "refreshed past the session's end: {res}");
}

#[allot_tests::test]
async fn the_code_that_confirmed_a_second_factor_does_not_also_sign_in() {
    let app = TestApp::spawn().await;
    let (_, email, session) = citizen(&app).await;
    let body = json!({"password": PASSWORD});
    let (status, enrolment) =
        send(&app, app.client.post(app.url("/v1/me/mfa")), Some(access(&session)), Some(body))
            .await;
    assert_eq!(status, 201, "{enrolment}");
    let code = totp::code_at(enrolment["secret"].as_str().unwrap(), now()).unwrap();
    let req = app.client.post(app.url("/v1/me/mfa/confirm"));
    let (status, res) = send(&app, req, Some(access(&session)), Some(json!({"code": code}))).await;
    assert_eq!(status, 200, "{res}");

    // Someone who watched the code being typed tries it at once with the password.
    let body = json!({"login": email, "password": PASSWORD, "totp": code});
    let (status, res) =
        send(&app, app.client.post(app.url("/v1/sessions")), None, Some(body)).await;
    assert_eq!(
        (status, res["code"].as_str()),
        (401, Some("invalid_mfa_code")),
        "the confirming code signed in again: {res}"
    );
}
