//! The Postgres pool and versioned migrations (`api/migrations/V*__*.sql`).

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;

mod embedded {
    refinery::embed_migrations!("migrations");
}

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
/// the work happens under a transaction-level advisory lock.
pub async fn migrate(pool: &Pool) -> Result<(), String> {
    let mut client = pool.get().await.map_err(|e| e.to_string())?;
    client.execute("SELECT pg_advisory_lock(7411001)", &[]).await.map_err(|e| e.to_string())?;
    let result = embedded::migrations::runner().run_async(&mut **client).await;
    client.execute("SELECT pg_advisory_unlock(7411001)", &[]).await.map_err(|e| e.to_string())?;
    result.map(|_| ()).map_err(|e| e.to_string())
}
