//! End-to-end reservations over HTTP on loopback, next to a plain GET on the same server and
//! a naive Postgres row-lock baseline, all in one run (driven by `./ops/bench`).
//!
//! - `http_plain_rps`: `GET /health/live`, the ceiling of the HTTP stack itself.
//! - `reservations_rps`, `reservations_p99_ms`: `POST /v1/offerings/{id}/reservations`
//!   from thousands of distinct users, each with their own signed token and a fresh
//!   Idempotency-Key per request.
//! - `pg_rowlock_rps`: what most shops do: one `UPDATE ... SET remaining = remaining - $1
//!   WHERE remaining >= $1` per reservation on one hot row.
//!
//! The server and the load share the machine's cores, so every figure here is a lower bound
//! of what the server does alone; the ratios are fair because all three share that handicap.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use allot_api::identity::tokens::TokenKeys;
use allot_api::identity::Role;
use clap::Parser;
use serde_json::json;

#[derive(Debug, Parser)]
#[command(about = "Reservations over HTTP vs a plain GET vs a Postgres row-lock baseline")]
struct Args {
    /// Base URL of a running API.
    #[arg(long)]
    api: String,
    /// The API's token secret (hex), to sign tokens for thousands of users.
    #[arg(long)]
    token_secret: String,
    /// Postgres for the row-lock baseline (a scratch table is created and dropped).
    #[arg(long)]
    database_url: String,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    #[arg(long, default_value_t = 2)]
    warmup_seconds: u64,
    /// Concurrent HTTP connections, each with one request in flight.
    #[arg(long, default_value_t = 256)]
    connections: u64,
    /// Distinct users making reservations.
    #[arg(long, default_value_t = 5_000)]
    users: u64,
    /// Concurrent Postgres connections of the baseline.
    #[arg(long, default_value_t = 64)]
    pg_connections: u64,
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    match runtime.block_on(run(&args)) {
        Ok(metrics) => {
            print(&metrics, args.json);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bench_http: {e}");
            ExitCode::FAILURE
        }
    }
}

type Metrics = Vec<(&'static str, f64, &'static str)>;

async fn run(args: &Args) -> Result<Metrics, String> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.connections as usize)
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())?;
    let keys = TokenKeys::new(&hex::decode(&args.token_secret).map_err(|e| e.to_string())?, 3600);
    let offering = create_offering(&client, &keys, &args.api).await?;

    let plain_url = format!("{}/health/live", args.api);
    let plain = {
        let client = client.clone();
        measure(args, move |_, _| {
            let (client, url) = (client.clone(), plain_url.clone());
            async move { client.get(url).send().await.is_ok_and(|r| r.status() == 200) }
        })
        .await
    };

    let tokens: Arc<Vec<String>> = Arc::new(
        (0..args.users).map(|u| keys.issue(1_000_000 + u as i64, Role::Citizen, false)).collect(),
    );
    let url = format!("{}/v1/offerings/{offering}/reservations", args.api);
    // Every user's first hold creates their ledger accounts: do that before measuring.
    warm_users(&client, &url, &tokens, args.connections).await?;
    let reservations = {
        let (client, tokens) = (client.clone(), tokens.clone());
        measure(args, move |task, n| {
            let (client, url) = (client.clone(), url.clone());
            let token = tokens[((task * 7919 + n) % tokens.len() as u64) as usize].clone();
            async move {
                let res = client
                    .post(url)
                    .bearer_auth(token)
                    .header("Idempotency-Key", format!("b{task}-{n}"))
                    .json(&json!({"quantity": 1}))
                    .send()
                    .await;
                res.is_ok_and(|r| r.status() == 201)
            }
        })
        .await
    };

    let pg = pg_rowlock(args).await?;
    Ok(vec![
        ("http_plain_rps", plain.rate, "requests/s"),
        ("reservations_rps", reservations.rate, "reservations/s"),
        ("reservations_p50_ms", reservations.p50_ms, "ms"),
        ("reservations_p99_ms", reservations.p99_ms, "ms"),
        ("reservations_failed", reservations.failed as f64, "requests"),
        ("pg_rowlock_rps", pg, "reservations/s"),
        ("ratio_reservations_to_plain", reservations.rate / plain.rate, "ratio"),
        ("ratio_reservations_to_pg_rowlock", reservations.rate / pg, "ratio"),
    ])
}

async fn create_offering(
    client: &reqwest::Client,
    keys: &TokenKeys,
    api: &str,
) -> Result<String, String> {
    let id = format!("bench-{}", std::process::id());
    let res = client
        .post(format!("{api}/v1/admin/offerings"))
        .bearer_auth(keys.issue(1, Role::Admin, true))
        .json(&json!({
            "id": id, "kind": "tickets", "name": {"en": "Benchmark"},
            "zones": [{"id": "main", "supply": 1_000_000_000u64, "price_satang": 100}],
            "min_quantity": 1, "max_per_person": 100_000_000u64, "lot": 1,
            "hold_seconds": 600, "deposit_percent": 100
        }))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if res.status() != 201 {
        return Err(format!("creating the offering: {}", res.text().await.unwrap_or_default()));
    }
    Ok(id)
}

async fn warm_users(
    client: &reqwest::Client,
    url: &str,
    tokens: &Arc<Vec<String>>,
    connections: u64,
) -> Result<(), String> {
    let next = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..connections)
        .map(|_| {
            let (client, url, tokens, next) =
                (client.clone(), url.to_owned(), tokens.clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                    let Some(token) = tokens.get(i) else { return };
                    let res = client
                        .post(&url)
                        .bearer_auth(token)
                        .header("Idempotency-Key", format!("warm-{i}"))
                        .json(&json!({"quantity": 1}))
                        .send()
                        .await;
                    assert!(res.is_ok_and(|r| r.status() == 201), "warm-up reservation failed");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.map_err(|e| e.to_string())?;
    }
    Ok(())
}

#[derive(Debug)]
struct Measured {
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
    failed: u64,
}

/// Runs `request(task, n)` from `connections` tasks for warm-up + measured seconds; counts
/// successes and latencies in the measured window only.
async fn measure<F, Fut>(args: &Args, request: F) -> Measured
where
    F: Fn(u64, u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let counting = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(Mutex::new(Vec::<u32>::new()));
    let tasks: Vec<_> = (0..args.connections)
        .map(|task| {
            let (request, counting, stop) = (request.clone(), counting.clone(), stop.clone());
            let (ok, failed, latencies) = (ok.clone(), failed.clone(), latencies.clone());
            tokio::spawn(async move {
                let mut mine = Vec::new();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let start = Instant::now();
                    let success = request(task, n).await;
                    n += 1;
                    if counting.load(Ordering::Relaxed) {
                        if success {
                            ok.fetch_add(1, Ordering::Relaxed);
                            mine.push(start.elapsed().as_micros() as u32);
                        } else {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                latencies.lock().unwrap().extend(mine);
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(args.warmup_seconds)).await;
    counting.store(true, Ordering::Relaxed);
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    counting.store(false, Ordering::Relaxed);
    let elapsed = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let mut all = latencies.lock().unwrap().clone();
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .map_or(0.0, |us| *us as f64 / 1000.0)
    };
    Measured {
        rate: ok.load(Ordering::Relaxed) as f64 / elapsed,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        failed: failed.load(Ordering::Relaxed),
    }
}

/// The baseline: one hot inventory row, decremented under its row lock per reservation.
async fn pg_rowlock(args: &Args) -> Result<f64, String> {
    let connect = || async {
        let (client, conn) = tokio_postgres::connect(&args.database_url, tokio_postgres::NoTls)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        Ok::<_, String>(client)
    };
    let setup = connect().await?;
    setup
        .batch_execute(
            "DROP TABLE IF EXISTS bench_inventory;
             CREATE TABLE bench_inventory (id INT PRIMARY KEY, remaining BIGINT NOT NULL);
             INSERT INTO bench_inventory VALUES (1, 1000000000000);",
        )
        .await
        .map_err(|e| e.to_string())?;
    let mut clients = Vec::new();
    for _ in 0..args.pg_connections {
        clients.push(Arc::new(connect().await?));
    }
    let next = Arc::new(AtomicU64::new(0));
    let pg_args = Args { connections: args.pg_connections, ..clone_args(args) };
    let result = measure(&pg_args, move |_, _| {
        let client = clients[(next.fetch_add(1, Ordering::Relaxed) % clients.len() as u64) as usize].clone();
        async move {
            client
                .execute(
                    "UPDATE bench_inventory SET remaining = remaining - $1 WHERE id = 1 AND remaining >= $1",
                    &[&1i64],
                )
                .await
                .is_ok_and(|n| n == 1)
        }
    })
    .await;
    setup.batch_execute("DROP TABLE bench_inventory").await.map_err(|e| e.to_string())?;
    Ok(result.rate)
}

fn clone_args(a: &Args) -> Args {
    Args {
        api: a.api.clone(),
        token_secret: a.token_secret.clone(),
        database_url: a.database_url.clone(),
        seconds: a.seconds,
        warmup_seconds: a.warmup_seconds,
        connections: a.connections,
        users: a.users,
        pg_connections: a.pg_connections,
        json: a.json,
    }
}

fn print(metrics: &Metrics, json: bool) {
    for (name, value, unit) in metrics {
        if json {
            println!("{}", allot_tests::json_metric(name, *value, unit));
        } else {
            println!("{name:<36} {value:>14.2} {unit}");
        }
    }
}
