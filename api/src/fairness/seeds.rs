//! The seed of each draw, committed in Postgres the first time anything needs it: before
//! the first subscription (book-building) or when the pre-queue opens (waiting room), so
//! its commitment is public before anyone can enter.

use allot_store::Pool;
use time::OffsetDateTime;

pub use allot_store::fairness::SeedPurpose;

use super::draw::{self, Seed};
use crate::error::{ApiError, ApiResult};

/// A committed seed as stored.
#[derive(Debug)]
pub struct SeedRow {
    pub seed: Seed,
    pub commitment: Vec<u8>,
    pub committed_at: OffsetDateTime,
    pub revealed: bool,
}

/// The seed of an offering's draw, created (and so committed) on first need.
pub async fn seed(db: &Pool, offering_id: &str, purpose: SeedPurpose) -> ApiResult<SeedRow> {
    let client = db.get().await?;
    let fresh = draw::new_seed();
    let commitment = draw::commitment(&fresh);
    allot_store::fairness::commit_seed(&client, offering_id, purpose, &fresh, &commitment).await?;
    let row = allot_store::fairness::seed(&client, offering_id, purpose).await?;
    Ok(SeedRow {
        seed: row.seed.try_into().map_err(|_| ApiError::internal("stored seed is not 32 bytes"))?,
        commitment: row.commitment,
        committed_at: row.committed_at.into(),
        revealed: row.revealed,
    })
}
