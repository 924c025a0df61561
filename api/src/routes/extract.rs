//! The caller of a request, from its bearer token (verified in memory, revoked sessions
//! included: no database).

use std::future::{ready, Ready};

use actix_web::{web, FromRequest, HttpRequest};

use crate::auth::Principal;
use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;

/// Extracting a [`Principal`] fails with `unauthorized` when the token is missing,
/// malformed, forged, expired or of a revoked session.
impl FromRequest for Principal {
    type Error = ApiError;
    type Future = Ready<Result<Principal, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        ready(principal(req))
    }
}

fn principal(req: &HttpRequest) -> Result<Principal, ApiError> {
    let state = req.app_data::<web::Data<AppState>>().expect("state is registered");
    let token = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| ApiError::new(ErrorCode::Unauthorized))?;
    let claims =
        state.tokens.verify(token).ok_or_else(|| ApiError::new(ErrorCode::Unauthorized))?;
    let user_id = claims.sub.parse().map_err(|_| ApiError::new(ErrorCode::Unauthorized))?;
    let identity = claims.idk.as_deref().and_then(allot_store::status::IdentityKind::parse);
    Ok(Principal {
        user_id,
        role: claims.role,
        mfa: claims.mfa,
        session: claims.sid,
        identity,
        verified: claims.kyc,
    })
}
