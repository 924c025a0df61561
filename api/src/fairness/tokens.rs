//! Queue tickets and admission tokens: HS256 JWTs with audiences of their own and a key of
//! their own, so neither passes for an access token, nor one for the other.

use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

pub const AUDIENCE_TICKET: &str = "allot/queue-ticket";
pub const AUDIENCE_ADMISSION: &str = "allot/queue-admission";

/// A place in an offering's queue. Issued at join; `pos` is absent while the entry waits in
/// the pre-queue (its position is drawn at opening).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct TicketClaims {
    pub sub: String,
    pub off: String,
    /// The entry's pseudonym in the published shuffle.
    pub entry: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pos: Option<u64>,
    pub iat: u64,
    pub exp: u64,
    pub aud: String,
}

/// Leave to reserve: short-lived, for one person and one offering.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct AdmissionClaims {
    pub sub: String,
    pub off: String,
    pub pos: u64,
    pub iat: u64,
    pub exp: u64,
    pub aud: String,
}

pub struct QueueKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    ticket: Validation,
    admission: Validation,
}

impl std::fmt::Debug for QueueKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueKeys").finish_non_exhaustive()
    }
}

impl QueueKeys {
    pub fn new(key: &[u8]) -> QueueKeys {
        let validation = |audience: &str| {
            let mut v = Validation::new(Algorithm::HS256);
            v.set_audience(&[audience]);
            // An admission is minutes long: a few seconds of clock skew is all we forgive.
            v.leeway = 2;
            v
        };
        QueueKeys {
            encoding: EncodingKey::from_secret(key),
            decoding: DecodingKey::from_secret(key),
            ticket: validation(AUDIENCE_TICKET),
            admission: validation(AUDIENCE_ADMISSION),
        }
    }

    pub fn sign_ticket(&self, claims: &TicketClaims) -> String {
        debug_assert_eq!(claims.aud, AUDIENCE_TICKET);
        encode(&Header::new(Algorithm::HS256), claims, &self.encoding).expect("HS256 encodes")
    }

    pub fn verify_ticket(&self, token: &str) -> Option<TicketClaims> {
        decode::<TicketClaims>(token, &self.decoding, &self.ticket).ok().map(|d| d.claims)
    }

    pub fn sign_admission(&self, claims: &AdmissionClaims) -> String {
        debug_assert_eq!(claims.aud, AUDIENCE_ADMISSION);
        encode(&Header::new(Algorithm::HS256), claims, &self.encoding).expect("HS256 encodes")
    }

    pub fn verify_admission(&self, token: &str) -> Option<AdmissionClaims> {
        decode::<AdmissionClaims>(token, &self.decoding, &self.admission).ok().map(|d| d.claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_and_admissions_do_not_pass_for_each_other() {
        let keys = QueueKeys::new(b"0123456789abcdef0123456789abcdef");
        let now = super::super::unix_now();
        let ticket = TicketClaims {
            sub: "7".into(),
            off: "show".into(),
            entry: "ab".into(),
            pos: None,
            iat: now,
            exp: now + 60,
            aud: AUDIENCE_TICKET.into(),
        };
        let signed = keys.sign_ticket(&ticket);
        assert_eq!(keys.verify_ticket(&signed), Some(ticket.clone()));
        assert!(keys.verify_admission(&signed).is_none());
        // The same claims sign to the same ticket: joining again returns it unchanged.
        assert_eq!(signed, keys.sign_ticket(&ticket));
        let admission = AdmissionClaims {
            sub: "7".into(),
            off: "show".into(),
            pos: 3,
            iat: now,
            exp: now + 60,
            aud: AUDIENCE_ADMISSION.into(),
        };
        let signed = keys.sign_admission(&admission);
        assert!(keys.verify_ticket(&signed).is_none());
        assert_eq!(keys.verify_admission(&signed), Some(admission.clone()));
        let expired = AdmissionClaims { exp: now - 30, ..admission };
        assert!(keys.verify_admission(&keys.sign_admission(&expired)).is_none());
        let other = QueueKeys::new(b"another key another key another!");
        assert!(other.verify_admission(&signed).is_none());
    }
}
