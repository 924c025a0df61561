//! Users, sessions and second factors.
//!
//! - `POST /v1/users` registers a citizen: one account per national ID (stored as a keyed
//!   hash) and per email, enforced by the unique constraints, never by a racy pre-check.
//! - `POST /v1/sessions` signs in with email or national ID, password, and the TOTP code
//!   once enrolled; it answers a short-lived access token and an opaque refresh token.
//! - `POST /v1/sessions/refresh` rotates a refresh token. Tokens of one sign-in form a
//!   family; presenting a token that was already rotated means it was copied, so the whole
//!   family is revoked and both holders must sign in again.
//! - `POST /v1/me/mfa` and `/v1/me/mfa/confirm` enrol an authenticator.
//! - `PUT /v1/admin/users/{user_id}/role` is how staff get their roles.
//!
//! The raw national ID is never logged, stored or returned; neither is a password, a TOTP
//! secret after enrolment, or a refresh token after it is issued.

use std::path::Path;

use actix_web::{delete, get, post, put, web, FromRequest, HttpRequest, HttpResponse};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use deadpool_postgres::GenericClient;
use rand::{Rng, RngCore};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio_postgres::error::SqlState;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult, ErrorBody, ErrorCode};
use crate::identity::national_id::NationalId;
use crate::identity::tokens::now_seconds;
use crate::identity::{password, totp, Role};
use crate::state::AppState;

/// User ids are below 2^53 so JavaScript clients read them exactly; they are also the
/// ledger's person numbers.
const USER_ID_LIMIT: i64 = 1 << 53;
/// A random id colliding with an existing one is a 1-in-2^53-per-user event; a few retries
/// turn "practically never" into "never".
const USER_ID_ATTEMPTS_MAX: usize = 3;
/// RFC 5321: 64 bytes of local part, 254 bytes in all.
const EMAIL_BYTES_MAX: usize = 254;
const EMAIL_LOCAL_BYTES_MAX: usize = 64;
const DISPLAY_NAME_CHARS_MAX: usize = 100;
/// Logins longer than any email or national ID are not looked up.
const LOGIN_BYTES_MAX: usize = EMAIL_BYTES_MAX;
/// Refresh tokens carry 256 random bits.
const REFRESH_TOKEN_BYTES: usize = 32;
/// `DELETE /v1/sessions` reads its optional body by hand; a refresh token fits easily.
const LOGOUT_BODY_BYTES_MAX: usize = 1024;
/// Serializes the dev admin's creation across API processes starting together.
const DEV_ADMIN_LOCK: i64 = 7_411_002;
const DEV_ADMIN_EMAIL: &str = "admin@allot.local";
/// A valid but obviously made-up national ID (1, then zeros, then its check digit).
const DEV_ADMIN_NATIONAL_ID: &str = "1000000000009";

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
    /// Thai national ID, 13 digits; dashes and spaces are ignored.
    pub national_id: String,
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
            description = "`validation_error`, `invalid_national_id`, `weak_password`, `malformed_json`"),
        (status = 403, body = ErrorBody,
            description = "`proof_of_work_required`, `proof_of_work_invalid` (solve `GET /v1/challenge`, send `X-Pow`)"),
        (status = 409, body = ErrorBody, description = "`duplicate_identity`"),
        (status = 429, body = ErrorBody, description = "`rate_limited`"),
    ))]
#[post("/v1/users")]
pub async fn register(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<RegisterRequest>,
) -> ApiResult<HttpResponse> {
    let body = body.into_inner();
    let national_id = NationalId::parse(&body.national_id)?;
    let email = parse_email(&body.email)?;
    let display_name = parse_display_name(body.display_name.as_deref())?;
    let locale = parse_locale(body.locale.as_deref())?;
    password::check_strength(&body.password, &email, national_id.expose_digits())?;
    // Bots pay before we do: the rate limit and the proof of work come before the
    // deliberately slow password hash, after the checks that cost nothing.
    crate::routes::challenge::check_ip(&state, &req)?;
    crate::routes::challenge::verify_pow(&state, &req).await?;
    let password_hash = password::hash(body.password).await?;
    let new = NewUser {
        identity_hash: national_id.lookup_hash(&state.identity_key),
        email,
        password_hash,
        display_name,
        locale,
    };
    let user_id = insert_user(&state.db.get().await?, &new).await?;
    let (actor, after) = (crate::audit::user(user_id), serde_json::json!({ "role": "citizen" }));
    crate::audit::append(
        &state.db.get().await?,
        &actor,
        "user.register",
        &actor,
        None,
        Some(&after),
    )
    .await?;
    tracing::info!(user_id, "user registered");
    Ok(HttpResponse::Created().json(Registered { user_id }))
}

struct NewUser {
    identity_hash: [u8; 32],
    email: String,
    password_hash: String,
    display_name: Option<String>,
    locale: &'static str,
}

/// Inserts a citizen under a fresh random id. The unique constraints decide duplicates, so
/// two concurrent registrations of one identity cannot both succeed.
async fn insert_user(client: &impl GenericClient, new: &NewUser) -> ApiResult<i64> {
    for _ in 0..USER_ID_ATTEMPTS_MAX {
        let user_id = rand::thread_rng().gen_range(1..USER_ID_LIMIT);
        let inserted = client
            .execute(
                "INSERT INTO users (user_id, identity_hash, email, password_hash, display_name, locale)
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[
                    &user_id,
                    &&new.identity_hash[..],
                    &new.email,
                    &new.password_hash,
                    &new.display_name,
                    &new.locale,
                ],
            )
            .await;
        match inserted {
            Ok(_) => return Ok(user_id),
            Err(e) => match unique_violation(&e) {
                Some("users_pkey") => continue,
                Some(_) => return Err(ApiError::new(ErrorCode::DuplicateIdentity)),
                None => return Err(e.into()),
            },
        }
    }
    Err(ApiError::internal("no free user id after several attempts"))
}

/// The constraint a unique violation hit, if `e` is one.
fn unique_violation(e: &tokio_postgres::Error) -> Option<&str> {
    let db = e.as_db_error()?;
    if *db.code() != SqlState::UNIQUE_VIOLATION {
        return None;
    }
    Some(db.constraint().unwrap_or(""))
}

/// Trimmed and lower-cased, so one mailbox is one account whatever its spelling. Checks the
/// shape only; whether the mailbox exists is for a confirmation email to find out.
fn parse_email(raw: &str) -> ApiResult<String> {
    let email = raw.trim().to_lowercase();
    let invalid = || ApiError::validation("email", "an address like name@example.com");
    if email.len() > EMAIL_BYTES_MAX {
        return Err(ApiError::validation("email", format!("at most {EMAIL_BYTES_MAX} bytes")));
    }
    let (local, domain) = email.rsplit_once('@').ok_or_else(invalid)?;
    let labels_ok = domain.split('.').count() >= 2
        && domain.split('.').all(|l| !l.is_empty() && !l.starts_with('-') && !l.ends_with('-'));
    if local.is_empty()
        || local.len() > EMAIL_LOCAL_BYTES_MAX
        || local.contains('@')
        || !labels_ok
        || email.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(invalid());
    }
    Ok(email)
}

fn parse_display_name(raw: Option<&str>) -> ApiResult<Option<String>> {
    let Some(name) = raw.map(str::trim).filter(|n| !n.is_empty()) else {
        return Ok(None);
    };
    if name.chars().count() > DISPLAY_NAME_CHARS_MAX {
        let reason = format!("at most {DISPLAY_NAME_CHARS_MAX} characters");
        return Err(ApiError::validation("display_name", reason));
    }
    if name.chars().any(char::is_control) {
        return Err(ApiError::validation("display_name", "no control characters"));
    }
    Ok(Some(name.to_owned()))
}

fn parse_locale(raw: Option<&str>) -> ApiResult<&'static str> {
    let Some(raw) = raw else { return Ok("th") };
    crate::i18n::SUPPORTED
        .into_iter()
        .find(|l| *l == raw)
        .ok_or_else(|| ApiError::validation("locale", "one of th, en, ja, ko, zh"))
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
#[utoipa::path(post, path = "/v1/sessions", request_body = SignInRequest,
    responses(
        (status = 200, body = Session),
        (status = 400, body = ErrorBody, description = "`validation_error`, `malformed_json`"),
        (status = 401, body = ErrorBody,
            description = "`invalid_credentials`, `mfa_required`, `invalid_mfa_code`"),
    ))]
#[post("/v1/sessions")]
pub async fn sign_in(
    state: web::Data<AppState>,
    body: web::Json<SignInRequest>,
) -> ApiResult<HttpResponse> {
    let body = body.into_inner();
    if body.password.len() > password::PASSWORD_BYTES_MAX {
        let reason = format!("at most {} bytes", password::PASSWORD_BYTES_MAX);
        return Err(ApiError::validation("password", reason));
    }
    // The connection goes back to the pool before hashing: a login rush must not hold every
    // connection for the length of an argon2 verification.
    let user = find_for_sign_in(&state.db.get().await?, &state, &body.login).await?;
    let phc = user.as_ref().map(|u| u.password_hash.clone());
    let matches = password::verify(body.password, phc).await?;
    let user = match user {
        Some(user) if matches => user,
        _ => return Err(ApiError::new(ErrorCode::InvalidCredentials)),
    };
    let mfa = match (&user.totp_secret, user.totp_enabled) {
        (Some(secret), true) => {
            let code = body.totp.ok_or_else(|| ApiError::field(ErrorCode::MfaRequired, "totp"))?;
            if !totp::verify(secret, &code, now_seconds()) {
                return Err(ApiError::field(ErrorCode::InvalidMfaCode, "totp"));
            }
            true
        }
        _ => false,
    };
    let session =
        start_session(&state.db.get().await?, &state, user.user_id, user.role, mfa).await?;
    let (actor, after) = (crate::audit::user(user.user_id), serde_json::json!({ "mfa": mfa }));
    crate::audit::append(
        &state.db.get().await?,
        &actor,
        "user.sign_in",
        &actor,
        None,
        Some(&after),
    )
    .await?;
    tracing::info!(user_id = user.user_id, mfa, "signed in");
    Ok(token_response(session))
}

struct SignInUser {
    user_id: i64,
    password_hash: String,
    role: Role,
    totp_secret: Option<String>,
    totp_enabled: bool,
}

/// The account a login names: an email (it has an `@`) or a national ID. A login that is
/// neither names nobody, which the caller answers like a wrong password.
async fn find_for_sign_in(
    client: &impl GenericClient,
    state: &AppState,
    login: &str,
) -> ApiResult<Option<SignInUser>> {
    const COLUMNS: &str = "user_id, password_hash, role, totp_secret, totp_enabled";
    if login.len() > LOGIN_BYTES_MAX {
        return Ok(None);
    }
    let row = if login.contains('@') {
        let email = login.trim().to_lowercase();
        let sql = format!("SELECT {COLUMNS} FROM users WHERE email = $1");
        client.query_opt(&sql, &[&email]).await?
    } else if let Ok(id) = NationalId::parse(login) {
        let hash = id.lookup_hash(&state.identity_key);
        let sql = format!("SELECT {COLUMNS} FROM users WHERE identity_hash = $1");
        client.query_opt(&sql, &[&&hash[..]]).await?
    } else {
        None
    };
    Ok(row.map(|row| SignInUser {
        user_id: row.get(0),
        password_hash: row.get(1),
        role: stored_role(row.get(2)),
        totp_secret: row.get(3),
        totp_enabled: row.get(4),
    }))
}

/// Roles in the database passed its CHECK constraint, so an unknown one is a broken
/// invariant, not a client's mistake.
fn stored_role(text: &str) -> Role {
    Role::parse(text).unwrap_or_else(|| panic!("users.role holds unknown role {text:?}"))
}

/// A new family: an access token and the family's first refresh token.
async fn start_session(
    client: &impl GenericClient,
    state: &AppState,
    user_id: i64,
    role: Role,
    mfa: bool,
) -> ApiResult<Session> {
    let refresh_token = issue_refresh_token(client, state, user_id, Uuid::new_v4()).await?;
    Ok(Session {
        access_token: state.tokens.issue(user_id, role, mfa),
        refresh_token,
        expires_in: state.tokens.access_seconds,
    })
}

/// Stores the SHA-256 of a fresh random token and answers the token itself, which exists
/// nowhere else afterwards: a database leak yields no usable refresh token.
async fn issue_refresh_token(
    client: &impl GenericClient,
    state: &AppState,
    user_id: i64,
    family: Uuid,
) -> ApiResult<String> {
    let mut raw = [0u8; REFRESH_TOKEN_BYTES];
    rand::thread_rng().fill_bytes(&mut raw);
    let lifetime = i64::try_from(state.settings.identity.refresh_token_seconds)
        .map_err(|_| ApiError::internal("refresh_token_seconds does not fit in i64"))?;
    client
        .execute(
            "INSERT INTO refresh_tokens (token_hash, user_id, family, expires_at)
             VALUES ($1, $2, $3, now() + $4::BIGINT * INTERVAL '1 second')",
            &[&&Sha256::digest(raw)[..], &user_id, &family, &lifetime],
        )
        .await?;
    Ok(URL_SAFE_NO_PAD.encode(raw))
}

/// The stored hash of a presented refresh token, or `None` when it cannot be one of ours.
fn refresh_token_hash(token: &str) -> Option<Vec<u8>> {
    let raw = URL_SAFE_NO_PAD.decode(token.as_bytes()).ok()?;
    (raw.len() == REFRESH_TOKEN_BYTES).then(|| Sha256::digest(raw).to_vec())
}

/// Tokens answers are never cached by a browser or proxy (RFC 6749, section 5.1).
fn token_response(session: Session) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .json(session)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

/// Exchanges a refresh token for a new access token and a new refresh token. The old one
/// stops working; presenting it again revokes every token of that sign-in. Role and MFA
/// status are read afresh, so a role change takes effect here.
#[utoipa::path(post, path = "/v1/sessions/refresh", request_body = RefreshRequest,
    responses(
        (status = 200, body = Session),
        (status = 401, body = ErrorBody, description = "`unauthorized`: unknown, expired, revoked or reused"),
    ))]
#[post("/v1/sessions/refresh")]
pub async fn refresh(
    state: web::Data<AppState>,
    body: web::Json<RefreshRequest>,
) -> ApiResult<HttpResponse> {
    let unauthorized = || ApiError::field(ErrorCode::Unauthorized, "refresh_token");
    let hash = refresh_token_hash(&body.refresh_token).ok_or_else(unauthorized)?;
    let mut client = state.db.get().await?;
    let tx = client.transaction().await?;
    // FOR UPDATE: of two concurrent refreshes with one token, exactly one rotates it and
    // the other sees it used, which is the reuse signal.
    let row = tx
        .query_opt(
            "SELECT t.user_id, t.family, t.used_at IS NOT NULL, t.revoked_at IS NOT NULL,
                    t.expires_at <= now(), u.role, u.totp_enabled
             FROM refresh_tokens t JOIN users u USING (user_id)
             WHERE t.token_hash = $1 FOR UPDATE OF t",
            &[&hash],
        )
        .await?
        .ok_or_else(unauthorized)?;
    let (user_id, family): (i64, Uuid) = (row.get(0), row.get(1));
    let (used, revoked, expired): (bool, bool, bool) = (row.get(2), row.get(3), row.get(4));
    if used && !revoked {
        tx.execute(
            "UPDATE refresh_tokens SET revoked_at = now() WHERE family = $1 AND revoked_at IS NULL",
            &[&family],
        )
        .await?;
        tx.commit().await?;
        tracing::warn!(user_id, %family, "refresh token reused: session family revoked");
        return Err(unauthorized());
    }
    if used || revoked || expired {
        return Err(unauthorized());
    }
    tx.execute("UPDATE refresh_tokens SET used_at = now() WHERE token_hash = $1", &[&hash]).await?;
    let refresh_token = issue_refresh_token(&tx, &state, user_id, family).await?;
    tx.commit().await?;
    let role = stored_role(row.get(5));
    // A session of a user with TOTP enabled passed it: at sign-in (required once enabled)
    // or at the confirmation that enabled it, within this very session.
    let mfa: bool = row.get(6);
    Ok(token_response(Session {
        access_token: state.tokens.issue(user_id, role, mfa),
        refresh_token,
        expires_in: state.tokens.access_seconds,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignOutRequest {
    pub refresh_token: String,
}

/// Signs out. With a body, ends that refresh token's sign-in; without one, ends every
/// sign-in of the bearer. Access tokens already issued stay valid until they expire
/// (`expires_in`, minutes), since they are checked without the database.
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
    let client = state.db.get().await?;
    if body.iter().all(u8::is_ascii_whitespace) {
        let who = Principal::extract(&req).await?;
        client
            .execute(
                "UPDATE refresh_tokens SET revoked_at = now()
                 WHERE user_id = $1 AND revoked_at IS NULL",
                &[&who.user_id],
            )
            .await?;
        tracing::info!(user_id = who.user_id, "signed out everywhere");
        return Ok(HttpResponse::NoContent().finish());
    }
    if body.len() > LOGOUT_BODY_BYTES_MAX {
        return Err(ApiError::new(ErrorCode::PayloadTooLarge));
    }
    let parsed: SignOutRequest = serde_json::from_slice(&body).map_err(|e| {
        let reason = e.to_string();
        let field =
            reason.split('`').nth(1).filter(|_| reason.contains("field")).map(str::to_owned);
        ApiError { code: ErrorCode::MalformedJson, field, args: vec![("reason", reason)] }
    })?;
    // An unknown token is answered 204 as well: signing out is idempotent, and the answer
    // must not tell a guesser whether a token exists.
    if let Some(hash) = refresh_token_hash(&parsed.refresh_token) {
        client
            .execute(
                "UPDATE refresh_tokens SET revoked_at = now()
                 WHERE family = (SELECT family FROM refresh_tokens WHERE token_hash = $1)
                   AND revoked_at IS NULL",
                &[&hash],
            )
            .await?;
    }
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
}

/// The caller's account.
#[utoipa::path(get, path = "/v1/me",
    responses((status = 200, body = Me), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
#[get("/v1/me")]
pub async fn me(state: web::Data<AppState>, who: Principal) -> ApiResult<HttpResponse> {
    let row = state
        .db
        .get()
        .await?
        .query_opt(
            "SELECT email, display_name, locale, role, totp_enabled FROM users WHERE user_id = $1",
            &[&who.user_id],
        )
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::Unauthorized))?;
    Ok(HttpResponse::Ok().json(Me {
        user_id: who.user_id,
        email: row.get(0),
        display_name: row.get(1),
        locale: row.get(2),
        role: stored_role(row.get(3)),
        mfa_enabled: row.get(4),
    }))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MfaEnrolment {
    /// Base32; for typing into an authenticator by hand.
    pub secret: String,
    /// `otpauth://` URL; show it as a QR code.
    pub otpauth_url: String,
}

/// Starts TOTP enrolment: a new secret, not yet required at sign-in until confirmed. Once
/// MFA is enabled this is `forbidden`, so a stolen access token cannot swap the factor.
#[utoipa::path(post, path = "/v1/me/mfa",
    responses(
        (status = 201, body = MfaEnrolment),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "`forbidden`: MFA is already enabled"),
    ),
    security(("bearer" = [])))]
#[post("/v1/me/mfa")]
pub async fn mfa_enrol(state: web::Data<AppState>, who: Principal) -> ApiResult<HttpResponse> {
    let secret = totp::generate_secret();
    let client = state.db.get().await?;
    let updated = client
        .query_opt(
            "UPDATE users SET totp_secret = $2 WHERE user_id = $1 AND NOT totp_enabled
             RETURNING email",
            &[&who.user_id, &secret],
        )
        .await?;
    let Some(row) = updated else {
        let exists =
            client.query_opt("SELECT 1 FROM users WHERE user_id = $1", &[&who.user_id]).await?;
        return Err(ApiError::new(match exists {
            Some(_) => ErrorCode::Forbidden,
            None => ErrorCode::Unauthorized,
        }));
    };
    let email: String = row.get(0);
    tracing::info!(user_id = who.user_id, "MFA enrolment started");
    let otpauth_url = totp::otpauth_url(&secret, &email);
    Ok(HttpResponse::Created()
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .json(MfaEnrolment { secret, otpauth_url }))
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

/// Confirms enrolment with a current code; from then on sign-in requires a code.
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
    body: web::Json<MfaConfirmRequest>,
) -> ApiResult<HttpResponse> {
    let client = state.db.get().await?;
    let row = client
        .query_opt("SELECT totp_secret FROM users WHERE user_id = $1", &[&who.user_id])
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::Unauthorized))?;
    let secret: Option<String> = row.get(0);
    let invalid = || ApiError::field(ErrorCode::InvalidMfaCode, "code");
    let secret = secret.ok_or_else(invalid)?;
    if !totp::verify(&secret, &body.code, now_seconds()) {
        return Err(invalid());
    }
    // The secret is part of the condition: a concurrent re-enrolment with another secret
    // must not be enabled by a code for this one.
    let enabled = client
        .execute(
            "UPDATE users SET totp_enabled = TRUE WHERE user_id = $1 AND totp_secret = $2",
            &[&who.user_id, &secret],
        )
        .await?;
    if enabled == 0 {
        return Err(invalid());
    }
    tracing::info!(user_id = who.user_id, "MFA enabled");
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

/// Sets a user's role (admin only). It takes effect at the user's next sign-in or refresh.
/// Admins cannot change their own role, so the last admin cannot lock everyone out.
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
    body: web::Json<SetRoleRequest>,
) -> ApiResult<HttpResponse> {
    who.require(&[Role::Admin])?;
    let user_id = user_id.into_inner();
    let role = Role::parse(&body.role).ok_or_else(|| {
        ApiError::validation("role", "one of citizen, finance, regulator, official, admin")
    })?;
    if user_id == who.user_id {
        return Err(ApiError::field(ErrorCode::Forbidden, "user_id"));
    }
    let client = state.db.get().await?;
    let before = client
        .query_opt("SELECT role FROM users WHERE user_id = $1", &[&user_id])
        .await?
        .map(|row| serde_json::json!({ "role": row.get::<_, String>(0) }));
    let updated = client
        .execute("UPDATE users SET role = $2 WHERE user_id = $1", &[&user_id, &role.as_str()])
        .await?;
    if updated == 0 {
        return Err(ApiError::field(ErrorCode::NotFound, "user_id"));
    }
    let after = serde_json::json!({ "role": role.as_str() });
    let (actor, subject) = (crate::audit::user(who.user_id), crate::audit::user(user_id));
    crate::audit::append(
        &client,
        &actor,
        "user.role_change",
        &subject,
        before.as_ref(),
        Some(&after),
    )
    .await?;
    tracing::info!(user_id, role = role.as_str(), admin = who.user_id, "role changed");
    Ok(HttpResponse::Ok().json(UserRole { user_id, role }))
}

// ---- Development ---------------------------------------------------------------------------

#[derive(Debug, Serialize, Deserialize)]
struct DevCredentials {
    email: String,
    password: String,
    totp_secret: String,
}

/// In dev mode, when no admin exists, creates one (TOTP enabled) and writes its credentials
/// to `data_dir/dev-credentials.json`, readable by the owner only. Does nothing otherwise,
/// so restarts keep the admin and the file from the first start.
pub async fn bootstrap_dev_admin(state: &AppState) -> Result<(), String> {
    if !state.settings.dev_mode {
        return Ok(());
    }
    let mut client = state.db.get().await.map_err(|e| e.to_string())?;
    let tx = client.transaction().await.map_err(|e| e.to_string())?;
    // Several API processes may start at once; only one may create the admin and write
    // the file, or the file could name a password the database does not hold.
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&DEV_ADMIN_LOCK])
        .await
        .map_err(|e| e.to_string())?;
    let admin = tx
        .query_opt("SELECT 1 FROM users WHERE role = 'admin' LIMIT 1", &[])
        .await
        .map_err(|e| e.to_string())?;
    if admin.is_some() {
        return Ok(());
    }
    let credentials = DevCredentials {
        email: DEV_ADMIN_EMAIL.into(),
        password: {
            let mut raw = [0u8; 24];
            rand::thread_rng().fill_bytes(&mut raw);
            URL_SAFE_NO_PAD.encode(raw)
        },
        totp_secret: totp::generate_secret(),
    };
    let password_hash =
        password::hash(credentials.password.clone()).await.map_err(|e| e.to_string())?;
    let national_id = NationalId::parse(DEV_ADMIN_NATIONAL_ID).map_err(|e| e.to_string())?;
    let user_id = rand::thread_rng().gen_range(1..USER_ID_LIMIT);
    // An earlier dev admin that was demoted keeps its row: take it over rather than fail.
    tx.execute(
        "INSERT INTO users (user_id, identity_hash, email, password_hash, display_name, locale,
                            role, totp_secret, totp_enabled)
         VALUES ($1, $2, $3, $4, 'Development admin', 'en', 'admin', $5, TRUE)
         ON CONFLICT (email) DO UPDATE SET role = 'admin', password_hash = EXCLUDED.password_hash,
             totp_secret = EXCLUDED.totp_secret, totp_enabled = TRUE",
        &[
            &user_id,
            &&national_id.lookup_hash(&state.identity_key)[..],
            &credentials.email,
            &password_hash,
            &credentials.totp_secret,
        ],
    )
    .await
    .map_err(|e| format!("creating the dev admin: {e}"))?;
    let path = state.settings.data_dir.join("dev-credentials.json");
    write_private(&path, &serde_json::to_vec_pretty(&credentials).expect("serializes"))?;
    tx.commit().await.map_err(|e| e.to_string())?;
    tracing::info!(path = %path.display(), "dev admin created; credentials written");
    Ok(())
}

/// Writes `bytes` to `path`, readable and writable by the owner only (0600).
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let fail = |e: std::io::Error| format!("{}: {e}", path.display());
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(fail)?;
    // `mode` applies only when the file is created; an older file may be more open.
    file.set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(fail)?;
    file.write_all(bytes).map_err(fail)?;
    file.sync_all().map_err(fail)
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

    #[test]
    fn the_dev_admin_national_id_is_valid() {
        assert!(NationalId::parse(DEV_ADMIN_NATIONAL_ID).is_ok());
    }

    #[test]
    fn emails_are_normalized_and_shape_checked() {
        assert_eq!(parse_email("  Somchai.J@Example.CO.TH ").unwrap(), "somchai.j@example.co.th");
        for bad in
            ["", "somchai", "@example.com", "a@b", "a@.com", "a@-x.com", "a b@x.com", "a@@x.com"]
        {
            let e = parse_email(bad).unwrap_err();
            assert_eq!(
                (e.code, e.field.as_deref()),
                (ErrorCode::ValidationError, Some("email")),
                "{bad}"
            );
        }
        let long = format!("{}@example.com", "a".repeat(65));
        assert!(parse_email(&long).is_err());
    }

    #[test]
    fn display_names_are_trimmed_and_bounded_in_characters() {
        assert_eq!(parse_display_name(None).unwrap(), None);
        assert_eq!(parse_display_name(Some("  ")).unwrap(), None);
        assert_eq!(parse_display_name(Some(" สมชาย ")).unwrap().as_deref(), Some("สมชาย"));
        // 100 Thai characters are 300 bytes and still allowed: the limit is in characters.
        assert!(parse_display_name(Some(&"ก".repeat(100))).is_ok());
        let e = parse_display_name(Some(&"ก".repeat(101))).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("display_name"));
        assert!(parse_display_name(Some("a\u{0}b")).is_err());
    }

    #[test]
    fn locales_default_to_thai_and_must_be_supported() {
        assert_eq!(parse_locale(None).unwrap(), "th");
        assert_eq!(parse_locale(Some("ja")).unwrap(), "ja");
        assert_eq!(parse_locale(Some("fr")).unwrap_err().field.as_deref(), Some("locale"));
    }

    #[test]
    fn only_32_byte_base64url_tokens_have_a_hash() {
        let token = URL_SAFE_NO_PAD.encode([9u8; REFRESH_TOKEN_BYTES]);
        assert_eq!(refresh_token_hash(&token).unwrap(), Sha256::digest([9u8; 32]).to_vec());
        assert!(refresh_token_hash(&URL_SAFE_NO_PAD.encode([9u8; 31])).is_none());
        assert!(refresh_token_hash("not base64 at all!").is_none());
    }
}
