//! Waitlist: when a zone has too little left, a person may join its waitlist (one entry
//! per person and offering). Units freed by expiry or cancellation are offered in joining
//! order, each offer a hold of its own with the offering's deadline, paid like any
//! reservation. Strict order: the head of the line waits for enough units for its whole
//! request, and nobody behind it is served first.
//!
//! A freed unit is offered within a second or so of TigerBeetle voiding the hold; until then
//! a direct reservation may take it first. The waitlist is an order among those who asked,
//! not a claim on stock.

use std::sync::Arc;
use std::time::Duration;

use allot_ledger::{Deadline, Held, HoldId, HoldOutcome, HoldRequest, Ledger};
use allot_store::status::WaitlistStatus;
use allot_store::waitlist::WaitingRow;
use allot_store::Pool;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::Handles;
use crate::auth::Principal;
use crate::catalog::config::Allocation;
use crate::catalog::{Catalog, Offering};
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::holds;
use crate::notify::outbox::{self, Kind};

/// How often freed units are looked for.
pub const OFFER_INTERVAL: Duration = Duration::from_secs(1);
/// Entries looked at per zone and round: a bound on one round's work.
const ENTRIES_PER_ROUND_MAX: i64 = 1_000;

/// The waitlist's service: entries in Postgres, offers as ledger holds.
#[derive(Clone, Debug)]
pub struct Waitlist {
    db: Pool,
    ledger: Arc<Ledger>,
    /// Which offerings the waiting lines belong to.
    catalog: Arc<Catalog>,
    ledger_timeout: Duration,
    settlement_grace_seconds: u32,
}

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
    pub status: &'static str,
    /// Entries of the same zone ahead of you, while waiting.
    pub ahead: Option<u64>,
    /// The offered hold, to pay like any reservation.
    pub reservation_id: Option<String>,
}

/// The hold id of an entry's offer at its current attempt.
pub fn offer_hold_id(offering: u32, entry: &WaitingRow) -> HoldId {
    let key = format!("waitlist:{}:{}", entry.seq, entry.attempt);
    holds::internal_hold_id(offering, entry.user_id as u64, &key)
}

fn eligible(offering: &Offering) -> ApiResult<()> {
    if offering.config.allocation == Allocation::BookBuilding {
        return Err(ApiError::new(ErrorCode::OfferingNotOpen));
    }
    Ok(())
}

impl Waitlist {
    pub fn new(handles: Handles) -> Waitlist {
        Waitlist {
            db: handles.db,
            ledger: handles.ledger,
            catalog: handles.catalog,
            ledger_timeout: handles.ledger_timeout,
            settlement_grace_seconds: handles.settlement_grace_seconds,
        }
    }

    /// Joins the waitlist of a zone that cannot serve `quantity` now; `true` when new.
    pub async fn join(
        &self,
        offering: &Offering,
        who: &Principal,
        body: &JoinWaitlist,
    ) -> ApiResult<(WaitlistEntry, bool)> {
        eligible(offering)?;
        offering.config.eligibility.check(who.identity, who.verified)?;
        if let Some(entry) = self.mine(offering, who).await? {
            return Ok((entry, false));
        }
        let zone = offering.zone_number(body.zone.as_deref())?;
        super::book::check_quantity(offering, body.quantity)?;
        if self.remaining(offering, zone).await? >= u128::from(body.quantity) {
            return Err(ApiError::new(ErrorCode::NotSoldOut));
        }
        let client = self.db.get().await?;
        let (zone, quantity) = (i32::from(zone), body.quantity as i64);
        allot_store::waitlist::insert(&client, offering.id(), who.user_id, zone, quantity).await?;
        let entry =
            self.mine(offering, who).await?.ok_or_else(|| ApiError::internal("entry vanished"))?;
        Ok((entry, true))
    }

    pub async fn mine(
        &self,
        offering: &Offering,
        who: &Principal,
    ) -> ApiResult<Option<WaitlistEntry>> {
        let client = self.db.get().await?;
        let row = allot_store::waitlist::entry(&client, offering.id(), who.user_id).await?;
        Ok(row.map(|r| WaitlistEntry {
            offering_id: offering.id().to_owned(),
            zone: offering.zone(r.zone as u16).map_or_else(String::new, |z| z.id.clone()),
            quantity: r.quantity as u64,
            ahead: (r.status == WaitlistStatus::Waiting).then_some(r.ahead as u64),
            status: r.status.as_str(),
            reservation_id: r.reservation_id,
        }))
    }

    /// Leaves the waitlist while still waiting.
    pub async fn leave(&self, offering: &Offering, who: &Principal) -> ApiResult<()> {
        let client = self.db.get().await?;
        if !allot_store::waitlist::leave(&client, offering.id(), who.user_id).await? {
            return Err(ApiError::new(ErrorCode::NotFound));
        }
        Ok(())
    }

    /// What the ledger has left in `zone` now.
    async fn remaining(&self, offering: &Offering, zone: u16) -> ApiResult<u128> {
        let balances =
            tokio::time::timeout(self.ledger_timeout, self.ledger.zone_balances(&offering.spec))
                .await
                .map_err(|_| ApiError::ledger_timeout())??;
        Ok(balances.iter().find(|b| b.zone == zone).map_or(0, |b| b.remaining))
    }

    /// Offers freed units, forever, every [`OFFER_INTERVAL`], while this instance leads:
    /// two instances serving one line at once could offer its head twice over.
    pub async fn offer_loop(self, leader: crate::leader::Leader) {
        loop {
            tokio::time::sleep(OFFER_INTERVAL).await;
            if !leader.is_leading() {
                continue;
            }
            if let Err(e) = self.offer_round().await {
                tracing::warn!(error = %e, "waitlist round failed");
            }
        }
    }

    async fn offer_round(&self) -> ApiResult<()> {
        let lines = allot_store::waitlist::waiting_lines(&self.db.get().await?).await?;
        for (offering_id, zone) in lines {
            let Some(offering) = self.catalog.get(&offering_id) else {
                continue;
            };
            if offering.accepts_reservations(self.catalog.now()) {
                self.offer_zone(&offering, zone as u16).await?;
            }
        }
        Ok(())
    }

    /// Serves the zone's line from the head while what is left covers the head's request.
    async fn offer_zone(&self, offering: &Offering, zone: u16) -> ApiResult<()> {
        let mut remaining = self.remaining(offering, zone).await?;
        let mut client = self.db.get().await?;
        let line = allot_store::waitlist::line(
            &client,
            offering.id(),
            i32::from(zone),
            ENTRIES_PER_ROUND_MAX,
        )
        .await?;
        for entry in line {
            let quantity = entry.quantity as u128;
            if remaining < quantity {
                return Ok(());
            }
            let (id, outcome) = self.hold(offering, zone, &entry).await?;
            let status = match outcome {
                HoldOutcome::Held(held) => {
                    self.offered(&mut client, offering, zone, &entry, id, &held).await?;
                    remaining -= quantity;
                    continue;
                }
                // Someone took the units first, which burns this offer's hold id for good
                // (or burnt it in an earlier round): the head waits for the next units,
                // to be offered under the next attempt's id.
                HoldOutcome::SoldOut | HoldOutcome::IdFailed => {
                    let (id, user, attempt) = (offering.id(), entry.user_id, entry.attempt);
                    allot_store::waitlist::next_attempt(&client, id, user, attempt).await?;
                    return Ok(());
                }
                HoldOutcome::PersonLimitExceeded
                | HoldOutcome::PartnerAllocationExceeded
                | HoldOutcome::Rejected(_)
                | HoldOutcome::IdReused => WaitlistStatus::Ineligible,
            };
            allot_store::waitlist::settle(&client, offering.id(), entry.user_id, status, None)
                .await?;
        }
        Ok(())
    }

    /// The entry's offer as a hold: one per entry and attempt, since the key names both
    /// and a retry is the same hold.
    async fn hold(
        &self,
        offering: &Offering,
        zone: u16,
        entry: &WaitingRow,
    ) -> ApiResult<(HoldId, HoldOutcome)> {
        let id = offer_hold_id(offering.spec.number, entry);
        let request = HoldRequest {
            id,
            zone,
            person: entry.user_id as u64,
            quantity: entry.quantity as u128,
            deadline: Deadline::after(offering.config.hold_seconds, self.settlement_grace_seconds),
            allow_partial: false,
            partner: None,
        };
        let outcome =
            tokio::time::timeout(self.ledger_timeout, self.ledger.hold(&offering.spec, &request))
                .await
                .map_err(|_| ApiError::ledger_timeout())??;
        Ok((id, outcome))
    }

    /// Records the offer and tells its person, in one transaction, so nobody is offered in
    /// silence.
    async fn offered(
        &self,
        client: &mut allot_store::Connection,
        offering: &Offering,
        zone: u16,
        entry: &WaitingRow,
        id: HoldId,
        held: &Held,
    ) -> ApiResult<()> {
        let reservation_id = holds::format_id(id);
        let tx = client.transaction().await?;
        allot_store::waitlist::settle(
            &tx,
            offering.id(),
            entry.user_id,
            WaitlistStatus::Offered,
            Some(&reservation_id),
        )
        .await?;
        let (_, deposit) = offering.amounts_satang(zone, entry.quantity as u64);
        let expires_at: OffsetDateTime = held.expires_at.into();
        let event = outbox::Event {
            send_key: format!("{}.{}", Kind::WaitlistOffered.as_str(), reservation_id),
            user_id: entry.user_id,
            kind: Kind::WaitlistOffered,
            args: serde_json::json!({
                "offering_id": offering.id(),
                "reservation_id": reservation_id,
                "amount_satang": deposit,
                "expires_at": expires_at.unix_timestamp(),
            }),
            due_at: std::time::SystemTime::now(),
        };
        outbox::enqueue(&tx, &[event]).await?;
        tx.commit().await?;
        metrics::counter!("allot_waitlist_offers_total", "offering" => offering.id().to_owned())
            .increment(1);
        let (user_id, quantity) = (entry.user_id, entry.quantity);
        tracing::info!(offering = %offering.id(), user_id, quantity, "waitlist offer held");
        Ok(())
    }
}
