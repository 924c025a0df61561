//! `allot-reconcile`: what finance staff and regulators use to see that the money is right.
//!
//! - [`format`]: the signed, hash-chained ledger export format (CSV and JSON Lines plus a
//!   manifest), shared with the API's `GET /v1/exports/ledger`.
//! - [`export`]: pages TigerBeetle into a sink of that format; [`verify`] checks one.
//! - [`keys`]: the Ed25519 key that signs manifests.
//! - [`store`]: connections and what the CLI reads from Postgres (offerings, ledgers).
//! - [`check`]: TigerBeetle against Postgres, every disagreement named.
//! - [`statement`]: bank statements (CSV, camt.053) into Postgres; [`matching`]: statement
//!   lines against payment notifications.
//! - [`report`]: funds per offering.
//! - [`audit`]: the audit chain's append statement and its verification.
//!
//! Invariants:
//! - Nothing here writes to TigerBeetle: reconciliation and exports only read the ledger.
//! - An export's bytes are a pure function of the ledger's records and the window, apart
//!   from its manifest's creation time and balances; any change to a written byte is caught
//!   by `verify`.

pub mod audit;
pub mod check;
pub mod export;
pub mod format;
pub mod keys;
pub mod matching;
pub mod report;
pub mod statement;
pub mod store;
pub mod verify;

/// Progress bars, for callers of the library functions that take one.
pub use indicatif;
