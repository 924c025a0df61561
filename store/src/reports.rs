//! What officials' live reports read from Postgres: counts and a time series from the
//! reservation projection, and the waiting room's length from its counters. Units and
//! money come from the ledger, not from here.

use std::time::SystemTime;

use crate::status::ReservationStatus;
use crate::{Error, GenericClient};

/// Reservations of one status: how many, and how many units they hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatusCount {
    pub status: ReservationStatus,
    pub reservations: i64,
    pub units: i64,
}

/// An offering's reservations by status; a status with none has no row.
pub async fn status_counts(
    client: &impl GenericClient,
    offering_id: &str,
) -> Result<Vec<StatusCount>, Error> {
    let rows = client
        .query(
            "SELECT status, count(*), coalesce(sum(quantity), 0)::bigint FROM reservations
             WHERE offering_id = $1 GROUP BY status",
            &[&offering_id],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| StatusCount { status: r.get(0), reservations: r.get(1), units: r.get(2) })
        .collect())
}

/// Reservations made in one minute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MinuteCount {
    /// Start of the minute, unix seconds.
    pub minute: i64,
    pub reservations: i64,
}

/// Reservations of an offering made since `since`, per minute; a minute with none has no
/// row.
pub async fn reservations_per_minute(
    client: &impl GenericClient,
    offering_id: &str,
    since: SystemTime,
) -> Result<Vec<MinuteCount>, Error> {
    let rows = client
        .query(
            "SELECT extract(epoch FROM date_trunc('minute', created_at))::bigint, count(*)
             FROM reservations WHERE offering_id = $1 AND created_at >= $2 GROUP BY 1",
            &[&offering_id, &since],
        )
        .await?;
    Ok(rows.iter().map(|r| MinuteCount { minute: r.get(0), reservations: r.get(1) }).collect())
}

/// People waiting in an offering's waiting room: everyone with a position above the
/// serving counter, plus the pre-queue. `None` when the offering has no waiting room.
pub async fn queue_length(
    client: &impl GenericClient,
    offering_id: &str,
) -> Result<Option<i64>, Error> {
    let row = client
        .query_opt(
            "SELECT s.next_position - s.serving
                    + (SELECT count(*) FROM queue_entries e
                       WHERE e.offering_id = s.offering_id AND e.position IS NULL)
             FROM queue_state s WHERE s.offering_id = $1",
            &[&offering_id],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}
