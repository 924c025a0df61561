//! Liveness, readiness, metrics and the OpenAPI document.

use actix_web::{get, web, HttpResponse};
use serde::Serialize;

use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(live).service(ready).service(metrics).service(openapi);
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    pub status: &'static str,
    pub tigerbeetle: &'static str,
    pub postgres: &'static str,
}

/// The process is up and serving.
#[utoipa::path(get, path = "/health/live", responses((status = 200)))]
#[get("/health/live")]
pub async fn live() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

/// Both stores answer: TigerBeetle (`Ledger::ping`) and Postgres (`allot_store::ping`).
#[utoipa::path(get, path = "/health/ready", responses((status = 200, body = Health), (status = 503, body = Health)))]
#[get("/health/ready")]
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let tb = tokio::time::timeout(state.tb_timeout(), state.ledger.ping())
        .await
        .is_ok_and(|r| r.is_ok());
    let pg = match state.db.get().await {
        Ok(client) => allot_store::ping(&client).await.is_ok(),
        Err(_) => false,
    };
    let word = |ok: bool| if ok { "ok" } else { "down" };
    let body = Health { status: word(tb && pg), tigerbeetle: word(tb), postgres: word(pg) };
    if tb && pg {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// Prometheus text format.
#[utoipa::path(get, path = "/metrics", responses((status = 200, content_type = "text/plain")))]
#[get("/metrics")]
pub async fn metrics() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(crate::metrics::handle().render())
}

#[get("/openapi.json")]
pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok().json(super::openapi::document())
}
