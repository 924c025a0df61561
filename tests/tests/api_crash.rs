//! Crash safety: kill -9 the API in the middle of a burst of reservations. After a restart
//! every reservation a client was told about (201) is in TigerBeetle and in Postgres, the
//! two agree exactly, and retrying the unanswered requests creates no duplicates.

use std::collections::{HashMap, HashSet};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, UNIX_EPOCH};

use allot_api::identity::tokens::TokenKeys;
use allot_api::identity::Role;
use allot_ledger::{HoldEvent, Ledger};
use allot_tests::app::{drop_database, fresh_database};
use allot_tests::tigerbeetle;
use serde_json::{json, Value};

const SECRET_HEX: &str = "5eb1c7a0d2e4f6081a3c5e7092b4d6f8a1c3e5f7092b4d6f8a0c2e4f6a8b0c2d";

struct Api {
    child: Child,
    url: String,
}

fn api_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().unwrap().parent().unwrap().join("allot-api");
    assert!(bin.exists(), "{} missing: ./ops/test builds it before the tests", bin.display());
    bin
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn start_api(
    database_url: &str,
    data_dir: &std::path::Path,
    offerings: &std::path::Path,
) -> Api {
    let port = free_port();
    let child = Command::new(api_binary())
        .env("ALLOT_DEV_MODE", "true")
        .env("ALLOT_HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("ALLOT_DATABASE_URL", database_url)
        .env("ALLOT_TB_ADDRESSES", tigerbeetle::shared().address())
        .env("ALLOT_DATA_DIR", data_dir)
        .env("ALLOT_OFFERINGS_DIR", offerings)
        .env("ALLOT_TOKEN_SECRET", SECRET_HEX)
        .env("ALLOT_PROJECTOR_INTERVAL_MS", "50")
        .env("ALLOT_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn allot-api");
    let url = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let start = Instant::now();
    loop {
        if let Ok(res) = client.get(format!("{url}/health/ready")).send().await {
            if res.status() == 200 {
                break;
            }
        }
        assert!(start.elapsed() < Duration::from_secs(30), "API did not become ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Api { child, url }
}

/// A citizen of the burst and their access token.
struct Fan {
    user: i64,
    token: String,
}

/// Fans sending reservations until the API dies: what each request got.
#[derive(Default)]
struct Burst {
    /// key -> reservation id, for every 201.
    acked: Mutex<HashMap<String, String>>,
    /// (user, key) of every request that got no answer.
    unanswered: Mutex<Vec<(i64, String)>>,
    /// (user, key) of requests answered `ledger_unavailable` (the hold may or may not
    /// exist): clients retry these too.
    unavailable: Mutex<Vec<(i64, String)>>,
    /// Requests sent and not yet answered, right now.
    in_flight: AtomicUsize,
}

const FANS: i64 = 64;
const MAX_PER_FAN: u64 = 4;
/// The kill waits until at least this many requests are on their way: it must hit a
/// server at work, never an idle one.
const IN_FLIGHT_AT_KILL_MIN: usize = 16;

#[allot_tests::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_during_a_burst_loses_nothing_acknowledged() {
    let database_url = fresh_database().await;
    let data_dir = tempfile::tempdir().unwrap();
    let offerings = tempfile::tempdir().unwrap();
    std::fs::write(offerings.path().join("crash.toml"), CRASH_OFFERING).unwrap();
    let mut api = start_api(&database_url, data_dir.path(), offerings.path()).await;
    let keys = TokenKeys::new(&hex::decode(SECRET_HEX).unwrap(), 3600);

    let burst = Arc::new(Burst::default());
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let tasks = (0..FANS).map(|fan| tokio::spawn(fan_sends(fan, &api.url, &keys, &client, &burst)));
    let tasks: Vec<_> = tasks.collect();
    // Kill -9 at a moment when requests are known to be on their way, after some were
    // acknowledged.
    let deadline = Instant::now() + Duration::from_secs(60);
    let in_flight_at_kill = loop {
        let in_flight = burst.in_flight.load(SeqCst);
        if in_flight >= IN_FLIGHT_AT_KILL_MIN && burst.acked.lock().unwrap().len() >= 32 {
            break in_flight;
        }
        assert!(Instant::now() < deadline, "the burst never got going");
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    api.child.kill().unwrap(); // SIGKILL
    api.child.wait().unwrap();
    for t in tasks {
        t.await.unwrap();
    }
    let acked = burst.acked.lock().unwrap().clone();
    let unanswered = burst.unanswered.lock().unwrap().clone();
    let unavailable = burst.unavailable.lock().unwrap().clone();
    eprintln!(
        "in flight at the kill {in_flight_at_kill}; acknowledged {}, unanswered {}, \
         answered ledger_unavailable {}",
        acked.len(),
        unanswered.len(),
        unavailable.len()
    );
    assert!(!unanswered.is_empty(), "the kill must leave requests unanswered");

    // Restart; the projector catches up from its checkpoint.
    let mut api = start_api(&database_url, data_dir.path(), offerings.path()).await;
    let ledger = Ledger::connect(0, &tigerbeetle::shared().address()).unwrap();
    let (pg, conn) = tokio_postgres::connect(&database_url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let number: i32 =
        pg.query_one("SELECT number FROM offerings WHERE id = 'crash'", &[]).await.unwrap().get(0);
    let number = number as u32;
    let before_retries = ledger_reservations(&ledger, number).await;
    for (key, id) in &acked {
        assert!(before_retries.contains_key(id), "acknowledged {key} missing from TigerBeetle");
    }

    // Clients retry what was never answered, with the same keys.
    let spec = ledger_spec(number);
    for (user, key) in unanswered.iter().chain(&unavailable) {
        let fan = Fan { user: *user, token: keys.issue(*user, Role::Citizen, false) };
        retry_is_exact(&api.url, &client, &fan, key, (&ledger, &spec), &before_retries).await;
    }

    let in_ledger = ledger_reservations(&ledger, number).await;
    let ids: HashSet<String> = in_ledger.keys().cloned().collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    let in_postgres = loop {
        let rows = pg.query("SELECT reservation_id FROM reservations", &[]).await.unwrap();
        let projected: HashSet<String> = rows.iter().map(|r| r.get(0)).collect();
        if projected == ids || Instant::now() > deadline {
            break projected;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for (key, id) in &acked {
        assert!(in_postgres.contains(id), "acknowledged {key} missing from Postgres");
    }
    assert_eq!(in_postgres, ids, "Postgres and TigerBeetle must hold the same reservations");
    // Nothing else: every reservation is one some client asked for with its own key.
    assert!(in_ledger.len() <= acked.len() + unanswered.len() + unavailable.len());
    let zone = ledger.zone_balances(&spec).await.unwrap()[0];
    assert_eq!(zone.held as usize, in_ledger.len(), "one seat per reservation, none twice");
    caps_hold_after_recovery(&api.url, &client, &keys, &ledger, &spec, &in_ledger).await;
    api.child.kill().unwrap();
    api.child.wait().unwrap();
    drop_database(&database_url);
}

const CRASH_OFFERING: &str = r#"id = "crash"
kind = "tickets"
min_quantity = 1
max_per_person = 4
lot = 1
hold_seconds = 3600
deposit_percent = 100
name = { en = "Crash test" }
zones = [{ id = "main", supply = 100000, price_satang = 100 }]
"#;

/// One fan: a new key per request, until the API stops answering (or 50 requests).
fn fan_sends(
    fan: i64,
    api_url: &str,
    keys: &TokenKeys,
    client: &reqwest::Client,
    burst: &Arc<Burst>,
) -> impl std::future::Future<Output = ()> {
    let user = 1_000_000 + fan;
    let token = keys.issue(user, Role::Citizen, false);
    let url = format!("{api_url}/v1/offerings/crash/reservations");
    let (client, burst) = (client.clone(), burst.clone());
    async move {
        for n in 0..50 {
            let key = format!("fan{fan}-{n}");
            burst.in_flight.fetch_add(1, SeqCst);
            let res = client
                .post(&url)
                .bearer_auth(&token)
                .header("Idempotency-Key", &key)
                .json(&json!({"quantity": 1}))
                .send()
                .await;
            let answer = match res {
                Ok(r) => r.json::<Value>().await.ok().map(|body| (body["code"].clone(), body)),
                Err(_) => None,
            };
            burst.in_flight.fetch_sub(1, SeqCst);
            match answer {
                Some((code, _)) if code == "person_limit_exceeded" => {}
                Some((code, _)) if code == "ledger_unavailable" => {
                    burst.unavailable.lock().unwrap().push((user, key));
                }
                Some((_, body)) if body["reservation_id"].is_string() => {
                    let id = body["reservation_id"].as_str().unwrap().to_owned();
                    burst.acked.lock().unwrap().insert(key, id);
                }
                Some((_, body)) => panic!("unexpected answer {body}"),
                None => {
                    burst.unanswered.lock().unwrap().push((user, key));
                    return;
                }
            }
        }
    }
}

/// A retry after the restart gets exactly what the first attempt would have: the same
/// reservation when the hold was placed before the kill; otherwise a new hold, or
/// `person_limit_exceeded` only when the fan really holds the maximum.
async fn retry_is_exact(
    api_url: &str,
    client: &reqwest::Client,
    fan: &Fan,
    key: &str,
    (ledger, spec): (&Ledger, &allot_ledger::OfferingSpec),
    before: &HashMap<String, u64>,
) {
    let person = fan.user as u64;
    let id = allot_api::holds::format_id(allot_api::holds::hold_id(spec.number, person, key));
    let held = ledger.person_balance(spec, person).await.unwrap().held;
    let res = client
        .post(format!("{api_url}/v1/offerings/crash/reservations"))
        .bearer_auth(&fan.token)
        .header("Idempotency-Key", key)
        .json(&json!({"quantity": 1}))
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let body: Value = res.json().await.unwrap();
    if before.contains_key(&id) {
        assert_eq!((status, body["reservation_id"].as_str()), (201, Some(id.as_str())), "{key}");
        return;
    }
    match status {
        201 => assert_eq!(body["reservation_id"].as_str(), Some(id.as_str()), "{key}: {body}"),
        409 => {
            assert_eq!(body["code"], "person_limit_exceeded", "{key}");
            assert_eq!(held, u128::from(MAX_PER_FAN), "{key}: refused with only {held} held");
        }
        _ => panic!("retry of {key} answered {status} {body}"),
    }
}

/// After recovery no fan holds more than the maximum, and the cap still bites: a fan
/// below it may take exactly what is left, one more is refused.
async fn caps_hold_after_recovery(
    api_url: &str,
    client: &reqwest::Client,
    keys: &TokenKeys,
    ledger: &Ledger,
    spec: &allot_ledger::OfferingSpec,
    in_ledger: &HashMap<String, u64>,
) {
    let url = format!("{api_url}/v1/offerings/crash/reservations");
    for fan in 0..FANS {
        let person = (1_000_000 + fan) as u64;
        let held = in_ledger.values().filter(|p| **p == person).count() as u64;
        let balance = ledger.person_balance(spec, person).await.unwrap();
        assert_eq!(balance.held, u128::from(held), "fan {fan}: ledger and holds agree");
        assert!(held <= MAX_PER_FAN, "fan {fan} holds {held}");
        let token = keys.issue(person as i64, Role::Citizen, false);
        let reserve = |key: String, quantity: u64| {
            client
                .post(&url)
                .bearer_auth(&token)
                .header("Idempotency-Key", key)
                .json(&json!({ "quantity": quantity }))
                .send()
        };
        if held < MAX_PER_FAN {
            let res = reserve(format!("after-{fan}"), MAX_PER_FAN - held).await.unwrap();
            assert_eq!(res.status(), 201, "fan {fan} may fill up to the cap");
        }
        let res = reserve(format!("over-{fan}"), 1).await.unwrap();
        assert_eq!(res.status(), 409, "fan {fan}: over the cap after recovery");
        assert_eq!(res.json::<Value>().await.unwrap()["code"], "person_limit_exceeded");
    }
}

/// Every hold placed on the offering: reservation id -> person.
async fn ledger_reservations(ledger: &Ledger, offering: u32) -> HashMap<String, u64> {
    let transfers = ledger.hold_events(offering, UNIX_EPOCH).await.unwrap();
    assert!(transfers.len() < 8_189, "one page is enough here");
    transfers
        .iter()
        .filter_map(|t| match t {
            HoldEvent::Placed(p) => Some((format!("{:030x}", p.id.get()), p.person)),
            _ => None,
        })
        .collect()
}

fn ledger_spec(number: u32) -> allot_ledger::OfferingSpec {
    allot_ledger::OfferingSpec {
        number,
        zones: vec![allot_ledger::ZoneSpec { number: 1, supply: 100_000 }],
        lot: 1,
        min_quantity: 1,
        max_per_person: 4,
        gateways: vec![1, 2],
    }
}
