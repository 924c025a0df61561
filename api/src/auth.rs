//! The caller of a request and role checks. `routes::extract` reads it from the bearer
//! token.

use allot_store::status::IdentityKind;

use crate::error::{ApiError, ErrorCode};
use crate::identity::Role;

/// An authenticated caller. Extracting it fails with `unauthorized` when the token is
/// missing, malformed, forged or expired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Principal {
    pub user_id: i64,
    pub role: Role,
    pub mfa: bool,
    /// The session the token belongs to.
    pub session: uuid::Uuid,
    /// The kind of identity the account registered with (from the token).
    pub identity: Option<IdentityKind>,
    /// Whether that identity is verified (the token's word, or a later change's).
    pub verified: bool,
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
}
