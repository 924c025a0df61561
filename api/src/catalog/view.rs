//! An offering as the public sees it: its configuration and live figures per zone.

use std::time::Duration;

use allot_ledger::Ledger;
use serde::Serialize;

use super::{Figures, Offering, OfferingConfig};
use crate::error::{ApiError, ApiResult, ErrorCode};

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ZoneView {
    pub id: String,
    pub price_satang: u64,
    pub supply: u64,
    pub held: u64,
    pub confirmed: u64,
    pub remaining: u64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OfferingView {
    #[serde(flatten)]
    pub config: OfferingConfig,
    /// Accepting reservations right now.
    pub open: bool,
    /// Live figures per zone, at most `availability_cache_ms` old, unless `stale`.
    pub availability: Vec<ZoneView>,
    /// The ledger did not answer: `availability` is the last known, as of `availability_as_of`.
    pub stale: bool,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub availability_as_of: time::OffsetDateTime,
}

/// How long a ledger read may take, and how old cached figures may be.
#[derive(Clone, Copy, Debug)]
pub struct ViewLimits {
    pub ledger_timeout: Duration,
    pub availability_max_age: Duration,
}

/// The offering with its figures: live when the ledger answers in time, else the last
/// known ones marked stale (a page that shows a moment-old count beats an error page);
/// `ledger_unavailable` only when this instance never read them.
pub async fn view(
    ledger: &Ledger,
    limits: ViewLimits,
    offering: &Offering,
    now: time::OffsetDateTime,
) -> ApiResult<OfferingView> {
    let live = tokio::time::timeout(
        limits.ledger_timeout,
        offering.availability(ledger, limits.availability_max_age),
    )
    .await
    .map_err(|_| ApiError::ledger_timeout())
    .and_then(|r| r);
    let (figures, stale) = match live {
        Ok(figures) => (figures, false),
        Err(e) if e.code == ErrorCode::LedgerUnavailable => {
            (offering.last_availability().ok_or(e)?, true)
        }
        Err(e) => return Err(e),
    };
    Ok(OfferingView {
        config: offering.config.clone(),
        open: offering.accepts_reservations(now),
        availability: zone_views(offering, &figures),
        stale,
        availability_as_of: figures.as_of,
    })
}

fn zone_views(offering: &Offering, figures: &Figures) -> Vec<ZoneView> {
    let to_u64 = |v: u128| u64::try_from(v).expect("bounded by supply");
    offering
        .config
        .zones
        .iter()
        .zip(&figures.zones)
        .map(|(zone, b)| ZoneView {
            id: zone.id.clone(),
            price_satang: zone.price_satang,
            supply: to_u64(b.supply),
            held: to_u64(b.held),
            confirmed: to_u64(b.confirmed),
            remaining: to_u64(b.remaining),
        })
        .collect()
}
