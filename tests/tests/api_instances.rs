//! Several API processes on one Postgres database and one TigerBeetle, as behind a load
//! balancer: what is shared stays correct whichever instance a request reaches, and the
//! work only one instance may do has one leader, replaced within seconds when killed.

use std::time::{Duration, Instant};

use allot_api::identity::Role;
use allot_tests::app::{fresh_database, tickets};
use allot_tests::process::{ApiProcess, Cluster};
use serde_json::{json, Value};

async fn two_instances() -> (Cluster, ApiProcess, ApiProcess) {
    let cluster = Cluster::new(fresh_database().await);
    let a = cluster.start().await;
    let b = cluster.start().await;
    (cluster, a, b)
}

fn send(
    api: &ApiProcess,
    method: reqwest::Method,
    path: &str,
    token: &str,
) -> reqwest::RequestBuilder {
    reqwest::Client::new().request(method, api.url(path)).bearer_auth(token)
}

/// Creates an offering through `api` and waits until `other` has it in its catalog.
async fn create_offering(cluster: &Cluster, api: &ApiProcess, other: &ApiProcess, config: Value) {
    let id = config["id"].as_str().unwrap().to_owned();
    let admin = cluster.token(1, Role::Admin);
    let res = send(api, reqwest::Method::POST, "/v1/admin/offerings", &admin)
        .json(&config)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    until(Duration::from_secs(10), || async {
        let res = reqwest::get(other.url(&format!("/v1/offerings/{id}"))).await.unwrap();
        (res.status() == 200).then_some(())
    })
    .await;
}

async fn reserve(
    api: &ApiProcess,
    token: &str,
    offering: &str,
    key: &str,
    quantity: u64,
) -> (u16, Value) {
    let res =
        send(api, reqwest::Method::POST, &format!("/v1/offerings/{offering}/reservations"), token)
            .header("Idempotency-Key", key)
            .json(&json!({"quantity": quantity}))
            .send()
            .await
            .unwrap();
    (res.status().as_u16(), res.json().await.unwrap_or(Value::Null))
}

async fn until<F, Fut, T>(limit: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(start.elapsed() < limit, "not reached within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn leading(api: &ApiProcess) -> bool {
    api.metric("allot_background_leader").await == Some(1.0)
}

#[allot_tests::test]
async fn the_projector_checkpoint_never_moves_back() {
    let url = fresh_database().await;
    let client = allot_store::connect(&url).await.unwrap();
    allot_store::projection::save_checkpoint(&client, 7, 2_000).await.unwrap();
    // A projector that read an older page commits it late, after another one moved on.
    allot_store::projection::save_checkpoint(&client, 7, 1_000).await.unwrap();
    assert_eq!(allot_store::projection::checkpoint(&client, 7).await.unwrap(), 2_000);
    allot_store::projection::save_checkpoint(&client, 7, 3_000).await.unwrap();
    assert_eq!(allot_store::projection::checkpoint(&client, 7).await.unwrap(), 3_000);
}

#[allot_tests::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_instance_leads_the_projector_and_another_takes_over_within_seconds_of_a_kill() {
    let (cluster, mut a, b) = two_instances().await;
    until(Duration::from_secs(10), || async { leading(&a).await.then_some(()) }).await;
    assert!(!leading(&b).await, "two leaders");
    create_offering(&cluster, &a, &b, tickets("lead", 100, 4, 600)).await;

    a.kill();
    let killed = Instant::now();
    until(Duration::from_secs(5), || async { leading(&b).await.then_some(()) }).await;
    eprintln!("leadership taken over in {:?}", killed.elapsed());
    // The new leader projects: a reservation taken after the kill reaches Postgres.
    let token = cluster.token(77, Role::Citizen);
    let (status, body) = reserve(&b, &token, "lead", "after-kill", 1).await;
    assert_eq!(status, 201, "{body}");
    let id = body["reservation_id"].as_str().unwrap().to_owned();
    let db = allot_store::connect(&cluster.database_url).await.unwrap();
    until(Duration::from_secs(10), || async {
        let rows =
            db.query("SELECT 1 FROM reservations WHERE reservation_id = $1", &[&id]).await.unwrap();
        (rows.len() == 1).then_some(())
    })
    .await;
}

#[allot_tests::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_cap_and_the_supply_hold_across_instances() {
    let (cluster, a, b) = two_instances().await;
    create_offering(&cluster, &a, &b, tickets("capped", 10, 4, 600)).await;
    // One person, 8 requests spread over both instances at once, 1 seat each: 4 succeed.
    let token = cluster.token(501, Role::Citizen);
    let answers = futures::future::join_all((0..8).map(|n| {
        let api = if n % 2 == 0 { &a } else { &b };
        let token = token.clone();
        async move { reserve(api, &token, "capped", &format!("k{n}"), 1).await }
    }))
    .await;
    let created = answers.iter().filter(|(s, _)| *s == 201).count();
    let capped = answers.iter().filter(|(_, b)| b["code"] == "person_limit_exceeded").count();
    assert_eq!((created, capped), (4, 4), "{answers:?}");
    // Three more people, 4 seats each, over both: 6 seats were left, so 6 more at most.
    let mut sold = created;
    for person in 0..3i64 {
        let token = cluster.token(600 + person, Role::Citizen);
        for n in 0..4 {
            let api = if n % 2 == 0 { &a } else { &b };
            if reserve(api, &token, "capped", &format!("p{person}-{n}"), 1).await.0 == 201 {
                sold += 1;
            }
        }
    }
    assert_eq!(sold, 10, "exactly the supply, never more");
}

#[allot_tests::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proof_of_work_spent_at_one_instance_is_refused_at_the_other() {
    let (cluster, a, b) = two_instances().await;
    let mut config = tickets("gated", 100, 4, 600);
    config["queue"] = json!(true);
    create_offering(&cluster, &a, &b, config).await;
    let challenge: Value =
        reqwest::get(a.url("/v1/challenge")).await.unwrap().json().await.unwrap();
    let pow = allot_api::fairness::pow::solve(&serde_json::from_value(challenge).unwrap());
    let path = "/v1/offerings/gated/queue";
    let first = cluster.token(701, Role::Citizen);
    let res =
        send(&a, reqwest::Method::POST, path, &first).header("X-Pow", &pow).send().await.unwrap();
    assert_eq!(res.status(), 201);
    let second = cluster.token(702, Role::Citizen);
    let res =
        send(&b, reqwest::Method::POST, path, &second).header("X-Pow", &pow).send().await.unwrap();
    assert_eq!(res.status(), 403);
    assert_eq!(res.json::<Value>().await.unwrap()["code"], "proof_of_work_invalid");
}

#[allot_tests::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_positions_follow_arrival_across_instances() {
    let (cluster, a, b) = two_instances().await;
    let mut config = tickets("line", 100, 4, 600);
    config["queue"] = json!(true);
    create_offering(&cluster, &a, &b, config).await;
    let mut positions = Vec::new();
    for person in 0..6i64 {
        let api = if person % 2 == 0 { &a } else { &b };
        let challenge: Value =
            reqwest::get(api.url("/v1/challenge")).await.unwrap().json().await.unwrap();
        let pow = allot_api::fairness::pow::solve(&serde_json::from_value(challenge).unwrap());
        let token = cluster.token(800 + person, Role::Citizen);
        let res = send(api, reqwest::Method::POST, "/v1/offerings/line/queue", &token)
            .header("X-Pow", &pow)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
        let entry: Value = res.json().await.unwrap();
        positions.push(entry["position"].as_u64().expect("an open sale gives positions"));
    }
    assert_eq!(positions, vec![1, 2, 3, 4, 5, 6], "one line, in order of arrival");
}

#[allot_tests::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_waitlist_is_offered_once_in_order_across_instances() {
    let (cluster, a, b) = two_instances().await;
    // Two seats, 2-second holds: what is not paid comes back quickly.
    create_offering(&cluster, &a, &b, tickets("wl", 2, 4, 2)).await;
    let first = cluster.token(901, Role::Citizen);
    assert_eq!(reserve(&a, &first, "wl", "all", 2).await.0, 201);
    let path = "/v1/offerings/wl/waitlist";
    let (x, y) = (cluster.token(902, Role::Citizen), cluster.token(903, Role::Citizen));
    for (api, token) in [(&b, &x), (&a, &y)] {
        let res = send(api, reqwest::Method::POST, path, token)
            .json(&json!({"quantity": 1}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    }
    // The two seats lapse; each entry is offered one, once, whichever instance leads.
    let mut offered = Vec::new();
    for (api, token) in [(&a, &x), (&b, &y)] {
        let entry = until(Duration::from_secs(15), || async {
            let res = send(api, reqwest::Method::GET, path, token).send().await.unwrap();
            let e: Value = res.json().await.unwrap();
            (e["status"] == "offered").then_some(e)
        })
        .await;
        offered.push(entry["reservation_id"].as_str().unwrap().to_owned());
    }
    assert_ne!(offered[0], offered[1]);
    let db = allot_store::connect(&cluster.database_url).await.unwrap();
    let notices: i64 = db
        .query_one("SELECT count(*) FROM outbox WHERE send_key LIKE 'waitlist_offered.%'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(notices, 2, "one offer per entry");
    let page: Value = reqwest::get(a.url("/v1/offerings/wl")).await.unwrap().json().await.unwrap();
    assert_eq!(page["availability"][0]["remaining"], 0, "never more than the supply");
}
