//! A waiting room as this process last saw it, and how it catches up with Postgres.
//!
//! Postgres holds the truth (entries with positions, counters, the steps of the serving
//! counter with their times), so a restart reorders nobody. Every instance keeps this copy
//! in memory, and status reads use only it and the signed ticket.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use super::queue::WaitingRoom;
use super::seeds::{self, SeedPurpose};
use super::tokens::TicketClaims;
use super::unix_now;
use crate::catalog::Offering;
use crate::error::ApiResult;

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
    pub(super) serving: AtomicU64,
    pub(super) last_position: AtomicU64,
    shuffled: AtomicBool,
    pub(super) inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
pub(super) struct Inner {
    /// Pre-queue entries' drawn positions, by pseudonym (their tickets carry none).
    drawn: HashMap<String, u64>,
    /// (serving counter, unix seconds it was reached), rising in both.
    pub(super) steps: Vec<(u64, u64)>,
    /// Admissions owed by the rate but not yet given (fractions carry over ticks).
    pub(super) allowance: f64,
}

impl Room {
    pub fn serving(&self) -> u64 {
        self.serving.load(Ordering::Acquire)
    }

    pub fn is_shuffled(&self) -> bool {
        self.shuffled.load(Ordering::Acquire)
    }

    /// When position `p` was admitted, if it has been.
    pub(super) fn admitted_at(&self, p: u64) -> Option<u64> {
        if p > self.serving() {
            return None;
        }
        let inner = self.inner.lock().expect("not poisoned");
        let i = inner.steps.partition_point(|(s, _)| *s < p);
        // Steps are written with the counter; a missing one means the row is still on its
        // way to this follower: count the admission from now, never earlier.
        Some(inner.steps.get(i).map_or_else(unix_now, |(_, at)| *at))
    }

    pub(super) fn position_of(&self, claims: &TicketClaims) -> Option<u64> {
        claims
            .pos
            .or_else(|| self.inner.lock().expect("not poisoned").drawn.get(&claims.entry).copied())
    }
}

impl WaitingRoom {
    /// The offering's room, loaded on first need (the controller loads it within a tick too).
    pub async fn room(&self, offering: &Offering) -> ApiResult<Arc<Room>> {
        if let Some(room) = self.rooms.get(offering.id()) {
            return Ok(room);
        }
        let room = self.load(offering).await?;
        self.rooms.put(room.clone());
        Ok(room)
    }

    /// Sets up (once, in Postgres) and loads an offering's room into memory.
    async fn load(&self, offering: &Offering) -> ApiResult<Arc<Room>> {
        // The draw's seed is committed when the pre-queue opens, before anyone can join.
        seeds::seed(&self.db, offering.id(), SeedPurpose::Queue).await?;
        // The connection goes back before `refresh` takes one: a burst of first joins, each
        // holding one while waiting for a second, would otherwise take the whole pool and
        // wait on each other forever.
        allot_store::queue::create_state(&self.db.get().await?, offering.id()).await?;
        let room = Arc::new(Room {
            offering_id: offering.id().to_owned(),
            serving: AtomicU64::new(0),
            last_position: AtomicU64::new(0),
            shuffled: AtomicBool::new(false),
            inner: Mutex::new(Inner::default()),
        });
        self.refresh(&room).await?;
        Ok(room)
    }

    /// Brings the room up to date with Postgres: counters, the draw once it happened, steps.
    pub(super) async fn refresh(&self, room: &Room) -> ApiResult<()> {
        let client = self.db.get().await?;
        let state = allot_store::queue::state(&client, &room.offering_id).await?;
        if state.shuffled && !room.is_shuffled() {
            let rows = allot_store::queue::drawn_positions(
                &client,
                &room.offering_id,
                state.prequeue_size,
            )
            .await?;
            let drawn = rows.into_iter().map(|(pseudonym, p)| (pseudonym, p as u64)).collect();
            room.inner.lock().expect("not poisoned").drawn = drawn;
            room.shuffled.store(true, Ordering::Release);
        }
        let known = room.inner.lock().expect("not poisoned").steps.last().map_or(0, |s| s.0) as i64;
        let steps = allot_store::queue::steps_after(&client, &room.offering_id, known).await?;
        {
            let mut inner = room.inner.lock().expect("not poisoned");
            inner.steps.extend(steps.iter().map(|s| (s.serving as u64, s.at_unix as u64)));
        }
        room.last_position.fetch_max(state.next_position as u64, Ordering::AcqRel);
        room.serving.fetch_max(state.serving as u64, Ordering::AcqRel);
        Ok(())
    }
}
