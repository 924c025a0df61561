//! Liveness, readiness, metrics and the OpenAPI document. Readiness and metrics are for
//! operators: on their own listener when `http.ops_addr` is set.

use actix_web::{get, web, HttpResponse};
use serde::Serialize;

use crate::state::AppState;

/// The public listener's: liveness and the OpenAPI document, plus readiness and metrics
/// when `operator` (no operator listener, `http.ops_addr`, is configured).
pub fn configure(cfg: &mut web::ServiceConfig, operator: bool) {
    cfg.service(live).service(openapi);
    if operator {
        cfg.service(ready).service(metrics);
    }
}

/// The operator listener's: liveness, readiness (which asks both stores) and metrics, out
/// of the public's reach.
pub fn configure_operator(cfg: &mut web::ServiceConfig) {
    cfg.service(live).service(ready).service(metrics);
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok`; `degraded` (reservations work, Postgres does not answer: sign-ups, payments
    /// and lists wait); `unavailable` (TigerBeetle does not answer: no reservations).
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

/// Ready means this instance can take reservations: TigerBeetle answers (`Ledger::ping`).
/// The reservation path reads no Postgres, so a Postgres outage is `degraded` in the body
/// and in `allot_postgres_up`, not a 503: a load balancer must keep sending reservations
/// to every instance then, since draining them all would turn a partial outage into a
/// full one.
#[utoipa::path(get, path = "/health/ready", responses((status = 200, body = Health), (status = 503, body = Health)))]
#[get("/health/ready")]
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let tb = tokio::time::timeout(state.tb_timeout(), state.ledger.ping())
        .await
        .is_ok_and(|r| r.is_ok());
    let pg = tokio::time::timeout(state.tb_timeout(), async {
        allot_store::ping(&state.db.get().await.ok()?).await.ok()
    })
    .await
    .is_ok_and(|r| r.is_some());
    ::metrics::gauge!("allot_ledger_up").set(f64::from(u8::from(tb)));
    ::metrics::gauge!("allot_postgres_up").set(f64::from(u8::from(pg)));
    let word = |ok: bool| if ok { "ok" } else { "down" };
    let status = match (tb, pg) {
        (true, true) => "ok",
        (true, false) => "degraded",
        (false, _) => "unavailable",
    };
    let body = Health { status, tigerbeetle: word(tb), postgres: word(pg) };
    if tb {
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
