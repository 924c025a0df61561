//! Fairness: who gets a bond or a seat when demand is many times the supply.
//!
//! - [`draw`]: seeded, committed-then-revealed draws; the only randomness in here.
//! - [`allocation`]: the quantity-ceiling rule for book-building, pure, and its verifier.
//! - [`book`]: subscriptions in Postgres, the allocation run, allotments as ledger holds.
//! - [`queue`]: the virtual waiting room: pre-queue shuffle, FIFO, admission controller.
//! - [`tokens`]: signed queue tickets and admission tokens (audiences of their own).
//! - [`latency`]: a moving p99 of the reservation path, which admission watches.
//! - [`pow`]: ALTCHA proof-of-work challenges, single use.
//! - [`limits`]: request rate limits per client IP and per user.
//! - [`waitlist`]: freed units offered in joining order, as holds of their own.
//!
//! Invariants:
//! - Every draw is reproducible by anyone from published data: the seed's hash is published
//!   before the first entry, the seed after the draw, and the entries are exported.
//! - The reservation path checks admission in memory (a signature), never in a database.
//! - Queue positions, once given, never change: they live in Postgres and are reloaded.

pub mod allocation;
pub mod book;
pub mod draw;
pub mod latency;
pub mod limits;
pub mod pow;
pub mod queue;
pub mod tokens;
pub mod waitlist;

use actix_web::web;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use time::OffsetDateTime;

use crate::auth::Principal;
use crate::catalog::config::Allocation;
use crate::catalog::Offering;
use crate::config::Settings;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::state::AppState;

/// Bytes of a pseudonym: 96 bits, hex-encoded; collisions among millions are out of reach.
pub const PSEUDONYM_BYTES: usize = 12;

/// What fairness keeps per process: keys, waiting rooms, the latency window, rate limits.
#[derive(Debug)]
pub struct Fairness {
    pub tokens: tokens::QueueKeys,
    pub pow: pow::Pow,
    pub queues: queue::Queues,
    pub latency: latency::Window,
    pub limits: limits::Limits,
    /// Key of the pseudonyms under which people appear in published lists.
    pseudonym_key: Vec<u8>,
}

impl Fairness {
    pub fn new(settings: &Settings, token_secret: &[u8], identity_key: &[u8]) -> Fairness {
        Fairness {
            tokens: tokens::QueueKeys::new(&subkey(token_secret, b"allot/queue-tokens/v1")),
            pow: pow::Pow::new(
                &settings.fairness,
                hex::encode(subkey(token_secret, b"allot/pow/v1")),
            ),
            queues: queue::Queues::default(),
            latency: latency::Window::default(),
            limits: limits::Limits::new(&settings.fairness, settings.http.trust_forwarded_for),
            pseudonym_key: subkey(identity_key, b"allot/pseudonym/v1"),
        }
    }

    /// How `user_id` appears in an offering's published lists: stable, and unlinkable to
    /// the account without our key. Its owner learns it from their own results.
    pub fn pseudonym(&self, offering_id: &str, user_id: i64) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.pseudonym_key).expect("any key size");
        mac.update(offering_id.as_bytes());
        mac.update(&[0]);
        mac.update(&user_id.to_le_bytes());
        hex::encode(&mac.finalize().into_bytes()[..PSEUDONYM_BYTES])
    }
}

/// A key of its own for each use, so a token of one kind can never pass for another.
fn subkey(secret: &[u8], label: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("any key size");
    mac.update(label);
    mac.finalize().into_bytes().to_vec()
}

/// The fairness check of the reservation path, in memory only: a book-building offering
/// takes no direct reservations, and a queued one wants a valid admission token for this
/// caller. The returned guard times the reservation for the admission controller.
pub fn gate<'a>(
    state: &'a AppState,
    offering: &Offering,
    who: &Principal,
    admission: Option<&str>,
) -> ApiResult<latency::Timing<'a>> {
    if offering.config.allocation == Allocation::BookBuilding {
        return Err(ApiError::new(ErrorCode::OfferingNotOpen));
    }
    if offering.config.queue {
        let admitted =
            admission.and_then(|token| state.fairness.tokens.verify_admission(token)).is_some_and(
                |claims| claims.sub == who.user_id.to_string() && claims.off == offering.id(),
            );
        if !admitted {
            return Err(ApiError::field(ErrorCode::QueueAdmissionRequired, "X-Queue-Admission"));
        }
    }
    Ok(state.fairness.latency.start())
}

/// Whole seconds since the epoch, for token claims and wire figures.
pub fn unix_now() -> u64 {
    OffsetDateTime::now_utc().unix_timestamp().max(0) as u64
}

/// Every fairness route; one line in `routes::configure`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.configure(crate::routes::queue::configure)
        .configure(crate::routes::allocation::configure)
        .configure(crate::routes::challenge::configure)
        .configure(crate::routes::waitlist::configure);
}

/// Background work: the admission controller (with the pre-queue shuffle at opening), the
/// waitlist's offers, and housekeeping of rate-limit and replay state.
pub fn spawn(state: &web::Data<AppState>) -> Vec<tokio::task::JoinHandle<()>> {
    vec![
        tokio::spawn(queue::controller(state.clone())),
        tokio::spawn(waitlist::offer_loop(state.clone())),
        tokio::spawn(housekeeping(state.clone())),
    ]
}

async fn housekeeping(state: web::Data<AppState>) {
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(30)).await;
        state.fairness.limits.forget_idle();
        if let Err(e) = pow::forget_spent(&state).await {
            tracing::warn!(error = %e, "pruning spent challenges failed");
        }
    }
}
