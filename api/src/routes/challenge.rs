//! Proof-of-work challenges (ALTCHA) for the endpoints that bots aim at, and the request
//! checks those endpoints share: the client's address for the per-IP rate limit, and the
//! `X-Pow` header for the proof of work.

use std::net::IpAddr;

use actix_web::{get, web, HttpRequest, HttpResponse};

use crate::error::ApiResult;
use crate::fairness::pow;
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
    check_ip(&state, &req)?;
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(state.fairness.pow.challenge()))
}

/// The client's address: the peer, or behind our trusted proxies the rightmost
/// `X-Forwarded-For` address they did not write (`crate::client_ip`).
pub fn client_ip(state: &AppState, req: &HttpRequest) -> Option<IpAddr> {
    let peer = req.peer_addr()?.ip();
    let forwarded = req.headers().get("X-Forwarded-For").and_then(|v| v.to_str().ok());
    Some(state.proxies.client(peer, forwarded))
}

/// One request from the client of `req`: refused when its IP is over the limit. A request
/// whose address is unknown is not limited by IP.
pub fn check_ip(state: &AppState, req: &HttpRequest) -> ApiResult<()> {
    match client_ip(state, req) {
        Some(ip) => state.fairness.limits.check_ip(ip),
        None => Ok(()),
    }
}

/// The request carries a solved, unexpired, unused challenge of ours in `X-Pow`; it is now
/// used.
pub async fn verify_pow(state: &AppState, req: &HttpRequest) -> ApiResult<()> {
    let header = req.headers().get(pow::HEADER).map(|v| v.as_bytes());
    state.fairness.pow.verify(header).await
}
