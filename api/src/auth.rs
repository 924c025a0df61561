//! The caller of a request, from its bearer token, and role checks.

use std::future::{ready, Ready};

use actix_web::{web, FromRequest, HttpRequest};

use crate::error::{ApiError, ErrorCode};
use crate::identity::Role;
use crate::state::AppState;

/// An authenticated caller. Extracting it fails with `unauthorized` when the token is
/// missing, malformed, forged or expired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Principal {
    pub user_id: i64,
    pub role: Role,
    pub mfa: bool,
}

impl Principal {
    /// The ledger's person number for this user.
    pub fn person(&self) -> u64 {
        self.user_id as u64
    }

    /// Succeeds when the caller has one of `roles`; staff roles must also have used MFA.
    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if !roles.contains(&self.role) {
            return Err(ApiError::new(ErrorCode::Forbidden));
        }
        if self.role.requires_mfa() && !self.mfa {
            return Err(ApiError::new(ErrorCode::MfaEnrollmentRequired));
        }
        Ok(())
    }

    pub fn is_staff(&self) -> bool {
        self.role != Role::Citizen && self.mfa
    }
}

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
    Ok(Principal { user_id, role: claims.role, mfa: claims.mfa })
}
