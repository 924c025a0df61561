//! Crash safety: kill -9 the API in the middle of a burst of reservations. After a restart
//! every reservation a client was told about (201) is in TigerBeetle and in Postgres, the
//! two agree exactly, and retrying the unanswered requests creates no duplicates.

use std::collections::{HashMap, HashSet};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, UNIX_EPOCH};

use allot_api::identity::tokens::TokenKeys;
use allot_api::identity::Role;
use allot_ledger::{HoldEvent, Ledger};
use allot_tests::app::fresh_database;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_during_a_burst_loses_nothing_acknowledged() {
    let database_url = fresh_database().await;
    let data_dir = tempfile::tempdir().unwrap();
    let offerings = tempfile::tempdir().unwrap();
    std::fs::write(
        offerings.path().join("crash.toml"),
        r#"id = "crash"
kind = "tickets"
min_quantity = 1
max_per_person = 4
lot = 1
hold_seconds = 3600
deposit_percent = 100
name = { en = "Crash test" }
zones = [{ id = "main", supply = 100000, price_satang = 100 }]
"#,
    )
    .unwrap();
    let mut api = start_api(&database_url, data_dir.path(), offerings.path()).await;
    let keys = TokenKeys::new(&hex::decode(SECRET_HEX).unwrap(), 3600);

    // 64 fans hammer the API; each request has its own key. We record what was answered.
    let acked: Arc<Mutex<HashMap<String, String>>> = Default::default(); // key -> reservation id
    let unanswered: Arc<Mutex<Vec<(i64, String)>>> = Default::default();
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let url = format!("{}/v1/offerings/crash/reservations", api.url);
    let tasks: Vec<_> = (0..64i64)
        .map(|fan| {
            let (client, url, acked, unanswered) =
                (client.clone(), url.clone(), acked.clone(), unanswered.clone());
            let user = 1_000_000 + fan;
            let token = keys.issue(user, Role::Citizen, false);
            tokio::spawn(async move {
                for n in 0.. {
                    let key = format!("fan{fan}-{n}");
                    let res = client
                        .post(&url)
                        .bearer_auth(&token)
                        .header("Idempotency-Key", &key)
                        .json(&json!({"quantity": 1}))
                        .send()
                        .await;
                    match res {
                        Ok(r) if r.status() == 201 => {
                            let body: Value = r.json().await.unwrap();
                            let id = body["reservation_id"].as_str().unwrap().to_owned();
                            acked.lock().unwrap().insert(key, id);
                        }
                        Ok(r) if r.status() == 409 => {} // over the 4-per-fan limit
                        _ => {
                            unanswered.lock().unwrap().push((user, key));
                            return;
                        }
                    }
                    // A fan who reached the limit cancels nothing; new fans keep coming.
                    if n > 50 {
                        return;
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(400)).await;
    api.child.kill().unwrap(); // SIGKILL
    api.child.wait().unwrap();
    for t in tasks {
        t.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let unanswered = unanswered.lock().unwrap().clone();
    assert!(!acked.is_empty(), "the burst must have been acknowledged in part");
    eprintln!("acknowledged {}, unanswered at the kill {}", acked.len(), unanswered.len());

    // Restart; the projector catches up from its checkpoint.
    let mut api = start_api(&database_url, data_dir.path(), offerings.path()).await;
    let ledger = Ledger::connect(0, &tigerbeetle::shared().address()).unwrap();
    let (pg, conn) = tokio_postgres::connect(&database_url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let number: i32 =
        pg.query_one("SELECT number FROM offerings WHERE id = 'crash'", &[]).await.unwrap().get(0);

    // Clients retry what was never answered, with the same keys: no duplicates may appear.
    for (user, key) in &unanswered {
        let token = keys.issue(*user, Role::Citizen, false);
        let res = client
            .post(format!("{}/v1/offerings/crash/reservations", api.url))
            .bearer_auth(&token)
            .header("Idempotency-Key", key)
            .json(&json!({"quantity": 1}))
            .send()
            .await
            .unwrap();
        assert!(res.status() == 201 || res.status() == 409, "retry answered {}", res.status());
    }

    let in_ledger = ledger_reservations(&ledger, number as u32).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let in_postgres = loop {
        let rows = pg.query("SELECT reservation_id FROM reservations", &[]).await.unwrap();
        let ids: HashSet<String> = rows.iter().map(|r| r.get(0)).collect();
        if ids == in_ledger || Instant::now() > deadline {
            break ids;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for (key, id) in &acked {
        assert!(in_ledger.contains(id), "acknowledged {key} missing from TigerBeetle");
        assert!(in_postgres.contains(id), "acknowledged {key} missing from Postgres");
    }
    assert_eq!(in_postgres, in_ledger, "Postgres and TigerBeetle must hold the same reservations");
    // Nothing else: every reservation is one some client asked for with its own key.
    assert!(in_ledger.len() <= acked.len() + unanswered.len());
    let zone = ledger.zone_balances(&ledger_spec(number as u32)).await.unwrap()[0];
    assert_eq!(zone.held as usize, in_ledger.len(), "one seat per reservation, none twice");
    api.child.kill().unwrap();
    api.child.wait().unwrap();
}

async fn ledger_reservations(ledger: &Ledger, offering: u32) -> HashSet<String> {
    let transfers = ledger.hold_events(offering, UNIX_EPOCH).await.unwrap();
    assert!(transfers.len() < 8_189, "one page is enough here");
    transfers
        .iter()
        .filter(|t| matches!(t, HoldEvent::Placed(_)))
        .map(|t| format!("{:030x}", t.id().get()))
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
