//! Copies reservation events from TigerBeetle into Postgres, off the hot path.
//!
//! For each offering it pages through the ledger's hold events in timestamp order
//! (`Ledger::hold_events`), from a checkpoint kept in Postgres in the same transaction as
//! the rows it writes. A crash at any point therefore loses nothing and duplicates nothing:
//! the next run starts after the last committed page, and every write is idempotent.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use allot_ledger::{ids, HoldEvent, Ledger, PlacedHold, PAGE_EVENTS_MAX};
use deadpool_postgres::Pool;

use crate::catalog::{Catalog, Offering};
use crate::reservations::{format_id, EXPIRY_GRACE};

/// Runs forever: projects every offering, marks lapsed holds expired, sleeps, repeats.
pub async fn run(ledger: Arc<Ledger>, db: Pool, catalog: Arc<Catalog>, interval: Duration) {
    loop {
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
    let row = client
        .query_opt("SELECT last_timestamp FROM projector_checkpoints WHERE ledger = $1", &[&ledger])
        .await
        .map_err(|e| e.to_string())?;
    Ok(row.map_or(0, |r| r.get(0)))
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
    let mut held = HeldColumns::default();
    let (mut confirmed, mut cancelled) = (Vec::new(), Vec::new());
    for event in page {
        match event {
            HoldEvent::Placed(hold) => held.push(hold),
            HoldEvent::Confirmed { id, .. } => confirmed.push(format_id(*id)),
            HoldEvent::Cancelled { id, .. } => cancelled.push(format_id(*id)),
        }
    }
    let mut client = db.get().await.map_err(|e| e.to_string())?;
    let tx = client.transaction().await.map_err(|e| e.to_string())?;
    tx.execute(
        "INSERT INTO reservations
            (reservation_id, offering_id, zone, user_id, quantity, status, created_at, expires_at, ledger_timestamp)
         SELECT id, $2, zone, user_id, quantity, 'held', created_at, expires_at, ts
         FROM UNNEST($1::text[], $3::int[], $4::bigint[], $5::bigint[], $6::timestamptz[], $7::timestamptz[], $8::bigint[])
              AS t(id, zone, user_id, quantity, created_at, expires_at, ts)
         ON CONFLICT (reservation_id) DO NOTHING",
        &[
            &held.ids,
            &offering.id(),
            &held.zones,
            &held.users,
            &held.quantities,
            &held.created,
            &held.expires,
            &held.timestamps,
        ],
    )
    .await
    .map_err(|e| e.to_string())?;
    for (status, ids) in [("confirmed", &confirmed), ("cancelled", &cancelled)] {
        if !ids.is_empty() {
            tx.execute(
                "UPDATE reservations SET status = $2, updated_at = now() WHERE reservation_id = ANY($1)",
                &[ids, &status],
            )
            .await
            .map_err(|e| e.to_string())?;
        }
    }
    tx.execute(
        "INSERT INTO projector_checkpoints (ledger, last_timestamp) VALUES ($1, $2)
         ON CONFLICT (ledger) DO UPDATE SET last_timestamp = EXCLUDED.last_timestamp",
        &[&ledger, &last_timestamp],
    )
    .await
    .map_err(|e| e.to_string())?;
    tx.commit().await.map_err(|e| e.to_string())?;
    metrics::counter!("allot_projected_events_total").increment(page.len() as u64);
    Ok(())
}

#[derive(Default)]
struct HeldColumns {
    ids: Vec<String>,
    zones: Vec<i32>,
    users: Vec<i64>,
    quantities: Vec<i64>,
    created: Vec<SystemTime>,
    expires: Vec<SystemTime>,
    timestamps: Vec<i64>,
}

impl HeldColumns {
    fn push(&mut self, hold: &PlacedHold) {
        self.ids.push(format_id(hold.id));
        self.zones.push(hold.zone.into());
        self.users.push(hold.person as i64);
        self.quantities.push(i64::try_from(hold.quantity).expect("bounded by supply"));
        self.created.push(hold.created_at);
        self.expires.push(hold.expires_at);
        self.timestamps.push(nanos(hold.created_at));
    }
}

/// TigerBeetle writes no event when a hold lapses; the deadline is the event. Holds past
/// it (plus a grace for a last-second confirmation still being projected) become expired.
pub async fn mark_expired(db: &Pool) -> Result<u64, String> {
    let client = db.get().await.map_err(|e| e.to_string())?;
    let cutoff = SystemTime::now() - EXPIRY_GRACE;
    let n = client
        .execute(
            "UPDATE reservations SET status = 'expired', updated_at = now()
             WHERE status = 'held' AND expires_at < $1",
            &[&cutoff],
        )
        .await
        .map_err(|e| e.to_string())?;
    if n > 0 {
        metrics::counter!("allot_expiries_total").increment(n);
    }
    Ok(n)
}
