//! Book-building: subscriptions during a window (Postgres; no inventory is held), then one
//! allocation run by the quantity-ceiling rule, whose allotments become ledger holds with
//! the offering's deposit deadline. The payments flow confirms them like any reservation.
//!
//! The run is idempotent and resumable: the result is computed and stored in one
//! transaction, and holds are placed afterwards with ids derived from (offering, person,
//! "allotment"), so a rerun after a crash recomputes nothing and re-places only what is
//! missing (a hold that exists answers `exists`, which is success).

use allot_ledger::{HoldOutcome, HoldRequest};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::allocation::{self, Application, Book};
use super::draw::{self, Seed};
use crate::auth::Principal;
use crate::catalog::config::Allocation;
use crate::catalog::Offering;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::reservations;
use crate::state::AppState;

/// The idempotency key of every allotment's hold.
pub const ALLOTMENT_KEY: &str = "allotment";
/// Holds placed at once while turning allotments into reservations: enough to fill the
/// ledger client's batches (64 took 19 s for 100,000 allotments, 512 took 8 s, 2,048 no
/// better), few enough to leave the cluster room for everything else.
const HOLDS_IN_FLIGHT_MAX: usize = 512;

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
    /// Allotments not yet turned into holds (0 once the run finished).
    pub holds_pending: u64,
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

/// One line of the export after its header line.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ExportLine {
    pub pseudonym: String,
    pub requested: u64,
    pub allotted: u64,
}

/// The export's first line: everything needed to recompute the allotments.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ExportHeader {
    pub offering_id: String,
    pub supply: u64,
    pub lot: u64,
    pub min_quantity: u64,
    pub seed: String,
    pub commitment: String,
    pub context: String,
    pub applicants: u64,
}

/// A committed seed as stored.
#[derive(Debug)]
pub struct SeedRow {
    pub seed: Seed,
    pub commitment: Vec<u8>,
    pub committed_at: OffsetDateTime,
    pub revealed: bool,
}

/// The seed of an offering's draw, created (and so committed) on first need.
pub async fn seed(state: &AppState, offering_id: &str, purpose: &str) -> ApiResult<SeedRow> {
    let client = state.db.get().await?;
    let fresh = draw::new_seed();
    client
        .execute(
            "INSERT INTO fairness_seeds (offering_id, purpose, seed, commitment)
             VALUES ($1, $2, $3, $4) ON CONFLICT (offering_id, purpose) DO NOTHING",
            &[&offering_id, &purpose, &fresh.as_slice(), &draw::commitment(&fresh).as_slice()],
        )
        .await?;
    let row = client
        .query_one(
            "SELECT seed, commitment, committed_at, revealed_at IS NOT NULL
             FROM fairness_seeds WHERE offering_id = $1 AND purpose = $2",
            &[&offering_id, &purpose],
        )
        .await?;
    let seed: Vec<u8> = row.get(0);
    Ok(SeedRow {
        seed: seed.try_into().map_err(|_| ApiError::internal("stored seed is not 32 bytes"))?,
        commitment: row.get(1),
        committed_at: row.get::<_, std::time::SystemTime>(2).into(),
        revealed: row.get(3),
    })
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

/// Places or changes the caller's subscription; `true` when it is new.
pub async fn subscribe(
    state: &AppState,
    offering: &Offering,
    who: &Principal,
    quantity: u64,
) -> ApiResult<(SubscriptionView, bool)> {
    book_building(offering)?;
    if !window_open(offering, OffsetDateTime::now_utc()) {
        return Err(ApiError::new(ErrorCode::SubscriptionsClosed));
    }
    check_quantity(offering, quantity)?;
    // The draw's seed is committed before the first subscription can exist.
    seed(state, offering.id(), "allocation").await?;
    let pseudonym = state.fairness.pseudonym(offering.id(), who.user_id);
    let client = state.db.get().await?;
    let row = client
        .query_opt(
            "INSERT INTO subscriptions (offering_id, user_id, pseudonym, requested)
             SELECT $1, $2, $3, $4
             WHERE NOT EXISTS (SELECT 1 FROM allocation_runs WHERE offering_id = $1)
             ON CONFLICT (offering_id, user_id)
             DO UPDATE SET requested = EXCLUDED.requested, updated_at = now()
             RETURNING (xmax = 0)",
            &[&offering.id(), &who.user_id, &pseudonym, &(quantity as i64)],
        )
        .await?;
    let created = row.ok_or_else(|| ApiError::new(ErrorCode::SubscriptionsClosed))?.get(0);
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
pub async fn withdraw(state: &AppState, offering: &Offering, who: &Principal) -> ApiResult<()> {
    book_building(offering)?;
    if !window_open(offering, OffsetDateTime::now_utc()) {
        return Err(ApiError::new(ErrorCode::SubscriptionsClosed));
    }
    let client = state.db.get().await?;
    let n = client
        .execute(
            "DELETE FROM subscriptions WHERE offering_id = $1 AND user_id = $2
             AND NOT EXISTS (SELECT 1 FROM allocation_runs WHERE offering_id = $1)",
            &[&offering.id(), &who.user_id],
        )
        .await?;
    if n == 0 {
        return Err(ApiError::new(ErrorCode::SubscriptionNotFound));
    }
    Ok(())
}

async fn mine(
    state: &AppState,
    offering: &Offering,
    who: &Principal,
) -> ApiResult<Option<SubscriptionView>> {
    let client = state.db.get().await?;
    let row = client
        .query_opt(
            "SELECT pseudonym, requested, allotted, hold_placed FROM subscriptions
             WHERE offering_id = $1 AND user_id = $2",
            &[&offering.id(), &who.user_id],
        )
        .await?;
    Ok(row.map(|r| {
        let allotted = r.get::<_, Option<i64>>(2).map(|a| a as u64);
        let held = r.get::<_, bool>(3) && allotted.is_some_and(|a| a > 0);
        SubscriptionView {
            offering_id: offering.id().to_owned(),
            pseudonym: r.get(0),
            requested: r.get::<_, i64>(1) as u64,
            allotted,
            reservation_id: held
                .then(|| reservations::format_id(allotment_hold(offering, who.person()))),
        }
    }))
}

pub fn allotment_hold(offering: &Offering, person: u64) -> allot_ledger::HoldId {
    reservations::hold_id(offering.spec.number, person, ALLOTMENT_KEY)
}

async fn figures(state: &AppState, offering: &Offering) -> ApiResult<Option<RunFigures>> {
    let client = state.db.get().await?;
    let row = client
        .query_opt(
            "SELECT supply, lot, min_quantity, applicants, requested_total, allotted_total, cutoff,
                    lottery_entrants, lottery_winners, unserved, ran_at,
                    (SELECT count(*) FROM subscriptions s WHERE s.offering_id = r.offering_id
                       AND s.allotted > 0 AND NOT s.hold_placed)
             FROM allocation_runs r WHERE offering_id = $1",
            &[&offering.id()],
        )
        .await?;
    Ok(row.map(|r| {
        let n = |i: usize| r.get::<_, i64>(i) as u64;
        RunFigures {
            supply: n(0),
            lot: n(1),
            min_quantity: n(2),
            applicants: n(3),
            requested_total: n(4),
            allotted_total: n(5),
            cutoff: n(6),
            lottery_entrants: n(7),
            lottery_winners: n(8),
            unserved: n(9),
            ran_at: r.get::<_, std::time::SystemTime>(10).into(),
            holds_pending: n(11),
        }
    }))
}

/// The public page of an offering's allocation, with the caller's own result.
pub async fn view(
    state: &AppState,
    offering: &Offering,
    who: Option<&Principal>,
) -> ApiResult<AllocationView> {
    book_building(offering)?;
    let seed_row = seed(state, offering.id(), "allocation").await?;
    let result = figures(state, offering).await?;
    let mine = match who {
        Some(who) => mine(state, offering, who).await?,
        None => None,
    };
    let now = OffsetDateTime::now_utc();
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

/// The allocation run: at or after the close, with the committed seed (or the seed an
/// official brings, which must match the commitment). Running it again finishes what a
/// crashed run left and changes nothing else.
pub async fn run(
    state: &AppState,
    offering: &Offering,
    given: Option<Seed>,
) -> ApiResult<AllocationView> {
    book_building(offering)?;
    let closes_at = offering.config.subscription_closes_at.expect("validated for book-building");
    if OffsetDateTime::now_utc() < closes_at {
        return Err(ApiError::new(ErrorCode::SubscriptionsStillOpen));
    }
    let seed_row = seed(state, offering.id(), "allocation").await?;
    if given.is_some_and(|g| g != seed_row.seed) {
        return Err(ApiError::field(ErrorCode::SeedMismatch, "seed"));
    }
    let started = std::time::Instant::now();
    compute_and_store(state, offering, &seed_row.seed).await?;
    let computed = started.elapsed();
    place_holds(state, offering).await?;
    tracing::info!(
        offering = %offering.id(),
        compute_and_store_ms = computed.as_millis() as u64,
        holds_ms = (started.elapsed() - computed).as_millis() as u64,
        "allocation run"
    );
    view(state, offering, None).await
}

async fn compute_and_store(state: &AppState, offering: &Offering, seed: &Seed) -> ApiResult<()> {
    let mut client = state.db.get().await?;
    let tx = client.transaction().await?;
    // One run at a time per offering, across instances; the loser finds the result stored.
    tx.execute("SELECT pg_advisory_xact_lock(hashtext('allocation:' || $1))", &[&offering.id()])
        .await?;
    let done = tx
        .query_opt("SELECT 1 FROM allocation_runs WHERE offering_id = $1", &[&offering.id()])
        .await?;
    if done.is_some() {
        return Ok(());
    }
    let rows = tx
        .query(
            "SELECT user_id, pseudonym, requested FROM subscriptions
             WHERE offering_id = $1 ORDER BY pseudonym",
            &[&offering.id()],
        )
        .await?;
    let users: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    let applications: Vec<Application> = rows
        .iter()
        .map(|r| Application { pseudonym: r.get(1), requested: r.get::<_, i64>(2) as u64 })
        .collect();
    let c = &offering.config;
    let book = Book { supply: c.zones[0].supply, lot: c.lot, min_quantity: c.min_quantity };
    let started = std::time::Instant::now();
    let result = allocation::allocate(&book, &applications, seed).map_err(ApiError::internal)?;
    tracing::info!(
        offering = %offering.id(),
        applicants = applications.len(),
        took_ms = started.elapsed().as_millis() as u64,
        "allocation computed"
    );
    let allotted: Vec<i64> = result.allotted.iter().map(|a| *a as i64).collect();
    tx.execute(
        "UPDATE subscriptions s SET allotted = u.allotted, updated_at = now()
         FROM unnest($2::BIGINT[], $3::BIGINT[]) AS u(user_id, allotted)
         WHERE s.offering_id = $1 AND s.user_id = u.user_id",
        &[&offering.id(), &users, &allotted],
    )
    .await?;
    let n = |v: u64| v as i64;
    tx.execute(
        "INSERT INTO allocation_runs (offering_id, supply, lot, min_quantity, applicants,
             requested_total, allotted_total, cutoff, lottery_entrants, lottery_winners, unserved)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        &[
            &offering.id(),
            &n(book.supply),
            &n(book.lot),
            &n(book.min_quantity),
            &n(applications.len() as u64),
            &n(result.requested_total),
            &n(result.allotted_total),
            &n(result.cutoff),
            &n(result.lottery_entrants),
            &n(result.lottery_winners),
            &n(result.unserved),
        ],
    )
    .await?;
    tx.execute(
        "UPDATE fairness_seeds SET revealed_at = now()
         WHERE offering_id = $1 AND purpose = 'allocation' AND revealed_at IS NULL",
        &[&offering.id()],
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Turns every allotment not yet held into a ledger hold with the offering's deadline.
async fn place_holds(state: &AppState, offering: &Offering) -> ApiResult<()> {
    let client = state.db.get().await?;
    let rows = client
        .query(
            "SELECT user_id, allotted FROM subscriptions
             WHERE offering_id = $1 AND allotted > 0 AND NOT hold_placed",
            &[&offering.id()],
        )
        .await?;
    // Everyone's accounts in a few full batches first; the holds then take one round trip.
    let people: Vec<u64> = rows.iter().map(|r| r.get::<_, i64>(0) as u64).collect();
    state.ledger.prepare_people(&offering.spec, &people).await?;
    let holds = rows.iter().map(|r| {
        let (user_id, allotted): (i64, i64) = (r.get(0), r.get(1));
        let request = HoldRequest {
            id: allotment_hold(offering, user_id as u64),
            zone: 1,
            person: user_id as u64,
            quantity: allotted as u128,
            timeout_seconds: offering.config.hold_seconds,
            allow_partial: false,
        };
        async move {
            let outcome = tokio::time::timeout(
                state.tb_timeout(),
                state.ledger.hold(&offering.spec, &request),
            )
            .await;
            (user_id, outcome)
        }
    });
    let outcomes: Vec<_> =
        futures::stream::iter(holds).buffer_unordered(HOLDS_IN_FLIGHT_MAX).collect().await;
    let mut placed = Vec::with_capacity(outcomes.len());
    let mut failed = 0usize;
    for (user_id, outcome) in outcomes {
        match outcome {
            Ok(Ok(HoldOutcome::Held(_))) => placed.push(user_id),
            other => {
                failed += 1;
                tracing::error!(offering = %offering.id(), user_id, outcome = ?other, "allotment hold failed");
            }
        }
    }
    client
        .execute(
            "UPDATE subscriptions SET hold_placed = TRUE
             WHERE offering_id = $1 AND user_id = ANY($2)",
            &[&offering.id(), &placed],
        )
        .await?;
    if failed > 0 {
        // The allocation itself stands; running it again retries just these holds.
        return Err(ApiError::unavailable(format!("{failed} allotment holds failed")));
    }
    client
        .execute(
            "UPDATE allocation_runs SET holds_placed_at = now()
             WHERE offering_id = $1 AND holds_placed_at IS NULL",
            &[&offering.id()],
        )
        .await?;
    Ok(())
}

/// The export anyone can recompute the allocation from: a header line, then one line per
/// subscription (pseudonym, requested, allotted), in pseudonym order. After the run only.
pub async fn export(state: &AppState, offering: &Offering) -> ApiResult<String> {
    book_building(offering)?;
    let Some(result) = figures(state, offering).await? else {
        return Err(ApiError::new(ErrorCode::AllocationNotRun));
    };
    let seed_row = seed(state, offering.id(), "allocation").await?;
    let header = ExportHeader {
        offering_id: offering.id().to_owned(),
        supply: result.supply,
        lot: result.lot,
        min_quantity: result.min_quantity,
        seed: hex::encode(seed_row.seed),
        commitment: hex::encode(&seed_row.commitment),
        context: String::from_utf8_lossy(draw::CONTEXT_ALLOCATION).into_owned(),
        applicants: result.applicants,
    };
    let client = state.db.get().await?;
    let rows = client
        .query(
            "SELECT pseudonym, requested, allotted FROM subscriptions
             WHERE offering_id = $1 ORDER BY pseudonym",
            &[&offering.id()],
        )
        .await?;
    let mut out = serde_json::to_string(&header).expect("serializes");
    out.push('\n');
    for r in rows {
        let line = ExportLine {
            pseudonym: r.get(0),
            requested: r.get::<_, i64>(1) as u64,
            allotted: r.get::<_, Option<i64>>(2).unwrap_or(0) as u64,
        };
        out.push_str(&serde_json::to_string(&line).expect("serializes"));
        out.push('\n');
    }
    Ok(out)
}

/// Recomputes an export (as produced by [`export`]) and reports the first line whose
/// allotment differs, if any. The seed must match the published commitment.
pub fn verify_export(text: &str) -> Result<ExportHeader, String> {
    let mut lines = text.lines();
    let header: ExportHeader = serde_json::from_str(lines.next().ok_or("empty export")?)
        .map_err(|e| format!("header: {e}"))?;
    let seed = draw::parse_seed(&header.seed).ok_or("seed is not 32 hex bytes")?;
    let commitment = hex::decode(&header.commitment).map_err(|_| "commitment is not hex")?;
    if !draw::matches(&seed, &commitment) {
        return Err("the seed does not match the commitment".into());
    }
    let mut applications = Vec::new();
    let mut claimed = Vec::new();
    for (i, line) in lines.enumerate() {
        let l: ExportLine =
            serde_json::from_str(line).map_err(|e| format!("line {}: {e}", i + 2))?;
        applications.push(Application { pseudonym: l.pseudonym, requested: l.requested });
        claimed.push(l.allotted);
    }
    if applications.len() as u64 != header.applicants {
        return Err(format!("{} lines, header says {}", applications.len(), header.applicants));
    }
    let recomputed =
        allocation::verify(&applications, &seed, header.supply, header.lot, header.min_quantity)
            .map_err(|e| e.to_string())?;
    if let Some(i) = (0..claimed.len()).find(|&i| claimed[i] != recomputed[i]) {
        return Err(format!(
            "line {}: {} allotted {}, recomputed {}",
            i + 2,
            applications[i].pseudonym,
            claimed[i],
            recomputed[i]
        ));
    }
    Ok(header)
}
