//! Payments: a reservation is confirmed only by money that really arrived.
//!
//! - This module: payment intents (what we asked a person to pay, in Postgres) and ids.
//! - [`promptpay`]: the bill-payment QR we print, and its parser.
//! - [`gateway`]: gateways behind one trait; signed webhooks with a replay window.
//! - [`webhook`]: a bank's notification, recorded in Postgres first, then applied to the
//!   ledger (confirm, or book a refund), then marked applied.
//! - [`outbox`] and [`senders`]: notifications to people, through a Postgres outbox.
//! - [`worker`]: the background task that drains the outbox and finishes any notification
//!   that was recorded but not applied.
//!
//! Invariants:
//! - Only a gateway's authenticated notification moves money; the client never says "paid".
//! - Every notification is recorded before the ledger is touched, and applying it again is
//!   harmless: its ledger ids derive from (gateway, transaction id).
//! - Money that cannot confirm its hold (late, wrong amount, paid twice) is booked to
//!   refunds payable in the ledger and listed for finance; it is never dropped.
//! - A reservation's status is the ledger's: nothing here writes it.

pub mod gateway;
pub mod outbox;
pub mod promptpay;
pub mod sandbox;
pub mod senders;
pub mod webhook;
pub mod worker;

use std::time::SystemTime;

use allot_ledger::ids::BASE_MASK;
use allot_ledger::HoldState;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use tokio_postgres::Row;

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::state::AppState;
use gateway::GatewayKind;
use outbox::{Event, Kind};
use promptpay::BillPayment;

/// References are this many Crockford base-32 characters: 80 bits, so a clash between two
/// random payment ids is out of reach, and still short enough to read out on the phone.
pub const REFERENCE_CHARS: usize = 16;
const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Reminders before a payment deadline, in hours; each only when the hold is long enough.
pub const REMINDER_HOURS: [u64; 2] = [6, 1];
/// Inserting an intent retries this often if its random reference is already taken.
const REFERENCE_ATTEMPTS_MAX: usize = 3;

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

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    Promptpay,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePayment {
    pub method: Method,
    /// Defaults to `sandbox` in dev mode and `bank` otherwise.
    pub gateway: Option<GatewayKind>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PromptPay {
    /// The EMVCo payload a banking app reads from the QR.
    pub payload: String,
    /// The same payload as an SVG image (no token needed: the payment id is unguessable).
    pub qr_svg_url: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PaymentIntent {
    pub payment_id: String,
    pub reservation_id: String,
    pub offering_id: String,
    pub method: &'static str,
    pub gateway: GatewayKind,
    /// The deposit that confirms the reservation, exactly.
    pub amount_satang: u64,
    /// Ref1: what the payer's bank reports back to us.
    pub reference: String,
    /// `pending`, `succeeded`, `refund_due`, or `expired` (pending past its deadline).
    pub status: String,
    /// Why money is due back: `hold_expired`, `hold_cancelled`, `amount_mismatch`,
    /// `paid_twice`, `hold_not_found`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    pub promptpay: PromptPay,
}

const INTENT_COLUMNS: &str = "payment_id, reservation_id, offering_id, user_id, gateway, \
     amount_satang, reference, status, reason, expires_at, created_at";

/// A stored intent, before it is shaped for a client.
#[derive(Clone, Debug)]
pub struct StoredIntent {
    pub payment_id: String,
    pub reservation_id: String,
    pub offering_id: String,
    pub user_id: i64,
    pub gateway: GatewayKind,
    pub amount_satang: u64,
    pub reference: String,
    pub status: String,
    pub reason: Option<String>,
    pub expires_at: SystemTime,
    pub created_at: SystemTime,
}

impl StoredIntent {
    fn from_row(row: &Row) -> StoredIntent {
        StoredIntent {
            payment_id: row.get(0),
            reservation_id: row.get(1),
            offering_id: row.get(2),
            user_id: row.get(3),
            gateway: GatewayKind::parse(row.get(4)).expect("checked by the schema"),
            amount_satang: row.get::<_, i64>(5) as u64,
            reference: row.get(6),
            status: row.get(7),
            reason: row.get(8),
            expires_at: row.get(9),
            created_at: row.get(10),
        }
    }

    fn qr(&self, biller_id: &str) -> ApiResult<String> {
        BillPayment {
            biller_id: biller_id.to_owned(),
            ref1: self.reference.clone(),
            ref2: None,
            amount_satang: Some(self.amount_satang),
            additional_data: None,
        }
        .encode()
        .map_err(ApiError::internal)
    }

    fn describe(&self, biller_id: &str) -> ApiResult<PaymentIntent> {
        let mut status = self.status.clone();
        if status == "pending" && SystemTime::now() >= self.expires_at {
            status = "expired".into();
        }
        Ok(PaymentIntent {
            payment_id: self.payment_id.clone(),
            reservation_id: self.reservation_id.clone(),
            offering_id: self.offering_id.clone(),
            method: "promptpay",
            gateway: self.gateway,
            amount_satang: self.amount_satang,
            reference: self.reference.clone(),
            status,
            reason: self.reason.clone(),
            expires_at: self.expires_at.into(),
            created_at: self.created_at.into(),
            promptpay: PromptPay {
                payload: self.qr(biller_id)?,
                qr_svg_url: format!("/v1/payments/{}/qr.svg", self.payment_id),
            },
        })
    }
}

pub async fn load_by_id(state: &AppState, payment_id: &str) -> ApiResult<Option<StoredIntent>> {
    let client = state.db.get().await?;
    let sql = format!("SELECT {INTENT_COLUMNS} FROM payment_intents WHERE payment_id = $1");
    let row = client.query_opt(&sql, &[&payment_id]).await?;
    Ok(row.as_ref().map(StoredIntent::from_row))
}

async fn load_by_reservation(
    state: &AppState,
    reservation_id: &str,
) -> ApiResult<Option<StoredIntent>> {
    let client = state.db.get().await?;
    let sql = format!("SELECT {INTENT_COLUMNS} FROM payment_intents WHERE reservation_id = $1");
    let row = client.query_opt(&sql, &[&reservation_id]).await?;
    Ok(row.as_ref().map(StoredIntent::from_row))
}

/// Opens (or returns) the payment intent of a held reservation, for its owner. `true` when
/// this call created it. One intent per reservation: asking again returns the same one.
pub async fn create(
    state: &AppState,
    who: &Principal,
    reservation_id: &str,
    body: &CreatePayment,
) -> ApiResult<(PaymentIntent, bool)> {
    let (info, reservation) = state.reservations.read(who, reservation_id).await?;
    if info.person != who.person() {
        // Staff may read a reservation but only its owner pays for it.
        return Err(ApiError::field(ErrorCode::ReservationNotFound, "reservation_id"));
    }
    let biller = &state.settings.payments.promptpay_biller_id;
    if let Some(existing) = load_by_reservation(state, &reservation.reservation_id).await? {
        return Ok((existing.describe(biller)?, false));
    }
    match info.state {
        HoldState::Held => {}
        HoldState::Expired => return Err(ApiError::new(ErrorCode::HoldExpired)),
        HoldState::Confirmed | HoldState::Cancelled => {
            return Err(ApiError::new(ErrorCode::ReservationNotPayable))
        }
    }
    let gateway = match body.gateway {
        Some(GatewayKind::Sandbox) if !state.settings.dev_mode => {
            return Err(ApiError::validation("gateway", "the sandbox exists only in development"))
        }
        Some(g) => g,
        None if state.settings.dev_mode => GatewayKind::Sandbox,
        None => GatewayKind::Bank,
    };
    let amount = reservation.deposit_due_satang;
    if amount == 0 {
        return Err(ApiError::new(ErrorCode::ReservationNotPayable));
    }
    let expires_at: SystemTime = info.expires_at;
    for _ in 0..REFERENCE_ATTEMPTS_MAX {
        let id = new_payment_id();
        let payment_id = format_payment_id(id);
        let reference = reference_for(id);
        // One connection per attempt, released before anything else is read: a handler
        // that held one while waiting for a second could deadlock a busy pool.
        let mut client = state.db.get().await?;
        let tx = client.transaction().await?;
        let sql = format!(
            "INSERT INTO payment_intents
                (payment_id, reservation_id, offering_id, user_id, method, gateway,
                 amount_satang, reference, expires_at)
             VALUES ($1, $2, $3, $4, 'promptpay', $5, $6, $7, $8)
             ON CONFLICT (reservation_id) DO NOTHING
             RETURNING {INTENT_COLUMNS}"
        );
        let inserted = tx
            .query_opt(
                &sql,
                &[
                    &payment_id,
                    &reservation.reservation_id,
                    &reservation.offering_id,
                    &who.user_id,
                    &gateway.as_str(),
                    &(amount as i64),
                    &reference,
                    &expires_at,
                ],
            )
            .await;
        match inserted {
            Ok(Some(row)) => {
                let args = serde_json::json!({
                    "reservation_id": reservation.reservation_id,
                    "payment_id": payment_id,
                    "offering_id": reservation.offering_id,
                    "amount_satang": amount,
                    "reference": reference,
                    "expires_at": OffsetDateTime::from(expires_at).unix_timestamp(),
                });
                outbox::enqueue(
                    &tx,
                    &intent_events(who.user_id, &reservation.reservation_id, expires_at, &args),
                )
                .await?;
                tx.commit().await?;
                metrics::counter!("allot_payment_intents_total").increment(1);
                return Ok((StoredIntent::from_row(&row).describe(biller)?, true));
            }
            Ok(None) => {
                // Someone (a concurrent retry) opened it first: theirs is the one.
                drop(tx);
                drop(client);
                let existing = load_by_reservation(state, &reservation.reservation_id)
                    .await?
                    .ok_or_else(|| ApiError::internal("payment intent conflict without a row"))?;
                return Ok((existing.describe(biller)?, false));
            }
            Err(e) if is_unique_violation(&e) => {
                tracing::warn!("payment reference clash; drawing another id");
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::internal("no free payment reference after several attempts"))
}

/// What an open intent announces: the reservation, reminders before the deadline, and the
/// expiry (checked against the ledger when due, and skipped if the hold was paid).
fn intent_events(
    user_id: i64,
    reservation_id: &str,
    expires_at: SystemTime,
    args: &serde_json::Value,
) -> Vec<Event> {
    let now = SystemTime::now();
    let mut events = vec![Event {
        send_key: format!("{}.{reservation_id}", Kind::ReservationMade.as_str()),
        user_id,
        kind: Kind::ReservationMade,
        args: args.clone(),
        due_at: now,
    }];
    for hours in REMINDER_HOURS {
        let due_at = expires_at - std::time::Duration::from_secs(hours * 3600);
        if due_at > now {
            let mut args = args.clone();
            args["hours"] = hours.into();
            events.push(Event {
                send_key: format!("{}_{hours}h.{reservation_id}", Kind::PaymentReminder.as_str()),
                user_id,
                kind: Kind::PaymentReminder,
                args,
                due_at,
            });
        }
    }
    events.push(Event {
        send_key: format!("{}.{reservation_id}", Kind::ReservationExpired.as_str()),
        user_id,
        kind: Kind::ReservationExpired,
        args: args.clone(),
        due_at: expires_at + crate::reservations::EXPIRY_GRACE,
    });
    events
}

fn is_unique_violation(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION)
}

/// A payment intent, for its owner or staff.
pub async fn read(state: &AppState, who: &Principal, payment_id: &str) -> ApiResult<PaymentIntent> {
    let not_found = || ApiError::field(ErrorCode::PaymentNotFound, "payment_id");
    parse_payment_id(payment_id).ok_or_else(not_found)?;
    let stored = load_by_id(state, payment_id).await?.ok_or_else(not_found)?;
    if stored.user_id != who.user_id && !who.is_staff() {
        return Err(not_found());
    }
    stored.describe(&state.settings.payments.promptpay_biller_id)
}

/// The QR image of a payment intent.
pub async fn qr_svg(state: &AppState, payment_id: &str) -> ApiResult<String> {
    let not_found = || ApiError::field(ErrorCode::PaymentNotFound, "payment_id");
    parse_payment_id(payment_id).ok_or_else(not_found)?;
    let stored = load_by_id(state, payment_id).await?.ok_or_else(not_found)?;
    let payload = stored.qr(&state.settings.payments.promptpay_biller_id)?;
    promptpay::svg(&payload).map_err(ApiError::internal)
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
