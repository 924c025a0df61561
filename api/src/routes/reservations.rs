//! Reservations: create (the hot path), read, list mine, cancel.

use actix_web::{delete, get, post, web, HttpRequest, HttpResponse};

use crate::auth::Principal;
use crate::error::ApiResult;
use crate::reservations::{self as domain, MyReservation, Reservation, ReserveRequest};
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
        state.reservations.reserve(&offering, &who, key, &body, admission).await?;
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
    let (_, reservation) = state.reservations.read(&who, &id).await?;
    Ok(HttpResponse::Ok().json(reservation))
}

/// The caller's reservations, newest first, from the projection (a fraction of a second
/// behind the ledger).
#[utoipa::path(get, path = "/v1/me/reservations",
    responses((status = 200, body = [MyReservation])), security(("bearer" = [])))]
#[get("/v1/me/reservations")]
pub async fn mine(state: web::Data<AppState>, who: Principal) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(domain::mine(&state.db, &state.catalog, &who).await?))
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
    Ok(HttpResponse::Ok().json(state.reservations.cancel(&who, &id).await?))
}
