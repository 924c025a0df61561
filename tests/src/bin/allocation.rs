//! Book-building allocation from the outside: recompute a published export, or time the
//! quantity-ceiling rule on a large book.
//!
//! - `allocation verify --export FILE` (or `-` for stdin): reads the JSON lines of
//!   `GET /v1/offerings/{id}/allocation/export`, checks the seed against its commitment and
//!   recomputes every allotment; exits non-zero on any difference.
//! - `allocation bench --subscriptions 100000`: allocates a synthetic, oversubscribed bond
//!   book in memory and prints how long the rule took (build with `--release`).
//! - `allocation bench-e2e --subscriptions 100000`: the same book through the API against
//!   real Postgres and TigerBeetle (`ALLOT_TEST_DATABASE_URL`, as for the tests): the admin
//!   run, from request to response, including storing the result and placing every
//!   allotment as a ledger hold.

use std::io::Read;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use allot_api::fairness::allocation::{allocate, Application, Book};
use allot_api::fairness::book::verify_export;
use allot_api::fairness::draw;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(about = "Recompute or time a book-building allocation")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Recompute an export and compare every allotment.
    Verify {
        /// The export file; `-` reads standard input.
        #[arg(long)]
        export: String,
    },
    /// Time the rule on a synthetic book.
    Bench {
        #[arg(long, default_value_t = 100_000)]
        subscriptions: u64,
        /// Supply in baht; the default is the seed bond's 10,000 million.
        #[arg(long, default_value_t = 10_000_000_000)]
        supply: u64,
        #[arg(long, default_value_t = 3)]
        runs: u32,
    },
    /// Time the admin run end to end through the API.
    BenchE2e {
        #[arg(long, default_value_t = 100_000)]
        subscriptions: u64,
    },
}

fn main() -> ExitCode {
    match Args::parse().command {
        Command::Verify { export } => verify(&export),
        Command::Bench { subscriptions, supply, runs } => bench(subscriptions, supply, runs),
        Command::BenchE2e { subscriptions } => {
            let runtime = tokio::runtime::Runtime::new().expect("a runtime");
            runtime.block_on(bench_e2e(subscriptions))
        }
    }
}

fn verify(path: &str) -> ExitCode {
    let mut text = String::new();
    let read = if path == "-" {
        std::io::stdin().read_to_string(&mut text).map(|_| ())
    } else {
        std::fs::read_to_string(path).map(|t| text = t)
    };
    if let Err(e) = read {
        eprintln!("reading {path}: {e}");
        return ExitCode::from(2);
    }
    match verify_export(&text) {
        Ok(h) => {
            println!(
                "ok: {} applications to {} recomputed from seed {} (commitment {})",
                h.applicants, h.offering_id, h.seed, h.commitment
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("MISMATCH: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A retail book in baht: nine in ten ask 5,000 to 100,000, one in ten up to 5,000,000, in
/// lots of 1,000. 100,000 of them ask about three times the seed bond's supply.
fn requested(i: u64) -> u64 {
    let spread = i.wrapping_mul(2_654_435_761) % 1_000_003;
    let lots = if i.is_multiple_of(10) { 5 + spread % 4_996 } else { 5 + spread % 96 };
    lots * 1_000
}

fn bench(subscriptions: u64, supply: u64, runs: u32) -> ExitCode {
    let book = Book { supply, lot: 1_000, min_quantity: 5_000 };
    let applications: Vec<Application> = (0..subscriptions)
        .map(|i| Application {
            pseudonym: format!("{:024x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
            requested: requested(i),
        })
        .collect();
    let demand: u64 = applications.iter().map(|a| a.requested).sum();
    let mut best = f64::MAX;
    for run in 0..runs {
        let seed = draw::new_seed();
        let start = Instant::now();
        let result = allocate(&book, &applications, &seed).expect("valid book");
        let took = start.elapsed().as_secs_f64();
        best = best.min(took);
        println!(
            "run {run}: {subscriptions} subscriptions, demand {:.1}x supply, cutoff {} baht, \
             draw {} of {}: {:.3} s",
            demand as f64 / supply as f64,
            result.cutoff,
            result.lottery_winners,
            result.lottery_entrants,
            took
        );
        assert!(result.allotted_total <= supply);
    }
    println!("best of {runs}: {best:.3} s for {subscriptions} subscriptions");
    ExitCode::SUCCESS
}

async fn bench_e2e(subscriptions: u64) -> ExitCode {
    use allot_api::identity::Role;
    use allot_tests::app::TestApp;

    let app = TestApp::spawn().await;
    let db = app.db().await;
    let closes_in = Duration::from_secs(3);
    // RFC 3339 from the database's clock: this binary has no date crate of its own.
    let closes_at: String = db
        .query_one(
            "SELECT to_char((now() + interval '3 seconds') AT TIME ZONE 'UTC',
                            'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let bond = serde_json::json!({
        "id": "bench-bond",
        "kind": "bond",
        "name": {"en": "Benchmark bond"},
        "zones": [{"id": "main", "supply": 10_000_000_000u64, "price_satang": 100}],
        "min_quantity": 5_000,
        "max_per_person": 50_000_000,
        "lot": 1_000,
        "hold_seconds": 86_400,
        "deposit_percent": 10,
        "allocation": "book_building",
        "subscription_closes_at": closes_at,
    });
    app.create_offering(bond).await;
    // The commitment exists before the first subscription, as in a real window.
    let res = app.client.get(app.url("/v1/offerings/bench-bond/allocation")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    // Subscriptions go straight into Postgres: the subscribe path is not what is measured.
    let users: Vec<i64> = (1..=subscriptions as i64).collect();
    let pseudonyms: Vec<String> =
        users.iter().map(|u| app.state.fairness.pseudonym("bench-bond", *u)).collect();
    let amounts: Vec<i64> = (0..subscriptions).map(|i| requested(i) as i64).collect();
    db.execute(
        "INSERT INTO subscriptions (offering_id, user_id, pseudonym, requested)
         SELECT 'bench-bond', * FROM unnest($1::BIGINT[], $2::TEXT[], $3::BIGINT[])",
        &[&users, &pseudonyms, &amounts],
    )
    .await
    .unwrap();
    tokio::time::sleep(closes_in).await;
    let admin = app.token(1, Role::Admin);
    let start = Instant::now();
    let res = app
        .client
        .post(app.url("/v1/admin/offerings/bench-bond/allocate"))
        .bearer_auth(admin)
        .timeout(Duration::from_secs(600))
        .send()
        .await
        .unwrap();
    let took = start.elapsed().as_secs_f64();
    let status = res.status();
    let body: serde_json::Value = res.json().await.unwrap();
    if !status.is_success() {
        eprintln!("allocation run failed: {status} {body}");
        return ExitCode::FAILURE;
    }
    let r = &body["result"];
    println!(
        "end to end: {subscriptions} subscriptions, {} baht asked, {} allotted (cutoff {}), \
         holds pending {}: {took:.2} s",
        r["requested_total"], r["allotted_total"], r["cutoff"], r["holds_pending"]
    );
    ExitCode::SUCCESS
}
