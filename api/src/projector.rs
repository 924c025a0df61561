//! Copies reservation events from TigerBeetle into Postgres, off the hot path.
//!
//! For each offering it pages through the ledger's hold events in timestamp order
//! (`Ledger::hold_events`), from a checkpoint kept in Postgres in the same transaction as
//! the rows it writes. A crash at any point therefore loses nothing and duplicates nothing:
//! the next run starts after the last committed page, and every write is idempotent. The
//! same transaction enqueues each new hold's notices to its holder (`notify::holds`) and
//! issues the named tickets of each confirmed concert reservation (`tickets`).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use allot_ledger::{ids, HoldEvent, Ledger, PlacedHold, PAGE_EVENTS_MAX};
use allot_store::projection::{self, NewHolds};
use allot_store::status::ReservationStatus;
use allot_store::Pool;

use crate::catalog::{Catalog, Offering, OfferingKind};
use crate::leader::Leader;
use crate::notify::holds::{hold_events, HoldNotice};
use crate::notify::outbox;
use crate::reservations::{format_id, EXPIRY_GRACE};

/// Runs forever while this instance leads (one projector at a time; see `leader`):
/// projects every offering, marks lapsed holds expired, sleeps, repeats.
pub async fn run(
    ledger: Arc<Ledger>,
    db: Pool,
    catalog: Arc<Catalog>,
    interval: Duration,
    leader: Leader,
) {
    loop {
        if !leader.is_leading() {
            tokio::time::sleep(interval).await;
            continue;
        }
        let mut behind = Duration::ZERO;
        for offering in catalog.all() {
            match project_offering(&ledger, &db, &offering).await {
                Ok(lag) => behind = behind.max(lag),
                Err(e) => {
                    tracing::warn!(offering = %offering.id(), error = %e, "projector pass failed")
                }
            }
        }
        if let Err(e) = mark_expired(&db).await {
            tracing::warn!(error = %e, "expiry sweep failed");
        }
        metrics::gauge!("allot_projector_lag_seconds").set(behind.as_secs_f64());
        tokio::time::sleep(interval).await;
    }
}

/// Projects one offering until caught up. Returns how far behind the last page was.
pub async fn project_offering(
    ledger: &Ledger,
    db: &Pool,
    offering: &Offering,
) -> Result<Duration, String> {
    let ledger_number = ids::ledger_inventory(offering.spec.number) as i64;
    let mut checkpoint = load_checkpoint(db, ledger_number).await?;
    loop {
        let after = UNIX_EPOCH + Duration::from_nanos(checkpoint as u64);
        let page =
            ledger.hold_events(offering.spec.number, after).await.map_err(|e| e.to_string())?;
        let Some(last) = page.last() else { return Ok(Duration::ZERO) };
        let last_timestamp = nanos(last.timestamp());
        write_page(db, offering, &page, ledger_number, last_timestamp).await?;
        metrics::histogram!("allot_projector_page_events").record(page.len() as f64);
        checkpoint = last_timestamp;
        if page.len() < PAGE_EVENTS_MAX as usize {
            return Ok(SystemTime::now().duration_since(last.timestamp()).unwrap_or_default());
        }
    }
}

async fn load_checkpoint(db: &Pool, ledger: i64) -> Result<i64, String> {
    let client = db.get().await.map_err(|e| e.to_string())?;
    projection::checkpoint(&client, ledger).await.map_err(|e| e.to_string())
}

fn nanos(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).expect("after 1970").as_nanos() as i64
}

/// One page in one transaction: new holds, then posts and voids, then the checkpoint.
async fn write_page(
    db: &Pool,
    offering: &Offering,
    page: &[HoldEvent],
    ledger: i64,
    last_timestamp: i64,
) -> Result<(), String> {
    let mut held = NewHolds::default();
    let (mut confirmed, mut cancelled) = (Vec::new(), Vec::new());
    let mut notices = Vec::new();
    let now = SystemTime::now();
    for event in page {
        match event {
            HoldEvent::Placed(hold) => {
                push_held(&mut held, hold);
                notices.extend(announce(offering, hold, now));
            }
            HoldEvent::Confirmed { id, .. } => confirmed.push(format_id(*id)),
            HoldEvent::Cancelled { id, .. } => cancelled.push(format_id(*id)),
        }
    }
    let mut client = db.get().await.map_err(|e| e.to_string())?;
    let tx = client.transaction().await.map_err(|e| e.to_string())?;
    projection::insert_held(&tx, offering.id(), &held).await.map_err(|e| e.to_string())?;
    // Partners hear of their holds' every change, in the same transaction.
    let partner_held: Vec<String> = page
        .iter()
        .filter_map(|e| match e {
            HoldEvent::Placed(hold) if hold.partner.is_some() => Some(format_id(hold.id)),
            _ => None,
        })
        .collect();
    if !partner_held.is_empty() {
        let held = ReservationStatus::Held;
        allot_store::outbox::enqueue_partner_status(&tx, &partner_held, held)
            .await
            .map_err(|e| e.to_string())?;
    }
    // Every hold is told, in the transaction that projects it: once, whoever placed it.
    outbox::enqueue_many(&tx, &notices).await.map_err(|e| e.to_string())?;
    let resolved =
        [(ReservationStatus::Confirmed, &confirmed), (ReservationStatus::Cancelled, &cancelled)];
    for (status, ids) in resolved {
        if !ids.is_empty() {
            projection::set_status(&tx, ids, status).await.map_err(|e| e.to_string())?;
            allot_store::outbox::enqueue_partner_status(&tx, ids, status)
                .await
                .map_err(|e| e.to_string())?;
        }
    }
    // A confirmed concert seat becomes a named ticket with its confirmation's projection:
    // once per seat however often the page or the payment is replayed.
    if offering.config.kind == OfferingKind::Tickets && !confirmed.is_empty() {
        let issued = allot_store::tickets::issue_for_confirmed(&tx, &confirmed)
            .await
            .map_err(|e| e.to_string())?;
        metrics::counter!("allot_tickets_issued_total").increment(issued);
    }
    projection::save_checkpoint(&tx, ledger, last_timestamp).await.map_err(|e| e.to_string())?;
    tx.commit().await.map_err(|e| e.to_string())?;
    metrics::counter!("allot_projected_events_total").increment(page.len() as u64);
    Ok(())
}

/// A hold's notices to its holder: made, reminders, expiry (see `notify::holds`).
fn announce(offering: &Offering, hold: &PlacedHold, now: SystemTime) -> Vec<outbox::Event> {
    let quantity = u64::try_from(hold.quantity).expect("bounded by supply");
    let (_, deposit_satang) = offering.amounts_satang(hold.zone, quantity);
    let reservation_id = format_id(hold.id);
    let notice = HoldNotice {
        reservation_id: &reservation_id,
        user_id: hold.person as i64,
        offering_id: offering.id(),
        deposit_satang,
        deadline: hold.expires_at,
        lapses_at: hold.lapses_at,
        extra: None,
    };
    hold_events(&notice, now, EXPIRY_GRACE)
}

fn push_held(held: &mut NewHolds, hold: &PlacedHold) {
    held.ids.push(format_id(hold.id));
    held.zones.push(hold.zone.into());
    held.users.push(hold.person as i64);
    held.quantities.push(i64::try_from(hold.quantity).expect("bounded by supply"));
    held.created.push(hold.created_at);
    held.expires.push(hold.expires_at);
    held.timestamps.push(nanos(hold.created_at));
    held.partners.push(hold.partner.map(i32::from));
}

/// TigerBeetle writes no event when a hold lapses; the deadline is the event. Holds past
/// it (plus a grace for a last-second confirmation still being projected) become expired.
pub async fn mark_expired(db: &Pool) -> Result<u64, String> {
    let client = db.get().await.map_err(|e| e.to_string())?;
    let cutoff = SystemTime::now() - EXPIRY_GRACE;
    let n = projection::mark_expired(&client, cutoff).await.map_err(|e| e.to_string())?;
    if n > 0 {
        metrics::counter!("allot_expiries_total").increment(n);
    }
    Ok(n)
}
