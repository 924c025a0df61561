//! Offerings and reservations over HTTP, against real TigerBeetle and Postgres.

use std::time::Duration;

use allot_api::identity::Role;
use allot_tests::app::{tickets, TestApp};
use serde_json::{json, Value};

#[allot_tests::test]
async fn seed_offerings_are_served_with_live_figures() {
    let app = TestApp::spawn_with_seeds().await;
    let list: Vec<Value> =
        app.client.get(app.url("/v1/offerings")).send().await.unwrap().json().await.unwrap();
    let ids: Vec<&str> = list.iter().map(|o| o["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["bond-2026", "concert-r1", "concert-r2"]);

    let bond: Value = app
        .client
        .get(app.url("/v1/offerings/bond-2026"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(bond["availability"][0]["supply"], 10_000_000_000u64);
    assert_eq!(bond["availability"][0]["remaining"], 10_000_000_000u64);
    assert_eq!(
        (bond["min_quantity"].as_u64(), bond["max_per_person"].as_u64()),
        (Some(5_000), Some(50_000_000))
    );
    assert_eq!(bond["open"], true);

    let concert: Value = app
        .client
        .get(app.url("/v1/offerings/concert-r1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let seats: u64 = concert["availability"]
        .as_array()
        .unwrap()
        .iter()
        .map(|z| z["supply"].as_u64().unwrap())
        .sum();
    assert_eq!(seats, 50_000);
    assert_eq!(concert["max_per_person"], 4);

    let res = app.client.get(app.url("/v1/offerings/nope")).send().await.unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(res.json::<Value>().await.unwrap()["code"], "offering_not_found");
}

#[allot_tests::test]
async fn a_bond_reservation_is_held_projected_and_readable() {
    let app = TestApp::spawn_with_seeds().await;
    let (user, token) = app.citizen();
    let (status, r) = app.reserve(&token, "bond-2026", "k1", json!({"quantity": 100_000})).await;
    assert_eq!(status, 201, "{r}");
    assert_eq!(r["status"], "held");
    assert_eq!(r["quantity"], 100_000);
    assert_eq!(r["amount_due_satang"], 10_000_000);
    assert_eq!(r["deposit_due_satang"], 1_000_000, "10% deposit");
    assert_eq!(r["zone"], "main");
    let id = r["reservation_id"].as_str().unwrap().to_owned();

    // Same key, same body: the same reservation, nothing held twice.
    let (status, again) =
        app.reserve(&token, "bond-2026", "k1", json!({"quantity": 100_000})).await;
    assert_eq!((status, again["reservation_id"].as_str()), (201, Some(id.as_str())));
    // Same key, other body: refused.
    let (status, err) = app.reserve(&token, "bond-2026", "k1", json!({"quantity": 200_000})).await;
    assert_eq!((status, err["code"].as_str()), (422, Some("idempotency_key_reused")));

    let bond: Value = app
        .client
        .get(app.url("/v1/offerings/bond-2026"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let zone = &bond["availability"][0];
    assert_eq!(
        (zone["held"].as_u64(), zone["remaining"].as_u64()),
        (Some(100_000), Some(9_999_900_000))
    );

    let got: Value = app
        .client
        .get(app.url(&format!("/v1/reservations/{id}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!((got["status"].as_str(), got["quantity"].as_u64()), (Some("held"), Some(100_000)));

    // Someone else cannot see it; staff can.
    let (_, stranger) = app.citizen();
    let res = app
        .client
        .get(app.url(&format!("/v1/reservations/{id}")))
        .bearer_auth(&stranger)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let finance = app.token(99, Role::Finance);
    let res = app
        .client
        .get(app.url(&format!("/v1/reservations/{id}")))
        .bearer_auth(&finance)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    // The projector brings it to Postgres, where /v1/me/reservations reads it.
    let db = app.db().await;
    app.eventually(Duration::from_secs(10), || {
        let db = &db;
        let id = id.clone();
        async move {
            let row = db
                .query_opt(
                    "SELECT user_id, quantity, status FROM reservations WHERE reservation_id = $1",
                    &[&id],
                )
                .await
                .unwrap();
            row.is_some_and(|r| {
                r.get::<_, i64>(0) == user
                    && r.get::<_, i64>(1) == 100_000
                    && r.get::<_, &str>(2) == "held"
            })
        }
    })
    .await;
    let mine: Vec<Value> = app
        .client
        .get(app.url("/v1/me/reservations"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0]["reservation_id"], id.as_str());
}

#[allot_tests::test]
async fn business_rules_answer_with_their_codes_and_change_nothing() {
    let app = TestApp::spawn_with_seeds().await;
    let (_, token) = app.citizen();
    // The concert rounds pass the waiting room: their cases are judged once admitted.
    let admission = app.admitted(&token, "concert-r1").await;
    let cases = [
        ("bond-2026", json!({"quantity": 4_000}), 422, "below_minimum"),
        ("bond-2026", json!({"quantity": 5_500}), 422, "not_lot_multiple"),
        ("bond-2026", json!({"quantity": 60_000_000}), 422, "above_maximum"),
        ("concert-r1", json!({"quantity": 1}), 422, "inconsistent_request"),
        ("concert-r1", json!({"quantity": 1, "zone": "balcony"}), 422, "zone_not_found"),
        ("concert-r1", json!({"quantity": 5, "zone": "vip"}), 422, "above_maximum"),
        ("nope", json!({"quantity": 1}), 404, "offering_not_found"),
    ];
    for (i, (offering, body, status, code)) in cases.into_iter().enumerate() {
        let admitted = (offering == "concert-r1").then_some(admission.as_str());
        let key = format!("k{i}");
        let (got, err) = app.reserve_with(&token, offering, &key, body.clone(), admitted).await;
        assert_eq!((got, err["code"].as_str()), (status, Some(code)), "{offering} {body}");
        assert!(err["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let bond: Value = app
        .client
        .get(app.url("/v1/offerings/bond-2026"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(bond["availability"][0]["held"], 0);

    // Per fan limit across several requests and zones: 4 per round.
    let (_, fan) = app.citizen();
    let r1 = app.admitted(&fan, "concert-r1").await;
    let reserve = |round: &'static str, key: &'static str, admission: String, body: Value| {
        let fan = fan.clone();
        let app = &app;
        async move { app.reserve_with(&fan, round, key, body, Some(&admission)).await }
    };
    let (s1, _) =
        reserve("concert-r1", "a", r1.clone(), json!({"quantity": 3, "zone": "vip"})).await;
    let (s2, err) =
        reserve("concert-r1", "b", r1.clone(), json!({"quantity": 2, "zone": "a"})).await;
    assert_eq!((s1, s2, err["code"].as_str()), (201, 409, Some("person_limit_exceeded")));
    assert_eq!(err["field"], "quantity");
    let (s3, _) = reserve("concert-r1", "c", r1.clone(), json!({"quantity": 1, "zone": "a"})).await;
    assert_eq!(s3, 201);
    // The other round has its own waiting room (round one's admission is not for it) and its
    // own limit.
    let (s4, err) = reserve("concert-r2", "a", r1, json!({"quantity": 4, "zone": "b"})).await;
    assert_eq!((s4, err["code"].as_str()), (403, Some("queue_admission_required")), "{err}");
    let r2 = app.admitted(&fan, "concert-r2").await;
    let (s4, _) = reserve("concert-r2", "a", r2, json!({"quantity": 4, "zone": "b"})).await;
    assert_eq!(s4, 201);
}

#[allot_tests::test]
async fn sold_out_closed_and_cancel() {
    let app = TestApp::spawn().await;
    app.create_offering(tickets("tiny", 3, 4, 600)).await;
    let (_, a) = app.citizen();
    let (_, b) = app.citizen();
    let (status, held) = app.reserve(&a, "tiny", "1", json!({"quantity": 2})).await;
    assert_eq!(status, 201);
    let (status, err) = app.reserve(&b, "tiny", "1", json!({"quantity": 2})).await;
    assert_eq!((status, err["code"].as_str()), (409, Some("sold_out")));
    // Partial fill takes what is left.
    let (status, part) =
        app.reserve(&b, "tiny", "2", json!({"quantity": 2, "allow_partial": true})).await;
    assert_eq!((status, part["quantity"].as_u64()), (201, Some(1)));

    // Cancel gives the seats back.
    let id = held["reservation_id"].as_str().unwrap();
    let res = app
        .client
        .delete(app.url(&format!("/v1/reservations/{id}")))
        .bearer_auth(&a)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["status"], "cancelled");
    let res = app
        .client
        .delete(app.url(&format!("/v1/reservations/{id}")))
        .bearer_auth(&b)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404, "only the owner cancels");
    let (status, _) = app.reserve(&b, "tiny", "3", json!({"quantity": 2})).await;
    assert_eq!(status, 201);

    // Closed: no reservations.
    let admin = app.token(1, Role::Admin);
    let res = app
        .client
        .post(app.url("/v1/admin/offerings/tiny/close"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let (_, c) = app.citizen();
    let (status, err) = app.reserve(&c, "tiny", "1", json!({"quantity": 1})).await;
    assert_eq!((status, err["code"].as_str()), (409, Some("offering_not_open")));
    let res = app
        .client
        .post(app.url("/v1/admin/offerings/tiny/open"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    // Admin endpoints are for admins.
    let res = app
        .client
        .post(app.url("/v1/admin/offerings/tiny/close"))
        .bearer_auth(&c)
        .send()
        .await
        .unwrap();
    assert_eq!(
        (res.status(), res.json::<Value>().await.unwrap()["code"].as_str().map(str::to_owned)),
        (reqwest::StatusCode::FORBIDDEN, Some("forbidden".into()))
    );
    let res = app
        .client
        .post(app.url("/v1/admin/offerings"))
        .bearer_auth(&admin)
        .json(&tickets("tiny", 3, 4, 600))
        .send()
        .await
        .unwrap();
    assert_eq!(res.json::<Value>().await.unwrap()["code"], "offering_exists");
}

#[allot_tests::test]
async fn an_unpaid_hold_reads_expired_within_seconds_of_its_deadline() {
    let app = TestApp::spawn().await;
    app.create_offering(tickets("flash", 10, 4, 1)).await;
    let (_, token) = app.citizen();
    let (status, r) = app.reserve(&token, "flash", "1", json!({"quantity": 4})).await;
    assert_eq!(status, 201);
    let id = r["reservation_id"].as_str().unwrap().to_owned();
    app.eventually(Duration::from_secs(5), || {
        let (app, token, id) = (&app, &token, &id);
        async move {
            let got: Value = app
                .client
                .get(app.url(&format!("/v1/reservations/{id}")))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            got["status"] == "expired"
        }
    })
    .await;
    // The seats come back by themselves, and cancelling is too late.
    app.eventually(Duration::from_secs(10), || {
        let app = &app;
        async move {
            let o: Value = app
                .client
                .get(app.url("/v1/offerings/flash"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            o["availability"][0]["remaining"] == 10
        }
    })
    .await;
    let res = app
        .client
        .delete(app.url(&format!("/v1/reservations/{id}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.json::<Value>().await.unwrap()["code"], "hold_expired");
    let db = app.db().await;
    app.eventually(Duration::from_secs(10), || {
        let (db, id) = (&db, &id);
        async move {
            let row = db
                .query_opt("SELECT status FROM reservations WHERE reservation_id = $1", &[id])
                .await
                .unwrap();
            row.is_some_and(|r| r.get::<_, &str>(0) == "expired")
        }
    })
    .await;
}

#[allot_tests::test]
async fn bad_input_is_a_4xx_with_a_code_and_changes_nothing() {
    let app = TestApp::spawn().await;
    app.create_offering(tickets("show", 100, 4, 600)).await;
    let (_, token) = app.citizen();
    let url = app.url("/v1/offerings/show/reservations");
    let send = |body: &'static str, key: Option<&'static str>| {
        let mut req = app
            .client
            .post(url.clone())
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(body);
        if let Some(key) = key {
            req = req.header("Idempotency-Key", key);
        }
        req.send()
    };
    let cases: [(&str, Option<&str>, u16, &str); 9] = [
        ("{\"quantity\": 1}", None, 400, "idempotency_key_required"),
        ("{\"quantity\": ", Some("a"), 400, "malformed_json"),
        ("{\"quantity\": \"two\"}", Some("b"), 400, "malformed_json"),
        ("{\"quantity\": -1}", Some("c"), 400, "malformed_json"),
        ("{\"quantity\": 1e30}", Some("d"), 400, "malformed_json"),
        ("{\"quantity\": 99999999999999999999999}", Some("e"), 400, "malformed_json"),
        ("{\"quantity\": 1, \"price\": 0}", Some("f"), 400, "malformed_json"),
        ("{\"quantity\": 0}", Some("g"), 422, "below_minimum"),
        ("[]", Some("h"), 400, "malformed_json"),
    ];
    for (body, key, status, code) in cases {
        let res = send(body, key).await.unwrap();
        assert_eq!(res.status().as_u16(), status, "{body}");
        assert_eq!(res.json::<Value>().await.unwrap()["code"], code, "{body}");
    }
    let huge = format!("{{\"quantity\": 1, \"zone\": \"{}\"}}", "x".repeat(64 * 1024));
    let res = app
        .client
        .post(url.clone())
        .bearer_auth(&token)
        .header("Idempotency-Key", "z")
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
    assert_eq!(res.json::<Value>().await.unwrap()["code"], "payload_too_large");

    let res = app
        .client
        .post(url.clone())
        .header("Idempotency-Key", "y")
        .json(&json!({"quantity": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (res.status().as_u16(), res.json::<Value>().await.unwrap()["code"].clone()),
        (401, json!("unauthorized"))
    );
    let res = app
        .client
        .post(url.clone())
        .bearer_auth("forged.token.here")
        .header("Idempotency-Key", "y")
        .json(&json!({"quantity": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let res = app
        .client
        .get(app.url("/v1/reservations/not-an-id"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.json::<Value>().await.unwrap()["code"], "reservation_not_found");
    let res = app.client.get(app.url("/v1/nothing/here")).send().await.unwrap();
    assert_eq!(
        (res.status().as_u16(), res.json::<Value>().await.unwrap()["code"].clone()),
        (404, json!("not_found"))
    );

    let o: Value =
        app.client.get(app.url("/v1/offerings/show")).send().await.unwrap().json().await.unwrap();
    assert_eq!(o["availability"][0]["remaining"], 100, "nothing changed");
}

#[allot_tests::test]
async fn errors_speak_the_clients_language() {
    let app = TestApp::spawn().await;
    // The exact sentence each language's file holds: an answer in any other language, or
    // another code's message, fails.
    for (lang, expected) in [
        ("th-TH,th;q=0.9", "ไม่พบรายการจำหน่ายนี้"),
        ("ja", "この販売は存在しません。"),
        ("ko", "이 판매는 존재하지 않습니다."),
        ("zh-CN", "该发售不存在。"),
        ("en-US", "This offering does not exist."),
        ("fr, ja;q=0.5, ko;q=0.7", "이 판매는 존재하지 않습니다."),
        ("de", "This offering does not exist."),
    ] {
        let res = app
            .client
            .get(app.url("/v1/offerings/nope"))
            .header("Accept-Language", lang)
            .send()
            .await
            .unwrap();
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["code"], "offering_not_found");
        assert_eq!(body["message"], expected, "{lang}: {body}");
    }
}

#[allot_tests::test]
async fn operability_endpoints() {
    let app = TestApp::spawn_with_seeds().await;
    let res = app.client.get(app.url("/health/live")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let ready: Value =
        app.client.get(app.url("/health/ready")).send().await.unwrap().json().await.unwrap();
    assert_eq!(ready, json!({"status": "ok", "tigerbeetle": "ok", "postgres": "ok"}));

    let (_, token) = app.citizen();
    let admission = app.admitted(&token, "concert-r1").await;
    let seat = json!({"quantity": 1, "zone": "b"});
    let (status, held) = app.reserve_with(&token, "concert-r1", "m", seat, Some(&admission)).await;
    assert_eq!(
        (status, held["status"].as_str(), held["quantity"].as_u64(), held["zone"].as_str()),
        (201, Some("held"), Some(1), Some("b")),
        "{held}"
    );
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("allot_http_requests_total"), "{metrics}");
    assert!(metrics.contains("route=\"/v1/offerings/{id}/reservations\""));
    assert!(
        metrics.lines().any(|l| l.starts_with("allot_holds_total{offering=\"concert-r1\"} ")),
        "the hold is counted for its offering: {metrics}"
    );
    assert!(metrics.contains("allot_ledger_batch_holds"), "TigerBeetle batch sizes");
    assert!(metrics.contains("allot_projector_lag_seconds"));
    assert!(metrics.contains("allot_http_request_duration_seconds"));

    let doc: Value =
        app.client.get(app.url("/openapi.json")).send().await.unwrap().json().await.unwrap();
    let paths = doc["paths"].as_object().unwrap();
    for path in [
        "/v1/offerings",
        "/v1/offerings/{id}",
        "/v1/offerings/{id}/reservations",
        "/v1/reservations/{id}",
        "/v1/me/reservations",
        "/v1/admin/offerings",
        "/health/ready",
    ] {
        assert!(paths.contains_key(path), "{path} missing from OpenAPI");
    }
}
