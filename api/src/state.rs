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
    /// Access-token keys; the `Principal` extractor verifies with them.
    pub tokens: Arc<TokenKeys>,
    /// Users, sessions, second factors.
    pub identity: crate::identity::Identity,
    /// Payment intents, gateways' webhooks and finance's lists.
    pub payments: crate::payments::Payments,
    /// Waiting rooms, book-building, the waitlist, proof-of-work, rate limits.
    pub fairness: crate::fairness::Fairness,
    /// The reservation hot path: ledger, catalog and the fairness gate, no Postgres.
    pub reservations: crate::reservations::Reservations,
    /// The notification outbox: what is due, checked against the ledger, rendered, sent.
    pub notify: crate::notify::Notifier,
    /// Signed ledger exports for regulators.
    pub exports: crate::exports::Exports,
    /// Officials' live figures and the view tokens of their dashboard.
    pub reports: crate::reports::Reports,
    /// Bank partners: credentials, allocations, reservations for their customers.
    pub partners: crate::partners::Partners,
    /// Unusual-activity rules and the alerts staff acknowledge.
    pub alerts: crate::alerts::Alerts,
    /// Named tickets: the holder's list, transfers, the gate's check.
    pub tickets: crate::tickets::Tickets,
    /// Whose `X-Forwarded-For` entries are believed.
    pub proxies: crate::client_ip::TrustedProxies,
}

impl AppState {
    pub fn tb_timeout(&self) -> Duration {
        Duration::from_millis(self.settings.ledger.timeout_ms)
    }

    /// What the public offering view may spend on the ledger.
    pub fn view_limits(&self) -> crate::catalog::ViewLimits {
        crate::catalog::ViewLimits {
            ledger_timeout: self.tb_timeout(),
            availability_max_age: self.availability_max_age(),
        }
    }

    pub fn availability_max_age(&self) -> Duration {
        Duration::from_millis(self.settings.ledger.availability_cache_ms)
    }
}
