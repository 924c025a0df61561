//! `reconcile match`: bank statement lines against the payment notifications gateways sent
//! us, one to one, by reference (Ref1) and exact satang amount, with the booking date
//! within a window of the payment date. Everything else is an [`Exception`].

use std::collections::HashMap;

use allot_store::statements;
use time::{Date, Duration};

use crate::store::Client;

/// One thing finance must look at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exception {
    /// `statement_line_without_payment`, `payment_without_statement_line`,
    /// `amount_mismatch`, `date_outside_window`, `currency_not_thb`.
    pub kind: &'static str,
    pub subject: String,
    pub detail: String,
}

#[derive(Debug, Default)]
pub struct MatchReport {
    /// (statement line id, gateway/transaction)
    pub matched: Vec<(i64, String)>,
    pub exceptions: Vec<Exception>,
    /// Debit lines (money out) are not payments to us: counted, not matched.
    pub debits_skipped: u64,
    pub period: Option<(Date, Date)>,
}

#[derive(Clone, Debug)]
struct Line {
    id: i64,
    statement: String,
    entry: String,
    booked_on: Date,
    amount: i64,
    currency: String,
    reference: String,
}

#[derive(Clone, Debug)]
struct Paid {
    key: String,
    reference: String,
    amount: i64,
    paid_on: Date,
    used: bool,
}

fn normalize(text: &str) -> String {
    text.trim().to_ascii_uppercase()
}

/// Matches every statement line booked in `[from, to]` (default: all imported lines'
/// dates) against notifications paid within `window_days` of that period.
pub async fn run(
    db: &Client,
    from: Option<Date>,
    to: Option<Date>,
    window_days: i64,
) -> Result<MatchReport, String> {
    let mut report = MatchReport::default();
    let bounds = statements::booked_bounds(db).await.map_err(|e| e.to_string())?;
    let (Some(first), Some(last)) = (from.or(bounds.0), to.or(bounds.1)) else {
        return Ok(report);
    };
    report.period = Some((first, last));
    let window = Duration::days(window_days);
    let lines: Vec<Line> = statements::lines_booked(db, first, last)
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|r| Line {
            id: r.id,
            statement: r.statement_id,
            entry: r.entry_ref,
            booked_on: r.booked_on,
            amount: r.amount_satang,
            currency: r.currency,
            reference: normalize(&r.reference),
        })
        .collect();
    let mut paid: Vec<Paid> = statements::paid_between(db, first - window, last + window)
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|r| Paid {
            key: r.key,
            reference: normalize(&r.reference),
            amount: r.amount_satang,
            paid_on: r.paid_on,
            used: false,
        })
        .collect();
    let intents = intents_by_reference(db).await?;
    let mut by_reference: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, p) in paid.iter().enumerate() {
        by_reference.entry(p.reference.clone()).or_default().push(i);
    }
    let window = Window { days: window_days, span: window };
    for line in &lines {
        match_line(line, &mut paid, &by_reference, &intents, window, &mut report);
    }
    for p in paid.iter().filter(|p| !p.used && p.paid_on >= first && p.paid_on <= last) {
        report.exceptions.push(Exception {
            kind: "payment_without_statement_line",
            subject: format!("payment:{}", p.key),
            detail: format!(
                "{} satang paid {} with reference {}: on no statement",
                p.amount, p.paid_on, p.reference
            ),
        });
    }
    Ok(report)
}

/// How far apart a statement's booking date and a payment's date may be.
#[derive(Clone, Copy, Debug)]
struct Window {
    days: i64,
    span: Duration,
}

/// Pairs one statement line with an unused payment of its reference (same amount within
/// the window first, then same amount outside it, then the nearest in time), or names why
/// it cannot be paired.
fn match_line(
    line: &Line,
    paid: &mut [Paid],
    by_reference: &HashMap<String, Vec<usize>>,
    intents: &HashMap<String, String>,
    window: Window,
    report: &mut MatchReport,
) {
    if line.amount <= 0 {
        report.debits_skipped += 1;
        return;
    }
    let subject = format!("statement:{}/{}", line.statement, line.entry);
    if line.currency != "THB" {
        report.exceptions.push(Exception {
            kind: "currency_not_thb",
            subject,
            detail: format!("{} {}", line.amount, line.currency),
        });
        return;
    }
    let candidates = by_reference.get(&line.reference).cloned().unwrap_or_default();
    let open: Vec<usize> = candidates.into_iter().filter(|i| !paid[*i].used).collect();
    let booked_on = line.booked_on;
    let distance = |p: &Paid| (p.paid_on - booked_on).abs();
    let exact = open
        .iter()
        .filter(|i| paid[**i].amount == line.amount && distance(&paid[**i]) <= window.span)
        .min_by_key(|i| distance(&paid[**i]));
    if let Some(&i) = exact {
        paid[i].used = true;
        report.matched.push((line.id, paid[i].key.clone()));
        return;
    }
    if let Some(&i) = open.iter().find(|i| paid[**i].amount == line.amount) {
        paid[i].used = true;
        report.exceptions.push(Exception {
            kind: "date_outside_window",
            subject,
            detail: format!(
                "booked {} but payment {} was made {} ({} days apart, window {})",
                line.booked_on,
                paid[i].key,
                paid[i].paid_on,
                distance(&paid[i]).whole_days(),
                window.days
            ),
        });
        return;
    }
    if let Some(&i) = open.iter().min_by_key(|i| distance(&paid[**i])) {
        paid[i].used = true;
        report.exceptions.push(Exception {
            kind: "amount_mismatch",
            subject,
            detail: format!(
                "reference {}: statement {} satang, payment {} {} satang (difference {})",
                line.reference,
                line.amount,
                paid[i].key,
                paid[i].amount,
                line.amount - paid[i].amount
            ),
        });
        return;
    }
    let hint = match intents.get(&line.reference) {
        Some(payment) => format!(
            "; the reference belongs to payment {payment}, whose notification never arrived"
        ),
        None => String::new(),
    };
    report.exceptions.push(Exception {
        kind: "statement_line_without_payment",
        subject,
        detail: format!(
            "{} satang on {} with reference {:?}: no payment notification{hint}",
            line.amount, line.booked_on, line.reference
        ),
    });
}

async fn intents_by_reference(db: &Client) -> Result<HashMap<String, String>, String> {
    let rows = statements::intent_references(db).await.map_err(|e| e.to_string())?;
    Ok(rows.into_iter().map(|(reference, payment)| (normalize(&reference), payment)).collect())
}
