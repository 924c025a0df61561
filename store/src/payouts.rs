//! Refund payouts (migration V9): finance's record of every bank transfer that paid a
//! refund back, one row per bank reference, ever, and how much of each refund is paid out
//! (`payment_notifications.paid_out_satang`, which can never exceed the refund).

use sha2::{Digest, Sha256};

use crate::{Error, GenericClient};

/// The 120 bits a ledger transfer's base id may use (its top byte names the kind).
const LEDGER_BASE_MASK: u128 = (1 << 120) - 1;

/// A payout as finance reports it.
#[derive(Clone, Debug)]
pub struct NewPayout<'a> {
    /// The bank transfer's reference: one payout per reference, so a file imported twice
    /// pays nothing twice.
    pub bank_reference: &'a str,
    /// The refund it pays: the notification of the money that came in.
    pub gateway: &'a str,
    pub transaction_id: &'a str,
    pub amount_satang: i64,
    pub paid_on: time::Date,
    /// Who recorded it (an audit actor).
    pub recorded_by: &'a str,
}

/// A recorded payout and the refund it pays.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PayoutRow {
    pub bank_reference: String,
    pub gateway: String,
    pub transaction_id: String,
    pub amount_satang: i64,
    pub paid_on: time::Date,
    /// The refunded money's ledger id (hex), which the ledger's payout names.
    pub refund_ledger_id: String,
    pub offering_id: String,
    /// The refund's amount, and how much of it is paid out now.
    pub refund_satang: i64,
    pub paid_out_satang: i64,
    pub recorded_at: std::time::SystemTime,
}

impl PayoutRow {
    /// The ledger id of this payout's transfer: from the bank reference, so the same bank
    /// transfer moves money once however often it is recorded.
    pub fn ledger_id(&self) -> u128 {
        let digest = Sha256::new()
            .chain_update(b"allot/refund-payout/v1")
            .chain_update(self.bank_reference.as_bytes())
            .finalize();
        let bytes: [u8; 16] = digest[..16].try_into().expect("16 bytes");
        (u128::from_be_bytes(bytes) & LEDGER_BASE_MASK).max(1)
    }

    /// The refunded money's ledger id (the notification's `ledger_id`, 30 hex digits).
    pub fn refund_id(&self) -> Option<u128> {
        u128::from_str_radix(&self.refund_ledger_id, 16).ok().filter(|id| *id != 0)
    }

    /// `paid_out` once the whole refund went back, `due` before.
    pub fn refund_status(&self) -> &'static str {
        if self.paid_out_satang >= self.refund_satang {
            "paid_out"
        } else {
            "due"
        }
    }
}

/// What recording a payout came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Recorded {
    /// Recorded by this call.
    New(PayoutRow),
    /// This bank reference was recorded before for the same refund and amount.
    Replayed(PayoutRow),
    /// This bank reference was recorded before for another refund or amount.
    ReferenceReused,
    /// No refund is due on that (gateway, transaction id).
    NoSuchRefund,
    /// More than is still owed on the refund: nothing recorded.
    Overpaid { owed_satang: i64 },
}

const SELECT: &str = "SELECT p.bank_reference, p.gateway, p.transaction_id, p.amount_satang,
        p.paid_on, n.ledger_id, i.offering_id, n.amount_satang, n.paid_out_satang,
        p.recorded_at
    FROM refund_payouts p
    JOIN payment_notifications n USING (gateway, transaction_id)
    JOIN payment_intents i ON i.payment_id = n.payment_id";

fn row(r: &tokio_postgres::Row) -> PayoutRow {
    PayoutRow {
        bank_reference: r.get(0),
        gateway: r.get(1),
        transaction_id: r.get(2),
        amount_satang: r.get(3),
        paid_on: r.get(4),
        refund_ledger_id: r.get(5),
        offering_id: r.get(6),
        refund_satang: r.get(7),
        paid_out_satang: r.get(8),
        recorded_at: r.get(9),
    }
}

async fn by_reference(
    client: &impl GenericClient,
    bank_reference: &str,
) -> Result<Option<PayoutRow>, Error> {
    let sql = format!("{SELECT} WHERE p.bank_reference = $1");
    Ok(client.query_opt(&sql, &[&bank_reference]).await?.as_ref().map(row))
}

/// Records a payout in the caller's transaction: the refund's row is locked first, so two
/// payouts of one refund queue and the sum is checked against what is owed. The caller
/// appends the audit entry in the same transaction, then moves the money in the ledger.
pub async fn record(client: &impl GenericClient, p: &NewPayout<'_>) -> Result<Recorded, Error> {
    let refund = client
        .query_opt(
            "SELECT n.amount_satang, n.paid_out_satang FROM payment_notifications n
             WHERE n.gateway = $1 AND n.transaction_id = $2 AND n.outcome = 'refund_due'
               AND n.payment_id IS NOT NULL
             FOR UPDATE",
            &[&p.gateway, &p.transaction_id],
        )
        .await?;
    if let Some(existing) = by_reference(client, p.bank_reference).await? {
        let same = existing.gateway == p.gateway
            && existing.transaction_id == p.transaction_id
            && existing.amount_satang == p.amount_satang
            && existing.paid_on == p.paid_on;
        return Ok(if same { Recorded::Replayed(existing) } else { Recorded::ReferenceReused });
    }
    let Some(refund) = refund else { return Ok(Recorded::NoSuchRefund) };
    let (amount, paid_out): (i64, i64) = (refund.get(0), refund.get(1));
    if paid_out + p.amount_satang > amount {
        return Ok(Recorded::Overpaid { owed_satang: amount - paid_out });
    }
    client
        .execute(
            "INSERT INTO refund_payouts
                 (bank_reference, gateway, transaction_id, amount_satang, paid_on, recorded_by)
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &p.bank_reference,
                &p.gateway,
                &p.transaction_id,
                &p.amount_satang,
                &p.paid_on,
                &p.recorded_by,
            ],
        )
        .await?;
    client
        .execute(
            "UPDATE payment_notifications SET paid_out_satang = paid_out_satang + $3
             WHERE gateway = $1 AND transaction_id = $2",
            &[&p.gateway, &p.transaction_id, &p.amount_satang],
        )
        .await?;
    let recorded = by_reference(client, p.bank_reference).await?;
    Ok(recorded.map_or(Recorded::NoSuchRefund, Recorded::New))
}

/// Every payout recorded, oldest first (the reconciliation compares them with the ledger).
pub async fn all(client: &impl GenericClient) -> Result<Vec<PayoutRow>, Error> {
    let sql = format!("{SELECT} ORDER BY p.recorded_at, p.bank_reference");
    Ok(client.query(&sql, &[]).await?.iter().map(row).collect())
}

/// The audit entry of a payout, in the transaction that records it.
pub async fn audit_paid_out(
    client: &impl GenericClient,
    actor: &str,
    row: &PayoutRow,
) -> Result<i64, Error> {
    let subject = format!("refund:{}:{}", row.gateway, row.transaction_id);
    let after = serde_json::json!({
        "bank_reference": row.bank_reference,
        "amount_satang": row.amount_satang,
        "paid_on": row.paid_on.to_string(),
        "paid_out_satang": row.paid_out_satang,
        "refund_status": row.refund_status(),
    });
    crate::audit::append(client, actor, "refund.paid_out", &subject, None, Some(&after)).await
}
