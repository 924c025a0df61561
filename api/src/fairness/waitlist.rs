//! Waitlist: when a zone has too little left, a person may join its waitlist (one entry
//! per person and offering). Units freed by expiry or cancellation are offered in joining
//! order, each offer a hold of its own with the offering's deadline, paid like any
//! reservation. Strict order: the head of the line waits for enough units for its whole
//! request, and nobody behind it is served first.
//!
//! A freed unit is offered within a second or so of TigerBeetle voiding the hold; until then
//! a direct reservation may take it first. The waitlist is an order among those who asked,
//! not a claim on stock.

use std::time::Duration;

use actix_web::web;
use allot_ledger::{HoldOutcome, HoldRequest};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::auth::Principal;
use crate::catalog::config::Allocation;
use crate::catalog::Offering;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::payments::outbox::{self, Kind};
use crate::reservations;
use crate::state::AppState;

/// How often freed units are looked for.
pub const OFFER_INTERVAL: Duration = Duration::from_secs(1);
/// Entries looked at per zone and round: a bound on one round's work.
const ENTRIES_PER_ROUND_MAX: i64 = 1_000;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinWaitlist {
    pub quantity: u64,
    /// Zone id; may be left out for a one-zone offering.
    pub zone: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WaitlistEntry {
    pub offering_id: String,
    pub zone: String,
    pub quantity: u64,
    /// `waiting`, `offered` (a hold is yours: pay it), `left` or `ineligible` (over your
    /// per-person limit when your turn came).
    pub status: String,
    /// Entries of the same zone ahead of you, while waiting.
    pub ahead: Option<u64>,
    /// The offered hold, to pay like any reservation.
    pub reservation_id: Option<String>,
}

fn eligible(offering: &Offering) -> ApiResult<()> {
    if offering.config.allocation == Allocation::BookBuilding {
        return Err(ApiError::new(ErrorCode::OfferingNotOpen));
    }
    Ok(())
}

/// Joins the waitlist of a zone that cannot serve `quantity` now; `true` when new.
pub async fn join(
    state: &AppState,
    offering: &Offering,
    who: &Principal,
    body: &JoinWaitlist,
) -> ApiResult<(WaitlistEntry, bool)> {
    eligible(offering)?;
    if let Some(entry) = mine(state, offering, who).await? {
        return Ok((entry, false));
    }
    let zone = offering.zone_number(body.zone.as_deref())?;
    super::book::check_quantity(offering, body.quantity)?;
    let balances =
        tokio::time::timeout(state.tb_timeout(), state.ledger.zone_balances(&offering.spec))
            .await
            .map_err(|_| reservations::ledger_timeout())??;
    let remaining = balances.iter().find(|b| b.zone == zone).map_or(0, |b| b.remaining);
    if remaining >= u128::from(body.quantity) {
        return Err(ApiError::new(ErrorCode::NotSoldOut));
    }
    let client = state.db.get().await?;
    client
        .execute(
            "INSERT INTO waitlist_entries (offering_id, user_id, zone, quantity) VALUES ($1, $2, $3, $4)
             ON CONFLICT (offering_id, user_id) DO NOTHING",
            &[&offering.id(), &who.user_id, &i32::from(zone), &(body.quantity as i64)],
        )
        .await?;
    let entry =
        mine(state, offering, who).await?.ok_or_else(|| ApiError::internal("entry vanished"))?;
    Ok((entry, true))
}

pub async fn mine(
    state: &AppState,
    offering: &Offering,
    who: &Principal,
) -> ApiResult<Option<WaitlistEntry>> {
    let client = state.db.get().await?;
    let row = client
        .query_opt(
            "SELECT zone, quantity, status, reservation_id,
                    (SELECT count(*) FROM waitlist_entries o WHERE o.offering_id = w.offering_id
                       AND o.zone = w.zone AND o.status = 'waiting' AND o.seq < w.seq)
             FROM waitlist_entries w WHERE offering_id = $1 AND user_id = $2",
            &[&offering.id(), &who.user_id],
        )
        .await?;
    Ok(row.map(|r| {
        let status: String = r.get(2);
        WaitlistEntry {
            offering_id: offering.id().to_owned(),
            zone: offering
                .zone(r.get::<_, i32>(0) as u16)
                .map_or_else(String::new, |z| z.id.clone()),
            quantity: r.get::<_, i64>(1) as u64,
            ahead: (status == "waiting").then(|| r.get::<_, i64>(4) as u64),
            status,
            reservation_id: r.get(3),
        }
    }))
}

/// Leaves the waitlist while still waiting.
pub async fn leave(state: &AppState, offering: &Offering, who: &Principal) -> ApiResult<()> {
    let client = state.db.get().await?;
    let n = client
        .execute(
            "UPDATE waitlist_entries SET status = 'left'
             WHERE offering_id = $1 AND user_id = $2 AND status = 'waiting'",
            &[&offering.id(), &who.user_id],
        )
        .await?;
    if n == 0 {
        return Err(ApiError::new(ErrorCode::NotFound));
    }
    Ok(())
}

/// Offers freed units, forever, every [`OFFER_INTERVAL`].
pub async fn offer_loop(state: web::Data<AppState>) {
    loop {
        tokio::time::sleep(OFFER_INTERVAL).await;
        if let Err(e) = offer_round(&state).await {
            tracing::warn!(error = %e, "waitlist round failed");
        }
    }
}

async fn offer_round(state: &AppState) -> ApiResult<()> {
    let client = state.db.get().await?;
    let lines = client
        .query(
            "SELECT DISTINCT offering_id, zone FROM waitlist_entries WHERE status = 'waiting'",
            &[],
        )
        .await?;
    drop(client);
    for line in lines {
        let Some(offering) = state.catalog.get(line.get::<_, &str>(0)) else {
            continue;
        };
        let zone = line.get::<_, i32>(1) as u16;
        if offering.accepts_reservations(time::OffsetDateTime::now_utc()) {
            offer_zone(state, &offering, zone).await?;
        }
    }
    Ok(())
}

/// Serves the zone's line from the head while what is left covers the head's request.
async fn offer_zone(state: &AppState, offering: &Offering, zone: u16) -> ApiResult<()> {
    let balances =
        tokio::time::timeout(state.tb_timeout(), state.ledger.zone_balances(&offering.spec))
            .await
            .map_err(|_| reservations::ledger_timeout())??;
    let mut remaining = balances.iter().find(|b| b.zone == zone).map_or(0, |b| b.remaining);
    let mut client = state.db.get().await?;
    let line = client
        .query(
            "SELECT user_id, quantity, seq FROM waitlist_entries
             WHERE offering_id = $1 AND zone = $2 AND status = 'waiting' ORDER BY seq LIMIT $3",
            &[&offering.id(), &i32::from(zone), &ENTRIES_PER_ROUND_MAX],
        )
        .await?;
    for entry in line {
        let (user_id, quantity, seq): (i64, i64, i64) = (entry.get(0), entry.get(1), entry.get(2));
        if remaining < quantity as u128 {
            return Ok(());
        }
        // One offer per entry, ever: the key names the entry, so a retry is the same hold.
        let id =
            reservations::hold_id(offering.spec.number, user_id as u64, &format!("waitlist:{seq}"));
        let request = HoldRequest {
            id,
            zone,
            person: user_id as u64,
            quantity: quantity as u128,
            timeout_seconds: offering.config.hold_seconds,
            allow_partial: false,
        };
        let outcome =
            tokio::time::timeout(state.tb_timeout(), state.ledger.hold(&offering.spec, &request))
                .await
                .map_err(|_| reservations::ledger_timeout())??;
        let status = match outcome {
            HoldOutcome::Held(_) => "offered",
            // Someone took the units first: the head waits for the next ones.
            HoldOutcome::SoldOut => return Ok(()),
            HoldOutcome::PersonLimitExceeded | HoldOutcome::Rejected(_) | HoldOutcome::IdReused => {
                "ineligible"
            }
        };
        let tx = client.transaction().await?;
        tx.execute(
            "UPDATE waitlist_entries SET status = $3, reservation_id = $4, offered_at = now()
             WHERE offering_id = $1 AND user_id = $2 AND status = 'waiting'",
            &[
                &offering.id(),
                &user_id,
                &status,
                &(status == "offered").then(|| reservations::format_id(id)),
            ],
        )
        .await?;
        if let (HoldOutcome::Held(held), true) = (&outcome, status == "offered") {
            // Told in the same transaction as the offer, so nobody is offered in silence.
            let (_, deposit) = offering.amounts_satang(zone, quantity as u64);
            let expires_at: OffsetDateTime = held.expires_at.into();
            let event = outbox::Event {
                send_key: format!(
                    "{}.{}",
                    Kind::WaitlistOffered.as_str(),
                    reservations::format_id(id)
                ),
                user_id,
                kind: Kind::WaitlistOffered,
                args: serde_json::json!({
                    "offering_id": offering.id(),
                    "reservation_id": reservations::format_id(id),
                    "amount_satang": deposit,
                    "expires_at": expires_at.unix_timestamp(),
                }),
                due_at: std::time::SystemTime::now(),
            };
            outbox::enqueue(&tx, &[event]).await?;
        }
        tx.commit().await?;
        if status == "offered" {
            remaining -= quantity as u128;
            metrics::counter!("allot_waitlist_offers_total", "offering" => offering.id().to_owned()).increment(1);
            tracing::info!(offering = %offering.id(), user_id, quantity, "waitlist offer held");
        }
    }
    Ok(())
}
