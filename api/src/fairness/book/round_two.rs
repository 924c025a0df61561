//! The second round: after round one's payment deadline (and its settlement grace), the
//! units of allotments left unpaid, back in stock, go to the unfilled demand of those who
//! paid (requested minus allotted), by the same rule, with the seed derived from round
//! one's under [`draw::CONTEXT_ROUND_TWO`]. Its holds share one new deadline. Published as
//! an export in round one's format, which [`super::verify_export`] recomputes.
//!
//! Who gets nothing in round one enters round two only when the minimum is one lot: a
//! single lot could otherwise be a holding below the minimum.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use allot_ledger::{Deadline, HoldId, HoldRequest, HoldState};
use allot_store::round_two::{RoundOneRow, RoundTwoRow};
use serde::Serialize;
use time::OffsetDateTime;

use super::export::{ExportHeader, ExportLine};
use super::{allotment_hold, book_building, BookBuilding};
use crate::catalog::Offering;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::fairness::allocation::{self, Application, Book};
use crate::fairness::draw::{self, Seed};
use crate::fairness::seeds::{self, SeedPurpose};
use crate::holds;

/// The idempotency key of every round-two allotment's hold.
pub const ROUND_TWO_KEY: &str = "allotment/round-2";

/// Round two's published figures.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RoundTwoView {
    pub offering_id: String,
    /// Units of round one's unpaid allotments.
    pub supply: u64,
    pub applicants: u64,
    pub allotted_total: u64,
    /// Every round-two allotment's payment deadline.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub payment_deadline: OffsetDateTime,
    /// The label the seed is derived under from round one's published seed.
    pub context: &'static str,
}

pub fn round_two_hold(offering: &Offering, person: u64) -> HoldId {
    holds::internal_hold_id(offering.spec.number, person, ROUND_TWO_KEY)
}

fn context() -> &'static str {
    std::str::from_utf8(draw::CONTEXT_ROUND_TWO).expect("ASCII")
}

impl BookBuilding {
    /// Runs round two (admin), after round one's deadline; a repeat re-places missing holds.
    pub async fn run_round_two(&self, offering: &Offering) -> ApiResult<RoundTwoView> {
        book_building(offering)?;
        let client = self.db.get().await?;
        let run = allot_store::book::run(&client, offering.id())
            .await?
            .ok_or_else(|| ApiError::new(ErrorCode::AllocationNotRun))?;
        let deadline = run.holds_deadline.unwrap_or(run.ran_at);
        let grace = Duration::from_secs(self.settlement_grace_seconds.into());
        // Unpaid holds void only after the grace: their units are back in stock then.
        if SystemTime::now() < deadline + grace || run.holds_pending > 0 {
            return Err(ApiError::new(ErrorCode::DepositDeadlineNotPassed));
        }
        let seed_row = seeds::seed(&self.db, offering.id(), SeedPurpose::Allocation).await?;
        let seed = draw::derive(&seed_row.seed, draw::CONTEXT_ROUND_TWO);
        self.compute_round_two(offering, &seed).await?;
        self.place_round_two_holds(offering).await?;
        self.round_two_view(offering).await
    }

    /// Units each subscriber paid for in round one (0 for an unpaid or lapsed allotment).
    async fn paid(&self, offering: &Offering, rows: &[RoundOneRow]) -> ApiResult<Vec<u64>> {
        let mut paid = Vec::with_capacity(rows.len());
        for r in rows {
            let confirmed = r.allotted > 0 && r.hold_placed && {
                let id = allotment_hold(offering, r.user_id as u64);
                let info = self.ledger.hold_info(id).await?;
                info.is_some_and(|i| i.state == HoldState::Confirmed)
            };
            paid.push(if confirmed { r.allotted as u64 } else { 0 });
        }
        Ok(paid)
    }

    async fn compute_round_two(&self, offering: &Offering, seed: &Seed) -> ApiResult<()> {
        let mut client = self.db.get().await?;
        let tx = client.transaction().await?;
        allot_store::book::lock_allocation(&tx, offering.id()).await?;
        if allot_store::round_two::round_two(&tx, offering.id()).await?.is_some() {
            return Ok(());
        }
        let rows = allot_store::round_two::round_one(&tx, offering.id()).await?;
        let paid = self.paid(offering, &rows).await?;
        let c = &offering.config;
        let supply: u64 = rows.iter().zip(&paid).map(|(r, p)| r.allotted as u64 - p).sum();
        let (mut users, mut applications) = (Vec::new(), Vec::new());
        for (r, p) in rows.iter().zip(&paid) {
            // Those who left their allotment unpaid gave it up; the rest ask for what is left.
            let eligible = *p > 0 || (r.allotted == 0 && c.min_quantity == c.lot);
            let demand = r.requested as u64 - p;
            if eligible && demand > 0 {
                users.push(r.user_id);
                applications
                    .push(Application { pseudonym: r.pseudonym.clone(), requested: demand });
            }
        }
        let book = Book { supply, lot: c.lot, min_quantity: c.lot };
        let result =
            allocation::allocate(&book, &applications, seed).map_err(ApiError::internal)?;
        let demand: Vec<i64> = applications.iter().map(|a| a.requested as i64).collect();
        let allotted: Vec<i64> = result.allotted.iter().map(|a| *a as i64).collect();
        let figures = RoundTwoRow {
            supply: supply as i64,
            lot: c.lot as i64,
            min_quantity: c.lot as i64,
            applicants: applications.len() as i64,
            allotted_total: result.allotted_total as i64,
            holds_deadline: Deadline::after(c.hold_seconds, self.settlement_grace_seconds).time(),
            ran_at: SystemTime::now(),
        };
        allot_store::round_two::insert_round_two(
            &tx,
            offering.id(),
            &users,
            &demand,
            &allotted,
            &figures,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Holds every round-two allotment not yet held, with round two's one deadline.
    async fn place_round_two_holds(&self, offering: &Offering) -> ApiResult<()> {
        let client = self.db.get().await?;
        let round = allot_store::round_two::round_two(&client, offering.id())
            .await?
            .ok_or_else(|| ApiError::internal("round two vanished"))?;
        let unix_seconds =
            round.holds_deadline.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let deadline = Deadline { unix_seconds, grace_seconds: self.settlement_grace_seconds };
        let rows = allot_store::round_two::to_hold(&client, offering.id()).await?;
        let people: Vec<u64> = rows.iter().map(|(u, _)| *u as u64).collect();
        self.ledger.prepare_people(&offering.spec, &people).await?;
        let mut placed = Vec::new();
        for (user_id, units) in rows {
            let request = HoldRequest {
                id: round_two_hold(offering, user_id as u64),
                zone: 1,
                person: user_id as u64,
                quantity: units as u128,
                deadline,
                allow_partial: false,
                partner: None,
            };
            if self.hold_allotment(offering, &request).await? {
                placed.push(user_id);
            }
        }
        allot_store::round_two::mark_placed(&client, offering.id(), &placed).await?;
        Ok(())
    }

    async fn round_two_view(&self, offering: &Offering) -> ApiResult<RoundTwoView> {
        let client = self.db.get().await?;
        let r = allot_store::round_two::round_two(&client, offering.id())
            .await?
            .ok_or_else(|| ApiError::new(ErrorCode::AllocationNotRun))?;
        Ok(RoundTwoView {
            offering_id: offering.id().to_owned(),
            supply: r.supply as u64,
            applicants: r.applicants as u64,
            allotted_total: r.allotted_total as u64,
            payment_deadline: r.holds_deadline.into(),
            context: context(),
        })
    }

    /// Round two's export, in round one's format: round one's seed and commitment, the
    /// context the round-two seed is derived under, and each applicant's unfilled demand.
    pub async fn export_round_two(&self, offering: &Offering) -> ApiResult<String> {
        book_building(offering)?;
        let client = self.db.get().await?;
        let Some(r) = allot_store::round_two::round_two(&client, offering.id()).await? else {
            return Err(ApiError::new(ErrorCode::AllocationNotRun));
        };
        let seed_row = seeds::seed(&self.db, offering.id(), SeedPurpose::Allocation).await?;
        let header = ExportHeader {
            offering_id: offering.id().to_owned(),
            supply: r.supply as u64,
            lot: r.lot as u64,
            min_quantity: r.min_quantity as u64,
            seed: hex::encode(seed_row.seed),
            commitment: hex::encode(&seed_row.commitment),
            context: context().to_owned(),
            applicants: r.applicants as u64,
        };
        let mut out = serde_json::to_string(&header).expect("serializes");
        out.push('\n');
        for l in allot_store::round_two::export_lines(&client, offering.id()).await? {
            let line = ExportLine {
                pseudonym: l.pseudonym,
                requested: l.requested as u64,
                allotted: l.allotted as u64,
            };
            out.push_str(&serde_json::to_string(&line).expect("serializes"));
            out.push('\n');
        }
        Ok(out)
    }
}
