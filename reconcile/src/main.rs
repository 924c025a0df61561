//! `reconcile`: the finance and regulator CLI. Exit codes: 0 all agree or verified, 1
//! discrepancies or a failed verification, 2 the command itself could not run.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use allot_ledger::Ledger;
use allot_reconcile::export::{self, DirSink, ExportRequest};
use allot_reconcile::format::{FileKind, Section};
use allot_reconcile::{audit, check, keys, matching, refunds, report, statement, store, verify};
use clap::{Args, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

/// Reconcile the allot ledger (TigerBeetle) with Postgres and bank statements, export it
/// for regulators, and verify exports and the audit trail.
#[derive(Debug, Parser)]
#[command(name = "reconcile", version, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    conn: Connection,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct Connection {
    /// Postgres of the deployment (identity, offerings, projections, payments, audit).
    #[arg(
        long,
        global = true,
        env = "ALLOT_DATABASE_URL",
        default_value = "postgres://allot@127.0.0.1:5433/allot"
    )]
    database_url: String,
    /// TigerBeetle replica addresses, comma-separated (`3001` alone is a local port).
    #[arg(long, global = true, env = "ALLOT_TB_ADDRESSES", default_value = "127.0.0.1:3001")]
    tb_addresses: String,
    /// TigerBeetle cluster id.
    #[arg(long, global = true, env = "ALLOT_TB_CLUSTER", default_value_t = 0)]
    tb_cluster: u128,
    /// Local state; in development the export signing key is generated here.
    #[arg(long, global = true, env = "ALLOT_DATA_DIR", default_value = ".data")]
    data_dir: PathBuf,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// TigerBeetle against Postgres: every reservation (state, quantity, person, zone), every
    /// offering's totals (supply = remaining + held + confirmed), and every deposit or
    /// refund in the ledger against the payments recorded. Prints a summary and every
    /// discrepancy by name; exits 1 if there is any.
    Check,
    /// Signed, hash-chained ledger export for regulators (accounts, transfers, balances as
    /// CSV and JSON Lines, plus a signed manifest); `export verify` checks one.
    Export(ExportArgs),
    /// Bank statements.
    Statement {
        #[command(subcommand)]
        action: StatementAction,
    },
    /// Match imported statement lines to payment notifications by reference and exact
    /// amount, the booking date within a window of the payment date. Lists unmatched lines
    /// on both sides and amount mismatches as exceptions; exits 1 if there is any.
    Match(MatchArgs),
    /// Funds collected, outstanding deposits and refunds payable, per offering; with
    /// `--by-channel`, units held and confirmed per channel (direct, each partner).
    Report {
        /// CSV on standard output instead of a table.
        #[arg(long)]
        csv: bool,
        /// Per channel instead: each partner's allocation and use, and the direct rest.
        #[arg(long)]
        by_channel: bool,
    },
    /// Refunds paid back to their payers.
    Refunds {
        #[command(subcommand)]
        action: RefundsAction,
    },
    /// The hash-chained audit trail in Postgres.
    Audit {
        #[command(subcommand)]
        action: AuditAction,
    },
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
struct ExportArgs {
    #[command(subcommand)]
    verify: Option<ExportAction>,
    /// First instant exported (RFC 3339, `YYYY-MM-DD` meaning 00:00 UTC, or nanoseconds
    /// since 1970); the beginning of the ledger when left out.
    #[arg(long, value_parser = parse_instant)]
    from: Option<SystemTime>,
    /// Instant the export stops before (same forms); now when left out.
    #[arg(long, value_parser = parse_instant)]
    to: Option<SystemTime>,
    /// Directory to write; must be empty or absent (an export never overwrites another).
    #[arg(long, required = true)]
    out: Option<PathBuf>,
    /// Which files to write.
    #[arg(long, value_enum, default_value_t = Formats::Both)]
    format: Formats,
    /// File holding the Ed25519 signing key (64 hex digits). Default: the key in
    /// `ALLOT_EXPORT_SIGNING_KEY`; with `ALLOT_DEV_MODE=true` only, the development key in
    /// the data directory (generated on first use).
    #[arg(long, env = "ALLOT_EXPORT_SIGNING_KEY_FILE")]
    signing_key: Option<PathBuf>,
    /// Export only these ledgers (repeatable); default: the THB ledger and every
    /// offering's inventory and quota ledgers, offerings read from Postgres.
    #[arg(long = "ledger")]
    ledgers: Vec<u32>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Formats {
    Csv,
    Jsonl,
    Both,
}

#[derive(Debug, Subcommand)]
enum ExportAction {
    /// Checks every record's hash chain, every file's count and final hash, the totals and
    /// the manifest's signature. Takes an export directory or a one-file bundle as the API
    /// streams it. Exits 1 on any change, deletion, insertion or reordering.
    Verify {
        path: PathBuf,
        /// The Ed25519 public key (64 hex digits) the manifest must be signed by. This or
        /// `--trusted-keys` is required: the key inside a manifest proves nothing, since
        /// whoever altered an export can sign it again with a key of their own.
        #[arg(long, conflicts_with = "trusted_keys")]
        public_key: Option<String>,
        /// A file of trusted public keys (64 hex digits per line; `#` starts a comment),
        /// for a regulator who accepts exports signed by any of several keys (rotation).
        #[arg(long)]
        trusted_keys: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum StatementAction {
    /// Imports statement files (CSV with a header row, or ISO 20022 camt.053 XML) into
    /// Postgres. Importing a file again adds nothing.
    Import {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Debug, Args)]
struct MatchArgs {
    /// First booking date matched (YYYY-MM-DD); default: the earliest imported.
    #[arg(long, value_parser = parse_date)]
    from: Option<time::Date>,
    /// Last booking date matched; default: the latest imported.
    #[arg(long, value_parser = parse_date)]
    to: Option<time::Date>,
    /// Days a booking date may differ from the payment date (banks book the next working
    /// day).
    #[arg(long, default_value_t = 3)]
    window_days: i64,
    /// Exceptions as CSV on standard output instead of a table.
    #[arg(long)]
    csv: bool,
}

#[derive(Debug, Subcommand)]
enum RefundsAction {
    /// Records refund payouts from a CSV file with the header
    /// `bank_reference,gateway,transaction_id,amount_satang,paid_on` and moves each in the
    /// ledger from refunds payable to the bank's clearing account. Importing the same file
    /// again pays nothing twice (one payout per bank reference); a payout beyond what is
    /// owed, for an unknown refund, or reusing a reference is refused (exit 1).
    Pay {
        #[arg(long)]
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum AuditAction {
    /// Recomputes every row's hash from the first; exits 1 on a changed, removed or
    /// reordered row.
    Verify,
}

fn parse_instant(text: &str) -> Result<SystemTime, String> {
    if let Ok(ns) = text.parse::<u64>() {
        return Ok(UNIX_EPOCH + Duration::from_nanos(ns));
    }
    if let Ok(t) = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
    {
        return Ok(t.into());
    }
    let date = parse_date(text)?;
    Ok(date.midnight().assume_utc().into())
}

fn parse_date(text: &str) -> Result<time::Date, String> {
    time::Date::parse(text, time::macros::format_description!("[year]-[month]-[day]"))
        .map_err(|_| format!("{text:?}: expected RFC 3339 or YYYY-MM-DD"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(run(cli)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("reconcile: {e}");
            ExitCode::from(2)
        }
    }
}

/// `Ok(false)`: ran, and found something wrong.
async fn run(cli: Cli) -> Result<bool, String> {
    let conn = &cli.conn;
    match cli.command {
        Command::Export(ExportArgs {
            verify: Some(ExportAction::Verify { path, public_key, trusted_keys }),
            ..
        }) => verify_export(&path, pinned_keys(public_key.as_deref(), trusted_keys.as_deref())?),
        Command::Export(args) => run_export(conn, args).await,
        Command::Check => {
            let ledger = connect_ledger(conn)?;
            let db = store::connect(&conn.database_url).await?;
            let progress = spinner("reading holds");
            let report = check::run(&ledger, &db, &progress).await?;
            print_check(&report);
            Ok(report.discrepancies.is_empty())
        }
        Command::Statement { action: StatementAction::Import { files } } => {
            let mut db = store::connect(&conn.database_url).await?;
            for file in files {
                let lines = statement::parse_file(&file)?;
                let source = file.display().to_string();
                let (inserted, skipped) = statement::import(&mut db, &lines, &source).await?;
                println!("{source}: {inserted} lines imported, {skipped} already present");
            }
            Ok(true)
        }
        Command::Match(args) => {
            let db = store::connect(&conn.database_url).await?;
            let report = matching::run(&db, args.from, args.to, args.window_days).await?;
            print_match(&report, args.csv);
            Ok(report.exceptions.is_empty())
        }
        Command::Report { csv, by_channel: true } => {
            let ledger = connect_ledger(conn)?;
            let db = store::connect(&conn.database_url).await?;
            let rows = report::by_channel(&ledger, &db).await?;
            let cells: Vec<Vec<String>> = rows.iter().map(|r| r.cells().to_vec()).collect();
            if csv {
                print_csv(&report::CHANNEL_COLUMNS, &cells);
            } else {
                print_table(&report::CHANNEL_COLUMNS, &cells);
            }
            Ok(true)
        }
        Command::Report { csv, by_channel: false } => {
            let ledger = connect_ledger(conn)?;
            let db = store::connect(&conn.database_url).await?;
            let rows = report::run(&ledger, &db).await?;
            let cells: Vec<Vec<String>> = rows.iter().map(|r| r.cells().to_vec()).collect();
            if csv {
                print_csv(&report::COLUMNS, &cells);
            } else {
                print_table(&report::COLUMNS, &cells);
            }
            Ok(true)
        }
        Command::Refunds { action: RefundsAction::Pay { file } } => {
            let lines = refunds::parse_file(&file)?;
            let ledger = connect_ledger(conn)?;
            let mut db = store::connect(&conn.database_url).await?;
            let results = refunds::pay(&ledger, &mut db, &lines).await?;
            Ok(print_payouts(&results))
        }
        Command::Audit { action: AuditAction::Verify } => {
            let db = store::connect(&conn.database_url).await?;
            let progress = bar("audit rows");
            let verified = audit::verify(&db, &progress).await?;
            for p in &verified.problems {
                println!("{:<26} seq {:<8} {}", p.kind, p.seq, p.detail);
            }
            println!(
                "audit chain: {} rows, head at {}: {}",
                verified.rows,
                verified.head_seq,
                if verified.problems.is_empty() { "unbroken" } else { "BROKEN" }
            );
            Ok(verified.problems.is_empty())
        }
    }
}

/// One line per payout; `true` when none was refused.
fn print_payouts(results: &[refunds::LineResult]) -> bool {
    for r in results {
        match &r.result {
            Ok(done) => println!("line {:<5} {:<24} {done}", r.line, r.bank_reference),
            Err(why) => println!("line {:<5} {:<24} REFUSED: {why}", r.line, r.bank_reference),
        }
    }
    let refused = results.iter().filter(|r| r.result.is_err()).count();
    println!("{} payouts, {refused} refused", results.len());
    refused == 0
}

fn connect_ledger(conn: &Connection) -> Result<Ledger, String> {
    Ledger::connect(conn.tb_cluster, &conn.tb_addresses).map_err(|e| e.to_string())
}

fn spinner(message: &'static str) -> ProgressBar {
    let bar = ProgressBar::new_spinner().with_message(message);
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

fn bar(message: &'static str) -> ProgressBar {
    let bar = ProgressBar::new(0).with_message(message);
    bar.set_style(
        ProgressStyle::with_template("{msg} {bar:40} {pos}/{len} ({per_sec}, eta {eta})")
            .expect("valid template"),
    );
    bar
}

fn signing_key(conn: &Connection, file: Option<&PathBuf>) -> Result<keys::SigningKey, String> {
    if let Some(file) = file {
        return keys::from_file(file);
    }
    if let Ok(hex) = std::env::var("ALLOT_EXPORT_SIGNING_KEY") {
        if !hex.is_empty() {
            return keys::from_hex(&hex);
        }
    }
    // Production is the default, as for the API: the development store only when asked.
    if !std::env::var("ALLOT_DEV_MODE").is_ok_and(|v| v == "true") {
        return Err("no export signing key: set ALLOT_EXPORT_SIGNING_KEY or --signing-key \
                    (ALLOT_DEV_MODE=true signs with the development key instead)"
            .into());
    }
    keys::load_or_generate(&conn.data_dir)
}

async fn run_export(conn: &Connection, args: ExportArgs) -> Result<bool, String> {
    let out = args.out.ok_or("--out DIR is required")?;
    let key = signing_key(conn, args.signing_key.as_ref())?;
    let ledger = connect_ledger(conn)?;
    let db = if args.ledgers.is_empty() {
        Some(store::connect(&conn.database_url).await?)
    } else {
        None
    };
    let ledgers = match &db {
        Some(db) => store::ledgers(&store::offerings(db).await?),
        None => args.ledgers.clone(),
    };
    let kinds: &[FileKind] = match args.format {
        Formats::Csv => &[FileKind::Csv],
        Formats::Jsonl => &[FileKind::Jsonl],
        Formats::Both => &[FileKind::Csv, FileKind::Jsonl],
    };
    let request = ExportRequest {
        cluster: conn.tb_cluster,
        ledgers,
        from: args.from,
        to: args.to.unwrap_or_else(SystemTime::now),
    };
    let mut sink = DirSink::create(&out, kinds).map_err(|e| e.to_string())?;
    let started = std::time::Instant::now();
    let progress = spinner("exporting");
    let mut report =
        |section: Section, n: u64| progress.set_message(format!("{}: {n}", section.name()));
    let manifest = export::export(&ledger, &request, &mut sink, &key, &mut report)
        .await
        .map_err(|e| e.to_string())?;
    progress.finish_and_clear();
    let transfers: u64 = manifest.totals.iter().map(|t| t.transfers).sum();
    let accounts: u64 = manifest.totals.iter().map(|t| t.accounts).sum();
    println!(
        "exported {accounts} accounts and {transfers} transfers from {} ledgers to {} in {:.1} s",
        manifest.ledgers.len(),
        out.display(),
        started.elapsed().as_secs_f64()
    );
    println!("public key {}", manifest.public_key);
    if let Some(db) = &db {
        let after = serde_json::json!({
            "out": out.display().to_string(),
            "from_ns": manifest.from_ns,
            "to_ns": manifest.to_ns,
            "files": manifest.files,
        });
        let actor = format!("cli:{}", std::env::var("USER").unwrap_or_else(|_| "unknown".into()));
        allot_store::audit::append(db, &actor, "ledger.export", "ledger", None, Some(&after))
            .await
            .map_err(|e| format!("audit: {e}"))?;
    }
    Ok(true)
}

/// The keys an export may be signed by, and where they came from.
struct Pinned {
    keys: Vec<keys::VerifyingKey>,
    source: &'static str,
}

/// `--public-key` or `--trusted-keys`; neither is an error that says why one is needed.
fn pinned_keys(
    public_key: Option<&str>,
    trusted: Option<&std::path::Path>,
) -> Result<Pinned, String> {
    if let Some(hex) = public_key {
        return Ok(Pinned { keys: vec![keys::public_from_hex(hex)?], source: "--public-key" });
    }
    let Some(path) = trusted else {
        return Err("export verify needs the signer's key: pass --public-key HEX or \
                    --trusted-keys FILE. The key inside a manifest proves nothing: whoever \
                    altered an export can sign it again with a key of their own"
            .into());
    };
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let keys = text
        .lines()
        .map(|line| line.split('#').next().unwrap_or("").trim())
        .filter(|line| !line.is_empty())
        .map(keys::public_from_hex)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if keys.is_empty() {
        return Err(format!("{}: no trusted keys in it", path.display()));
    }
    Ok(Pinned { keys, source: "--trusted-keys" })
}

fn verify_export(path: &std::path::Path, pinned: Pinned) -> Result<bool, String> {
    // The manifest names its signer; the signature is checked against that key only if it
    // is one of the pinned ones.
    let signer =
        verify::verify(path, None).manifest.and_then(|m| keys::public_from_hex(&m.public_key).ok());
    let key = signer.filter(|k| pinned.keys.contains(k)).unwrap_or(pinned.keys[0]);
    let verified = verify::verify(path, Some(&key));
    for (file, records) in &verified.files {
        println!("{file}: {records} records");
    }
    for problem in &verified.problems {
        println!("FAILED {problem}");
    }
    if verified.ok() {
        let manifest = verified.manifest.as_ref().expect("ok means a manifest");
        println!(
            "verified: signed by {}, a key pinned by {}, every record intact",
            manifest.public_key, pinned.source
        );
    }
    Ok(verified.ok())
}

fn print_check(report: &check::CheckReport) {
    let columns = ["offering", "figure", "ledger", "postgres"];
    let cells: Vec<Vec<String>> = report
        .summary
        .iter()
        .map(|r| vec![r.offering.clone(), r.figure.into(), r.ledger.clone(), r.postgres.clone()])
        .collect();
    print_table(&columns, &cells);
    for note in &report.notes {
        println!("note: {note}");
    }
    println!();
    if report.discrepancies.is_empty() {
        println!("0 discrepancies: the ledger and Postgres agree");
        return;
    }
    let cells: Vec<Vec<String>> = report
        .discrepancies
        .iter()
        .map(|d| vec![d.kind.into(), d.subject.clone(), d.detail.clone()])
        .collect();
    print_table(&["discrepancy", "subject", "detail"], &cells);
    println!("{} discrepancies", report.discrepancies.len());
}

fn print_match(report: &matching::MatchReport, csv: bool) {
    let cells: Vec<Vec<String>> = report
        .exceptions
        .iter()
        .map(|e| vec![e.kind.into(), e.subject.clone(), e.detail.clone()])
        .collect();
    let columns = ["exception", "subject", "detail"];
    if csv {
        print_csv(&columns, &cells);
        return;
    }
    if let Some((from, to)) = report.period {
        println!("statement lines booked {from} to {to}");
    }
    println!(
        "{} matched, {} exceptions, {} debit lines not matched",
        report.matched.len(),
        report.exceptions.len(),
        report.debits_skipped
    );
    if !cells.is_empty() {
        print_table(&columns, &cells);
    }
}

fn print_table(columns: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = columns.iter().map(|c| c.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> =
            cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}", w = *w)).collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(columns.to_vec());
    line(
        widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str)
            .collect(),
    );
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

fn print_csv(columns: &[&str], rows: &[Vec<String>]) {
    let mut out = csv::Writer::from_writer(std::io::stdout());
    let _ = out.write_record(columns);
    for row in rows {
        let _ = out.write_record(row);
    }
    let _ = out.flush();
}
