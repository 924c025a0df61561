//! Fairness: who gets a bond or a seat when demand is many times the supply.
//!
//! - [`draw`]: seeded, committed-then-revealed draws; the only randomness in here.
//! - [`seeds`]: each draw's seed, committed in Postgres on first need.
//! - [`allocation`]: the quantity-ceiling rule for book-building, pure, and its verifier,
//!   which is [`recount`]: the same published rule counted independently, draw included.
//! - [`book`]: subscriptions in Postgres, the allocation run, allotments as ledger holds.
//! - [`queue`]: the virtual waiting room: joining, status, the published pre-queue draw;
//!   [`room`]: a room as this process last saw it; [`admission`]: the pre-queue shuffle
//!   and the admission controller.
//! - [`gate`]: the reservation path's admission check, in memory.
//! - [`tokens`]: signed queue tickets and admission tokens (audiences of their own).
//! - [`latency`]: a moving p99 of the reservation path, which admission watches.
//! - [`pow`]: ALTCHA proof-of-work challenges, single use.
//! - [`limits`]: request rate limits per client IP and per user.
//! - [`waitlist`]: freed units offered in joining order, as holds of their own.
//!
//! Each service ([`Gate`], [`queue::WaitingRoom`], [`book::BookBuilding`],
//! [`waitlist::Waitlist`], [`pow::Pow`], [`limits::Limits`]) holds just the handles it
//! uses; [`Fairness`] builds them once and keeps them together. Nothing here knows HTTP:
//! routes extract the client's address and headers and pass them as plain values.
//!
//! Invariants:
//! - Every draw is reproducible by anyone from published data: the seed's hash is published
//!   before the first entry, the seed after the draw, and the entries are exported.
//! - The reservation path checks admission in memory (a signature), never in a database.
//! - Queue positions, once given, never change: they live in Postgres and are reloaded.

pub mod admission;
pub mod allocation;
pub mod book;
pub mod draw;
pub mod gate;
pub mod latency;
pub mod limits;
pub mod pow;
pub mod queue;
pub mod recount;
pub mod room;
pub mod seeds;
pub mod tokens;
pub mod waitlist;

use std::sync::Arc;
use std::time::Duration;

use allot_ledger::Ledger;
use allot_store::Pool;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use time::OffsetDateTime;
use tokio::task::JoinHandle;

pub use gate::Gate;

use crate::catalog::Catalog;
use crate::config::FairnessSettings;

/// Bytes of a pseudonym: 96 bits, hex-encoded; collisions among millions are out of reach.
pub const PSEUDONYM_BYTES: usize = 12;
/// How often rate-limit state and spent challenges are pruned.
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(30);

/// The stores the fairness services reach, handed over once by `startup`.
#[derive(Clone, Debug)]
pub struct Handles {
    pub db: Pool,
    pub ledger: Arc<Ledger>,
    pub catalog: Arc<Catalog>,
    /// How long a ledger call may take before the caller hears the ledger is unavailable.
    pub ledger_timeout: Duration,
    /// Every hold's settlement grace (`payments.settlement_grace_seconds`).
    pub settlement_grace_seconds: u32,
}

/// Every fairness service of this process, built once; cheap to clone (Arcs and the pool).
#[derive(Clone, Debug)]
pub struct Fairness {
    /// The reservation path's admission check.
    pub gate: Gate,
    pub queue: queue::WaitingRoom,
    pub book: book::BookBuilding,
    pub waitlist: waitlist::Waitlist,
    pub pow: Arc<pow::Pow>,
    pub limits: Arc<limits::Limits>,
    pseudonyms: Pseudonyms,
}

impl Fairness {
    pub fn new(
        handles: Handles,
        settings: &FairnessSettings,
        token_secret: &[u8],
        identity_key: &[u8],
    ) -> Fairness {
        let tokens =
            Arc::new(tokens::QueueKeys::new(&subkey(token_secret, b"allot/queue-tokens/v1")));
        let latency = Arc::new(latency::Window::default());
        let pseudonyms = Pseudonyms { key: subkey(identity_key, b"allot/pseudonym/v1").into() };
        let pow_secret = hex::encode(subkey(token_secret, b"allot/pow/v1"));
        Fairness {
            gate: Gate::new(tokens.clone(), latency.clone()),
            queue: queue::WaitingRoom::new(&handles, settings, tokens, latency, pseudonyms.clone()),
            book: book::BookBuilding::new(&handles, pseudonyms.clone()),
            waitlist: waitlist::Waitlist::new(handles.clone()),
            pow: Arc::new(pow::Pow::new(settings, pow_secret, handles.db)),
            limits: Arc::new(limits::Limits::new(settings)),
            pseudonyms,
        }
    }

    /// How `user_id` appears in an offering's published lists.
    pub fn pseudonym(&self, offering_id: &str, user_id: i64) -> String {
        self.pseudonyms.of(offering_id, user_id)
    }

    /// The reservation path's latency, as the admission controller sees it.
    pub fn latency(&self) -> &latency::Window {
        self.gate.latency()
    }

    /// Background work: the admission controller (with the pre-queue shuffle at opening),
    /// the waitlist's offers (by the leading instance only), and housekeeping of rate-limit
    /// and replay state.
    pub fn spawn(&self, leader: &crate::leader::Leader) -> Vec<JoinHandle<()>> {
        vec![
            tokio::spawn(self.queue.clone().controller()),
            tokio::spawn(self.waitlist.clone().offer_loop(leader.clone())),
            tokio::spawn(housekeeping(self.limits.clone(), self.pow.clone())),
        ]
    }
}

/// The keyed pseudonyms under which people appear in published lists.
#[derive(Clone)]
pub struct Pseudonyms {
    key: Arc<[u8]>,
}

impl std::fmt::Debug for Pseudonyms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pseudonyms").finish_non_exhaustive()
    }
}

impl Pseudonyms {
    /// How `user_id` appears in an offering's published lists: stable, and unlinkable to
    /// the account without our key. Its owner learns it from their own results.
    pub fn of(&self, offering_id: &str, user_id: i64) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key size");
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

/// Whole seconds since the epoch, for token claims and wire figures.
pub fn unix_now() -> u64 {
    OffsetDateTime::now_utc().unix_timestamp().max(0) as u64
}

async fn housekeeping(limits: Arc<limits::Limits>, pow: Arc<pow::Pow>) {
    loop {
        tokio::time::sleep(HOUSEKEEPING_INTERVAL).await;
        limits.forget_idle();
        if let Err(e) = pow.forget_spent().await {
            tracing::warn!(error = %e, "pruning spent challenges failed");
        }
    }
}
