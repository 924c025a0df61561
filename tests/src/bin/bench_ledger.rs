//! Hold throughput through `allot-ledger` against a fresh TigerBeetle in production mode.
//!
//! Run by `./ops/bench`, which first measures TigerBeetle's own ceiling with `tigerbeetle
//! benchmark` and passes it in as `--raw-tps`, so the ratio of the two is computed here.
//!
//! The load is what a sale's opening minute looks like to the ledger: many callers at once,
//! each placing 1-unit holds for many distinct people on one offering. Every hold is one
//! `create_transfers` request of two linked pending transfers; the TigerBeetle client packs
//! the requests that wait on one client into a single message.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use allot_ledger::{Deadline, HoldId, HoldOutcome, HoldRequest, Ledger, OfferingSpec, ZoneSpec};
use allot_tests::tigerbeetle::Server;
use clap::Parser;

/// Transfers per direct hold: the stock and the quota leg of one linked chain; a partner's
/// hold (`--partner`) has a third, its allocation.
const TRANSFERS_PER_HOLD: f64 = 2.0;
/// The partner number `--partner` places holds as.
const PARTNER: u16 = 1;
/// Longer than any run, so no hold expires while we count; expiry is not what we measure.
const HOLD_TIMEOUT_SECONDS: u32 = 600;

#[derive(Debug, Parser)]
#[command(about = "Hold throughput of allot-ledger against a fresh production-mode TigerBeetle")]
struct Args {
    /// Seconds during which completed holds are counted.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Seconds of the same load before counting starts, so batching reaches its steady state.
    #[arg(long, default_value_t = 3)]
    warmup_seconds: u64,
    /// Distinct people; each gets accounts on first hold, before the measured phase.
    #[arg(long, default_value_t = 20_000)]
    persons: u64,
    /// Concurrent callers, each with one hold in flight at a time. A client packs what waits
    /// on it into one message of at most ~4,000 holds; 2,048 callers per client fill about
    /// half of it, which on two cores gave the most holds/s with p99 near 100 ms. More
    /// callers add some throughput but mostly latency.
    #[arg(long, default_value_t = 4096)]
    tasks: u64,
    /// TigerBeetle clients (`Ledger`s); each has one request in flight at a time, so two
    /// keep the replica busy while a reply is handled. More clients cost more than they
    /// gain when the replica shares the cores with us.
    #[arg(long, default_value_t = 2)]
    clients: u64,
    /// Tokio worker threads. One suffices: the callers only wait, and a second thread
    /// competes for the cores with the client threads and the replica.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// TigerBeetle grid cache of the server this driver starts.
    #[arg(long, default_value = "512MiB")]
    cache_grid: String,
    /// `load accepted` of `tigerbeetle benchmark` on this machine, in transfers/s.
    #[arg(long)]
    raw_tps: Option<f64>,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    json: bool,
    /// Every hold placed by a bank partner (three linked transfers: its allocation too),
    /// to compare with the direct channel's two.
    #[arg(long)]
    partner: bool,
}

#[derive(Debug)]
struct Metric {
    name: &'static str,
    value: f64,
    unit: &'static str,
    /// Decimal places worth printing.
    decimals: usize,
}

/// What the callers share: the clients, the offering and the counters.
#[derive(Debug)]
struct Load {
    ledgers: Vec<Ledger>,
    spec: OfferingSpec,
    persons_per_client: u64,
    partner: Option<u16>,
    next_hold: AtomicU64,
    held: AtomicU64,
    failed: AtomicU64,
    /// Holds started while this is set have their latency recorded.
    measuring: AtomicBool,
    stop: AtomicBool,
}

impl Load {
    /// People are split between clients so each client's own cache of known people covers
    /// everyone it serves; otherwise a person's first hold on another client would pay the
    /// account-creation round trips again inside the measured phase.
    fn person(&self, client: u64, index: u64) -> u64 {
        let clients = self.ledgers.len() as u64;
        1 + client + clients * (index % self.persons_per_client)
    }

    async fn hold(&self, client: u64, person: u64) -> bool {
        let id = self.next_hold.fetch_add(1, Ordering::Relaxed);
        let req = HoldRequest {
            id: HoldId::new(id.into()).expect("hold ids start at 1"),
            zone: 1,
            person,
            quantity: 1,
            deadline: Deadline::after(HOLD_TIMEOUT_SECONDS, 0),
            allow_partial: false,
            partner: self.partner,
        };
        match self.ledgers[client as usize].hold(&self.spec, &req).await {
            Ok(HoldOutcome::Held(_)) => true,
            outcome => {
                // Supply and allowances are far beyond what a run can use: anything but
                // `Held` is a broken setup, and a figure that hides it would be a lie.
                if self.failed.fetch_add(1, Ordering::Relaxed) == 0 {
                    eprintln!("bench_ledger: hold failed: {outcome:?}");
                }
                false
            }
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.clients == 0 || args.tasks < args.clients || args.persons < args.clients {
        eprintln!("bench_ledger: need clients >= 1, tasks >= clients and persons >= clients");
        return ExitCode::FAILURE;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(run(&args)) {
        Ok(metrics) => {
            print(&metrics, args.json);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bench_ledger: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: &Args) -> Result<Vec<Metric>, String> {
    let server = Server::start_with(false, &args.cache_grid);
    let ledgers = (0..args.clients)
        .map(|_| Ledger::connect(0, &server.address()).map_err(|e| e.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    let spec = OfferingSpec {
        number: 1,
        zones: vec![ZoneSpec { number: 1, supply: 1 << 60 }],
        lot: 1,
        min_quantity: 1,
        max_per_person: 1 << 40,
        gateways: vec![1],
    };
    ledgers[0].setup_offering(&spec).await.map_err(|e| e.to_string())?;
    if args.partner {
        ledgers[0]
            .set_partner_allocation(&spec, PARTNER, 1 << 60)
            .await
            .map_err(|e| e.to_string())?;
    }
    let load = Arc::new(Load {
        persons_per_client: args.persons / args.clients,
        partner: args.partner.then_some(PARTNER),
        ledgers,
        spec,
        next_hold: AtomicU64::new(1),
        held: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        measuring: AtomicBool::new(false),
        stop: AtomicBool::new(false),
    });
    let persons = load.persons_per_client * args.clients;
    eprintln!(
        "bench_ledger: TigerBeetle on port {} (production mode), {persons} persons, \
         {} tasks over {} clients, {} worker thread(s)",
        server.port, args.tasks, args.clients, args.threads
    );

    // A person's first hold also creates their two accounts and funds their allowance:
    // three requests instead of one. Measured on its own so the steady state stays clean.
    let started = Instant::now();
    let mut tasks = Vec::new();
    for task in 0..args.tasks {
        let load = load.clone();
        let (client, stride) = (task % args.clients, args.tasks / args.clients);
        tasks.push(tokio::spawn(async move {
            let mut index = task / load.ledgers.len() as u64;
            while index < load.persons_per_client {
                load.hold(client, load.person(client, index)).await;
                index += stride;
            }
        }));
    }
    for task in tasks {
        task.await.map_err(|e| e.to_string())?;
    }
    let first_holds_tps = persons as f64 / started.elapsed().as_secs_f64();
    check_failures(&load)?;

    let tasks: Vec<_> = (0..args.tasks)
        .map(|task| {
            let load = load.clone();
            tokio::spawn(async move {
                let client = task % load.ledgers.len() as u64;
                // Tasks of one client start spread over its people and walk through them,
                // so concurrent holds mostly touch different quota accounts, as in a sale.
                let mut index = task * 7919;
                let mut latencies_us = Vec::new();
                while !load.stop.load(Ordering::Relaxed) {
                    let measuring = load.measuring.load(Ordering::Relaxed);
                    let started = Instant::now();
                    if load.hold(client, load.person(client, index)).await {
                        load.held.fetch_add(1, Ordering::Relaxed);
                        if measuring {
                            latencies_us.push(started.elapsed().as_micros() as u64);
                        }
                    }
                    index += 1;
                }
                latencies_us
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(args.warmup_seconds)).await;
    let (held_before, started) = (load.held.load(Ordering::Relaxed), Instant::now());
    load.measuring.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    let (held_after, elapsed) = (load.held.load(Ordering::Relaxed), started.elapsed());
    load.measuring.store(false, Ordering::Relaxed);
    load.stop.store(true, Ordering::Relaxed);
    let mut latencies_us = Vec::new();
    for task in tasks {
        latencies_us.extend(task.await.map_err(|e| e.to_string())?);
    }
    check_failures(&load)?;
    latencies_us.sort_unstable();

    let holds_tps = (held_after - held_before) as f64 / elapsed.as_secs_f64();
    let transfers_tps = holds_tps * (TRANSFERS_PER_HOLD + f64::from(u8::from(args.partner)));
    let mut metrics = Vec::new();
    if let Some(raw) = args.raw_tps {
        metrics.push(Metric { name: "tb_raw_tps", value: raw, unit: "transfers/s", decimals: 0 });
    }
    metrics.extend([
        Metric { name: "ledger_holds_tps", value: holds_tps, unit: "holds/s", decimals: 0 },
        Metric {
            name: "ledger_transfers_tps",
            value: transfers_tps,
            unit: "transfers/s",
            decimals: 0,
        },
        Metric {
            name: "ledger_hold_p50_ms",
            value: percentile_ms(&latencies_us, 0.50),
            unit: "ms",
            decimals: 1,
        },
        Metric {
            name: "ledger_hold_p99_ms",
            value: percentile_ms(&latencies_us, 0.99),
            unit: "ms",
            decimals: 1,
        },
        Metric {
            name: "ledger_first_holds_tps",
            value: first_holds_tps,
            unit: "holds/s",
            decimals: 0,
        },
    ]);
    if let Some(raw) = args.raw_tps.filter(|raw| *raw > 0.0) {
        // Transfers over transfers: `tigerbeetle benchmark` counts transfers, and a hold is
        // two of them in one chain, so this is the share of TigerBeetle's own ceiling that
        // survives our layer (one small request per hold, linked pending pairs, balance
        // history on the stock account). Holds over transfers would cap it at 0.5.
        metrics.push(Metric {
            name: "ratio_ledger_to_raw",
            value: transfers_tps / raw,
            unit: "ratio",
            decimals: 3,
        });
    }
    Ok(metrics)
}

fn check_failures(load: &Load) -> Result<(), String> {
    match load.failed.load(Ordering::Relaxed) {
        0 => Ok(()),
        n => Err(format!("{n} holds did not succeed; no figures reported")),
    }
}

fn percentile_ms(sorted_us: &[u64], q: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let rank = ((sorted_us.len() - 1) as f64 * q).round() as usize;
    sorted_us[rank] as f64 / 1000.0
}

fn print(metrics: &[Metric], json: bool) {
    for m in metrics {
        if json {
            let scale = 10f64.powi(m.decimals as i32);
            let value = if m.decimals == 0 {
                serde_json::Value::from(m.value.round() as u64)
            } else {
                serde_json::Value::from((m.value * scale).round() / scale)
            };
            // Written by hand to keep the documented key order; `json!` sorts keys.
            let (name, unit) = (serde_json::Value::from(m.name), serde_json::Value::from(m.unit));
            println!(r#"{{"name":{name},"value":{value},"unit":{unit}}}"#);
        } else {
            println!("{:<24} {:>14.*}  {}", m.name, m.decimals, m.value, m.unit);
        }
    }
}
