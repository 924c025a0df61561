//! What the fairness mechanisms share in Postgres (migration V3): the committed seeds of
//! their draws (`fairness_seeds`) and the proof-of-work challenges already used
//! (`pow_spent`). The waiting room, book-building and the waitlist have modules of their
//! own: [`crate::queue`], [`crate::book`], [`crate::waitlist`].

use std::time::SystemTime;

use crate::{Error, GenericClient};

/// The draw a seed is for (`fairness_seeds.purpose`): one seed never serves two draws.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SeedPurpose {
    /// The pre-queue's draw at the opening of a waiting room.
    Queue,
    /// The last, partial round of a book-building allocation.
    Allocation,
}

impl SeedPurpose {
    /// The spelling stored in Postgres (the migration's `CHECK` lists the same words).
    pub fn as_str(self) -> &'static str {
        match self {
            SeedPurpose::Queue => "queue",
            SeedPurpose::Allocation => "allocation",
        }
    }
}

/// A committed seed as stored.
#[derive(Clone, Debug)]
pub struct SeedRow {
    pub seed: Vec<u8>,
    /// `SHA-256(seed)`, public from the moment the row exists.
    pub commitment: Vec<u8>,
    pub committed_at: SystemTime,
    pub revealed: bool,
}

/// Stores `seed` as the seed of the draw unless one is stored already: the first one
/// committed stays, whoever races to commit it.
pub async fn commit_seed(
    client: &impl GenericClient,
    offering_id: &str,
    purpose: SeedPurpose,
    seed: &[u8],
    commitment: &[u8],
) -> Result<(), Error> {
    client
        .execute(
            "INSERT INTO fairness_seeds (offering_id, purpose, seed, commitment)
             VALUES ($1, $2, $3, $4) ON CONFLICT (offering_id, purpose) DO NOTHING",
            &[&offering_id, &purpose.as_str(), &seed, &commitment],
        )
        .await?;
    Ok(())
}

/// The stored seed of a draw; an error when none was committed.
pub async fn seed(
    client: &impl GenericClient,
    offering_id: &str,
    purpose: SeedPurpose,
) -> Result<SeedRow, Error> {
    let row = client
        .query_one(
            "SELECT seed, commitment, committed_at, revealed_at IS NOT NULL
             FROM fairness_seeds WHERE offering_id = $1 AND purpose = $2",
            &[&offering_id, &purpose.as_str()],
        )
        .await?;
    Ok(SeedRow {
        seed: row.get(0),
        commitment: row.get(1),
        committed_at: row.get(2),
        revealed: row.get(3),
    })
}

/// Reveals the pre-queue's seed (at the draw, in the draw's transaction).
pub async fn reveal_queue_seed(
    client: &impl GenericClient,
    offering_id: &str,
) -> Result<(), Error> {
    client
        .execute(
            "UPDATE fairness_seeds SET revealed_at = now() WHERE offering_id = $1 AND purpose = 'queue'",
            &[&offering_id],
        )
        .await?;
    Ok(())
}

/// Reveals the allocation's seed (with the run's result, in its transaction).
pub async fn reveal_allocation_seed(
    client: &impl GenericClient,
    offering_id: &str,
) -> Result<(), Error> {
    client
        .execute(
            "UPDATE fairness_seeds SET revealed_at = now()
             WHERE offering_id = $1 AND purpose = 'allocation' AND revealed_at IS NULL",
            &[&offering_id],
        )
        .await?;
    Ok(())
}

/// Records a proof-of-work challenge as used until `expires_at` (unix seconds); `false`
/// when it was used already.
pub async fn spend_pow(
    client: &impl GenericClient,
    nonce: &str,
    expires_at: i64,
) -> Result<bool, Error> {
    let fresh = client
        .execute(
            "INSERT INTO pow_spent (nonce, expires_at) VALUES ($1, to_timestamp($2::BIGINT))
             ON CONFLICT (nonce) DO NOTHING",
            &[&nonce, &expires_at],
        )
        .await?;
    Ok(fresh == 1)
}

/// Forgets used challenges a minute after they expired: they cannot be replayed any more.
pub async fn forget_spent_pow(client: &impl GenericClient) -> Result<u64, Error> {
    client
        .execute("DELETE FROM pow_spent WHERE expires_at < now() - interval '1 minute'", &[])
        .await
}
