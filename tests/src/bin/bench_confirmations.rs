//! Webhook-driven confirmations per second, end to end: signed bank webhooks over HTTP into
//! an in-process API, each recorded in Postgres, confirmed in TigerBeetle (deposit + two
//! posts, one linked chain), and marked applied with its notification enqueued.
//!
//! Phase 1 (not timed) places `--confirmations` one-seat holds for as many people and opens
//! a payment intent for each. Phase 2 (timed) delivers one signed webhook per intent from
//! `--tasks` concurrent senders and counts the `succeeded` answers. At the end the ledger's
//! deposits must equal the sum of the intents, or the run fails: a fast wrong answer is no
//! figure.
//!
//! Needs Postgres at `ALLOT_TEST_DATABASE_URL` (a fresh database is created in it) and the
//! TigerBeetle binary (`ALLOT_TB_BIN` or the ops cache); it starts its own replica.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use allot_api::config::Settings;
use allot_api::identity::Role;
use allot_api::startup::Application;
use allot_tests::app::fresh_database;
use allot_tests::tigerbeetle::Server;
use clap::Parser;
use futures::StreamExt;
use serde_json::{json, Value};

#[derive(Debug, Parser)]
#[command(about = "Webhook-driven confirmations per second through the API")]
struct Args {
    /// Reservations paid in the timed phase (one webhook each).
    #[arg(long, default_value_t = 5_000)]
    confirmations: u64,
    /// Concurrent webhook senders (a bank's delivery workers).
    #[arg(long, default_value_t = 64)]
    tasks: usize,
    /// HTTP workers of the API (0: one per core).
    #[arg(long, default_value_t = 0)]
    workers: usize,
    /// Postgres connections of the API.
    #[arg(long, default_value_t = 32)]
    pool: usize,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug)]
struct Metric {
    name: &'static str,
    value: f64,
    unit: &'static str,
    decimals: usize,
}

fn main() {
    let args = Args::parse();
    // Development mode: no direct I/O needed, so any temp dir works; this path is bounded by
    // Postgres and HTTP, not by the ledger's batch size.
    let server = Server::start();
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let code = match runtime.block_on(run(&args, &server.address())) {
        Ok(metrics) => {
            print(&metrics, args.json);
            0
        }
        Err(e) => {
            eprintln!("bench_confirmations: {e}");
            1
        }
    };
    // Exit at once: the in-process API's workers would otherwise keep calling a ledger
    // that is going away. Exiting closes the replica's stdin, which stops it.
    std::process::exit(code)
}

/// What a webhook needs to pay one intent.
#[derive(Debug, Clone)]
struct Intent {
    reference: String,
    amount_satang: u64,
}

async fn run(args: &Args, tb_addresses: &str) -> Result<Vec<Metric>, String> {
    let database_url = fresh_database().await;
    let data_dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut settings = Settings {
        offerings_dir: "/nonexistent".into(),
        data_dir: data_dir.path().into(),
        dev_mode: true,
        ..Settings::default()
    };
    settings.http.addr = "127.0.0.1:0".into();
    settings.http.workers = args.workers;
    settings.database.url = database_url;
    settings.database.pool_max = args.pool;
    settings.ledger.addresses = tb_addresses.into();
    // Confirmations are measured, not the sending of their notifications.
    settings.notify.url = "none".into();
    let app = Application::build(settings).await?;
    let base = format!("http://127.0.0.1:{}", app.port());
    let state = app.state();
    tokio::spawn(app.run_until_stopped());
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.tasks)
        .build()
        .map_err(|e| e.to_string())?;

    let admin = state.tokens.issue(1, Role::Admin, true);
    let offering = json!({
        "id": "bench", "kind": "tickets", "name": {"en": "Bench"},
        "zones": [{"id": "main", "supply": args.confirmations, "price_satang": 150_000}],
        "min_quantity": 1, "max_per_person": 1, "lot": 1, "hold_seconds": 3600,
        "deposit_percent": 100
    });
    let res = client
        .post(format!("{base}/v1/admin/offerings"))
        .bearer_auth(&admin)
        .json(&offering)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if res.status() != 201 {
        return Err(format!("creating the offering: {}", res.text().await.unwrap_or_default()));
    }

    eprintln!("bench_confirmations: opening {} payment intents", args.confirmations);
    let intents: Vec<Intent> = futures::stream::iter(0..args.confirmations)
        .map(|person| {
            let (client, base, state) = (&client, &base, &state);
            async move {
                let token = state.tokens.issue(1_000 + person as i64, Role::Citizen, false);
                let held: Value = post(
                    client,
                    &format!("{base}/v1/offerings/bench/reservations"),
                    &token,
                    json!({"quantity": 1}),
                )
                .await?;
                let id = held["reservation_id"].as_str().ok_or(format!("no hold: {held}"))?;
                let url = format!("{base}/v1/reservations/{id}/payments");
                let intent =
                    post(client, &url, &token, json!({"method": "promptpay", "gateway": "bank"}))
                        .await?;
                Ok::<_, String>(Intent {
                    reference: intent["reference"].as_str().ok_or("no reference")?.to_owned(),
                    amount_satang: intent["amount_satang"].as_u64().ok_or("no amount")?,
                })
            }
        })
        .buffer_unordered(args.tasks)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;

    eprintln!("bench_confirmations: delivering {} signed webhooks", intents.len());
    let started = Instant::now();
    let latencies: Vec<Result<Duration, String>> =
        futures::stream::iter(intents.iter().enumerate())
            .map(|(i, intent)| {
                let (client, base, state) = (&client, &base, &state);
                async move {
                    let body = serde_json::to_vec(&json!({
                        "transaction_id": format!("BENCH-{i}"),
                        "reference": intent.reference,
                        "amount_satang": intent.amount_satang,
                        "paid_at": allot_tests::finance::paid_now(),
                        "currency": "THB",
                    }))
                    .expect("serializes");
                    let ts = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .expect("after 1970")
                        .as_secs()
                        .to_string();
                    let signature = state.payments.gateways().bank.sign(&ts, &body);
                    let sent = Instant::now();
                    let res = client
                        .post(format!("{base}/v1/payments/webhooks/bank"))
                        .header("content-type", "application/json")
                        .header("X-Allot-Timestamp", ts)
                        .header("X-Allot-Signature", signature)
                        .body(body)
                        .send()
                        .await
                        .map_err(|e| e.to_string())?;
                    let answer: Value = res.json().await.map_err(|e| e.to_string())?;
                    if answer["status"] != "succeeded" {
                        return Err(format!("webhook answered {answer}"));
                    }
                    Ok(sent.elapsed())
                }
            })
            .buffer_unordered(args.tasks)
            .collect()
            .await;
    let elapsed = started.elapsed();
    let mut latencies: Vec<Duration> = latencies.into_iter().collect::<Result<_, _>>()?;
    latencies.sort();

    let spec = &state.catalog.get("bench").ok_or("offering vanished")?.spec;
    let money = state.ledger.money_balance(spec).await.map_err(|e| e.to_string())?;
    let expected: u128 = intents.iter().map(|i| u128::from(i.amount_satang)).sum();
    if money.deposits_satang != expected || money.refunds_payable_satang != 0 {
        return Err(format!("ledger disagrees: {money:?}, expected deposits {expected}"));
    }
    let quantile = |q: f64| {
        let i = ((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[i].as_secs_f64() * 1e3
    };
    Ok(vec![
        Metric {
            name: "confirmations_rps",
            value: latencies.len() as f64 / elapsed.as_secs_f64(),
            unit: "confirmations/s",
            decimals: 0,
        },
        Metric { name: "confirmation_p50_ms", value: quantile(0.50), unit: "ms", decimals: 2 },
        Metric { name: "confirmation_p99_ms", value: quantile(0.99), unit: "ms", decimals: 2 },
        Metric {
            name: "confirmations_counted",
            value: latencies.len() as f64,
            unit: "confirmations",
            decimals: 0,
        },
    ])
}

async fn post(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    body: Value,
) -> Result<Value, String> {
    let res = client
        .post(url)
        .bearer_auth(token)
        .header("Idempotency-Key", "bench")
        .json(&body)
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    let status = res.status();
    let body: Value = res.json().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("{url}: {status} {body}"));
    }
    Ok(body)
}

fn print(metrics: &[Metric], json: bool) {
    for m in metrics {
        if json {
            println!("{}", allot_tests::json_metric(m.name, m.value, m.unit));
        } else {
            println!("{:<24} {:>14.*}  {}", m.name, m.decimals, m.value, m.unit);
        }
    }
}
