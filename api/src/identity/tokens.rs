//! Short-lived signed access tokens (JWT, HS256), verified in memory on every request so
//! the reservation path never asks the database who is calling.

use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

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
}

pub const AUDIENCE: &str = "allot";

pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    pub access_seconds: u64,
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
        validation.leeway = 5;
        TokenKeys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            access_seconds,
        }
    }

    pub fn issue(&self, user_id: i64, role: Role, mfa: bool) -> String {
        let now = now_seconds();
        let claims = Claims {
            sub: user_id.to_string(),
            role,
            mfa,
            iat: now,
            exp: now + self.access_seconds,
            aud: AUDIENCE.into(),
        };
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).expect("HS256 encodes")
    }

    pub fn verify(&self, token: &str) -> Option<Claims> {
        decode::<Claims>(token, &self.decoding, &self.validation).ok().map(|d| d.claims)
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
    fn an_expired_token_is_refused() {
        let keys = TokenKeys::new(b"0123456789abcdef0123456789abcdef", 0);
        let mut claims = keys.verify(&keys.issue(1, Role::Citizen, false)).unwrap();
        claims.exp = now_seconds() - 60;
        let token = encode(&Header::new(Algorithm::HS256), &claims, &keys.encoding).unwrap();
        assert!(keys.verify(&token).is_none());
    }
}
