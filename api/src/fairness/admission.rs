//! The admission controller of the waiting rooms: the pre-queue's draw at opening, then the
//! serving counter, raised at `queue_admissions_per_second` by one instance at a time (under
//! a lease in `queue_state`) and held back while the reservation path's p99 is above
//! `queue_latency_p99_ms_max`. The other instances follow the leader's counter.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::draw;
use super::queue::WaitingRoom;
use super::room::Room;
use super::seeds::{self, SeedPurpose};
use super::unix_now;
use crate::catalog::Offering;
use crate::error::ApiResult;

/// How often the controller raises the counter (and followers catch up).
pub const TICK: Duration = Duration::from_millis(200);
/// A leader that has not renewed its lease for this long is replaced.
const LEASE_SECONDS: i32 = 3;

impl WaitingRoom {
    /// The admission controller: for every queued offering, the pre-queue draw at opening
    /// and then the serving counter, every [`TICK`], forever.
    pub async fn controller(self) {
        let instance = uuid::Uuid::new_v4();
        let mut last = Instant::now();
        loop {
            tokio::time::sleep(TICK).await;
            let elapsed = last.elapsed();
            last = Instant::now();
            for offering in self.catalog.all().into_iter().filter(|o| o.config.queue) {
                if let Err(e) = self.tick(&offering, instance, elapsed).await {
                    tracing::warn!(offering = %offering.id(), error = %e, "waiting room tick failed");
                }
            }
        }
    }

    async fn tick(
        &self,
        offering: &Offering,
        instance: uuid::Uuid,
        elapsed: Duration,
    ) -> ApiResult<()> {
        let room = self.room(offering).await?;
        let selling = offering.accepts_reservations(self.catalog.now());
        if !room.is_shuffled() {
            if selling {
                self.shuffle(offering).await?;
            }
            return self.refresh(&room).await;
        }
        if selling {
            self.advance(&room, instance, elapsed).await
        } else {
            self.refresh(&room).await
        }
    }

    /// The draw at opening, once across all instances: pre-queue entries get positions
    /// 1..n in the seed's order, and the seed is revealed.
    async fn shuffle(&self, offering: &Offering) -> ApiResult<()> {
        let seed = seeds::seed(&self.db, offering.id(), SeedPurpose::Queue).await?;
        let mut client = self.db.get().await?;
        let tx = client.transaction().await?;
        let (shuffled, base) = allot_store::queue::lock_for_draw(&tx, offering.id()).await?;
        if shuffled {
            return Ok(());
        }
        let rows = allot_store::queue::prequeue(&tx, offering.id()).await?;
        let pseudonyms: Vec<&str> = rows.iter().map(|r| r.pseudonym.as_str()).collect();
        let order = draw::order(&seed.seed, draw::CONTEXT_QUEUE, &pseudonyms);
        let users: Vec<i64> = order.iter().map(|&i| rows[i].user_id).collect();
        let positions: Vec<i64> = (1..=order.len() as i64).map(|k| base + k).collect();
        allot_store::queue::set_positions(&tx, offering.id(), &users, &positions).await?;
        let size = order.len() as i64;
        allot_store::queue::mark_shuffled(&tx, offering.id(), base + size, base + size).await?;
        allot_store::fairness::reveal_queue_seed(&tx, offering.id()).await?;
        tx.commit().await?;
        tracing::info!(offering = %offering.id(), prequeue = size, "pre-queue drawn");
        Ok(())
    }

    /// Raises the serving counter if this instance holds (or takes) the lease; follows the
    /// leader otherwise.
    async fn advance(&self, room: &Room, instance: uuid::Uuid, elapsed: Duration) -> ApiResult<()> {
        let step = self.allowance(room, elapsed);
        let client = self.db.get().await?;
        let led = allot_store::queue::advance_serving(
            &client,
            &room.offering_id,
            step,
            instance,
            LEASE_SECONDS as f64,
        )
        .await?;
        if let Some(serving) = led.map(|s| s as u64) {
            let before = room.serving();
            if serving > before {
                allot_store::queue::insert_step(&client, &room.offering_id, serving as i64).await?;
                let mut inner = room.inner.lock().expect("not poisoned");
                inner.allowance -= (serving - before) as f64;
                inner.steps.push((serving, unix_now()));
                drop(inner);
                room.serving.store(serving, Ordering::Release);
                metrics::counter!("allot_queue_admitted_total", "offering" => room.offering_id.clone())
                    .increment(serving - before);
            }
        }
        self.refresh(room).await
    }

    /// Whole admissions owed now: the rate's share of `elapsed` added to what was owed
    /// (capped at one second's worth), or none while the reservation path is saturated.
    fn allowance(&self, room: &Room, elapsed: Duration) -> i64 {
        let rate = self.settings.queue_admissions_per_second as f64;
        let p99_max = Duration::from_millis(self.settings.queue_latency_p99_ms_max);
        let saturated = self.latency.p99().is_some_and(|p| p > p99_max);
        if saturated {
            metrics::counter!("allot_queue_held_back_total", "offering" => room.offering_id.clone())
                .increment(1);
        }
        let mut inner = room.inner.lock().expect("not poisoned");
        inner.allowance = if saturated {
            0.0
        } else {
            (inner.allowance + rate * elapsed.as_secs_f64()).min(rate.max(1.0))
        };
        inner.allowance.floor() as i64
    }
}
