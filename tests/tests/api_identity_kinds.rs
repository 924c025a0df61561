//! Identity kinds and eligibility over HTTP, against the seeded offerings (the bond takes
//! verified Thai national IDs only; the concert rounds any verified identity): a fan with a
//! Korean passport, a Thai citizen through the sandbox KYC provider, a forged callback, and
//! one passport one account.

use allot_tests::app::TestApp;
use allot_tests::people::national_id;
use hmac::{Hmac, Mac};
use rand::Rng;
use reqwest::Method;
use serde_json::{json, Value};
use sha2::Sha256;

const PASSWORD: &str = "plum-orbit-kettle-92";

/// The specimen zone of ICAO Doc 9303 Part 4 with Korea as its issuing state: no check
/// digit covers the state, so every printed check digit of the specimen still holds.
const KOR_ZONE: &str = "P<KORERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<\n\
                        L898902C36KOR7408122F1204159ZE184226B<<<<<10";
const KOR_NUMBER: &str = "L898902C3";

fn email() -> String {
    format!("fan{}@example.com", rand::thread_rng().gen_range(0..u32::MAX))
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

/// Registers with `identity` (or a national ID) and signs in: (user id, access token).
async fn register_and_sign_in(app: &TestApp, identity: Value) -> (i64, String) {
    let email = email();
    let mut body = json!({"email": email, "password": PASSWORD});
    match identity.as_str() {
        Some(national_id) => body["national_id"] = json!(national_id),
        None => body["identity"] = identity,
    }
    let (status, res) = call(app, Method::POST, "/v1/users", None, Some(body)).await;
    assert_eq!(status, 201, "{res}");
    let user = res["user_id"].as_i64().unwrap();
    let login = json!({"login": email, "password": PASSWORD});
    let (status, res) = call(app, Method::POST, "/v1/sessions", None, Some(login)).await;
    assert_eq!(status, 200, "{res}");
    (user, res["access_token"].as_str().unwrap().to_owned())
}

async fn approve_at_sandbox(app: &TestApp, user: i64, token: &str, decision: &str) -> Value {
    let (status, opened) = call(app, Method::POST, "/v1/me/kyc", Some(token), None).await;
    assert!(status == 201 || status == 200, "{status} {opened}");
    let path = format!("/v1/sandbox/kyc/{user}");
    let body = json!({"decision": decision});
    let (status, decided) = call(app, Method::POST, &path, Some(token), Some(body)).await;
    assert_eq!(status, 200, "{decided}");
    decided
}

async fn me(app: &TestApp, token: &str) -> Value {
    let (status, me) = call(app, Method::GET, "/v1/me", Some(token), None).await;
    assert_eq!(status, 200, "{me}");
    me
}

async fn audited(app: &TestApp, action: &str, user: i64) -> i64 {
    app.db()
        .await
        .query_one(
            "SELECT count(*) FROM audit_log WHERE action = $1 AND subject = $2",
            &[&action, &format!("user:{user}")],
        )
        .await
        .unwrap()
        .get(0)
}

#[allot_tests::test]
async fn a_korean_passport_fan_reserves_concert_seats_and_is_refused_on_the_bond() {
    let app = TestApp::spawn_with_seeds().await;
    let passport =
        json!({"kind": "passport", "country": "KOR", "number": KOR_NUMBER, "mrz": KOR_ZONE});
    let (user, token) = register_and_sign_in(&app, passport).await;
    let mine = me(&app, &token).await;
    assert_eq!(
        mine["identity"],
        json!({"kind": "passport", "country": "KOR", "verification": "unverified"})
    );
    let seats = json!({"quantity": 2, "zone": "a"});
    let (status, err) = app.reserve(&token, "concert-r1", "s1", seats.clone()).await;
    assert_eq!((status, err["code"].as_str()), (403, Some("kyc_required")), "{err}");

    let decided = approve_at_sandbox(&app, user, &token, "approved").await;
    assert_eq!(decided["verification"], "verified");
    assert_eq!(me(&app, &token).await["identity"]["verification"], "verified");
    // The token from before the approval is judged by it: no new sign-in needed. The round
    // has a waiting room: the fan joins it and reserves once admitted.
    let admission = app.admitted(&token, "concert-r1").await;
    let admitted = Some(admission.as_str());
    let (status, held) = app.reserve_with(&token, "concert-r1", "s2", seats, admitted).await;
    assert_eq!(status, 201, "{held}");
    assert_eq!(held["quantity"], 2);
    // The per-fan limit of 4 is per person: 2 more fit, a fifth does not.
    let two = json!({"quantity": 2, "zone": "b"});
    let (status, _) = app.reserve_with(&token, "concert-r1", "s3", two, admitted).await;
    assert_eq!(status, 201);
    let one = json!({"quantity": 1, "zone": "b"});
    let (status, err) = app.reserve_with(&token, "concert-r1", "s4", one, admitted).await;
    assert_eq!((status, err["code"].as_str()), (409, Some("person_limit_exceeded")), "{err}");

    let (status, err) = app.reserve(&token, "bond-2026", "b1", json!({"quantity": 100_000})).await;
    assert_eq!((status, err["code"].as_str()), (403, Some("identity_not_eligible")), "{err}");
    // In the fan's language, exactly.
    let res = app
        .client
        .post(app.url("/v1/offerings/bond-2026/reservations"))
        .bearer_auth(&token)
        .header("Idempotency-Key", "b2")
        .header("Accept-Language", "ko")
        .json(&json!({"quantity": 100_000}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["message"], "이 판매는 계정에 등록된 신분증 종류로는 예약할 수 없습니다.");
    assert_eq!(audited(&app, "identity.kyc_decision", user).await, 1);
}

#[allot_tests::test]
async fn a_thai_citizen_reserves_the_bond_only_once_verified_and_a_forged_callback_changes_nothing()
{
    let app = TestApp::spawn_with_seeds().await;
    let (user, token) = register_and_sign_in(&app, json!(national_id())).await;
    let bond = json!({"quantity": 100_000});
    let (status, err) = app.reserve(&token, "bond-2026", "k1", bond.clone()).await;
    assert_eq!((status, err["code"].as_str()), (403, Some("kyc_required")), "{err}");

    let (status, opened) = call(&app, Method::POST, "/v1/me/kyc", Some(&token), None).await;
    assert_eq!(status, 201, "{opened}");
    assert_eq!(opened["provider"], "sandbox");
    let request_id = opened["request_id"].as_str().unwrap().to_owned();
    assert_eq!(me(&app, &token).await["identity"]["verification"], "pending");
    // Asking again answers the open request.
    let (status, again) = call(&app, Method::POST, "/v1/me/kyc", Some(&token), None).await;
    assert_eq!((status, again["request_id"].as_str()), (200, Some(request_id.as_str())));

    // Forged approvals: unsigned, signed with a guessed key, a signature for another body,
    // a stale timestamp. Each is refused and none changes the account.
    let body =
        serde_json::to_vec(&json!({"request_id": request_id, "decision": "approved"})).unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let sign = |key: &[u8], ts: i64, body: &[u8]| {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
        mac.update(format!("{ts}.").as_bytes());
        mac.update(body);
        format!("v1={}", hex::encode(mac.finalize().into_bytes()))
    };
    let other = serde_json::to_vec(&json!({"request_id": "x", "decision": "approved"})).unwrap();
    // Each: the headers sent with the genuine body (none, a guessed key, a signature of
    // another body, a stale timestamp).
    let forgeries: Vec<Option<(i64, String)>> = vec![
        None,
        Some((now, sign(b"guessed key guessed key guessed!", now, &body))),
        Some((now, sign(b"guessed key guessed key guessed!", now, &other))),
        Some((now - 3600, sign(&[0u8; 32], now - 3600, &body))),
    ];
    for headers in forgeries {
        let mut req = app
            .client
            .post(app.url("/v1/kyc/callbacks/sandbox"))
            .header("content-type", "application/json")
            .body(body.clone());
        if let Some((ts, signature)) = headers {
            req = req
                .header("X-Allot-Timestamp", ts.to_string())
                .header("X-Allot-Signature", signature);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 401);
        let err: Value = res.json().await.unwrap();
        assert_eq!(err["code"], "invalid_signature");
    }
    assert_eq!(me(&app, &token).await["identity"]["verification"], "pending");
    let (status, err) = app.reserve(&token, "bond-2026", "k2", bond.clone()).await;
    assert_eq!((status, err["code"].as_str()), (403, Some("kyc_required")), "{err}");
    assert_eq!(audited(&app, "identity.kyc_decision", user).await, 0);
    let status: String = app
        .db()
        .await
        .query_one("SELECT status FROM kyc_requests WHERE request_id = $1", &[&request_id])
        .await
        .unwrap()
        .get(0);
    assert_eq!(status, "open");

    // The person approves at the provider; its signed callback verifies the account.
    let decided = approve_at_sandbox(&app, user, &token, "approved").await;
    assert_eq!(
        (decided["request_id"].as_str(), decided["verification"].as_str()),
        (Some(request_id.as_str()), Some("verified"))
    );
    let (status, held) = app.reserve(&token, "bond-2026", "k3", bond).await;
    assert_eq!(status, 201, "{held}");
    assert_eq!(audited(&app, "identity.kyc_request", user).await, 1);
    assert_eq!(audited(&app, "identity.kyc_decision", user).await, 1);
}

#[allot_tests::test]
async fn a_rejected_check_leaves_the_citizen_refused() {
    let app = TestApp::spawn_with_seeds().await;
    let (user, token) = register_and_sign_in(&app, json!(national_id())).await;
    let decided = approve_at_sandbox(&app, user, &token, "rejected").await;
    assert_eq!(decided["verification"], "rejected");
    let (status, err) = app.reserve(&token, "bond-2026", "k", json!({"quantity": 100_000})).await;
    assert_eq!((status, err["code"].as_str()), (403, Some("kyc_required")), "{err}");
    // Someone else cannot decide this person's check at the sandbox.
    let (other, other_token) = register_and_sign_in(&app, json!(national_id())).await;
    assert_ne!(other, user);
    let path = format!("/v1/sandbox/kyc/{user}");
    let body = json!({"decision": "approved"});
    let (status, _) = call(&app, Method::POST, &path, Some(&other_token), Some(body)).await;
    assert_eq!(status, 404);
}

#[allot_tests::test]
async fn one_passport_registers_once_and_a_bad_zone_registers_nothing() {
    let app = TestApp::spawn().await;
    let number = format!("M{:08}", rand::thread_rng().gen_range(0..100_000_000u32));
    let kor = json!({"kind": "passport", "country": "KOR", "number": number});
    register_and_sign_in(&app, kor.clone()).await;
    let users = |app: &TestApp| {
        let app = app.database_url.clone();
        async move {
            let (client, conn) =
                tokio_postgres::connect(&app, tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(conn);
            client.query_one("SELECT count(*) FROM users", &[]).await.unwrap().get::<_, i64>(0)
        }
    };
    let before = users(&app).await;
    // The same passport again, even spelled in lower case with spaces, under another email.
    let same = json!({"kind": "passport", "country": "kor", "number": format!(" {} ", number.to_lowercase())});
    let body = json!({"identity": same, "email": email(), "password": PASSWORD});
    let (status, err) = call(&app, Method::POST, "/v1/users", None, Some(body)).await;
    assert_eq!((status, err["code"].as_str()), (409, Some("duplicate_identity")), "{err}");
    // A zone whose date-of-birth check digit was altered.
    let bad = KOR_ZONE.replace("7408122", "7408123");
    let identity = json!({"kind": "passport", "country": "KOR", "number": KOR_NUMBER, "mrz": bad});
    let body = json!({"identity": identity, "email": email(), "password": PASSWORD});
    let (status, err) = call(&app, Method::POST, "/v1/users", None, Some(body)).await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(
        (err["code"].as_str(), err["field"].as_str()),
        (Some("invalid_passport"), Some("identity.mrz"))
    );
    // A country that is not ISO 3166-1 alpha-3.
    let identity = json!({"kind": "passport", "country": "UTO", "number": KOR_NUMBER});
    let body = json!({"identity": identity, "email": email(), "password": PASSWORD});
    let (status, err) = call(&app, Method::POST, "/v1/users", None, Some(body)).await;
    assert_eq!((status, err["field"].as_str()), (400, Some("identity.country")), "{err}");
    assert_eq!(users(&app).await, before, "nothing was registered");
    // The same number from another state is another passport.
    register_and_sign_in(&app, json!({"kind": "passport", "country": "JPN", "number": number}))
        .await;
    // Nothing of the number is stored in the clear.
    let stored: i64 = app
        .db()
        .await
        .query_one("SELECT count(*) FROM users u WHERE u::text LIKE '%' || $1 || '%'", &[&number])
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, 0);
}

#[allot_tests::test]
async fn a_verified_korean_fan_reserves_a_queued_round_through_the_waiting_room() {
    let app = TestApp::spawn().await;
    let mut round = allot_tests::app::tickets("round-q", 100, 4, 600);
    round["queue"] = json!(true);
    round["eligibility"] = json!({"verified": true});
    app.create_offering(round).await;
    let number = format!("M{:08}", rand::thread_rng().gen_range(0..100_000_000u32));
    let passport = json!({"kind": "passport", "country": "KOR", "number": number});
    let (user, token) = register_and_sign_in(&app, passport).await;
    // Unverified, the fan takes no place in the line.
    let res = app
        .client
        .post(app.url("/v1/offerings/round-q/queue"))
        .bearer_auth(&token)
        .header("X-Pow", app.pow().await)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    assert_eq!(res.json::<Value>().await.unwrap()["code"], "kyc_required");
    approve_at_sandbox(&app, user, &token, "approved").await;

    // Into the waiting room with a solved challenge, then admitted by the room.
    let res = app
        .client
        .post(app.url("/v1/offerings/round-q/queue"))
        .bearer_auth(&token)
        .header("X-Pow", app.pow().await)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let ticket = res.json::<Value>().await.unwrap()["ticket"].as_str().unwrap().to_owned();
    let status = || async {
        let res = app
            .client
            .get(app.url("/v1/offerings/round-q/queue/status"))
            .header("X-Queue-Ticket", &ticket)
            .send()
            .await
            .unwrap();
        res.json::<Value>().await.unwrap()
    };
    app.eventually(std::time::Duration::from_secs(20), || async {
        status().await["status"] == "admitted"
    })
    .await;
    let admission = status().await["admission_token"].as_str().unwrap().to_owned();
    let res = app
        .client
        .post(app.url("/v1/offerings/round-q/reservations"))
        .bearer_auth(&token)
        .header("Idempotency-Key", "q1")
        .header("X-Queue-Admission", &admission)
        .json(&json!({"quantity": 2}))
        .send()
        .await
        .unwrap();
    let status_code = res.status().as_u16();
    let held: Value = res.json().await.unwrap();
    assert_eq!(status_code, 201, "{held}");
    assert_eq!(held["quantity"], 2);
}

/// Texts the SMS gateway adapter POSTs, as the gateway received them.
type Texts = std::sync::Arc<std::sync::Mutex<Vec<Value>>>;

/// An SMS gateway on a free port that accepts every text and keeps it.
async fn sms_gateway() -> (String, Texts) {
    use actix_web::{web, App, HttpResponse, HttpServer};
    let texts: Texts = Default::default();
    let state = web::Data::new(texts.clone());
    let server = HttpServer::new(move || {
        App::new().app_data(state.clone()).route(
            "/sms",
            web::post().to(|body: web::Json<Value>, texts: web::Data<Texts>| async move {
                texts.lock().unwrap().push(body.into_inner());
                HttpResponse::Accepted().finish()
            }),
        )
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .unwrap();
    let port = server.addrs()[0].port();
    tokio::spawn(server.run());
    (format!("http://127.0.0.1:{port}/sms"), texts)
}

#[allot_tests::test]
async fn a_phone_is_verified_by_a_code_sent_through_the_sms_gateway() {
    let (url, texts) = sms_gateway().await;
    let app = TestApp::spawn_configured(allot_tests::app::seed_offerings_dir(), |s| {
        s.identity.sms_url = url;
    })
    .await;
    let phone = format!("+668{:08}", rand::thread_rng().gen_range(0..100_000_000u32));
    let (_, token) = register_and_sign_in(&app, json!({"kind": "phone", "number": phone})).await;
    assert_eq!(
        me(&app, &token).await["identity"],
        json!({"kind": "phone", "country": null, "verification": "unverified"})
    );
    let seat = json!({"quantity": 1, "zone": "b"});
    let (status, err) = app.reserve(&token, "concert-r1", "c1", seat.clone()).await;
    assert_eq!((status, err["code"].as_str()), (403, Some("kyc_required")), "{err}");

    // The code goes only to the registered number, which is named again (it is not stored).
    let other = json!({"number": "+66899999999"});
    let (status, err) =
        call(&app, Method::POST, "/v1/me/identity/code", Some(&token), Some(other)).await;
    assert_eq!((status, err["field"].as_str()), (400, Some("number")), "{err}");
    assert!(texts.lock().unwrap().is_empty());
    let named = json!({"number": phone});
    let (status, sent) =
        call(&app, Method::POST, "/v1/me/identity/code", Some(&token), Some(named)).await;
    assert_eq!((status, sent["sent_to"].as_str()), (202, Some("phone")), "{sent}");
    let text = texts.lock().unwrap()[0].clone();
    assert_eq!(text["to"], phone.as_str());
    let message = text["text"].as_str().unwrap();
    let code: String = message
        .split(|c: char| !c.is_ascii_digit())
        .find(|run| run.len() == 6)
        .unwrap_or_else(|| panic!("no code in {message:?}"))
        .to_owned();

    let wrong = if code == "000000" { "111111" } else { "000000" };
    let (status, err) = call(
        &app,
        Method::POST,
        "/v1/me/identity/verify",
        Some(&token),
        Some(json!({"code": wrong})),
    )
    .await;
    assert_eq!((status, err["code"].as_str()), (400, Some("invalid_verification_code")), "{err}");
    let (status, ok) = call(
        &app,
        Method::POST,
        "/v1/me/identity/verify",
        Some(&token),
        Some(json!({"code": code})),
    )
    .await;
    assert_eq!(status, 200, "{ok}");
    assert_eq!(me(&app, &token).await["identity"]["verification"], "verified");
    let admission = app.admitted(&token, "concert-r1").await;
    let (status, held) = app.reserve_with(&token, "concert-r1", "c2", seat, Some(&admission)).await;
    assert_eq!(status, 201, "{held}");
    // Spent: the same code again is refused.
    let (status, _) = call(
        &app,
        Method::POST,
        "/v1/me/identity/verify",
        Some(&token),
        Some(json!({"code": code})),
    )
    .await;
    assert_eq!(status, 400);
    // The number is nowhere in the database.
    let digits = phone.trim_start_matches('+');
    let db = app.db().await;
    for table in ["users", "identity_codes", "audit_log"] {
        let sql = format!("SELECT count(*) FROM {table} t WHERE t::text LIKE '%' || $1 || '%'");
        let found: i64 = db.query_one(&sql, &[&digits]).await.unwrap().get(0);
        assert_eq!(found, 0, "{table} holds the phone number");
    }
}

/// A KYC provider on a free port: it records each request (bearer, body) and answers a
/// page for the person to approve at.
async fn kyc_provider() -> (String, Texts) {
    use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
    let seen: Texts = Default::default();
    let state = web::Data::new(seen.clone());
    let server = HttpServer::new(move || {
        App::new().app_data(state.clone()).route(
            "/checks",
            web::post().to(
                |req: HttpRequest, body: web::Json<Value>, seen: web::Data<Texts>| async move {
                    let bearer = req
                        .headers()
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    seen.lock()
                        .unwrap()
                        .push(json!({"authorization": bearer, "body": body.into_inner()}));
                    HttpResponse::Ok()
                        .json(json!({"redirect_url": "https://kyc.example/approve/1"}))
                },
            ),
        )
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .unwrap();
    let port = server.addrs()[0].port();
    tokio::spawn(server.run());
    (format!("http://127.0.0.1:{port}/checks"), seen)
}

#[allot_tests::test]
async fn the_http_kyc_adapter_asks_the_configured_provider_and_takes_its_signed_callback() {
    let (url, seen) = kyc_provider().await;
    let callback_key = [0x5au8; 32];
    let app = TestApp::spawn_configured(allot_tests::app::seed_offerings_dir(), |s| {
        s.identity.kyc_url = url;
        s.identity.kyc_key = "provider-api-key".to_owned().into();
        s.identity.kyc_callback_secret = hex::encode(callback_key).into();
    })
    .await;
    let (user, token) = register_and_sign_in(&app, json!(national_id())).await;
    let (status, opened) = call(&app, Method::POST, "/v1/me/kyc", Some(&token), None).await;
    assert_eq!(status, 201, "{opened}");
    assert_eq!(
        (opened["provider"].as_str(), opened["redirect_url"].as_str()),
        (Some("http"), Some("https://kyc.example/approve/1"))
    );
    let asked = seen.lock().unwrap()[0].clone();
    assert_eq!(asked["authorization"], "Bearer provider-api-key");
    assert_eq!(asked["body"]["request_id"], opened["request_id"]);
    assert_eq!(asked["body"]["identity_kind"], "thai_national_id");
    // The sandbox is not there when a provider is configured.
    let path = format!("/v1/sandbox/kyc/{user}");
    let body = json!({"decision": "approved"});
    let (status, _) = call(&app, Method::POST, &path, Some(&token), Some(body)).await;
    assert_eq!(status, 404);

    // The provider calls back, signed with the configured key.
    let body =
        serde_json::to_vec(&json!({"request_id": opened["request_id"], "decision": "approved"}))
            .unwrap();
    let ts = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut mac = Hmac::<Sha256>::new_from_slice(&callback_key).unwrap();
    mac.update(format!("{ts}.").as_bytes());
    mac.update(&body);
    let signature = format!("v1={}", hex::encode(mac.finalize().into_bytes()));
    let res = app
        .client
        .post(app.url("/v1/kyc/callbacks/http"))
        .header("X-Allot-Timestamp", ts.to_string())
        .header("X-Allot-Signature", signature)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(me(&app, &token).await["identity"]["verification"], "verified");
    let (status, held) = app.reserve(&token, "bond-2026", "b", json!({"quantity": 100_000})).await;
    assert_eq!(status, 201, "{held}");
}
