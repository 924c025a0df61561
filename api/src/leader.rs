//! Which instance runs the background work that must run once, not once per instance:
//! the projector (and its expiry marking), the waitlist's offers and re-applying payment
//! notifications. Every instance keeps
//! trying to take one Postgres lease (`allot_store::lease`); the one that holds it leads
//! until its session ends, and another takes over within about [`RETRY_INTERVAL`] when it
//! does (a killed holder's session ends at once).
//!
//! Exclusivity is an economy, not what correctness rests on: for the moment two instances
//! may both believe they lead (the old leader notices its lost session at its next check),
//! every led loop stays safe to run twice (idempotent writes, a checkpoint that only moves
//! forward, hold ids derived from the waitlist entry).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use allot_store::lease::{self, Lease};

/// How often a follower asks for the lease, and a leader checks that it still holds it.
pub const RETRY_INTERVAL: Duration = Duration::from_secs(1);

/// Whether this instance leads now. Cheap to clone and to ask.
#[derive(Clone, Debug, Default)]
pub struct Leader {
    leading: Arc<AtomicBool>,
}

impl Leader {
    pub fn is_leading(&self) -> bool {
        self.leading.load(Ordering::Acquire)
    }

    fn set(&self, leading: bool) {
        if self.leading.swap(leading, Ordering::AcqRel) != leading {
            tracing::info!(leading, "background work leadership changed");
        }
        metrics::gauge!("allot_background_leader").set(f64::from(u8::from(leading)));
    }

    /// Runs forever: takes the lease when free, holds it while its session answers.
    pub async fn campaign(self, database_url: String) {
        loop {
            match lease::try_take(&database_url, lease::BACKGROUND_WORK).await {
                Ok(Some(held)) => self.hold(held).await,
                Ok(None) => self.set(false),
                Err(e) => {
                    self.set(false);
                    tracing::warn!(error = %e, "background lease: Postgres unreachable");
                }
            }
            tokio::time::sleep(RETRY_INTERVAL).await;
        }
    }

    async fn hold(&self, held: Lease) {
        self.set(true);
        loop {
            tokio::time::sleep(RETRY_INTERVAL).await;
            let alive = tokio::time::timeout(RETRY_INTERVAL, held.check()).await;
            if !matches!(alive, Ok(true)) {
                self.set(false);
                return;
            }
        }
    }
}
