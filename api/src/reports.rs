//! Live figures of an offering for officials: units and money straight from TigerBeetle,
//! counts and time series from the reservation projection, the waiting room's length from
//! its counters. Plus the short-lived view tokens that let a dashboard page (and its event
//! stream, which cannot send headers) be opened from a link.
//!
//! The [`Reports`] service holds exactly what that takes: the ledger, the pool, the ledger
//! timeout and the view tokens' key, derived once at start. Its statements are in
//! `allot_store::reports`; HTTP and the dashboard page stay in `routes::reports`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use allot_ledger::{Ledger, PAGE_EVENTS_MAX};
use allot_store::reports as store;
use allot_store::status::ReservationStatus;
use allot_store::Pool;
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;
use time::OffsetDateTime;

use crate::catalog::Offering;
use crate::error::{ApiError, ApiResult};

/// Minutes of history in a report's series (one point per minute).
pub const SERIES_MINUTES: i64 = 60;
/// How long a dashboard link stays valid.
pub const VIEW_TOKEN_SECONDS: u64 = 15 * 60;

#[derive(Clone, Debug, Default, Serialize, utoipa::ToSchema)]
pub struct ReservationCounts {
    pub held: u64,
    pub confirmed: u64,
    pub expired: u64,
    pub cancelled: u64,
}

/// One minute of the chart.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Point {
    /// Start of the minute, unix seconds.
    pub minute: i64,
    /// Reservations made in that minute.
    pub reservations: u64,
    /// Deposits collected by the end of that minute (cumulative), satang.
    pub funds_satang: u64,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct OfferingReport {
    pub offering_id: String,
    pub name: BTreeMap<String, String>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub generated_at: OffsetDateTime,
    /// Units (baht of face value, or seats), live from the ledger.
    pub supply: u64,
    pub remaining: u64,
    pub held: u64,
    pub confirmed: u64,
    /// Units whose holds lapsed or were cancelled, from the projection.
    pub expired: u64,
    pub cancelled: u64,
    /// Reservations by state, from the projection.
    pub reservations: ReservationCounts,
    /// Money, live from the ledger, satang.
    pub deposits_collected_satang: u64,
    pub refunds_payable_satang: u64,
    /// Reservations made in the last full minute.
    pub reservations_per_minute: u64,
    /// People waiting in the waiting room; absent when the offering has none.
    pub queue_length: Option<u64>,
    /// The last [`SERIES_MINUTES`] minutes, oldest first.
    pub series: Vec<Point>,
}

fn to_u64(v: u128) -> u64 {
    u64::try_from(v).unwrap_or(u64::MAX)
}

fn minute_of(t: SystemTime) -> i64 {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    secs - secs.rem_euclid(60)
}

/// The reports service: exactly the handles the figures and view tokens need. Built once
/// at start; cheap to clone (Arcs and the pool), so an event stream keeps its own copy.
#[derive(Clone)]
pub struct Reports {
    /// Units and money, live.
    ledger: Arc<Ledger>,
    /// The reservation projection and the waiting room's counters.
    db: Pool,
    /// A ledger read that takes longer fails the report.
    ledger_timeout: Duration,
    /// The key of view tokens, derived once from the access-token secret.
    view_key: HmacSha256,
}

impl std::fmt::Debug for Reports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reports")
            .field("ledger_timeout", &self.ledger_timeout)
            .finish_non_exhaustive()
    }
}

/// What the ledger says now: zones, money, and deposits minute by minute.
struct Live {
    zones: Vec<allot_ledger::ZoneBalance>,
    money: allot_ledger::MoneyBalance,
    funds: Vec<u64>,
}

/// What the projection and the waiting room say.
struct Projected {
    counts: ReservationCounts,
    expired_units: u64,
    cancelled_units: u64,
    per_minute: HashMap<i64, u64>,
    queue_length: Option<u64>,
}

impl Reports {
    pub fn new(
        ledger: Arc<Ledger>,
        db: Pool,
        ledger_timeout: Duration,
        token_secret: &[u8],
    ) -> Reports {
        Reports { ledger, db, ledger_timeout, view_key: view_key(token_secret) }
    }

    /// Builds the report. Ledger reads are bounded by the ledger timeout; the projection
    /// can lag the ledger by the projector's interval.
    pub async fn build(&self, offering: &Offering) -> ApiResult<OfferingReport> {
        let ledger = &self.ledger;
        let balances = async {
            let zones = ledger.zone_balances(&offering.spec).await?;
            let money = ledger.money_balance(&offering.spec).await?;
            Ok::<_, allot_ledger::LedgerError>((zones, money))
        };
        let (zones, money) = self.in_time(balances).await??;
        let now = SystemTime::now();
        let first_minute = minute_of(now) - (SERIES_MINUTES - 1) * 60;
        let funds = self.in_time(self.funds_by_minute(offering, first_minute)).await??;
        let live = Live { zones, money, funds };
        let projected = self.projected(offering.id(), first_minute).await?;
        Ok(assemble(offering, now, first_minute, live, projected))
    }

    /// `read`, or `ledger_timeout` if it takes longer than the ledger may.
    async fn in_time<T>(&self, read: impl std::future::Future<Output = T>) -> ApiResult<T> {
        let late = |_| ApiError::ledger_timeout();
        tokio::time::timeout(self.ledger_timeout, read).await.map_err(late)
    }

    async fn projected(&self, offering: &str, first_minute: i64) -> ApiResult<Projected> {
        let client = self.db.get().await?;
        let mut counts = ReservationCounts::default();
        let (mut expired_units, mut cancelled_units) = (0u64, 0u64);
        for row in store::status_counts(&client, offering).await? {
            let (n, units) = (row.reservations as u64, row.units as u64);
            match row.status {
                ReservationStatus::Held => counts.held = n,
                ReservationStatus::Confirmed => counts.confirmed = n,
                ReservationStatus::Expired => (counts.expired, expired_units) = (n, units),
                ReservationStatus::Cancelled => (counts.cancelled, cancelled_units) = (n, units),
            }
        }
        let since = UNIX_EPOCH + Duration::from_secs(first_minute as u64);
        let per_minute = store::reservations_per_minute(&client, offering, since)
            .await?
            .iter()
            .map(|m| (m.minute, m.reservations as u64))
            .collect();
        // Waiting: everyone with a position above the serving counter, plus the pre-queue.
        let queue_length = store::queue_length(&client, offering).await?.map(|n| n.max(0) as u64);
        Ok(Projected { counts, expired_units, cancelled_units, per_minute, queue_length })
    }

    /// Cumulative deposits at the end of each minute of the series, from the deposits
    /// account's balance history.
    async fn funds_by_minute(&self, offering: &Offering, first_minute: i64) -> ApiResult<Vec<u64>> {
        let start = UNIX_EPOCH + Duration::from_secs(first_minute as u64);
        let history = self.ledger.deposits_history(&offering.spec, start).await?;
        // The balance just before the window: where the line starts.
        let mut level = to_u64(history.opening_satang);
        // Only the latest samples of a busy hour fit one page; then the oldest minutes of it
        // carry the oldest sample read.
        let samples = &history.samples;
        if samples.len() == PAGE_EVENTS_MAX as usize {
            level = samples.first().map_or(level, |b| to_u64(b.deposits_satang));
        }
        let mut out = Vec::with_capacity(SERIES_MINUTES as usize);
        let mut next = samples.iter().peekable();
        for i in 0..SERIES_MINUTES {
            let end = first_minute + (i + 1) * 60;
            while let Some(b) = next.next_if(|b| minute_of(b.timestamp) < end) {
                level = to_u64(b.deposits_satang);
            }
            out.push(level);
        }
        Ok(out)
    }

    /// A token that opens one offering's dashboard for [`VIEW_TOKEN_SECONDS`]:
    /// `<expiry>.<user>.<hex HMAC of offering, user, expiry>`.
    pub fn issue_view_token(&self, offering: &str, user_id: i64) -> (String, u64) {
        let exp = crate::identity::tokens::now_seconds() + VIEW_TOKEN_SECONDS;
        let mut mac = self.view_key.clone();
        mac.update(format!("{offering}|{user_id}|{exp}").as_bytes());
        (format!("{exp}.{user_id}.{}", hex::encode(mac.finalize().into_bytes())), exp)
    }

    /// The user a view token was issued to and its expiry, if it is valid for `offering`
    /// now.
    pub fn check_view_token(&self, offering: &str, token: &str) -> ApiResult<(i64, u64)> {
        let bad = || ApiError::new(crate::error::ErrorCode::Unauthorized);
        let mut parts = token.splitn(3, '.');
        let (Some(exp), Some(user), Some(tag)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad());
        };
        let (exp, user): (u64, i64) =
            (exp.parse().map_err(|_| bad())?, user.parse().map_err(|_| bad())?);
        let tag = hex::decode(tag).map_err(|_| bad())?;
        let mut mac = self.view_key.clone();
        mac.update(format!("{offering}|{user}|{exp}").as_bytes());
        mac.verify_slice(&tag).map_err(|_| bad())?;
        if exp <= crate::identity::tokens::now_seconds() {
            return Err(bad());
        }
        Ok((user, exp))
    }
}

/// The report from its two sources, with the series minute by minute.
fn assemble(
    offering: &Offering,
    now: SystemTime,
    first_minute: i64,
    live: Live,
    projected: Projected,
) -> OfferingReport {
    let Live { zones, money, funds } = live;
    let per_minute = &projected.per_minute;
    let series: Vec<Point> = (0..SERIES_MINUTES)
        .map(|i| {
            let minute = first_minute + i * 60;
            Point {
                minute,
                reservations: per_minute.get(&minute).copied().unwrap_or(0),
                funds_satang: funds[i as usize],
            }
        })
        .collect();
    let last_full = minute_of(now) - 60;
    OfferingReport {
        offering_id: offering.id().to_owned(),
        name: offering.config.name.clone(),
        generated_at: now.into(),
        supply: to_u64(zones.iter().map(|z| z.supply).sum()),
        remaining: to_u64(zones.iter().map(|z| z.remaining).sum()),
        held: to_u64(zones.iter().map(|z| z.held).sum()),
        confirmed: to_u64(zones.iter().map(|z| z.confirmed).sum()),
        expired: projected.expired_units,
        cancelled: projected.cancelled_units,
        reservations: projected.counts,
        deposits_collected_satang: to_u64(money.deposits_satang),
        refunds_payable_satang: to_u64(money.refunds_payable_satang),
        reservations_per_minute: per_minute.get(&last_full).copied().unwrap_or(0),
        queue_length: projected.queue_length,
        series,
    }
}

type HmacSha256 = Hmac<Sha256>;

/// The key of view tokens, derived from the access-token secret so every instance agrees
/// without another secret to configure.
fn view_key(token_secret: &[u8]) -> HmacSha256 {
    let mut derive = HmacSha256::new_from_slice(token_secret).expect("HMAC takes any key length");
    derive.update(b"allot/dashboard-view/v1");
    let key = derive.finalize().into_bytes();
    HmacSha256::new_from_slice(&key).expect("HMAC takes any key length")
}
