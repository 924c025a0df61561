//! The allocation run: compute and store the result in one transaction, with the one payment
//! deadline of every allotment, then turn every allotment into a ledger hold with that
//! deadline. Both halves are safe to repeat: a stored result is never recomputed, a placed
//! hold answers `exists`, and a rerun after the deadline places nothing late: an allotment
//! whose deadline passed before its hold stood (or whose hold had lapsed) is lapsed.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use allot_ledger::{Deadline, HoldOutcome, HoldRejection, HoldRequest, HoldState};
use allot_store::book::AllotmentRow;
use futures::StreamExt;

use super::{allotment_hold, book_building, AllocationView, BookBuilding};
use crate::catalog::Offering;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::fairness::allocation::{self, Application, Book};
use crate::fairness::draw::Seed;
use crate::fairness::seeds::{self, SeedPurpose};

/// Holds placed at once while turning allotments into reservations: enough to fill the
/// ledger client's batches (64 took 19 s for 100,000 allotments, 512 took 8 s, 2,048 no
/// better), few enough to leave the cluster room for everything else.
const HOLDS_IN_FLIGHT_MAX: usize = 512;

/// What became of the allotments a pass tried to hold.
#[derive(Debug, Default)]
struct Placement {
    placed: Vec<i64>,
    lapsed: Vec<i64>,
    failed: usize,
}

impl BookBuilding {
    /// The allocation run: at or after the close, with the committed seed (or the seed an
    /// official brings, which must match the commitment). Running it again finishes what a
    /// crashed run left and changes nothing else.
    pub async fn run(&self, offering: &Offering, given: Option<Seed>) -> ApiResult<AllocationView> {
        book_building(offering)?;
        let closes_at =
            offering.config.subscription_closes_at.expect("validated for book-building");
        if self.clock.now() < closes_at {
            return Err(ApiError::new(ErrorCode::SubscriptionsStillOpen));
        }
        let seed_row = seeds::seed(&self.db, offering.id(), SeedPurpose::Allocation).await?;
        if given.is_some_and(|g| g != seed_row.seed) {
            return Err(ApiError::field(ErrorCode::SeedMismatch, "seed"));
        }
        let started = std::time::Instant::now();
        self.compute_and_store(offering, &seed_row.seed).await?;
        let computed = started.elapsed();
        self.place_holds(offering).await?;
        tracing::info!(
            offering = %offering.id(),
            compute_and_store_ms = computed.as_millis() as u64,
            holds_ms = (started.elapsed() - computed).as_millis() as u64,
            "allocation run"
        );
        self.view(offering, None).await
    }

    async fn compute_and_store(&self, offering: &Offering, seed: &Seed) -> ApiResult<()> {
        let mut client = self.db.get().await?;
        let tx = client.transaction().await?;
        // One run at a time per offering, across instances; the loser finds the result stored.
        allot_store::book::lock_allocation(&tx, offering.id()).await?;
        if allot_store::book::run_exists(&tx, offering.id()).await? {
            return Ok(());
        }
        let rows = allot_store::book::applications(&tx, offering.id()).await?;
        let users: Vec<i64> = rows.iter().map(|r| r.user_id).collect();
        let applications: Vec<Application> = rows
            .into_iter()
            .map(|r| Application { pseudonym: r.pseudonym, requested: r.requested as u64 })
            .collect();
        let c = &offering.config;
        let book = Book { supply: c.zones[0].supply, lot: c.lot, min_quantity: c.min_quantity };
        let started = std::time::Instant::now();
        let result =
            allocation::allocate(&book, &applications, seed).map_err(ApiError::internal)?;
        tracing::info!(
            offering = %offering.id(),
            applicants = applications.len(),
            took_ms = started.elapsed().as_millis() as u64,
            "allocation computed"
        );
        let allotted: Vec<i64> = result.allotted.iter().map(|a| *a as i64).collect();
        allot_store::book::set_allotments(&tx, offering.id(), &users, &allotted).await?;
        let n = |v: u64| v as i64;
        let figures = allot_store::book::RunFigures {
            supply: n(book.supply),
            lot: n(book.lot),
            min_quantity: n(book.min_quantity),
            applicants: n(applications.len() as u64),
            requested_total: n(result.requested_total),
            allotted_total: n(result.allotted_total),
            cutoff: n(result.cutoff),
            lottery_entrants: n(result.lottery_entrants),
            lottery_winners: n(result.lottery_winners),
            unserved: n(result.unserved),
        };
        // One deadline for every allotment, fixed now: holds placed later keep it.
        let deadline = Deadline::after(c.hold_seconds, self.settlement_grace_seconds).time();
        allot_store::book::insert_run(&tx, offering.id(), &figures, deadline).await?;
        allot_store::fairness::reveal_allocation_seed(&tx, offering.id()).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The run's deadline, as every allotment hold carries it.
    async fn deadline(&self, offering: &Offering) -> ApiResult<Deadline> {
        let client = self.db.get().await?;
        let run = allot_store::book::run(&client, offering.id())
            .await?
            .ok_or_else(|| ApiError::internal("allocation run vanished"))?;
        // A run stored before runs fixed their deadline: its holds' deadline from its time.
        let hold = Duration::from_secs(offering.config.hold_seconds.into());
        let at = run.holds_deadline.unwrap_or(run.ran_at + hold);
        let unix_seconds = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        Ok(Deadline { unix_seconds, grace_seconds: self.settlement_grace_seconds })
    }

    /// Turns every allotment not yet held into a ledger hold with the run's deadline.
    async fn place_holds(&self, offering: &Offering) -> ApiResult<()> {
        let deadline = self.deadline(offering).await?;
        let client = self.db.get().await?;
        let rows = allot_store::book::allotments_to_hold(&client, offering.id()).await?;
        // Everyone's accounts in a few full batches first; the holds then take one round trip.
        let people: Vec<u64> = rows.iter().map(|r| r.user_id as u64).collect();
        self.ledger.prepare_people(&offering.spec, &people).await?;
        let done = self.hold_allotments(offering, &rows, deadline).await;
        allot_store::book::mark_holds_placed(&client, offering.id(), &done.placed).await?;
        allot_store::book::mark_holds_lapsed(&client, offering.id(), &done.lapsed).await?;
        if done.failed > 0 {
            // The allocation itself stands; running it again retries just these holds.
            return Err(ApiError::unavailable(format!("{} allotment holds failed", done.failed)));
        }
        allot_store::book::finish_run(&client, offering.id()).await?;
        Ok(())
    }

    /// Holds each allotment, [`HOLDS_IN_FLIGHT_MAX`] at a time.
    async fn hold_allotments(
        &self,
        offering: &Offering,
        rows: &[AllotmentRow],
        deadline: Deadline,
    ) -> Placement {
        let holds = rows.iter().map(|r| {
            let request = HoldRequest {
                id: allotment_hold(offering, r.user_id as u64),
                zone: 1,
                person: r.user_id as u64,
                quantity: r.allotted as u128,
                deadline,
                allow_partial: false,
                partner: None,
            };
            async move { (r.user_id, self.hold_allotment(offering, &request).await) }
        });
        let outcomes: Vec<_> =
            futures::stream::iter(holds).buffer_unordered(HOLDS_IN_FLIGHT_MAX).collect().await;
        let mut done = Placement::default();
        for (user_id, outcome) in outcomes {
            match outcome {
                Ok(true) => done.placed.push(user_id),
                Ok(false) => done.lapsed.push(user_id),
                Err(e) => {
                    done.failed += 1;
                    tracing::error!(offering = %offering.id(), user_id, error = %e, "allotment hold failed");
                }
            }
        }
        done
    }

    /// One allotment's hold: `true` when it stands (held now or before, or paid), `false`
    /// when its deadline passed before it stood (never placed, or found lapsed on a rerun).
    pub(super) async fn hold_allotment(
        &self,
        offering: &Offering,
        request: &HoldRequest,
    ) -> ApiResult<bool> {
        let hold = self.ledger.hold(&offering.spec, request);
        let outcome = tokio::time::timeout(self.ledger_timeout, hold)
            .await
            .map_err(|_| ApiError::ledger_timeout())??;
        match outcome {
            HoldOutcome::Held(held) if !held.replayed || held.expires_at > SystemTime::now() => {
                Ok(true)
            }
            // A replay past the deadline: placed by an earlier run, and paid or lapsed.
            HoldOutcome::Held(_) => {
                let info = self.ledger.hold_info(request.id).await?;
                Ok(info.is_some_and(|i| i.state == HoldState::Confirmed))
            }
            HoldOutcome::Rejected(HoldRejection::TimeoutOutOfRange) => Ok(false),
            other => Err(ApiError::internal(format!("allotment hold: {other:?}"))),
        }
    }
}
