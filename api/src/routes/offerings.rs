//! Public offering pages: configuration plus live figures from TigerBeetle.

use crate::catalog::{self, Offering, OfferingView};
use crate::error::ApiResult;
use crate::state::AppState;
use actix_web::{get, web, HttpResponse};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(list).service(show);
}

/// The offering as the public sees it, with this instance's ledger limits.
pub async fn view(state: &AppState, offering: &Offering) -> ApiResult<OfferingView> {
    catalog::view::view(&state.ledger, state.view_limits(), offering, state.catalog.now()).await
}

/// Every offering with its live figures.
#[utoipa::path(get, path = "/v1/offerings", responses((status = 200, body = [OfferingView])))]
#[get("/v1/offerings")]
pub async fn list(state: web::Data<AppState>) -> ApiResult<HttpResponse> {
    let mut views = Vec::new();
    for offering in state.catalog.all() {
        views.push(view(&state, &offering).await?);
    }
    Ok(HttpResponse::Ok().json(views))
}

/// One offering with its live figures.
#[utoipa::path(get, path = "/v1/offerings/{id}", responses(
    (status = 200, body = OfferingView),
    (status = 404, body = crate::error::ErrorBody),
))]
#[get("/v1/offerings/{id}")]
pub async fn show(state: web::Data<AppState>, id: web::Path<String>) -> ApiResult<HttpResponse> {
    let offering = state.catalog.find(&id)?;
    Ok(HttpResponse::Ok().json(view(&state, &offering).await?))
}
