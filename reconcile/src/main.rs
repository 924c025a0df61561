use clap::Parser;

/// Reconcile the allot ledger (TigerBeetle) with its projections and bank statements.
#[derive(Debug, Parser)]
#[command(name = "reconcile", version)]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
    eprintln!("reconcile: no commands yet");
    std::process::exit(2);
}
