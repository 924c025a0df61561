//! Proof-of-work challenges (ALTCHA) for the endpoints that bots aim at.

use actix_web::{get, web, HttpRequest, HttpResponse};

use crate::error::ApiResult;
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(challenge);
}

/// A fresh challenge. Solve it, then send `{"challenge": ..., "solution": ...}` as base64
/// in the `X-Pow` header of the protected request; each solution is good once.
#[utoipa::path(get, path = "/v1/challenge",
    responses((status = 200, description = "an ALTCHA v2 challenge"), (status = 429, body = crate::error::ErrorBody)))]
#[get("/v1/challenge")]
pub async fn challenge(state: web::Data<AppState>, req: HttpRequest) -> ApiResult<HttpResponse> {
    state.fairness.limits.check_ip(&req)?;
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(state.fairness.pow.challenge()))
}
