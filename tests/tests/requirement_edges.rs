//! The published requirements at their exact edges, over HTTP against real TigerBeetle and
//! Postgres, with the repository's seed offerings (so a change to `offerings/*.toml` that
//! breaks a requirement turns these red):
//!
//! - a bond reservation of 5,000 to 50,000,000 baht: both ends accepted, one lot beyond
//!   either refused with its code;
//! - 50,000,000 baht per person, summed over all of that person's reservations;
//! - the 10% deposit due 24 hours after the reservation, to the second;
//! - two concert rounds, each with its own supply and its own 4-per-fan limit;
//! - a small supply and many competing clients: exactly the supply is held, every other
//!   request is `sold_out`, and the ledger agrees with what HTTP answered.

use std::time::Duration;

use allot_tests::app::{tickets, TestApp};
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

const BOND: &str = "bond-2026";
/// Baht to satang.
const SATANG: u64 = 100;

async fn offering(app: &TestApp, id: &str) -> Value {
    let res = app.client.get(app.url(&format!("/v1/offerings/{id}"))).send().await.unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

/// (held, remaining) of one zone, read from TigerBeetle now; and the public view agrees
/// within a few seconds (it caches figures for up to `availability_cache_ms`).
async fn zone(app: &TestApp, id: &str, zone: &str) -> (u64, u64) {
    let offering_ = app.state.catalog.find(id).unwrap();
    let number = offering_.config.zones.iter().position(|z| z.id == zone).unwrap() + 1;
    let balances = app.state.ledger.zone_balances(&offering_.spec).await.unwrap();
    let b = balances.iter().find(|b| usize::from(b.zone) == number).unwrap();
    let ledger = (u64::try_from(b.held).unwrap(), u64::try_from(b.remaining).unwrap());
    let start = std::time::Instant::now();
    loop {
        let o = offering(app, id).await;
        let view = o["availability"].as_array().unwrap().iter().find(|z| z["id"] == zone).cloned();
        let view = view.unwrap();
        if (view["held"].as_u64(), view["remaining"].as_u64()) == (Some(ledger.0), Some(ledger.1)) {
            return ledger;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{id} {zone}: ledger {ledger:?}, HTTP {view}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn time_of(v: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(v.as_str().unwrap(), &Rfc3339).unwrap()
}

/// Asserts a refusal: status, code, field and the exact English message.
fn refused(got: (u16, Value), status: u16, code: &str, message: &str) {
    let (got_status, body) = got;
    assert_eq!(
        (got_status, body["code"].as_str(), body["field"].as_str()),
        (status, Some(code), Some("quantity")),
        "{body}"
    );
    assert_eq!(body["message"], message, "{body}");
}

#[allot_tests::test]
async fn bond_amounts_from_exactly_5000_to_exactly_50_million_baht() {
    let app = TestApp::spawn_with_seeds().await;
    let (_, small) = app.citizen();
    let (_, large) = app.citizen();

    // The smallest reservation: 5,000 baht, a 10% deposit of 500 baht.
    let (status, r) = app.reserve(&small, BOND, "min", json!({"quantity": 5_000})).await;
    assert_eq!(status, 201, "{r}");
    assert_eq!(
        (r["quantity"].as_u64(), r["amount_due_satang"].as_u64(), r["deposit_due_satang"].as_u64()),
        (Some(5_000), Some(5_000 * SATANG), Some(500 * SATANG))
    );
    // The largest: 50,000,000 baht in one reservation, 5,000,000 baht deposit.
    let (status, r) = app.reserve(&large, BOND, "max", json!({"quantity": 50_000_000})).await;
    assert_eq!(status, 201, "{r}");
    assert_eq!(
        (r["quantity"].as_u64(), r["amount_due_satang"].as_u64(), r["deposit_due_satang"].as_u64()),
        (Some(50_000_000), Some(50_000_000 * SATANG), Some(5_000_000 * SATANG))
    );

    // One lot below the minimum, one lot above the maximum: refused, for a person who holds
    // nothing yet, so it is the amount and not the cap that refuses.
    let (_, fresh) = app.citizen();
    refused(
        app.reserve(&fresh, BOND, "below", json!({"quantity": 4_000})).await,
        422,
        "below_minimum",
        "The quantity is below the minimum of 5000.",
    );
    refused(
        app.reserve(&fresh, BOND, "above", json!({"quantity": 50_001_000})).await,
        422,
        "above_maximum",
        "The quantity is above the maximum of 50000000 per person.",
    );
    // Refusals hold nothing: exactly the two accepted amounts are held.
    assert_eq!(zone(&app, BOND, "main").await, (50_005_000, 10_000_000_000 - 50_005_000));
}

#[allot_tests::test]
async fn the_50_million_cap_is_summed_over_a_persons_reservations() {
    let app = TestApp::spawn_with_seeds().await;
    let (_, token) = app.citizen();
    for (key, baht) in [("a", 20_000_000u64), ("b", 25_000_000), ("c", 5_000_000)] {
        let (status, r) = app.reserve(&token, BOND, key, json!({"quantity": baht})).await;
        assert_eq!((status, r["quantity"].as_u64()), (201, Some(baht)), "{key}: {r}");
    }
    // 50,000,000 held in three reservations: one more lot (1,000 baht) is over the cap, and
    // so is the smallest reservation a newcomer could make.
    refused(
        app.reserve(&token, BOND, "d", json!({"quantity": 5_000})).await,
        409,
        "person_limit_exceeded",
        "This would take you over the limit of 50000000 per person.",
    );
    let (_, other) = app.citizen();
    let (status, _) = app.reserve(&other, BOND, "a", json!({"quantity": 50_000_000})).await;
    assert_eq!(status, 201, "another person has a cap of their own");
    // A retry of an earlier reservation is that reservation, not a new one over the cap.
    let (status, again) = app.reserve(&token, BOND, "b", json!({"quantity": 25_000_000})).await;
    assert_eq!((status, again["quantity"].as_u64()), (201, Some(25_000_000)), "{again}");
    assert_eq!(zone(&app, BOND, "main").await, (100_000_000, 10_000_000_000 - 100_000_000));
}

#[allot_tests::test]
async fn the_deposit_is_due_24_hours_after_the_reservation() {
    let app = TestApp::spawn_with_seeds().await;
    let (_, token) = app.citizen();
    let before = OffsetDateTime::now_utc().unix_timestamp();
    let (status, r) = app.reserve(&token, BOND, "k", json!({"quantity": 10_000})).await;
    let after = OffsetDateTime::now_utc().unix_timestamp();
    assert_eq!(status, 201, "{r}");
    assert_eq!(r["deposit_due_satang"], 1_000 * SATANG, "10% of 10,000 baht");
    // The deadline is whole seconds: 86,400 after the second the request was taken in.
    let due = time_of(&r["expires_at"]).unix_timestamp();
    assert!(
        (before + 86_400..=after + 86_400).contains(&due),
        "due {due}, reserved between {before} and {after}"
    );

    // The ledger's own copy of the hold says the same instant...
    let id = r["reservation_id"].as_str().unwrap().to_owned();
    let res = app
        .client
        .get(app.url(&format!("/v1/reservations/{id}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let read: Value = res.json().await.unwrap();
    assert_eq!(read["expires_at"], r["expires_at"], "{read}");

    // ...and the owner's list puts it 24 hours after the reservation was made (the ledger's
    // timestamp of the hold, to the nanosecond, against a deadline in whole seconds).
    let mine = app_list_until_projected(&app, &token, &id).await;
    let made = time_of(&mine["created_at"]);
    let due = time_of(&mine["expires_at"]);
    let gap = due - made;
    assert!(
        gap > time::Duration::seconds(86_399) && gap <= time::Duration::seconds(86_400),
        "deadline {due} is {gap} after the reservation at {made}, not 24 h"
    );
}

/// The caller's reservation `id` from `/v1/me/reservations`, once the projector has it.
async fn app_list_until_projected(app: &TestApp, token: &str, id: &str) -> Value {
    let start = std::time::Instant::now();
    loop {
        let mine: Vec<Value> = app
            .client
            .get(app.url("/v1/me/reservations"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if let Some(r) = mine.into_iter().find(|r| r["reservation_id"] == id) {
            return r;
        }
        assert!(start.elapsed() < Duration::from_secs(15), "{id} never projected");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[allot_tests::test]
async fn both_concert_rounds_sell_separately_with_a_limit_each() {
    let app = TestApp::spawn_with_seeds().await;
    let (_, fan) = app.citizen();
    for round in ["concert-r1", "concert-r2"] {
        let o = offering(&app, round).await;
        let seats: u64 = o["availability"]
            .as_array()
            .unwrap()
            .iter()
            .map(|z| z["supply"].as_u64().unwrap())
            .sum();
        assert_eq!(
            (seats, o["max_per_person"].as_u64(), o["open"].as_bool()),
            (50_000, Some(4), Some(true))
        );
    }
    // Fans pass each round's waiting room: no seat without an admission, and nothing held.
    for round in ["concert-r1", "concert-r2"] {
        let (status, err) =
            app.reserve(&fan, round, "early", json!({"quantity": 1, "zone": "b"})).await;
        assert_eq!(
            (status, err["code"].as_str(), err["field"].as_str()),
            (403, Some("queue_admission_required"), Some("X-Queue-Admission")),
            "{round}: {err}"
        );
        assert_eq!(
            err["message"],
            "Wait for your turn in the queue: reserving needs an admission from the waiting room."
        );
        assert_eq!(zone(&app, round, "b").await, (0, 30_000), "{round}");
    }
    let r1 = app.admitted(&fan, "concert-r1").await;
    let r2 = app.admitted(&fan, "concert-r2").await;
    let reserve = |round: &'static str, key: &'static str, admission: &str, body: Value| {
        let (app, fan, admission) = (&app, fan.clone(), admission.to_owned());
        async move { app.reserve_with(&fan, round, key, body, Some(&admission)).await }
    };
    // Four in round one: the fan's limit there is reached...
    let (status, r) = reserve("concert-r1", "r1", &r1, json!({"quantity": 4, "zone": "vip"})).await;
    assert_eq!((status, r["quantity"].as_u64()), (201, Some(4)), "{r}");
    refused(
        reserve("concert-r1", "r1-more", &r1, json!({"quantity": 1, "zone": "b"})).await,
        409,
        "person_limit_exceeded",
        "This would take you over the limit of 4 per person.",
    );
    // ...and round two is untouched by it: four more there, then its own limit.
    let (status, r) = reserve("concert-r2", "r2", &r2, json!({"quantity": 4, "zone": "vip"})).await;
    assert_eq!((status, r["quantity"].as_u64()), (201, Some(4)), "{r}");
    refused(
        reserve("concert-r2", "r2-more", &r2, json!({"quantity": 1, "zone": "a"})).await,
        409,
        "person_limit_exceeded",
        "This would take you over the limit of 4 per person.",
    );
    // Each round's seats are its own.
    for round in ["concert-r1", "concert-r2"] {
        assert_eq!(zone(&app, round, "vip").await, (4, 4_996), "{round}");
        assert_eq!(zone(&app, round, "a").await, (0, 15_000), "{round}");
        assert_eq!(zone(&app, round, "b").await, (0, 30_000), "{round}");
    }
}

#[allot_tests::test]
async fn many_clients_competing_for_a_few_seats_never_oversell() {
    const SUPPLY: u64 = 7;
    const CLIENTS: usize = 60;
    let app = TestApp::spawn().await;
    app.create_offering(tickets("scarce", SUPPLY, 2, 600)).await;
    let fans: Vec<(i64, String)> = (0..CLIENTS).map(|_| app.citizen()).collect();
    // One connection per client, all released at once.
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(CLIENTS));
    let tasks = fans.iter().map(|(user, token)| {
        let (url, token, start) =
            (app.url("/v1/offerings/scarce/reservations"), token.clone(), start.clone());
        let user = *user;
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            start.wait().await;
            let res = client
                .post(url)
                .bearer_auth(token)
                .header("Idempotency-Key", "only")
                .json(&json!({"quantity": 1}))
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            (user, status, res.json::<Value>().await.unwrap())
        })
    });
    let answers: Vec<(i64, u16, Value)> =
        futures::future::join_all(tasks).await.into_iter().map(Result::unwrap).collect();
    let winners: Vec<&(i64, u16, Value)> = answers.iter().filter(|a| a.1 == 201).collect();
    let sold_out = answers.iter().filter(|a| a.1 == 409 && a.2["code"] == "sold_out").count();
    assert_eq!(winners.len() as u64, SUPPLY, "exactly the supply is held: {answers:?}");
    assert_eq!(sold_out, CLIENTS - SUPPLY as usize, "every other answer is sold_out: {answers:?}");
    let ids: std::collections::HashSet<&str> =
        winners.iter().map(|w| w.2["reservation_id"].as_str().unwrap()).collect();
    assert_eq!(ids.len() as u64, SUPPLY, "seven different reservations");

    // The ledger agrees: its stock account holds exactly the seats HTTP said were held (and
    // the public view says so too), each winner holds one, every loser none.
    assert_eq!(zone(&app, "scarce", "main").await, (SUPPLY, 0));
    let spec = app.state.catalog.find("scarce").unwrap().spec.clone();
    for (user, status, _) in &answers {
        let person = app.state.ledger.person_balance(&spec, *user as u64).await.unwrap();
        assert_eq!(person.held, u128::from(*status == 201), "user {user} answered {status}");
    }
}
