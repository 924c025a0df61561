//! The waiting room's truth (migration V3): entries with their positions (`queue_entries`),
//! each offering's counters and the lease of the instance that raises them
//! (`queue_state`), and when the serving counter reached each value (`queue_steps`).
//! Positions, once given, never change: a restart reloads them from here.

use uuid::Uuid;

use crate::{Error, GenericClient};

/// A person's entry, as their ticket needs it.
#[derive(Clone, Debug)]
pub struct EntryRow {
    pub pseudonym: String,
    /// `None` while the entry waits in the pre-queue.
    pub position: Option<i64>,
    pub joined_at_unix: i64,
}

/// An offering's counters.
#[derive(Clone, Copy, Debug)]
pub struct StateRow {
    pub shuffled: bool,
    /// Positions 1..=this were drawn at opening.
    pub prequeue_size: i64,
    /// The last position given.
    pub next_position: i64,
    /// Positions up to this one are admitted.
    pub serving: i64,
}

/// A pre-queue entry before the draw.
#[derive(Clone, Debug)]
pub struct PrequeueRow {
    pub user_id: i64,
    pub pseudonym: String,
}

/// When the serving counter reached `serving`.
#[derive(Clone, Copy, Debug)]
pub struct StepRow {
    pub serving: i64,
    pub at_unix: i64,
}

pub async fn entry(
    client: &impl GenericClient,
    offering_id: &str,
    user_id: i64,
) -> Result<Option<EntryRow>, Error> {
    let row = client
        .query_opt(
            "SELECT pseudonym, position, EXTRACT(EPOCH FROM joined_at)::BIGINT
             FROM queue_entries WHERE offering_id = $1 AND user_id = $2",
            &[&offering_id, &user_id],
        )
        .await?;
    Ok(row.map(|r| EntryRow { pseudonym: r.get(0), position: r.get(1), joined_at_unix: r.get(2) }))
}

/// Sets up an offering's counters once; later calls change nothing.
pub async fn create_state(client: &impl GenericClient, offering_id: &str) -> Result<(), Error> {
    client
        .execute(
            "INSERT INTO queue_state (offering_id) VALUES ($1) ON CONFLICT DO NOTHING",
            &[&offering_id],
        )
        .await?;
    Ok(())
}

pub async fn state(client: &impl GenericClient, offering_id: &str) -> Result<StateRow, Error> {
    let r = client
        .query_one(
            "SELECT shuffled_at IS NOT NULL, prequeue_size, next_position, serving FROM queue_state WHERE offering_id = $1",
            &[&offering_id],
        )
        .await?;
    Ok(StateRow {
        shuffled: r.get(0),
        prequeue_size: r.get(1),
        next_position: r.get(2),
        serving: r.get(3),
    })
}

/// Whether the draw has happened and the pre-queue's size; `None` before the room is set up.
pub async fn draw_state(
    client: &impl GenericClient,
    offering_id: &str,
) -> Result<Option<(bool, i64)>, Error> {
    let row = client
        .query_opt(
            "SELECT shuffled_at IS NOT NULL, prequeue_size FROM queue_state WHERE offering_id = $1",
            &[&offering_id],
        )
        .await?;
    Ok(row.map(|r| (r.get(0), r.get(1))))
}

/// Whether the draw has happened, locking the counters `FOR SHARE`: pre-queue joins run
/// side by side, and the draw (which locks them exclusively) waits for them. `None` before
/// the room is set up.
pub async fn lock_shared_shuffled(
    client: &impl GenericClient,
    offering_id: &str,
) -> Result<Option<bool>, Error> {
    let row = client
        .query_opt(
            "SELECT shuffled_at IS NOT NULL FROM queue_state WHERE offering_id = $1 FOR SHARE",
            &[&offering_id],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// Adds a pre-queue entry (no position) unless the person has one.
pub async fn insert_prequeue_entry(
    client: &impl GenericClient,
    offering_id: &str,
    user_id: i64,
    pseudonym: &str,
) -> Result<(), Error> {
    client
        .execute(
            "INSERT INTO queue_entries (offering_id, user_id, pseudonym) VALUES ($1, $2, $3)
             ON CONFLICT (offering_id, user_id) DO NOTHING",
            &[&offering_id, &user_id, &pseudonym],
        )
        .await?;
    Ok(())
}

/// The next position to give, locking the counters `FOR UPDATE` until the caller commits.
/// `None` before the room is set up.
pub async fn lock_next_position(
    client: &impl GenericClient,
    offering_id: &str,
) -> Result<Option<i64>, Error> {
    let row = client
        .query_opt(
            "SELECT next_position + 1 FROM queue_state WHERE offering_id = $1 FOR UPDATE",
            &[&offering_id],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// Adds an entry at `position` unless the person has one; `true` when added.
pub async fn insert_entry_at(
    client: &impl GenericClient,
    offering_id: &str,
    user_id: i64,
    pseudonym: &str,
    position: i64,
) -> Result<bool, Error> {
    let inserted = client
        .execute(
            "INSERT INTO queue_entries (offering_id, user_id, pseudonym, position) VALUES ($1, $2, $3, $4)
             ON CONFLICT (offering_id, user_id) DO NOTHING",
            &[&offering_id, &user_id, &pseudonym, &position],
        )
        .await?;
    Ok(inserted == 1)
}

pub async fn set_next_position(
    client: &impl GenericClient,
    offering_id: &str,
    position: i64,
) -> Result<(), Error> {
    client
        .execute(
            "UPDATE queue_state SET next_position = $2 WHERE offering_id = $1",
            &[&offering_id, &position],
        )
        .await?;
    Ok(())
}

/// Pseudonyms of the drawn pre-queue, in position order.
pub async fn prequeue_order(
    client: &impl GenericClient,
    offering_id: &str,
    prequeue_size: i64,
) -> Result<Vec<String>, Error> {
    let rows = client
        .query(
            "SELECT pseudonym FROM queue_entries WHERE offering_id = $1 AND position <= $2 ORDER BY position",
            &[&offering_id, &prequeue_size],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// The drawn pre-queue's positions, by pseudonym (their tickets carry none).
pub async fn drawn_positions(
    client: &impl GenericClient,
    offering_id: &str,
    prequeue_size: i64,
) -> Result<Vec<(String, i64)>, Error> {
    let rows = client
        .query(
            "SELECT pseudonym, position FROM queue_entries WHERE offering_id = $1 AND position <= $2",
            &[&offering_id, &prequeue_size],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// The steps of the serving counter above `serving`, rising.
pub async fn steps_after(
    client: &impl GenericClient,
    offering_id: &str,
    serving: i64,
) -> Result<Vec<StepRow>, Error> {
    let rows = client
        .query(
            "SELECT serving, EXTRACT(EPOCH FROM at)::BIGINT FROM queue_steps
             WHERE offering_id = $1 AND serving > $2 ORDER BY serving",
            &[&offering_id, &serving],
        )
        .await?;
    Ok(rows.iter().map(|r| StepRow { serving: r.get(0), at_unix: r.get(1) }).collect())
}

/// Whether the draw has happened and the last position given, locking the counters
/// `FOR UPDATE` for the draw's transaction.
pub async fn lock_for_draw(
    client: &impl GenericClient,
    offering_id: &str,
) -> Result<(bool, i64), Error> {
    let row = client
        .query_one(
            "SELECT shuffled_at IS NOT NULL, next_position FROM queue_state WHERE offering_id = $1 FOR UPDATE",
            &[&offering_id],
        )
        .await?;
    Ok((row.get(0), row.get(1)))
}

/// The pre-queue's entries, not yet drawn.
pub async fn prequeue(
    client: &impl GenericClient,
    offering_id: &str,
) -> Result<Vec<PrequeueRow>, Error> {
    let rows = client
        .query(
            "SELECT user_id, pseudonym FROM queue_entries WHERE offering_id = $1 AND position IS NULL",
            &[&offering_id],
        )
        .await?;
    Ok(rows.iter().map(|r| PrequeueRow { user_id: r.get(0), pseudonym: r.get(1) }).collect())
}

/// Gives `users[i]` the position `positions[i]`.
pub async fn set_positions(
    client: &impl GenericClient,
    offering_id: &str,
    users: &[i64],
    positions: &[i64],
) -> Result<(), Error> {
    client
        .execute(
            "UPDATE queue_entries q SET position = u.position
             FROM unnest($2::BIGINT[], $3::BIGINT[]) AS u(user_id, position)
             WHERE q.offering_id = $1 AND q.user_id = u.user_id",
            &[&offering_id, &users, &positions],
        )
        .await?;
    Ok(())
}

/// Records the draw: when, the pre-queue's size and the last position given.
pub async fn mark_shuffled(
    client: &impl GenericClient,
    offering_id: &str,
    prequeue_size: i64,
    next_position: i64,
) -> Result<(), Error> {
    client
        .execute(
            "UPDATE queue_state SET shuffled_at = now(), prequeue_size = $2, next_position = $3 WHERE offering_id = $1",
            &[&offering_id, &prequeue_size, &next_position],
        )
        .await?;
    Ok(())
}

/// Raises the serving counter by `step` (never past the last position given) if
/// `instance` holds the lease or may take it, renewing it for `lease_seconds`. The new
/// counter, or `None` when another instance leads.
pub async fn advance_serving(
    client: &impl GenericClient,
    offering_id: &str,
    step: i64,
    instance: Uuid,
    lease_seconds: f64,
) -> Result<Option<i64>, Error> {
    let led = client
        .query_opt(
            "UPDATE queue_state SET serving = LEAST(serving + $2, next_position), leader = $3,
                 lease_until = now() + make_interval(secs => $4)
             WHERE offering_id = $1 AND (leader IS NULL OR leader = $3 OR lease_until < now())
             RETURNING serving",
            &[&offering_id, &step, &instance, &lease_seconds],
        )
        .await?;
    Ok(led.map(|r| r.get(0)))
}

/// Records that the serving counter reached `serving` now.
pub async fn insert_step(
    client: &impl GenericClient,
    offering_id: &str,
    serving: i64,
) -> Result<(), Error> {
    client
        .execute(
            "INSERT INTO queue_steps (offering_id, serving) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            &[&offering_id, &serving],
        )
        .await?;
    Ok(())
}
