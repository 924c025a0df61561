//! Short-lived signed access tokens (JWT, HS256), verified in memory on every request so
//! the reservation path never asks the database who is calling.
//!
//! Each token names its session (`sid`, the refresh-token family). Signing out, a role or
//! second-factor change, and a detected token theft revoke sessions; [`Revocations`] keeps
//! the sessions revoked within an access token's lifetime in memory (this process's at
//! once, every other process's within [`REVOCATION_POLL`]), and verification refuses their
//! tokens. Still no database on the request path.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, SystemTime};

use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use allot_store::status::IdentityKind;

use super::Role;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// The user id, as a string per the JWT convention.
    pub sub: String,
    pub role: Role,
    /// Whether this session passed a second factor.
    pub mfa: bool,
    pub iat: u64,
    pub exp: u64,
    /// Audience: always `allot`; admission and queue tokens use other audiences.
    pub aud: String,
    /// The session (refresh-token family) the token belongs to.
    pub sid: Uuid,
    /// The kind of identity the account registered with (`thai_national_id`, `passport`,
    /// `phone`, `email`), so offerings' eligibility is checked without a database.
    #[serde(default)]
    pub idk: Option<String>,
    /// Whether that identity was verified when the token was issued; a later change
    /// overrides it ([`Verifications`]).
    #[serde(default)]
    pub kyc: bool,
}

/// What a token says of its holder's identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdentityClaim {
    pub kind: IdentityKind,
    pub verified: bool,
}

/// How often every process reads the sessions revoked by the others.
pub const REVOCATION_POLL: Duration = Duration::from_secs(1);
/// Validation leeway on `exp`, seconds.
const LEEWAY_SECONDS: u64 = 5;

pub const AUDIENCE: &str = "allot";

pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    pub access_seconds: u64,
    /// Sessions whose tokens are refused.
    pub revoked: Revocations,
    /// Verifications changed after tokens were issued.
    pub verifications: Verifications,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKeys").field("access_seconds", &self.access_seconds).finish()
    }
}

impl TokenKeys {
    pub fn new(secret: &[u8], access_seconds: u64) -> TokenKeys {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[AUDIENCE]);
        validation.leeway = LEEWAY_SECONDS;
        TokenKeys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            access_seconds,
            revoked: Revocations::new(Duration::from_secs(access_seconds + LEEWAY_SECONDS)),
            verifications: Verifications::new(Duration::from_secs(access_seconds + LEEWAY_SECONDS)),
        }
    }

    /// A token of a session nobody recorded: for tools and tests that act as many people
    /// (benchmarks, load drivers), who stand for citizens with a verified Thai national ID.
    /// Only a holder of the signing key can call it; no request reaches it. Sign-in and
    /// refresh use [`TokenKeys::issue_for`], with what the account's row says.
    pub fn issue(&self, user_id: i64, role: Role, mfa: bool) -> String {
        let identity = IdentityClaim { kind: IdentityKind::ThaiNationalId, verified: true };
        self.issue_for(user_id, role, mfa, Uuid::new_v4(), Some(identity))
    }

    /// A token of session `sid`.
    pub fn issue_for(
        &self,
        user_id: i64,
        role: Role,
        mfa: bool,
        sid: Uuid,
        identity: Option<IdentityClaim>,
    ) -> String {
        let now = now_seconds();
        let claims = Claims {
            sub: user_id.to_string(),
            role,
            mfa,
            iat: now,
            exp: now + self.access_seconds,
            aud: AUDIENCE.into(),
            sid,
            idk: identity.map(|i| i.kind.as_str().to_owned()),
            kyc: identity.is_some_and(|i| i.verified),
        };
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).expect("HS256 encodes")
    }

    /// The claims of a token we signed, unexpired, whose session is not revoked; `kyc` as
    /// it is now when the account's verification changed since.
    pub fn verify(&self, token: &str) -> Option<Claims> {
        let mut claims = decode::<Claims>(token, &self.decoding, &self.validation).ok()?.claims;
        if self.revoked.contains(&claims.sid) {
            return None;
        }
        if let Some(verified) = claims.sub.parse().ok().and_then(|u| self.verifications.get(u)) {
            claims.kyc = verified;
        }
        Some(claims)
    }
}

/// Accounts whose verification changed recently enough that a token issued before the
/// change may still be unexpired: user → (verified now, when to forget). Every process
/// reads the changes each [`REVOCATION_POLL`], as it reads revocations.
#[derive(Debug)]
pub struct Verifications {
    changed: RwLock<HashMap<i64, (bool, SystemTime)>>,
    keep: Duration,
}

impl Verifications {
    fn new(keep: Duration) -> Verifications {
        Verifications { changed: RwLock::new(HashMap::new()), keep }
    }

    pub fn get(&self, user_id: i64) -> Option<bool> {
        self.changed.read().expect("not poisoned").get(&user_id).map(|(v, _)| *v)
    }

    /// The account's verification as of a change at `at`.
    pub fn insert(&self, user_id: i64, verified: bool, at: SystemTime) {
        let mut changed = self.changed.write().expect("not poisoned");
        changed.insert(user_id, (verified, at + self.keep));
        let now = SystemTime::now();
        changed.retain(|_, (_, forget)| *forget > now);
    }

    /// How far back a process that starts must read changes.
    pub fn horizon(&self) -> Duration {
        self.keep
    }
}

/// Sessions revoked recently enough that tokens of theirs may still be unexpired.
#[derive(Debug)]
pub struct Revocations {
    /// Session → when its last token has surely expired (after that it is forgotten).
    revoked: RwLock<HashMap<Uuid, SystemTime>>,
    /// How long after a revocation a token of the session can still be unexpired.
    keep: Duration,
}

impl Revocations {
    fn new(keep: Duration) -> Revocations {
        Revocations { revoked: RwLock::new(HashMap::new()), keep }
    }

    pub fn contains(&self, sid: &Uuid) -> bool {
        self.revoked.read().expect("not poisoned").contains_key(sid)
    }

    /// Refuses the tokens of `sessions`, revoked at `at`, from now on.
    pub fn insert(&self, sessions: impl IntoIterator<Item = Uuid>, at: SystemTime) {
        let forget_at = at + self.keep;
        let mut revoked = self.revoked.write().expect("not poisoned");
        for sid in sessions {
            revoked.insert(sid, forget_at);
        }
        let now = SystemTime::now();
        revoked.retain(|_, forget| *forget > now);
    }

    /// How far back a process that starts must read revocations.
    pub fn horizon(&self) -> Duration {
        self.keep
    }
}

pub fn now_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_verifies_with_its_key_only() {
        let keys = TokenKeys::new(b"0123456789abcdef0123456789abcdef", 60);
        let token = keys.issue(42, Role::Finance, true);
        let claims = keys.verify(&token).unwrap();
        assert_eq!((claims.sub.as_str(), claims.role, claims.mfa), ("42", Role::Finance, true));
        let other = TokenKeys::new(b"another key another key another!", 60);
        assert!(other.verify(&token).is_none());
        assert!(keys.verify(&format!("{token}x")).is_none());
    }

    #[test]
    fn a_revoked_sessions_tokens_are_refused_and_others_are_not() {
        let keys = TokenKeys::new(b"0123456789abcdef0123456789abcdef", 60);
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let (ta, tb) = (
            keys.issue_for(1, Role::Citizen, false, a, None),
            keys.issue_for(1, Role::Citizen, false, b, None),
        );
        keys.revoked.insert([a], SystemTime::now());
        assert!(keys.verify(&ta).is_none());
        assert_eq!(keys.verify(&tb).unwrap().sid, b);
        // Forgotten once every token of the session has expired.
        keys.revoked.insert([Uuid::new_v4()], SystemTime::now() - Duration::from_secs(3600));
        assert!(keys.revoked.contains(&a));
        assert_eq!(keys.revoked.revoked.read().unwrap().len(), 1);
    }

    #[test]
    fn a_verification_change_overrides_what_an_earlier_token_says() {
        let keys = TokenKeys::new(b"0123456789abcdef0123456789abcdef", 60);
        let claim = IdentityClaim { kind: IdentityKind::Passport, verified: false };
        let token = keys.issue_for(7, Role::Citizen, false, Uuid::new_v4(), Some(claim));
        let claims = keys.verify(&token).unwrap();
        assert_eq!((claims.idk.as_deref(), claims.kyc), (Some("passport"), false));
        keys.verifications.insert(7, true, SystemTime::now());
        assert!(keys.verify(&token).unwrap().kyc);
        keys.verifications.insert(7, false, SystemTime::now());
        assert!(!keys.verify(&token).unwrap().kyc);
        assert!(keys.verify(&keys.issue(8, Role::Citizen, false)).unwrap().kyc);
    }

    #[test]
    fn an_expired_token_is_refused() {
        let keys = TokenKeys::new(b"0123456789abcdef0123456789abcdef", 0);
        let mut claims = keys.verify(&keys.issue(1, Role::Citizen, false)).unwrap();
        claims.exp = now_seconds() - 60;
        let token = encode(&Header::new(Algorithm::HS256), &claims, &keys.encoding).unwrap();
        assert!(keys.verify(&token).is_none());
    }
}
