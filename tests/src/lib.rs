//! `allot-tests`: the harness that starts real TigerBeetle (and, later, Postgres) for the
//! integration tests in `tests/tests/`, the in-process API (`app`), the architecture's
//! invariants checked over the source tree (`architecture`), and the benchmark drivers in
//! `src/bin/`.
//!
//! Invariant: nothing here mocks a store. Every test talks to a real server process that
//! the harness started and that dies with the test binary.

pub mod app;
pub mod architecture;
pub mod finance;
pub mod postgres;
pub mod process;
pub mod tigerbeetle;

/// One benchmark figure as the JSON line `./ops/bench --json` promises:
/// `{"name":..,"value":..,"unit":..}`, keys in that order (serde_json would sort them).
pub fn json_metric(name: &str, value: f64, unit: &str) -> String {
    let value = serde_json::Value::from((value * 1000.0).round() / 1000.0);
    let (name, unit) = (serde_json::Value::from(name), serde_json::Value::from(unit));
    format!(r#"{{"name":{name},"value":{value},"unit":{unit}}}"#)
}
