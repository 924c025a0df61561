//! The retrying client and the checker of `./ops/chaos`, a process of its own, apart from
//! the servers it tests.
//!
//! - `load`: clients reserve through the load balancer for `--seconds`, each request with
//!   its own Idempotency-Key, one seat at a time, five requests per person against a cap
//!   of four. A 503 or a broken connection is retried with the same key (after
//!   `Retry-After`) until answered. Writes every acknowledged reservation id to `--out` and
//!   prints one JSON line of figures.
//! - `tokens`: signed access tokens for the wrk load (one a line).
//! - `verify`: after a fault, from TigerBeetle and Postgres directly: every acknowledged
//!   id in both, nothing oversold, nobody above the cap. Prints one JSON line.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use allot_api::identity::tokens::TokenKeys;
use allot_api::identity::Role;
use allot_ledger::{HoldEvent, Ledger, PAGE_EVENTS_MAX};
use clap::{Parser, Subcommand};
use serde_json::{json, Value};

#[derive(Debug, Parser)]
#[command(about = "Load with retries, tokens for wrk, and the checks after a fault")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Load(LoadArgs),
    Tokens {
        #[arg(long)]
        token_secret: String,
        #[arg(long)]
        first_user: i64,
        #[arg(long)]
        count: i64,
    },
    Verify(VerifyArgs),
}

#[derive(Clone, Debug, clap::Args)]
struct LoadArgs {
    /// The load balancer's base URL.
    #[arg(long)]
    url: String,
    #[arg(long)]
    token_secret: String,
    #[arg(long)]
    offering: String,
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    #[arg(long, default_value_t = 8)]
    concurrency: u64,
    /// People are numbered from here, so runs and the wrk load never share one.
    #[arg(long)]
    first_user: i64,
    /// Where acknowledged reservation ids go, one a line.
    #[arg(long)]
    out: std::path::PathBuf,
}

#[derive(Clone, Debug, clap::Args)]
struct VerifyArgs {
    #[arg(long)]
    database_url: String,
    #[arg(long)]
    tb_addresses: String,
    #[arg(long)]
    offering: String,
    #[arg(long)]
    supply: u128,
    #[arg(long)]
    max_per_person: u128,
    /// Files of acknowledged ids (the retrying client's, wrk's).
    #[arg(long, num_args = 1..)]
    acked: Vec<std::path::PathBuf>,
}

/// Requests per person: one more than the cap, so the cap is tested under every fault.
const REQUESTS_PER_PERSON: u64 = 5;
/// A request unanswered after this long is counted abandoned (it should never happen).
const GIVE_UP: Duration = Duration::from_secs(60);

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match Args::parse().command {
        Command::Load(args) => load(args).await,
        Command::Tokens { token_secret, first_user, count } => {
            let keys = keys(&token_secret);
            for user in first_user..first_user + count {
                println!("{}", keys.issue(user, Role::Citizen, false));
            }
        }
        Command::Verify(args) => return verify(args).await,
    }
    std::process::ExitCode::SUCCESS
}

fn keys(secret_hex: &str) -> TokenKeys {
    TokenKeys::new(&hex::decode(secret_hex).expect("hex token secret"), 24 * 3600)
}

/// What the clients saw, shared by all of them.
#[derive(Default)]
struct Tally {
    acknowledged: Mutex<Vec<(Instant, String)>>,
    requests: AtomicU64,
    first_attempt_failed: AtomicU64,
    /// Failed twice: what a client that retries once would have seen fail.
    failed_after_one_retry: AtomicU64,
    abandoned: AtomicU64,
    capped: AtomicU64,
}

async fn load(args: LoadArgs) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let tally = Arc::new(Tally::default());
    let next_person = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + Duration::from_secs(args.seconds);
    let workers: Vec<_> = (0..args.concurrency)
        .map(|_| {
            let (client, tally, next, args) =
                (client.clone(), tally.clone(), next_person.clone(), args.clone());
            tokio::spawn(async move {
                let keys = keys(&args.token_secret);
                while Instant::now() < deadline {
                    let user = args.first_user + next.fetch_add(1, Ordering::Relaxed) as i64;
                    let token = keys.issue(user, Role::Citizen, false);
                    for n in 0..REQUESTS_PER_PERSON {
                        let key = format!("chaos-{user}-{n}");
                        reserve(&client, &args, &token, &key, &tally).await;
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    report(&args, &tally, start, Instant::now());
}

/// One reservation, retried with its key until answered.
async fn reserve(client: &reqwest::Client, args: &LoadArgs, token: &str, key: &str, tally: &Tally) {
    let url = format!("{}/v1/offerings/{}/reservations", args.url, args.offering);
    let began = Instant::now();
    tally.requests.fetch_add(1, Ordering::Relaxed);
    for attempt in 0u32.. {
        let res = client
            .post(&url)
            .bearer_auth(token)
            .header("Idempotency-Key", key)
            .json(&json!({"quantity": 1}))
            .send()
            .await;
        let wait = match res {
            Ok(r) if r.status() == 201 => {
                let body: Value = r.json().await.unwrap_or(Value::Null);
                let id = body["reservation_id"].as_str().unwrap_or_default().to_owned();
                tally.acknowledged.lock().unwrap().push((Instant::now(), id));
                return;
            }
            Ok(r) if r.status() == 409 => {
                tally.capped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Ok(r) if r.status().is_server_error() => retry_after(&r),
            Ok(r) => panic!("unexpected answer {} for {key}", r.status()),
            Err(_) => Duration::from_millis(100),
        };
        match attempt {
            0 => tally.first_attempt_failed.fetch_add(1, Ordering::Relaxed),
            1 => tally.failed_after_one_retry.fetch_add(1, Ordering::Relaxed),
            _ => 0,
        };
        if began.elapsed() > GIVE_UP {
            tally.abandoned.fetch_add(1, Ordering::Relaxed);
            return;
        }
        tokio::time::sleep(wait).await;
    }
}

fn retry_after(res: &reqwest::Response) -> Duration {
    let seconds = res.headers().get("Retry-After").and_then(|v| v.to_str().ok()?.parse().ok());
    Duration::from_secs(seconds.unwrap_or(1))
}

/// The figures of one run, and the acknowledged ids to `--out`.
fn report(args: &LoadArgs, tally: &Tally, start: Instant, end: Instant) {
    let mut acked = tally.acknowledged.lock().unwrap().clone();
    acked.sort_by_key(|(at, _)| *at);
    let mut longest = Duration::ZERO;
    let mut last = start;
    for (at, _) in &acked {
        longest = longest.max(at.saturating_duration_since(last));
        last = *at;
    }
    longest = longest.max(end.saturating_duration_since(last));
    let ids: Vec<&str> = acked.iter().map(|(_, id)| id.as_str()).collect();
    std::fs::write(&args.out, ids.join("\n") + "\n").expect("write acknowledged ids");
    let figures = json!({
        "requests": tally.requests.load(Ordering::Relaxed),
        "acknowledged": acked.len(),
        "capped": tally.capped.load(Ordering::Relaxed),
        "first_attempt_failed": tally.first_attempt_failed.load(Ordering::Relaxed),
        "requests_failed": tally.failed_after_one_retry.load(Ordering::Relaxed),
        "abandoned": tally.abandoned.load(Ordering::Relaxed),
        "unavailable_seconds": (longest.as_secs_f64() * 1000.0).round() / 1000.0,
    });
    println!("{figures}");
}

/// Everything acknowledged is in TigerBeetle and in the projection, once; nothing
/// oversold; nobody above the cap.
async fn verify(args: VerifyArgs) -> std::process::ExitCode {
    let mut acked = HashSet::new();
    for file in &args.acked {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        acked.extend(text.lines().filter(|l| !l.is_empty()).map(str::to_owned));
    }
    let (pg, conn) = tokio_postgres::connect(&args.database_url, tokio_postgres::NoTls)
        .await
        .expect("connect to Postgres");
    tokio::spawn(conn);
    let number: i32 = pg
        .query_one("SELECT number FROM offerings WHERE id = $1", &[&args.offering])
        .await
        .expect("the offering")
        .get(0);
    let ledger = Ledger::connect(0, &args.tb_addresses).expect("ledger client");
    let holds = ledger_holds(&ledger, number as u32).await;
    let projected = projection(&pg, &args.offering, &holds).await;
    let sold: u128 = holds.values().map(|(_, q)| q).sum();
    let mut per_person: HashMap<u64, u128> = HashMap::new();
    for (person, quantity) in holds.values() {
        *per_person.entry(*person).or_default() += quantity;
    }
    let lost = acked.iter().filter(|id| !holds.contains_key(*id) || !projected.contains(*id));
    let figures = json!({
        "acknowledged": acked.len(),
        "in_ledger": holds.len(),
        "in_projection": projected.len(),
        "acknowledged_lost": lost.count(),
        "projection_mismatch": holds.keys().filter(|id| !projected.contains(*id)).count()
            + projected.iter().filter(|id| !holds.contains_key(*id)).count(),
        "oversold": sold.saturating_sub(args.supply) as u64,
        "people_over_cap": per_person.values().filter(|q| **q > args.max_per_person).count(),
    });
    println!("{figures}");
    let clean = ["acknowledged_lost", "projection_mismatch", "oversold", "people_over_cap"]
        .iter()
        .all(|k| figures[k] == 0);
    if clean {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}

/// Every hold of the offering still standing (placed, not cancelled): id -> (person, qty).
async fn ledger_holds(ledger: &Ledger, offering: u32) -> HashMap<String, (u64, u128)> {
    let mut holds = HashMap::new();
    let mut after = SystemTime::UNIX_EPOCH;
    loop {
        let page = ledger.hold_events(offering, after).await.expect("hold events");
        for event in &page {
            let id = format!("{:030x}", event.id().get());
            match event {
                HoldEvent::Placed(h) => {
                    holds.insert(id, (h.person, h.quantity));
                }
                HoldEvent::Cancelled { .. } => {
                    holds.remove(&id);
                }
                HoldEvent::Confirmed { .. } => {}
            }
        }
        match page.last() {
            Some(last) if page.len() == PAGE_EVENTS_MAX as usize => after = last.timestamp(),
            _ => return holds,
        }
    }
}

/// The projection's ids of the offering, once it caught up with the ledger (or after 60 s).
async fn projection(
    pg: &tokio_postgres::Client,
    offering: &str,
    holds: &HashMap<String, (u64, u128)>,
) -> HashSet<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let rows = pg
            .query("SELECT reservation_id FROM reservations WHERE offering_id = $1", &[&offering])
            .await
            .expect("projection");
        let ids: HashSet<String> = rows.iter().map(|r| r.get(0)).collect();
        if holds.keys().all(|id| ids.contains(id)) || Instant::now() > deadline {
            return ids;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
