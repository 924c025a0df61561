//! `allot-ledger`: inventory, per-person limits and money as TigerBeetle accounts.
//!
//! This crate owns the accounting model and TigerBeetle itself: it is the only crate that
//! names the TigerBeetle client or its types, and it knows nothing of HTTP, JSON or SQL.
//! Everything other crates need from the cluster is a typed read or write here.
//!
//! - [`ids`]: deterministic ledger numbers, account ids and transfer ids.
//! - [`offering`]: what an offering is to the ledger, and its idempotent setup.
//! - [`hold`]: placing a hold (linked pending stock + quota transfers, one timeout; a
//!   partner's hold links its partner quota too).
//! - [`lifecycle`]: confirm (post + deposit in one chain), cancel (void), hold state.
//! - [`payout`]: a refund paid back (refunds payable -> the bank's clearing account).
//! - [`events`]: the one decoder of hold transfers; hold and money events paged by
//!   timestamp (projector, reconciliation).
//! - [`query`]: zone, person and money balances, many people's holdings, the deposits'
//!   balance history (reports), a ping (readiness).
//! - [`export`]: accounts and transfers field for field, paged, for the signed export.
//! - [`synthetic`]: bulk synthetic money on a throwaway cluster, for benchmarks.
//! - [`PAGE_EVENTS_MAX`]: the most records one query answers; every paged read is cut
//!   at it.
//!
//! Invariants:
//! - No unit is sold twice: every zone's `stock` account has
//!   `debits_must_not_exceed_credits` and is funded once with the supply.
//! - No person exceeds the maximum: every person's `quota` account is funded once with it
//!   and every hold debits it in the same linked chain as the stock.
//! - No partner exceeds its allocation: its `partner_quota` account is funded once with it
//!   and every hold it places debits it as the chain's third link (a direct hold has no
//!   third link, and costs nothing more than before).
//! - A hold moves money at most once: the deposit's id is derived from the hold.
//! - Every operation is idempotent: ids derive from the request, so a retry answers with
//!   the original outcome (`exists` means ok).
//! - No request waits forever: the TigerBeetle client retries a lost cluster without end,
//!   so each request here gives up after the ledger's request timeout
//!   ([`REQUEST_TIMEOUT_DEFAULT`] unless connected with another) and answers
//!   [`LedgerError::Unavailable`], which is safe to retry (same ids, same outcome).
//! - Expiry is TigerBeetle's: nothing here decides that a hold lapsed, it only reads it.
//! - A hold is encoded in `hold` and `lifecycle` and decoded only in `events`; no public
//!   item exposes a TigerBeetle type.

pub mod error;
pub mod events;
pub mod export;
pub mod hold;
pub mod ids;
pub mod lifecycle;
pub mod offering;
mod page;
pub mod payout;
mod people;
pub mod query;
mod results;
pub mod synthetic;

use std::fmt;
use std::future::Future;
use std::time::Duration;

use tigerbeetle_unofficial as tb;

pub use error::{LedgerError, Result};
pub use events::{HoldEvent, MoneyEvent, MoneyKind, PlacedHold};
pub use export::{ExportAccount, ExportTransfer};
pub use hold::{Deadline, Held, HoldId, HoldOutcome, HoldRejection, HoldRequest, HOLD_SECONDS_MAX};
pub use lifecycle::{CancelOutcome, ConfirmOutcome, HoldInfo, HoldState, Payment};
pub use offering::{clearing_account, OfferingSpec, ZoneSpec};
pub use page::PAGE_EVENTS_MAX;
pub use payout::{Payout, PayoutOutcome};
pub use query::{
    DepositsHistory, DepositsSample, Holding, MoneyBalance, PartnerBalance, PersonBalance,
    ZoneBalance,
};
pub use synthetic::SyntheticMoney;

/// One connection to a TigerBeetle cluster, shared by every task of the process: the
/// client batches concurrent requests into one message by itself.
pub struct Ledger {
    client: tb::Client,
    people: people::PeopleCache,
    /// How long one request may wait for the cluster's reply.
    request_timeout: Duration,
}

/// A request's wait for its reply, unless connected with another: far above any healthy
/// reply (milliseconds) and above a cluster's view change, short enough that a dead
/// cluster fails a caller (a test, `reconcile`, a background loop) instead of hanging it.
pub const REQUEST_TIMEOUT_DEFAULT: Duration = Duration::from_secs(30);

impl fmt::Debug for Ledger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ledger").finish_non_exhaustive()
    }
}

impl Ledger {
    /// Connects to the cluster at `addresses` (comma-separated `host:port` or ports).
    /// Nothing is sent yet: an unreachable cluster shows on the first request, as
    /// [`LedgerError::Unavailable`] after [`REQUEST_TIMEOUT_DEFAULT`].
    pub fn connect(cluster_id: u128, addresses: &str) -> Result<Self> {
        Self::connect_with_timeout(cluster_id, addresses, REQUEST_TIMEOUT_DEFAULT)
    }

    /// As [`Ledger::connect`], each request waiting at most `request_timeout`.
    pub fn connect_with_timeout(
        cluster_id: u128,
        addresses: &str,
        request_timeout: Duration,
    ) -> Result<Self> {
        let client = tb::Client::new(cluster_id, addresses)
            .map_err(|e| LedgerError::Client(e.to_string()))?;
        Ok(Ledger { client, people: people::PeopleCache::default(), request_timeout })
    }

    /// One request's reply, or `Unavailable` once the request timeout has passed. The
    /// abandoned request may still reach the cluster later: ids are deterministic, so a
    /// retry finds it (`exists`) rather than doing it twice.
    async fn reply<F: Future>(&self, request: F) -> Result<F::Output> {
        tokio::time::timeout(self.request_timeout, request).await.map_err(|_| {
            LedgerError::Unavailable(format!(
                "no reply from the cluster within {} ms",
                self.request_timeout.as_millis()
            ))
        })
    }
}
