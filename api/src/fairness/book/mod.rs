//! Book-building: subscriptions during a window (Postgres; no inventory is held), then one
//! allocation run by the quantity-ceiling rule, whose allotments become ledger holds with
//! one payment deadline, fixed when the run is stored. The payments flow confirms them like
//! any reservation, and the projector tells every allottee (`notify::holds`).
//!
//! The run is idempotent and resumable: the result is computed and stored in one
//! transaction, and holds are placed afterwards with ids derived from (offering, person,
//! "allotment"), so a rerun after a crash recomputes nothing and re-places only what is
//! missing (a hold that exists answers `exists`, which is success).
//!
//! Here: subscriptions and the public page; in `run`: the allocation run and its holds; in
//! `export`: the published export and its verifier; in `round_two`: the second round, for
//! the units of allotments left unpaid.

mod export;
mod round_two;
mod run;

pub use export::{verify_export, ExportHeader, ExportLine};
pub use round_two::{round_two_hold, RoundTwoView};

use std::sync::Arc;
use std::time::Duration;

use allot_ledger::Ledger;
use allot_store::book::RunRow;
use allot_store::Pool;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::draw;
use super::seeds::{self, SeedPurpose};
use super::{Handles, Pseudonyms};
use crate::auth::Principal;
use crate::catalog::config::Allocation;
use crate::catalog::Offering;
use crate::clock::Clock;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::holds;

/// The idempotency key of every allotment's hold.
pub const ALLOTMENT_KEY: &str = "allotment";

/// Book-building's service: subscriptions and allocation runs in Postgres, allotments as
/// holds in the ledger.
#[derive(Clone, Debug)]
pub struct BookBuilding {
    db: Pool,
    ledger: Arc<Ledger>,
    ledger_timeout: Duration,
    /// Every allotment hold's settlement grace.
    settlement_grace_seconds: u32,
    pseudonyms: Pseudonyms,
    /// The catalog's clock: when the subscription window closes.
    clock: Clock,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscribeRequest {
    /// Units: baht of face value; the offering's minimum, lot and maximum apply.
    pub quantity: u64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SubscriptionView {
    pub offering_id: String,
    /// How this subscription appears in the published export.
    pub pseudonym: String,
    pub requested: u64,
    /// Set once the allocation has run.
    pub allotted: Option<u64>,
    /// The hold of the allotment, to pay like any reservation.
    pub reservation_id: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RunFigures {
    pub supply: u64,
    pub lot: u64,
    pub min_quantity: u64,
    pub applicants: u64,
    pub requested_total: u64,
    pub allotted_total: u64,
    /// Everyone who asked for more got at least this much.
    pub cutoff: u64,
    /// The last, partial round: how many were in its draw and how many won a lot.
    pub lottery_entrants: u64,
    pub lottery_winners: u64,
    /// Applicants who got nothing because even minimums went by draw.
    pub unserved: u64,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub ran_at: OffsetDateTime,
    /// Every allotment's payment deadline, fixed once by the run.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub payment_deadline: Option<OffsetDateTime>,
    /// Allotments not yet turned into holds (0 once the run finished).
    pub holds_pending: u64,
    /// Allotments whose deadline passed before their hold stood: nothing is held for them.
    pub holds_lapsed: u64,
}

impl From<RunRow> for RunFigures {
    fn from(r: RunRow) -> RunFigures {
        let f = r.figures;
        let n = |v: i64| v as u64;
        RunFigures {
            supply: n(f.supply),
            lot: n(f.lot),
            min_quantity: n(f.min_quantity),
            applicants: n(f.applicants),
            requested_total: n(f.requested_total),
            allotted_total: n(f.allotted_total),
            cutoff: n(f.cutoff),
            lottery_entrants: n(f.lottery_entrants),
            lottery_winners: n(f.lottery_winners),
            unserved: n(f.unserved),
            ran_at: r.ran_at.into(),
            payment_deadline: r.holds_deadline.map(OffsetDateTime::from),
            holds_pending: n(r.holds_pending),
            holds_lapsed: n(r.holds_lapsed),
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AllocationView {
    pub offering_id: String,
    /// `not_yet_open`, `subscribing`, `closed` (awaiting the run) or `allocated`.
    pub status: &'static str,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub subscription_closes_at: Option<OffsetDateTime>,
    /// SHA-256 of the draw's seed, hex, published before the first subscription.
    pub commitment: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub committed_at: OffsetDateTime,
    /// The seed, hex, once the allocation has run.
    pub seed: Option<String>,
    /// The draw's context label (see `fairness::draw`).
    pub context: &'static str,
    pub result: Option<RunFigures>,
    /// The caller's own subscription and result, when signed in.
    pub mine: Option<SubscriptionView>,
}

fn book_building(offering: &Offering) -> ApiResult<()> {
    if offering.config.allocation != Allocation::BookBuilding {
        return Err(ApiError::field(ErrorCode::NotBookBuilding, "id"));
    }
    Ok(())
}

fn window_open(offering: &Offering, now: OffsetDateTime) -> bool {
    let c = &offering.config;
    offering.is_open
        && c.opens_at.is_none_or(|t| now >= t)
        && c.subscription_closes_at.is_some_and(|t| now < t)
}

/// The offering's minimum, lot and maximum, with the reservation path's error codes.
pub fn check_quantity(offering: &Offering, quantity: u64) -> ApiResult<()> {
    let c = &offering.config;
    if quantity < c.min_quantity {
        return Err(
            ApiError::field(ErrorCode::BelowMinimum, "quantity").with_arg("min", c.min_quantity)
        );
    }
    if !quantity.is_multiple_of(c.lot) {
        return Err(ApiError::field(ErrorCode::NotLotMultiple, "quantity").with_arg("lot", c.lot));
    }
    if quantity > c.max_per_person {
        return Err(
            ApiError::field(ErrorCode::AboveMaximum, "quantity").with_arg("max", c.max_per_person)
        );
    }
    Ok(())
}

pub fn allotment_hold(offering: &Offering, person: u64) -> allot_ledger::HoldId {
    holds::internal_hold_id(offering.spec.number, person, ALLOTMENT_KEY)
}

impl BookBuilding {
    pub fn new(handles: &Handles, pseudonyms: Pseudonyms) -> BookBuilding {
        BookBuilding {
            db: handles.db.clone(),
            ledger: handles.ledger.clone(),
            ledger_timeout: handles.ledger_timeout,
            settlement_grace_seconds: handles.settlement_grace_seconds,
            pseudonyms,
            clock: handles.catalog.clock().clone(),
        }
    }

    /// Places or changes the caller's subscription; `true` when it is new.
    pub async fn subscribe(
        &self,
        offering: &Offering,
        who: &Principal,
        quantity: u64,
    ) -> ApiResult<(SubscriptionView, bool)> {
        book_building(offering)?;
        // Who may reserve may subscribe, and nobody else (from the token, as reserving).
        offering.config.eligibility.check(who.identity, who.verified)?;
        if !window_open(offering, self.clock.now()) {
            return Err(ApiError::new(ErrorCode::SubscriptionsClosed));
        }
        check_quantity(offering, quantity)?;
        // The draw's seed is committed before the first subscription can exist.
        seeds::seed(&self.db, offering.id(), SeedPurpose::Allocation).await?;
        let pseudonym = self.pseudonyms.of(offering.id(), who.user_id);
        let client = self.db.get().await?;
        let created = allot_store::book::upsert_subscription(
            &client,
            offering.id(),
            who.user_id,
            &pseudonym,
            quantity as i64,
        )
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::SubscriptionsClosed))?;
        let view = SubscriptionView {
            offering_id: offering.id().to_owned(),
            pseudonym,
            requested: quantity,
            allotted: None,
            reservation_id: None,
        };
        Ok((view, created))
    }

    /// Withdraws the caller's subscription while the window is open.
    pub async fn withdraw(&self, offering: &Offering, who: &Principal) -> ApiResult<()> {
        book_building(offering)?;
        if !window_open(offering, self.clock.now()) {
            return Err(ApiError::new(ErrorCode::SubscriptionsClosed));
        }
        let client = self.db.get().await?;
        if !allot_store::book::delete_subscription(&client, offering.id(), who.user_id).await? {
            return Err(ApiError::new(ErrorCode::SubscriptionNotFound));
        }
        Ok(())
    }

    async fn mine(
        &self,
        offering: &Offering,
        who: &Principal,
    ) -> ApiResult<Option<SubscriptionView>> {
        let client = self.db.get().await?;
        let row = allot_store::book::subscription(&client, offering.id(), who.user_id).await?;
        Ok(row.map(|r| {
            let allotted = r.allotted.map(|a| a as u64);
            let held = r.hold_placed && !r.hold_lapsed && allotted.is_some_and(|a| a > 0);
            SubscriptionView {
                offering_id: offering.id().to_owned(),
                pseudonym: r.pseudonym,
                requested: r.requested as u64,
                allotted,
                reservation_id: held
                    .then(|| holds::format_id(allotment_hold(offering, who.person()))),
            }
        }))
    }

    async fn figures(&self, offering: &Offering) -> ApiResult<Option<RunFigures>> {
        let client = self.db.get().await?;
        Ok(allot_store::book::run(&client, offering.id()).await?.map(RunFigures::from))
    }

    /// The public page of an offering's allocation, with the caller's own result.
    pub async fn view(
        &self,
        offering: &Offering,
        who: Option<&Principal>,
    ) -> ApiResult<AllocationView> {
        book_building(offering)?;
        let seed_row = seeds::seed(&self.db, offering.id(), SeedPurpose::Allocation).await?;
        let result = self.figures(offering).await?;
        let mine = match who {
            Some(who) => self.mine(offering, who).await?,
            None => None,
        };
        let now = self.clock.now();
        let status = if result.is_some() {
            "allocated"
        } else if window_open(offering, now) {
            "subscribing"
        } else if offering.config.subscription_closes_at.is_some_and(|t| now >= t) {
            "closed"
        } else {
            "not_yet_open"
        };
        Ok(AllocationView {
            offering_id: offering.id().to_owned(),
            status,
            subscription_closes_at: offering.config.subscription_closes_at,
            commitment: hex::encode(&seed_row.commitment),
            committed_at: seed_row.committed_at,
            seed: (seed_row.revealed && result.is_some()).then(|| hex::encode(seed_row.seed)),
            context: std::str::from_utf8(draw::CONTEXT_ALLOCATION).expect("ASCII"),
            result,
            mine,
        })
    }
}
