//! Errors that are not business outcomes: the cluster could not be reached, or it answered
//! something our model says cannot happen. Business outcomes (sold out, expired, ...) are
//! typed results, never errors.

use tigerbeetle_unofficial as tb;

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The request did not reach the cluster or its reply was lost. Safe to retry with the
    /// same ids: deterministic ids make the retry return the original outcome.
    #[error("ledger unavailable: {0}")]
    Unavailable(String),
    /// The cluster already holds an object under one of our deterministic ids with other
    /// fields: the offering's configuration changed under a running ledger.
    #[error("ledger state conflicts with configuration: {0}")]
    Conflict(String),
    /// An answer our account model rules out. Never retried; surfaces as an alarm.
    #[error("unexpected ledger result: {0}")]
    Unexpected(String),
    /// Could not connect a client at all (bad address, out of resources).
    #[error("cannot create ledger client: {0}")]
    Client(String),
}

impl From<tb::error::SendError> for LedgerError {
    fn from(e: tb::error::SendError) -> Self {
        LedgerError::Unavailable(e.to_string())
    }
}

pub type Result<T, E = LedgerError> = std::result::Result<T, E>;
