//! Bank partners over HTTP; the work is `crate::partners`'.
//!
//! - `POST /v1/admin/partners` and `PUT /v1/admin/partners/{id}/allocations/{offering}`
//!   (admin): create a partner, grant it an allocation.
//! - `POST /v1/partner/token`: the OAuth 2.0 client-credentials grant (form body; the
//!   client's id and secret in the form or as HTTP Basic).
//! - `POST /v1/partner/offerings/{id}/reservations` (partner token, `Idempotency-Key`):
//!   reserve for a customer; `GET /v1/partner/reservations`: the partner's reservations.

use actix_web::http::header::{AUTHORIZATION, CACHE_CONTROL};
use actix_web::{get, post, put, web, HttpRequest, HttpResponse};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::json::Json;
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult, ErrorBody, ErrorCode};
use crate::identity::Role;
use crate::partners::{CreatedPartner, PartnerReservation, PartnerReserveRequest, TOKEN_SECONDS};
use crate::reservations::{check_key, Reservation};
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(create)
        .service(allocate)
        .service(token)
        .service(reserve)
        .service(pay)
        .service(list);
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePartner {
    /// Up to 100 characters, unique.
    pub name: String,
    /// Where signed status webhooks go.
    pub webhook_url: Option<String>,
}

/// Creates a partner (admin). The client secret and webhook secret are in this answer
/// only: the secret is stored as its SHA-256, the webhook key is derived.
#[utoipa::path(post, path = "/v1/admin/partners", request_body = CreatePartner,
    responses(
        (status = 201, body = CreatedPartner),
        (status = 400, body = ErrorBody, description = "`validation_error`: name taken or malformed"),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "`forbidden`, `mfa_enrollment_required`"),
    ),
    security(("bearer" = [])))]
#[post("/v1/admin/partners")]
pub async fn create(
    state: web::Data<AppState>,
    who: Principal,
    body: Json<CreatePartner>,
) -> ApiResult<HttpResponse> {
    who.require(&[Role::Admin])?;
    let created =
        state.partners.create(who.user_id, &body.name, body.webhook_url.as_deref()).await?;
    Ok(HttpResponse::Created().insert_header((CACHE_CONTROL, "no-store")).json(created))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AllocationRequest {
    /// Units (baht of face value, seats) the partner may hold in the offering, in all.
    pub units: u64,
}

/// Named apart in the document: `Allocation` is an offering's allocation rule.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = PartnerAllocation)]
pub struct Allocation {
    pub partner_id: i32,
    pub offering_id: String,
    pub units: i64,
}

/// Grants a partner its allocation in an offering (admin): the ledger's partner quota,
/// funded once. The same units again is a no-op; other units are `validation_error`.
#[utoipa::path(put, path = "/v1/admin/partners/{partner_id}/allocations/{offering_id}",
    request_body = AllocationRequest,
    params(("partner_id" = i32, Path), ("offering_id" = String, Path)),
    responses(
        (status = 200, body = Allocation),
        (status = 400, body = ErrorBody, description = "`validation_error`"),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "`not_found`, `offering_not_found`"),
        (status = 503, body = ErrorBody, description = "`ledger_unavailable`"),
    ),
    security(("bearer" = [])))]
#[put("/v1/admin/partners/{partner_id}/allocations/{offering_id}")]
pub async fn allocate(
    state: web::Data<AppState>,
    who: Principal,
    path: web::Path<(i32, String)>,
    body: Json<AllocationRequest>,
) -> ApiResult<HttpResponse> {
    who.require(&[Role::Admin])?;
    let (partner_id, offering_id) = path.into_inner();
    let units =
        state.partners.set_allocation(who.user_id, partner_id, &offering_id, body.units).await?;
    Ok(HttpResponse::Ok().json(Allocation { partner_id, offering_id, units }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// `client_credentials`.
    pub grant_type: String,
    /// Or in HTTP Basic authentication.
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PartnerToken {
    pub access_token: String,
    /// `Bearer`.
    pub token_type: String,
    pub expires_in: u64,
}

/// The OAuth 2.0 client-credentials grant (RFC 6749, 4.4): a partner's access token.
#[utoipa::path(post, path = "/v1/partner/token",
    request_body(content = TokenRequest, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, body = PartnerToken),
        (status = 400, body = ErrorBody, description = "`validation_error`: not client_credentials"),
        (status = 401, body = ErrorBody, description = "`invalid_credentials`"),
    ))]
#[post("/v1/partner/token")]
pub async fn token(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Form<TokenRequest>,
) -> ApiResult<HttpResponse> {
    if body.grant_type != "client_credentials" {
        return Err(ApiError::validation("grant_type", "client_credentials"));
    }
    let basic = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|v| STANDARD.decode(v).ok())
        .and_then(|v| String::from_utf8(v).ok())
        .and_then(|v| v.split_once(':').map(|(i, s)| (i.to_owned(), s.to_owned())));
    let (id, secret) = match (basic, &body.client_id, &body.client_secret) {
        (Some(pair), _, _) => pair,
        (None, Some(id), Some(secret)) => (id.clone(), secret.clone()),
        _ => return Err(ApiError::new(ErrorCode::InvalidCredentials)),
    };
    let access_token = state.partners.token(&id, &secret).await?;
    Ok(HttpResponse::Ok().insert_header((CACHE_CONTROL, "no-store")).json(PartnerToken {
        access_token,
        token_type: "Bearer".into(),
        expires_in: TOKEN_SECONDS,
    }))
}

fn bearer(req: &HttpRequest) -> Option<&str> {
    req.headers().get(AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer ")
}

/// Reserves for a customer named by national ID, within the partner's allocation and the
/// customer's own cap (shared with their direct reservations). Same `Idempotency-Key` and
/// body: the same reservation, held once (200 on a replay).
#[utoipa::path(post, path = "/v1/partner/offerings/{id}/reservations",
    request_body = PartnerReserveRequest,
    params(("id" = String, Path), ("Idempotency-Key" = String, Header)),
    responses(
        (status = 201, body = Reservation),
        (status = 200, body = Reservation, description = "a retried call: the reservation as it is"),
        (status = 400, body = ErrorBody, description = "`validation_error`, `invalid_national_id`, `zone_not_found`, `idempotency_key_required`"),
        (status = 401, body = ErrorBody, description = "`unauthorized`: no valid partner token"),
        (status = 403, body = ErrorBody, description = "`identity_not_eligible`"),
        (status = 404, body = ErrorBody, description = "`offering_not_found`"),
        (status = 409, body = ErrorBody,
            description = "`person_limit_exceeded`, `partner_allocation_exceeded`, `sold_out`, `offering_not_open`"),
        (status = 422, body = ErrorBody, description = "`below_minimum`, `not_lot_multiple`, `above_maximum`, `idempotency_key_reused`"),
        (status = 429, body = ErrorBody, description = "`rate_limited`: this partner's rate"),
        (status = 503, body = ErrorBody, description = "`ledger_unavailable`"),
    ),
    security(("partner" = [])))]
#[post("/v1/partner/offerings/{id}/reservations")]
pub async fn reserve(
    state: web::Data<AppState>,
    id: web::Path<String>,
    req: HttpRequest,
    body: Json<PartnerReserveRequest>,
) -> ApiResult<HttpResponse> {
    let partner = state.partners.authenticate(bearer(&req))?;
    let key = check_key(req.headers().get("Idempotency-Key").and_then(|v| v.to_str().ok()))?;
    let (reservation, replayed) = state.partners.reserve(partner, &id, key, &body).await?;
    Ok(if replayed { HttpResponse::Ok() } else { HttpResponse::Created() }.json(reservation))
}

/// Opens (or returns) the payment intent of one of the partner's reservations: the exact
/// deposit, a PromptPay QR and its reference, for its customer to pay at their bank; the
/// bank's signed webhook confirms it as any payment (201 opened, 200 the one already open).
#[utoipa::path(post, path = "/v1/partner/reservations/{id}/payments",
    request_body = crate::payments::CreatePayment,
    params(("id" = String, Path, description = "reservation id, 30 hex digits")),
    responses(
        (status = 201, body = crate::payments::PaymentIntent),
        (status = 200, body = crate::payments::PaymentIntent),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "`reservation_not_found`: not this partner's"),
        (status = 409, body = ErrorBody, description = "`hold_expired`, `reservation_not_payable`"),
        (status = 429, body = ErrorBody),
    ),
    security(("partner" = [])))]
#[post("/v1/partner/reservations/{id}/payments")]
pub async fn pay(
    state: web::Data<AppState>,
    id: web::Path<String>,
    req: HttpRequest,
    body: Json<crate::payments::CreatePayment>,
) -> ApiResult<HttpResponse> {
    let partner = state.partners.authenticate(bearer(&req))?;
    let (intent, created) = state.payments.create_for_partner(partner, &id, &body).await?;
    Ok(if created { HttpResponse::Created() } else { HttpResponse::Ok() }.json(intent))
}

/// The partner's reservations (its customers'), newest first, from the projection.
#[utoipa::path(get, path = "/v1/partner/reservations",
    responses(
        (status = 200, body = Vec<PartnerReservation>),
        (status = 401, body = ErrorBody),
        (status = 429, body = ErrorBody),
    ),
    security(("partner" = [])))]
#[get("/v1/partner/reservations")]
pub async fn list(state: web::Data<AppState>, req: HttpRequest) -> ApiResult<HttpResponse> {
    let partner = state.partners.authenticate(bearer(&req))?;
    Ok(HttpResponse::Ok().json(state.partners.list(partner).await?))
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_new_endpoint_is_in_the_document() {
        let doc = serde_json::to_value(crate::routes::openapi::document()).unwrap();
        for (path, method) in [
            ("/v1/admin/partners", "post"),
            ("/v1/admin/partners/{partner_id}/allocations/{offering_id}", "put"),
            ("/v1/partner/token", "post"),
            ("/v1/partner/offerings/{id}/reservations", "post"),
            ("/v1/partner/reservations/{id}/payments", "post"),
            ("/v1/partner/reservations", "get"),
            ("/v1/me/identity/code", "post"),
            ("/v1/me/identity/verify", "post"),
            ("/v1/me/kyc", "post"),
            ("/v1/kyc/callbacks/{provider}", "post"),
            ("/v1/sandbox/kyc/{user_id}", "post"),
        ] {
            assert!(doc["paths"][path][method].is_object(), "{method} {path} is not documented");
        }
        let schemas = &doc["components"]["schemas"];
        assert!(schemas["RegisterRequest"]["properties"]["identity"].is_object(), "{schemas}");
        assert!(doc["components"]["securitySchemes"]["partner"].is_object());
    }
}
