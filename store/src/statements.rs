//! Bank statements (`bank_statement_lines`, migration V4) and what reconciliation reads of
//! the payment records to check them and the ledger against: `reconcile statement import`
//! writes the lines, `reconcile match` reads them beside the gateways' notifications, and
//! `reconcile check` reads every notification beside the ledger's money.

use std::time::SystemTime;

use time::Date;

use crate::status::NotificationOutcome;
use crate::{Error, GenericClient};

/// One booked entry of a statement, to insert.
#[derive(Clone, Copy, Debug)]
pub struct NewLine<'a> {
    pub statement_id: &'a str,
    /// The bank's id of the entry, unique within its statement.
    pub entry_ref: &'a str,
    pub booked_on: Date,
    /// Credits positive, debits negative.
    pub amount_satang: i64,
    pub currency: &'a str,
    pub reference: Option<&'a str>,
    pub end_to_end_id: Option<&'a str>,
    pub description: Option<&'a str>,
}

/// Inserts the lines read from the file `source`; returns how many were new. A line
/// already imported (same statement and entry) is skipped, so a file imported twice adds
/// nothing. Run it in a transaction to import a file whole or not at all.
pub async fn insert_lines(
    client: &impl GenericClient,
    lines: &[NewLine<'_>],
    source: &str,
) -> Result<u64, Error> {
    let statement = client
        .prepare(
            "INSERT INTO bank_statement_lines
                (statement_id, entry_ref, booked_on, amount_satang, currency, reference,
                 end_to_end_id, description, source)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (statement_id, entry_ref) DO NOTHING",
        )
        .await?;
    let mut inserted = 0;
    for l in lines {
        inserted += client
            .execute(
                &statement,
                &[
                    &l.statement_id,
                    &l.entry_ref,
                    &l.booked_on,
                    &l.amount_satang,
                    &l.currency,
                    &l.reference,
                    &l.end_to_end_id,
                    &l.description,
                    &source,
                ],
            )
            .await?;
    }
    Ok(inserted)
}

/// The first and last booking dates imported; `None` when nothing is.
pub async fn booked_bounds(
    client: &impl GenericClient,
) -> Result<(Option<Date>, Option<Date>), Error> {
    let row = client
        .query_one("SELECT min(booked_on), max(booked_on) FROM bank_statement_lines", &[])
        .await?;
    Ok((row.get(0), row.get(1)))
}

/// A statement line as matching reads it.
#[derive(Clone, Debug)]
pub struct LineRow {
    pub id: i64,
    pub statement_id: String,
    pub entry_ref: String,
    pub booked_on: Date,
    pub amount_satang: i64,
    pub currency: String,
    /// Empty when the bank gave none.
    pub reference: String,
}

/// Every line booked in `[first, last]`, by booking date then import order.
pub async fn lines_booked(
    client: &impl GenericClient,
    first: Date,
    last: Date,
) -> Result<Vec<LineRow>, Error> {
    let rows = client
        .query(
            "SELECT id, statement_id, entry_ref, booked_on, amount_satang, currency,
                    coalesce(reference, '')
             FROM bank_statement_lines WHERE booked_on BETWEEN $1 AND $2
             ORDER BY booked_on, id",
            &[&first, &last],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| LineRow {
            id: r.get(0),
            statement_id: r.get(1),
            entry_ref: r.get(2),
            booked_on: r.get(3),
            amount_satang: r.get(4),
            currency: r.get(5),
            reference: r.get(6),
        })
        .collect())
}

/// A gateway's notification of money paid, as matching reads it.
#[derive(Clone, Debug)]
pub struct PaidRow {
    /// `<gateway>/<transaction id>`.
    pub key: String,
    pub reference: String,
    pub amount_satang: i64,
    /// The payment date in Bangkok, where the banks book it.
    pub paid_on: Date,
}

/// Notifications paid (Bangkok date) in `[first, last]`, in payment order.
pub async fn paid_between(
    client: &impl GenericClient,
    first: Date,
    last: Date,
) -> Result<Vec<PaidRow>, Error> {
    let rows = client
        .query(
            "SELECT gateway || '/' || transaction_id, reference, amount_satang,
                    (paid_at AT TIME ZONE 'Asia/Bangkok')::date
             FROM payment_notifications
             WHERE (paid_at AT TIME ZONE 'Asia/Bangkok')::date BETWEEN $1 AND $2
             ORDER BY paid_at",
            &[&first, &last],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| PaidRow {
            key: r.get(0),
            reference: r.get(1),
            amount_satang: r.get(2),
            paid_on: r.get(3),
        })
        .collect())
}

/// Every payment intent's (reference, payment id): a statement line with no notification
/// may still name a payment we asked for.
pub async fn intent_references(
    client: &impl GenericClient,
) -> Result<Vec<(String, String)>, Error> {
    let rows = client.query("SELECT reference, payment_id FROM payment_intents", &[]).await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// A gateway's notification as `reconcile check` compares it with the ledger's money.
#[derive(Clone, Debug)]
pub struct NotificationRow {
    pub gateway: String,
    pub transaction_id: String,
    pub amount_satang: i64,
    /// The ledger id of the money it moved, hex.
    pub ledger_id: String,
    pub outcome: NotificationOutcome,
    /// Whether it was applied to the ledger.
    pub applied: bool,
    pub received_at: SystemTime,
    /// The offering of the payment it names; `None` when it names none.
    pub offering_id: Option<String>,
}

/// Every payment notification, with the offering of its payment intent.
pub async fn notifications(client: &impl GenericClient) -> Result<Vec<NotificationRow>, Error> {
    let rows = client
        .query(
            "SELECT n.gateway, n.transaction_id, n.amount_satang, n.ledger_id, n.outcome,
                    n.applied_at IS NOT NULL, n.received_at, i.offering_id
             FROM payment_notifications n LEFT JOIN payment_intents i USING (payment_id)",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| NotificationRow {
            gateway: r.get(0),
            transaction_id: r.get(1),
            amount_satang: r.get(2),
            ledger_id: r.get(3),
            outcome: r.get(4),
            applied: r.get(5),
            received_at: r.get(6),
            offering_id: r.get(7),
        })
        .collect())
}
