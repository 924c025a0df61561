//! Proof-of-work against bots (ALTCHA v2, PBKDF2/SHA-256, deterministic mode): a client
//! fetches a challenge (`GET /v1/challenge`), works through counters until it finds the
//! secret one, and sends challenge and solution back base64-encoded in the `X-Pow` header.
//! A person's browser pays a second or two once; a bot pays it for every account.
//!
//! Each solved challenge is good once: its nonce is recorded in Postgres (shared by every
//! instance) until it expires, and a second use is refused.
//!
//! Applying it to an endpoint: the route hands the `X-Pow` header's bytes to
//! [`Pow::verify`] before doing the work (queue join and registration do).

use allot_store::Pool;
use altcha::{CreateChallengeOptions, Payload, SolveChallengeOptions, VerifySolutionOptions};
use base64::Engine;
use rand::Rng;

use crate::config::FairnessSettings;
use crate::error::{ApiError, ApiResult, ErrorCode};

pub use altcha::Challenge;

pub const HEADER: &str = "X-Pow";
pub const ALGORITHM: &str = "PBKDF2/SHA-256";
/// A header longer than this is not a solution we issued.
const HEADER_BYTES_MAX: usize = 4_096;

pub struct Pow {
    /// Signs challenges, so a client cannot make up an easy one.
    secret: String,
    /// Signs the expected key, so verifying costs one HMAC, not a key derivation.
    key_secret: String,
    cost: u32,
    counter_max: u32,
    seconds: u64,
    /// Where used challenges are recorded, shared by every instance.
    db: Pool,
}

impl std::fmt::Debug for Pow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pow")
            .field("cost", &self.cost)
            .field("counter_max", &self.counter_max)
            .finish()
    }
}

impl Pow {
    pub fn new(settings: &FairnessSettings, secret: String, db: Pool) -> Pow {
        Pow {
            key_secret: format!("{secret}/key"),
            secret,
            cost: settings.pow_cost.max(1),
            counter_max: settings.pow_counter_max.max(1),
            seconds: settings.pow_challenge_seconds.max(1),
            db,
        }
    }

    /// A fresh challenge: the secret counter is drawn from the upper half of the range, so
    /// the least work is half the most.
    pub fn challenge(&self) -> Challenge {
        let counter = rand::thread_rng().gen_range(self.counter_max / 2..=self.counter_max);
        let expires_at = super::unix_now() + self.seconds;
        altcha::create_challenge(CreateChallengeOptions {
            algorithm: ALGORITHM.into(),
            cost: self.cost,
            counter: Some(counter),
            expires_at: Some(expires_at as i64),
            hmac_signature_secret: Some(self.secret.clone()),
            hmac_key_signature_secret: Some(self.key_secret.clone()),
            ..CreateChallengeOptions::default()
        })
        .expect("our parameters are valid")
    }

    /// Whether `payload` solves a challenge we issued and that has not expired. Says
    /// nothing about reuse: [`Pow::verify`] adds that.
    fn solved(&self, payload: &Payload) -> bool {
        let options = VerifySolutionOptions {
            hmac_key_signature_secret: Some(self.key_secret.clone()),
            ..VerifySolutionOptions::new(&payload.challenge, &payload.solution, self.secret.clone())
        };
        payload.challenge.parameters.algorithm == ALGORITHM
            && altcha::verify_solution(options).is_ok_and(|r| r.verified)
    }

    /// `header` (the `X-Pow` header's bytes, if sent) is a solved, unexpired, unused
    /// challenge of ours; it is now used.
    pub async fn verify(&self, header: Option<&[u8]>) -> ApiResult<()> {
        let header =
            header.ok_or_else(|| ApiError::field(ErrorCode::ProofOfWorkRequired, HEADER))?;
        let invalid = || ApiError::field(ErrorCode::ProofOfWorkInvalid, HEADER);
        let payload = decode(header).ok_or_else(invalid)?;
        if !self.solved(&payload) {
            metrics::counter!("allot_pow_rejected_total").increment(1);
            return Err(invalid());
        }
        let expires_at = payload.challenge.parameters.expires_at.unwrap_or(0);
        let client = self.db.get().await?;
        let nonce = &payload.challenge.parameters.nonce;
        if !allot_store::fairness::spend_pow(&client, nonce, expires_at).await? {
            metrics::counter!("allot_pow_replayed_total").increment(1);
            return Err(invalid());
        }
        Ok(())
    }

    /// Forgets used challenges once they have expired: they cannot be replayed any more.
    pub async fn forget_spent(&self) -> ApiResult<()> {
        allot_store::fairness::forget_spent_pow(&self.db.get().await?).await?;
        Ok(())
    }
}

fn decode(header: &[u8]) -> Option<Payload> {
    if header.len() > HEADER_BYTES_MAX {
        return None;
    }
    let json = base64::engine::general_purpose::STANDARD.decode(header).ok()?;
    serde_json::from_slice(&json).ok()
}

/// What a client does: solves `challenge` and encodes the `X-Pow` header value. Here for
/// tests and load drivers; browsers use the ALTCHA widget.
pub fn solve(challenge: &Challenge) -> String {
    let solution = altcha::solve_challenge(SolveChallengeOptions {
        timeout_ms: 0,
        ..SolveChallengeOptions::new(challenge)
    })
    .expect("a challenge of ours is well formed")
    .expect("no timeout");
    let payload = Payload { challenge: challenge.clone(), solution };
    base64::engine::general_purpose::STANDARD
        .encode(serde_json::to_vec(&payload).expect("serializes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Verifying a solution's work needs no database; the pool never connects.
    fn unused_pool() -> Pool {
        allot_store::pool("postgres://127.0.0.1:1/unused", 1).unwrap()
    }

    fn easy() -> Pow {
        let settings =
            FairnessSettings { pow_cost: 1, pow_counter_max: 20, ..FairnessSettings::default() };
        Pow::new(&settings, "test-secret".into(), unused_pool())
    }

    #[test]
    fn a_solved_challenge_verifies_and_a_forged_one_does_not() {
        let pow = easy();
        let header = solve(&pow.challenge());
        let payload = decode(header.as_bytes()).unwrap();
        assert!(pow.solved(&payload));
        // Another server's challenge, or a tampered one, is refused.
        let other = Pow::new(
            &FairnessSettings { pow_cost: 1, pow_counter_max: 20, ..FairnessSettings::default() },
            "x".into(),
            unused_pool(),
        );
        assert!(!other.solved(&payload));
        let mut cheap = payload.clone();
        cheap.challenge.parameters.cost = 0;
        assert!(!pow.solved(&cheap));
        let mut wrong = payload;
        wrong.solution.derived_key = "00".repeat(32);
        assert!(!pow.solved(&wrong));
        assert!(decode(b"not base64!").is_none());
    }
}
