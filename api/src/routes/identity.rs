//! Users, sessions and second factors over HTTP; the work is `crate::identity`'s.
//!
//! - `POST /v1/users` registers a citizen.
//! - `POST /v1/sessions` signs in with email or national ID, password, and the TOTP code
//!   once enrolled; it answers a short-lived access token and an opaque refresh token.
//! - `POST /v1/sessions/refresh` rotates a refresh token; reusing one revokes its family.
//! - `DELETE /v1/sessions` signs out one sign-in, or every sign-in of the bearer.
//! - `GET /v1/me` is the caller's account.
//! - `POST /v1/me/mfa` and `/v1/me/mfa/confirm` enrol an authenticator.
//! - `PUT /v1/admin/users/{user_id}/role` is how staff get their roles.
//!
//! Token answers carry `Cache-Control: no-store` (RFC 6749, section 5.1).

use actix_web::http::header::CACHE_CONTROL;
use actix_web::{delete, get, post, put, web, FromRequest, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::json::Json;
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult, ErrorBody, ErrorCode};
use crate::identity::kinds::IdentityInput;
use crate::identity::sessions::Tokens;
use crate::identity::users::{self, IdentityField, Registration};
use crate::identity::Role;
use crate::state::AppState;

/// An app's stable id of the device it runs on (optional); only its hash is kept, as
/// evidence for the rule on many accounts from one device.
pub const DEVICE_ID: &str = "X-Device-Id";

/// `DELETE /v1/sessions` reads its optional body by hand; a refresh token fits easily.
const LOGOUT_BODY_BYTES_MAX: usize = 1024;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(register)
        .service(sign_in)
        .service(refresh)
        .service(sign_out)
        .service(me)
        .service(mfa_enrol)
        .service(mfa_confirm)
        .service(set_role);
}

// ---- Registration -------------------------------------------------------------------------

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// Thai national ID, 13 digits; dashes and spaces are ignored. The short form of
    /// `identity` with kind `thai_national_id`; give one of the two.
    #[schema(pattern = "^[ -]*([0-9][ -]*){13}$", max_length = 32)]
    pub national_id: Option<String>,
    /// Who the person is: a Thai national ID, a passport (ISO 3166-1 alpha-3 country,
    /// number, optionally the machine-readable zone), a phone number or the email. One
    /// identity has one account.
    pub identity: Option<IdentityInput>,
    pub email: String,
    /// 12 to 128 bytes, hard to guess, not built on the email or the national ID.
    pub password: String,
    /// Up to 100 characters.
    pub display_name: Option<String>,
    /// One of `th`, `en`, `ja`, `ko`, `zh`; `th` when left out.
    pub locale: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Registered {
    /// Also the person number in the ledger; below 2^53.
    pub user_id: i64,
}

/// Creates a citizen account.
#[utoipa::path(post, path = "/v1/users", request_body = RegisterRequest,
    responses(
        (status = 201, body = Registered),
        (status = 400, body = ErrorBody,
            description = "`validation_error`, `invalid_passport`, `malformed_json`"),
        (status = 422, body = ErrorBody,
            description = "`invalid_national_id` (its check digit is wrong), `weak_password`"),
        (status = 403, body = ErrorBody,
            description = "`proof_of_work_required`, `proof_of_work_invalid` (solve `GET /v1/challenge`, send `X-Pow`)"),
        (status = 409, body = ErrorBody, description = "`duplicate_identity`"),
        (status = 429, body = ErrorBody, description = "`rate_limited`"),
    ))]
#[post("/v1/users")]
pub async fn register(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: Json<RegisterRequest>,
) -> ApiResult<HttpResponse> {
    let body = body.into_inner();
    let identity = match (&body.national_id, &body.identity) {
        (Some(national_id), None) => IdentityField::NationalId(national_id),
        (None, Some(identity)) => IdentityField::Identity(identity),
        _ => {
            return Err(ApiError::inconsistent(
                "identity",
                "give national_id or identity, not both",
            ))
        }
    };
    let registration = Registration::parse(
        identity,
        &body.email,
        body.password,
        body.display_name.as_deref(),
        body.locale.as_deref(),
    )?;
    // Bots pay before we do: the rate limit and the proof of work come before the
    // deliberately slow password hash, after the checks that cost nothing.
    crate::routes::challenge::check_ip(&state, &req)?;
    crate::routes::challenge::verify_pow(&state, &req).await?;
    let user_id = state.identity.register(registration).await?;
    // Evidence for the unusual-activity rules: many accounts from one network or device.
    let ip = crate::routes::challenge::client_ip(&state, &req);
    let device = req.headers().get(DEVICE_ID).and_then(|v| v.to_str().ok());
    let kind = allot_store::status::ActivityKind::Registration;
    crate::alerts::record(&state.db.get().await?, kind, Some(user_id), ip, device, None).await;
    Ok(HttpResponse::Created().json(Registered { user_id }))
}

// ---- Sessions -----------------------------------------------------------------------------

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignInRequest {
    /// Email or national ID.
    pub login: String,
    pub password: String,
    /// The 6-digit authenticator code; required once MFA is enabled.
    pub totp: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Session {
    /// Bearer token for every authenticated call.
    pub access_token: String,
    /// Opaque; exchange it at `/v1/sessions/refresh` before the access token expires. Each
    /// one works once.
    pub refresh_token: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
}

/// Signs in. Wrong login and wrong password give the same answer in about the same time.
/// After a few failures from one address each attempt needs a solved challenge (`X-Pow`);
/// an account that failed repeatedly backs off, and wrong codes lock it for a while.
#[utoipa::path(post, path = "/v1/sessions", request_body = SignInRequest,
    params(("X-Pow" = Option<String>, Header,
        description = "a solved `GET /v1/challenge`, required after failed sign-ins from this address")),
    responses(
        (status = 200, body = Session),
        (status = 400, body = ErrorBody, description = "`validation_error`, `malformed_json`"),
        (status = 401, body = ErrorBody,
            description = "`invalid_credentials`, `mfa_required`, `invalid_mfa_code`"),
        (status = 403, body = ErrorBody,
            description = "`proof_of_work_required`, `proof_of_work_invalid`, `account_suspended`"),
        (status = 429, body = ErrorBody,
            description = "`rate_limited`: this address, or an account backing off or locked"),
    ))]
#[post("/v1/sessions")]
pub async fn sign_in(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: Json<SignInRequest>,
) -> ApiResult<HttpResponse> {
    let body = body.into_inner();
    // Guessers pay before the deliberately slow password hash: the address's rate limit,
    // then, after its failures, a proof of work.
    crate::routes::challenge::check_ip(&state, &req)?;
    let ip = crate::routes::challenge::client_ip(&state, &req);
    if state.identity.sign_in_needs_pow(ip) {
        crate::routes::challenge::verify_pow(&state, &req).await?;
    }
    let tokens = state.identity.sign_in(&body.login, body.password, body.totp, ip).await?;
    Ok(token_response(tokens))
}

/// Tokens answers are never cached by a browser or proxy (RFC 6749, section 5.1).
fn token_response(tokens: Tokens) -> HttpResponse {
    let Tokens { access_token, refresh_token, expires_in } = tokens;
    HttpResponse::Ok().insert_header((CACHE_CONTROL, "no-store")).json(Session {
        access_token,
        refresh_token,
        expires_in,
    })
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

/// Exchanges a refresh token for a new access token and a new refresh token. The old one
/// stops working; presenting it again revokes every token of that sign-in. A session ends
/// 30 days after its sign-in whatever its refreshes (`ALLOT_SESSION_SECONDS_MAX`).
#[utoipa::path(post, path = "/v1/sessions/refresh", request_body = RefreshRequest,
    responses(
        (status = 200, body = Session),
        (status = 401, body = ErrorBody, description = "`unauthorized`: unknown, expired, revoked or reused"),
    ))]
#[post("/v1/sessions/refresh")]
pub async fn refresh(
    state: web::Data<AppState>,
    body: Json<RefreshRequest>,
) -> ApiResult<HttpResponse> {
    Ok(token_response(state.identity.refresh(&body.refresh_token).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignOutRequest {
    pub refresh_token: String,
}

/// Signs out. With a body, ends that refresh token's sign-in; without one, ends every
/// sign-in of the bearer. The access tokens of an ended sign-in stop working at once.
#[utoipa::path(delete, path = "/v1/sessions",
    request_body(content = Option<SignOutRequest>, description = "optional; without it the bearer is required"),
    responses(
        (status = 204),
        (status = 400, body = ErrorBody, description = "`malformed_json`"),
        (status = 401, body = ErrorBody, description = "`unauthorized`: neither a body nor a bearer"),
    ),
    security((), ("bearer" = [])))]
#[delete("/v1/sessions")]
pub async fn sign_out(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> ApiResult<HttpResponse> {
    if body.len() > LOGOUT_BODY_BYTES_MAX {
        return Err(ApiError::new(ErrorCode::PayloadTooLarge));
    }
    // No body, or JSON `null` (the document's "optional"): every sign-in of the bearer.
    let parsed: Option<SignOutRequest> = match body.iter().all(u8::is_ascii_whitespace) {
        true => None,
        false => super::json::from_slice(&body)?,
    };
    let Some(parsed) = parsed else {
        let who = Principal::extract(&req).await?;
        state.identity.sign_out_everywhere(who.user_id).await?;
        return Ok(HttpResponse::NoContent().finish());
    };
    state.identity.sign_out(&parsed.refresh_token).await?;
    Ok(HttpResponse::NoContent().finish())
}

// ---- The caller ---------------------------------------------------------------------------

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Me {
    pub user_id: i64,
    pub email: String,
    pub display_name: Option<String>,
    pub locale: String,
    pub role: Role,
    pub mfa_enabled: bool,
    pub identity: MyIdentity,
}

/// The kind of identity the account registered with and whether it is verified; never the
/// identity's value, which is stored only as a keyed hash.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MyIdentity {
    /// `thai_national_id`, `passport`, `phone` or `email`.
    pub kind: String,
    /// A passport's issuing state (ISO 3166-1 alpha-3).
    pub country: Option<String>,
    /// `unverified`, `pending` (at a KYC provider), `verified` or `rejected`.
    pub verification: String,
}

/// The caller's account.
#[utoipa::path(get, path = "/v1/me",
    responses((status = 200, body = Me), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
#[get("/v1/me")]
pub async fn me(state: web::Data<AppState>, who: Principal) -> ApiResult<HttpResponse> {
    let profile = state.identity.profile(who.user_id).await?;
    Ok(HttpResponse::Ok().json(Me {
        user_id: who.user_id,
        email: profile.email,
        display_name: profile.display_name,
        locale: profile.locale,
        role: profile.role,
        mfa_enabled: profile.mfa_enabled,
        identity: MyIdentity {
            kind: profile.identity_kind.as_str().into(),
            country: profile.identity_country,
            verification: profile.verification.as_str().into(),
        },
    }))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MfaEnrolment {
    /// Base32; for typing into an authenticator by hand.
    pub secret: String,
    /// `otpauth://` URL; show it as a QR code.
    pub otpauth_url: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MfaEnrolRequest {
    /// The account's password, asked again: a token alone must not choose the factor.
    #[schema(max_length = 128)]
    pub password: String,
}

/// Starts TOTP enrolment: a new secret, not yet required at sign-in until confirmed. Needs
/// the password. Once MFA is enabled this is `forbidden`, so a stolen access token cannot
/// swap the factor.
#[utoipa::path(post, path = "/v1/me/mfa", request_body = MfaEnrolRequest,
    responses(
        (status = 201, body = MfaEnrolment),
        (status = 400, body = ErrorBody, description = "`malformed_json`"),
        (status = 401, body = ErrorBody, description = "`unauthorized`, `invalid_credentials` (field `password`)"),
        (status = 403, body = ErrorBody, description = "`forbidden`: MFA is already enabled"),
    ),
    security(("bearer" = [])))]
#[post("/v1/me/mfa")]
pub async fn mfa_enrol(
    state: web::Data<AppState>,
    who: Principal,
    body: Json<MfaEnrolRequest>,
) -> ApiResult<HttpResponse> {
    let password = body.into_inner().password;
    let enrolment = state.identity.start_mfa_enrolment(who.user_id, password).await?;
    Ok(HttpResponse::Created()
        .insert_header((CACHE_CONTROL, "no-store"))
        .json(MfaEnrolment { secret: enrolment.secret, otpauth_url: enrolment.otpauth_url }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MfaConfirmRequest {
    /// The 6-digit code the authenticator shows now.
    pub code: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MfaStatus {
    pub mfa_enabled: bool,
}

/// Confirms enrolment with a current code; from then on sign-in requires a code. This
/// session counts as having passed it; every other session of the account ends.
#[utoipa::path(post, path = "/v1/me/mfa/confirm", request_body = MfaConfirmRequest,
    responses(
        (status = 200, body = MfaStatus),
        (status = 401, body = ErrorBody, description = "`invalid_mfa_code`, `unauthorized`"),
    ),
    security(("bearer" = [])))]
#[post("/v1/me/mfa/confirm")]
pub async fn mfa_confirm(
    state: web::Data<AppState>,
    who: Principal,
    body: Json<MfaConfirmRequest>,
) -> ApiResult<HttpResponse> {
    state.identity.confirm_mfa(who.user_id, who.session, &body.code).await?;
    Ok(HttpResponse::Ok().json(MfaStatus { mfa_enabled: true }))
}

// ---- Administration -----------------------------------------------------------------------

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetRoleRequest {
    #[schema(value_type = Role)]
    pub role: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UserRole {
    pub user_id: i64,
    pub role: Role,
}

/// Sets a user's role (admin only). Every session of the user ends, so the role applies
/// from their next sign-in. Admins cannot change their own role, so the last admin cannot
/// lock everyone out.
#[utoipa::path(put, path = "/v1/admin/users/{user_id}/role", request_body = SetRoleRequest,
    params(("user_id" = i64, Path)),
    responses(
        (status = 200, body = UserRole),
        (status = 400, body = ErrorBody, description = "`validation_error`"),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "`forbidden`, `mfa_enrollment_required`"),
        (status = 404, body = ErrorBody, description = "`not_found`: no such user"),
    ),
    security(("bearer" = [])))]
#[put("/v1/admin/users/{user_id}/role")]
pub async fn set_role(
    state: web::Data<AppState>,
    who: Principal,
    user_id: web::Path<i64>,
    body: Json<SetRoleRequest>,
) -> ApiResult<HttpResponse> {
    who.require(&[Role::Admin])?;
    let user_id = user_id.into_inner();
    let role = users::parse_role(&body.role)?;
    state.identity.set_role(who.user_id, user_id, role).await?;
    Ok(HttpResponse::Ok().json(UserRole { user_id, role }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_endpoint_is_documented() {
        use utoipa::OpenApi;
        #[derive(OpenApi)]
        #[openapi(paths(
            register,
            sign_in,
            refresh,
            sign_out,
            me,
            mfa_enrol,
            mfa_confirm,
            set_role
        ))]
        struct Doc;
        let doc = serde_json::to_value(Doc::openapi()).unwrap();
        for (path, method) in [
            ("/v1/users", "post"),
            ("/v1/sessions", "post"),
            ("/v1/sessions", "delete"),
            ("/v1/sessions/refresh", "post"),
            ("/v1/me", "get"),
            ("/v1/me/mfa", "post"),
            ("/v1/me/mfa/confirm", "post"),
            ("/v1/admin/users/{user_id}/role", "put"),
        ] {
            assert!(doc["paths"][path][method].is_object(), "{method} {path} is not documented");
        }
        let schemas = &doc["components"]["schemas"];
        assert!(schemas["RegisterRequest"]["properties"]["national_id"].is_object(), "{schemas}");
    }
}
