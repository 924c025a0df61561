//! `allot-store`: the Postgres schema and everything that speaks SQL to it.
//!
//! Postgres holds identity, offerings, payments, fairness state, the projection of the
//! ledger, the outbox and the audit trail; TigerBeetle holds inventory and money. This crate
//! is the one owner of the schema: the migrations (`store/migrations/V*__*.sql`), every SQL
//! statement, the typed rows they return and the status enums stored in text columns.
//! Callers (the API, the `reconcile` CLI) hold the transaction boundaries; each function
//! here takes any client or transaction (`&impl GenericClient`) and runs its statements on
//! it, so a change and its audit entry or outbox event commit together.
//!
//! - [`audit`]: the hash-chained audit log: the append statement and the hash rule, beside
//!   the reader its verifier uses.
//! - [`offerings`]: offering configurations, ledger numbers and open flags.
//! - [`identity`]: users, roles, refresh-token families, TOTP columns, the dev admin;
//!   [`verification`]: identity kinds' one-time codes, KYC requests, verification changes.
//! - [`partners`]: bank partners, their hashed credentials, allocations and reservations.
//! - [`outbox`]: notifications to people: enqueue, claim due rows, mark what became of them.
//! - [`payments`]: payment intents, gateways' notifications, and finance's lists of them;
//!   [`payouts`]: refunds paid back, one per bank reference, and their audit entry.
//! - [`status`]: every status kept in a text column, as an enum with one spelling.
//! - [`fairness`]: the committed seeds of the draws and the proof-of-work challenges used;
//!   [`queue`]: the waiting room's entries and counters; [`book`]: book-building
//!   subscriptions and allocation runs; [`round_two`]: the second round, for the units of
//!   unpaid allotments; [`waitlist`]: the waitlist's entries.
//! - [`reservations`]: the projection of the ledger's holds, as their owners list them.
//! - [`projection`]: the projector's writes of that projection and its checkpoints, and
//!   the reads `reconcile` checks them with.
//! - [`reports`]: officials' live figures from the projection and the waiting room.
//! - [`statements`]: bank statement lines, and the payment records reconciliation reads.
//! - [`alerts`]: unusual activity: the events its rules read, one query per rule, the
//!   alerts staff acknowledge, and account suspension.
//! - [`tickets`]: named tickets of confirmed concert seats, the gate's single-use check and
//!   transfers between holders.
//! - [`lease`]: leadership among API instances, a session advisory lock.
//! - [`ping`]: readiness, a trivial statement.
//!
//! Invariants:
//! - No SQL text outside this crate (the architecture test in `ops/test` checks it).
//! - No status string outside this crate: statuses are enums with one spelling, here.
//! - Nothing here is on the reservation hot path; it knows nothing of HTTP or TigerBeetle.

pub mod alerts;
pub mod audit;
pub mod book;
pub mod fairness;
pub mod identity;
pub mod lease;
pub mod offerings;
pub mod outbox;
pub mod partners;
pub mod payments;
pub mod payouts;
pub mod projection;
pub mod queue;
pub mod reports;
pub mod reservations;
pub mod round_two;
pub mod statements;
pub mod status;
pub mod tickets;
pub mod verification;
pub mod waitlist;

use deadpool_postgres::{Manager, ManagerConfig, RecyclingMethod};
use tokio_postgres::NoTls;

pub use deadpool_postgres::{GenericClient, Object as Connection, Pool, PoolError, Transaction};
pub use tokio_postgres::Error;

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// Key of the advisory lock under which migrations run.
const MIGRATION_LOCK_KEY: i64 = 7411001;

/// A pool of at most `size_max` connections to `url`.
pub fn pool(url: &str, size_max: usize) -> Result<Pool, String> {
    let config: tokio_postgres::Config = url.parse().map_err(|e| format!("database_url: {e}"))?;
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig { recycling_method: RecyclingMethod::Fast },
    );
    Pool::builder(manager).max_size(size_max).build().map_err(|e| e.to_string())
}

/// Applies every migration not yet applied. Safe to run from several processes at once:
/// the work happens under an advisory lock.
pub async fn migrate(pool: &Pool) -> Result<(), String> {
    let mut client = pool.get().await.map_err(|e| e.to_string())?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK_KEY])
        .await
        .map_err(|e| e.to_string())?;
    let result = embedded::migrations::runner().run_async(&mut **client).await;
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK_KEY])
        .await
        .map_err(|e| e.to_string())?;
    result.map(|_| ()).map_err(|e| e.to_string())
}

/// Whether Postgres answers on `client`: what readiness asks of the store.
pub async fn ping(client: &impl GenericClient) -> Result<(), Error> {
    client.query_one("SELECT 1", &[]).await.map(|_| ())
}

/// One connection for a command-line run: a pool of one, so the CLI and the API run their
/// statements through the same client type.
pub async fn connect(url: &str) -> Result<Connection, String> {
    pool(url, 1)?.get().await.map_err(|e| format!("postgres: {e}"))
}
