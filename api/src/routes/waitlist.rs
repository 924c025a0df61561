//! The waitlist of a sold-out zone: join, read my entry, leave.

use actix_web::{delete, get, post, web, HttpRequest, HttpResponse};

use super::json::Json;
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::fairness::waitlist::{JoinWaitlist, WaitlistEntry};
use crate::routes::challenge::check_ip;
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(join).service(mine).service(leave);
}

/// Joins the waitlist when the zone cannot serve the quantity now (201), or answers the
/// existing entry (200). Freed units are offered in order as holds of their own.
#[utoipa::path(post, path = "/v1/offerings/{id}/waitlist", request_body = JoinWaitlist,
    responses(
        (status = 201, body = WaitlistEntry),
        (status = 200, body = WaitlistEntry),
        (status = 403, body = crate::error::ErrorBody, description = "`identity_not_eligible`, `kyc_required`"),
        (status = 409, body = crate::error::ErrorBody),
        (status = 422, body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])))]
#[post("/v1/offerings/{id}/waitlist")]
pub async fn join(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<String>,
    req: HttpRequest,
    body: Json<JoinWaitlist>,
) -> ApiResult<HttpResponse> {
    check_ip(&state, &req)?;
    state.fairness.limits.check_user(who.user_id)?;
    let offering = state.catalog.find(&id)?;
    let (entry, created) = state.fairness.waitlist.join(&offering, &who, &body).await?;
    Ok(if created { HttpResponse::Created() } else { HttpResponse::Ok() }.json(entry))
}

/// The caller's waitlist entry: place in line, or the offered reservation.
#[utoipa::path(get, path = "/v1/offerings/{id}/waitlist",
    responses((status = 200, body = WaitlistEntry), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
#[get("/v1/offerings/{id}/waitlist")]
pub async fn mine(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let offering = state.catalog.find(&id)?;
    let entry = state
        .fairness
        .waitlist
        .mine(&offering, &who)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound))?;
    Ok(HttpResponse::Ok().json(entry))
}

/// Leaves the waitlist while still waiting.
#[utoipa::path(delete, path = "/v1/offerings/{id}/waitlist",
    responses((status = 204), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
#[delete("/v1/offerings/{id}/waitlist")]
pub async fn leave(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let offering = state.catalog.find(&id)?;
    state.fairness.waitlist.leave(&offering, &who).await?;
    Ok(HttpResponse::NoContent().finish())
}
