//! The reservation hot path: token (verified in memory) + offering (cached) + one ledger
//! call. [`Reservations`] holds no Postgres handle at all; the projector copies holds there
//! afterwards. Only [`mine`], a person's list, reads that projection, off the hot path.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use allot_ledger::{
    CancelOutcome, Deadline, HoldId, HoldInfo, HoldOutcome, HoldRejection, HoldRequest, HoldState,
    Ledger,
};
use allot_store::status::ReservationStatus;
use allot_store::Pool;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

pub use crate::holds::{format_id, hold_id, parse_id};

use crate::auth::Principal;
use crate::catalog::{Catalog, Offering};
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::fairness::Gate;

/// Idempotency keys are opaque to us but bounded: they are hashed, never stored.
pub const IDEMPOTENCY_KEY_BYTES_MAX: usize = 200;

/// How long after its deadline a hold that the projector has not seen resolved is marked
/// expired in Postgres: long enough for a last-second confirmation to be projected first.
pub const EXPIRY_GRACE: Duration = Duration::from_secs(2);

/// The reservation path's service: exactly what a reservation touches, all in memory but
/// the ledger.
#[derive(Clone, Debug)]
pub struct Reservations {
    ledger: Arc<Ledger>,
    catalog: Arc<Catalog>,
    /// The waiting room's admission check, and the latency window it feeds.
    gate: Gate,
    ledger_timeout: Duration,
    /// How long past its deadline a hold waits for a payment made in time.
    settlement_grace_seconds: u32,
}

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

/// A reservation in its owner's list, from the projection.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MyReservation {
    pub reservation_id: String,
    pub offering_id: String,
    pub zone: String,
    pub quantity: u64,
    pub amount_due_satang: u64,
    pub deposit_due_satang: u64,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: OffsetDateTime,
    /// `held`, `confirmed`, `cancelled` or `expired`.
    pub status: &'static str,
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

impl Reservations {
    pub fn new(
        ledger: Arc<Ledger>,
        catalog: Arc<Catalog>,
        gate: Gate,
        ledger_timeout: Duration,
        settlement_grace_seconds: u32,
    ) -> Reservations {
        Reservations { ledger, catalog, gate, ledger_timeout, settlement_grace_seconds }
    }

    /// Holds units for `who`; `true` alongside when this replays an earlier request.
    pub async fn reserve(
        &self,
        offering: &Offering,
        who: &Principal,
        key: &str,
        body: &ReserveRequest,
        admission: Option<&str>,
    ) -> ApiResult<(Reservation, bool)> {
        if !offering.accepts_reservations(self.catalog.now()) {
            return Err(ApiError::new(ErrorCode::OfferingNotOpen));
        }
        // From the token, in memory: who may reserve this offering.
        offering.config.eligibility.check(who.identity, who.verified)?;
        // In memory: a waiting room's admission token when the offering has one.
        let _timing = self.gate.check(offering, who, admission)?;
        let zone = offering.zone_number(body.zone.as_deref())?;
        let id = hold_id(offering.spec.number, who.person(), key);
        let request = HoldRequest {
            id,
            zone,
            person: who.person(),
            quantity: body.quantity.into(),
            deadline: Deadline::after(offering.config.hold_seconds, self.settlement_grace_seconds),
            allow_partial: body.allow_partial,
            partner: None,
        };
        self.place(offering, &request).await
    }

    /// Places a hold a caller checked may be placed (a person's, or a partner's for its
    /// customer): one ledger call, its outcome as the reservation or the error to answer.
    pub async fn place(
        &self,
        offering: &Offering,
        request: &HoldRequest,
    ) -> ApiResult<(Reservation, bool)> {
        let id = request.id;
        let zone = request.zone;
        let in_flight = InFlight::enter();
        let outcome =
            tokio::time::timeout(self.ledger_timeout, self.ledger.hold(&offering.spec, request))
                .await
                .map_err(|_| ApiError::ledger_timeout())??;
        drop(in_flight);
        let config = &offering.config;
        let held = match outcome {
            HoldOutcome::Held(held) if held.replayed => {
                // A retry: the reservation as it is now (confirmed, cancelled, expired),
                // not as it was when first held.
                return Ok((self.current(offering, id).await?, true));
            }
            HoldOutcome::Held(held) => held,
            // The key's first request was refused, and a refused hold id stays refused:
            // the same answer as then; a new key is a new attempt.
            HoldOutcome::SoldOut | HoldOutcome::IdFailed => {
                return Err(ApiError::new(ErrorCode::SoldOut))
            }
            HoldOutcome::PersonLimitExceeded => {
                return Err(ApiError::field(ErrorCode::PersonLimitExceeded, "quantity")
                    .with_arg("max", config.max_per_person))
            }
            HoldOutcome::PartnerAllocationExceeded => {
                return Err(ApiError::field(ErrorCode::PartnerAllocationExceeded, "quantity"))
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

    /// The deadline a hold placed now is told, as every direct reservation gets it.
    pub fn deadline(&self, offering: &Offering) -> Deadline {
        Deadline::after(offering.config.hold_seconds, self.settlement_grace_seconds)
    }

    /// A hold just replayed, as the ledger has it now.
    async fn current(&self, offering: &Offering, id: HoldId) -> ApiResult<Reservation> {
        let info = tokio::time::timeout(self.ledger_timeout, self.ledger.hold_info(id))
            .await
            .map_err(|_| ApiError::ledger_timeout())??
            .ok_or_else(|| ApiError::internal("a replayed hold cannot be read"))?;
        Ok(describe(offering, &info))
    }

    /// A reservation as the ledger has it now, whoever holds it, with its owner's user id.
    /// The caller decides who may see it (`crate::staff`); the routes answer someone else's
    /// as not found.
    pub async fn lookup(&self, id: &str) -> ApiResult<(HoldInfo, i64, Reservation)> {
        let not_found = || ApiError::field(ErrorCode::ReservationNotFound, "reservation_id");
        let id = parse_id(id).ok_or_else(not_found)?;
        let info = tokio::time::timeout(self.ledger_timeout, self.ledger.hold_info(id))
            .await
            .map_err(|_| ApiError::ledger_timeout())??
            .ok_or_else(not_found)?;
        let offering = self.catalog.by_number(info.offering).ok_or_else(not_found)?;
        let owner = i64::try_from(info.person).map_err(ApiError::internal)?;
        Ok((info, owner, describe(&offering, &info)))
    }

    /// Cancels a held reservation; the caller checked who may. The units go back at once.
    pub async fn cancel(&self, info: &HoldInfo) -> ApiResult<Reservation> {
        let outcome = tokio::time::timeout(self.ledger_timeout, self.ledger.cancel(info.id))
            .await
            .map_err(|_| ApiError::ledger_timeout())??;
        match outcome {
            CancelOutcome::Cancelled { .. } => Ok(self.lookup(&format_id(info.id)).await?.2),
            CancelOutcome::AlreadyConfirmed => {
                Err(ApiError::new(ErrorCode::ReservationNotCancellable))
            }
            CancelOutcome::AlreadyExpired => Err(ApiError::new(ErrorCode::HoldExpired)),
            CancelOutcome::HoldNotFound => Err(ApiError::new(ErrorCode::ReservationNotFound)),
        }
    }
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

/// The caller's reservations, newest first, from the projection in Postgres (a fraction of
/// a second behind the ledger). Off the hot path, so it takes the pool itself.
pub async fn mine(db: &Pool, catalog: &Catalog, who: &Principal) -> ApiResult<Vec<MyReservation>> {
    let rows = allot_store::reservations::of_user(&db.get().await?, who.user_id).await?;
    let now = SystemTime::now();
    let list = rows
        .into_iter()
        .filter_map(|row| {
            let offering = catalog.get(&row.offering_id)?;
            let zone = row.zone as u16;
            let quantity = row.quantity as u64;
            // The projection learns of expiry a moment late; the deadline itself is exact.
            let status = match row.status {
                ReservationStatus::Held if now >= row.expires_at => ReservationStatus::Expired,
                status => status,
            };
            let (due, deposit) = offering.amounts_satang(zone, quantity);
            Some(MyReservation {
                reservation_id: row.reservation_id,
                offering_id: offering.id().to_owned(),
                zone: offering.zone(zone).map_or_else(String::new, |z| z.id.clone()),
                quantity,
                amount_due_satang: due,
                deposit_due_satang: deposit,
                created_at: row.created_at.into(),
                expires_at: row.expires_at.into(),
                status: status.as_str(),
            })
        })
        .collect();
    Ok(list)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotency_keys_are_required_and_bounded() {
        assert_eq!(check_key(None).unwrap_err().code, ErrorCode::IdempotencyKeyRequired);
        assert_eq!(check_key(Some("")).unwrap_err().code, ErrorCode::ValidationError);
        assert!(check_key(Some(&"k".repeat(201))).is_err());
        assert_eq!(check_key(Some("abc-123")).unwrap(), "abc-123");
    }
}
