//! The outbox of notifications to people (`outbox`, migration V2): an event is enqueued in
//! the transaction of the change it announces, and a worker claims due rows with
//! `FOR UPDATE SKIP LOCKED`, sends them, and marks them in that same transaction. What a
//! kind means and how a message reads belong to the API; this module only stores rows.

use std::time::SystemTime;

use serde_json::Value;

use crate::status::OutboxStatus;
use crate::{Error, GenericClient};

/// An event to enqueue.
#[derive(Clone, Copy, Debug)]
pub struct NewEvent<'a> {
    /// Unique per event, ever: a second event with the same key is not added.
    pub send_key: &'a str,
    pub user_id: i64,
    pub kind: &'a str,
    pub args: &'a Value,
    /// Not sent before this.
    pub due_at: SystemTime,
}

/// Adds one event; returns 0 when an event with its key exists (that one is left alone).
pub async fn enqueue(client: &impl GenericClient, e: &NewEvent<'_>) -> Result<u64, Error> {
    client
        .execute(
            "INSERT INTO outbox (send_key, user_id, kind, args, due_at)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (send_key) DO NOTHING",
            &[&e.send_key, &e.user_id, &e.kind, &e.args, &e.due_at],
        )
        .await
}

/// Adds many events in one statement (a projected page of holds announces thousands);
/// events whose key exists are left alone. Returns how many were added.
pub async fn enqueue_many(
    client: &impl GenericClient,
    events: &[NewEvent<'_>],
) -> Result<u64, Error> {
    let keys: Vec<&str> = events.iter().map(|e| e.send_key).collect();
    let users: Vec<i64> = events.iter().map(|e| e.user_id).collect();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind).collect();
    let args: Vec<&Value> = events.iter().map(|e| e.args).collect();
    let due: Vec<SystemTime> = events.iter().map(|e| e.due_at).collect();
    client
        .execute(
            "INSERT INTO outbox (send_key, user_id, kind, args, due_at)
             SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::text[], $4::jsonb[], $5::timestamptz[])
             ON CONFLICT (send_key) DO NOTHING",
            &[&keys, &users, &kinds, &args, &due],
        )
        .await
}

/// A due row, claimed for the rest of the caller's transaction, with what its recipient
/// told us about themselves.
#[derive(Clone, Debug)]
pub struct ClaimedRow {
    pub id: i64,
    pub send_key: String,
    pub user_id: i64,
    pub kind: String,
    pub args: Value,
    /// Attempts made before this one.
    pub attempts: i32,
    pub email: Option<String>,
    pub locale: Option<String>,
}

/// Claims up to `rows_max` pending rows that are due, oldest first. Rows another
/// transaction holds are skipped, so concurrent workers never take the same row; the claim
/// lasts until `client`'s transaction ends (call it with a transaction).
pub async fn claim_due(
    client: &impl GenericClient,
    rows_max: i64,
) -> Result<Vec<ClaimedRow>, Error> {
    let rows = client
        .query(
            "SELECT o.id, o.send_key, o.user_id, o.kind, o.args, o.attempts, u.email, u.locale
             FROM outbox o LEFT JOIN users u ON u.user_id = o.user_id
             WHERE o.status = 'pending' AND o.due_at <= now() AND o.kind <> $2
             ORDER BY o.due_at
             LIMIT $1
             FOR UPDATE OF o SKIP LOCKED",
            &[&rows_max, &PARTNER_STATUS],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| ClaimedRow {
            id: row.get(0),
            send_key: row.get(1),
            user_id: row.get(2),
            kind: row.get(3),
            args: row.get(4),
            attempts: row.get(5),
            email: row.get(6),
            locale: row.get(7),
        })
        .collect())
}

/// The kind of a partner's status webhook: claimed by the partners' worker only.
pub const PARTNER_STATUS: &str = "partner_status";

/// Enqueues a status webhook for each of the reservations `ids` that a partner with a
/// webhook URL placed, once per (reservation, status). In the caller's transaction.
pub async fn enqueue_partner_status(
    client: &impl GenericClient,
    ids: &[String],
    status: crate::status::ReservationStatus,
) -> Result<u64, Error> {
    client
        .execute(
            "INSERT INTO outbox (send_key, user_id, kind, args)
             SELECT 'partner.' || r.reservation_id || '.' || $2::text, r.user_id, $3,
                    jsonb_build_object('partner_id', r.partner_id, 'reservation_id', r.reservation_id,
                        'offering_id', r.offering_id, 'customer', r.user_id,
                        'quantity', r.quantity, 'status', $2::text)
             FROM reservations r JOIN partners p ON p.partner_id = r.partner_id
             WHERE r.reservation_id = ANY($1) AND p.webhook_url IS NOT NULL
             ON CONFLICT (send_key) DO NOTHING",
            &[&ids, &status.as_str(), &PARTNER_STATUS],
        )
        .await
}

/// A partner's status webhook, claimed.
#[derive(Clone, Debug)]
pub struct PartnerWebhook {
    pub id: i64,
    pub send_key: String,
    pub args: Value,
    pub attempts: i32,
    pub partner_id: i32,
    pub url: String,
}

/// Claims due partner webhooks as [`claim_due`] claims people's notices.
pub async fn claim_partner_webhooks(
    client: &impl GenericClient,
    rows_max: i64,
) -> Result<Vec<PartnerWebhook>, Error> {
    let rows = client
        .query(
            "SELECT o.id, o.send_key, o.args, o.attempts, p.partner_id, p.webhook_url
             FROM outbox o JOIN partners p ON p.partner_id = (o.args->>'partner_id')::int
             WHERE o.status = 'pending' AND o.due_at <= now() AND o.kind = $2
                   AND p.webhook_url IS NOT NULL
             ORDER BY o.due_at
             LIMIT $1
             FOR UPDATE OF o SKIP LOCKED",
            &[&rows_max, &PARTNER_STATUS],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| PartnerWebhook {
            id: row.get(0),
            send_key: row.get(1),
            args: row.get(2),
            attempts: row.get(3),
            partner_id: row.get(4),
            url: row.get(5),
        })
        .collect())
}

/// A row is done with: `Sent` or `Skipped` (no longer true when it came due).
pub async fn mark_done(
    client: &impl GenericClient,
    id: i64,
    status: OutboxStatus,
    attempts: i32,
) -> Result<(), Error> {
    assert!(matches!(status, OutboxStatus::Sent | OutboxStatus::Skipped), "{status} is not done");
    client
        .execute(
            "UPDATE outbox SET status = $2, attempts = $3, sent_at = now() WHERE id = $1",
            &[&id, &status, &attempts],
        )
        .await?;
    Ok(())
}

/// A failed attempt to be tried again `backoff_seconds` from now.
pub async fn mark_retry(
    client: &impl GenericClient,
    id: i64,
    attempts: i32,
    error: &str,
    backoff_seconds: f64,
) -> Result<(), Error> {
    client
        .execute(
            "UPDATE outbox SET attempts = $2, last_error = $3,
                 due_at = now() + make_interval(secs => $4)
             WHERE id = $1",
            &[&id, &attempts, &error, &backoff_seconds],
        )
        .await?;
    Ok(())
}

/// A row that will never be sent: it stays `failed` for an operator.
pub async fn mark_failed(
    client: &impl GenericClient,
    id: i64,
    attempts: i32,
    error: &str,
) -> Result<(), Error> {
    client
        .execute(
            "UPDATE outbox SET status = 'failed', attempts = $2, last_error = $3 WHERE id = $1",
            &[&id, &attempts, &error],
        )
        .await?;
    Ok(())
}

/// The backlog: pending rows already due, and how long the oldest of them has been due
/// (seconds; 0 when none). For the operators' gauges.
pub async fn backlog(client: &impl GenericClient) -> Result<(i64, f64), Error> {
    let row = client
        .query_one(
            "SELECT count(*), COALESCE(EXTRACT(EPOCH FROM now() - min(due_at))::float8, 0)
             FROM outbox WHERE status = 'pending' AND due_at <= now()",
            &[],
        )
        .await?;
    Ok((row.get(0), row.get(1)))
}
