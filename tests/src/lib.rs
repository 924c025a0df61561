//! `allot-tests`: the harness that starts real TigerBeetle (and, later, Postgres) for the
//! integration tests in `tests/tests/`, the in-process API (`app`), and the benchmark drivers in `src/bin/`.
//!
//! Invariant: nothing here mocks a store. Every test talks to a real server process that
//! the harness started and that dies with the test binary.

pub mod app;
pub mod finance;
pub mod tigerbeetle;
