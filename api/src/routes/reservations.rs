//! Reservations: create (the hot path), read, list mine, cancel.

use actix_web::{delete, get, post, web, HttpRequest, HttpResponse};
use serde::Deserialize;
use utoipa::IntoParams;

use super::json::Json;
use crate::auth::Principal;
use crate::error::ApiResult;
use crate::reservations::{self as domain, MyReservation, Reservation, ReserveRequest};
use crate::staff::{self, Record};
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(create).service(show).service(mine).service(cancel);
}

/// Holds units for the caller until the deadline. Same `Idempotency-Key` and body: the same
/// reservation (201 again); same key, other body: `idempotency_key_reused`.
#[utoipa::path(post, path = "/v1/offerings/{id}/reservations",
    request_body = ReserveRequest,
    params(("Idempotency-Key" = String, Header, pattern = "^[!-~]{1,200}$",
            description = "client-chosen, unique per intended reservation: 1 to 200 visible ASCII characters"),
        ("X-Queue-Admission" = Option<String>, Header, description = "admission token, for offerings with a waiting room")),
    responses(
        (status = 201, body = Reservation),
        (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody,
            description = "`identity_not_eligible`, `kyc_required` (the offering's eligibility), `queue_admission_required`"),
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
    body: Json<ReserveRequest>,
) -> ApiResult<HttpResponse> {
    let key = req.headers().get("Idempotency-Key").and_then(|v| v.to_str().ok());
    let key = domain::check_key(key)?;
    let offering = state.catalog.find(&id)?;
    let admission = req.headers().get("X-Queue-Admission").and_then(|v| v.to_str().ok());
    let (reservation, _replayed) =
        state.reservations.reserve(&offering, &who, key, &body, admission).await?;
    Ok(HttpResponse::Created().json(reservation))
}

/// A reservation's state as the ledger has it now. The owner's, or (audited) anyone's for
/// `finance` and `admin`; for everyone else someone else's reservation does not exist.
#[utoipa::path(get, path = "/v1/reservations/{id}",
    params(("id" = String, Path, description = "reservation id, 30 hex digits")),
    responses((status = 200, body = Reservation),
        (status = 401, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody, description = "`reservation_not_found`"),
        (status = 503, body = crate::error::ErrorBody, description = "`ledger_unavailable`")),
    security(("bearer" = [])))]
#[get("/v1/reservations/{id}")]
pub async fn show(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let (_, owner, reservation) = state.reservations.lookup(&id).await?;
    staff::check_read(&state.db, &who, owner, Record::Reservation, &id).await?;
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

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CancelQuery {
    /// Required when an admin cancels someone else's reservation; kept in the audit trail.
    /// At most 500 characters, no control characters.
    #[param(max_length = 500, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$")]
    pub reason: Option<String>,
}

/// Cancels a held reservation; the units go back at once. The owner may; an admin may
/// cancel anyone's with a `reason`, audited; nobody else.
#[utoipa::path(delete, path = "/v1/reservations/{id}",
    params(("id" = String, Path, description = "reservation id, 30 hex digits"), CancelQuery),
    responses(
        (status = 200, body = Reservation),
        (status = 400, body = crate::error::ErrorBody, description = "`validation_error`: a `reason` too long, or with control characters"),
        (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody, description = "`forbidden`: staff who may read but not cancel"),
        (status = 404, body = crate::error::ErrorBody, description = "`reservation_not_found`"),
        (status = 409, body = crate::error::ErrorBody, description = "`reservation_not_cancellable`, `hold_expired`"),
        (status = 422, body = crate::error::ErrorBody, description = "`inconsistent_request`: an admin gave no `reason` for someone else's"),
        (status = 503, body = crate::error::ErrorBody, description = "`ledger_unavailable`"),
    ),
    security(("bearer" = [])))]
#[delete("/v1/reservations/{id}")]
pub async fn cancel(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<String>,
    query: web::Query<CancelQuery>,
) -> ApiResult<HttpResponse> {
    staff::check_reason(query.reason.as_deref())?;
    let (info, owner, _) = state.reservations.lookup(&id).await?;
    staff::check_cancel(&state.db, &who, owner, &id, query.reason.as_deref()).await?;
    Ok(HttpResponse::Ok().json(state.reservations.cancel(&info).await?))
}
