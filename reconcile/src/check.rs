//! `reconcile check`: TigerBeetle (the system of record) against Postgres (projections and
//! payment records). Every disagreement is a named [`Discrepancy`].
//!
//! Postgres is written after the ledger, by the projector, so it may lag. The check reads
//! the projector's checkpoint for each ledger and compares only ledger events at or before
//! it; later events are counted as "not yet projected", never as discrepancies. Lapsed
//! holds become `expired` in Postgres a little after their deadline, which the check
//! tolerates for [`STATUS_GRACE`].

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use allot_ledger::{
    ids, HoldEvent, Ledger, LedgerError, MoneyEvent, MoneyKind, PlacedHold, PAGE_EVENTS_MAX,
};
use allot_store::projection::{self, ProjectedRow};
use allot_store::statements;
use allot_store::status::{NotificationOutcome, ReservationStatus};
use futures::TryStreamExt;
use indicatif::ProgressBar;

use crate::store::{self, Client, OfferingRow};

/// How long after a hold's deadline Postgres may still call it `held`: the projector's
/// expiry sweep runs every pass with its own grace of a couple of seconds.
pub const STATUS_GRACE: Duration = Duration::from_secs(15);
/// A payment notification recorded but not applied for longer than this is a discrepancy:
/// the payments worker re-applies within seconds.
pub const UNAPPLIED_GRACE: Duration = Duration::from_secs(60);

/// One disagreement between the stores.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Discrepancy {
    /// Stable name: `reservation_missing_in_postgres`, `reservation_not_in_ledger`,
    /// `reservation_quantity_mismatch`, `reservation_person_mismatch`,
    /// `reservation_zone_mismatch`, `reservation_status_mismatch`, `supply_mismatch`,
    /// `oversold`, `confirmed_total_mismatch`, `payment_without_ledger_movement`,
    /// `payment_amount_mismatch`, `payment_not_applied`, `ledger_money_without_payment`,
    /// `deposit_total_mismatch`, `payout_without_ledger_movement`,
    /// `ledger_payout_without_record`, `refund_overpaid`.
    pub kind: &'static str,
    /// What it is about: `offering:<id>`, `reservation:<id>`, `payment:<gateway>/<txn>`.
    pub subject: String,
    pub detail: String,
}

/// One line of the summary table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SummaryRow {
    pub offering: String,
    pub figure: &'static str,
    pub ledger: String,
    pub postgres: String,
}

#[derive(Debug, Default)]
pub struct CheckReport {
    pub summary: Vec<SummaryRow>,
    pub discrepancies: Vec<Discrepancy>,
    /// Things worth knowing that are not disagreements (projection lag, money that names
    /// no payment).
    pub notes: Vec<String>,
}

impl CheckReport {
    pub(crate) fn flag(
        &mut self,
        kind: &'static str,
        subject: impl Into<String>,
        detail: impl Into<String>,
    ) {
        self.discrepancies.push(Discrepancy {
            kind,
            subject: subject.into(),
            detail: detail.into(),
        });
    }

    pub(crate) fn row(
        &mut self,
        offering: &str,
        figure: &'static str,
        ledger: impl ToString,
        pg: impl ToString,
    ) {
        self.summary.push(SummaryRow {
            offering: offering.to_owned(),
            figure,
            ledger: ledger.to_string(),
            postgres: pg.to_string(),
        });
    }
}

/// A hold as the ledger's events describe it.
#[derive(Clone, Copy, Debug)]
struct LedgerHold {
    placed: PlacedHold,
    /// (timestamp, state) of the post or void, if any.
    resolved: Option<(SystemTime, ReservationStatus)>,
}

impl LedgerHold {
    /// The status Postgres should show, if it can be expected yet; `None` while the
    /// projector has not reached the event that decides it.
    fn expected_status(
        &self,
        checkpoint: SystemTime,
        now: SystemTime,
    ) -> Option<ReservationStatus> {
        match self.resolved {
            Some((at, state)) if at <= checkpoint => Some(state),
            Some(_) => None,
            None if now >= self.placed.expires_at + STATUS_GRACE => {
                Some(ReservationStatus::Expired)
            }
            None if now >= self.placed.expires_at => None,
            None => Some(ReservationStatus::Held),
        }
    }
}

/// Runs every check and returns the report. Reads only.
pub async fn run(
    ledger: &Ledger,
    db: &Client,
    progress: &ProgressBar,
) -> Result<CheckReport, String> {
    let mut report = CheckReport::default();
    let offerings = store::offerings(db).await?;
    for offering in &offerings {
        check_offering(ledger, db, offering, &mut report, progress).await?;
    }
    check_money(ledger, db, &offerings, &mut report).await?;
    crate::refunds::check(ledger, db, &offerings, &mut report).await?;
    progress.finish_and_clear();
    Ok(report)
}

/// Pages through events from the beginning, in timestamp order, into `each`; `read` reads
/// the page after a timestamp.
pub(crate) async fn page_events<T, F, Fut>(
    mut read: F,
    timestamp: impl Fn(&T) -> SystemTime,
    progress: &ProgressBar,
    mut each: impl FnMut(&T),
) -> Result<(), String>
where
    F: FnMut(SystemTime) -> Fut,
    Fut: Future<Output = Result<Vec<T>, LedgerError>>,
{
    let mut after = UNIX_EPOCH;
    loop {
        let page = read(after).await.map_err(|e| e.to_string())?;
        page.iter().for_each(&mut each);
        progress.inc(page.len() as u64);
        match page.last() {
            Some(last) if page.len() == PAGE_EVENTS_MAX as usize => after = timestamp(last),
            _ => return Ok(()),
        }
    }
}

async fn ledger_holds(
    ledger: &Ledger,
    offering: &OfferingRow,
    progress: &ProgressBar,
) -> Result<HashMap<u128, LedgerHold>, String> {
    let mut holds: HashMap<u128, LedgerHold> = HashMap::new();
    let mut resolutions = Vec::new();
    let number = offering.number;
    let read = move |after| ledger.hold_events(number, after);
    page_events(read, HoldEvent::timestamp, progress, |event| match *event {
        HoldEvent::Placed(placed) => {
            holds.insert(placed.id.get(), LedgerHold { placed, resolved: None });
        }
        HoldEvent::Confirmed { id, at } => {
            resolutions.push((id.get(), at, ReservationStatus::Confirmed))
        }
        HoldEvent::Cancelled { id, at } => {
            resolutions.push((id.get(), at, ReservationStatus::Cancelled))
        }
    })
    .await?;
    for (base, at, state) in resolutions {
        if let Some(hold) = holds.get_mut(&base) {
            hold.resolved = Some((at, state));
        }
    }
    Ok(holds)
}

async fn checkpoint(db: &Client, ledger: u32) -> Result<SystemTime, String> {
    let ns = projection::checkpoint(db, ledger as i64).await.map_err(|e| e.to_string())?;
    Ok(UNIX_EPOCH + Duration::from_nanos(ns as u64))
}

async fn check_offering(
    ledger: &Ledger,
    db: &Client,
    offering: &OfferingRow,
    report: &mut CheckReport,
    progress: &ProgressBar,
) -> Result<(), String> {
    let totals = check_zones(ledger, offering, report).await?;
    let holds = ledger_holds(ledger, offering, progress).await?;
    let checkpoint = checkpoint(db, ids::ledger_inventory(offering.number)).await?;
    let now = SystemTime::now();
    let rows = projection::rows_of_offering(db, &offering.id).await.map_err(|e| e.to_string())?;
    futures::pin_mut!(rows);
    let mut seen = HashSet::with_capacity(holds.len());
    let (mut pg_rows, mut pg_confirmed) = (0u64, 0u128);
    while let Some(row) = rows.try_next().await.map_err(|e| e.to_string())? {
        pg_rows += 1;
        if row.status == ReservationStatus::Confirmed {
            pg_confirmed += row.quantity as u128;
        }
        let hold = u128::from_str_radix(&row.reservation_id, 16).ok().and_then(|base| {
            seen.insert(base);
            holds.get(&base)
        });
        compare_row(&row, hold, (checkpoint, now), report);
    }
    let unprojected = flag_missing_rows(&holds, &seen, checkpoint, report);
    if unprojected > 0 {
        report.notes.push(format!("{}: {unprojected} holds not yet projected", offering.id));
    }
    report.row(&offering.id, "reservations", holds.len(), pg_rows);
    report.row(&offering.id, "held", totals.held, "-");
    report.row(&offering.id, "confirmed", totals.confirmed, pg_confirmed);
    let late_confirms = holds
        .values()
        .any(|h| matches!(h.resolved, Some((at, ReservationStatus::Confirmed)) if at > checkpoint));
    if totals.confirmed != pg_confirmed && !late_confirms {
        report.flag(
            "confirmed_total_mismatch",
            format!("offering:{}", offering.id),
            format!(
                "ledger confirmed {}, Postgres confirmed reservations {pg_confirmed}",
                totals.confirmed
            ),
        );
    }
    Ok(())
}

/// An offering's units as the ledger counts them, summed over its zones.
#[derive(Debug, Default)]
struct UnitTotals {
    held: u128,
    confirmed: u128,
}

/// Each zone's supply against the configuration, and no zone oversold; the supply rows.
async fn check_zones(
    ledger: &Ledger,
    offering: &OfferingRow,
    report: &mut CheckReport,
) -> Result<UnitTotals, String> {
    let subject = format!("offering:{}", offering.id);
    let balances = ledger.zone_balances(&offering.spec()).await.map_err(|e| e.to_string())?;
    let (mut supply, mut remaining, mut totals) = (0u128, 0u128, UnitTotals::default());
    for (zone, (configured, _)) in balances.iter().zip(offering.zones()) {
        if zone.supply != configured {
            report.flag(
                "supply_mismatch",
                &subject,
                format!(
                    "zone {}: ledger supply {}, configured {configured}",
                    zone.zone, zone.supply
                ),
            );
        }
        if zone.held + zone.confirmed > zone.supply {
            report.flag(
                "oversold",
                &subject,
                format!(
                    "zone {}: held {} + confirmed {} > supply {}",
                    zone.zone, zone.held, zone.confirmed, zone.supply
                ),
            );
        }
        supply += zone.supply;
        totals.held += zone.held;
        totals.confirmed += zone.confirmed;
        remaining += zone.remaining;
    }
    let configured: u128 = offering.zones().iter().map(|z| z.0).sum();
    report.row(&offering.id, "supply", supply, configured);
    let accounted = remaining + totals.held + totals.confirmed;
    report.row(&offering.id, "remaining + held + confirmed", accounted, supply);
    Ok(totals)
}

/// One projected reservation against the hold the ledger has under its id, if any.
/// `at` is the projector's checkpoint and the time of the check.
fn compare_row(
    row: &ProjectedRow,
    hold: Option<&LedgerHold>,
    at: (SystemTime, SystemTime),
    report: &mut CheckReport,
) {
    let ProjectedRow { reservation_id: id, zone, user_id: user, quantity, status } = row;
    let subject = format!("reservation:{id}");
    let Some(hold) = hold else {
        report.flag(
            "reservation_not_in_ledger",
            subject,
            "Postgres has a reservation the ledger never held",
        );
        return;
    };
    if hold.placed.quantity != *quantity as u128 {
        report.flag(
            "reservation_quantity_mismatch",
            &subject,
            format!("ledger {}, Postgres {quantity}", hold.placed.quantity),
        );
    }
    if hold.placed.person != *user as u64 {
        report.flag(
            "reservation_person_mismatch",
            &subject,
            format!("ledger person {}, Postgres user {user}", hold.placed.person),
        );
    }
    if hold.placed.zone as i32 != *zone {
        report.flag(
            "reservation_zone_mismatch",
            &subject,
            format!("ledger zone {}, Postgres {zone}", hold.placed.zone),
        );
    }
    if let Some(expected) = hold.expected_status(at.0, at.1) {
        if expected != *status {
            report.flag(
                "reservation_status_mismatch",
                &subject,
                format!("ledger {expected}, Postgres {status}"),
            );
        }
    }
}

/// Holds the projector should have written by its checkpoint but Postgres lacks; returns
/// how many later holds are simply not projected yet.
fn flag_missing_rows(
    holds: &HashMap<u128, LedgerHold>,
    seen: &HashSet<u128>,
    checkpoint: SystemTime,
    report: &mut CheckReport,
) -> u64 {
    let mut unprojected = 0u64;
    for (base, hold) in holds.iter().filter(|(base, _)| !seen.contains(*base)) {
        if hold.placed.created_at <= checkpoint {
            report.flag(
                "reservation_missing_in_postgres",
                format!("reservation:{base:030x}"),
                format!(
                    "the ledger holds {} for person {}; Postgres has no row",
                    hold.placed.quantity, hold.placed.person
                ),
            );
        } else {
            unprojected += 1;
        }
    }
    unprojected
}

/// Money in the ledger (deposits and refunds on the THB ledger) against the payment
/// notifications Postgres recorded.
async fn check_money(
    ledger: &Ledger,
    db: &Client,
    offerings: &[OfferingRow],
    report: &mut CheckReport,
) -> Result<(), String> {
    let numbers: HashMap<u32, &OfferingRow> = offerings.iter().map(|o| (o.number, o)).collect();
    // Ledger money by payment id (the notification's `ledger_id`): kind, amount, offering.
    let mut moved: HashMap<u128, (&'static str, u128, u32)> = HashMap::new();
    let hidden = ProgressBar::hidden();
    for kind in [MoneyKind::Deposit, MoneyKind::Refund] {
        let read = move |after| ledger.money_events(kind, after);
        let keep = |e: &MoneyEvent| {
            // The THB ledger is shared by every deployment on the cluster: keep ours.
            if numbers.contains_key(&e.offering) {
                moved.insert(e.payment, (kind.as_str(), e.amount_satang, e.offering));
            }
        };
        page_events(read, |e: &MoneyEvent| e.timestamp, &hidden, keep).await?;
    }
    let rows = statements::notifications(db).await.map_err(|e| e.to_string())?;
    let now = SystemTime::now();
    let mut accounted = HashSet::new();
    let mut unmatched = (0u64, 0u128);
    let mut succeeded_by_offering: HashMap<String, u128> = HashMap::new();
    for row in rows {
        let amount = row.amount_satang as u128;
        let ledger_id = u128::from_str_radix(&row.ledger_id, 16).unwrap_or(0);
        let outcome = row.outcome;
        let subject = format!("payment:{}/{}", row.gateway, row.transaction_id);
        accounted.insert(ledger_id);
        if outcome == NotificationOutcome::Unmatched {
            unmatched = (unmatched.0 + 1, unmatched.1 + amount);
        }
        let expected = match outcome {
            NotificationOutcome::Succeeded => Some("deposit"),
            NotificationOutcome::RefundDue => Some("refund"),
            NotificationOutcome::Received
                if !row.applied && now >= row.received_at + UNAPPLIED_GRACE =>
            {
                report.flag(
                    "payment_not_applied",
                    &subject,
                    "recorded but never applied to the ledger",
                );
                None
            }
            _ => None,
        };
        let Some(expected) = expected else { continue };
        match moved.get(&ledger_id) {
            None => report.flag(
                "payment_without_ledger_movement",
                &subject,
                format!(
                    "Postgres says {outcome} for {amount} satang; the ledger has no {expected}"
                ),
            ),
            Some((kind, moved_amount, _)) if *kind != expected || *moved_amount != amount => report
                .flag(
                    "payment_amount_mismatch",
                    &subject,
                    format!(
                        "Postgres {outcome} {amount} satang; ledger {kind} {moved_amount} satang"
                    ),
                ),
            Some(_) => {}
        }
        if outcome == NotificationOutcome::Succeeded {
            if let Some(offering) = row.offering_id {
                *succeeded_by_offering.entry(offering).or_default() += amount;
            }
        }
    }
    if unmatched.0 > 0 {
        // Money that names no payment is not booked in the ledger (there is no offering to
        // book it to): finance traces it from `reconcile match` and the unmatched list.
        report.notes.push(format!(
            "{} payment notifications ({} satang) name no payment and are not in the ledger",
            unmatched.0, unmatched.1
        ));
    }
    for (payment, (kind, amount, number)) in &moved {
        if !accounted.contains(payment) {
            report.flag(
                "ledger_money_without_payment",
                format!("ledger-payment:{payment:030x}"),
                format!("a {kind} of {amount} satang for offering #{number} that no payment record explains"),
            );
        }
    }
    for offering in offerings {
        let money = ledger.money_balance(&offering.spec()).await.map_err(|e| e.to_string())?;
        let recorded = succeeded_by_offering.get(&offering.id).copied().unwrap_or(0);
        report.row(&offering.id, "deposits (satang)", money.deposits_satang, recorded);
        report.row(&offering.id, "refunds payable (satang)", money.refunds_payable_satang, "-");
        if money.deposits_satang != recorded {
            report.flag(
                "deposit_total_mismatch",
                format!("offering:{}", offering.id),
                format!(
                    "ledger deposits {} satang, succeeded payments {recorded} satang",
                    money.deposits_satang
                ),
            );
        }
    }
    Ok(())
}
