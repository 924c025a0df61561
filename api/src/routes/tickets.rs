//! Named tickets over HTTP; the work is `crate::tickets`'s.
//!
//! - `GET /v1/me/tickets`: the caller's tickets with their QR codes.
//! - `POST /v1/tickets/{ticket_id}/transfer`: give one to another account, free.
//! - `POST /v1/gate/verify` (role `gate`): admit a ticket once.
//! - `GET /v1/gate/key`: the public key gate devices verify tokens with offline.

use actix_web::http::header::ACCEPT_LANGUAGE;
use actix_web::{get, post, web, HttpRequest, HttpResponse};

use crate::auth::Principal;
use crate::error::ApiResult;
use crate::identity::Role;
use crate::state::AppState;
use crate::tickets::{Admission, GateKey, ScanRequest, TicketView, TransferRequest, Transferred};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(mine).service(transfer).service(verify).service(key);
}

/// The caller's tickets, newest first: one per confirmed seat, each with its signed token
/// and the QR code of it (SVG), in the holder's language.
#[utoipa::path(get, path = "/v1/me/tickets",
    responses((status = 200, body = [TicketView]), (status = 401, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
#[get("/v1/me/tickets")]
pub async fn mine(
    state: web::Data<AppState>,
    who: Principal,
    req: HttpRequest,
) -> ApiResult<HttpResponse> {
    let header = req.headers().get(ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok());
    let lang = crate::i18n::negotiate(header);
    Ok(HttpResponse::Ok().json(state.tickets.mine(&who, lang).await?))
}

/// Gives the caller's ticket to another verified account, at no price. The old QR stops
/// verifying; the new holder sees the ticket in their list.
#[utoipa::path(post, path = "/v1/tickets/{ticket_id}/transfer",
    params(("ticket_id" = String, Path, description = "`<reservation id>-<seat>`")),
    request_body = TransferRequest,
    responses(
        (status = 200, body = Transferred),
        (status = 400, body = crate::error::ErrorBody, description = "`validation_error`: to yourself"),
        (status = 401, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody, description = "`ticket_not_found`, `recipient_not_found`"),
        (status = 409, body = crate::error::ErrorBody, description = "`ticket_transfer_limit`, `ticket_transfer_closed`, `ticket_already_used`, `ticket_cancelled`"),
    ),
    security(("bearer" = [])))]
#[post("/v1/tickets/{ticket_id}/transfer")]
pub async fn transfer(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<String>,
    body: web::Json<TransferRequest>,
) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(state.tickets.transfer(&who, &id, &body).await?))
}

/// A gate's scan: the token must be ours, of a ticket neither used, cancelled nor
/// transferred since; it is marked used by this call. Staff compare the holder's initials
/// and identity kind with the document shown.
#[utoipa::path(post, path = "/v1/gate/verify", request_body = ScanRequest,
    responses(
        (status = 200, body = Admission),
        (status = 400, body = crate::error::ErrorBody, description = "`ticket_invalid`: not a token we signed"),
        (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody, description = "`ticket_not_found`"),
        (status = 409, body = crate::error::ErrorBody, description = "`ticket_already_used`, `ticket_superseded`, `ticket_cancelled`"),
    ),
    security(("bearer" = [])))]
#[post("/v1/gate/verify")]
pub async fn verify(
    state: web::Data<AppState>,
    who: Principal,
    body: web::Json<ScanRequest>,
) -> ApiResult<HttpResponse> {
    who.require(&[Role::Gate])?;
    Ok(HttpResponse::Ok().json(state.tickets.admit(&who, &body.token).await?))
}

/// The Ed25519 public key tickets are signed with: gate devices verify tokens offline
/// with it.
#[utoipa::path(get, path = "/v1/gate/key", responses((status = 200, body = GateKey)))]
#[get("/v1/gate/key")]
pub async fn key(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(state.tickets.gate_key())
}
