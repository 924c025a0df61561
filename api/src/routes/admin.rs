//! Offering administration (role `admin`): create, open, close.

use actix_web::{post, web, HttpResponse};

use crate::audit;
use crate::auth::Principal;
use crate::catalog::{self, OfferingConfig};
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::identity::Role;
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(create).service(open).service(close);
}

/// Creates an offering and sets it up in the ledger; it is open unless `opens_at` says
/// otherwise.
#[utoipa::path(post, path = "/v1/admin/offerings", request_body = OfferingConfig,
    responses(
        (status = 201, body = crate::routes::offerings::OfferingView),
        (status = 400, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])))]
#[post("/v1/admin/offerings")]
pub async fn create(
    state: web::Data<AppState>,
    who: Principal,
    body: web::Json<OfferingConfig>,
) -> ApiResult<HttpResponse> {
    who.require(&[Role::Admin])?;
    if !catalog::insert(&state.db, &body).await? {
        return Err(ApiError::field(ErrorCode::OfferingExists, "id"));
    }
    let config = serde_json::to_value(&*body).map_err(ApiError::internal)?;
    let (actor, subject) = (audit::user(who.user_id), format!("offering:{}", body.id));
    audit::append(&state.db.get().await?, &actor, "offering.create", &subject, None, Some(&config))
        .await?;
    state.catalog.refresh(&state.db, &state.ledger).await?;
    let offering =
        state.catalog.get(&body.id).ok_or_else(|| ApiError::internal("offering vanished"))?;
    tracing::info!(offering = %body.id, admin = who.user_id, "offering created");
    Ok(HttpResponse::Created().json(crate::routes::offerings::view(&state, &offering).await?))
}

async fn set_open(
    state: &AppState,
    who: &Principal,
    id: &str,
    is_open: bool,
) -> ApiResult<HttpResponse> {
    who.require(&[Role::Admin])?;
    let was_open = state.catalog.get(id).map(|o| serde_json::json!({ "is_open": o.is_open }));
    if !catalog::set_open(&state.db, id, is_open).await? {
        return Err(ApiError::field(ErrorCode::OfferingNotFound, "id"));
    }
    let (actor, subject) = (audit::user(who.user_id), format!("offering:{id}"));
    let action = if is_open { "offering.open" } else { "offering.close" };
    let after = serde_json::json!({ "is_open": is_open });
    audit::append(
        &state.db.get().await?,
        &actor,
        action,
        &subject,
        was_open.as_ref(),
        Some(&after),
    )
    .await?;
    state.catalog.refresh(&state.db, &state.ledger).await?;
    tracing::info!(offering = %id, is_open, admin = who.user_id, "offering switched");
    let offering = state.catalog.get(id).ok_or_else(|| ApiError::internal("offering vanished"))?;
    Ok(HttpResponse::Ok().json(crate::routes::offerings::view(state, &offering).await?))
}

#[utoipa::path(post, path = "/v1/admin/offerings/{id}/open",
    responses((status = 200, body = crate::routes::offerings::OfferingView), (status = 404, body = crate::error::ErrorBody)),
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
    responses((status = 200, body = crate::routes::offerings::OfferingView), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
#[post("/v1/admin/offerings/{id}/close")]
pub async fn close(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    set_open(&state, &who, &id, false).await
}
