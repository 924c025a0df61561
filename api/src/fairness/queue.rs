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
//! Postgres holds the truth and every instance a copy in memory ([`super::room`]); status
//! reads use only that copy and the signed ticket. One instance at a time raises the
//! counter, under a lease in `queue_state`; the others follow it ([`super::admission`]).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use allot_store::Pool;
use serde::Serialize;
use time::OffsetDateTime;

use super::draw;
use super::latency::Window;
use super::room::Queues;
use super::seeds::{self, SeedPurpose};
use super::tokens::{
    AdmissionClaims, QueueKeys, TicketClaims, AUDIENCE_ADMISSION, AUDIENCE_TICKET,
};
use super::{unix_now, Handles, Pseudonyms};
use crate::auth::Principal;
use crate::catalog::{Catalog, Offering};
use crate::config::FairnessSettings;
use crate::error::{ApiError, ApiResult};

/// The waiting rooms of every queued offering: what people see, and (in
/// [`super::admission`]) the controller that admits them.
#[derive(Clone, Debug)]
pub struct WaitingRoom {
    pub(super) db: Pool,
    /// Which offerings have a room, for the controller.
    pub(super) catalog: Arc<Catalog>,
    /// Admission rate and windows, ticket lifetime, the latency limit.
    pub(super) settings: FairnessSettings,
    /// Signs tickets and admissions (the reservation path's gate verifies the latter).
    tokens: Arc<QueueKeys>,
    /// The reservation path's latency, which admission holds back on.
    pub(super) latency: Arc<Window>,
    pub(super) rooms: Arc<Queues>,
    pseudonyms: Pseudonyms,
}

/// What a person in the queue sees.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct QueueStatus {
    /// Absent in the pre-queue: positions are drawn at opening.
    pub position: Option<u64>,
    pub serving: u64,
    pub ahead: Option<u64>,
    pub estimated_wait_seconds: Option<u64>,
    pub status: Standing,
    /// While admitted: send as `X-Queue-Admission` with reservations.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admission_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub admission_expires_at: Option<OffsetDateTime>,
}

/// Where a queued person stands: a wire value only, never stored (a restart recomputes
/// it from positions and the serving counter).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Standing {
    /// Not admitted yet (or still in the pre-queue).
    Waiting,
    /// Admitted: the admission token lets them reserve until it expires.
    Admitted,
    /// Admitted once, and the admission lapsed unused.
    Expired,
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

impl WaitingRoom {
    pub fn new(
        handles: &Handles,
        settings: &FairnessSettings,
        tokens: Arc<QueueKeys>,
        latency: Arc<Window>,
        pseudonyms: Pseudonyms,
    ) -> WaitingRoom {
        WaitingRoom {
            db: handles.db.clone(),
            catalog: handles.catalog.clone(),
            settings: settings.clone(),
            tokens,
            latency,
            rooms: Arc::default(),
            pseudonyms,
        }
    }

    /// The claims of a ticket of ours for `offering_id`, if `token` is one and still valid.
    pub fn verify_ticket(&self, token: &str, offering_id: &str) -> Option<TicketClaims> {
        self.tokens.verify_ticket(token).filter(|c| c.off == offering_id)
    }

    /// The status of a ticket's holder, from memory only.
    pub fn status(&self, offering: &Offering, claims: &TicketClaims) -> ApiResult<QueueStatus> {
        let room = self
            .rooms
            .get(offering.id())
            .ok_or_else(|| ApiError::unavailable("waiting room not loaded yet"))?;
        let serving = room.serving();
        let rate = self.settings.queue_admissions_per_second.max(1) as u64;
        let now = unix_now();
        // Counted by the clock that opens the offering (the catalog's), as the opening is.
        let opens_in = |t: OffsetDateTime| (t - self.catalog.now()).whole_seconds().max(0) as u64;
        let until_open = offering.config.opens_at.map_or(0, opens_in);
        let waiting = |position, ahead, wait| QueueStatus {
            position,
            serving,
            ahead,
            estimated_wait_seconds: Some(wait),
            status: Standing::Waiting,
            admission_token: None,
            admission_expires_at: None,
        };
        let Some(position) = room.position_of(claims) else {
            return Ok(waiting(None, None, until_open));
        };
        let Some(admitted_at) = room.admitted_at(position) else {
            let ahead = position - serving - 1;
            return Ok(waiting(Some(position), Some(ahead), until_open + ahead.div_ceil(rate)));
        };
        Ok(self.admitted(claims, position, serving, admitted_at, now))
    }

    /// The status of an admitted position: its admission token while the window lasts.
    fn admitted(
        &self,
        claims: &TicketClaims,
        position: u64,
        serving: u64,
        admitted_at: u64,
        now: u64,
    ) -> QueueStatus {
        let expires = admitted_at + self.settings.queue_admission_seconds;
        let mut out = QueueStatus {
            position: Some(position),
            serving,
            ahead: Some(0),
            estimated_wait_seconds: Some(0),
            status: Standing::Expired,
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
            out.status = Standing::Admitted;
            out.admission_token = Some(self.tokens.sign_admission(&claims));
            out.admission_expires_at = OffsetDateTime::from_unix_timestamp(expires as i64).ok();
        }
        out
    }

    /// The caller's entry, signed into a ticket, if they joined already.
    pub async fn find(
        &self,
        offering: &Offering,
        who: &Principal,
    ) -> ApiResult<Option<JoinResponse>> {
        let client = self.db.get().await?;
        let row = allot_store::queue::entry(&client, offering.id(), who.user_id).await?;
        Ok(row.map(|r| {
            let position = r.position.map(|p| p as u64);
            self.ticket(offering, who, r.pseudonym, position, r.joined_at_unix as u64)
        }))
    }

    fn ticket(
        &self,
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
            exp: joined_at + self.settings.queue_ticket_seconds,
            aud: AUDIENCE_TICKET.into(),
        };
        JoinResponse {
            ticket: self.tokens.sign_ticket(&claims),
            entry,
            position,
            joined_at: OffsetDateTime::from_unix_timestamp(joined_at as i64)
                .unwrap_or(OffsetDateTime::UNIX_EPOCH),
        }
    }

    /// Adds the caller to the queue: into the pre-queue before the draw, at the back after
    /// it. One entry per person: a second join finds the first.
    pub async fn join(&self, offering: &Offering, who: &Principal) -> ApiResult<JoinResponse> {
        // Someone the offering would refuse takes no place in its line.
        offering.config.eligibility.check(who.identity, who.verified)?;
        let pseudonym = self.pseudonyms.of(offering.id(), who.user_id);
        let shuffled = self.room(offering).await?.is_shuffled();
        if !shuffled && self.join_prequeue(offering, who, &pseudonym).await? {
            return self
                .find(offering, who)
                .await?
                .ok_or_else(|| ApiError::internal("entry vanished"));
        }
        self.join_at_back(offering, who, &pseudonym).await?;
        let joined =
            self.find(offering, who).await?.ok_or_else(|| ApiError::internal("entry vanished"))?;
        if let (Some(room), Some(p)) = (self.rooms.get(offering.id()), joined.position) {
            room.last_position.fetch_max(p, Ordering::AcqRel);
        }
        Ok(joined)
    }

    /// `false` when the draw has happened meanwhile: join at the back instead.
    async fn join_prequeue(
        &self,
        offering: &Offering,
        who: &Principal,
        pseudonym: &str,
    ) -> ApiResult<bool> {
        let mut client = self.db.get().await?;
        let tx = client.transaction().await?;
        // Shared: pre-queue joins run side by side, and the draw (which locks exclusively)
        // waits for them, so none is left out of it.
        let shuffled = allot_store::queue::lock_shared_shuffled(&tx, offering.id())
            .await?
            .ok_or_else(|| ApiError::unavailable("waiting room not set up yet"))?;
        if shuffled {
            return Ok(false);
        }
        allot_store::queue::insert_prequeue_entry(&tx, offering.id(), who.user_id, pseudonym)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn join_at_back(
        &self,
        offering: &Offering,
        who: &Principal,
        pseudonym: &str,
    ) -> ApiResult<()> {
        let mut client = self.db.get().await?;
        let tx = client.transaction().await?;
        let next = allot_store::queue::lock_next_position(&tx, offering.id())
            .await?
            .ok_or_else(|| ApiError::unavailable("waiting room not set up yet"))?;
        let inserted =
            allot_store::queue::insert_entry_at(&tx, offering.id(), who.user_id, pseudonym, next)
                .await?;
        if inserted {
            allot_store::queue::set_next_position(&tx, offering.id(), next).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The published pre-queue draw of `offering`.
    pub async fn published_draw(&self, offering: &Offering) -> ApiResult<QueueFairness> {
        let seed = seeds::seed(&self.db, offering.id(), SeedPurpose::Queue).await?;
        let client = self.db.get().await?;
        let (shuffled, size) =
            allot_store::queue::draw_state(&client, offering.id()).await?.unwrap_or((false, 0));
        let order = if shuffled {
            allot_store::queue::prequeue_order(&client, offering.id(), size).await?
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
            prequeue_size: size as u64,
            order,
        })
    }
}
