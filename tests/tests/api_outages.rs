//! Outages of one store, with real servers stopped in the middle of a test: what readiness
//! says, what offering pages show, and what a client that retries with its
//! Idempotency-Key gets.

use std::time::Duration;

use allot_api::identity::Role;
use allot_tests::app::{tickets, TestApp};
use allot_tests::postgres::PrivatePostgres;
use allot_tests::tigerbeetle;
use serde_json::{json, Value};

const LEDGER_TIMEOUT_MS: u64 = 500;

/// An app on a TigerBeetle of its own, which the test may pause.
async fn app_on(tb: &tigerbeetle::Server) -> TestApp {
    TestApp::spawn_configured("/nonexistent".into(), |s| {
        s.ledger.addresses = tb.address();
        s.ledger.timeout_ms = LEDGER_TIMEOUT_MS;
    })
    .await
}

async fn get(app: &TestApp, path: &str) -> (u16, Value) {
    let res = app.client.get(app.url(path)).send().await.unwrap();
    (res.status().as_u16(), res.json().await.unwrap_or(Value::Null))
}

async fn held(app: &TestApp, offering: &str) -> u64 {
    let (_, view) = get(app, &format!("/v1/offerings/{offering}")).await;
    view["availability"][0]["held"].as_u64().unwrap()
}

#[allot_tests::test]
async fn a_reservation_that_timed_out_is_returned_by_a_retry_with_the_same_key() {
    let tb = tigerbeetle::Server::start();
    let app = app_on(&tb).await;
    app.create_offering(tickets("stall", 10, 4, 600)).await;
    app.client
        .post(app.url("/v1/admin/offerings/stall/open"))
        .bearer_auth(app.token(1, Role::Admin))
        .send()
        .await
        .unwrap();
    let (_, token) = app.citizen();
    // A first reservation sets up the person's accounts, so the stalled one below is the
    // hold's own write, which the TigerBeetle client keeps trying after we gave up on it.
    let (status, _) = app.reserve(&token, "stall", "first", json!({"quantity": 1})).await;
    assert_eq!(status, 201);

    tb.pause();
    let res = app
        .client
        .post(app.url("/v1/offerings/stall/reservations"))
        .bearer_auth(&token)
        .header("Idempotency-Key", "stalled")
        .header("Accept-Language", "en")
        .json(&json!({"quantity": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers().get("Retry-After").map(|v| v.to_str().unwrap()), Some("1"));
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], "ledger_unavailable");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("same Idempotency-Key"), "{message}");
    tb.resume();

    // The timed-out write lands by itself: 1 + 2 held before any retry.
    app.eventually(Duration::from_secs(10), || async { held(&app, "stall").await == 3 }).await;
    let (status, first) = app.reserve(&token, "stall", "stalled", json!({"quantity": 2})).await;
    assert_eq!(status, 201, "{first}");
    let (status, again) = app.reserve(&token, "stall", "stalled", json!({"quantity": 2})).await;
    assert_eq!(status, 201);
    assert_eq!(first["reservation_id"], again["reservation_id"]);
    assert_eq!(held(&app, "stall").await, 3, "the retries placed nothing new");
}

#[allot_tests::test]
async fn tigerbeetle_down_makes_the_instance_unready_and_offering_pages_stale() {
    let tb = tigerbeetle::Server::start();
    let app = app_on(&tb).await;
    app.create_offering(tickets("dark", 10, 4, 600)).await;
    let (status, live) = get(&app, "/v1/offerings/dark").await;
    assert_eq!((status, &live["stale"]), (200, &json!(false)));
    let (status, ready) = get(&app, "/health/ready").await;
    assert_eq!((status, &ready["status"]), (200, &json!("ok")));

    tb.pause();
    let (status, ready) = get(&app, "/health/ready").await;
    assert_eq!(status, 503, "{ready}");
    assert_eq!(ready["tigerbeetle"], "down");
    let (status, page) = get(&app, "/v1/offerings/dark").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["stale"], true);
    assert_eq!(page["availability"], live["availability"]);
    assert_eq!(page["availability_as_of"], live["availability_as_of"]);
    let (status, list) = get(&app, "/v1/offerings").await;
    assert_eq!((status, &list[0]["stale"]), (200, &json!(true)));
    tb.resume();

    app.eventually(Duration::from_secs(10), || async { get(&app, "/health/ready").await.0 == 200 })
        .await;
    let (_, page) = get(&app, "/v1/offerings/dark").await;
    assert_eq!(page["stale"], false);
}

#[allot_tests::test]
async fn postgres_down_leaves_the_instance_ready_degraded_and_taking_reservations() {
    let pg = PrivatePostgres::start();
    let app = TestApp::spawn_configured("/nonexistent".into(), |s| {
        s.database.url = pg.url();
    })
    .await;
    app.create_offering(tickets("nopg", 10, 4, 600)).await;
    app.client
        .post(app.url("/v1/admin/offerings/nopg/open"))
        .bearer_auth(app.token(1, Role::Admin))
        .send()
        .await
        .unwrap();
    let (_, token) = app.citizen();

    pg.down();
    let (status, ready) = get(&app, "/health/ready").await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready, json!({"status": "degraded", "tigerbeetle": "ok", "postgres": "down"}));
    let (_, metrics) = (0, app.client.get(app.url("/metrics")).send().await.unwrap());
    let metrics = metrics.text().await.unwrap();
    assert!(metrics.contains("allot_postgres_up 0"), "{metrics}");
    let (status, body) = app.reserve(&token, "nopg", "during", json!({"quantity": 1})).await;
    assert_eq!(status, 201, "{body}");

    pg.up();
    app.eventually(Duration::from_secs(20), || async {
        get(&app, "/health/ready").await.1["status"] == "ok"
    })
    .await;
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("allot_postgres_up 1"), "{metrics}");
}

#[allot_tests::test]
async fn an_instance_that_never_served_a_page_still_shows_stale_figures_in_an_outage() {
    let tb = tigerbeetle::Server::start();
    let first = app_on(&tb).await;
    first.create_offering(tickets("cold", 10, 4, 600)).await;
    // A second instance learns of the offering from Postgres and is never asked for its
    // page; behind a load balancer, the first request for it may come mid-outage.
    let second = TestApp::spawn_configured("/nonexistent".into(), |s| {
        s.database.url = first.database_url.clone();
        s.ledger.addresses = tb.address();
        s.ledger.timeout_ms = LEDGER_TIMEOUT_MS;
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    tb.pause();
    let (status, page) = get(&second, "/v1/offerings/cold").await;
    tb.resume();
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["stale"], true);
    assert_eq!(page["availability"][0]["remaining"], 10);
}
