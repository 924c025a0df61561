//! Gate scans per second, end to end: `POST /v1/gate/verify` over HTTP into an in-process
//! API (signature check, one conditional UPDATE in Postgres, the holder's initials), and
//! offline verifications per second (`tickets::token::verify` with the public key alone).
//!
//! Phase 1 (not timed): `--people` buyers reserve 4 seats each, a signed bank webhook pays
//! each reservation, and the projector issues the tickets. Phase 2 (timed): every ticket is
//! scanned once from `--tasks` concurrent gates; each must be admitted, or the run fails.
//! Phase 3 (timed): every token is verified offline.
//!
//! Needs Postgres at `ALLOT_TEST_DATABASE_URL` and the TigerBeetle binary, like
//! `bench_confirmations`: `cargo run --release -p allot-tests --bin bench_gate`.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use allot_api::config::Settings;
use allot_api::identity::Role;
use allot_api::startup::Application;
use allot_api::tickets::token;
use allot_tests::app::fresh_database;
use allot_tests::tigerbeetle::Server;
use clap::Parser;
use futures::StreamExt;
use serde_json::{json, Value};

const SEATS_EACH: u64 = 4;

#[derive(Debug, Parser)]
#[command(about = "Gate scans per second through the API, and offline verifications")]
struct Args {
    /// Buyers of 4 seats each.
    #[arg(long, default_value_t = 500)]
    people: u64,
    /// Concurrent gates scanning.
    #[arg(long, default_value_t = 32)]
    tasks: usize,
}

fn main() {
    let args = Args::parse();
    let server = Server::start();
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let code = match runtime.block_on(run(&args, &server.address())) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("bench_gate: {e}");
            1
        }
    };
    std::process::exit(code)
}

async fn post(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    body: Value,
) -> Result<Value, String> {
    let res = client.post(url).bearer_auth(token).json(&body).send().await;
    res.map_err(|e| e.to_string())?.json().await.map_err(|e| e.to_string())
}

async fn run(args: &Args, tb_addresses: &str) -> Result<(), String> {
    let data_dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut settings = Settings {
        offerings_dir: "/nonexistent".into(),
        data_dir: data_dir.path().into(),
        dev_mode: true,
        ..Settings::default()
    };
    settings.http.addr = "127.0.0.1:0".into();
    settings.database.url = fresh_database().await;
    settings.ledger.addresses = tb_addresses.into();
    settings.ledger.projector_interval_ms = 50;
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
        "zones": [{"id": "main", "supply": args.people * SEATS_EACH, "price_satang": 150_000}],
        "min_quantity": 1, "max_per_person": SEATS_EACH, "lot": 1, "hold_seconds": 3600,
        "deposit_percent": 100
    });
    post(&client, &format!("{base}/v1/admin/offerings"), &admin, offering).await?;

    eprintln!("bench_gate: {} people buy {SEATS_EACH} seats each", args.people);
    let buyers: Vec<String> = futures::stream::iter(0..args.people)
        .map(|person| {
            let (client, base, state) = (&client, &base, &state);
            async move {
                let token = state.tokens.issue(1_000 + person as i64, Role::Citizen, false);
                let url = format!("{base}/v1/offerings/bench/reservations");
                let res = client
                    .post(url)
                    .bearer_auth(&token)
                    .header("Idempotency-Key", format!("bench-{person}"))
                    .json(&json!({"quantity": SEATS_EACH}))
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                let held: Value = res.json().await.map_err(|e| e.to_string())?;
                let id = held["reservation_id"].as_str().ok_or(format!("no hold: {held}"))?;
                let url = format!("{base}/v1/reservations/{id}/payments");
                let intent =
                    post(client, &url, &token, json!({"method": "promptpay", "gateway": "bank"}))
                        .await?;
                let body = serde_json::to_vec(&json!({
                    "transaction_id": format!("GATE-{person}"),
                    "reference": intent["reference"],
                    "amount_satang": intent["amount_satang"],
                    "paid_at": allot_tests::finance::paid_now(),
                }))
                .expect("serializes");
                let ts = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .expect("now")
                    .as_secs()
                    .to_string();
                let signature = state.payments.gateways().bank.sign(&ts, &body);
                let res = client
                    .post(format!("{base}/v1/payments/webhooks/bank"))
                    .header("content-type", "application/json")
                    .header("X-Allot-Timestamp", ts)
                    .header("X-Allot-Signature", signature)
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                let paid: Value = res.json().await.map_err(|e| e.to_string())?;
                if paid["status"] != "succeeded" {
                    return Err(format!("payment answered {paid}"));
                }
                Ok::<_, String>(token)
            }
        })
        .buffer_unordered(args.tasks)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;

    let deadline = Instant::now() + Duration::from_secs(120);
    let mut tokens = Vec::new();
    for buyer in &buyers {
        loop {
            let res = client.get(format!("{base}/v1/me/tickets")).bearer_auth(buyer).send().await;
            let list: Value =
                res.map_err(|e| e.to_string())?.json().await.map_err(|e| e.to_string())?;
            let list = list.as_array().cloned().unwrap_or_default();
            if list.len() as u64 == SEATS_EACH {
                tokens.extend(list.iter().map(|t| t["token"].as_str().unwrap_or("").to_owned()));
                break;
            }
            if Instant::now() > deadline {
                return Err("tickets were not issued within 120 s".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    eprintln!("bench_gate: scanning {} tickets from {} gates", tokens.len(), args.tasks);
    let gate = state.tokens.issue(2, Role::Gate, true);
    let started = Instant::now();
    let answers: Vec<Result<(), String>> = futures::stream::iter(&tokens)
        .map(|t| {
            let (client, base, gate) = (&client, &base, &gate);
            async move {
                let url = format!("{base}/v1/gate/verify");
                let res =
                    client.post(url).bearer_auth(gate).json(&json!({"token": t})).send().await;
                let res = res.map_err(|e| e.to_string())?;
                match res.status().as_u16() {
                    200 => Ok(()),
                    s => {
                        Err(format!("scan answered {s}: {}", res.text().await.unwrap_or_default()))
                    }
                }
            }
        })
        .buffer_unordered(args.tasks)
        .collect()
        .await;
    let online = started.elapsed();
    answers.into_iter().collect::<Result<Vec<_>, _>>()?;

    let public = state.tickets.public_key();
    let started = Instant::now();
    let rounds = 20;
    for _ in 0..rounds {
        for t in &tokens {
            token::verify(&public, t).map_err(|e| format!("offline: {e:?}"))?;
        }
    }
    let offline = started.elapsed();
    let n = tokens.len() as f64;
    println!("gate scans admitted:          {}", tokens.len());
    println!("gate scans per second:        {:.0}", n / online.as_secs_f64());
    println!("offline verifications per s:  {:.0}", n * rounds as f64 / offline.as_secs_f64());
    Ok(())
}
