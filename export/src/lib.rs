//! `allot-export`: the signed, hash-chained ledger export that regulators receive, written
//! by `reconcile export` (a directory of files) and by the API's `GET /v1/exports/ledger`
//! (one streamed bundle), and checked by `reconcile export verify`.
//!
//! - [`format`]: the format itself: sections, records as CSV and JSON Lines, the hash
//!   chain of every file, the manifest and its signature.
//! - [`export`]: pages the ledger into a [`export::Sink`] of that format (a directory, or a
//!   bundle handed on page by page); progress is a plain callback.
//! - [`verify`]: checks a directory or a bundle: signature, every record's hash, every
//!   file's count and final hash, totals per ledger.
//! - [`keys`]: the Ed25519 key that signs manifests, from its hex seed.
//!
//! Invariants:
//! - Nothing here writes to TigerBeetle: an export only reads the ledger, through
//!   `allot_ledger`'s typed export reads.
//! - An export's bytes are a pure function of the ledger's records and the window, apart
//!   from its manifest's creation time and balances; any change to a written byte is caught
//!   by [`verify`].
//! - Memory stays flat whatever the ledger's size: one page of records at a time.
//! - No terminal, HTTP or secret store here: callers bring the key, the sink and the
//!   progress callback.

pub mod export;
pub mod format;
pub mod keys;
pub mod verify;
