//! Verifying an identity over HTTP; the work is `crate::identity::{verification, kyc}`'s.
//!
//! - `POST /v1/me/identity/code` sends a one-time code to the caller's phone or email;
//!   `POST /v1/me/identity/verify` checks it.
//! - `POST /v1/me/kyc` opens an identity check at the KYC provider (national ID, passport).
//! - `POST /v1/kyc/callbacks/{provider}` is where the provider reports its decision, signed.
//! - `POST /v1/sandbox/kyc/{user_id}` (dev mode) plays the person deciding at the sandbox.

use actix_web::{post, web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::json::Json;
use crate::auth::Principal;
use crate::error::{ApiResult, ErrorBody};
use crate::identity::kyc::{Callback, Decision, KycView, HEADER_SIGNATURE, HEADER_TIMESTAMP};
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(send_code)
        .service(verify_code)
        .service(start_kyc)
        .service(callback)
        .service(sandbox);
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeRequest {
    /// A phone identity: the registered number again (E.164); it is not stored, so the
    /// code can only go to the number that was registered. Left out for an email.
    pub number: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CodeSent {
    /// `phone` or `email`: where the code went.
    pub sent_to: String,
}

/// Sends a one-time code (6 digits, 10 minutes, 5 tries) to the caller's phone or email.
#[utoipa::path(post, path = "/v1/me/identity/code", request_body = CodeRequest,
    responses(
        (status = 202, body = CodeSent),
        (status = 400, body = ErrorBody,
            description = "`validation_error`: not the registered number, not a phone or email identity, already verified"),
        (status = 401, body = ErrorBody),
        (status = 422, body = ErrorBody,
            description = "`inconsistent_request`: already verified, or an identity verified at a KYC provider instead"),
        (status = 503, body = ErrorBody, description = "`service_unavailable`: no sender, or it failed"),
    ),
    security(("bearer" = [])))]
#[post("/v1/me/identity/code")]
pub async fn send_code(
    state: web::Data<AppState>,
    who: Principal,
    body: Option<Json<CodeRequest>>,
) -> ApiResult<HttpResponse> {
    let body = body.map(Json::into_inner).unwrap_or_default();
    let kind = state.identity.send_code(who.user_id, body.number.as_deref()).await?;
    Ok(HttpResponse::Accepted().json(CodeSent { sent_to: kind.as_str().into() }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    /// The 6 digits received.
    pub code: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct VerificationState {
    /// `verified`.
    pub verification: String,
}

/// Checks a one-time code; the right one verifies the account's phone or email.
#[utoipa::path(post, path = "/v1/me/identity/verify", request_body = VerifyRequest,
    responses(
        (status = 200, body = VerificationState),
        (status = 400, body = ErrorBody, description = "`invalid_verification_code`"),
        (status = 401, body = ErrorBody),
    ),
    security(("bearer" = [])))]
#[post("/v1/me/identity/verify")]
pub async fn verify_code(
    state: web::Data<AppState>,
    who: Principal,
    body: Json<VerifyRequest>,
) -> ApiResult<HttpResponse> {
    state.identity.confirm_code(who.user_id, &body.code).await?;
    Ok(HttpResponse::Ok().json(VerificationState { verification: "verified".into() }))
}

/// Opens an identity check at the KYC provider for the caller's national ID or passport
/// (201), or answers the one already open (200). The person then approves at the provider,
/// which calls back.
#[utoipa::path(post, path = "/v1/me/kyc",
    responses(
        (status = 201, body = KycView),
        (status = 200, body = KycView),
        (status = 400, body = ErrorBody,
            description = "`validation_error`: a phone or email identity, or already verified"),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "`not_found`: no KYC provider configured"),
        (status = 422, body = ErrorBody, description = "`inconsistent_request`: already verified"),
        (status = 503, body = ErrorBody, description = "`service_unavailable`: the provider did not answer"),
    ),
    security(("bearer" = [])))]
#[post("/v1/me/kyc")]
pub async fn start_kyc(state: web::Data<AppState>, who: Principal) -> ApiResult<HttpResponse> {
    let (view, opened) = state.identity.start_kyc(who.user_id).await?;
    Ok(if opened { HttpResponse::Created() } else { HttpResponse::Ok() }.json(view))
}

/// A KYC provider's decision. Authentic only with `X-Allot-Signature: v1=<hex HMAC-SHA256
/// of "timestamp.body">` and `X-Allot-Timestamp` within 5 minutes; anything else is 401 and
/// changes nothing. A decision on a request already decided is answered as it stands.
#[utoipa::path(post, path = "/v1/kyc/callbacks/{provider}", request_body = Callback,
    params(
        ("provider" = String, Path, description = "`http`, or `sandbox` in dev mode"),
        ("X-Allot-Timestamp" = String, Header, description = "unix seconds"),
        ("X-Allot-Signature" = String, Header, description = "`v1=<hex>`"),
    ),
    responses(
        (status = 200, body = KycView),
        (status = 400, body = ErrorBody, description = "`malformed_json`"),
        (status = 401, body = ErrorBody, description = "`invalid_signature`"),
        (status = 404, body = ErrorBody, description = "`not_found`: no such provider or request"),
    ))]
#[post("/v1/kyc/callbacks/{provider}")]
pub async fn callback(
    state: web::Data<AppState>,
    provider: web::Path<String>,
    req: HttpRequest,
    body: web::Bytes,
) -> ApiResult<HttpResponse> {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let view = state
        .identity
        .kyc_callback(&provider, header(HEADER_TIMESTAMP), header(HEADER_SIGNATURE), &body)
        .await?;
    Ok(HttpResponse::Ok().json(view))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SandboxDecision {
    pub decision: Decision,
}

/// Dev mode: the caller, as the person at the sandbox provider, approves or rejects their
/// own open identity check; the sandbox signs its callback and delivers it through the
/// provider's path (`./ops/kyc`).
#[utoipa::path(post, path = "/v1/sandbox/kyc/{user_id}", request_body = SandboxDecision,
    params(("user_id" = i64, Path, description = "the caller's own user id")),
    responses(
        (status = 200, body = KycView),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody,
            description = "`not_found`: not dev mode, another user, or no open check"),
    ),
    security(("bearer" = [])))]
#[post("/v1/sandbox/kyc/{user_id}")]
pub async fn sandbox(
    state: web::Data<AppState>,
    who: Principal,
    user_id: web::Path<i64>,
    body: Json<SandboxDecision>,
) -> ApiResult<HttpResponse> {
    let view = state.identity.sandbox_kyc(who.user_id, *user_id, body.decision).await?;
    Ok(HttpResponse::Ok().json(view))
}
