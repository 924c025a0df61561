//! The projection of the ledger into Postgres (`reservations` and `projector_checkpoints`,
//! migration V1), for the one process that writes it and the readers that check it.
//!
//! The API's projector copies each page of hold events with [`insert_held`],
//! [`set_status`] and [`save_checkpoint`] in one transaction, so a crash loses nothing and
//! duplicates nothing; [`mark_expired`] turns lapsed holds into `expired`. `reconcile`
//! reads the same tables back ([`checkpoint`], [`rows_of_offering`], [`outstanding_holds`])
//! to compare them with the ledger. The owners' list of their reservations is in
//! [`crate::reservations`].

use std::time::SystemTime;

use futures::{Stream, TryStreamExt};

use crate::status::ReservationStatus;
use crate::{Error, GenericClient};

/// How far the projector has read `ledger`: the TigerBeetle timestamp (ns) of the last
/// event it committed, or 0 before its first page.
pub async fn checkpoint(client: &impl GenericClient, ledger: i64) -> Result<i64, Error> {
    let row = client
        .query_opt("SELECT last_timestamp FROM projector_checkpoints WHERE ledger = $1", &[&ledger])
        .await?;
    Ok(row.map_or(0, |r| r.get(0)))
}

/// Moves the checkpoint of `ledger` forward to `last_timestamp`, never back: a projector
/// that lost its lease mid-page (or an older page committed late) cannot undo a later one.
/// In the transaction of the page's rows, so the two never disagree.
pub async fn save_checkpoint(
    client: &impl GenericClient,
    ledger: i64,
    last_timestamp: i64,
) -> Result<(), Error> {
    client
        .execute(
            "INSERT INTO projector_checkpoints (ledger, last_timestamp) VALUES ($1, $2)
             ON CONFLICT (ledger) DO UPDATE
             SET last_timestamp = GREATEST(projector_checkpoints.last_timestamp, EXCLUDED.last_timestamp)",
            &[&ledger, &last_timestamp],
        )
        .await?;
    Ok(())
}

/// New holds of one offering, as parallel columns: one statement inserts a whole page.
#[derive(Clone, Debug, Default)]
pub struct NewHolds {
    /// Hold ids, hex.
    pub ids: Vec<String>,
    pub zones: Vec<i32>,
    pub users: Vec<i64>,
    pub quantities: Vec<i64>,
    pub created: Vec<SystemTime>,
    pub expires: Vec<SystemTime>,
    /// The ledger timestamp of each hold, nanoseconds.
    pub timestamps: Vec<i64>,
    /// The partner that placed each hold; `None` for a direct one.
    pub partners: Vec<Option<i32>>,
}

/// Inserts the holds as `held`; a hold already projected is left as it is, so a page read
/// again after a crash changes nothing.
pub async fn insert_held(
    client: &impl GenericClient,
    offering_id: &str,
    holds: &NewHolds,
) -> Result<u64, Error> {
    client
        .execute(
            "INSERT INTO reservations
            (reservation_id, offering_id, zone, user_id, quantity, status, created_at, expires_at, ledger_timestamp, partner_id)
         SELECT id, $2, zone, user_id, quantity, 'held', created_at, expires_at, ts, partner
         FROM UNNEST($1::text[], $3::int[], $4::bigint[], $5::bigint[], $6::timestamptz[], $7::timestamptz[], $8::bigint[], $9::int[])
              AS t(id, zone, user_id, quantity, created_at, expires_at, ts, partner)
         ON CONFLICT (reservation_id) DO NOTHING",
            &[
                &holds.ids,
                &offering_id,
                &holds.zones,
                &holds.users,
                &holds.quantities,
                &holds.created,
                &holds.expires,
                &holds.timestamps,
                &holds.partners,
            ],
        )
        .await
}

/// Sets the status of the reservations `ids` (a post or void seen in the ledger).
pub async fn set_status(
    client: &impl GenericClient,
    ids: &[String],
    status: ReservationStatus,
) -> Result<u64, Error> {
    client
        .execute(
            "UPDATE reservations SET status = $2, updated_at = now() WHERE reservation_id = ANY($1)",
            &[&ids, &status],
        )
        .await
}

/// Marks `expired` every held reservation whose deadline is before `cutoff`; returns how
/// many. TigerBeetle writes no event when a hold lapses, so the deadline is the event.
pub async fn mark_expired(client: &impl GenericClient, cutoff: SystemTime) -> Result<u64, Error> {
    // A partner's webhook for each of its holds that expired, in the same statement.
    let row = client
        .query_one(
            "WITH expired AS (
                 UPDATE reservations SET status = 'expired', updated_at = now()
                 WHERE status = 'held' AND expires_at < $1
                 RETURNING reservation_id, offering_id, user_id, quantity, partner_id)
             , told AS (
                 INSERT INTO outbox (send_key, user_id, kind, args)
                 SELECT 'partner.' || e.reservation_id || '.expired', e.user_id, $2,
                        jsonb_build_object('partner_id', e.partner_id,
                            'reservation_id', e.reservation_id, 'offering_id', e.offering_id,
                            'customer', e.user_id, 'quantity', e.quantity, 'status', 'expired')
                 FROM expired e JOIN partners p ON p.partner_id = e.partner_id
                 WHERE p.webhook_url IS NOT NULL
                 ON CONFLICT (send_key) DO NOTHING)
             SELECT count(*) FROM expired",
            &[&cutoff, &crate::outbox::PARTNER_STATUS],
        )
        .await?;
    Ok(row.get::<_, i64>(0) as u64)
}

/// A projected reservation, as the reconciliation compares it with the ledger's hold.
#[derive(Clone, Debug)]
pub struct ProjectedRow {
    /// The hold id, hex.
    pub reservation_id: String,
    pub zone: i32,
    pub user_id: i64,
    pub quantity: i64,
    pub status: ReservationStatus,
}

/// Every reservation of an offering, streamed (an offering may have millions).
pub async fn rows_of_offering(
    client: &impl GenericClient,
    offering_id: &str,
) -> Result<impl Stream<Item = Result<ProjectedRow, Error>>, Error> {
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&offering_id];
    let rows = client
        .query_raw(
            "SELECT reservation_id, zone, user_id, quantity, status FROM reservations
             WHERE offering_id = $1",
            params,
        )
        .await?;
    Ok(rows.map_ok(|r| ProjectedRow {
        reservation_id: r.get(0),
        zone: r.get(1),
        user_id: r.get(2),
        quantity: r.get(3),
        status: r.get(4),
    }))
}

/// Live holds of one (zone, quantity): what they would bring in if paid depends on
/// nothing else.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HoldGroup {
    pub zone: i32,
    pub quantity: i64,
    pub count: i64,
}

/// An offering's holds still held and not past their deadline, grouped so that a million
/// holds are a handful of rows.
pub async fn outstanding_holds(
    client: &impl GenericClient,
    offering_id: &str,
) -> Result<Vec<HoldGroup>, Error> {
    let rows = client
        .query(
            "SELECT zone, quantity, count(*) FROM reservations
                 WHERE offering_id = $1 AND status = 'held' AND expires_at > now()
                 GROUP BY zone, quantity",
            &[&offering_id],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| HoldGroup { zone: r.get(0), quantity: r.get(1), count: r.get(2) })
        .collect())
}
