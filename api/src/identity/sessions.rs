//! Sessions: sign-in and refresh-token rotation (sign-out and revocation: `revocation`).
//!
//! A sign-in starts a session (a row in `sessions`: whether it passed a second factor, its
//! absolute end) and answers a short-lived access token naming it and an opaque refresh
//! token. Refresh tokens of one session form a family; presenting a token that was already
//! rotated means it was copied, so the session is revoked and both holders must sign in
//! again. Only the SHA-256 of
//! a refresh token is stored: a database leak yields no usable refresh token.

use std::net::IpAddr;

use allot_store::identity as store;
use allot_store::status::Verification;
use allot_store::GenericClient;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::RngCore;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::national_id::NationalId;
use super::tokens::IdentityClaim;
use super::users::EMAIL_BYTES_MAX;
use super::{guard, mfa, password, stored_role, Identity, Role};
use crate::error::{ApiError, ApiResult, ErrorCode};

/// Logins longer than any email or national ID are not looked up.
const LOGIN_BYTES_MAX: usize = EMAIL_BYTES_MAX;
/// Refresh tokens carry 256 random bits.
const REFRESH_TOKEN_BYTES: usize = 32;

/// What a sign-in or a refresh hands out.
pub struct Tokens {
    /// Bearer token for every authenticated call.
    pub access_token: String,
    /// Opaque; works once.
    pub refresh_token: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
}

/// Names neither token.
impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens").field("expires_in", &self.expires_in).finish_non_exhaustive()
    }
}

impl Identity {
    /// Signs in with an email or national ID, the password, and the TOTP code once enabled.
    /// Wrong login and wrong password give the same answer in about the same time. An
    /// account backing off or locked (`guard`) is refused before its password is hashed.
    pub async fn sign_in(
        &self,
        login: &str,
        password: String,
        totp: Option<String>,
        ip: Option<IpAddr>,
    ) -> ApiResult<Tokens> {
        if password.len() > password::PASSWORD_BYTES_MAX {
            let reason = format!("at most {} bytes", password::PASSWORD_BYTES_MAX);
            return Err(ApiError::validation("password", reason));
        }
        // The connection goes back to the pool before hashing: a login rush must not hold
        // every connection for the length of an argon2 verification.
        let user = self.find_for_sign_in(&self.db.get().await?, login).await?;
        if let Some(user) = &user {
            guard::check_account(user)?;
        }
        let phc = user.as_ref().and_then(|u| u.password_hash.clone());
        let matches = password::verify(password, phc).await?;
        let user = match user {
            Some(user) if matches => user,
            other => {
                self.sign_in_failed(ip, other.map(|u| u.user_id), false).await?;
                return Err(ApiError::new(ErrorCode::InvalidCredentials));
            }
        };
        if allot_store::alerts::is_suspended(&self.db.get().await?, user.user_id).await? {
            return Err(ApiError::new(ErrorCode::AccountSuspended));
        }
        let mfa = match self.second_factor(&user, totp).await {
            Ok(mfa) => mfa,
            Err(e) => {
                if e.code == ErrorCode::InvalidMfaCode {
                    self.sign_in_failed(ip, Some(user.user_id), true).await?;
                }
                return Err(e);
            }
        };
        self.guard.succeeded(ip);
        store::record_sign_in_success(&self.db.get().await?, user.user_id).await?;
        let identity = IdentityClaim {
            kind: user.identity_kind,
            verified: user.verification == Verification::Verified,
        };
        self.signed_in(user.user_id, stored_role(&user.role), mfa, identity).await
    }

    /// Whether the next sign-in from `ip` must carry a solved proof-of-work challenge.
    pub fn sign_in_needs_pow(&self, ip: Option<IpAddr>) -> bool {
        self.guard.needs_pow(ip)
    }

    /// After the password matched: whether a second factor was passed. A code is good once:
    /// its step is stored, and the same code again is `invalid_mfa_code`.
    async fn second_factor(
        &self,
        user: &store::Credentials,
        code: Option<String>,
    ) -> ApiResult<bool> {
        let secret = user.totp_secret.as_deref();
        let Some(step) = mfa::check_sign_in_code(secret, user.totp_enabled, code)? else {
            return Ok(false);
        };
        let step = i64::try_from(step).map_err(ApiError::internal)?;
        if !store::use_totp_step(&self.db.get().await?, user.user_id, step).await? {
            tracing::warn!(target: "security", user_id = user.user_id, "TOTP code replayed");
            return Err(ApiError::field(ErrorCode::InvalidMfaCode, "totp"));
        }
        Ok(true)
    }

    /// Counts a failed sign-in against the address and, when it names one, the account;
    /// a second-factor failure that locks the account is audited.
    async fn sign_in_failed(
        &self,
        ip: Option<IpAddr>,
        user_id: Option<i64>,
        mfa: bool,
    ) -> ApiResult<()> {
        self.guard.failed(ip);
        let Some(user_id) = user_id else { return Ok(()) };
        let client = self.db.get().await?;
        if mfa {
            let kind = allot_store::status::ActivityKind::MfaFailure;
            crate::alerts::record(&client, kind, Some(user_id), ip, None, None).await;
        }
        let (after, seconds) = (guard::MFA_LOCK_AFTER, guard::MFA_LOCK_SECONDS);
        if store::record_sign_in_failure(&client, user_id, mfa, after, seconds).await? {
            let (actor, subject) = (crate::audit::system("identity"), crate::audit::user(user_id));
            let detail = serde_json::json!({ "reason": "second factor failures", "ip": ip.map(|ip| ip.to_string()) });
            crate::audit::append(&client, &actor, "user.lockout", &subject, None, Some(&detail))
                .await?;
            tracing::warn!(target: "security", user_id, "account locked after second-factor failures");
        }
        Ok(())
    }

    /// A new session of a user who passed every check, audited.
    async fn signed_in(
        &self,
        user_id: i64,
        role: Role,
        mfa: bool,
        identity: IdentityClaim,
    ) -> ApiResult<Tokens> {
        let session =
            self.start_session(&self.db.get().await?, user_id, role, mfa, identity).await?;
        let (actor, after) = (crate::audit::user(user_id), serde_json::json!({ "mfa": mfa }));
        crate::audit::append(
            &self.db.get().await?,
            &actor,
            "user.sign_in",
            &actor,
            None,
            Some(&after),
        )
        .await?;
        tracing::info!(user_id, mfa, "signed in");
        Ok(session)
    }

    /// The account a login names: an email (it has an `@`) or a national ID. A login that
    /// is neither names nobody, which the caller answers like a wrong password.
    async fn find_for_sign_in(
        &self,
        client: &impl GenericClient,
        login: &str,
    ) -> ApiResult<Option<store::Credentials>> {
        if login.len() > LOGIN_BYTES_MAX {
            return Ok(None);
        }
        let user = if login.contains('@') {
            let email = login.trim().to_lowercase();
            store::credentials_by_email(client, &email).await?
        } else if let Ok(id) = NationalId::parse(login) {
            let hash = id.lookup_hash(&self.identity_key);
            store::credentials_by_identity_hash(client, &hash).await?
        } else {
            None
        };
        Ok(user)
    }

    /// A new session: its row (with its absolute end and whether it passed a second
    /// factor), an access token and the session's first refresh token.
    async fn start_session(
        &self,
        client: &impl GenericClient,
        user_id: i64,
        role: Role,
        mfa: bool,
        identity: IdentityClaim,
    ) -> ApiResult<Tokens> {
        let family = Uuid::new_v4();
        let lifetime = seconds(self.settings.session_seconds_max)?;
        store::insert_session(client, family, user_id, mfa, lifetime).await?;
        let refresh_token = self.issue_refresh_token(client, user_id, family).await?;
        Ok(Tokens {
            access_token: self.tokens.issue_for(user_id, role, mfa, family, Some(identity)),
            refresh_token,
            expires_in: self.tokens.access_seconds,
        })
    }

    /// Stores the SHA-256 of a fresh random token and answers the token itself, which
    /// exists nowhere else afterwards.
    async fn issue_refresh_token(
        &self,
        client: &impl GenericClient,
        user_id: i64,
        family: Uuid,
    ) -> ApiResult<String> {
        let mut raw = [0u8; REFRESH_TOKEN_BYTES];
        rand::thread_rng().fill_bytes(&mut raw);
        let lifetime = seconds(self.settings.refresh_token_seconds)?;
        store::insert_refresh_token(client, &Sha256::digest(raw), user_id, family, lifetime)
            .await?;
        Ok(URL_SAFE_NO_PAD.encode(raw))
    }

    /// Exchanges a refresh token for a new access token and a new refresh token. The old
    /// one stops working; presenting it again revokes every token of that sign-in. The role
    /// is read afresh; the second factor is the session's (passed at its sign-in, or at the
    /// confirmation that enabled it within this session), never the account's.
    pub async fn refresh(&self, presented: &str) -> ApiResult<Tokens> {
        let unauthorized = || ApiError::field(ErrorCode::Unauthorized, "refresh_token");
        let hash = refresh_token_hash(presented).ok_or_else(unauthorized)?;
        let mut client = self.db.get().await?;
        let tx = client.transaction().await?;
        let token = store::lock_refresh_token(&tx, &hash).await?.ok_or_else(unauthorized)?;
        if token.used && !token.revoked {
            let revoked = store::revoke_family(&tx, token.family).await?;
            tx.commit().await?;
            self.revoked_now(revoked);
            let (user_id, family) = (token.user_id, token.family);
            tracing::warn!(target: "security", user_id, %family,
                "refresh token reused: session revoked");
            return Err(unauthorized());
        }
        if token.used || token.revoked || token.expired {
            return Err(unauthorized());
        }
        store::mark_refresh_token_used(&tx, &hash).await?;
        let refresh_token = self.issue_refresh_token(&tx, token.user_id, token.family).await?;
        tx.commit().await?;
        let role = stored_role(&token.role);
        Ok(Tokens {
            access_token: self.tokens.issue_for(
                token.user_id,
                role,
                token.mfa,
                token.family,
                Some(IdentityClaim {
                    kind: token.identity_kind,
                    verified: token.verification == Verification::Verified,
                }),
            ),
            refresh_token,
            expires_in: self.tokens.access_seconds,
        })
    }
}

/// A lifetime setting as the store takes it.
fn seconds(value: u64) -> ApiResult<i64> {
    i64::try_from(value).map_err(|_| ApiError::internal("a lifetime setting does not fit in i64"))
}

/// The stored hash of a presented refresh token, or `None` when it cannot be one of ours.
pub(super) fn refresh_token_hash(token: &str) -> Option<Vec<u8>> {
    let raw = URL_SAFE_NO_PAD.decode(token.as_bytes()).ok()?;
    (raw.len() == REFRESH_TOKEN_BYTES).then(|| Sha256::digest(raw).to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_32_byte_base64url_tokens_have_a_hash() {
        let token = URL_SAFE_NO_PAD.encode([9u8; REFRESH_TOKEN_BYTES]);
        assert_eq!(refresh_token_hash(&token).unwrap(), Sha256::digest([9u8; 32]).to_vec());
        assert!(refresh_token_hash(&URL_SAFE_NO_PAD.encode([9u8; 31])).is_none());
        assert!(refresh_token_hash("not base64 at all!").is_none());
    }
}
