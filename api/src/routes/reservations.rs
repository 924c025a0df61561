//! Reservations: create (the hot path), read, list mine, cancel.

use actix_web::{delete, get, post, web, HttpRequest, HttpResponse};
use allot_ledger::CancelOutcome;
use serde::Serialize;
use time::OffsetDateTime;

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::reservations::{self as domain, Reservation, ReserveRequest};
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(create).service(show).service(mine).service(cancel);
}

/// Holds units for the caller until the deadline. Same `Idempotency-Key` and body: the same
/// reservation (201 again); same key, other body: `idempotency_key_reused`.
#[utoipa::path(post, path = "/v1/offerings/{id}/reservations",
    request_body = ReserveRequest,
    params(("Idempotency-Key" = String, Header, description = "client-chosen, unique per intended reservation"),
        ("X-Queue-Admission" = Option<String>, Header, description = "admission token, for offerings with a waiting room")),
    responses(
        (status = 201, body = Reservation),
        (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody),
        (status = 422, body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])))]
#[post("/v1/offerings/{id}/reservations")]
pub async fn create(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<String>,
    req: HttpRequest,
    body: web::Json<ReserveRequest>,
) -> ApiResult<HttpResponse> {
    let key = req.headers().get("Idempotency-Key").and_then(|v| v.to_str().ok());
    let key = domain::check_key(key)?;
    let offering = state.catalog.find(&id)?;
    let admission = req.headers().get("X-Queue-Admission").and_then(|v| v.to_str().ok());
    let (reservation, _replayed) =
        domain::reserve(&state, &offering, &who, key, &body, admission).await?;
    Ok(HttpResponse::Created().json(reservation))
}

/// A reservation's state as the ledger has it now (owner or staff).
#[utoipa::path(get, path = "/v1/reservations/{id}",
    responses((status = 200, body = Reservation), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
#[get("/v1/reservations/{id}")]
pub async fn show(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let (_, reservation) = domain::read(&state, &who, &id).await?;
    Ok(HttpResponse::Ok().json(reservation))
}

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
    pub status: String,
}

/// The caller's reservations, newest first, from the projection (a fraction of a second
/// behind the ledger).
#[utoipa::path(get, path = "/v1/me/reservations",
    responses((status = 200, body = [MyReservation])), security(("bearer" = [])))]
#[get("/v1/me/reservations")]
pub async fn mine(state: web::Data<AppState>, who: Principal) -> ApiResult<HttpResponse> {
    let client = state.db.get().await?;
    let rows = client
        .query(
            "SELECT reservation_id, offering_id, zone, quantity, created_at, expires_at, status
             FROM reservations WHERE user_id = $1 ORDER BY created_at DESC LIMIT 500",
            &[&who.user_id],
        )
        .await?;
    let now = std::time::SystemTime::now();
    let list: Vec<MyReservation> = rows
        .iter()
        .filter_map(|row| {
            let offering = state.catalog.get(row.get::<_, &str>(1))?;
            let zone = row.get::<_, i32>(2) as u16;
            let quantity = row.get::<_, i64>(3) as u64;
            let expires_at: std::time::SystemTime = row.get(5);
            let mut status: String = row.get(6);
            // The projection learns of expiry a moment late; the deadline itself is exact.
            if status == "held" && now >= expires_at {
                status = "expired".into();
            }
            let (due, deposit) = offering.amounts_satang(zone, quantity);
            Some(MyReservation {
                reservation_id: row.get(0),
                offering_id: offering.id().to_owned(),
                zone: offering.zone(zone).map_or_else(String::new, |z| z.id.clone()),
                quantity,
                amount_due_satang: due,
                deposit_due_satang: deposit,
                created_at: row.get::<_, std::time::SystemTime>(4).into(),
                expires_at: expires_at.into(),
                status,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(list))
}

/// Cancels a held reservation (owner or staff); the units go back at once.
#[utoipa::path(delete, path = "/v1/reservations/{id}",
    responses(
        (status = 200, body = Reservation),
        (status = 404, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])))]
#[delete("/v1/reservations/{id}")]
pub async fn cancel(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let (info, _) = domain::read(&state, &who, &id).await?;
    let outcome = tokio::time::timeout(state.tb_timeout(), state.ledger.cancel(info.id))
        .await
        .map_err(|_| domain::ledger_timeout())??;
    match outcome {
        CancelOutcome::Cancelled { .. } => {
            let (_, reservation) = domain::read(&state, &who, &id).await?;
            Ok(HttpResponse::Ok().json(reservation))
        }
        CancelOutcome::AlreadyConfirmed => Err(ApiError::new(ErrorCode::ReservationNotCancellable)),
        CancelOutcome::AlreadyExpired => Err(ApiError::new(ErrorCode::HoldExpired)),
        CancelOutcome::HoldNotFound => Err(ApiError::new(ErrorCode::ReservationNotFound)),
    }
}
