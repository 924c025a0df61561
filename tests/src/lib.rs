//! `allot-tests`: the harness that starts real TigerBeetle (and, later, Postgres) for the
//! integration tests in `tests/tests/`, the in-process API (`app`), headless Chromium driven
//! over the DevTools protocol (`browser`), made-up people (`people`), the architecture's invariants checked over the
//! source tree (`architecture`), and the benchmark drivers in `src/bin/` (with `contract_accounts`, the callers of
//! `ops/contract`).
//!
//! Every integration test carries `#[allot_tests::test]` ([`test`]): `#[tokio::test]` with
//! its body under [`bounded`], so a hung wait fails the test by name instead of hanging CI.
//!
//! Invariant: nothing here mocks a store. Every test talks to a real server process that
//! the harness started and that dies with the test binary.

pub mod app;
pub mod architecture;
pub mod browser;
pub mod finance;
pub mod people;
pub mod postgres;
pub mod process;
pub mod tigerbeetle;

use std::future::Future;
use std::time::Duration;

pub use allot_test_macros::test;

/// How long one integration test may run, unless `ALLOT_TEST_SECONDS_MAX` says otherwise.
/// The slowest test takes about a minute on a busy two-core machine; five leave room for
/// a slower machine and none for a wait that never ends.
pub const TEST_SECONDS_MAX: u64 = 300;

/// Runs one test's body, failing it by name when it takes longer than the per-test limit.
pub async fn bounded<T>(name: &str, test: impl Future<Output = T>) -> T {
    let seconds = std::env::var("ALLOT_TEST_SECONDS_MAX")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(TEST_SECONDS_MAX);
    match tokio::time::timeout(Duration::from_secs(seconds), test).await {
        Ok(outcome) => outcome,
        Err(_) => panic!("{name} did not finish within {seconds} s (ALLOT_TEST_SECONDS_MAX)"),
    }
}

/// One benchmark figure as the JSON line `./ops/bench --json` promises:
/// `{"name":..,"value":..,"unit":..}`, keys in that order (serde_json would sort them).
pub fn json_metric(name: &str, value: f64, unit: &str) -> String {
    let value = serde_json::Value::from((value * 1000.0).round() / 1000.0);
    let (name, unit) = (serde_json::Value::from(name), serde_json::Value::from(unit));
    format!(r#"{{"name":{name},"value":{value},"unit":{unit}}}"#)
}
