//! Payment gateways behind one trait: each says who it is in the ledger, how to tell an
//! authentic delivery from a forged or replayed one, and how to read what it reports.
//!
//! Two gateways exist today and both speak the same signed-webhook format:
//! - `bank`: the acquiring bank's notification service.
//! - `sandbox` (dev mode only): money that never existed, delivered by our own settle
//!   endpoint through exactly the same path a bank's webhook takes.
//!
//! A delivery is authentic when `X-Allot-Signature` carries the hex HMAC-SHA256 of
//! `timestamp + "." + raw body` under the gateway's secret (as `v1=<hex>`; several, comma
//! separated, while a sender rotates keys), and fresh when
//! `X-Allot-Timestamp` (unix seconds) is within [`WEBHOOK_SKEW_SECONDS_MAX`] of our clock.

use std::fmt;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use time::OffsetDateTime;

use crate::config::Settings;
use crate::error::{ApiError, ErrorCode};
use crate::secrets::Source;

/// Deliveries older or newer than this are refused: a captured webhook cannot be replayed
/// later, and a bank's clock may be a little off.
pub const WEBHOOK_SKEW_SECONDS_MAX: i64 = 5 * 60;
/// Bounds on what a bank may send us, so a row is never unbounded.
pub const TRANSACTION_ID_BYTES_MAX: usize = 64;
pub const REFERENCE_BYTES_MAX: usize = 64;

pub const HEADER_TIMESTAMP: &str = "X-Allot-Timestamp";
pub const HEADER_SIGNATURE: &str = "X-Allot-Signature";

/// The gateways we know. The number is the subject of the gateway's clearing account
/// (`catalog::GATEWAYS`); the name is what URLs, rows and intents carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GatewayKind {
    Sandbox,
    Bank,
}

impl GatewayKind {
    pub fn as_str(self) -> &'static str {
        match self {
            GatewayKind::Sandbox => "sandbox",
            GatewayKind::Bank => "bank",
        }
    }

    pub fn parse(text: &str) -> Option<GatewayKind> {
        match text {
            "sandbox" => Some(GatewayKind::Sandbox),
            "bank" => Some(GatewayKind::Bank),
            _ => None,
        }
    }

    pub fn ledger_number(self) -> u64 {
        match self {
            GatewayKind::Sandbox => crate::catalog::GATEWAYS[0],
            GatewayKind::Bank => crate::catalog::GATEWAYS[1],
        }
    }
}

/// What a gateway reports: this much money arrived, under this reference.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Notification {
    /// The gateway's own id of the transaction: the idempotency key of a delivery.
    #[schema(pattern = "^[!-~]{1,64}$")]
    pub transaction_id: String,
    /// Ref1 as the payer's bank carried it.
    #[schema(pattern = "^\\s*[!-~]{1,64}\\s*$")]
    pub reference: String,
    #[schema(minimum = 1, maximum = 9_223_372_036_854_775_807_u64)]
    pub amount_satang: u64,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub paid_at: OffsetDateTime,
    /// ISO 4217 code of the amount: `THB` (satang), the only currency we take. Required:
    /// money in any other currency, or in one not named, is refused (400) rather than
    /// booked as baht.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(required = true, value_type = String, pattern = "^THB$")]
    pub currency: Option<String>,
    /// The account the money came from, when the bank reports it (PromptPay does). Kept
    /// for the rule on one payer paying for many people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 64)]
    pub payer_account: Option<String>,
}

/// The one currency a notification may carry.
pub const CURRENCY: &str = "THB";
/// Signatures looked at in one header, so a header cannot make us compute without end.
const SIGNATURES_MAX: usize = 8;

/// The hex signatures in `X-Allot-Signature`: `v1=<hex>` entries separated by commas or
/// spaces, or (the first format) one bare hex string.
fn signatures(header: &str) -> impl Iterator<Item = &str> {
    header.split([',', ' ']).map(str::trim).filter(|part| !part.is_empty()).filter_map(|part| {
        match part.split_once('=') {
            Some(("v1", hex)) => Some(hex),
            Some(_) => None,
            None => Some(part),
        }
    })
}

/// A delivery as it came over the wire.
#[derive(Clone, Copy, Debug)]
pub struct Delivery<'a> {
    pub timestamp: Option<&'a str>,
    pub signature: Option<&'a str>,
    pub body: &'a [u8],
}

/// Why a delivery was refused as not authentic. Logged, never shown to the sender.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rejection {
    MissingHeaders,
    BadTimestamp,
    OutsideWindow { skew_seconds: i64 },
    BadSignature,
    GatewayDisabled,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::MissingHeaders => write!(f, "missing timestamp or signature header"),
            Rejection::BadTimestamp => write!(f, "timestamp is not unix seconds"),
            Rejection::OutsideWindow { skew_seconds } => {
                write!(f, "timestamp {skew_seconds} s away from our clock")
            }
            Rejection::BadSignature => write!(f, "signature does not match"),
            Rejection::GatewayDisabled => write!(f, "gateway has no secret configured"),
        }
    }
}

pub trait Gateway: Send + Sync + fmt::Debug {
    fn kind(&self) -> GatewayKind;

    /// Succeeds only for a delivery this gateway really sent, recently.
    fn authenticate(&self, delivery: &Delivery<'_>, now_unix: i64) -> Result<(), Rejection>;

    /// Reads an authenticated body. A body we cannot read is the sender's mistake (400).
    fn parse(&self, body: &[u8]) -> Result<Notification, ApiError>;
}

/// A gateway that signs its webhooks with a shared secret (our format).
pub struct SignedWebhook {
    kind: GatewayKind,
    secret: Vec<u8>,
}

impl fmt::Debug for SignedWebhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the secret.
        f.debug_struct("SignedWebhook").field("kind", &self.kind).finish_non_exhaustive()
    }
}

impl SignedWebhook {
    pub fn new(kind: GatewayKind, secret: Vec<u8>) -> SignedWebhook {
        SignedWebhook { kind, secret }
    }

    fn mac(&self, timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.secret).expect("any key length");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }

    /// The signature a sender puts in `X-Allot-Signature`: `v1=<hex>`.
    pub fn sign(&self, timestamp: &str, body: &[u8]) -> String {
        format!("v1={}", hex::encode(self.mac(timestamp, body).finalize().into_bytes()))
    }
}

impl Gateway for SignedWebhook {
    fn kind(&self) -> GatewayKind {
        self.kind
    }

    fn authenticate(&self, delivery: &Delivery<'_>, now_unix: i64) -> Result<(), Rejection> {
        if self.secret.is_empty() {
            return Err(Rejection::GatewayDisabled);
        }
        let (Some(timestamp), Some(signature)) = (delivery.timestamp, delivery.signature) else {
            return Err(Rejection::MissingHeaders);
        };
        let sent: i64 = timestamp.parse().map_err(|_| Rejection::BadTimestamp)?;
        let skew_seconds = now_unix.saturating_sub(sent);
        if skew_seconds.abs() > WEBHOOK_SKEW_SECONDS_MAX {
            return Err(Rejection::OutsideWindow { skew_seconds });
        }
        // Several signatures may come at once while the sender rotates its key (`v1=<old>,
        // v1=<new>`); one that matches is enough. `verify_slice` compares in constant time.
        let mac = self.mac(timestamp, delivery.body);
        let matched = signatures(signature)
            .take(SIGNATURES_MAX)
            .filter_map(|candidate| hex::decode(candidate).ok())
            .any(|candidate| mac.clone().verify_slice(&candidate).is_ok());
        matched.then_some(()).ok_or(Rejection::BadSignature)
    }

    fn parse(&self, body: &[u8]) -> Result<Notification, ApiError> {
        let n: Notification = serde_json::from_slice(body).map_err(|e| {
            let reason = e.to_string();
            let field = reason.split('`').nth(1).map(str::to_owned);
            ApiError { code: ErrorCode::MalformedJson, field, args: vec![("reason", reason)] }
        })?;
        let visible = |s: &str, max: usize| {
            !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_graphic())
        };
        if !visible(&n.transaction_id, TRANSACTION_ID_BYTES_MAX) {
            return Err(ApiError::validation("transaction_id", "1 to 64 visible ASCII characters"));
        }
        if !visible(n.reference.trim(), REFERENCE_BYTES_MAX) {
            return Err(ApiError::validation("reference", "1 to 64 visible ASCII characters"));
        }
        if n.amount_satang == 0 || i64::try_from(n.amount_satang).is_err() {
            return Err(ApiError::validation("amount_satang", "a positive number of satang"));
        }
        // Read as optional so that a missing currency gets the same clear answer as a
        // wrong one, not serde's.
        if n.currency.as_deref() != Some(CURRENCY) {
            return Err(ApiError::validation("currency", "THB: we take baht only"));
        }
        Ok(n)
    }
}

/// The gateways of this process, with their secrets.
#[derive(Debug)]
pub struct Gateways {
    pub bank: SignedWebhook,
    /// Only in dev mode: production never accepts play money.
    pub sandbox: Option<SignedWebhook>,
}

impl Gateways {
    /// Secrets come from settings (hex); in dev mode missing ones come from the dev secret
    /// store, so that signatures survive restarts. Production without a bank secret fails
    /// to start rather than accept unsigned money.
    pub fn load(settings: &Settings) -> Result<Gateways, String> {
        let source = Source::new(settings)?;
        let payments = &settings.payments;
        check_biller_id(&payments.promptpay_biller_id)?;
        let bank = source.key("webhook_secret_bank", &payments.webhook_secret_bank, |d| {
            &d.webhook_secret_bank
        })?;
        let bank = SignedWebhook::new(GatewayKind::Bank, bank);
        let sandbox = if settings.dev_mode {
            let key =
                source.key("webhook_secret_sandbox", &payments.webhook_secret_sandbox, |d| {
                    &d.webhook_secret_sandbox
                })?;
            Some(SignedWebhook::new(GatewayKind::Sandbox, key))
        } else {
            None
        };
        Ok(Gateways { bank, sandbox })
    }

    pub fn get(&self, kind: GatewayKind) -> Option<&SignedWebhook> {
        match kind {
            GatewayKind::Bank => Some(&self.bank),
            GatewayKind::Sandbox => self.sandbox.as_ref(),
        }
    }
}

fn check_biller_id(id: &str) -> Result<(), String> {
    if id.len() != super::promptpay::BILLER_ID_DIGITS_MAX || !id.bytes().all(|b| b.is_ascii_digit())
    {
        return Err("promptpay_biller_id must be 15 digits (tax ID + suffix)".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gateway() -> SignedWebhook {
        SignedWebhook::new(GatewayKind::Bank, vec![7; 32])
    }

    #[test]
    fn a_fresh_signed_delivery_passes_and_anything_else_does_not() {
        let g = gateway();
        let body = br#"{"transaction_id":"t1","reference":"R","amount_satang":1,"paid_at":"2026-01-01T00:00:00Z","currency":"THB"}"#;
        let now = 1_800_000_000;
        let ts = now.to_string();
        let sig = g.sign(&ts, body);
        let ok = Delivery { timestamp: Some(&ts), signature: Some(&sig), body };
        assert_eq!(g.authenticate(&ok, now), Ok(()));
        assert_eq!(g.authenticate(&ok, now + WEBHOOK_SKEW_SECONDS_MAX), Ok(()));
        assert!(matches!(
            g.authenticate(&ok, now + WEBHOOK_SKEW_SECONDS_MAX + 1),
            Err(Rejection::OutsideWindow { .. })
        ));
        assert!(matches!(
            g.authenticate(&ok, now - WEBHOOK_SKEW_SECONDS_MAX - 1),
            Err(Rejection::OutsideWindow { .. })
        ));
        let tampered = Delivery { body: &body[..body.len() - 1], ..ok };
        assert_eq!(g.authenticate(&tampered, now), Err(Rejection::BadSignature));
        let other = SignedWebhook::new(GatewayKind::Bank, vec![8; 32]).sign(&ts, body);
        let forged = Delivery { signature: Some(&other), ..ok };
        assert_eq!(g.authenticate(&forged, now), Err(Rejection::BadSignature));
        let missing = Delivery { signature: None, ..ok };
        assert_eq!(g.authenticate(&missing, now), Err(Rejection::MissingHeaders));
        let garbage = Delivery { timestamp: Some("soon"), ..ok };
        assert_eq!(g.authenticate(&garbage, now), Err(Rejection::BadTimestamp));
        let parsed = g.parse(body).unwrap();
        assert_eq!((parsed.transaction_id.as_str(), parsed.amount_satang), ("t1", 1));
    }

    #[test]
    fn production_needs_a_bank_secret_and_never_has_a_sandbox() {
        let dir = std::env::temp_dir().join(format!("allot-gw-{}", uuid::Uuid::new_v4()));
        let mut prod = Settings { dev_mode: false, data_dir: dir.clone(), ..Settings::default() };
        prod.payments.promptpay_biller_id = "099400016550100".into();
        assert!(Gateways::load(&prod).unwrap_err().contains("webhook_secret_bank"));
        prod.payments.webhook_secret_bank = "ab".repeat(32).into();
        let gateways = Gateways::load(&prod).unwrap();
        assert!(gateways.get(GatewayKind::Sandbox).is_none());
        assert!(gateways.get(GatewayKind::Bank).is_some());
        let mut short = prod.clone();
        short.payments.webhook_secret_bank = "ab".repeat(8).into();
        assert!(Gateways::load(&short).is_err(), "a short key is refused");
        let mut biller = prod;
        biller.payments.promptpay_biller_id = "123".into();
        assert!(Gateways::load(&biller).unwrap_err().contains("promptpay_biller_id"));

        // Dev mode generates both secrets once and keeps them across restarts.
        let dev = Settings { dev_mode: true, data_dir: dir.clone(), ..Settings::default() };
        let dev = crate::production::prepare(dev).unwrap();
        let (a, b) = (Gateways::load(&dev).unwrap(), Gateways::load(&dev).unwrap());
        let sign = |g: &Gateways, kind| g.get(kind).unwrap().sign("1", b"x");
        assert_eq!(sign(&a, GatewayKind::Bank), sign(&b, GatewayKind::Bank));
        assert_ne!(sign(&a, GatewayKind::Bank), sign(&a, GatewayKind::Sandbox));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn one_matching_signature_among_several_is_enough() {
        let g = gateway();
        let body = b"{}";
        let (now, ts) = (1_800_000_000, "1800000000");
        let good = g.sign(ts, body);
        let old = SignedWebhook::new(GatewayKind::Bank, vec![9; 32]).sign(ts, body);
        let both = format!("{old}, {good}");
        let bare = good.trim_start_matches("v1=").to_owned();
        for header in [good.as_str(), both.as_str(), bare.as_str()] {
            let d = Delivery { timestamp: Some(ts), signature: Some(header), body };
            assert_eq!(g.authenticate(&d, now), Ok(()), "{header}");
        }
        let wrong_scheme = good.replace("v1=", "v0=");
        for header in [old.as_str(), wrong_scheme.as_str(), "v1=", ""] {
            let d = Delivery { timestamp: Some(ts), signature: Some(header), body };
            assert_eq!(g.authenticate(&d, now), Err(Rejection::BadSignature), "{header}");
        }
    }

    #[test]
    fn bodies_are_bounded_and_typed() {
        let g = gateway();
        assert_eq!(g.parse(b"{").unwrap_err().code, ErrorCode::MalformedJson);
        let zero = br#"{"transaction_id":"t","reference":"R","amount_satang":0,"paid_at":"2026-01-01T00:00:00Z"}"#;
        assert_eq!(g.parse(zero).unwrap_err().field.as_deref(), Some("amount_satang"));
        let long = format!(
            r#"{{"transaction_id":"{}","reference":"R","amount_satang":1,"paid_at":"2026-01-01T00:00:00Z"}}"#,
            "x".repeat(65)
        );
        assert_eq!(g.parse(long.as_bytes()).unwrap_err().field.as_deref(), Some("transaction_id"));
        // No currency is not baht by default.
        let unnamed = br#"{"transaction_id":"t","reference":"R","amount_satang":1,"paid_at":"2026-01-01T00:00:00Z"}"#;
        assert_eq!(g.parse(unnamed).unwrap_err().field.as_deref(), Some("currency"));
    }
}
