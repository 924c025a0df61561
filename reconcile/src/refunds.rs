//! `reconcile refunds pay --file payouts.csv`: finance records the bank transfers that paid
//! refunds back, and the ledger moves the same money out of refunds payable; and the
//! payouts' part of `reconcile check`.
//!
//! The file has a header and one payout per line:
//! `bank_reference,gateway,transaction_id,amount_satang,paid_on` (`paid_on` as
//! `YYYY-MM-DD`). Each line is recorded in Postgres first (with its audit entry, the
//! refund's row locked so nothing is paid out twice or beyond what is owed), then moved in
//! the ledger with an id derived from the bank reference: importing the same file again
//! records nothing new and only re-applies what a crash may have left unmoved.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

use allot_ledger::{Ledger, MoneyEvent, MoneyKind, Payout, PayoutOutcome};
use allot_store::payouts::{self, NewPayout, PayoutRow, Recorded};
use indicatif::ProgressBar;

use crate::check::{page_events, CheckReport};
use crate::store::{Client, OfferingRow};

/// Who the audit trail names for payouts recorded from a file.
pub const ACTOR: &str = "finance:reconcile";

/// One line of a payouts file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PayoutLine {
    pub bank_reference: String,
    pub gateway: String,
    pub transaction_id: String,
    pub amount_satang: i64,
    pub paid_on: time::Date,
}

/// What one line came to: `recorded`, `already recorded`, or why it was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineResult {
    pub line: usize,
    pub bank_reference: String,
    pub result: Result<&'static str, String>,
}

pub fn parse_file(path: &Path) -> Result<Vec<PayoutLine>, String> {
    let mut reader =
        csv::Reader::from_path(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut lines = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let record = record.map_err(|e| format!("line {}: {e}", i + 2))?;
        let field = |n: usize| record.get(n).map(str::trim).unwrap_or_default().to_owned();
        let amount =
            field(3).parse::<i64>().ok().filter(|a| *a > 0).ok_or_else(|| {
                format!("line {}: amount_satang is a positive whole number", i + 2)
            })?;
        let format = time::macros::format_description!("[year]-[month]-[day]");
        let paid_on = time::Date::parse(&field(4), format)
            .map_err(|_| format!("line {}: paid_on is YYYY-MM-DD", i + 2))?;
        if field(0).is_empty() {
            return Err(format!("line {}: bank_reference is empty", i + 2));
        }
        lines.push(PayoutLine {
            bank_reference: field(0),
            gateway: field(1),
            transaction_id: field(2),
            amount_satang: amount,
            paid_on,
        });
    }
    Ok(lines)
}

/// Records and moves every line; a refused line (unknown refund, more than owed, a
/// reference reused for another payout) is reported and the rest go on.
pub async fn pay(
    ledger: &Ledger,
    db: &mut Client,
    lines: &[PayoutLine],
) -> Result<Vec<LineResult>, String> {
    let mut results = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        let result = match record(db, line).await? {
            Ok((row, created)) => {
                move_payout(ledger, &row).await?;
                Ok(if created { "recorded" } else { "already recorded" })
            }
            Err(refused) => Err(refused),
        };
        results.push(LineResult {
            line: i + 2,
            bank_reference: line.bank_reference.clone(),
            result,
        });
    }
    Ok(results)
}

/// The Postgres half in one transaction: the payout, the refund's paid-out sum, the audit
/// entry. `Ok(Err(reason))` when the line is refused.
async fn record(
    db: &mut Client,
    line: &PayoutLine,
) -> Result<Result<(PayoutRow, bool), String>, String> {
    let tx = db.transaction().await.map_err(|e| e.to_string())?;
    let new = NewPayout {
        bank_reference: &line.bank_reference,
        gateway: &line.gateway,
        transaction_id: &line.transaction_id,
        amount_satang: line.amount_satang,
        paid_on: line.paid_on,
        recorded_by: ACTOR,
    };
    let (row, created) = match payouts::record(&tx, &new).await.map_err(|e| e.to_string())? {
        Recorded::New(row) => (row, true),
        Recorded::Replayed(row) => (row, false),
        Recorded::ReferenceReused => {
            return Ok(Err("bank reference already used for another payout".into()))
        }
        Recorded::NoSuchRefund => {
            return Ok(Err("no refund is due on that gateway and transaction".into()))
        }
        Recorded::Overpaid { owed_satang } => {
            return Ok(Err(format!("more than is owed: {owed_satang} satang left to pay out")))
        }
    };
    if created {
        payouts::audit_paid_out(&tx, ACTOR, &row).await.map_err(|e| e.to_string())?;
    }
    tx.commit().await.map_err(|e| e.to_string())?;
    Ok(Ok((row, created)))
}

async fn move_payout(ledger: &Ledger, row: &PayoutRow) -> Result<(), String> {
    let refund = row.refund_id().ok_or("bad refund ledger id")?;
    let payout = Payout { id: row.ledger_id(), refund, amount_satang: row.amount_satang as u128 };
    match ledger.record_payout(&payout).await.map_err(|e| e.to_string())? {
        PayoutOutcome::Paid { .. } => Ok(()),
        PayoutOutcome::RefundNotFound => {
            Err(format!("{}: the ledger has no refund for that payment", row.bank_reference))
        }
    }
}

/// A payout recorded in Postgres longer ago than this must have moved in the ledger: the
/// command moves it right after recording it.
pub const UNMOVED_GRACE: Duration = Duration::from_secs(60);

/// The payouts' part of `reconcile check`: per refund, what Postgres says was paid out
/// against the ledger's payouts; per offering, the totals; and no refund paid out beyond
/// its amount.
pub async fn check(
    ledger: &Ledger,
    db: &Client,
    offerings: &[OfferingRow],
    report: &mut CheckReport,
) -> Result<(), String> {
    let numbers: HashMap<u32, &str> = offerings.iter().map(|o| (o.number, o.id.as_str())).collect();
    // The ledger's payouts, summed per refunded payment, of our offerings only.
    let mut moved: HashMap<u128, (u128, u32)> = HashMap::new();
    let read = move |after| ledger.money_events(MoneyKind::Payout, after);
    let keep = |e: &MoneyEvent| {
        if numbers.contains_key(&e.offering) {
            let entry = moved.entry(e.payment).or_insert((0, e.offering));
            entry.0 += e.amount_satang;
        }
    };
    page_events(read, |e: &MoneyEvent| e.timestamp, &ProgressBar::hidden(), keep).await?;
    let rows = payouts::all(db).await.map_err(|e| e.to_string())?;
    let mut recorded: HashMap<u128, (u128, u128, &PayoutRow)> = HashMap::new();
    let mut newest: HashMap<u128, SystemTime> = HashMap::new();
    for row in &rows {
        let Some(refund) = row.refund_id() else { continue };
        let entry = recorded.entry(refund).or_insert((0, row.refund_satang as u128, row));
        entry.0 += row.amount_satang as u128;
        let at = newest.entry(refund).or_insert(row.recorded_at);
        *at = (*at).max(row.recorded_at);
    }
    let now = SystemTime::now();
    let mut paid_by_offering: HashMap<&str, (u128, u128)> = HashMap::new();
    for (refund, (paid, amount, row)) in &recorded {
        let subject = format!("refund:{}/{}", row.gateway, row.transaction_id);
        let in_ledger = moved.get(refund).map_or(0, |m| m.0);
        paid_by_offering.entry(row.offering_id.as_str()).or_default().1 += paid;
        if in_ledger < *paid && now >= newest[refund] + UNMOVED_GRACE {
            let detail = format!("Postgres paid out {paid} satang; the ledger moved {in_ledger}");
            report.flag("payout_without_ledger_movement", &subject, detail);
        }
        if paid > amount || in_ledger > *amount {
            let detail = format!("refund of {amount} satang; paid out {paid}, ledger {in_ledger}");
            report.flag("refund_overpaid", &subject, detail);
        }
    }
    for (refund, (amount, number)) in &moved {
        let offering = numbers[number];
        paid_by_offering.entry(offering).or_default().0 += amount;
        let in_pg = recorded.get(refund).map_or(0, |r| r.0);
        if *amount > in_pg {
            let detail = format!("the ledger paid out {amount} satang; Postgres records {in_pg}");
            report.flag(
                "ledger_payout_without_record",
                format!("ledger-payment:{refund:030x}"),
                detail,
            );
        }
    }
    for offering in offerings {
        let (ledger_total, pg_total) =
            paid_by_offering.get(offering.id.as_str()).copied().unwrap_or_default();
        report.row(&offering.id, "refunds paid out (satang)", ledger_total, pg_total);
    }
    Ok(())
}
