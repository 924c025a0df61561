//! Payments: intents, their QR, gateways' webhooks, the dev sandbox, finance's lists.

use actix_web::http::StatusCode;
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use serde::Serialize;

use super::json::Json;
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::identity::Role;
use crate::payments::finance::ReceivedPayment;
use crate::payments::gateway::{Delivery, GatewayKind, HEADER_SIGNATURE, HEADER_TIMESTAMP};
use crate::payments::payouts::{PayoutRequest, PayoutView};
use crate::payments::sandbox::SettleRequest;
use crate::payments::webhook::{Receipt, WebhookAnswer};
use crate::payments::{CreatePayment, PaymentIntent};
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(create)
        .service(webhook)
        .service(settle)
        .service(refunds)
        .service(unmatched)
        .service(payout)
        .service(qr_svg)
        .service(show);
}

/// Opens the payment of a held reservation (owner only): a PromptPay QR for the exact
/// deposit. One intent per reservation: 201 when this call opened it, 200 with the same
/// intent on every later call (whatever gateway it asks for).
#[utoipa::path(post, path = "/v1/reservations/{id}/payments",
    request_body = CreatePayment,
    responses(
        (status = 201, body = PaymentIntent),
        (status = 200, body = PaymentIntent),
        (status = 404, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])))]
#[post("/v1/reservations/{id}/payments")]
pub async fn create(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<String>,
    body: Json<CreatePayment>,
) -> ApiResult<HttpResponse> {
    let (intent, created) = state.payments.create(&who, &id, &body).await?;
    Ok(if created { HttpResponse::Created() } else { HttpResponse::Ok() }.json(intent))
}

/// A payment's state (owner or staff).
#[utoipa::path(get, path = "/v1/payments/{id}",
    responses((status = 200, body = PaymentIntent), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
#[get("/v1/payments/{id}")]
pub async fn show(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(state.payments.read(&who, &id).await?))
}

/// The payment's PromptPay QR as SVG. No token: the 120-bit payment id is the capability,
/// so an `<img>` can show it.
#[utoipa::path(get, path = "/v1/payments/{id}/qr.svg",
    responses((status = 200, content_type = "image/svg+xml", body = String),
        (status = 404, body = crate::error::ErrorBody)))]
#[get("/v1/payments/{id}/qr.svg")]
pub async fn qr_svg(state: web::Data<AppState>, id: web::Path<String>) -> ApiResult<HttpResponse> {
    let svg = state.payments.qr_svg(&id).await?;
    Ok(HttpResponse::Ok()
        .content_type("image/svg+xml")
        .insert_header(("Cache-Control", "private, max-age=3600"))
        .body(svg))
}

/// A gateway reports money received. Signed: `X-Allot-Timestamp` (unix seconds, within
/// 5 minutes) and `X-Allot-Signature` (`v1=` hex HMAC-SHA256 of `timestamp.body`; several
/// `v1=` entries, comma separated, while the sender rotates keys). Idempotent on
/// (gateway, transaction_id). 200 with the outcome; 202 when recorded but not yet applied;
/// an unknown reference is recorded for finance and still answered 200.
#[utoipa::path(post, path = "/v1/payments/webhooks/{gateway}",
    request_body = crate::payments::gateway::Notification,
    params(("gateway" = crate::payments::gateway::GatewayKind, Path,
            description = "`bank`, or `sandbox` in dev mode"),
        ("X-Allot-Timestamp" = String, Header, description = "unix seconds of signing"),
        ("X-Allot-Signature" = String, Header, description = "`v1=<hex>`, comma separated")),
    responses(
        (status = 200, body = WebhookAnswer),
        (status = 202, body = WebhookAnswer),
        (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody),
    ))]
#[post("/v1/payments/webhooks/{gateway}")]
pub async fn webhook(
    state: web::Data<AppState>,
    gateway: web::Path<String>,
    req: HttpRequest,
    body: web::Bytes,
) -> ApiResult<HttpResponse> {
    let kind = GatewayKind::parse(&gateway).ok_or_else(|| ApiError::new(ErrorCode::NotFound))?;
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let delivery = Delivery {
        timestamp: header(HEADER_TIMESTAMP),
        signature: header(HEADER_SIGNATURE),
        body: &body,
    };
    let receipt = state.payments.receive(kind, delivery).await?;
    Ok(HttpResponse::build(webhook_status(&receipt)).json(receipt.answer))
}

/// 200 with the outcome; 202 when recorded but not yet applied (still a success to the
/// bank, so that it does not resend in a loop).
fn webhook_status(receipt: &Receipt) -> StatusCode {
    if receipt.applied {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Settled {
    pub transaction_id: String,
    /// What the webhook endpoint answered.
    pub webhook_status: u16,
    pub webhook: WebhookAnswer,
}

/// Dev mode only: pays the caller's own sandbox intent with play money, through the same
/// signed webhook a bank sends. The body is optional (`{}` or empty pays the exact amount).
#[utoipa::path(post, path = "/v1/sandbox/payments/{id}/settle",
    request_body(content = Option<SettleRequest>),
    responses((status = 200, body = Settled),
        (status = 400, body = crate::error::ErrorBody, description = "`validation_error`: a bank payment, `malformed_json`"),
        (status = 401, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody, description = "`payment_not_found`: none of the caller's; `not_found` outside dev mode"),
        (status = 422, body = crate::error::ErrorBody, description = "`invalid_paid_at`: in the future, or too long ago"),
        (status = 503, body = crate::error::ErrorBody, description = "`ledger_unavailable`")),
    security(("bearer" = [])))]
#[post("/v1/sandbox/payments/{id}/settle")]
pub async fn settle(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<String>,
    body: web::Bytes,
) -> ApiResult<HttpResponse> {
    if !state.settings.dev_mode {
        return Err(ApiError::new(ErrorCode::NotFound));
    }
    // No body, or JSON `null` (the document's "optional"): the intent as it is.
    let req: SettleRequest = match body.iter().all(u8::is_ascii_whitespace) {
        true => SettleRequest::default(),
        false => super::json::from_slice::<Option<SettleRequest>>(&body)?.unwrap_or_default(),
    };
    let settlement = state.payments.settle_in_sandbox(&who, &id, req).await?;
    Ok(HttpResponse::Ok().json(Settled {
        transaction_id: settlement.transaction_id,
        webhook_status: webhook_status(&settlement.receipt).as_u16(),
        webhook: settlement.receipt.answer,
    }))
}

/// Money booked to refunds payable: late, wrong-amount and second payments (finance, admin).
#[utoipa::path(get, path = "/v1/finance/refunds",
    responses((status = 200, body = [ReceivedPayment]), (status = 403, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
#[get("/v1/finance/refunds")]
pub async fn refunds(state: web::Data<AppState>, who: Principal) -> ApiResult<HttpResponse> {
    who.require(&[Role::Finance, Role::Admin])?;
    Ok(HttpResponse::Ok().json(state.payments.refunds_due().await?))
}

/// Money whose reference matches no payment (finance, admin).
#[utoipa::path(get, path = "/v1/finance/unmatched",
    responses((status = 200, body = [ReceivedPayment]), (status = 403, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
#[get("/v1/finance/unmatched")]
pub async fn unmatched(state: web::Data<AppState>, who: Principal) -> ApiResult<HttpResponse> {
    who.require(&[Role::Finance, Role::Admin])?;
    Ok(HttpResponse::Ok().json(state.payments.unmatched().await?))
}

/// Records a refund paid back by bank transfer (finance, admin): 201 when recorded, 200 when
/// this bank reference was recorded before with the same payout. Paying out more than is
/// owed is refused.
#[utoipa::path(post, path = "/v1/finance/refunds/payouts",
    request_body = PayoutRequest,
    responses(
        (status = 201, body = PayoutView),
        (status = 200, body = PayoutView),
        (status = 403, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])))]
#[post("/v1/finance/refunds/payouts")]
pub async fn payout(
    state: web::Data<AppState>,
    who: Principal,
    body: Json<PayoutRequest>,
) -> ApiResult<HttpResponse> {
    who.require(&[Role::Finance, Role::Admin])?;
    let (view, created) = state.payments.pay_out(&who, &body).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok(HttpResponse::build(status).json(view))
}
