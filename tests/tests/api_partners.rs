//! Bank partners over HTTP against the seeded bond (at most 50,000,000 baht per person):
//! the partner's allocation and the person's cap are both enforced by the ledger, across
//! the partner and direct channels; retried calls hold once; partners are rate-limited.

use allot_api::identity::Role;
use allot_tests::app::TestApp;
use allot_tests::people::national_id;
use rand::Rng;
use reqwest::Method;
use serde_json::{json, Value};

const PASSWORD: &str = "plum-orbit-kettle-92";

async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    bearer: &str,
    body: Option<Value>,
) -> (u16, Value) {
    app.call(method, path, Some(bearer), body).await
}

/// A partner with `units` of the offering: (partner id, client id, client secret).
async fn partner(app: &TestApp, offering: &str, units: u64) -> (i64, String, String) {
    let admin = app.token(1, Role::Admin);
    let name = format!("Bank {}", rand::thread_rng().gen_range(0..u32::MAX));
    let (status, created) =
        call(app, Method::POST, "/v1/admin/partners", &admin, Some(json!({"name": name}))).await;
    assert_eq!(status, 201, "{created}");
    let id = created["partner_id"].as_i64().unwrap();
    let path = format!("/v1/admin/partners/{id}/allocations/{offering}");
    let (status, granted) =
        call(app, Method::PUT, &path, &admin, Some(json!({"units": units}))).await;
    assert_eq!(status, 200, "{granted}");
    assert_eq!(granted["units"], units);
    let client_id = created["client_id"].as_str().unwrap().to_owned();
    (id, client_id, created["client_secret"].as_str().unwrap().to_owned())
}

/// The client-credentials grant.
async fn partner_token(app: &TestApp, client_id: &str, secret: &str) -> (u16, Value) {
    let res = app
        .client
        .post(app.url("/v1/partner/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_secret", secret),
        ])
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn partner_reserve(
    app: &TestApp,
    token: &str,
    offering: &str,
    key: &str,
    body: Value,
) -> (u16, Value) {
    let res = app
        .client
        .post(app.url(&format!("/v1/partner/offerings/{offering}/reservations")))
        .bearer_auth(token)
        .header("Idempotency-Key", key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// A citizen registered with `national_id`, verified through the sandbox provider.
async fn verified_citizen(app: &TestApp, national_id: &str) -> (i64, String) {
    let email = format!("c{}@example.com", rand::thread_rng().gen_range(0..u32::MAX));
    let body = json!({"national_id": national_id, "email": email, "password": PASSWORD});
    let res = app
        .client
        .post(app.url("/v1/users"))
        .header("X-Pow", app.pow().await)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let user = res.json::<Value>().await.unwrap()["user_id"].as_i64().unwrap();
    let login = json!({"login": email, "password": PASSWORD});
    let res = app.client.post(app.url("/v1/sessions")).json(&login).send().await.unwrap();
    let token = res.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned();
    let (status, _) = call(app, Method::POST, "/v1/me/kyc", &token, None).await;
    assert_eq!(status, 201);
    let path = format!("/v1/sandbox/kyc/{user}");
    let (status, v) =
        call(app, Method::POST, &path, &token, Some(json!({"decision": "approved"}))).await;
    assert_eq!((status, v["verification"].as_str()), (200, Some("verified")));
    (user, token)
}

#[allot_tests::test]
async fn a_partner_tops_up_a_customer_to_the_cap_and_no_further_and_stays_within_its_allocation() {
    let app = TestApp::spawn_with_seeds().await;
    let (partner_id, client_id, secret) = partner(&app, "bond-2026", 3_000_000).await;
    let (status, token) = partner_token(&app, &client_id, &secret).await;
    assert_eq!(status, 200, "{token}");
    let token = token["access_token"].as_str().unwrap().to_owned();

    // The customer holds 49,000,000 baht directly.
    let citizen_id = national_id();
    let (user, citizen) = verified_citizen(&app, &citizen_id).await;
    let (status, direct) =
        app.reserve(&citizen, "bond-2026", "d1", json!({"quantity": 49_000_000})).await;
    assert_eq!(status, 201, "{direct}");

    // Through the partner: 1,000,000 more succeeds; retried, it is the same hold.
    let topup = json!({"national_id": citizen_id, "quantity": 1_000_000});
    let (status, first) = partner_reserve(&app, &token, "bond-2026", "p1", topup.clone()).await;
    assert_eq!(status, 201, "{first}");
    let retries = futures::future::join_all(
        (0..4).map(|_| partner_reserve(&app, &token, "bond-2026", "p1", topup.clone())),
    )
    .await;
    for (status, again) in retries {
        assert_eq!((status, &again["reservation_id"]), (200, &first["reservation_id"]), "{again}");
    }
    let offering = app.state.catalog.get("bond-2026").unwrap();
    let balance = app.state.ledger.person_balance(&offering.spec, user as u64).await.unwrap();
    assert_eq!(balance.held, 50_000_000, "49,000,000 direct + 1,000,000 once");
    let allocation =
        app.state.ledger.partner_balance(&offering.spec, partner_id as u16).await.unwrap().unwrap();
    assert_eq!((allocation.held, allocation.remaining), (1_000_000, 2_000_000));

    // One lot more, through either channel, is over the person's cap.
    let lot = json!({"national_id": citizen_id, "quantity": 1_000});
    let (status, err) = partner_reserve(&app, &token, "bond-2026", "p2", lot).await;
    assert_eq!((status, err["code"].as_str()), (409, Some("person_limit_exceeded")), "{err}");
    let (status, err) = app.reserve(&citizen, "bond-2026", "d2", json!({"quantity": 5_000})).await;
    assert_eq!((status, err["code"].as_str()), (409, Some("person_limit_exceeded")), "{err}");

    // Another customer, who has no account: 2,000,000 uses the rest of the allocation, and
    // one lot more for a third is past it.
    let second_id = national_id();
    let rest = json!({"national_id": second_id, "quantity": 2_000_000});
    let (status, second) = partner_reserve(&app, &token, "bond-2026", "p3", rest).await;
    assert_eq!(status, 201, "{second}");
    let over = json!({"national_id": national_id(), "quantity": 5_000});
    let (status, err) = partner_reserve(&app, &token, "bond-2026", "p4", over).await;
    assert_eq!((status, err["code"].as_str()), (409, Some("partner_allocation_exceeded")), "{err}");
    let allocation =
        app.state.ledger.partner_balance(&offering.spec, partner_id as u16).await.unwrap().unwrap();
    assert_eq!(allocation.remaining, 0);

    // The partner lists its customers' reservations (from the projection).
    let list = || async {
        let (status, list) =
            call(&app, Method::GET, "/v1/partner/reservations", &token, None).await;
        assert_eq!(status, 200, "{list}");
        list
    };
    app.eventually(std::time::Duration::from_secs(10), || async {
        list().await.as_array().is_some_and(|l| l.len() == 2)
    })
    .await;
    let listed = list().await;
    let ids: Vec<&str> =
        listed.as_array().unwrap().iter().map(|r| r["reservation_id"].as_str().unwrap()).collect();
    assert!(ids.contains(&first["reservation_id"].as_str().unwrap()), "{listed}");
    assert!(listed.as_array().unwrap().iter().any(|r| r["customer"] == user), "{listed}");
    // The customer's own list shows their direct reservation only.
    let (_, mine) = call(&app, Method::GET, "/v1/me/reservations", &citizen, None).await;
    assert!(mine
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["reservation_id"] != first["reservation_id"]));

    // Every hold a partner placed is audited, once.
    let audited: i64 = app
        .db()
        .await
        .query_one("SELECT count(*) FROM audit_log WHERE action = 'partner.reserve'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(audited, 2);
}

#[allot_tests::test]
async fn partner_credentials_and_tokens_are_their_own() {
    let app = TestApp::spawn_with_seeds().await;
    let (_, client_id, secret) = partner(&app, "concert-r1", 10).await;
    let (status, err) = partner_token(&app, &client_id, "not the secret").await;
    assert_eq!((status, err["code"].as_str()), (401, Some("invalid_credentials")), "{err}");
    let (status, _) = partner_token(&app, "partner_unknown", &secret).await;
    assert_eq!(status, 401);
    // A person's token is no partner's.
    let (_, person) = app.citizen();
    let seat = json!({"national_id": national_id(), "quantity": 1, "zone": "b"});
    let (status, _) = partner_reserve(&app, &person, "concert-r1", "k", seat.clone()).await;
    assert_eq!(status, 401);
    // A partner's token is no person's.
    let (_, token) = partner_token(&app, &client_id, &secret).await;
    let token = token["access_token"].as_str().unwrap().to_owned();
    let (status, _) =
        app.reserve(&token, "concert-r1", "k", json!({"quantity": 1, "zone": "b"})).await;
    assert_eq!(status, 401);
    // The secret is stored only hashed.
    let stored: i64 = app
        .db()
        .await
        .query_one(
            "SELECT count(*) FROM partners p WHERE p::text LIKE '%' || $1 || '%'",
            &[&secret],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, 0);
    // Concert seats through a partner: allowed (any verified identity), within 10.
    let (status, held) = partner_reserve(&app, &token, "concert-r1", "s1", seat).await;
    assert_eq!(status, 201, "{held}");
}

#[allot_tests::test]
async fn each_partner_is_rate_limited() {
    let app = TestApp::spawn_configured(allot_tests::app::seed_offerings_dir(), |s| {
        s.fairness.rate_limit_partner_per_second = 1;
    })
    .await;
    let (_, client_id, secret) = partner(&app, "concert-r1", 100).await;
    let (_, token) = partner_token(&app, &client_id, &secret).await;
    let token = token["access_token"].as_str().unwrap().to_owned();
    let mut statuses = Vec::new();
    let start = std::time::Instant::now();
    for _ in 0..4 {
        let (status, _) = call(&app, Method::GET, "/v1/partner/reservations", &token, None).await;
        statuses.push(status);
    }
    // A burst of two, then 429 until the next second (judged only if the calls took less).
    assert_eq!(&statuses[..2], [200, 200]);
    if start.elapsed() < std::time::Duration::from_secs(1) {
        assert!(statuses[2..].contains(&429), "{statuses:?}");
    }
}

/// What the partner's endpoint received: (timestamp, signature, idempotency key, body).
type Received = std::sync::Arc<std::sync::Mutex<Vec<(String, String, String, Vec<u8>)>>>;

/// A partner's webhook endpoint on a free port: it answers 500 to the first delivery (so
/// the outbox must retry) and 200 after, recording each.
async fn webhook_receiver() -> (String, Received) {
    use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
    let received: Received = Default::default();
    let state = web::Data::new(received.clone());
    let server = HttpServer::new(move || {
        App::new().app_data(state.clone()).route(
            "/hook",
            web::post().to(
                |req: HttpRequest, body: web::Bytes, seen: web::Data<Received>| async move {
                    let header = |n: &str| {
                        req.headers().get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned()
                    };
                    let mut seen = seen.lock().unwrap();
                    seen.push((
                        header("X-Allot-Timestamp"),
                        header("X-Allot-Signature"),
                        header("Idempotency-Key"),
                        body.to_vec(),
                    ));
                    if seen.len() == 1 {
                        HttpResponse::InternalServerError().finish()
                    } else {
                        HttpResponse::Ok().finish()
                    }
                },
            ),
        )
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .unwrap();
    let port = server.addrs()[0].port();
    tokio::spawn(server.run());
    (format!("http://127.0.0.1:{port}/hook"), received)
}

#[allot_tests::test]
async fn a_partner_hears_of_its_holds_by_signed_webhooks_retried_through_the_outbox() {
    use hmac::{Hmac, Mac};
    let app = TestApp::spawn_with_seeds().await;
    let (url, received) = webhook_receiver().await;
    let admin = app.token(1, Role::Admin);
    let body = json!({"name": "Webhook Bank", "webhook_url": url});
    let (status, created) =
        call(&app, Method::POST, "/v1/admin/partners", &admin, Some(body)).await;
    assert_eq!(status, 201, "{created}");
    let id = created["partner_id"].as_i64().unwrap();
    let path = format!("/v1/admin/partners/{id}/allocations/concert-r1");
    let (status, _) = call(&app, Method::PUT, &path, &admin, Some(json!({"units": 10}))).await;
    assert_eq!(status, 200);
    let (client_id, secret) =
        (created["client_id"].as_str().unwrap(), created["client_secret"].as_str().unwrap());
    let (_, token) = partner_token(&app, client_id, secret).await;
    let token = token["access_token"].as_str().unwrap().to_owned();
    let seats = json!({"national_id": national_id(), "quantity": 2, "zone": "a"});
    let (status, held) = partner_reserve(&app, &token, "concert-r1", "w1", seats).await;
    assert_eq!(status, 201, "{held}");

    // Refused once, delivered on the retry, with the same key.
    app.eventually(std::time::Duration::from_secs(20), || async {
        received.lock().unwrap().len() >= 2
    })
    .await;
    let seen = received.lock().unwrap().clone();
    assert_eq!(seen[0].2, seen[1].2, "a retry carries the event's key");
    let key = hex::decode(created["webhook_secret"].as_str().unwrap()).unwrap();
    for (timestamp, signature, _, body) in &seen[..2] {
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
        mac.update(format!("{timestamp}.").as_bytes());
        mac.update(body);
        assert_eq!(signature, &format!("v1={}", hex::encode(mac.finalize().into_bytes())));
    }
    let event: Value = serde_json::from_slice(&seen[1].3).unwrap();
    assert_eq!(event["event"], "reservation.status");
    assert_eq!(event["status"], "held");
    assert_eq!(event["reservation_id"], held["reservation_id"]);
    assert_eq!(event["quantity"], 2);
    let sent: String = app
        .db()
        .await
        .query_one("SELECT status FROM outbox WHERE kind = 'partner_status'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(sent, "sent");
}

#[allot_tests::test]
async fn a_partners_customer_pays_at_the_bank_and_the_partner_hears_it_confirmed() {
    use hmac::{Hmac, Mac};
    let bank_key = [0x3cu8; 32];
    let app = TestApp::spawn_configured(allot_tests::app::seed_offerings_dir(), |s| {
        s.payments.webhook_secret_bank = hex::encode(bank_key).into();
    })
    .await;
    let (url, received) = webhook_receiver().await;
    let admin = app.token(1, Role::Admin);
    let body = json!({"name": "Paying Bank", "webhook_url": url});
    let (status, created) =
        call(&app, Method::POST, "/v1/admin/partners", &admin, Some(body)).await;
    assert_eq!(status, 201, "{created}");
    let id = created["partner_id"].as_i64().unwrap();
    let path = format!("/v1/admin/partners/{id}/allocations/bond-2026");
    let (status, _) =
        call(&app, Method::PUT, &path, &admin, Some(json!({"units": 1_000_000}))).await;
    assert_eq!(status, 200);
    let (client_id, secret) =
        (created["client_id"].as_str().unwrap(), created["client_secret"].as_str().unwrap());
    let (_, token) = partner_token(&app, client_id, secret).await;
    let token = token["access_token"].as_str().unwrap().to_owned();
    let order = json!({"national_id": national_id(), "quantity": 100_000});
    let (status, held) = partner_reserve(&app, &token, "bond-2026", "o1", order).await;
    assert_eq!(status, 201, "{held}");
    let reservation = held["reservation_id"].as_str().unwrap().to_owned();

    // Only this partner may open its payment; then the bank's signed webhook confirms it.
    let pay = format!("/v1/partner/reservations/{reservation}/payments");
    let method = json!({"method": "promptpay", "gateway": "bank"});
    let (_, person) = app.citizen();
    let (status, _) = call(&app, Method::POST, &pay, &person, Some(method.clone())).await;
    assert_eq!(status, 401);
    let (status, intent) = call(&app, Method::POST, &pay, &token, Some(method.clone())).await;
    assert_eq!(status, 201, "{intent}");
    assert_eq!(intent["amount_satang"], 1_000_000, "10% of 100,000 baht, in satang");
    let (status, again) = call(&app, Method::POST, &pay, &token, Some(method)).await;
    assert_eq!((status, &again["payment_id"]), (200, &intent["payment_id"]));
    let paid = serde_json::to_vec(&json!({
        "transaction_id": "BANK-TX-1",
        "reference": intent["reference"],
        "amount_satang": 1_000_000,
        "paid_at": time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap(),
        "currency": "THB",
    }))
    .unwrap();
    let ts = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&bank_key).unwrap();
    mac.update(format!("{ts}.").as_bytes());
    mac.update(&paid);
    let res = app
        .client
        .post(app.url("/v1/payments/webhooks/bank"))
        .header("content-type", "application/json")
        .header("X-Allot-Timestamp", ts.to_string())
        .header("X-Allot-Signature", format!("v1={}", hex::encode(mac.finalize().into_bytes())))
        .body(paid)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let offering = app.state.catalog.get("bond-2026").unwrap();
    let allocation =
        app.state.ledger.partner_balance(&offering.spec, id as u16).await.unwrap().unwrap();
    assert_eq!((allocation.held, allocation.confirmed), (0, 100_000));

    // The partner hears it: held, then confirmed (the first delivery refused and retried).
    let statuses = || {
        received
            .lock()
            .unwrap()
            .iter()
            .map(|r| {
                serde_json::from_slice::<Value>(&r.3).unwrap()["status"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect::<Vec<_>>()
    };
    app.eventually(std::time::Duration::from_secs(30), || async {
        let s = statuses();
        s.contains(&"held".to_owned()) && s.contains(&"confirmed".to_owned())
    })
    .await;
}
