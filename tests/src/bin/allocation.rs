//! Book-building allocation from the outside: recompute a published export, or time the
//! quantity-ceiling rule on a large book.
//!
//! - `allocation verify --export FILE` (or `-` for stdin): reads the JSON lines of
//!   `GET /v1/offerings/{id}/allocation/export`, checks the seed against its commitment and
//!   recomputes every allotment; exits non-zero on any difference.
//! - `allocation bench --subscriptions 100000`: allocates a synthetic, heavily
//!   oversubscribed bond book and prints how long it took (build with `--release`).

use std::io::Read;
use std::process::ExitCode;
use std::time::Instant;

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
}

fn main() -> ExitCode {
    match Args::parse().command {
        Command::Verify { export } => verify(&export),
        Command::Bench { subscriptions, supply, runs } => bench(subscriptions, supply, runs),
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

fn bench(subscriptions: u64, supply: u64, runs: u32) -> ExitCode {
    // Bond terms: lot 1,000, minimum 5,000, requests spread over 5,000..50,000,000 baht so
    // that demand is many times the supply and the ceiling lands mid-range.
    let book = Book { supply, lot: 1_000, min_quantity: 5_000 };
    let applications: Vec<Application> = (0..subscriptions)
        .map(|i| {
            let lots = 5 + (i.wrapping_mul(2_654_435_761) % 1_000_000) * (i % 50 + 1) / 50;
            Application {
                pseudonym: format!("{:024x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
                requested: lots * 1_000,
            }
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
