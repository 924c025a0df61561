//! Public offering pages: configuration plus live figures from TigerBeetle.

use actix_web::{get, web, HttpResponse};
use serde::Serialize;

use crate::catalog::{Offering, OfferingConfig};
use crate::error::ApiResult;
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(list).service(show);
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ZoneView {
    pub id: String,
    pub price_satang: u64,
    pub supply: u64,
    pub held: u64,
    pub confirmed: u64,
    pub remaining: u64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OfferingView {
    #[serde(flatten)]
    pub config: OfferingConfig,
    /// Accepting reservations right now.
    pub open: bool,
    /// Live figures per zone, at most `availability_cache_ms` old.
    pub availability: Vec<ZoneView>,
}

pub async fn view(state: &AppState, offering: &Offering) -> ApiResult<OfferingView> {
    let balances = tokio::time::timeout(
        state.tb_timeout(),
        offering.availability(&state.ledger, state.availability_max_age()),
    )
    .await
    .map_err(|_| crate::reservations::ledger_timeout())??;
    let to_u64 = |v: u128| u64::try_from(v).expect("bounded by supply");
    let availability = offering
        .config
        .zones
        .iter()
        .zip(balances)
        .map(|(zone, b)| ZoneView {
            id: zone.id.clone(),
            price_satang: zone.price_satang,
            supply: to_u64(b.supply),
            held: to_u64(b.held),
            confirmed: to_u64(b.confirmed),
            remaining: to_u64(b.remaining),
        })
        .collect();
    Ok(OfferingView {
        config: offering.config.clone(),
        open: offering.accepts_reservations(time::OffsetDateTime::now_utc()),
        availability,
    })
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
