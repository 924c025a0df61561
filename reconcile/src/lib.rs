//! `allot-reconcile`: what finance staff and regulators use to see that the money is right.
//!
//! - [`format`], [`export`], [`verify`]: the signed, hash-chained ledger export, re-exported
//!   from `allot_export` (which the API's `GET /v1/exports/ledger` shares).
//! - [`keys`]: the Ed25519 key that signs manifests, and the development key.
//! - [`store`]: the connection (which applies any migration not yet applied, as the API
//!   does, so the tables the CLI reads always exist) and the offerings and their ledgers.
//! - [`check`]: TigerBeetle against Postgres, every disagreement named.
//! - [`statement`]: bank statements (CSV, camt.053) into Postgres; [`matching`]: statement
//!   lines against payment notifications.
//! - [`report`]: funds per offering.
//! - [`refunds`]: refund payouts recorded from finance's file, and their part of `check`.
//! - [`audit`]: verifies the audit chain with the hash rule kept in `allot_store::audit`.
//!
//! Invariants:
//! - No SQL here: every statement is in `allot_store`; no TigerBeetle type here: the ledger
//!   is read through `allot_ledger`.
//! - The one write to TigerBeetle is a refund payout (`refunds pay`), recorded in Postgres
//!   first; reconciliation and exports only read the ledger.
//! - The export format has one owner, `allot_export`: the CLI writes and verifies exports
//!   only through it.

pub mod audit;
pub mod check;
pub mod keys;
pub mod matching;
pub mod refunds;
pub mod report;
pub mod statement;
pub mod store;

pub use allot_export::{export, format, verify};

/// Progress bars, for callers of the library functions that take one.
pub use indicatif;
