//! Named tickets against real TigerBeetle and Postgres: a confirmed concert reservation
//! becomes one ticket per seat, bound to its holder; a gate admits each ticket once, even
//! when two gates scan it at the same moment; a transfer makes the old QR worthless; and a
//! forged or altered token is refused offline with nothing but the public key.

use std::time::Duration;

use allot_api::identity::Role;
use allot_api::tickets::token;
use allot_tests::app::{tickets, TestApp};
use allot_tests::people::national_id;
use rand::Rng;
use serde_json::{json, Value};

const PASSWORD: &str = "plum-orbit-kettle-92";
const WAIT: Duration = Duration::from_secs(20);

/// A registered person: (user id, email, access token).
async fn person(app: &TestApp, name: &str, locale: &str) -> (i64, String, String) {
    let email = format!("fan{}@example.com", rand::thread_rng().gen_range(0..u32::MAX));
    let body = json!({"national_id": national_id(), "email": email, "password": PASSWORD,
        "display_name": name, "locale": locale});
    let res = app
        .client
        .post(app.url("/v1/users"))
        .header("X-Pow", app.pow().await)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let user_id = res.json::<Value>().await.unwrap()["user_id"].as_i64().unwrap();
    (user_id, email, app.token(user_id, Role::Citizen))
}

/// Verifies the person's identity at the sandbox KYC provider (dev mode), as a recipient
/// of a ticket must be.
async fn verify_identity(app: &TestApp, user_id: i64, token: &str) {
    let (status, opened) = call(app, reqwest::Method::POST, "/v1/me/kyc", token, None).await;
    assert!(status == 201 || status == 200, "{status} {opened}");
    let path = format!("/v1/sandbox/kyc/{user_id}");
    let body = Some(json!({"decision": "approved"}));
    let (status, decided) = call(app, reqwest::Method::POST, &path, token, body).await;
    assert_eq!((status, decided["verification"].as_str()), (200, Some("verified")), "{decided}");
}

async fn call(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    app.call(method, path, Some(token), body).await
}

/// Reserves `quantity` seats of `offering` for `token`'s holder and pays with play money;
/// returns the reservation id once confirmed.
async fn buy(app: &TestApp, token: &str, offering: &str, quantity: u64) -> String {
    let key = uuid::Uuid::new_v4().to_string();
    let (status, r) = app.reserve(token, offering, &key, json!({ "quantity": quantity })).await;
    assert_eq!(status, 201, "{r}");
    let reservation = r["reservation_id"].as_str().unwrap().to_owned();
    let path = format!("/v1/reservations/{reservation}/payments");
    let (status, intent) =
        call(app, reqwest::Method::POST, &path, token, Some(json!({"method": "promptpay"}))).await;
    assert_eq!(status, 201, "{intent}");
    let path = format!("/v1/sandbox/payments/{}/settle", intent["payment_id"].as_str().unwrap());
    let (status, paid) = call(app, reqwest::Method::POST, &path, token, Some(json!({}))).await;
    assert_eq!(status, 200, "{paid}");
    assert_eq!(paid["webhook"]["status"], "succeeded", "{paid}");
    reservation
}

async fn my_tickets(app: &TestApp, token: &str) -> Vec<Value> {
    let (status, list) = call(app, reqwest::Method::GET, "/v1/me/tickets", token, None).await;
    assert_eq!(status, 200, "{list}");
    list.as_array().unwrap().clone()
}

/// Waits until the holder has `n` tickets (the projector issues them) and returns them.
async fn wait_for_tickets(app: &TestApp, token: &str, n: usize) -> Vec<Value> {
    let mut found = Vec::new();
    app.eventually(WAIT, || {
        let app = &app;
        async move { my_tickets(app, token).await.len() >= n }
    })
    .await;
    found.extend(my_tickets(app, token).await);
    found
}

async fn scan(app: &TestApp, gate: &str, token: &str) -> (u16, Value) {
    call(app, reqwest::Method::POST, "/v1/gate/verify", gate, Some(json!({ "token": token }))).await
}

#[allot_tests::test]
async fn three_confirmed_seats_are_three_named_tickets_in_the_holders_language() {
    let app = TestApp::spawn().await;
    app.create_offering(tickets("show", 100, 4, 600)).await;
    let (_, _, fan) = person(&app, "Somchai Kaewmanee", "th").await;
    let reservation = buy(&app, &fan, "show", 3).await;
    let list = wait_for_tickets(&app, &fan, 3).await;
    assert_eq!(list.len(), 3, "{list:?}");
    let mut seats: Vec<u64> = list.iter().map(|t| t["seat"].as_u64().unwrap()).collect();
    seats.sort();
    assert_eq!(seats, [1, 2, 3]);
    for t in &list {
        assert_eq!(t["ticket_id"], format!("{reservation}-{}", t["seat"]));
        assert_eq!(t["status"], "valid");
        assert_eq!(t["offering_name"], "การแสดงทดสอบ", "the holder's language (th)");
        assert_eq!(t["transfers_left"], 1);
        let svg = t["qr_svg"].as_str().unwrap();
        assert!(svg.contains("<svg") && svg.contains("<title>บัตร: การแสดงทดสอบ"), "{svg}");
        assert_eq!(t["token"].as_str().unwrap().len(), token::TOKEN_CHARS);
    }
    // Replayed from the start (as after a crash before the checkpoint moved), the projector
    // sees the confirmation again and makes no extra tickets.
    let db = app.db().await;
    db.execute("UPDATE projector_checkpoints SET last_timestamp = 0", &[]).await.unwrap();
    app.eventually(WAIT, || {
        let db = &db;
        async move {
            let row = db.query_one("SELECT min(last_timestamp) FROM projector_checkpoints", &[]);
            row.await.unwrap().get::<_, Option<i64>>(0).unwrap_or(0) > 0
        }
    })
    .await;
    let n: i64 = db
        .query_one("SELECT count(*) FROM tickets WHERE reservation_id = $1", &[&reservation])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 3);
}

#[allot_tests::test]
async fn a_ticket_admits_once_and_two_concurrent_scans_admit_exactly_one() {
    let app = TestApp::spawn().await;
    app.create_offering(tickets("show", 100, 10, 600)).await;
    let (_, _, fan) = person(&app, "Anna Maria Souza", "en").await;
    buy(&app, &fan, "show", 2).await;
    let list = wait_for_tickets(&app, &fan, 2).await;
    let gate = app.token(900_001, Role::Gate);

    let first = list[0]["token"].as_str().unwrap();
    let (status, admitted) = scan(&app, &gate, first).await;
    assert_eq!(status, 200, "{admitted}");
    assert_eq!(admitted["admitted"], true);
    assert_eq!(admitted["holder_initials"], "A. M. S.");
    assert_eq!(admitted["identity_kind"], "thai_national_id");
    let (status, again) = scan(&app, &gate, first).await;
    assert_eq!((status, again["code"].as_str()), (409, Some("ticket_already_used")), "{again}");

    // Two gates at the same moment, many times over on fresh tickets: one admits each time.
    let second = list[1]["token"].as_str().unwrap().to_owned();
    let other_gate = app.token(900_002, Role::Gate);
    let (a, b) = tokio::join!(scan(&app, &gate, &second), scan(&app, &other_gate, &second));
    let mut statuses = [a.0, b.0];
    statuses.sort();
    assert_eq!(statuses, [200, 409], "{a:?} {b:?}");
    for _ in 0..5 {
        buy(&app, &fan, "show", 1).await;
    }
    let all = wait_for_tickets(&app, &fan, 7).await;
    for t in all.iter().filter(|t| t["status"] == "valid") {
        let tok = t["token"].as_str().unwrap();
        let scans: Vec<_> = (0..4).map(|_| scan(&app, &gate, tok)).collect();
        let results = futures::future::join_all(scans).await;
        let admitted = results.iter().filter(|(s, _)| *s == 200).count();
        assert_eq!(admitted, 1, "{results:?}");
        assert!(results.iter().all(|(s, b)| *s == 200 || b["code"] == "ticket_already_used"));
    }
    let db = app.db().await;
    let used: i64 = db
        .query_one(
            "SELECT count(*) FROM tickets WHERE status = 'used' AND used_at IS NOT NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(used, 7);

    // Only gate staff scan.
    let (status, _) = scan(&app, &fan, first).await;
    assert_eq!(status, 403);
}

#[allot_tests::test]
async fn a_transferred_tickets_old_qr_is_refused_and_the_new_one_admits() {
    let app = TestApp::spawn().await;
    app.create_offering(tickets("show", 100, 4, 600)).await;
    let (_, _, giver) = person(&app, "Giver One", "en").await;
    let (receiver_id, receiver_email, receiver) = person(&app, "Ratana Chaiyo", "en").await;
    let (third_id, third_email, third) = person(&app, "Third Person", "en").await;
    buy(&app, &giver, "show", 1).await;
    let old = wait_for_tickets(&app, &giver, 1).await.remove(0);
    let id = old["ticket_id"].as_str().unwrap();
    let path = format!("/v1/tickets/{id}/transfer");

    let nobody = json!({"to_email": "nobody@example.com"});
    let (status, e) = call(&app, reqwest::Method::POST, &path, &giver, Some(nobody)).await;
    assert_eq!((status, e["code"].as_str()), (404, Some("recipient_not_found")), "{e}");
    // An account whose identity is not verified receives nothing either.
    let unverified = json!({"to_email": receiver_email});
    let (status, e) = call(&app, reqwest::Method::POST, &path, &giver, Some(unverified)).await;
    assert_eq!((status, e["code"].as_str()), (404, Some("recipient_not_found")), "{e}");
    verify_identity(&app, receiver_id, &receiver).await;
    verify_identity(&app, third_id, &third).await;
    let (status, e) =
        call(&app, reqwest::Method::POST, &path, &receiver, Some(json!({"to_email": third_email})))
            .await;
    assert_eq!(
        (status, e["code"].as_str()),
        (404, Some("ticket_not_found")),
        "not the holder: {e}"
    );

    let body = json!({"to_email": receiver_email.to_uppercase()});
    let (status, moved) = call(&app, reqwest::Method::POST, &path, &giver, Some(body)).await;
    assert_eq!(status, 200, "{moved}");
    assert_eq!(moved["transfers_left"], 0);
    assert!(my_tickets(&app, &giver).await.is_empty());
    let new = my_tickets(&app, &receiver).await.remove(0);
    assert_eq!(new["ticket_id"], old["ticket_id"]);
    assert_ne!(new["token"], old["token"]);

    // Once by default: the new holder cannot pass it on.
    let onward = json!({"to_email": third_email});
    let (status, e) = call(&app, reqwest::Method::POST, &path, &receiver, Some(onward)).await;
    assert_eq!((status, e["code"].as_str()), (409, Some("ticket_transfer_limit")), "{e}");

    let gate = app.token(900_003, Role::Gate);
    let (status, e) = scan(&app, &gate, old["token"].as_str().unwrap()).await;
    assert_eq!((status, e["code"].as_str()), (409, Some("ticket_superseded")), "{e}");
    let (status, admitted) = scan(&app, &gate, new["token"].as_str().unwrap()).await;
    assert_eq!(status, 200, "{admitted}");
    assert_eq!(admitted["holder_initials"], "R. C.");

    // The transfer is in the audit trail.
    let db = app.db().await;
    let audited: i64 = db
        .query_one("SELECT count(*) FROM audit_log WHERE action = 'ticket.transfer'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(audited, 1);
}

#[allot_tests::test]
async fn transfers_close_at_the_cut_off_before_the_show() {
    let app = TestApp::spawn().await;
    let mut config = tickets("soon", 100, 4, 600);
    // The show is in an hour; transfers close a day before it (the default).
    let show = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
    config["show_at"] = json!(show.format(&time::format_description::well_known::Rfc3339).unwrap());
    app.create_offering(config).await;
    let (_, _, giver) = person(&app, "Giver Two", "en").await;
    let (receiver_id, receiver_email, receiver) = person(&app, "Late Receiver", "en").await;
    verify_identity(&app, receiver_id, &receiver).await;
    buy(&app, &giver, "soon", 1).await;
    let t = wait_for_tickets(&app, &giver, 1).await.remove(0);
    assert_eq!(t["transfers_left"], 0);
    let path = format!("/v1/tickets/{}/transfer", t["ticket_id"].as_str().unwrap());
    let body = json!({"to_email": receiver_email});
    let (status, e) = call(&app, reqwest::Method::POST, &path, &giver, Some(body)).await;
    assert_eq!((status, e["code"].as_str()), (409, Some("ticket_transfer_closed")), "{e}");
}

/// What a gate device does with no network: the public key (fetched once, beforehand)
/// and the token's bytes. A forged token, any altered byte, or a token of another key is
/// refused; the genuine one verifies.
#[allot_tests::test]
async fn a_forged_or_altered_qr_is_refused_offline_with_only_the_public_key() {
    let app = TestApp::spawn().await;
    app.create_offering(tickets("show", 100, 4, 600)).await;
    let (_, _, fan) = person(&app, "Offline Check", "en").await;
    buy(&app, &fan, "show", 1).await;
    let genuine = wait_for_tickets(&app, &fan, 1).await[0]["token"].as_str().unwrap().to_owned();
    let key: Value =
        app.client.get(app.url("/v1/gate/key")).send().await.unwrap().json().await.unwrap();
    let public = allot_export::keys::public_from_hex(key["public_key"].as_str().unwrap()).unwrap();
    // From here on: only `public` and token bytes.
    drop(app);

    let claims = token::verify(&public, &genuine).expect("the genuine token verifies");
    assert_eq!((claims.seat, claims.generation), (1, 0));

    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let bytes = b64.decode(&genuine).unwrap();
    // Another seat, another generation, another reservation: each byte of the body and of
    // the signature, altered, is refused.
    for i in 0..bytes.len() {
        let mut altered = bytes.clone();
        altered[i] = altered[i].wrapping_add(1);
        assert!(token::verify(&public, &b64.encode(&altered)).is_err(), "byte {i} altered");
    }
    // A forger with their own key signs a well-formed token for the same seat.
    let forger = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
    let forged = token::sign(&forger, &claims);
    assert_eq!(token::verify(&public, &forged), Err(token::Invalid::BadSignature));
    // Truncated, padded, or not base64 at all.
    assert!(token::verify(&public, &genuine[..100]).is_err());
    assert!(token::verify(&public, &format!("{genuine}A")).is_err());
    assert!(token::verify(&public, "not a ticket").is_err());
}

#[allot_tests::test]
async fn a_forged_token_is_refused_at_the_gate_and_changes_nothing() {
    let app = TestApp::spawn().await;
    app.create_offering(tickets("show", 100, 4, 600)).await;
    let (_, _, fan) = person(&app, "Gate Forgery", "en").await;
    buy(&app, &fan, "show", 1).await;
    let genuine = wait_for_tickets(&app, &fan, 1).await[0]["token"].as_str().unwrap().to_owned();
    let public = app.state.tickets.public_key();
    let claims = token::verify(&public, &genuine).unwrap();
    let forged = token::sign(&ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]), &claims);
    let gate = app.token(900_004, Role::Gate);
    let (status, e) = scan(&app, &gate, &forged).await;
    assert_eq!(
        (status, e["code"].as_str(), e["field"].as_str()),
        (400, Some("ticket_invalid"), Some("token"))
    );
    let (status, _) = scan(&app, &gate, &genuine).await;
    assert_eq!(status, 200, "the forgery used nothing up");
}
