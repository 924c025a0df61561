//! The reservation hot path: token (verified in memory) + offering (cached) + one ledger
//! call. Nothing here touches Postgres; the projector copies holds there afterwards.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use allot_ledger::{HoldId, HoldInfo, HoldOutcome, HoldRejection, HoldRequest, HoldState};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::auth::Principal;
use crate::catalog::Offering;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::state::AppState;

/// Idempotency keys are opaque to us but bounded: they are hashed, never stored.
pub const IDEMPOTENCY_KEY_BYTES_MAX: usize = 200;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReserveRequest {
    /// Units: baht of face value (bonds) or seats (tickets).
    pub quantity: u64,
    /// Zone id; may be left out for a one-zone offering.
    pub zone: Option<String>,
    /// Accept fewer (whole lots, at least the minimum) when not enough is left.
    #[serde(default)]
    pub allow_partial: bool,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Reservation {
    pub reservation_id: String,
    pub offering_id: String,
    pub zone: String,
    pub quantity: u64,
    pub amount_due_satang: u64,
    pub deposit_due_satang: u64,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: OffsetDateTime,
    /// `held`, `confirmed`, `cancelled` or `expired`.
    pub status: &'static str,
}

/// The hold id of a request: the same person, offering and key always name the same hold,
/// which is what makes a retried request safe.
pub fn hold_id(offering: u32, person: u64, key: &str) -> HoldId {
    let mut hash = Sha256::new();
    hash.update(b"allot/hold/v1");
    hash.update(offering.to_le_bytes());
    hash.update(person.to_le_bytes());
    hash.update(key.as_bytes());
    let digest = hash.finalize();
    HoldId::from_hash(digest[..16].try_into().expect("16 bytes"))
}

pub fn format_id(id: HoldId) -> String {
    format!("{:030x}", id.get())
}

pub fn parse_id(text: &str) -> Option<HoldId> {
    if text.len() != 30 {
        return None;
    }
    u128::from_str_radix(text, 16).ok().and_then(HoldId::new)
}

pub fn check_key(key: Option<&str>) -> ApiResult<&str> {
    let key =
        key.ok_or_else(|| ApiError::field(ErrorCode::IdempotencyKeyRequired, "Idempotency-Key"))?;
    if key.is_empty()
        || key.len() > IDEMPOTENCY_KEY_BYTES_MAX
        || !key.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(ApiError::validation(
            "Idempotency-Key",
            format!("1 to {IDEMPOTENCY_KEY_BYTES_MAX} visible ASCII characters"),
        ));
    }
    Ok(key)
}

pub async fn reserve(
    state: &AppState,
    offering: &Offering,
    who: &Principal,
    key: &str,
    body: &ReserveRequest,
    admission: Option<&str>,
) -> ApiResult<(Reservation, bool)> {
    if !offering.accepts_reservations(OffsetDateTime::now_utc()) {
        return Err(ApiError::new(ErrorCode::OfferingNotOpen));
    }
    // In memory: a waiting room's admission token when the offering has one.
    let _timing = crate::fairness::gate(state, offering, who, admission)?;
    let zone = offering.zone_number(body.zone.as_deref())?;
    let id = hold_id(offering.spec.number, who.person(), key);
    let request = HoldRequest {
        id,
        zone,
        person: who.person(),
        quantity: body.quantity.into(),
        timeout_seconds: offering.config.hold_seconds,
        allow_partial: body.allow_partial,
    };
    let in_flight = InFlight::enter();
    let outcome =
        tokio::time::timeout(state.tb_timeout(), state.ledger.hold(&offering.spec, &request))
            .await
            .map_err(|_| ledger_timeout())??;
    drop(in_flight);
    let config = &offering.config;
    let held = match outcome {
        HoldOutcome::Held(held) => held,
        HoldOutcome::SoldOut => return Err(ApiError::new(ErrorCode::SoldOut)),
        HoldOutcome::PersonLimitExceeded => {
            return Err(ApiError::field(ErrorCode::PersonLimitExceeded, "quantity")
                .with_arg("max", config.max_per_person))
        }
        HoldOutcome::IdReused => {
            return Err(ApiError::field(ErrorCode::IdempotencyKeyReused, "Idempotency-Key"))
        }
        HoldOutcome::Rejected(rejection) => return Err(rejected(rejection, offering)),
    };
    metrics::counter!("allot_holds_total", "offering" => config.id.clone()).increment(1);
    let quantity = u64::try_from(held.quantity).expect("bounded by supply");
    let (due, deposit) = offering.amounts_satang(zone, quantity);
    let reservation = Reservation {
        reservation_id: format_id(id),
        offering_id: config.id.clone(),
        zone: config.zones[zone as usize - 1].id.clone(),
        quantity,
        amount_due_satang: due,
        deposit_due_satang: deposit,
        expires_at: held.expires_at.into(),
        status: HoldState::Held.as_str(),
    };
    Ok((reservation, held.replayed))
}

/// A reservation as the ledger has it now, for its owner or staff.
pub async fn read(
    state: &AppState,
    who: &Principal,
    id: &str,
) -> ApiResult<(HoldInfo, Reservation)> {
    let not_found = || ApiError::field(ErrorCode::ReservationNotFound, "reservation_id");
    let id = parse_id(id).ok_or_else(not_found)?;
    let info = tokio::time::timeout(state.tb_timeout(), state.ledger.hold_info(id))
        .await
        .map_err(|_| ledger_timeout())??
        .ok_or_else(not_found)?;
    if info.person != who.person() && !who.is_staff() {
        // Someone else's reservation does not exist, as far as this caller can tell.
        return Err(not_found());
    }
    let offering = state.catalog.by_number(info.offering).ok_or_else(not_found)?;
    Ok((info, describe(&offering, &info)))
}

pub fn describe(offering: &Offering, info: &HoldInfo) -> Reservation {
    let quantity = u64::try_from(info.quantity).expect("bounded by supply");
    let (due, deposit) = offering.amounts_satang(info.zone, quantity);
    Reservation {
        reservation_id: format_id(info.id),
        offering_id: offering.id().to_owned(),
        zone: offering.zone(info.zone).map_or_else(String::new, |z| z.id.clone()),
        quantity,
        amount_due_satang: due,
        deposit_due_satang: deposit,
        expires_at: info.expires_at.into(),
        status: info.state.as_str(),
    }
}

fn rejected(rejection: HoldRejection, offering: &Offering) -> ApiError {
    let c = &offering.config;
    match rejection {
        HoldRejection::UnknownZone => ApiError::field(ErrorCode::ZoneNotFound, "zone"),
        HoldRejection::BelowMinimum => {
            ApiError::field(ErrorCode::BelowMinimum, "quantity").with_arg("min", c.min_quantity)
        }
        HoldRejection::NotLotMultiple => {
            ApiError::field(ErrorCode::NotLotMultiple, "quantity").with_arg("lot", c.lot)
        }
        HoldRejection::AboveMaximum => {
            ApiError::field(ErrorCode::AboveMaximum, "quantity").with_arg("max", c.max_per_person)
        }
        HoldRejection::TimeoutOutOfRange => {
            ApiError::internal("offering hold_seconds out of range")
        }
    }
}

/// Holds this process has in flight at the TigerBeetle client. The client packs everything
/// waiting into its next request, so the value seen at submission is the batch that hold can
/// share: recorded as `allot_ledger_batch_holds`, the batch-size metric operators watch.
struct InFlight;

static HOLDS_IN_FLIGHT: AtomicU64 = AtomicU64::new(0);

impl InFlight {
    fn enter() -> InFlight {
        let now = HOLDS_IN_FLIGHT.fetch_add(1, Ordering::Relaxed) + 1;
        metrics::histogram!("allot_ledger_batch_holds").record(now as f64);
        InFlight
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        HOLDS_IN_FLIGHT.fetch_sub(1, Ordering::Relaxed);
    }
}

pub fn ledger_timeout() -> ApiError {
    metrics::counter!("allot_ledger_timeouts_total").increment(1);
    tracing::warn!("ledger call timed out");
    ApiError::new(ErrorCode::LedgerUnavailable)
}

/// How long after its deadline a hold that the projector has not seen resolved is marked
/// expired in Postgres: long enough for a last-second confirmation to be projected first.
pub const EXPIRY_GRACE: Duration = Duration::from_secs(2);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hold_ids_are_stable_and_distinct_per_person_offering_and_key() {
        let a = hold_id(1, 42, "key-1");
        assert_eq!(a, hold_id(1, 42, "key-1"));
        assert_ne!(a, hold_id(1, 43, "key-1"));
        assert_ne!(a, hold_id(2, 42, "key-1"));
        assert_ne!(a, hold_id(1, 42, "key-2"));
        assert_eq!(parse_id(&format_id(a)), Some(a));
        assert_eq!(parse_id("zz"), None);
    }

    #[test]
    fn idempotency_keys_are_required_and_bounded() {
        assert_eq!(check_key(None).unwrap_err().code, ErrorCode::IdempotencyKeyRequired);
        assert_eq!(check_key(Some("")).unwrap_err().code, ErrorCode::ValidationError);
        assert!(check_key(Some(&"k".repeat(201))).is_err());
        assert_eq!(check_key(Some("abc-123")).unwrap(), "abc-123");
    }
}
