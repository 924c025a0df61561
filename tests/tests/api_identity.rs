//! Identity over HTTP: registration, sign-in, refresh rotation, sign-out, TOTP, roles and the
//! dev admin, against the real app with real Postgres and TigerBeetle.

use std::time::{SystemTime, UNIX_EPOCH};

use allot_api::identity::{totp, Role};
use allot_tests::app::TestApp;
use allot_tests::people::national_id;
use rand::Rng;
use reqwest::Method;
use serde_json::{json, Value};

const PASSWORD: &str = "plum-orbit-kettle-92";

/// The same number with the last digit changed: a wrong check digit.
fn with_wrong_check_digit(id: &str) -> String {
    let (head, last) = id.split_at(12);
    let last: u32 = last.parse().unwrap();
    format!("{head}{}", (last + 1) % 10)
}

fn email() -> String {
    format!("user{}@example.com", rand::thread_rng().gen_range(0..u32::MAX))
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn code_now(secret: &str) -> String {
    totp::code_at(secret, now()).unwrap()
}

/// The next step's code: still accepted now (one step of clock drift is), and later than
/// the code a second factor was just confirmed with, which is used up.
fn code_next(secret: &str) -> String {
    totp::code_at(secret, now() + 30).unwrap()
}

/// A 6-digit code that is not valid now, one step either side included.
fn wrong_code(secret: &str) -> String {
    let valid: Vec<String> = [now() - 30, now(), now() + 30]
        .iter()
        .map(|t| totp::code_at(secret, *t).unwrap())
        .collect();
    (0..10).map(|d| d.to_string().repeat(6)).find(|c| !valid.contains(c)).unwrap()
}

async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    bearer: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    app.call(method, path, bearer, body).await
}

async fn register(app: &TestApp, email: &str, national_id: &str) -> i64 {
    let body = json!({"national_id": national_id, "email": email, "password": PASSWORD});
    let (status, res) = call(app, Method::POST, "/v1/users", None, Some(body)).await;
    assert_eq!(status, 201, "{res}");
    res["user_id"].as_i64().unwrap()
}

async fn sign_in(app: &TestApp, login: &str, password: &str, code: Option<&str>) -> (u16, Value) {
    let mut body = json!({"login": login, "password": password});
    if let Some(code) = code {
        body["totp"] = json!(code);
    }
    call(app, Method::POST, "/v1/sessions", None, Some(body)).await
}

/// A registered citizen and a session of theirs.
async fn citizen(app: &TestApp) -> (i64, String, Value) {
    let email = email();
    let user_id = register(app, &email, &national_id()).await;
    let (status, session) = sign_in(app, &email, PASSWORD, None).await;
    assert_eq!(status, 200, "{session}");
    (user_id, email, session)
}

fn access(session: &Value) -> &str {
    session["access_token"].as_str().unwrap()
}

async fn refresh(app: &TestApp, token: &Value) -> (u16, Value) {
    let body = json!({"refresh_token": token});
    call(app, Method::POST, "/v1/sessions/refresh", None, Some(body)).await
}

fn assert_error(status: u16, body: &Value, expected: (u16, &str, Option<&str>)) {
    let (expected_status, code, field) = expected;
    assert_eq!(
        (status, body["code"].as_str(), body["field"].as_str()),
        (expected_status, Some(code), field),
        "{body}"
    );
    assert!(!body["message"].as_str().unwrap_or("").is_empty(), "{body}");
}

/// The dev admin that every dev-mode app creates, signed in with its TOTP.
async fn dev_admin(app: &TestApp) -> (Value, Value) {
    let path = app.data_dir.path().join("dev-credentials.json");
    let creds: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let secret = creds["totp_secret"].as_str().unwrap();
    let (status, session) = sign_in(
        app,
        creds["email"].as_str().unwrap(),
        creds["password"].as_str().unwrap(),
        Some(&code_now(secret)),
    )
    .await;
    assert_eq!(status, 200, "{session}");
    (creds, session)
}

#[allot_tests::test]
async fn a_registered_citizen_signs_in_by_email_or_national_id() {
    let app = TestApp::spawn().await;
    let id = national_id();
    let body = json!({
        "national_id": format!("{}-{}-{}-{}-{}", &id[..1], &id[1..5], &id[5..10], &id[10..12], &id[12..]),
        "email": "  Somchai.J@Example.COM ",
        "password": PASSWORD,
        "display_name": "สมชาย ใจดี",
        "locale": "ja",
    });
    let (status, created) = call(&app, Method::POST, "/v1/users", None, Some(body)).await;
    assert_eq!(status, 201, "{created}");
    let user_id = created["user_id"].as_i64().unwrap();
    assert!(user_id > 0 && user_id < 1 << 53, "{user_id} is not JSON-safe");

    // The email is matched case-insensitively; the national ID with or without dashes.
    let (status, by_email) = sign_in(&app, "somchai.j@example.com", PASSWORD, None).await;
    assert_eq!(status, 200, "{by_email}");
    assert_eq!(by_email["expires_in"], 900);
    assert!(by_email["refresh_token"].as_str().unwrap().len() >= 43);
    let (status, by_id) = sign_in(&app, &id, PASSWORD, None).await;
    assert_eq!(status, 200, "{by_id}");

    let (status, me) = call(&app, Method::GET, "/v1/me", Some(access(&by_id)), None).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(
        me,
        json!({"user_id": user_id, "email": "somchai.j@example.com", "display_name": "สมชาย ใจดี",
               "locale": "ja", "role": "citizen", "mfa_enabled": false,
               "identity": {"kind": "thai_national_id", "country": null, "verification": "unverified"}})
    );
    let claims = app.state.tokens.verify(access(&by_email)).unwrap();
    assert_eq!((claims.sub, claims.role, claims.mfa), (user_id.to_string(), Role::Citizen, false));

    // The database holds a keyed hash of the national ID, never the number itself.
    let row = app
        .db()
        .await
        .query_one(
            "SELECT identity_hash, row_to_json(users)::text, password_hash FROM users
             WHERE user_id = $1",
            &[&user_id],
        )
        .await
        .unwrap();
    let (hash, whole_row, phc): (Vec<u8>, String, String) = (row.get(0), row.get(1), row.get(2));
    assert_eq!(hash.len(), 32);
    assert!(!whole_row.contains(&id), "the raw national ID is stored: {whole_row}");
    assert!(phc.starts_with("$argon2id$"), "{phc}");

    // Locale defaults to Thai; display name is optional.
    let email = email();
    register(&app, &email, &national_id()).await;
    let (_, session) = sign_in(&app, &email, PASSWORD, None).await;
    let (_, me) = call(&app, Method::GET, "/v1/me", Some(access(&session)), None).await;
    assert_eq!((me["locale"].as_str(), &me["display_name"]), (Some("th"), &Value::Null));
}

#[allot_tests::test]
async fn registration_refuses_bad_input_with_the_field_at_fault() {
    let app = TestApp::spawn().await;
    let id = national_id();
    let base = json!({"national_id": id, "email": "somchai@example.com", "password": PASSWORD});
    let with = |key: &str, value: Value| {
        let mut body = base.clone();
        body[key] = value;
        body
    };
    let cases = [
        (
            with("national_id", json!(with_wrong_check_digit(&id))),
            (422, "invalid_national_id", Some("national_id")),
        ),
        (with("national_id", json!("12345")), (400, "validation_error", Some("national_id"))),
        (with("email", json!("somchai.example.com")), (400, "validation_error", Some("email"))),
        (with("email", json!("somchai@localhost")), (400, "validation_error", Some("email"))),
        (
            with("display_name", json!("ก".repeat(101))),
            (400, "validation_error", Some("display_name")),
        ),
        (with("locale", json!("fr")), (400, "validation_error", Some("locale"))),
        (with("password", json!("Sh0rt!pass")), (422, "weak_password", Some("password"))),
        (with("password", json!("password1234")), (422, "weak_password", Some("password"))),
        (
            with("password", json!("Somchai-plum-orbit-92")),
            (422, "weak_password", Some("password")),
        ),
        (with("password", json!(format!("kettle-{id}"))), (422, "weak_password", Some("password"))),
        (
            with("password", json!("plum-orbit-kettle-92/".repeat(7))),
            (400, "validation_error", Some("password")),
        ),
        (with("role", json!("admin")), (400, "malformed_json", Some("role"))),
        (json!({"national_id": id, "password": PASSWORD}), (400, "malformed_json", Some("email"))),
        (with("email", json!(42)), (400, "malformed_json", None)),
    ];
    for (body, expected) in cases {
        let (status, res) = call(&app, Method::POST, "/v1/users", None, Some(body.clone())).await;
        assert_error(status, &res, expected);
    }

    let res = app
        .client
        .post(app.url("/v1/users"))
        .header("Content-Type", "application/json")
        .body("{\"national_id\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(res.json::<Value>().await.unwrap()["code"], "malformed_json");

    // Nothing was created by any of the above.
    let count: i64 =
        app.db().await.query_one("SELECT count(*) FROM users", &[]).await.unwrap().get(0);
    assert_eq!(count, 1, "only the dev admin exists");
}

#[allot_tests::test]
async fn errors_speak_the_callers_language() {
    let app = TestApp::spawn().await;
    let body = json!({"national_id": "1234567890120", "email": email(), "password": PASSWORD});
    let res = app
        .client
        .post(app.url("/v1/users"))
        .header("Accept-Language", "th-TH,th;q=0.9,en;q=0.5")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 422);
    assert_eq!(res.headers()["content-language"], "th");
    let error: Value = res.json().await.unwrap();
    assert_eq!(error["code"], "invalid_national_id");
    assert_eq!(error["message"], "เลขประจำตัวประชาชนไม่ถูกต้อง");

    let (status, english) = call(&app, Method::POST, "/v1/users", None, Some(body)).await;
    assert_eq!(status, 422);
    assert_eq!(english["message"], "This is not a valid Thai national ID number.");
}

#[allot_tests::test]
async fn one_account_per_national_id_and_per_email() {
    let app = TestApp::spawn().await;
    let (id, address) = (national_id(), email());
    register(&app, &address, &id).await;

    let body = json!({"national_id": id, "email": email(), "password": PASSWORD});
    let (status, res) = call(&app, Method::POST, "/v1/users", None, Some(body)).await;
    assert_error(status, &res, (409, "duplicate_identity", None));
    let body = json!({"national_id": national_id(), "email": address.to_uppercase(), "password": PASSWORD});
    let (status, res) = call(&app, Method::POST, "/v1/users", None, Some(body)).await;
    assert_error(status, &res, (409, "duplicate_identity", None));

    // Racing registrations of one new identity: exactly one wins, the others are 409s.
    let id = national_id();
    let attempts = (0..6).map(|_| {
        let body = json!({"national_id": id, "email": email(), "password": PASSWORD});
        call(&app, Method::POST, "/v1/users", None, Some(body))
    });
    let mut statuses: Vec<u16> =
        futures::future::join_all(attempts).await.into_iter().map(|(s, _)| s).collect();
    statuses.sort();
    assert_eq!(statuses, [201, 409, 409, 409, 409, 409]);
}

#[allot_tests::test]
async fn a_wrong_login_and_a_wrong_password_look_the_same() {
    let app = TestApp::spawn().await;
    let (_, address, _) = citizen(&app).await;

    let mut answers = Vec::new();
    for (login, password) in [
        (address.as_str(), "plum-orbit-kettle-93"),
        ("nobody@example.com", PASSWORD),
        (national_id().as_str(), PASSWORD),
        ("neither an email nor an id", PASSWORD),
    ] {
        let (status, res) = sign_in(&app, login, password, None).await;
        assert_error(status, &res, (401, "invalid_credentials", None));
        answers.push(res);
    }
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "{answers:?}");

    // That they also take as long is not a test's question (timing is luck on a shared
    // machine): `check_blocking`'s unit test shows each runs exactly one verification of the
    // same cost, and `./ops/bench` reports the measured ratio (sign_in_unknown_to_known).

    let (status, res) = sign_in(&app, &address, &"x".repeat(129), None).await;
    assert_error(status, &res, (400, "validation_error", Some("password")));
    let body = json!({"login": address, "password": PASSWORD, "remember_me": true});
    let (status, res) = call(&app, Method::POST, "/v1/sessions", None, Some(body)).await;
    assert_error(status, &res, (400, "malformed_json", Some("remember_me")));
}

#[allot_tests::test]
async fn refresh_rotates_and_a_reused_token_ends_the_sign_in() {
    let app = TestApp::spawn().await;
    let (user_id, address, first) = citizen(&app).await;
    let (_, _, other_user) = citizen(&app).await;

    let (status, second) = refresh(&app, &first["refresh_token"]).await;
    assert_eq!(status, 200, "{second}");
    assert_ne!(second["refresh_token"], first["refresh_token"]);
    let (status, me) = call(&app, Method::GET, "/v1/me", Some(access(&second)), None).await;
    assert_eq!((status, me["user_id"].as_i64()), (200, Some(user_id)));

    // The first token was rotated away: presenting it again means someone copied it. The
    // whole sign-in ends, including the token the legitimate holder got in exchange.
    let (status, res) = refresh(&app, &first["refresh_token"]).await;
    assert_error(status, &res, (401, "unauthorized", Some("refresh_token")));
    let (status, res) = refresh(&app, &second["refresh_token"]).await;
    assert_error(status, &res, (401, "unauthorized", Some("refresh_token")));

    // Other sign-ins, of this user or another, are untouched.
    let (_, separate) = sign_in(&app, &address, PASSWORD, None).await;
    assert_eq!(refresh(&app, &separate["refresh_token"]).await.0, 200);
    assert_eq!(refresh(&app, &other_user["refresh_token"]).await.0, 200);

    for token in
        [json!("not a token"), json!(""), json!("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")]
    {
        let (status, res) = refresh(&app, &token).await;
        assert_error(status, &res, (401, "unauthorized", Some("refresh_token")));
    }
    let body = json!({"refresh_token": separate["refresh_token"], "extra": 1});
    let (status, res) = call(&app, Method::POST, "/v1/sessions/refresh", None, Some(body)).await;
    assert_error(status, &res, (400, "malformed_json", Some("extra")));
}

#[allot_tests::test]
async fn an_expired_refresh_token_is_refused() {
    let app = TestApp::spawn().await;
    let (_, _, session) = citizen(&app).await;
    app.db()
        .await
        .execute("UPDATE refresh_tokens SET expires_at = now() - INTERVAL '1 second'", &[])
        .await
        .unwrap();
    let (status, res) = refresh(&app, &session["refresh_token"]).await;
    assert_error(status, &res, (401, "unauthorized", Some("refresh_token")));
}

#[allot_tests::test]
async fn sign_out_ends_one_sign_in_or_all_of_them() {
    let app = TestApp::spawn().await;
    let (_, address, one) = citizen(&app).await;
    let (_, two) = sign_in(&app, &address, PASSWORD, None).await;
    let (_, three) = sign_in(&app, &address, PASSWORD, None).await;

    let body = json!({"refresh_token": one["refresh_token"]});
    let (status, _) = call(&app, Method::DELETE, "/v1/sessions", None, Some(body.clone())).await;
    assert_eq!(status, 204);
    assert_eq!(refresh(&app, &one["refresh_token"]).await.0, 401);
    // Signing out twice, or with a token we never issued, is still a 204.
    assert_eq!(call(&app, Method::DELETE, "/v1/sessions", None, Some(body)).await.0, 204);
    let unknown = json!({"refresh_token": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"});
    assert_eq!(call(&app, Method::DELETE, "/v1/sessions", None, Some(unknown)).await.0, 204);

    let (status, two) = refresh(&app, &two["refresh_token"]).await;
    assert_eq!(status, 200, "{two}");

    // With the bearer and no body: every sign-in of the caller ends.
    let (status, _) = call(&app, Method::DELETE, "/v1/sessions", Some(access(&three)), None).await;
    assert_eq!(status, 204);
    assert_eq!(refresh(&app, &two["refresh_token"]).await.0, 401);
    assert_eq!(refresh(&app, &three["refresh_token"]).await.0, 401);

    let (status, res) = call(&app, Method::DELETE, "/v1/sessions", None, None).await;
    assert_error(status, &res, (401, "unauthorized", None));
    let res = app
        .client
        .delete(app.url("/v1/sessions"))
        .header("Content-Type", "application/json")
        .body("{\"refresh_token\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(res.json::<Value>().await.unwrap()["code"], "malformed_json");
    let body = json!({"refresh_token": "x", "all": true});
    let (status, res) = call(&app, Method::DELETE, "/v1/sessions", None, Some(body)).await;
    assert_error(status, &res, (400, "malformed_json", Some("all")));
}

#[allot_tests::test]
async fn an_enrolled_authenticator_is_required_at_sign_in() {
    let app = TestApp::spawn().await;
    let (_, address, session) = citizen(&app).await;
    let token = access(&session).to_owned();

    let (status, res) = call(&app, Method::POST, "/v1/me/mfa", None, None).await;
    assert_error(status, &res, (401, "unauthorized", None));

    let with_password = Some(json!({"password": PASSWORD}));
    let (status, enrolment) =
        call(&app, Method::POST, "/v1/me/mfa", Some(&token), with_password.clone()).await;
    assert_eq!(status, 201, "{enrolment}");
    let secret = enrolment["secret"].as_str().unwrap().to_owned();
    let url = enrolment["otpauth_url"].as_str().unwrap();
    assert!(url.starts_with("otpauth://totp/allot:"), "{url}");
    assert!(url.contains(&format!("secret={secret}")) && url.contains("issuer=allot"), "{url}");

    // Not confirmed yet: sign-in does not ask for a code.
    assert_eq!(sign_in(&app, &address, PASSWORD, None).await.0, 200);
    let (_, me) = call(&app, Method::GET, "/v1/me", Some(&token), None).await;
    assert_eq!(me["mfa_enabled"], false);

    let confirm = |code: String| {
        let token = token.clone();
        let app = &app;
        async move {
            let body = json!({"code": code});
            call(app, Method::POST, "/v1/me/mfa/confirm", Some(&token), Some(body)).await
        }
    };
    let (status, res) = confirm(wrong_code(&secret)).await;
    assert_error(status, &res, (401, "invalid_mfa_code", Some("code")));
    let (status, res) = confirm("12345".into()).await;
    assert_error(status, &res, (401, "invalid_mfa_code", Some("code")));
    let (status, res) = confirm(code_now(&secret)).await;
    assert_eq!((status, res), (200, json!({"mfa_enabled": true})));
    let (_, me) = call(&app, Method::GET, "/v1/me", Some(&token), None).await;
    assert_eq!(me["mfa_enabled"], true);

    // From now on the code is required, and it must be right.
    let (status, res) = sign_in(&app, &address, PASSWORD, None).await;
    assert_error(status, &res, (401, "mfa_required", Some("totp")));
    let (status, res) = sign_in(&app, &address, PASSWORD, Some(&wrong_code(&secret))).await;
    assert_error(status, &res, (401, "invalid_mfa_code", Some("totp")));
    // A right code does not excuse a wrong password.
    let (status, res) =
        sign_in(&app, &address, "plum-orbit-kettle-93", Some(&code_now(&secret))).await;
    assert_error(status, &res, (401, "invalid_credentials", None));
    let (status, session) = sign_in(&app, &address, PASSWORD, Some(&code_next(&secret))).await;
    assert_eq!(status, 200, "{session}");
    assert!(app.state.tokens.verify(access(&session)).unwrap().mfa);

    // An enabled factor cannot be swapped by whoever holds an access token.
    let (status, res) = call(&app, Method::POST, "/v1/me/mfa", Some(&token), with_password).await;
    assert_error(status, &res, (403, "forbidden", None));
    let body = json!({"code": code_now(&secret), "remember": true});
    let (status, res) =
        call(&app, Method::POST, "/v1/me/mfa/confirm", Some(&token), Some(body)).await;
    assert_error(status, &res, (400, "malformed_json", Some("remember")));
}

#[allot_tests::test]
async fn confirming_without_enrolling_is_an_invalid_code() {
    let app = TestApp::spawn().await;
    let (_, _, session) = citizen(&app).await;
    let body = json!({"code": "123456"});
    let (status, res) =
        call(&app, Method::POST, "/v1/me/mfa/confirm", Some(access(&session)), Some(body)).await;
    assert_error(status, &res, (401, "invalid_mfa_code", Some("code")));
}

#[allot_tests::test]
async fn the_dev_admin_exists_once_with_private_credentials() {
    let app = TestApp::spawn().await;
    let path = app.data_dir.path().join("dev-credentials.json");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let written = std::fs::read(&path).unwrap();

    let (creds, session) = dev_admin(&app).await;
    assert_eq!(creds["email"], "admin@allot.local");
    let (_, me) = call(&app, Method::GET, "/v1/me", Some(access(&session)), None).await;
    assert_eq!((me["role"].as_str(), me["mfa_enabled"].as_bool()), (Some("admin"), Some(true)));
    // The admin's role demands the code: without it there is no session at all.
    let (status, res) =
        sign_in(&app, "admin@allot.local", creds["password"].as_str().unwrap(), None).await;
    assert_error(status, &res, (401, "mfa_required", Some("totp")));

    // A restart finds the admin and changes nothing.
    let (identity, data_dir) = (&app.state.identity, &app.state.settings.data_dir);
    allot_api::identity::dev_bootstrap::ensure_admin(identity, data_dir).await.unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), written);
    let admins: i64 = app
        .db()
        .await
        .query_one("SELECT count(*) FROM users WHERE role = 'admin'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(admins, 1);
}

#[allot_tests::test]
async fn an_admin_assigns_roles_and_staff_must_enrol_a_second_factor() {
    let app = TestApp::spawn().await;
    let (_, admin) = dev_admin(&app).await;
    let admin_token = access(&admin).to_owned();
    let (user_id, address, citizen_session) = citizen(&app).await;
    let (other_id, _, _) = citizen(&app).await;
    let role_path = |id: i64| format!("/v1/admin/users/{id}/role");
    let set_role = |token: String, id: i64, role: &'static str| {
        let app = &app;
        let path = role_path(id);
        async move { call(app, Method::PUT, &path, Some(&token), Some(json!({"role": role}))).await }
    };

    // Only an admin may; a bad role, a missing user and a bad id are the caller's mistakes.
    let (status, res) = set_role(access(&citizen_session).into(), other_id, "admin").await;
    assert_error(status, &res, (403, "forbidden", None));
    let body = Some(json!({"role": "admin"}));
    let (status, res) = call(&app, Method::PUT, &role_path(other_id), None, body).await;
    assert_error(status, &res, (401, "unauthorized", None));
    let (status, res) = set_role(admin_token.clone(), user_id, "superuser").await;
    assert_error(status, &res, (400, "validation_error", Some("role")));
    let (status, res) = set_role(admin_token.clone(), 12_345, "finance").await;
    assert_error(status, &res, (404, "not_found", Some("user_id")));
    let body = Some(json!({"role": "finance"}));
    let (status, res) =
        call(&app, Method::PUT, "/v1/admin/users/abc/role", Some(&admin_token), body).await;
    assert_error(status, &res, (400, "validation_error", Some("path")));
    let admin_id = app.state.tokens.verify(&admin_token).unwrap().sub.parse().unwrap();
    let (status, res) = set_role(admin_token.clone(), admin_id, "citizen").await;
    assert_error(status, &res, (403, "forbidden", Some("user_id")));

    let (status, res) = set_role(admin_token.clone(), user_id, "admin").await;
    assert_eq!((status, res), (200, json!({"user_id": user_id, "role": "admin"})));

    // The new admin can still sign in without a second factor, but only to enrol one.
    let (status, staff) = sign_in(&app, &address, PASSWORD, None).await;
    assert_eq!(status, 200, "{staff}");
    let claims = app.state.tokens.verify(access(&staff)).unwrap();
    assert_eq!((claims.role, claims.mfa), (Role::Admin, false));
    let (status, res) = set_role(access(&staff).into(), other_id, "finance").await;
    assert_error(status, &res, (403, "mfa_enrollment_required", None));

    let (status, enrolment) = call(
        &app,
        Method::POST,
        "/v1/me/mfa",
        Some(access(&staff)),
        Some(json!({"password": PASSWORD})),
    )
    .await;
    assert_eq!(status, 201, "{enrolment}");
    let secret = enrolment["secret"].as_str().unwrap();
    let body = json!({"code": code_now(secret)});
    let (status, _) =
        call(&app, Method::POST, "/v1/me/mfa/confirm", Some(access(&staff)), Some(body)).await;
    assert_eq!(status, 200);

    // Refreshing after enrolment carries the second factor; now the admin may act.
    let (status, refreshed) = refresh(&app, &staff["refresh_token"]).await;
    assert_eq!(status, 200, "{refreshed}");
    assert!(app.state.tokens.verify(access(&refreshed)).unwrap().mfa);
    let (status, res) = set_role(access(&refreshed).into(), other_id, "finance").await;
    assert_eq!((status, res), (200, json!({"user_id": other_id, "role": "finance"})));

    // A demotion ends the demoted admin's sessions at once: tokens and refresh alike.
    let (status, _) = set_role(admin_token.clone(), user_id, "citizen").await;
    assert_eq!(status, 200);
    let (status, res) = set_role(access(&refreshed).into(), other_id, "citizen").await;
    assert_error(status, &res, (401, "unauthorized", None));
    assert_eq!(refresh(&app, &refreshed["refresh_token"]).await.0, 401);
    let (_, demoted) = sign_in(&app, &address, PASSWORD, Some(&code_next(secret))).await;
    assert_eq!(app.state.tokens.verify(access(&demoted)).unwrap().role, Role::Citizen);
    let (status, res) = set_role(access(&demoted).into(), other_id, "citizen").await;
    assert_error(status, &res, (403, "forbidden", None));
}

#[allot_tests::test]
async fn registration_costs_a_proof_of_work_that_works_once() {
    let app = TestApp::spawn().await;
    let body = json!({"national_id": "1-2345-67890-12-1", "email": email(), "password": PASSWORD});
    let res = app.client.post(app.url("/v1/users")).json(&body).send().await.unwrap();
    assert_eq!(res.status(), 403);
    assert_eq!(res.json::<Value>().await.unwrap()["code"], "proof_of_work_required");

    let pow = app.pow().await;
    let res = app
        .client
        .post(app.url("/v1/users"))
        .header("X-Pow", &pow)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let other = json!({"national_id": "1-1037-00000-00-3", "email": email(), "password": PASSWORD});
    let res = app
        .client
        .post(app.url("/v1/users"))
        .header("X-Pow", &pow)
        .json(&other)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403, "a solution is spent once used");
    assert_eq!(res.json::<Value>().await.unwrap()["code"], "proof_of_work_invalid");
}
