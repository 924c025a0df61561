//! Unusual-activity alerts for staff, and account suspension; the work is
//! `crate::alerts`'s.
//!
//! - `GET /v1/admin/alerts` (admin, finance): the newest alerts, `?open=true` for those not
//!   yet acknowledged.
//! - `POST /v1/admin/alerts/{id}/acknowledge` (admin, finance): with a note, audited.
//! - `PUT /v1/admin/users/{user_id}/suspension` (admin): suspend or reinstate, with a
//!   reason, audited; suspending ends every session of the account.

use actix_web::{get, post, put, web, HttpResponse};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::json::Json;
use crate::alerts::{Acknowledge, AlertView, Suspension};
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::identity::Role;
use crate::state::AppState;

const READERS: [Role; 2] = [Role::Admin, Role::Finance];

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(list).service(acknowledge).service(suspension);
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only alerts not yet acknowledged.
    #[serde(default)]
    pub open: bool,
}

/// The newest unusual-activity alerts (at most 500), each with its evidence.
#[utoipa::path(get, path = "/v1/admin/alerts", params(ListQuery),
    responses((status = 200, body = [AlertView]),
        (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
#[get("/v1/admin/alerts")]
pub async fn list(
    state: web::Data<AppState>,
    who: Principal,
    query: web::Query<ListQuery>,
) -> ApiResult<HttpResponse> {
    who.require(&READERS)?;
    Ok(HttpResponse::Ok().json(state.alerts.list(query.open).await?))
}

/// Acknowledges an alert with a note (audited). Acknowledging it again changes nothing.
#[utoipa::path(post, path = "/v1/admin/alerts/{id}/acknowledge", request_body = Acknowledge,
    params(("id" = i64, Path, description = "alert id")),
    responses((status = 200, body = AlertView),
        (status = 400, body = crate::error::ErrorBody, description = "`validation_error`: no note"),
        (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody, description = "`alert_not_found`")),
    security(("bearer" = [])))]
#[post("/v1/admin/alerts/{id}/acknowledge")]
pub async fn acknowledge(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<i64>,
    body: Json<Acknowledge>,
) -> ApiResult<HttpResponse> {
    who.require(&READERS)?;
    Ok(HttpResponse::Ok().json(state.alerts.acknowledge(who.user_id, *id, &body).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SuspensionRequest {
    /// `true` suspends (no sign-in, no reservation), `false` reinstates.
    pub suspended: bool,
    /// Why, up to 500 characters; kept in the audit trail.
    pub reason: String,
}

/// Suspends or reinstates an account (admin, audited). A suspended account cannot sign in,
/// and its sessions end at once, so it cannot reserve either.
#[utoipa::path(put, path = "/v1/admin/users/{user_id}/suspension", request_body = SuspensionRequest,
    params(("user_id" = i64, Path, description = "the account")),
    responses((status = 200, body = Suspension),
        (status = 400, body = crate::error::ErrorBody, description = "`validation_error`: no reason, or yourself"),
        (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody, description = "`not_found`: no such account")),
    security(("bearer" = [])))]
#[put("/v1/admin/users/{user_id}/suspension")]
pub async fn suspension(
    state: web::Data<AppState>,
    who: Principal,
    user_id: web::Path<i64>,
    body: Json<SuspensionRequest>,
) -> ApiResult<HttpResponse> {
    who.require(&[Role::Admin])?;
    let user_id = *user_id;
    if user_id == who.user_id {
        return Err(ApiError::validation("user_id", "an admin cannot suspend themselves"));
    }
    let done = state.alerts.set_suspended(who.user_id, user_id, body.suspended, &body.reason);
    let done = done.await?;
    if body.suspended {
        state.identity.sign_out_everywhere(user_id).await?;
    }
    Ok(HttpResponse::Ok().json(done))
}
