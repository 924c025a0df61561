//! Fairness over HTTP, against real TigerBeetle and Postgres: book-building allocation with
//! a committed seed, the waiting room (pre-queue draw, FIFO, admission), proof-of-work and
//! rate limits.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use allot_api::clock::Clock;
use allot_api::config::Settings;
use allot_api::fairness::{allocation, book, draw};
use allot_api::identity::Role;
use allot_tests::app::{fresh_database, settings, tickets, TestApp};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use time::format_description::well_known::Rfc3339;

/// An app with no offerings, easy proof-of-work, and whatever `tweak` changes.
async fn spawn(tweak: impl FnOnce(&mut Settings)) -> TestApp {
    let database_url = fresh_database().await;
    let data_dir = tempfile::tempdir().unwrap();
    start(database_url, data_dir, Clock::settable(), tweak).await
}

async fn start(
    database_url: String,
    data_dir: tempfile::TempDir,
    clock: Clock,
    tweak: impl FnOnce(&mut Settings),
) -> TestApp {
    let mut s = settings(&database_url, data_dir.path(), PathBuf::from("/nonexistent"));
    s.fairness.pow_cost = 1;
    s.fairness.pow_counter_max = 40;
    tweak(&mut s);
    TestApp::start(s, data_dir, clock).await
}

/// Far enough ahead that no test's requests can reach it by themselves: tests reach an
/// opening or a close by moving the app's clock, never by outrunning a real one.
const AN_HOUR: f64 = 3_600.0;

/// Moves the app's clock past every opening or close set [`AN_HOUR`] ahead.
fn past_the_hour(app: &TestApp) {
    app.clock().advance(Duration::from_secs(3_601));
}

/// RFC 3339 for now + `seconds` (UTC), without a date crate in this test binary.
fn rfc3339_in(seconds: f64) -> String {
    let t = SystemTime::now() + Duration::from_secs_f64(seconds);
    let d = t.duration_since(UNIX_EPOCH).unwrap();
    let (days, rem) = ((d.as_secs() / 86_400) as i64, d.as_secs() % 86_400);
    // Civil date from days since 1970-01-01 (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

fn book_offering(id: &str, supply: u64, lot: u64, closes_in: f64) -> Value {
    json!({
        "id": id,
        "kind": "bond",
        "name": {"en": "Test bond"},
        "zones": [{"id": "main", "supply": supply, "price_satang": 100}],
        "min_quantity": lot,
        "max_per_person": 10_000,
        "lot": lot,
        "hold_seconds": 86_400,
        "deposit_percent": 10,
        "allocation": "book_building",
        "subscription_closes_at": rfc3339_in(closes_in),
    })
}

async fn get(app: &TestApp, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut req = app.client.get(app.url(path));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let res = req.send().await.unwrap();
    (res.status().as_u16(), res.json().await.unwrap_or(Value::Null))
}

async fn send(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = app.client.request(method, app.url(path)).bearer_auth(token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let res = req.send().await.unwrap();
    (res.status().as_u16(), res.json().await.unwrap_or(Value::Null))
}

/// Polls `f` until it yields a value; panics after `limit`.
async fn until<F, Fut>(limit: Duration, mut f: F) -> Value
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<Value>>,
{
    let start = std::time::Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(start.elapsed() < limit, "condition not reached within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn code(body: &Value) -> &str {
    body["code"].as_str().unwrap_or("")
}

#[allot_tests::test]
async fn the_worked_example_allocates_exactly_and_anyone_can_recompute_it() {
    let app = spawn(|_| {}).await;
    let admin = app.token(1, Role::Admin);
    // Three books with the same subscriptions: three seeds, the same rule.
    let ids = ["ssb-1", "ssb-2", "ssb-3"];
    for id in ids {
        app.create_offering(book_offering(id, 10_000, 500, AN_HOUR)).await;
    }
    let (status, before) = get(&app, "/v1/offerings/ssb-1/allocation", None).await;
    assert_eq!((status, before["status"].as_str()), (200, Some("subscribing")), "{before}");
    let commitment = before["commitment"].as_str().unwrap().to_owned();
    assert_eq!(commitment.len(), 64);
    assert!(before["seed"].is_null(), "the seed stays secret until the run");

    let people: Vec<(i64, String)> = (0..5).map(|_| app.citizen()).collect();
    let wanted = [2_000u64, 4_000, 5_500, 6_500];
    for id in ids {
        let path = format!("/v1/offerings/{id}/subscriptions");
        for ((_, token), quantity) in people.iter().zip(wanted) {
            let (status, s) =
                send(&app, reqwest::Method::POST, &path, token, Some(json!({"quantity": 500})))
                    .await;
            assert_eq!(status, 201, "{s}");
            // Changed before the close: the last amount counts.
            let (status, s) =
                send(&app, reqwest::Method::PUT, &path, token, Some(json!({"quantity": quantity})))
                    .await;
            assert_eq!((status, s["requested"].as_u64()), (200, Some(quantity)), "{s}");
        }
        // The fifth subscribes and withdraws: not in the book.
        let token = &people[4].1;
        let post =
            |q: u64| send(&app, reqwest::Method::POST, &path, token, Some(json!({"quantity": q})));
        let (status, _) = post(1_000).await;
        assert_eq!(status, 201);
        let (status, err) = post(700).await;
        assert_eq!((status, code(&err)), (422, "not_lot_multiple"));
        let (status, err) = post(10_500).await;
        assert_eq!((status, code(&err)), (422, "above_maximum"));
        let (status, _) = send(&app, reqwest::Method::DELETE, &path, token, None).await;
        assert_eq!(status, 204);
        let (status, err) = send(&app, reqwest::Method::DELETE, &path, token, None).await;
        assert_eq!((status, code(&err)), (404, "subscription_not_found"));
    }
    // No first-come reservations on a book-building offering, and no run before the close.
    let (status, err) = app.reserve(&people[0].1, "ssb-1", "k", json!({"quantity": 500})).await;
    assert_eq!((status, code(&err)), (409, "offering_not_open"));
    let (status, err) =
        send(&app, reqwest::Method::POST, "/v1/admin/offerings/ssb-1/allocate", &admin, None).await;
    assert_eq!((status, code(&err)), (409, "subscriptions_still_open"));
    let (status, err) = get(&app, "/v1/offerings/ssb-1/allocation/export", None).await;
    assert_eq!((status, code(&err)), (409, "allocation_not_run"));

    past_the_hour(&app);
    let (status, err) = send(
        &app,
        reqwest::Method::POST,
        "/v1/offerings/ssb-1/subscriptions",
        &people[4].1,
        Some(json!({"quantity": 500})),
    )
    .await;
    assert_eq!((status, code(&err)), (409, "subscriptions_closed"));
    let (status, err) = send(
        &app,
        reqwest::Method::POST,
        "/v1/admin/offerings/ssb-1/allocate",
        &admin,
        Some(json!({"seed": "00".repeat(32)})),
    )
    .await;
    assert_eq!((status, code(&err)), (422, "seed_mismatch"));
    let (status, err) =
        send(&app, reqwest::Method::POST, "/v1/admin/offerings/ssb-1/allocate", &people[0].1, None)
            .await;
    assert_eq!((status, code(&err)), (403, "forbidden"));

    let mut seeds = HashSet::new();
    for id in ids {
        let path = format!("/v1/admin/offerings/{id}/allocate");
        let (status, run) = send(&app, reqwest::Method::POST, &path, &admin, None).await;
        assert_eq!(status, 200, "{run}");
        let r = &run["result"];
        assert_eq!(run["status"], "allocated");
        assert_eq!(
            (r["applicants"].as_u64(), r["allotted_total"].as_u64()),
            (Some(4), Some(10_000))
        );
        assert_eq!((r["cutoff"].as_u64(), r["lottery_entrants"].as_u64()), (Some(2_500), Some(3)));
        assert_eq!(
            (r["lottery_winners"].as_u64(), r["holds_pending"].as_u64()),
            (Some(1), Some(0))
        );
        // The revealed seed is the one committed to before the first subscription.
        let seed = run["seed"].as_str().unwrap().to_owned();
        let digest = hex::encode(Sha256::digest(hex::decode(&seed).unwrap()));
        assert_eq!(digest, run["commitment"].as_str().unwrap());
        seeds.insert(seed);

        let mut got = Vec::new();
        for (_, token) in &people[..4] {
            let (_, view) = get(&app, &format!("/v1/offerings/{id}/allocation"), Some(token)).await;
            let mine = &view["mine"];
            let allotted = mine["allotted"].as_u64().unwrap();
            got.push(allotted);
            // Each allotment is a ledger hold with the deposit deadline, payable as usual.
            let rid = mine["reservation_id"].as_str().unwrap();
            let (status, r) = get(&app, &format!("/v1/reservations/{rid}"), Some(token)).await;
            assert_eq!((status, r["status"].as_str()), (200, Some("held")), "{r}");
            assert_eq!(r["quantity"].as_u64(), Some(allotted));
            assert_eq!(r["deposit_due_satang"].as_u64(), Some(allotted * 10));
        }
        assert_eq!(got[0], 2_000);
        let mut rest = got[1..].to_vec();
        rest.sort_unstable();
        assert_eq!(rest, [2_500, 2_500, 3_000], "{id}: {got:?}");
        // Offering figures are cached (`availability_cache_ms`): wait for them, within a bound.
        let offering_path = format!("/v1/offerings/{id}");
        app.eventually(Duration::from_secs(5), || async {
            let (_, offering) = get(&app, &offering_path, None).await;
            offering["availability"][0]["held"] == 10_000
        })
        .await;

        // The export recomputes to the same allotments; a forged line does not.
        let res = app
            .client
            .get(app.url(&format!("/v1/offerings/{id}/allocation/export")))
            .send()
            .await
            .unwrap();
        assert_eq!(res.headers()["content-type"], "application/x-ndjson");
        let export = res.text().await.unwrap();
        let header = book::verify_export(&export).unwrap();
        assert_eq!((header.supply, header.lot, header.applicants), (10_000, 500, 4));
        let forged = export.replacen("\"allotted\":2000", "\"allotted\":2500", 1);
        assert!(book::verify_export(&forged).is_err());

        // A second run changes nothing.
        let (status, again) = send(&app, reqwest::Method::POST, &path, &admin, None).await;
        assert_eq!((status, &again["result"]["allotted_total"]), (200, &json!(10_000)));
    }
    assert_eq!(seeds.len(), 3, "each offering draws with its own seed");
}

#[allot_tests::test]
async fn oversubscribed_books_never_exceed_supply_or_any_request() {
    let app = spawn(|s| s.fairness.rate_limit_user_burst = 100).await;
    let admin = app.token(1, Role::Admin);
    app.create_offering(book_offering("crowd", 7_000, 100, AN_HOUR)).await;
    let mut requests = Vec::new();
    for i in 0..40u64 {
        let (_, token) = app.citizen();
        let quantity = 100 * (1 + (i * 37) % 60);
        let (status, _) = send(
            &app,
            reqwest::Method::POST,
            "/v1/offerings/crowd/subscriptions",
            &token,
            Some(json!({"quantity": quantity})),
        )
        .await;
        assert_eq!(status, 201);
        requests.push((token, quantity));
    }
    past_the_hour(&app);
    let (status, run) =
        send(&app, reqwest::Method::POST, "/v1/admin/offerings/crowd/allocate", &admin, None).await;
    assert_eq!(status, 200, "{run}");
    let mut total = 0;
    for (token, requested) in &requests {
        let (_, view) = get(&app, "/v1/offerings/crowd/allocation", Some(token)).await;
        let allotted = view["mine"]["allotted"].as_u64().unwrap();
        assert!(allotted <= *requested && allotted.is_multiple_of(100));
        total += allotted;
    }
    assert!(total <= 7_000);
    assert_eq!(run["result"]["allotted_total"].as_u64(), Some(total));
    let (_, offering) = get(&app, "/v1/offerings/crowd", None).await;
    assert_eq!(offering["availability"][0]["held"].as_u64(), Some(total));

    // The export, recomputed with the public verifier, gives the same numbers.
    let export = app
        .client
        .get(app.url("/v1/offerings/crowd/allocation/export"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut lines = export.lines();
    let header: Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    let rows: Vec<Value> = lines.map(|l| serde_json::from_str(l).unwrap()).collect();
    let applications: Vec<allocation::Application> = rows
        .iter()
        .map(|r| allocation::Application {
            pseudonym: r["pseudonym"].as_str().unwrap().into(),
            requested: r["requested"].as_u64().unwrap(),
        })
        .collect();
    let seed = draw::parse_seed(header["seed"].as_str().unwrap()).unwrap();
    let recomputed = allocation::verify(&applications, &seed, 7_000, 100, 100).unwrap();
    let exported: Vec<u64> = rows.iter().map(|r| r["allotted"].as_u64().unwrap()).collect();
    assert_eq!(recomputed, exported);
}

/// Joins `offering`'s queue with a freshly solved challenge.
async fn join(app: &TestApp, offering: &str, token: &str) -> (u16, Value) {
    let (_, challenge) = get(app, "/v1/challenge", None).await;
    let challenge: altcha_types::Challenge = serde_json::from_value(challenge).unwrap();
    let pow = allot_api::fairness::pow::solve(&challenge);
    let res = app
        .client
        .post(app.url(&format!("/v1/offerings/{offering}/queue")))
        .bearer_auth(token)
        .header("X-Pow", pow)
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

/// The challenge type, by the path the API crate re-exports it under.
mod altcha_types {
    pub use allot_api::fairness::pow::Challenge;
}

async fn status(app: &TestApp, offering: &str, ticket: &str) -> Value {
    let res = app
        .client
        .get(app.url(&format!("/v1/offerings/{offering}/queue/status")))
        .header("X-Queue-Ticket", ticket)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

fn queued(id: &str, opens_in: Option<f64>) -> Value {
    let mut o = tickets(id, 100, 4, 600);
    o["queue"] = json!(true);
    if let Some(s) = opens_in {
        o["opens_at"] = json!(rfc3339_in(s));
    }
    o
}

#[allot_tests::test]
async fn the_prequeue_is_drawn_from_the_committed_seed_then_fifo_then_admission() {
    let app = spawn(|s| {
        s.fairness.queue_admissions_per_second = 1;
        s.fairness.queue_admission_seconds = 4;
        s.fairness.rate_limit_user_burst = 1_000;
        s.fairness.rate_limit_user_per_second = 1_000;
    })
    .await;
    app.create_offering(queued("show", Some(AN_HOUR))).await;
    let fairness_before: Value = get(&app, "/v1/offerings/show/queue/fairness", None).await.1;
    let commitment = fairness_before["commitment"].as_str().unwrap().to_owned();
    assert_eq!(
        (fairness_before["shuffled"].as_bool(), fairness_before["seed"].as_str()),
        (Some(false), None)
    );

    // Ten fans in the pre-queue: tickets without positions; a second join is the same entry.
    let mut fans = Vec::new();
    for _ in 0..10 {
        let (_, token) = app.citizen();
        let (status, joined) = join(&app, "show", &token).await;
        assert_eq!(status, 201, "{joined}");
        assert!(joined["position"].is_null());
        fans.push((token, joined));
    }
    let (token, first) = &fans[0];
    let again = app
        .client
        .post(app.url("/v1/offerings/show/queue"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 200, "a second join needs no new challenge");
    assert_eq!(again.json::<Value>().await.unwrap()["ticket"], first["ticket"]);
    let s = status(&app, "show", first["ticket"].as_str().unwrap()).await;
    assert_eq!((s["status"].as_str(), &s["position"]), (Some("waiting"), &Value::Null));
    let (status_code, err) = app.reserve(token, "show", "early", json!({"quantity": 1})).await;
    assert_eq!((status_code, code(&err)), (409, "offering_not_open"));

    // Opening: the draw happens, the seed is revealed and matches the commitment.
    past_the_hour(&app);
    let after = until(Duration::from_secs(10), || async {
        let after = get(&app, "/v1/offerings/show/queue/fairness", None).await.1;
        (after["shuffled"] == true).then_some(after)
    })
    .await;
    let seed = draw::parse_seed(after["seed"].as_str().unwrap()).unwrap();
    assert_eq!(hex::encode(draw::commitment(&seed)), commitment);
    let order: Vec<String> = serde_json::from_value(after["order"].clone()).unwrap();
    let entries: Vec<String> =
        fans.iter().map(|(_, j)| j["entry"].as_str().unwrap().to_owned()).collect();
    let mut sorted_order = order.clone();
    sorted_order.sort();
    let mut sorted_entries = entries.clone();
    sorted_entries.sort();
    assert_eq!(sorted_order, sorted_entries, "a permutation of exactly the pre-queue");
    // Recomputed from the published definition alone, not with the API's own draw code:
    // ascending SHA-256(seed || "allot/queue/v1" || entry).
    let mut recomputed = entries.clone();
    recomputed.sort_by_cached_key(|e| {
        let ticket = Sha256::new().chain_update(seed).chain_update(b"allot/queue/v1");
        (ticket.chain_update(e.as_bytes()).finalize().to_vec(), e.clone())
    });
    assert_eq!(recomputed, order, "anyone recomputes the draw from the seed");
    for (_, joined) in &fans {
        let s = status(&app, "show", joined["ticket"].as_str().unwrap()).await;
        let expected =
            order.iter().position(|e| e == joined["entry"].as_str().unwrap()).unwrap() + 1;
        assert_eq!(s["position"].as_u64(), Some(expected as u64));
    }

    // After opening, first in, first out.
    let mut late = Vec::new();
    for expected in 11..=13u64 {
        let (_, token) = app.citizen();
        let (status, joined) = join(&app, "show", &token).await;
        assert_eq!((status, joined["position"].as_u64()), (201, Some(expected)), "{joined}");
        late.push((token, joined));
    }
    let (last_token, last) = &late[2];
    let s = status(&app, "show", last["ticket"].as_str().unwrap()).await;
    // However far admission has got meanwhile (one a second), the figures agree with it:
    // everyone between the one being served and the last is ahead, and at one admission a
    // second the wait is one second each.
    let serving = s["serving"].as_u64().unwrap();
    assert!(serving < 12, "twelve seconds of admissions went by before one status read: {s}");
    assert_eq!(
        (s["status"].as_str(), s["position"].as_u64(), s["ahead"].as_u64()),
        (Some("waiting"), Some(13), Some(13 - serving - 1)),
        "{s}"
    );
    assert_eq!(s["estimated_wait_seconds"], s["ahead"], "{s}");
    // Not admitted: no reservation.
    let (status_code, err) = app.reserve(last_token, "show", "k", json!({"quantity": 1})).await;
    assert_eq!((status_code, code(&err)), (403, "queue_admission_required"));

    // The next but one in line is admitted within a couple of seconds, and may reserve.
    let next = (s["serving"].as_u64().unwrap() as usize + 2).min(10);
    let first_in_line =
        fans.iter().find(|(_, j)| j["entry"].as_str() == Some(order[next - 1].as_str())).unwrap();
    let ticket = first_in_line.1["ticket"].as_str().unwrap();
    let admitted = until(Duration::from_secs(6), || async {
        let s = status(&app, "show", ticket).await;
        (s["status"] == "admitted").then_some(s)
    })
    .await;
    let admission = admitted["admission_token"].as_str().unwrap().to_owned();
    // Someone else's admission is not yours.
    let res = app
        .client
        .post(app.url("/v1/offerings/show/reservations"))
        .bearer_auth(last_token)
        .header("Idempotency-Key", "stolen")
        .header("X-Queue-Admission", &admission)
        .json(&json!({"quantity": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let reserve_admitted = |key: &'static str| {
        app.client
            .post(app.url("/v1/offerings/show/reservations"))
            .bearer_auth(&first_in_line.0)
            .header("Idempotency-Key", key)
            .header("X-Queue-Admission", &admission)
            .json(&json!({"quantity": 2}))
            .send()
    };
    assert_eq!(reserve_admitted("mine").await.unwrap().status(), 201);

    // An admission not used in time lapses: its status reads expired once its 4 s are
    // over, and the token stops working 2 s (the clock leeway) after the expiry it states.
    // The probe asks for an unknown zone: admitted, that is 422 zone_not_found and holds
    // nothing; no longer admitted, 403. Both are waited for, not slept through.
    let expires = admitted["admission_expires_at"].as_str().unwrap().to_owned();
    let probe = || async {
        let res = app
            .client
            .post(app.url("/v1/offerings/show/reservations"))
            .bearer_auth(&first_in_line.0)
            .header("Idempotency-Key", "probe")
            .header("X-Queue-Admission", &admission)
            .json(&json!({"quantity": 1, "zone": "nowhere"}))
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        (status, res.json::<Value>().await.unwrap()["code"].as_str().unwrap_or("").to_owned())
    };
    let expires_at = time::OffsetDateTime::parse(&expires, &Rfc3339).unwrap();
    if time::OffsetDateTime::now_utc() + time::Duration::seconds(1) < expires_at {
        assert_eq!(probe().await, (422, "zone_not_found".into()), "admitted until {expires}");
    }
    let ticket = first_in_line.1["ticket"].as_str().unwrap();
    let lapsed = until(Duration::from_secs(15), || async {
        let s = status(&app, "show", ticket).await;
        (s["status"] == "expired").then_some(s)
    })
    .await;
    assert!(lapsed["admission_token"].is_null(), "{lapsed}");
    until(Duration::from_secs(15), || async {
        let answer = probe().await;
        if answer.0 == 422 {
            return None;
        }
        assert_eq!(answer, (403, "queue_admission_required".to_owned()));
        Some(Value::Null)
    })
    .await;
    let res = reserve_admitted("late").await.unwrap();
    assert_eq!(res.status(), 403);
    assert_eq!(res.json::<Value>().await.unwrap()["code"], "queue_admission_required");

    // The live stream says the same.
    let mut res = app
        .client
        .get(app.url(&format!(
            "/v1/offerings/show/queue/events?ticket={}",
            last["ticket"].as_str().unwrap()
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let chunk = String::from_utf8(res.chunk().await.unwrap().unwrap().to_vec()).unwrap();
    assert!(chunk.starts_with("event: status\ndata: {"), "{chunk}");
    assert!(chunk.contains("\"position\":13"), "{chunk}");

    // A second instance on the same database (a restart, or a scale-out) sees every
    // position unchanged.
    let positions: Vec<Value> = {
        let mut v = Vec::new();
        for (_, j) in fans.iter().chain(&late) {
            v.push(status(&app, "show", j["ticket"].as_str().unwrap()).await["position"].clone());
        }
        v
    };
    let data_dir = tempfile::tempdir().unwrap();
    let secrets = std::fs::read(allot_secrets::DevSecrets::path(app.data_dir.path())).unwrap();
    allot_secrets::write_private(&allot_secrets::DevSecrets::path(data_dir.path()), &secrets)
        .unwrap();
    let twin = start(app.database_url.clone(), data_dir, app.clock().clone(), |s| {
        s.fairness.queue_admissions_per_second = 1
    })
    .await;
    let mut twin_positions = Vec::new();
    for (_, j) in fans.iter().chain(&late) {
        let ticket = j["ticket"].as_str().unwrap();
        let s = until(Duration::from_secs(5), || async {
            let res = twin
                .client
                .get(twin.url("/v1/offerings/show/queue/status"))
                .header("X-Queue-Ticket", ticket)
                .send()
                .await
                .unwrap();
            // The twin answers 503 until its controller has loaded the room.
            if res.status() != 200 {
                return None;
            }
            Some(res.json::<Value>().await.unwrap())
        })
        .await;
        twin_positions.push(s["position"].clone());
    }
    assert_eq!(twin_positions, positions);
}

#[allot_tests::test]
async fn admission_holds_back_while_the_reservation_path_is_slow() {
    let app = spawn(|s| {
        s.fairness.queue_admissions_per_second = 50;
        s.fairness.queue_latency_p99_ms_max = 100;
        s.fairness.rate_limit_user_per_second = 1_000;
        s.fairness.rate_limit_user_burst = 1_000;
    })
    .await;
    app.create_offering(queued("busy", None)).await;
    // A slow reservation path: p99 far above the limit, kept fresh.
    let state = app.state.clone();
    let slow = tokio::spawn(async move {
        loop {
            for _ in 0..50 {
                state.fairness.latency().record(Duration::from_secs(2));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let (_, token) = app.citizen();
    let (status_code, joined) = join(&app, "busy", &token).await;
    assert_eq!(status_code, 201);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ticket = joined["ticket"].as_str().unwrap().to_owned();
    let s = status(&app, "busy", &ticket).await;
    assert_eq!((s["status"].as_str(), s["serving"].as_u64()), (Some("waiting"), Some(0)), "{s}");
    // Healthy again: admission resumes once the slow samples have aged out.
    slow.abort();
    app.eventually(Duration::from_secs(12), || {
        let (app, ticket) = (&app, &ticket);
        async move { status(app, "busy", ticket).await["status"] == "admitted" }
    })
    .await;
}

#[allot_tests::test]
async fn proof_of_work_and_rate_limits_answer_with_their_codes() {
    let app = spawn(|s| {
        s.fairness.rate_limit_user_per_second = 1;
        s.fairness.rate_limit_user_burst = 3;
        s.fairness.rate_limit_ip_per_second = 1;
        s.fairness.rate_limit_ip_burst = 8;
    })
    .await;
    app.create_offering(queued("gig", None)).await;
    app.create_offering(tickets("plain", 10, 4, 600)).await;
    // GCRA lets at most `burst + seconds × rate` requests through in any span: the checks
    // below bound what passed by the time that really went by, so a slow machine (tokens
    // refilled meanwhile) cannot turn them red, and a limit that never bites still does.
    let started = std::time::Instant::now();
    let (_, a) = app.citizen();
    let (_, b) = app.citizen();
    let url = app.url("/v1/offerings/gig/queue");
    let res = app.client.post(&url).bearer_auth(&a).send().await.unwrap();
    assert_eq!(res.status(), 403);
    assert_eq!(res.json::<Value>().await.unwrap()["code"], "proof_of_work_required");
    let res =
        app.client.post(&url).bearer_auth(&a).header("X-Pow", "bm90IGpzb24=").send().await.unwrap();
    assert_eq!(res.json::<Value>().await.unwrap()["code"], "proof_of_work_invalid");
    let (_, challenge) = get(&app, "/v1/challenge", None).await;
    let pow = allot_api::fairness::pow::solve(&serde_json::from_value(challenge).unwrap());
    let res = app.client.post(&url).bearer_auth(&a).header("X-Pow", &pow).send().await.unwrap();
    assert_eq!(res.status(), 201);
    // The same solution again, by someone else: a replay.
    let res = app.client.post(&url).bearer_auth(&b).header("X-Pow", &pow).send().await.unwrap();
    assert_eq!(res.status(), 403);
    assert_eq!(res.json::<Value>().await.unwrap()["code"], "proof_of_work_invalid");
    // Messages come in the caller's language too.
    let res =
        app.client.post(&url).bearer_auth(&b).header("Accept-Language", "th").send().await.unwrap();
    assert_eq!(
        res.json::<Value>().await.unwrap()["message"],
        "กรุณาแก้โจทย์จาก /v1/challenge ก่อน แล้วส่งมาในส่วนหัว X-Pow"
    );

    // Per user: b has used 2 of a burst of 3; the third passes (and fails for want of a
    // proof), then b is refused until a token comes back.
    let mut passed = 2;
    let res = loop {
        let res = app.client.post(&url).bearer_auth(&b).send().await.unwrap();
        if res.status() == 429 {
            break res;
        }
        assert_eq!(res.status(), 403);
        passed += 1;
        let allowed = 3 + started.elapsed().as_secs();
        assert!(passed <= allowed, "{passed} of b's requests passed, at most {allowed} may");
    };
    assert!(passed >= 3, "the burst of 3 is b's");
    let retry: u64 = res.headers()["Retry-After"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry));
    assert_eq!(res.json::<Value>().await.unwrap()["code"], "rate_limited");

    // Per IP: the challenge endpoint, from this one address, runs out of its burst of 8
    // (every request of this test so far came from here too).
    let mut passed = 0u64;
    loop {
        let res = app.client.get(app.url("/v1/challenge")).send().await.unwrap();
        if res.status() == 429 {
            break;
        }
        assert_eq!(res.status(), 200);
        passed += 1;
        let allowed = 8 + started.elapsed().as_secs();
        assert!(passed <= allowed, "{passed} challenges passed, at most {allowed} may");
    }

    // Tickets: only signed ones, only for their offering; no queue where there is none.
    let res = app
        .client
        .get(app.url("/v1/offerings/gig/queue/status"))
        .header("X-Queue-Ticket", "forged")
        .send()
        .await
        .unwrap();
    assert_eq!(
        (res.status().as_u16(), res.json::<Value>().await.unwrap()["code"].clone()),
        (401, json!("queue_ticket_invalid"))
    );
    let (status_code, err) = get(&app, "/v1/offerings/plain/queue/fairness", None).await;
    assert_eq!((status_code, code(&err)), (409, "queue_not_enabled"));
}

#[allot_tests::test]
async fn freed_units_are_offered_to_the_waitlist_in_order() {
    let app = spawn(|_| {}).await;
    // Two seats, 2-second holds: what is not paid comes back quickly.
    app.create_offering(tickets("small", 2, 4, 2)).await;
    let (_, a) = app.citizen();
    let (_, b) = app.citizen();
    let (_, c) = app.citizen();
    let path = "/v1/offerings/small/waitlist";
    let (status, err) =
        send(&app, reqwest::Method::POST, path, &b, Some(json!({"quantity": 1}))).await;
    assert_eq!((status, code(&err)), (409, "not_sold_out"), "nothing to wait for yet");
    let (status, _) = app.reserve(&a, "small", "a", json!({"quantity": 2})).await;
    assert_eq!(status, 201);
    let (status, eb) =
        send(&app, reqwest::Method::POST, path, &b, Some(json!({"quantity": 1}))).await;
    assert_eq!(
        (status, eb["status"].as_str(), eb["ahead"].as_u64()),
        (201, Some("waiting"), Some(0))
    );
    let (status, ec) =
        send(&app, reqwest::Method::POST, path, &c, Some(json!({"quantity": 2}))).await;
    assert_eq!((status, ec["ahead"].as_u64()), (201, Some(1)));
    let (status, again) =
        send(&app, reqwest::Method::POST, path, &c, Some(json!({"quantity": 1}))).await;
    assert_eq!((status, again["quantity"].as_u64()), (200, Some(2)), "one entry per person");

    // A's hold lapses: B, first in line, is offered one seat as a hold of its own; C wants
    // two and waits, though one is free.
    let b_entry = until(Duration::from_secs(10), || async {
        let (_, e) = get(&app, path, Some(&b)).await;
        (e["status"] == "offered").then_some(e)
    })
    .await;
    let rid = b_entry["reservation_id"].as_str().unwrap();
    let (status, r) = get(&app, &format!("/v1/reservations/{rid}"), Some(&b)).await;
    assert_eq!(
        (status, r["status"].as_str(), r["quantity"].as_u64()),
        (200, Some("held"), Some(1))
    );
    // The offer is announced through the outbox, once, to the person offered.
    let notices = app
        .db()
        .await
        .query("SELECT kind FROM outbox WHERE send_key = $1", &[&format!("waitlist_offered.{rid}")])
        .await
        .unwrap();
    assert_eq!(notices.len(), 1, "one waitlist notification for the offer");
    let (_, e) = get(&app, path, Some(&c)).await;
    assert_eq!((e["status"].as_str(), e["ahead"].as_u64()), (Some("waiting"), Some(0)));

    // B does not pay either: both seats free, C is offered both.
    let c_entry = until(Duration::from_secs(10), || async {
        let (_, e) = get(&app, path, Some(&c)).await;
        (e["status"] == "offered").then_some(e)
    })
    .await;
    let rid = c_entry["reservation_id"].as_str().unwrap();
    let (_, r) = get(&app, &format!("/v1/reservations/{rid}"), Some(&c)).await;
    assert_eq!(r["quantity"].as_u64(), Some(2));
    let (status, _) = send(&app, reqwest::Method::DELETE, path, &c, None).await;
    assert_eq!(status, 404, "an offered entry is no longer waiting");
}
