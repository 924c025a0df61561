//! What every request handler shares. Built once by `startup`; cheap to clone.

use std::sync::Arc;
use std::time::Duration;

use allot_ledger::Ledger;
use deadpool_postgres::Pool;

use crate::catalog::Catalog;
use crate::config::Settings;
use crate::identity::tokens::TokenKeys;

#[derive(Debug)]
pub struct AppState {
    pub settings: Settings,
    /// The one TigerBeetle client of this process; it batches concurrent requests itself.
    pub ledger: Arc<Ledger>,
    pub db: Pool,
    pub catalog: Arc<Catalog>,
    pub tokens: TokenKeys,
    /// Key for national-ID lookup hashes: the raw number is never stored or logged.
    pub identity_key: Vec<u8>,
    /// Payment intents, gateways' webhooks, the notification outbox and finance's lists.
    pub payments: crate::payments::Payments,
    /// Waiting rooms, draw keys, proof-of-work, rate limits and the latency they watch.
    pub fairness: crate::fairness::Fairness,
}

impl AppState {
    pub fn tb_timeout(&self) -> Duration {
        Duration::from_millis(self.settings.ledger.timeout_ms)
    }

    pub fn availability_max_age(&self) -> Duration {
        Duration::from_millis(self.settings.ledger.availability_cache_ms)
    }
}
