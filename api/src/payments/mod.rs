//! Payments: a reservation is confirmed only by money that really arrived.
//!
//! - This module: the [`Payments`] service (the handles every part below works with) and
//!   payment ids and references.
//! - [`intent`]: payment intents (what we asked a person to pay, in Postgres) and their QR.
//! - [`promptpay`]: the bill-payment QR we print, and its parser.
//! - [`gateway`]: gateways behind one trait; signed webhooks with a replay window.
//! - [`webhook`]: a bank's notification, recorded in Postgres first, then applied to the
//!   ledger (confirm, or book a refund), then marked applied.
//! - [`sandbox`]: play money for development, delivered through the webhook's own path.
//! - [`finance`]: money that confirmed nothing, listed for finance.
//! - [`payouts`]: refunds paid back (Postgres first, audited, then the ledger).
//! - [`worker`]: the background task that drains the notification outbox
//!   ([`crate::notify`], where intents and webhooks enqueue their notices) and finishes any
//!   notification that was recorded but not applied.
//!
//! HTTP stays in `routes::payments`: it reads headers and bodies, calls [`Payments`] with
//! plain values, and picks the status codes. Every statement is in `allot_store::payments`
//! (and the outbox's in `allot_store::outbox`, behind `notify`).
//!
//! Invariants:
//! - Only a gateway's authenticated notification moves money; the client never says "paid".
//! - Every notification is recorded before the ledger is touched, and applying it again is
//!   harmless: its ledger ids derive from (gateway, transaction id).
//! - Money that cannot confirm its hold (late, wrong amount, paid twice) is booked to
//!   refunds payable in the ledger and listed for finance; it is never dropped.
//! - A reservation's status is the ledger's: nothing here writes it.

pub mod finance;
pub mod gateway;
pub mod intent;
pub mod payouts;
pub mod promptpay;
pub mod sandbox;
pub mod webhook;
pub mod worker;

use std::sync::Arc;
use std::time::Duration;

use allot_ledger::ids::BASE_MASK;
use allot_ledger::Ledger;
use allot_store::Pool;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::catalog::Catalog;
use crate::config::PaymentSettings;
use gateway::{GatewayKind, Gateways};
pub use intent::{CreatePayment, Method, PaymentIntent, PromptPay};

/// The payments service: exactly the handles payments work with. Built once at start;
/// cheap to clone (Arcs and the pool), so the worker takes its own copy.
#[derive(Clone, Debug)]
pub struct Payments {
    /// Intents, notifications and the outbox events they enqueue.
    db: Pool,
    /// Confirms holds, books refunds, and says whether a reminder is still true.
    ledger: Arc<Ledger>,
    /// An offering's ledger spec (to confirm its holds) and its name (in messages).
    catalog: Arc<Catalog>,
    /// Who may tell us that money arrived, with their secrets.
    gateways: Arc<Gateways>,
    /// The PromptPay biller id printed in every QR.
    settings: Arc<PaymentSettings>,
    /// Only in development is the sandbox the default gateway and play money accepted.
    dev_mode: bool,
    /// A ledger call that takes longer fails; what a webhook could not finish, the worker
    /// finishes later.
    ledger_timeout: Duration,
}

impl Payments {
    pub fn new(
        db: Pool,
        ledger: Arc<Ledger>,
        catalog: Arc<Catalog>,
        gateways: Gateways,
        settings: PaymentSettings,
        dev_mode: bool,
        ledger_timeout: Duration,
    ) -> Payments {
        Payments {
            db,
            ledger,
            catalog,
            gateways: Arc::new(gateways),
            settings: Arc::new(settings),
            dev_mode,
            ledger_timeout,
        }
    }

    /// The gateways and their signing keys (tests and tools sign deliveries with them).
    pub fn gateways(&self) -> &Gateways {
        &self.gateways
    }

    fn biller_id(&self) -> &str {
        &self.settings.promptpay_biller_id
    }
}

/// References are this many Crockford base-32 characters: 80 bits, so a clash between two
/// random payment ids is out of reach, and still short enough to read out on the phone.
pub const REFERENCE_CHARS: usize = 16;
const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// A fresh payment id: 120 random bits, so it fits a ledger transfer's base and cannot be
/// guessed (the QR image URL carries it without a token).
pub fn new_payment_id() -> u128 {
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    let id = u128::from_le_bytes(bytes) & BASE_MASK;
    if id == 0 {
        1
    } else {
        id
    }
}

pub fn format_payment_id(id: u128) -> String {
    format!("{id:030x}")
}

pub fn parse_payment_id(text: &str) -> Option<u128> {
    if text.len() != 30 {
        return None;
    }
    u128::from_str_radix(text, 16).ok().filter(|id| *id != 0 && id & !BASE_MASK == 0)
}

/// Ref1 of a payment: the top 80 bits of its id in Crockford base 32 (upper case, no I, L,
/// O or U), so that a payer's bank cannot garble it into another valid reference easily.
pub fn reference_for(payment_id: u128) -> String {
    let top = payment_id >> (120 - 5 * REFERENCE_CHARS);
    (0..REFERENCE_CHARS)
        .rev()
        .map(|i| CROCKFORD[((top >> (5 * i)) & 31) as usize] as char)
        .collect()
}

/// How a reference a bank sends back is compared with ours.
pub fn normalize_reference(text: &str) -> String {
    text.trim().to_ascii_uppercase()
}

/// The ledger id of one bank transaction. Each transaction gets its own, so a second
/// payment for the same hold is recognised as such by the ledger (and refunded) rather than
/// mistaken for a replay of the first; and a resent webhook maps to the same id.
pub fn ledger_payment_id(gateway: GatewayKind, transaction_id: &str) -> u128 {
    let mut hash = Sha256::new();
    hash.update(b"allot/payment-transaction/v1");
    hash.update(gateway.ledger_number().to_le_bytes());
    hash.update(transaction_id.as_bytes());
    let digest = hash.finalize();
    let id = u128::from_be_bytes(digest[..16].try_into().expect("16 bytes")) & BASE_MASK;
    id.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payment_ids_fit_the_ledger_and_round_trip() {
        for _ in 0..100 {
            let id = new_payment_id();
            assert_eq!(id & !BASE_MASK, 0);
            assert_eq!(parse_payment_id(&format_payment_id(id)), Some(id));
        }
        assert_eq!(parse_payment_id("0"), None);
        assert_eq!(parse_payment_id(&"0".repeat(30)), None);
        assert_eq!(parse_payment_id(&"f".repeat(30)), Some(BASE_MASK));
    }

    #[test]
    fn references_are_short_upper_case_and_distinct() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1000 {
            let r = reference_for(new_payment_id());
            assert_eq!(r.len(), REFERENCE_CHARS);
            assert!(r.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()), "{r}");
            assert!(!r.contains(['I', 'L', 'O', 'U']), "{r}");
            assert!(seen.insert(r));
        }
        assert_eq!(reference_for(BASE_MASK), "Z".repeat(REFERENCE_CHARS));
        assert_eq!(normalize_reference(" abc12 "), "ABC12");
    }

    #[test]
    fn each_bank_transaction_has_its_own_ledger_id() {
        let a = ledger_payment_id(GatewayKind::Bank, "T1");
        assert_eq!(a, ledger_payment_id(GatewayKind::Bank, "T1"));
        assert_ne!(a, ledger_payment_id(GatewayKind::Bank, "T2"));
        assert_ne!(a, ledger_payment_id(GatewayKind::Sandbox, "T1"));
        assert_eq!(a & !BASE_MASK, 0);
    }
}
