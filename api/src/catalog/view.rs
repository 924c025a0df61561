//! An offering as the public sees it: its configuration and live figures per zone.

use std::time::Duration;

use allot_ledger::Ledger;
use serde::Serialize;

use super::{Offering, OfferingConfig};
use crate::error::{ApiError, ApiResult};

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
    /// Live figures per zone, at most `availability_cache_ms` old.
    pub availability: Vec<ZoneView>,
}

/// How long a ledger read may take, and how old cached figures may be.
#[derive(Clone, Copy, Debug)]
pub struct ViewLimits {
    pub ledger_timeout: Duration,
    pub availability_max_age: Duration,
}

pub async fn view(
    ledger: &Ledger,
    limits: ViewLimits,
    offering: &Offering,
) -> ApiResult<OfferingView> {
    let balances = tokio::time::timeout(
        limits.ledger_timeout,
        offering.availability(ledger, limits.availability_max_age),
    )
    .await
    .map_err(|_| ApiError::ledger_timeout())??;
    let to_u64 = |v: u128| u64::try_from(v).expect("bounded by supply");
    let availability = offering
        .config
        .zones
        .iter()
        .zip(balances)
        .map(|(zone, b)| ZoneView {
            id: zone.id.clone(),
            price_satang: zone.price_satang,
            supply: to_u64(b.supply),
            held: to_u64(b.held),
            confirmed: to_u64(b.confirmed),
            remaining: to_u64(b.remaining),
        })
        .collect();
    Ok(OfferingView {
        config: offering.config.clone(),
        open: offering.accepts_reservations(time::OffsetDateTime::now_utc()),
        availability,
    })
}
