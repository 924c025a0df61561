//! The second factor: TOTP enrolment, its confirmation, and the code check at sign-in.
//!
//! Enrolment (which asks for the password again) stores a new secret that sign-in does not
//! require until a current code confirms it. Once MFA is enabled, enrolling again is
//! `forbidden`, so a stolen access token cannot swap the factor.

use allot_store::identity as store;
use uuid::Uuid;

use super::tokens::now_seconds;
use super::{totp, Identity};
use crate::error::{ApiError, ApiResult, ErrorCode};

/// What an authenticator app needs; shown once, at enrolment.
pub struct Enrolment {
    /// Base32; for typing into an authenticator by hand.
    pub secret: String,
    /// `otpauth://` URL; shown as a QR code.
    pub otpauth_url: String,
}

/// Names no secret.
impl std::fmt::Debug for Enrolment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Enrolment").finish_non_exhaustive()
    }
}

impl Identity {
    /// Starts TOTP enrolment for the user with a fresh secret. The password is asked again:
    /// an access token alone (a stolen one, an unlocked laptop) must not choose the factor.
    pub async fn start_mfa_enrolment(
        &self,
        user_id: i64,
        password: String,
    ) -> ApiResult<Enrolment> {
        self.check_password(user_id, password).await?;
        let secret = totp::generate_secret();
        let client = self.db.get().await?;
        let Some(email) = store::start_totp_enrolment(&client, user_id, &secret).await? else {
            return Err(ApiError::new(match store::user_exists(&client, user_id).await? {
                true => ErrorCode::Forbidden,
                false => ErrorCode::Unauthorized,
            }));
        };
        tracing::info!(user_id, "MFA enrolment started");
        let otpauth_url = totp::otpauth_url(&secret, &email);
        Ok(Enrolment { secret, otpauth_url })
    }

    /// `invalid_credentials` on field `password` unless `password` is the user's.
    async fn check_password(&self, user_id: i64, password: String) -> ApiResult<()> {
        let wrong = || ApiError::field(ErrorCode::InvalidCredentials, "password");
        if password.len() > super::password::PASSWORD_BYTES_MAX {
            return Err(wrong());
        }
        let phc = store::password_hash(&self.db.get().await?, user_id).await?;
        if phc.is_none() {
            return Err(ApiError::new(ErrorCode::Unauthorized));
        }
        match super::password::verify(password, phc).await? {
            true => Ok(()),
            false => Err(wrong()),
        }
    }

    /// Confirms enrolment with a current `code`, which is then used up like a sign-in's;
    /// from then on sign-in requires a code. The
    /// confirming session has passed the factor; every other session of the user ends, so
    /// none goes on without it.
    pub async fn confirm_mfa(&self, user_id: i64, session: Uuid, code: &str) -> ApiResult<()> {
        let client = self.db.get().await?;
        let secret = store::totp_secret(&client, user_id)
            .await?
            .ok_or_else(|| ApiError::new(ErrorCode::Unauthorized))?;
        let invalid = || ApiError::field(ErrorCode::InvalidMfaCode, "code");
        let secret = secret.ok_or_else(invalid)?;
        let step = totp::matching_step(&secret, code, now_seconds()).ok_or_else(invalid)?;
        let step = i64::try_from(step).map_err(|_| invalid())?;
        // The secret is part of the condition: a concurrent re-enrolment with another
        // secret must not be enabled by a code for this one. The step is used up, so the
        // code someone saw typed here does not sign in too.
        if !store::enable_totp(&client, user_id, &secret, step).await? {
            return Err(invalid());
        }
        store::set_session_mfa(&client, user_id, session).await?;
        self.revoke_sessions(&client, user_id, Some(session)).await?;
        tracing::info!(user_id, "MFA enabled; other sessions revoked");
        Ok(())
    }
}

/// At sign-in, after the password matched: the TOTP step of the code this session passed
/// its second factor with, `None` when the account has no factor yet. Once TOTP is
/// enabled the code is required (`mfa_required`) and must be current (`invalid_mfa_code`).
pub(super) fn check_sign_in_code(
    secret: Option<&str>,
    enabled: bool,
    code: Option<String>,
) -> ApiResult<Option<u64>> {
    let (Some(secret), true) = (secret, enabled) else {
        return Ok(None);
    };
    let code = code.ok_or_else(|| ApiError::field(ErrorCode::MfaRequired, "totp"))?;
    totp::matching_step(secret, &code, now_seconds())
        .map(Some)
        .ok_or_else(|| ApiError::field(ErrorCode::InvalidMfaCode, "totp"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_is_needed_only_once_totp_is_enabled() {
        let secret = totp::generate_secret();
        assert_eq!(check_sign_in_code(None, false, None).unwrap(), None);
        assert_eq!(check_sign_in_code(Some(&secret), false, None).unwrap(), None, "pending");
        let e = check_sign_in_code(Some(&secret), true, None).unwrap_err();
        assert_eq!((e.code, e.field.as_deref()), (ErrorCode::MfaRequired, Some("totp")));
        // Five digits never match, whatever the time.
        let e = check_sign_in_code(Some(&secret), true, Some("12345".into())).unwrap_err();
        assert_eq!((e.code, e.field.as_deref()), (ErrorCode::InvalidMfaCode, Some("totp")));
        let t = now_seconds();
        let now = totp::code_at(&secret, t).unwrap();
        let step = check_sign_in_code(Some(&secret), true, Some(now)).unwrap().unwrap();
        assert!(step.abs_diff(t / totp::STEP_SECONDS) <= 1);
    }
}
