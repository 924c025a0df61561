//! Offering administration (role `admin`): create, open, close.

use actix_web::{post, web, HttpResponse};

use super::json::Json;
use super::offerings;
use crate::auth::Principal;
use crate::catalog::{self, OfferingConfig};
use crate::error::ApiResult;
use crate::identity::Role;
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(create).service(open).service(close);
}

/// Creates an offering and sets it up in the ledger; it is open unless `opens_at` says
/// otherwise.
#[utoipa::path(post, path = "/v1/admin/offerings", request_body = OfferingConfig,
    responses(
        (status = 201, body = crate::catalog::OfferingView),
        (status = 400, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody, description = "`offering_exists`"),
        (status = 422, body = crate::error::ErrorBody,
            description = "`inconsistent_request`: fields that do not fit together (lot and minimum, dates, names)"),
    ),
    security(("bearer" = [])))]
#[post("/v1/admin/offerings")]
pub async fn create(
    state: web::Data<AppState>,
    who: Principal,
    body: Json<OfferingConfig>,
) -> ApiResult<HttpResponse> {
    who.require(&[Role::Admin])?;
    let offering =
        catalog::admin::create(&state.db, &state.ledger, &state.catalog, who.user_id, &body)
            .await?;
    Ok(HttpResponse::Created().json(offerings::view(&state, &offering).await?))
}

async fn set_open(
    state: &AppState,
    who: &Principal,
    id: &str,
    is_open: bool,
) -> ApiResult<HttpResponse> {
    who.require(&[Role::Admin])?;
    let offering = catalog::admin::set_open(
        &state.db,
        &state.ledger,
        &state.catalog,
        who.user_id,
        id,
        is_open,
    )
    .await?;
    Ok(HttpResponse::Ok().json(offerings::view(state, &offering).await?))
}

#[utoipa::path(post, path = "/v1/admin/offerings/{id}/open",
    responses((status = 200, body = crate::catalog::OfferingView), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
#[post("/v1/admin/offerings/{id}/open")]
pub async fn open(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    set_open(&state, &who, &id, true).await
}

#[utoipa::path(post, path = "/v1/admin/offerings/{id}/close",
    responses((status = 200, body = crate::catalog::OfferingView), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
#[post("/v1/admin/offerings/{id}/close")]
pub async fn close(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    set_open(&state, &who, &id, false).await
}
