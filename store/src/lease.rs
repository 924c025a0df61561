//! Leadership among API instances: a session-level advisory lock, held on a connection of
//! its own for as long as its holder lives.
//!
//! Postgres releases a session lock when the session ends, so a holder killed with
//! `kill -9`, or cut off long enough for TCP keepalives to give up, frees the lease
//! without anyone's help, and the next instance that asks takes it over. The holder checks
//! its connection regularly ([`Lease::check`]) and stops leading when it fails: a lease
//! whose session is gone may already be someone else's.

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use tokio_postgres::NoTls;

/// The lease under which one instance runs the background work that must not run twice at
/// once (the projector, the waitlist's offers). Advisory lock keys share one space per
/// database: this one must differ from the migration and dev-admin keys (7411001, 7411002).
pub const BACKGROUND_WORK: i64 = 7_411_201;

/// How long a silent connection may stay idle before TCP keepalives probe it: a partitioned
/// holder's session ends, and its lease frees, within seconds rather than hours.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(3);

/// A held lease. Dropping it closes its connection, which releases the lock.
pub struct Lease {
    // Field order matters: the connection goes back to its pool of one, then the pool
    // closes it.
    connection: Object,
    _pool: Pool,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease").finish_non_exhaustive()
    }
}

/// Takes the lease `key` if nobody holds it; `None` when another session does.
pub async fn try_take(url: &str, key: i64) -> Result<Option<Lease>, String> {
    let mut config: tokio_postgres::Config =
        url.parse().map_err(|e| format!("database_url: {e}"))?;
    config.keepalives(true).keepalives_idle(KEEPALIVE_IDLE);
    config.connect_timeout(Duration::from_secs(5));
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig { recycling_method: RecyclingMethod::Fast },
    );
    let pool = Pool::builder(manager).max_size(1).build().map_err(|e| e.to_string())?;
    let connection = pool.get().await.map_err(|e| e.to_string())?;
    let taken: bool = connection
        .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
        .await
        .map_err(|e| e.to_string())?
        .get(0);
    Ok(taken.then_some(Lease { connection, _pool: pool }))
}

impl Lease {
    /// Whether the lease is still ours: its session answers. A session lock is released
    /// only when its session ends (we never unlock), so a live session still holds it.
    pub async fn check(&self) -> bool {
        self.connection.query_one("SELECT 1", &[]).await.is_ok()
    }
}
