//! The virtual waiting room of an offering with `queue: true`.
//!
//! - Before the sale opens, people join a pre-queue and get a ticket without a position.
//! - At opening, the pre-queue is ordered by the committed seed's draw (see `draw`):
//!   positions 1..n. Everyone after that gets the next position as they arrive.
//! - A controller raises the serving counter at `queue_admissions_per_second`, holding back
//!   while the reservation path's p99 is above `queue_latency_p99_ms_max`. Position p is
//!   admitted once serving >= p, for `queue_admission_seconds`; it then gets a signed
//!   admission token, which the reservation path requires. An admission not used in time
//!   lapses; the counter does not wait for it.
//!
//! Postgres holds the truth (entries with positions, counters, the steps of the serving
//! counter with their times), so a restart reorders nobody. Every instance keeps a copy in
//! memory, and status reads use only that copy and the signed ticket. One instance at a time
//! raises the counter, under a lease in `queue_state`; the others follow it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use actix_web::web;
use serde::Serialize;
use time::OffsetDateTime;

use super::draw;
use super::tokens::{AdmissionClaims, TicketClaims, AUDIENCE_ADMISSION, AUDIENCE_TICKET};
use super::unix_now;
use crate::auth::Principal;
use crate::catalog::Offering;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// How often the controller raises the counter (and followers catch up).
pub const TICK: Duration = Duration::from_millis(200);
/// A leader that has not renewed its lease for this long is replaced.
const LEASE_SECONDS: i32 = 3;

/// Every waiting room this process knows, by offering id.
#[derive(Debug, Default)]
pub struct Queues {
    rooms: RwLock<HashMap<String, Arc<Room>>>,
}

impl Queues {
    pub fn get(&self, offering_id: &str) -> Option<Arc<Room>> {
        self.rooms.read().expect("not poisoned").get(offering_id).cloned()
    }

    fn put(&self, room: Arc<Room>) {
        self.rooms.write().expect("not poisoned").insert(room.offering_id.clone(), room);
    }
}

/// One offering's waiting room, as this process last saw it.
#[derive(Debug)]
pub struct Room {
    pub offering_id: String,
    serving: AtomicU64,
    last_position: AtomicU64,
    shuffled: AtomicBool,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Pre-queue entries' drawn positions, by pseudonym (their tickets carry none).
    drawn: HashMap<String, u64>,
    /// (serving counter, unix seconds it was reached), rising in both.
    steps: Vec<(u64, u64)>,
    /// Admissions owed by the rate but not yet given (fractions carry over ticks).
    allowance: f64,
}

impl Room {
    pub fn serving(&self) -> u64 {
        self.serving.load(Ordering::Acquire)
    }

    pub fn is_shuffled(&self) -> bool {
        self.shuffled.load(Ordering::Acquire)
    }

    /// When position `p` was admitted, if it has been.
    fn admitted_at(&self, p: u64) -> Option<u64> {
        if p > self.serving() {
            return None;
        }
        let inner = self.inner.lock().expect("not poisoned");
        let i = inner.steps.partition_point(|(s, _)| *s < p);
        // Steps are written with the counter; a missing one means the row is still on its
        // way to this follower: count the admission from now, never earlier.
        Some(inner.steps.get(i).map_or_else(unix_now, |(_, at)| *at))
    }

    fn position_of(&self, claims: &TicketClaims) -> Option<u64> {
        claims
            .pos
            .or_else(|| self.inner.lock().expect("not poisoned").drawn.get(&claims.entry).copied())
    }
}

/// What a person in the queue sees.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct QueueStatus {
    /// Absent in the pre-queue: positions are drawn at opening.
    pub position: Option<u64>,
    pub serving: u64,
    pub ahead: Option<u64>,
    pub estimated_wait_seconds: Option<u64>,
    /// `waiting`, `admitted` or `expired`.
    pub status: &'static str,
    /// While admitted: send as `X-Queue-Admission` with reservations.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admission_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub admission_expires_at: Option<OffsetDateTime>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct JoinResponse {
    /// Signed; send as `X-Queue-Ticket` (or `?ticket=`) to read your status.
    pub ticket: String,
    /// Your pseudonym in the published pre-queue draw.
    pub entry: String,
    pub position: Option<u64>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub joined_at: OffsetDateTime,
}

/// Verifies a ticket for `offering_id` and computes its holder's status from memory.
pub fn status(
    state: &AppState,
    offering: &Offering,
    claims: &TicketClaims,
) -> ApiResult<QueueStatus> {
    let room = state
        .fairness
        .queues
        .get(offering.id())
        .ok_or_else(|| ApiError::unavailable("waiting room not loaded yet"))?;
    let serving = room.serving();
    let rate = state.settings.fairness.queue_admissions_per_second.max(1) as u64;
    let now = unix_now();
    let until_open =
        offering.config.opens_at.map_or(0, |t| (t.unix_timestamp() as u64).saturating_sub(now));
    let Some(position) = room.position_of(claims) else {
        return Ok(QueueStatus {
            position: None,
            serving,
            ahead: None,
            estimated_wait_seconds: Some(until_open),
            status: "waiting",
            admission_token: None,
            admission_expires_at: None,
        });
    };
    let Some(admitted_at) = room.admitted_at(position) else {
        let ahead = position - serving - 1;
        return Ok(QueueStatus {
            position: Some(position),
            serving,
            ahead: Some(ahead),
            estimated_wait_seconds: Some(until_open + ahead.div_ceil(rate)),
            status: "waiting",
            admission_token: None,
            admission_expires_at: None,
        });
    };
    let expires = admitted_at + state.settings.fairness.queue_admission_seconds;
    let mut out = QueueStatus {
        position: Some(position),
        serving,
        ahead: Some(0),
        estimated_wait_seconds: Some(0),
        status: "expired",
        admission_token: None,
        admission_expires_at: None,
    };
    if now < expires {
        let claims = AdmissionClaims {
            sub: claims.sub.clone(),
            off: claims.off.clone(),
            pos: position,
            iat: admitted_at,
            exp: expires,
            aud: AUDIENCE_ADMISSION.into(),
        };
        out.status = "admitted";
        out.admission_token = Some(state.fairness.tokens.sign_admission(&claims));
        out.admission_expires_at = OffsetDateTime::from_unix_timestamp(expires as i64).ok();
    }
    Ok(out)
}

/// The caller's entry, signed into a ticket, if they joined already.
pub async fn find(
    state: &AppState,
    offering: &Offering,
    who: &Principal,
) -> ApiResult<Option<JoinResponse>> {
    let client = state.db.get().await?;
    let row = client
        .query_opt(
            "SELECT pseudonym, position, EXTRACT(EPOCH FROM joined_at)::BIGINT
             FROM queue_entries WHERE offering_id = $1 AND user_id = $2",
            &[&offering.id(), &who.user_id],
        )
        .await?;
    Ok(row.map(|r| {
        let position = r.get::<_, Option<i64>>(1).map(|p| p as u64);
        ticket(state, offering, who, r.get(0), position, r.get::<_, i64>(2) as u64)
    }))
}

fn ticket(
    state: &AppState,
    offering: &Offering,
    who: &Principal,
    entry: String,
    position: Option<u64>,
    joined_at: u64,
) -> JoinResponse {
    let claims = TicketClaims {
        sub: who.user_id.to_string(),
        off: offering.id().to_owned(),
        entry: entry.clone(),
        pos: position,
        iat: joined_at,
        exp: joined_at + state.settings.fairness.queue_ticket_seconds,
        aud: AUDIENCE_TICKET.into(),
    };
    JoinResponse {
        ticket: state.fairness.tokens.sign_ticket(&claims),
        entry,
        position,
        joined_at: OffsetDateTime::from_unix_timestamp(joined_at as i64)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH),
    }
}

/// Adds the caller to the queue: into the pre-queue before the draw, at the back after it.
/// One entry per person: a second join finds the first.
pub async fn join(
    state: &AppState,
    offering: &Offering,
    who: &Principal,
) -> ApiResult<JoinResponse> {
    let pseudonym = state.fairness.pseudonym(offering.id(), who.user_id);
    let shuffled = room(state, offering).await?.is_shuffled();
    if !shuffled && join_prequeue(state, offering, who, &pseudonym).await? {
        return find(state, offering, who)
            .await?
            .ok_or_else(|| ApiError::internal("entry vanished"));
    }
    join_at_back(state, offering, who, &pseudonym).await?;
    let joined =
        find(state, offering, who).await?.ok_or_else(|| ApiError::internal("entry vanished"))?;
    if let (Some(room), Some(p)) = (state.fairness.queues.get(offering.id()), joined.position) {
        room.last_position.fetch_max(p, Ordering::AcqRel);
    }
    Ok(joined)
}

/// `false` when the draw has happened meanwhile: join at the back instead.
async fn join_prequeue(
    state: &AppState,
    offering: &Offering,
    who: &Principal,
    pseudonym: &str,
) -> ApiResult<bool> {
    let mut client = state.db.get().await?;
    let tx = client.transaction().await?;
    // Shared: pre-queue joins run side by side, and the draw (which locks exclusively)
    // waits for them, so none is left out of it.
    let row = tx
        .query_opt(
            "SELECT shuffled_at IS NOT NULL FROM queue_state WHERE offering_id = $1 FOR SHARE",
            &[&offering.id()],
        )
        .await?
        .ok_or_else(|| ApiError::unavailable("waiting room not set up yet"))?;
    if row.get::<_, bool>(0) {
        return Ok(false);
    }
    tx.execute(
        "INSERT INTO queue_entries (offering_id, user_id, pseudonym) VALUES ($1, $2, $3)
         ON CONFLICT (offering_id, user_id) DO NOTHING",
        &[&offering.id(), &who.user_id, &pseudonym],
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}

async fn join_at_back(
    state: &AppState,
    offering: &Offering,
    who: &Principal,
    pseudonym: &str,
) -> ApiResult<()> {
    let mut client = state.db.get().await?;
    let tx = client.transaction().await?;
    let next: i64 = tx
        .query_opt(
            "SELECT next_position + 1 FROM queue_state WHERE offering_id = $1 FOR UPDATE",
            &[&offering.id()],
        )
        .await?
        .ok_or_else(|| ApiError::unavailable("waiting room not set up yet"))?
        .get(0);
    let inserted = tx
        .execute(
            "INSERT INTO queue_entries (offering_id, user_id, pseudonym, position) VALUES ($1, $2, $3, $4)
             ON CONFLICT (offering_id, user_id) DO NOTHING",
            &[&offering.id(), &who.user_id, &pseudonym, &next],
        )
        .await?;
    if inserted == 1 {
        tx.execute(
            "UPDATE queue_state SET next_position = $2 WHERE offering_id = $1",
            &[&offering.id(), &next],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// The published draw: commitment always; after opening, the seed and the pre-queue's
/// pseudonyms in position order, from which anyone recomputes every position.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct QueueFairness {
    pub offering_id: String,
    pub commitment: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub committed_at: OffsetDateTime,
    pub context: &'static str,
    pub shuffled: bool,
    pub seed: Option<String>,
    pub prequeue_size: u64,
    /// Pseudonyms at positions 1, 2, ... of the pre-queue draw.
    pub order: Vec<String>,
}

pub async fn fairness(state: &AppState, offering: &Offering) -> ApiResult<QueueFairness> {
    let seed = super::book::seed(state, offering.id(), "queue").await?;
    let client = state.db.get().await?;
    let row = client
        .query_opt(
            "SELECT shuffled_at IS NOT NULL, prequeue_size FROM queue_state WHERE offering_id = $1",
            &[&offering.id()],
        )
        .await?;
    let (shuffled, size) =
        row.map_or((false, 0), |r| (r.get::<_, bool>(0), r.get::<_, i64>(1) as u64));
    let order = if shuffled {
        client
            .query(
                "SELECT pseudonym FROM queue_entries WHERE offering_id = $1 AND position <= $2 ORDER BY position",
                &[&offering.id(), &(size as i64)],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect()
    } else {
        Vec::new()
    };
    Ok(QueueFairness {
        offering_id: offering.id().to_owned(),
        commitment: hex::encode(&seed.commitment),
        committed_at: seed.committed_at,
        context: std::str::from_utf8(draw::CONTEXT_QUEUE).expect("ASCII"),
        shuffled,
        seed: (shuffled && seed.revealed).then(|| hex::encode(seed.seed)),
        prequeue_size: size,
        order,
    })
}

/// The offering's room, loaded on first need (the controller loads it within a tick too).
pub async fn room(state: &AppState, offering: &Offering) -> ApiResult<Arc<Room>> {
    if let Some(room) = state.fairness.queues.get(offering.id()) {
        return Ok(room);
    }
    let room = load(state, offering).await?;
    state.fairness.queues.put(room.clone());
    Ok(room)
}

/// Sets up (once, in Postgres) and loads an offering's room into memory.
async fn load(state: &AppState, offering: &Offering) -> ApiResult<Arc<Room>> {
    // The draw's seed is committed when the pre-queue opens, before anyone can join.
    super::book::seed(state, offering.id(), "queue").await?;
    // The connection goes back before `refresh` takes one: a burst of first joins, each
    // holding one while waiting for a second, would otherwise take the whole pool and wait
    // on each other forever.
    state
        .db
        .get()
        .await?
        .execute(
            "INSERT INTO queue_state (offering_id) VALUES ($1) ON CONFLICT DO NOTHING",
            &[&offering.id()],
        )
        .await?;
    let room = Arc::new(Room {
        offering_id: offering.id().to_owned(),
        serving: AtomicU64::new(0),
        last_position: AtomicU64::new(0),
        shuffled: AtomicBool::new(false),
        inner: Mutex::new(Inner::default()),
    });
    refresh(state, &room).await?;
    Ok(room)
}

/// Brings the room up to date with Postgres: counters, the draw once it happened, steps.
async fn refresh(state: &AppState, room: &Room) -> ApiResult<()> {
    let client = state.db.get().await?;
    let r = client
        .query_one(
            "SELECT shuffled_at IS NOT NULL, prequeue_size, next_position, serving FROM queue_state WHERE offering_id = $1",
            &[&room.offering_id],
        )
        .await?;
    let (shuffled, size, next, serving): (bool, i64, i64, i64) =
        (r.get(0), r.get(1), r.get(2), r.get(3));
    if shuffled && !room.is_shuffled() {
        let rows = client
            .query(
                "SELECT pseudonym, position FROM queue_entries WHERE offering_id = $1 AND position <= $2",
                &[&room.offering_id, &size],
            )
            .await?;
        let drawn =
            rows.iter().map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1) as u64)).collect();
        room.inner.lock().expect("not poisoned").drawn = drawn;
        room.shuffled.store(true, Ordering::Release);
    }
    let known = room.inner.lock().expect("not poisoned").steps.last().map_or(0, |s| s.0) as i64;
    let steps = client
        .query(
            "SELECT serving, EXTRACT(EPOCH FROM at)::BIGINT FROM queue_steps
             WHERE offering_id = $1 AND serving > $2 ORDER BY serving",
            &[&room.offering_id, &known],
        )
        .await?;
    {
        let mut inner = room.inner.lock().expect("not poisoned");
        inner
            .steps
            .extend(steps.iter().map(|r| (r.get::<_, i64>(0) as u64, r.get::<_, i64>(1) as u64)));
    }
    room.last_position.fetch_max(next as u64, Ordering::AcqRel);
    room.serving.fetch_max(serving as u64, Ordering::AcqRel);
    Ok(())
}

/// The draw at opening, once across all instances: pre-queue entries get positions
/// 1..n in the seed's order, and the seed is revealed.
async fn shuffle(state: &AppState, offering: &Offering) -> ApiResult<()> {
    let seed = super::book::seed(state, offering.id(), "queue").await?;
    let mut client = state.db.get().await?;
    let tx = client.transaction().await?;
    let state_row = tx
        .query_one(
            "SELECT shuffled_at IS NOT NULL, next_position FROM queue_state WHERE offering_id = $1 FOR UPDATE",
            &[&offering.id()],
        )
        .await?;
    if state_row.get::<_, bool>(0) {
        return Ok(());
    }
    let base: i64 = state_row.get(1);
    let rows = tx
        .query(
            "SELECT user_id, pseudonym FROM queue_entries WHERE offering_id = $1 AND position IS NULL",
            &[&offering.id()],
        )
        .await?;
    let pseudonyms: Vec<String> = rows.iter().map(|r| r.get(1)).collect();
    let order = draw::order(&seed.seed, draw::CONTEXT_QUEUE, &pseudonyms);
    let users: Vec<i64> = order.iter().map(|&i| rows[i].get(0)).collect();
    let positions: Vec<i64> = (1..=order.len() as i64).map(|k| base + k).collect();
    tx.execute(
        "UPDATE queue_entries q SET position = u.position
         FROM unnest($2::BIGINT[], $3::BIGINT[]) AS u(user_id, position)
         WHERE q.offering_id = $1 AND q.user_id = u.user_id",
        &[&offering.id(), &users, &positions],
    )
    .await?;
    let size = order.len() as i64;
    tx.execute(
        "UPDATE queue_state SET shuffled_at = now(), prequeue_size = $2, next_position = $3 WHERE offering_id = $1",
        &[&offering.id(), &(base + size), &(base + size)],
    )
    .await?;
    tx.execute(
        "UPDATE fairness_seeds SET revealed_at = now() WHERE offering_id = $1 AND purpose = 'queue'",
        &[&offering.id()],
    )
    .await?;
    tx.commit().await?;
    tracing::info!(offering = %offering.id(), prequeue = size, "pre-queue drawn");
    Ok(())
}

/// Raises the serving counter if this instance holds (or takes) the lease; follows the
/// leader otherwise.
async fn advance(
    state: &AppState,
    room: &Room,
    instance: uuid::Uuid,
    elapsed: Duration,
) -> ApiResult<()> {
    let rate = state.settings.fairness.queue_admissions_per_second as f64;
    let saturated = state.fairness.latency.p99().is_some_and(|p| {
        p > Duration::from_millis(state.settings.fairness.queue_latency_p99_ms_max)
    });
    let step = {
        let mut inner = room.inner.lock().expect("not poisoned");
        inner.allowance = if saturated {
            0.0
        } else {
            (inner.allowance + rate * elapsed.as_secs_f64()).min(rate.max(1.0))
        };
        inner.allowance.floor() as i64
    };
    if saturated {
        metrics::counter!("allot_queue_held_back_total", "offering" => room.offering_id.clone())
            .increment(1);
    }
    let client = state.db.get().await?;
    let led = client
        .query_opt(
            "UPDATE queue_state SET serving = LEAST(serving + $2, next_position), leader = $3,
                 lease_until = now() + make_interval(secs => $4)
             WHERE offering_id = $1 AND (leader IS NULL OR leader = $3 OR lease_until < now())
             RETURNING serving",
            &[&room.offering_id, &step, &instance, &(LEASE_SECONDS as f64)],
        )
        .await?;
    if let Some(row) = led {
        let serving = row.get::<_, i64>(0) as u64;
        let before = room.serving();
        if serving > before {
            client
                .execute(
                    "INSERT INTO queue_steps (offering_id, serving) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                    &[&room.offering_id, &(serving as i64)],
                )
                .await?;
            let mut inner = room.inner.lock().expect("not poisoned");
            inner.allowance -= (serving - before) as f64;
            inner.steps.push((serving, unix_now()));
            drop(inner);
            room.serving.store(serving, Ordering::Release);
            metrics::counter!("allot_queue_admitted_total", "offering" => room.offering_id.clone())
                .increment(serving - before);
        }
    }
    refresh(state, room).await
}

/// The admission controller: for every queued offering, the pre-queue draw at opening and
/// then the serving counter, every [`TICK`].
pub async fn controller(state: web::Data<AppState>) {
    let instance = uuid::Uuid::new_v4();
    let mut last = Instant::now();
    loop {
        tokio::time::sleep(TICK).await;
        let elapsed = last.elapsed();
        last = Instant::now();
        for offering in state.catalog.all().into_iter().filter(|o| o.config.queue) {
            if let Err(e) = tick(&state, &offering, instance, elapsed).await {
                tracing::warn!(offering = %offering.id(), error = %e, "waiting room tick failed");
            }
        }
    }
}

async fn tick(
    state: &AppState,
    offering: &Offering,
    instance: uuid::Uuid,
    elapsed: Duration,
) -> ApiResult<()> {
    let room = room(state, offering).await?;
    let selling = offering.accepts_reservations(OffsetDateTime::now_utc());
    if !room.is_shuffled() {
        if selling {
            shuffle(state, offering).await?;
        }
        return refresh(state, &room).await;
    }
    if selling {
        advance(state, &room, instance, elapsed).await
    } else {
        refresh(state, &room).await
    }
}
