//! Verifying a phone number or an email address with a one-time code, and every process
//! learning of verification changes.
//!
//! A phone number is never stored, so asking for a code names it again
//! (`POST /v1/me/identity/code` with `number`): its keyed hash must be the account's, and
//! the code goes to it by text ([`super::sms`]); an email identity's code goes to the
//! account's address through the notification sender. Only the code's keyed hash is kept,
//! for [`CODE_SECONDS`], good for [`CODE_ATTEMPTS_MAX`] tries; the one that matches sets
//! the account `verified`, audited.
//!
//! Tokens carry the verification their sign-in saw. A change (a code confirmed, a KYC
//! decision) reaches this process's [`Verifications`] at once and every other process's
//! within [`REVOCATION_POLL`], so the reservation path judges a token by the change
//! without reading a database.
//!
//! [`Verifications`]: super::tokens::Verifications
//! [`REVOCATION_POLL`]: super::tokens::REVOCATION_POLL

use std::time::{Duration, SystemTime};

use allot_store::status::{IdentityKind, Verification};
use allot_store::verification as store;
use hmac::{Hmac, Mac};
use rand::Rng;
use sha2::Sha256;

use super::kinds::{Document, IdentityInput};
use super::sms::Sms;
use super::tokens::REVOCATION_POLL;
use super::Identity;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::notify::senders::Message;

/// A code is good this long.
pub const CODE_SECONDS: i64 = 10 * 60;
/// Tries per code: a million codes, five guesses.
pub const CODE_ATTEMPTS_MAX: i32 = 5;
use crate::i18n::IDENTITY_CODE_MESSAGES as MESSAGE_IDS;

impl Identity {
    /// Sends a fresh code to the caller's phone (`number` must be the registered one) or
    /// email. Answers the kind it went to.
    pub async fn send_code(&self, user_id: i64, number: Option<&str>) -> ApiResult<IdentityKind> {
        let client = self.db.get().await?;
        let contact = store::contact(&client, user_id)
            .await?
            .ok_or_else(|| ApiError::new(ErrorCode::Unauthorized))?;
        if contact.verification == Verification::Verified {
            return Err(ApiError::inconsistent("identity", "already verified"));
        }
        let code = format!("{:06}", rand::thread_rng().gen_range(0..1_000_000));
        let send_key = uuid::Uuid::new_v4().to_string();
        let text = crate::i18n::text(&contact.locale, MESSAGE_IDS[0], &[("code", code.clone())]);
        match contact.identity_kind {
            IdentityKind::Phone => {
                let sms = self
                    .sms
                    .as_ref()
                    .ok_or_else(|| ApiError::new(ErrorCode::ServiceUnavailable))?;
                let raw = number.ok_or_else(|| {
                    ApiError::validation("number", "the phone number this account registered")
                })?;
                let input = IdentityInput {
                    kind: "phone".into(),
                    number: Some(raw.into()),
                    ..Default::default()
                };
                let phone = Document::parse(&input, "")?;
                if phone.lookup_hash(&self.identity_key)[..] != contact.identity_hash[..] {
                    return Err(ApiError::validation(
                        "number",
                        "not the number this account registered",
                    ));
                }
                store::put_code(&client, user_id, &self.code_hash(user_id, &code), CODE_SECONDS)
                    .await?;
                let to = phone.expose_value().to_owned();
                sms.send(&Sms { to, text, send_key }).await.map_err(|e| {
                    tracing::warn!(error = %e, "sending a code by text failed");
                    ApiError::new(ErrorCode::ServiceUnavailable)
                })?;
            }
            IdentityKind::Email => {
                let sender = self
                    .email
                    .as_ref()
                    .ok_or_else(|| ApiError::new(ErrorCode::ServiceUnavailable))?;
                store::put_code(&client, user_id, &self.code_hash(user_id, &code), CODE_SECONDS)
                    .await?;
                let subject = crate::i18n::text(&contact.locale, MESSAGE_IDS[1], &[]);
                let message = Message {
                    send_key,
                    user_id,
                    kind: "identity_code",
                    locale: contact.locale,
                    email: Some(contact.email),
                    subject,
                    body: text,
                };
                sender.send(&message).await.map_err(|e| {
                    tracing::warn!(error = ?e, "sending a code by email failed");
                    ApiError::new(ErrorCode::ServiceUnavailable)
                })?;
            }
            _ => {
                return Err(ApiError::inconsistent(
                    "identity",
                    "a national ID or passport is verified at a KYC provider: POST /v1/me/kyc",
                ))
            }
        }
        tracing::info!(user_id, kind = contact.identity_kind.as_str(), "identity code sent");
        Ok(contact.identity_kind)
    }

    /// Checks a code; the right one (in time, within the tries) verifies the account.
    pub async fn confirm_code(&self, user_id: i64, code: &str) -> ApiResult<()> {
        let invalid = || ApiError::field(ErrorCode::InvalidVerificationCode, "code");
        if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid());
        }
        let mut client = self.db.get().await?;
        let tx = client.transaction().await?;
        let Some((hash, attempts)) = store::take_attempt(&tx, user_id).await? else {
            return Err(invalid());
        };
        let expected = self.code_mac(user_id, code);
        if attempts >= CODE_ATTEMPTS_MAX || expected.verify_slice(&hash).is_err() {
            tx.commit().await?; // the attempt counts
            return Err(invalid());
        }
        store::delete_code(&tx, user_id).await?;
        let before = store::set_verification(&tx, user_id, Verification::Verified).await?;
        let actor = crate::audit::user(user_id);
        let before = before.map(|v| serde_json::json!({ "verification": v.as_str() }));
        let after =
            serde_json::json!({ "verification": Verification::Verified.as_str(), "by": "code" });
        crate::audit::append(
            &tx,
            &actor,
            "identity.verified",
            &actor,
            before.as_ref(),
            Some(&after),
        )
        .await?;
        tx.commit().await?;
        self.tokens.verifications.insert(user_id, true, SystemTime::now());
        tracing::info!(user_id, "identity verified by code");
        Ok(())
    }

    fn code_mac(&self, user_id: i64, code: &str) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.identity_key).expect("any key length");
        mac.update(b"allot/identity-code/v1");
        mac.update(&user_id.to_le_bytes());
        mac.update(code.as_bytes());
        mac
    }

    fn code_hash(&self, user_id: i64, code: &str) -> Vec<u8> {
        self.code_mac(user_id, code).finalize().into_bytes().to_vec()
    }

    /// Reads the verification changes other processes make, every [`REVOCATION_POLL`],
    /// forever, starting one access-token lifetime back.
    pub async fn watch_verifications(self) {
        let mut since = None;
        loop {
            match self.poll_verifications(since).await {
                Ok(next) => since = Some(next),
                Err(e) => tracing::warn!(error = ?e, "reading verification changes failed"),
            }
            tokio::time::sleep(REVOCATION_POLL).await;
        }
    }

    async fn poll_verifications(&self, since: Option<SystemTime>) -> ApiResult<SystemTime> {
        // Overlap as the revocation poll does: a late commit carries an earlier stamp.
        const OVERLAP: Duration = Duration::from_secs(10);
        let client = self.db.get().await?;
        let now = allot_store::identity::now(&client).await?;
        let from = match since {
            Some(since) => since - OVERLAP,
            None => now - self.tokens.verifications.horizon(),
        };
        for (user_id, verification, at) in store::changed_since(&client, from).await? {
            self.tokens.verifications.insert(user_id, verification == Verification::Verified, at);
        }
        Ok(now)
    }
}
