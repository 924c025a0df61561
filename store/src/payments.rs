//! Payments' paperwork (migration V2): what we asked people to pay (`payment_intents`),
//! what gateways told us arrived (`payment_notifications`), and finance's lists of money
//! that confirmed nothing. TigerBeetle holds the money itself; the API decides what a
//! notification means and hands the outcome here.

use std::time::SystemTime;

use serde_json::Value;

use crate::status::{IntentStatus, NotificationOutcome};
use crate::{Error, GenericClient};

const INTENT_COLUMNS: &str = "payment_id, reservation_id, offering_id, user_id, gateway, \
     amount_satang, reference, status, reason, expires_at, created_at";

/// A stored payment intent.
#[derive(Clone, Debug)]
pub struct IntentRow {
    pub payment_id: String,
    pub reservation_id: String,
    pub offering_id: String,
    pub user_id: i64,
    /// A gateway's name (the schema allows `sandbox` and `bank`).
    pub gateway: String,
    pub amount_satang: i64,
    pub reference: String,
    pub status: IntentStatus,
    pub reason: Option<String>,
    pub expires_at: SystemTime,
    pub created_at: SystemTime,
}

impl IntentRow {
    fn from_row(row: &tokio_postgres::Row) -> IntentRow {
        IntentRow {
            payment_id: row.get(0),
            reservation_id: row.get(1),
            offering_id: row.get(2),
            user_id: row.get(3),
            gateway: row.get(4),
            amount_satang: row.get(5),
            reference: row.get(6),
            status: row.get(7),
            reason: row.get(8),
            expires_at: row.get(9),
            created_at: row.get(10),
        }
    }
}

pub async fn intent_by_id(
    client: &impl GenericClient,
    payment_id: &str,
) -> Result<Option<IntentRow>, Error> {
    let sql = format!("SELECT {INTENT_COLUMNS} FROM payment_intents WHERE payment_id = $1");
    let row = client.query_opt(&sql, &[&payment_id]).await?;
    Ok(row.as_ref().map(IntentRow::from_row))
}

pub async fn intent_by_reservation(
    client: &impl GenericClient,
    reservation_id: &str,
) -> Result<Option<IntentRow>, Error> {
    let sql = format!("SELECT {INTENT_COLUMNS} FROM payment_intents WHERE reservation_id = $1");
    let row = client.query_opt(&sql, &[&reservation_id]).await?;
    Ok(row.as_ref().map(IntentRow::from_row))
}

/// A PromptPay intent to open for a reservation.
#[derive(Clone, Copy, Debug)]
pub struct NewIntent<'a> {
    pub payment_id: &'a str,
    pub reservation_id: &'a str,
    pub offering_id: &'a str,
    pub user_id: i64,
    pub gateway: &'a str,
    pub amount_satang: i64,
    pub reference: &'a str,
    pub expires_at: SystemTime,
}

/// What opening an intent came to.
#[derive(Clone, Debug)]
pub enum Opened {
    Opened(IntentRow),
    /// The reservation has an intent already (a concurrent request opened it first).
    ReservationHasOne,
    /// The random payment id or reference is taken: draw others and try again. The
    /// transaction is aborted and must be dropped.
    IdTaken,
}

/// Opens an intent, one per reservation.
pub async fn open_intent(client: &impl GenericClient, i: &NewIntent<'_>) -> Result<Opened, Error> {
    let sql = format!(
        "INSERT INTO payment_intents
            (payment_id, reservation_id, offering_id, user_id, method, gateway,
             amount_satang, reference, expires_at)
         VALUES ($1, $2, $3, $4, 'promptpay', $5, $6, $7, $8)
         ON CONFLICT (reservation_id) DO NOTHING
         RETURNING {INTENT_COLUMNS}"
    );
    let inserted = client
        .query_opt(
            &sql,
            &[
                &i.payment_id,
                &i.reservation_id,
                &i.offering_id,
                &i.user_id,
                &i.gateway,
                &i.amount_satang,
                &i.reference,
                &i.expires_at,
            ],
        )
        .await;
    match inserted {
        Ok(Some(row)) => Ok(Opened::Opened(IntentRow::from_row(&row))),
        Ok(None) => Ok(Opened::ReservationHasOne),
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) => {
            Ok(Opened::IdTaken)
        }
        Err(e) => Err(e),
    }
}

/// A gateway's notification, as delivered.
#[derive(Clone, Copy, Debug)]
pub struct NewNotification<'a> {
    pub gateway: &'a str,
    pub transaction_id: &'a str,
    /// As the bank sent it (trimmed).
    pub reference: &'a str,
    pub amount_satang: i64,
    pub paid_at: SystemTime,
    /// The reference as our intents carry it: the intent it matches, if any, is linked.
    pub normalized_reference: &'a str,
    pub ledger_id: &'a str,
    /// The delivery as signed, for audit.
    pub body: &'a str,
    /// The payer's account, when the bank says.
    pub payer_account: Option<&'a str>,
}

/// What counts of a recorded notification: its first delivery's reference and amount, and
/// the intent it matched (`None`: unmatched).
#[derive(Clone, Debug)]
pub struct RecordedRow {
    pub reference: String,
    pub amount_satang: i64,
    pub payment_id: Option<String>,
    /// When the payer paid, as the bank said the first time.
    pub paid_at: SystemTime,
}

/// Records a notification unless its (gateway, transaction id) was recorded before; either
/// way returns the row that counts (`None` only if that row vanished). One round trip in
/// the common case.
pub async fn record_notification(
    client: &impl GenericClient,
    n: &NewNotification<'_>,
) -> Result<Option<RecordedRow>, Error> {
    let mut row = client
        .query_opt(
            "WITH inserted AS (
                INSERT INTO payment_notifications
                    (gateway, transaction_id, reference, amount_satang, paid_at, payment_id,
                     ledger_id, body, payer_account)
                VALUES ($1, $2, $3, $4, $5,
                        (SELECT payment_id FROM payment_intents WHERE reference = $6), $7, $8, $9)
                ON CONFLICT (gateway, transaction_id) DO NOTHING
                RETURNING reference, amount_satang, payment_id, paid_at
             )
             SELECT reference, amount_satang, payment_id, paid_at FROM inserted
             UNION ALL
             SELECT reference, amount_satang, payment_id, paid_at FROM payment_notifications
             WHERE gateway = $1 AND transaction_id = $2 AND NOT EXISTS (SELECT 1 FROM inserted)",
            &[
                &n.gateway,
                &n.transaction_id,
                &n.reference,
                &n.amount_satang,
                &n.paid_at,
                &n.normalized_reference,
                &n.ledger_id,
                &n.body,
                &n.payer_account,
            ],
        )
        .await?;
    if row.is_none() {
        // A concurrent delivery of the same transaction committed after this statement's
        // snapshot: the insert saw it, the read could not. A new statement sees it.
        row = client
            .query_opt(
                "SELECT reference, amount_satang, payment_id, paid_at FROM payment_notifications
                 WHERE gateway = $1 AND transaction_id = $2",
                &[&n.gateway, &n.transaction_id],
            )
            .await?;
    }
    Ok(row.map(|row| RecordedRow {
        reference: row.get(0),
        amount_satang: row.get(1),
        payment_id: row.get(2),
        paid_at: row.get(3),
    }))
}

/// The notification to the intent's owner that an application enqueues (due at once).
#[derive(Clone, Copy, Debug)]
pub struct OwnerNotice<'a> {
    pub send_key: &'a str,
    pub user_id: i64,
    pub kind: &'a str,
    pub args: &'a Value,
}

/// A notification's outcome, to mark.
#[derive(Clone, Copy, Debug)]
pub struct Applied<'a> {
    pub gateway: &'a str,
    pub transaction_id: &'a str,
    pub outcome: NotificationOutcome,
    pub reason: Option<&'a str>,
    /// The intent it paid for; `None` when unmatched.
    pub payment_id: Option<&'a str>,
    pub notice: Option<OwnerNotice<'a>>,
}

/// Marks a notification applied, with the intent's status and the owner's notice, in one
/// statement; `true` only the first time (a replay finds the row applied and changes
/// nothing). Succeeded beats refund due (a wrong amount first, the right one later), and a
/// refund of a second payment never hides that the first one succeeded.
pub async fn mark_applied(client: &impl GenericClient, a: &Applied<'_>) -> Result<bool, Error> {
    let applied: i64 = client
        .query_one(
            "WITH notification AS (
                UPDATE payment_notifications
                SET outcome = $3, reason = $4, applied_at = now()
                WHERE gateway = $1 AND transaction_id = $2 AND applied_at IS NULL
                RETURNING 1
             ), intent AS (
                UPDATE payment_intents SET status = $3, reason = $4, updated_at = now()
                WHERE payment_id = $5 AND EXISTS (SELECT 1 FROM notification)
                  AND (status = 'pending' OR ($3 = 'succeeded' AND status <> 'succeeded'))
             ), event AS (
                INSERT INTO outbox (send_key, user_id, kind, args)
                SELECT $6::text, $7::bigint, $8::text, $9::jsonb
                WHERE $6::text IS NOT NULL AND EXISTS (SELECT 1 FROM notification)
                ON CONFLICT (send_key) DO NOTHING
             )
             SELECT count(*) FROM notification",
            &[
                &a.gateway,
                &a.transaction_id,
                &a.outcome,
                &a.reason,
                &a.payment_id,
                &a.notice.map(|n| n.send_key),
                &a.notice.map(|n| n.user_id),
                &a.notice.map(|n| n.kind),
                &a.notice.map(|n| n.args),
            ],
        )
        .await?
        .get(0);
    Ok(applied == 1)
}

/// A notification recorded but never marked applied.
#[derive(Clone, Debug)]
pub struct UnappliedRow {
    pub gateway: String,
    pub transaction_id: String,
    pub amount_satang: i64,
    pub payment_id: Option<String>,
    pub ledger_id: String,
    pub paid_at: SystemTime,
}

/// Up to `rows_max` notifications received before `cutoff` and still unapplied, oldest
/// first.
pub async fn unapplied(
    client: &impl GenericClient,
    cutoff: SystemTime,
    rows_max: i64,
) -> Result<Vec<UnappliedRow>, Error> {
    let rows = client
        .query(
            "SELECT gateway, transaction_id, amount_satang, payment_id, ledger_id, paid_at
             FROM payment_notifications
             WHERE applied_at IS NULL AND received_at < $1
             ORDER BY received_at LIMIT $2",
            &[&cutoff, &rows_max],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| UnappliedRow {
            gateway: row.get(0),
            transaction_id: row.get(1),
            amount_satang: row.get(2),
            payment_id: row.get(3),
            ledger_id: row.get(4),
            paid_at: row.get(5),
        })
        .collect())
}

/// Money received through a gateway, as finance lists it.
#[derive(Clone, Debug)]
pub struct ReceivedRow {
    pub gateway: String,
    pub transaction_id: String,
    pub reference: String,
    pub amount_satang: i64,
    pub paid_at: SystemTime,
    pub received_at: SystemTime,
    pub payment_id: Option<String>,
    pub reservation_id: Option<String>,
    pub user_id: Option<i64>,
    pub reason: Option<String>,
    /// How much of a refund is paid back so far.
    pub paid_out_satang: i64,
}

/// The newest `rows_max` notifications that came to `outcome`, newest first.
pub async fn received(
    client: &impl GenericClient,
    outcome: NotificationOutcome,
    rows_max: i64,
) -> Result<Vec<ReceivedRow>, Error> {
    let rows = client
        .query(
            "SELECT n.gateway, n.transaction_id, n.reference, n.amount_satang, n.paid_at,
                    n.received_at, n.payment_id, i.reservation_id, i.user_id, n.reason,
                    n.paid_out_satang
             FROM payment_notifications n
             LEFT JOIN payment_intents i ON i.payment_id = n.payment_id
             WHERE n.outcome = $1
             ORDER BY n.received_at DESC LIMIT $2",
            &[&outcome, &rows_max],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| ReceivedRow {
            gateway: r.get(0),
            transaction_id: r.get(1),
            reference: r.get(2),
            amount_satang: r.get(3),
            paid_at: r.get(4),
            received_at: r.get(5),
            payment_id: r.get(6),
            reservation_id: r.get(7),
            user_id: r.get(8),
            reason: r.get(9),
            paid_out_satang: r.get(10),
        })
        .collect())
}
