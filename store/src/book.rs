//! Book-building (migrations V3, V10): subscriptions during the window (`subscriptions`) and the
//! published figures of each offering's one allocation run (`allocation_runs`). Once a run
//! is stored, subscriptions no longer change: every write here checks that in its statement.

use std::time::SystemTime;

use crate::{Error, GenericClient};

/// A person's subscription.
#[derive(Clone, Debug)]
pub struct SubscriptionRow {
    pub pseudonym: String,
    pub requested: i64,
    /// Set by the allocation run.
    pub allotted: Option<i64>,
    pub hold_placed: bool,
    /// The allotment's deadline passed before its hold stood: nothing is held for it.
    pub hold_lapsed: bool,
}

/// An application as the allocation reads it.
#[derive(Clone, Debug)]
pub struct ApplicationRow {
    pub user_id: i64,
    pub pseudonym: String,
    pub requested: i64,
}

/// A line of the published export.
#[derive(Clone, Debug)]
pub struct ExportRow {
    pub pseudonym: String,
    pub requested: i64,
    pub allotted: Option<i64>,
}

/// An allotment whose hold is not placed yet.
#[derive(Clone, Copy, Debug)]
pub struct AllotmentRow {
    pub user_id: i64,
    pub allotted: i64,
}

/// The figures of a run, as computed (units: the offering's).
#[derive(Clone, Copy, Debug)]
pub struct RunFigures {
    pub supply: i64,
    pub lot: i64,
    pub min_quantity: i64,
    pub applicants: i64,
    pub requested_total: i64,
    pub allotted_total: i64,
    pub cutoff: i64,
    pub lottery_entrants: i64,
    pub lottery_winners: i64,
    pub unserved: i64,
}

/// A stored run.
#[derive(Clone, Copy, Debug)]
pub struct RunRow {
    pub figures: RunFigures,
    pub ran_at: SystemTime,
    /// The one payment deadline of every allotment of the run (`None`: a run stored before
    /// runs fixed it).
    pub holds_deadline: Option<SystemTime>,
    /// Allotments not yet turned into holds.
    pub holds_pending: i64,
    /// Allotments whose deadline passed before their hold stood.
    pub holds_lapsed: i64,
}

/// Places or changes a subscription while no run is stored: `Some(true)` when new,
/// `Some(false)` when changed, `None` when the run has happened.
pub async fn upsert_subscription(
    client: &impl GenericClient,
    offering_id: &str,
    user_id: i64,
    pseudonym: &str,
    requested: i64,
) -> Result<Option<bool>, Error> {
    let row = client
        .query_opt(
            "INSERT INTO subscriptions (offering_id, user_id, pseudonym, requested)
             SELECT $1, $2, $3, $4
             WHERE NOT EXISTS (SELECT 1 FROM allocation_runs WHERE offering_id = $1)
             ON CONFLICT (offering_id, user_id)
             DO UPDATE SET requested = EXCLUDED.requested, updated_at = now()
             RETURNING (xmax = 0)",
            &[&offering_id, &user_id, &pseudonym, &requested],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// Deletes a subscription while no run is stored; `false` when there was none to delete.
pub async fn delete_subscription(
    client: &impl GenericClient,
    offering_id: &str,
    user_id: i64,
) -> Result<bool, Error> {
    let n = client
        .execute(
            "DELETE FROM subscriptions WHERE offering_id = $1 AND user_id = $2
             AND NOT EXISTS (SELECT 1 FROM allocation_runs WHERE offering_id = $1)",
            &[&offering_id, &user_id],
        )
        .await?;
    Ok(n > 0)
}

pub async fn subscription(
    client: &impl GenericClient,
    offering_id: &str,
    user_id: i64,
) -> Result<Option<SubscriptionRow>, Error> {
    let row = client
        .query_opt(
            "SELECT pseudonym, requested, allotted, hold_placed, hold_lapsed FROM subscriptions
             WHERE offering_id = $1 AND user_id = $2",
            &[&offering_id, &user_id],
        )
        .await?;
    Ok(row.map(|r| SubscriptionRow {
        pseudonym: r.get(0),
        requested: r.get(1),
        allotted: r.get(2),
        hold_placed: r.get(3),
        hold_lapsed: r.get(4),
    }))
}

/// The offering's run, with how many of its allotments still wait for their hold.
pub async fn run(client: &impl GenericClient, offering_id: &str) -> Result<Option<RunRow>, Error> {
    let row = client
        .query_opt(
            "SELECT supply, lot, min_quantity, applicants, requested_total, allotted_total, cutoff,
                    lottery_entrants, lottery_winners, unserved, ran_at,
                    (SELECT count(*) FROM subscriptions s WHERE s.offering_id = r.offering_id
                       AND s.allotted > 0 AND NOT s.hold_placed AND NOT s.hold_lapsed),
                    holds_deadline,
                    (SELECT count(*) FROM subscriptions s WHERE s.offering_id = r.offering_id
                       AND s.hold_lapsed)
             FROM allocation_runs r WHERE offering_id = $1",
            &[&offering_id],
        )
        .await?;
    Ok(row.map(|r| RunRow {
        figures: RunFigures {
            supply: r.get(0),
            lot: r.get(1),
            min_quantity: r.get(2),
            applicants: r.get(3),
            requested_total: r.get(4),
            allotted_total: r.get(5),
            cutoff: r.get(6),
            lottery_entrants: r.get(7),
            lottery_winners: r.get(8),
            unserved: r.get(9),
        },
        ran_at: r.get(10),
        holds_pending: r.get(11),
        holds_deadline: r.get(12),
        holds_lapsed: r.get(13),
    }))
}

/// Takes the offering's allocation lock for the rest of the caller's transaction: one run
/// at a time per offering, across instances.
pub async fn lock_allocation(client: &impl GenericClient, offering_id: &str) -> Result<(), Error> {
    client
        .execute("SELECT pg_advisory_xact_lock(hashtext('allocation:' || $1))", &[&offering_id])
        .await?;
    Ok(())
}

pub async fn run_exists(client: &impl GenericClient, offering_id: &str) -> Result<bool, Error> {
    let done = client
        .query_opt("SELECT 1 FROM allocation_runs WHERE offering_id = $1", &[&offering_id])
        .await?;
    Ok(done.is_some())
}

/// Every application, in pseudonym order (the order the draw and the export use).
pub async fn applications(
    client: &impl GenericClient,
    offering_id: &str,
) -> Result<Vec<ApplicationRow>, Error> {
    let rows = client
        .query(
            "SELECT user_id, pseudonym, requested FROM subscriptions
             WHERE offering_id = $1 ORDER BY pseudonym",
            &[&offering_id],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| ApplicationRow { user_id: r.get(0), pseudonym: r.get(1), requested: r.get(2) })
        .collect())
}

/// Stores `allotted[i]` as the allotment of `users[i]`.
pub async fn set_allotments(
    client: &impl GenericClient,
    offering_id: &str,
    users: &[i64],
    allotted: &[i64],
) -> Result<(), Error> {
    client
        .execute(
            "UPDATE subscriptions s SET allotted = u.allotted, updated_at = now()
             FROM unnest($2::BIGINT[], $3::BIGINT[]) AS u(user_id, allotted)
             WHERE s.offering_id = $1 AND s.user_id = u.user_id",
            &[&offering_id, &users, &allotted],
        )
        .await?;
    Ok(())
}

/// Stores a run's figures and the one payment deadline of all its allotments.
pub async fn insert_run(
    client: &impl GenericClient,
    offering_id: &str,
    f: &RunFigures,
    holds_deadline: SystemTime,
) -> Result<(), Error> {
    client
        .execute(
            "INSERT INTO allocation_runs (offering_id, supply, lot, min_quantity, applicants,
                 requested_total, allotted_total, cutoff, lottery_entrants, lottery_winners, unserved,
                 holds_deadline)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            &[
                &offering_id,
                &f.supply,
                &f.lot,
                &f.min_quantity,
                &f.applicants,
                &f.requested_total,
                &f.allotted_total,
                &f.cutoff,
                &f.lottery_entrants,
                &f.lottery_winners,
                &f.unserved,
                &holds_deadline,
            ],
        )
        .await?;
    Ok(())
}

/// Allotments still waiting for their hold.
pub async fn allotments_to_hold(
    client: &impl GenericClient,
    offering_id: &str,
) -> Result<Vec<AllotmentRow>, Error> {
    let rows = client
        .query(
            "SELECT user_id, allotted FROM subscriptions
             WHERE offering_id = $1 AND allotted > 0 AND NOT hold_placed AND NOT hold_lapsed",
            &[&offering_id],
        )
        .await?;
    Ok(rows.iter().map(|r| AllotmentRow { user_id: r.get(0), allotted: r.get(1) }).collect())
}

pub async fn mark_holds_placed(
    client: &impl GenericClient,
    offering_id: &str,
    users: &[i64],
) -> Result<(), Error> {
    client
        .execute(
            "UPDATE subscriptions SET hold_placed = TRUE
             WHERE offering_id = $1 AND user_id = ANY($2)",
            &[&offering_id, &users],
        )
        .await?;
    Ok(())
}

/// Marks allotments lapsed: their deadline passed before their hold stood.
pub async fn mark_holds_lapsed(
    client: &impl GenericClient,
    offering_id: &str,
    users: &[i64],
) -> Result<(), Error> {
    client
        .execute(
            "UPDATE subscriptions SET hold_lapsed = TRUE, hold_placed = FALSE
             WHERE offering_id = $1 AND user_id = ANY($2)",
            &[&offering_id, &users],
        )
        .await?;
    Ok(())
}

/// Records that every allotment of the run is held (once).
pub async fn finish_run(client: &impl GenericClient, offering_id: &str) -> Result<(), Error> {
    client
        .execute(
            "UPDATE allocation_runs SET holds_placed_at = now()
             WHERE offering_id = $1 AND holds_placed_at IS NULL",
            &[&offering_id],
        )
        .await?;
    Ok(())
}

/// Every subscription with its allotment, in pseudonym order.
pub async fn export_rows(
    client: &impl GenericClient,
    offering_id: &str,
) -> Result<Vec<ExportRow>, Error> {
    let rows = client
        .query(
            "SELECT pseudonym, requested, allotted FROM subscriptions
             WHERE offering_id = $1 ORDER BY pseudonym",
            &[&offering_id],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| ExportRow { pseudonym: r.get(0), requested: r.get(1), allotted: r.get(2) })
        .collect())
}
