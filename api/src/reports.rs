//! Live figures of an offering for officials: units and money straight from TigerBeetle,
//! counts and time series from the reservation projection, the waiting room's length from
//! its counters. Plus the short-lived view tokens that let a dashboard page (and its event
//! stream, which cannot send headers) be opened from a link.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use allot_ledger::PAGE_EVENTS_MAX;
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;
use time::OffsetDateTime;

use crate::catalog::Offering;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

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

/// Builds the report. Ledger reads are bounded by the ledger timeout; the projection can
/// lag the ledger by the projector's interval.
pub async fn build(state: &AppState, offering: &Offering) -> ApiResult<OfferingReport> {
    let ledger = &state.ledger;
    let timeout = state.tb_timeout();
    let live = async {
        let zones = ledger.zone_balances(&offering.spec).await?;
        let money = ledger.money_balance(&offering.spec).await?;
        Ok::<_, allot_ledger::LedgerError>((zones, money))
    };
    let (zones, money) = tokio::time::timeout(timeout, live)
        .await
        .map_err(|_| crate::reservations::ledger_timeout())??;
    let now = SystemTime::now();
    let first_minute = minute_of(now) - (SERIES_MINUTES - 1) * 60;
    let funds = tokio::time::timeout(timeout, funds_by_minute(state, offering, first_minute))
        .await
        .map_err(|_| crate::reservations::ledger_timeout())??;

    let client = state.db.get().await?;
    let rows = client
        .query(
            "SELECT status, count(*), coalesce(sum(quantity), 0)::bigint FROM reservations
             WHERE offering_id = $1 GROUP BY status",
            &[&offering.id()],
        )
        .await?;
    let mut counts = ReservationCounts::default();
    let (mut expired, mut cancelled) = (0u64, 0u64);
    for row in rows {
        let (status, n, units): (String, i64, i64) = (row.get(0), row.get(1), row.get(2));
        match status.as_str() {
            "held" => counts.held = n as u64,
            "confirmed" => counts.confirmed = n as u64,
            "expired" => (counts.expired, expired) = (n as u64, units as u64),
            "cancelled" => (counts.cancelled, cancelled) = (n as u64, units as u64),
            _ => {}
        }
    }
    let since = UNIX_EPOCH + Duration::from_secs(first_minute as u64);
    let per_minute: HashMap<i64, u64> = client
        .query(
            "SELECT extract(epoch FROM date_trunc('minute', created_at))::bigint, count(*)
             FROM reservations WHERE offering_id = $1 AND created_at >= $2 GROUP BY 1",
            &[&offering.id(), &since],
        )
        .await?
        .iter()
        .map(|r| (r.get::<_, i64>(0), r.get::<_, i64>(1) as u64))
        .collect();
    let queue_length = queue_length(&client, offering.id()).await?;

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
    Ok(OfferingReport {
        offering_id: offering.id().to_owned(),
        name: offering.config.name.clone(),
        generated_at: now.into(),
        supply: to_u64(zones.iter().map(|z| z.supply).sum()),
        remaining: to_u64(zones.iter().map(|z| z.remaining).sum()),
        held: to_u64(zones.iter().map(|z| z.held).sum()),
        confirmed: to_u64(zones.iter().map(|z| z.confirmed).sum()),
        expired,
        cancelled,
        reservations: counts,
        deposits_collected_satang: to_u64(money.deposits_satang),
        refunds_payable_satang: to_u64(money.refunds_payable_satang),
        reservations_per_minute: per_minute.get(&last_full).copied().unwrap_or(0),
        queue_length,
        series,
    })
}

/// Cumulative deposits at the end of each minute of the series, from the deposits
/// account's balance history.
async fn funds_by_minute(
    state: &AppState,
    offering: &Offering,
    first_minute: i64,
) -> ApiResult<Vec<u64>> {
    let start = UNIX_EPOCH + Duration::from_secs(first_minute as u64);
    let history = state.ledger.deposits_history(&offering.spec, start).await?;
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

/// Waiting: everyone with a position above the serving counter, plus the pre-queue.
async fn queue_length(client: &tokio_postgres::Client, offering: &str) -> ApiResult<Option<u64>> {
    let exists: bool =
        client.query_one("SELECT to_regclass('queue_state') IS NOT NULL", &[]).await?.get(0);
    if !exists {
        return Ok(None);
    }
    let row = client
        .query_opt(
            "SELECT s.next_position - s.serving
                    + (SELECT count(*) FROM queue_entries e
                       WHERE e.offering_id = s.offering_id AND e.position IS NULL)
             FROM queue_state s WHERE s.offering_id = $1",
            &[&offering],
        )
        .await?;
    Ok(row.map(|r| r.get::<_, i64>(0).max(0) as u64))
}

type HmacSha256 = Hmac<Sha256>;

/// The key of view tokens, derived from the access-token secret so every instance agrees
/// without another secret to configure.
fn view_key(state: &AppState) -> ApiResult<HmacSha256> {
    let secrets = crate::secrets::load(&state.settings).map_err(ApiError::internal)?;
    let mut derive =
        HmacSha256::new_from_slice(&secrets.token_secret).expect("HMAC takes any key length");
    derive.update(b"allot/dashboard-view/v1");
    let key = derive.finalize().into_bytes();
    Ok(HmacSha256::new_from_slice(&key).expect("HMAC takes any key length"))
}

/// A token that opens one offering's dashboard for [`VIEW_TOKEN_SECONDS`]:
/// `<expiry>.<user>.<hex HMAC of offering, user, expiry>`.
pub fn issue_view_token(
    state: &AppState,
    offering: &str,
    user_id: i64,
) -> ApiResult<(String, u64)> {
    let exp = crate::identity::tokens::now_seconds() + VIEW_TOKEN_SECONDS;
    let mut mac = view_key(state)?;
    mac.update(format!("{offering}|{user_id}|{exp}").as_bytes());
    Ok((format!("{exp}.{user_id}.{}", hex::encode(mac.finalize().into_bytes())), exp))
}

/// The user a view token was issued to and its expiry, if it is valid for `offering` now.
pub fn check_view_token(state: &AppState, offering: &str, token: &str) -> ApiResult<(i64, u64)> {
    let bad = || ApiError::new(crate::error::ErrorCode::Unauthorized);
    let mut parts = token.splitn(3, '.');
    let (Some(exp), Some(user), Some(tag)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    let (exp, user): (u64, i64) =
        (exp.parse().map_err(|_| bad())?, user.parse().map_err(|_| bad())?);
    let tag = hex::decode(tag).map_err(|_| bad())?;
    let mut mac = view_key(state)?;
    mac.update(format!("{offering}|{user}|{exp}").as_bytes());
    mac.verify_slice(&tag).map_err(|_| bad())?;
    if exp <= crate::identity::tokens::now_seconds() {
        return Err(bad());
    }
    Ok((user, exp))
}
