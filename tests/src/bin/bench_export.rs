//! Time of a signed ledger export: loads a fresh TigerBeetle with `--transfers` transfers
//! (default 1,000,000, written a full batch at a time by `Ledger::load_synthetic_money`),
//! then exports them with the same code as `reconcile export` (CSV and JSON Lines,
//! hash-chained, signed) and verifies the result, timing both.
//!
//! `cargo run --release -p allot-tests --bin bench_export` (the target is under 30 s for
//! 1,000,000 transfers on a 2-core machine).

use std::process::ExitCode;
use std::time::{Instant, SystemTime};

use allot_ledger::ids::LEDGER_THB;
use allot_ledger::{Ledger, SyntheticMoney};
use allot_reconcile::export::{self, DirSink, ExportRequest};
use allot_reconcile::format::{FileKind, Section};
use allot_tests::tigerbeetle::Server;
use clap::Parser;

#[derive(Debug, Parser)]
#[command(about = "Time a signed ledger export of many transfers")]
struct Args {
    #[arg(long, default_value_t = 1_000_000)]
    transfers: usize,
    /// Accounts the transfers move between.
    #[arg(long, default_value_t = 1_000)]
    accounts: u128,
    /// Run TigerBeetle in development mode (works on any file system, e.g. tmpfs).
    #[arg(long)]
    development: bool,
    /// Where the export is written (a fresh temporary directory by default).
    #[arg(long)]
    out: Option<std::path::PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench_export: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let server = Server::start_with(args.development, "512MiB");
    let ledger = Ledger::connect(0, &server.address()).map_err(|e| e.to_string())?;

    let loading = Instant::now();
    let load = SyntheticMoney { accounts: args.accounts, transfers: args.transfers as u128 };
    ledger.load_synthetic_money(load).await.map_err(|e| format!("loading: {e}"))?;
    let loaded = loading.elapsed();

    let temp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let out = args.out.unwrap_or_else(|| temp.path().join("export"));
    let key_dir = temp.path().join("keys");
    let key = allot_reconcile::keys::load_or_generate(&key_dir)?;
    let request =
        ExportRequest { cluster: 0, ledgers: vec![LEDGER_THB], from: None, to: SystemTime::now() };
    let mut sink =
        DirSink::create(&out, &[FileKind::Csv, FileKind::Jsonl]).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut progress = |_: Section, _: u64| {};
    let manifest = export::export(&ledger, &request, &mut sink, &key, &mut progress)
        .await
        .map_err(|e| e.to_string())?;
    let exported = started.elapsed();
    let transfers: u64 = manifest.totals.iter().map(|t| t.transfers).sum();
    if transfers != args.transfers as u64 {
        return Err(format!("exported {transfers} transfers, expected {}", args.transfers));
    }
    let bytes: u64 = manifest.files.iter().map(|f| f.bytes).sum();

    let started = Instant::now();
    let verified = allot_reconcile::verify::verify(&out, None);
    let verify_time = started.elapsed();
    if !verified.ok() {
        return Err(format!("the fresh export does not verify: {:?}", verified.problems));
    }
    let seconds = exported.as_secs_f64();
    println!(
        "load                {:>10.2} s  ({} transfers, {} accounts)",
        loaded.as_secs_f64(),
        args.transfers,
        args.accounts
    );
    println!("export              {seconds:>10.2} s  ({:.0} transfers/s, {:.0} MB written, CSV + JSON Lines)", transfers as f64 / seconds, bytes as f64 / 1e6);
    println!("verify              {:>10.2} s", verify_time.as_secs_f64());
    println!("export target 30 s: {}", if seconds < 30.0 { "met" } else { "MISSED" });
    Ok(())
}
