//! A gateway's notification that money arrived: authenticate, record, apply, mark.
//!
//! 1. Authenticate (signature and replay window) before reading anything: a forged or
//!    stale delivery is refused with 401 and leaves nothing but a security log line.
//! 2. Record it in Postgres, keyed by (gateway, transaction id): banks resend, and a resend
//!    finds the row already there. Nothing is acknowledged before this commit.
//! 3. Apply it to the ledger: confirm the hold (deposit + post both holds, one linked
//!    chain) or, when the money cannot confirm it, book it to refunds payable.
//! 4. Mark the row applied, set the intent's status, enqueue the notification and append
//!    the audit entry, in one transaction, the first time only.
//!
//! Every step is idempotent, so a resend re-applies rather than trusting an earlier attempt
//! that may have died halfway: the ledger ids derive from the transaction, and TigerBeetle
//! answers `exists` for work already done. Once a notification is recorded the bank gets a
//! 2xx whatever happens next (202 when the ledger could not be reached: the worker finishes
//! the job), so a resend of a known payment never meets a 5xx.

use std::time::{Duration, SystemTime};

use allot_ledger::{ConfirmOutcome, Payment};
use allot_store::payments::{self as store, Applied, NewNotification, OwnerNotice};
use allot_store::status::NotificationOutcome;
use serde::Serialize;
use time::OffsetDateTime;

use super::gateway::{Delivery, Gateway, GatewayKind, Notification};
use super::intent::StoredIntent;
use super::{format_payment_id, ledger_payment_id, normalize_reference, Payments};
use crate::catalog::Offering;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::notify::outbox::Kind;

/// A recorded notification still unapplied after this long is finished by the worker.
pub const REAPPLY_AFTER: Duration = Duration::from_secs(5);
/// A payer's account number longer than this is cut: no bank's is nearly as long.
const PAYER_ACCOUNT_BYTES_MAX: usize = 64;
/// Rows the worker re-applies per pass.
pub const REAPPLY_ROWS_MAX: i64 = 100;
/// A pass gives up after this many failures, so an outage costs a few timeouts per pass.
const REAPPLY_FAILURES_MAX: usize = 3;
/// A bank's `paid_at` may be this far ahead of our clock (clocks differ a little); further
/// ahead it is a mistake, and refused.
pub const PAID_AT_AHEAD_MAX: Duration = Duration::from_secs(60);
/// A `paid_at` older than this is refused: no hold lasts longer
/// ([`allot_ledger::HOLD_SECONDS_MAX`]) plus a day, so it cannot pay for anything we hold.
pub const PAID_AT_AGE_MAX: Duration =
    Duration::from_secs(allot_ledger::HOLD_SECONDS_MAX as u64 + 24 * 3600);

/// What became of a notification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The hold is confirmed and the money is in deposits.
    Succeeded,
    /// The money is in refunds payable; the reason says why.
    RefundDue(&'static str),
    /// No payment has this reference: finance must find out what the money is for.
    Unmatched,
}

impl Outcome {
    /// As stored on the notification (and on its intent, when it has one).
    fn stored(&self) -> NotificationOutcome {
        match self {
            Outcome::Succeeded => NotificationOutcome::Succeeded,
            Outcome::RefundDue(_) => NotificationOutcome::RefundDue,
            Outcome::Unmatched => NotificationOutcome::Unmatched,
        }
    }

    fn as_str(&self) -> &'static str {
        self.stored().as_str()
    }

    fn reason(&self) -> Option<&'static str> {
        match self {
            Outcome::RefundDue(reason) => Some(reason),
            _ => None,
        }
    }
}

/// The answer a gateway gets.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WebhookAnswer {
    /// `succeeded`, `refund_due`, `unmatched`, or `received` (recorded; applied shortly).
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payment_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
}

/// What a delivery came to.
#[derive(Debug)]
pub struct Receipt {
    /// `true`: applied to the ledger now. `false`: recorded, and the worker applies it
    /// shortly (the ledger could not be reached); the sender must not resend meanwhile.
    pub applied: bool,
    pub answer: WebhookAnswer,
}

/// A notification as recorded: the first delivery of a transaction wins.
#[derive(Clone, Debug)]
struct Recorded {
    gateway: GatewayKind,
    transaction_id: String,
    amount_satang: u64,
    payment_id: Option<String>,
    ledger_id: u128,
    /// When the payer paid, as the bank said: what decides whether it was in time.
    paid_at: SystemTime,
}

impl Payments {
    /// Handles one delivery from `kind`'s gateway; the webhook route and the sandbox share
    /// it. Once the delivery is recorded, the answer is a success whatever happens next.
    pub async fn receive(&self, kind: GatewayKind, delivery: Delivery<'_>) -> ApiResult<Receipt> {
        let gateway = self.gateways.get(kind).ok_or_else(|| ApiError::new(ErrorCode::NotFound))?;
        let now = OffsetDateTime::now_utc().unix_timestamp();
        if let Err(rejection) = gateway.authenticate(&delivery, now) {
            metrics::counter!("allot_webhooks_rejected_total", "gateway" => kind.as_str())
                .increment(1);
            tracing::warn!(target: "security", gateway = kind.as_str(), reason = %rejection,
                "payment webhook refused: not authentic");
            if let Ok(client) = self.db.get().await {
                let event = allot_store::status::ActivityKind::WebhookRejected;
                crate::alerts::record(&client, event, None, None, None, Some(kind.as_str())).await;
            }
            return Err(ApiError::new(ErrorCode::InvalidSignature));
        }
        let notification = gateway.parse(delivery.body)?;
        check_paid_at(notification.paid_at, OffsetDateTime::now_utc())?;
        let recorded = self.record(kind, &notification, delivery.body).await?;
        let payment_id = recorded.payment_id.clone();
        match self.apply_and_mark(&recorded).await {
            Ok(outcome) => Ok(Receipt {
                applied: true,
                answer: WebhookAnswer {
                    status: outcome.as_str(),
                    payment_id,
                    reason: outcome.reason(),
                },
            }),
            Err(e) => {
                // Recorded, so not lost: the worker applies it. The bank must not resend in
                // a loop meanwhile, so this is a success to it.
                tracing::warn!(gateway = kind.as_str(), transaction = %recorded.transaction_id,
                    error = %e, "payment recorded, applying it later");
                let status = NotificationOutcome::Received.as_str();
                Ok(Receipt {
                    applied: false,
                    answer: WebhookAnswer { status, payment_id, reason: None },
                })
            }
        }
    }

    /// Step 2: the row for (gateway, transaction id), inserted unless a delivery of the
    /// same transaction was recorded before (then the stored one is what counts).
    async fn record(
        &self,
        kind: GatewayKind,
        n: &Notification,
        body: &[u8],
    ) -> ApiResult<Recorded> {
        let ledger_id = ledger_payment_id(kind, &n.transaction_id);
        let client = self.db.get().await?;
        let body_text = String::from_utf8_lossy(body);
        let new = NewNotification {
            gateway: kind.as_str(),
            transaction_id: &n.transaction_id,
            reference: n.reference.trim(),
            amount_satang: n.amount_satang as i64,
            paid_at: n.paid_at.into(),
            normalized_reference: &normalize_reference(&n.reference),
            ledger_id: &format_payment_id(ledger_id),
            body: body_text.as_ref(),
            // Bounded, like every text a bank sends us that we keep.
            payer_account: n
                .payer_account
                .as_deref()
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .map(|a| &a[..a.floor_char_boundary(PAYER_ACCOUNT_BYTES_MAX)]),
        };
        let row = store::record_notification(&client, &new)
            .await?
            .ok_or_else(|| ApiError::internal("recorded notification not found"))?;
        let amount_satang = row.amount_satang as u64;
        if row.reference != n.reference.trim() || amount_satang != n.amount_satang {
            // A resend that disagrees with the first delivery: the first one stands, and
            // someone should look.
            tracing::warn!(target: "security", gateway = kind.as_str(),
                transaction = %n.transaction_id,
                "payment webhook resend differs from the recorded delivery; keeping the first");
        }
        Ok(Recorded {
            gateway: kind,
            transaction_id: n.transaction_id.clone(),
            amount_satang,
            payment_id: row.payment_id,
            ledger_id,
            paid_at: row.paid_at,
        })
    }

    /// Steps 3 and 4. Errors mean "not applied yet"; calling again is always safe.
    async fn apply_and_mark(&self, r: &Recorded) -> Result<Outcome, String> {
        let Some(payment_id) = &r.payment_id else {
            self.mark(r, &Outcome::Unmatched, None).await?;
            return Ok(Outcome::Unmatched);
        };
        let intent = self
            .load_by_id(payment_id)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("recorded payment has no intent")?;
        let offering = self
            .catalog
            .get(&intent.offering_id)
            .ok_or_else(|| format!("offering {} not in the catalog", intent.offering_id))?;
        let outcome = self.apply(r, &intent, &offering).await?;
        let args = serde_json::json!({
            "reservation_id": intent.reservation_id,
            "payment_id": intent.payment_id,
            "offering_id": intent.offering_id,
            "amount_satang": r.amount_satang,
            "reference": intent.reference,
            "expires_at": OffsetDateTime::from(intent.expires_at).unix_timestamp(),
            "reason": outcome.reason(),
        });
        self.mark(r, &outcome, Some(Target { user_id: intent.user_id, args })).await?;
        metrics::counter!("allot_payments_applied_total", "outcome" => outcome.as_str())
            .increment(1);
        Ok(outcome)
    }

    /// Step 3: confirms the intent's hold with this money, or books the money to refunds
    /// payable when it cannot.
    async fn apply(
        &self,
        r: &Recorded,
        intent: &StoredIntent,
        offering: &Offering,
    ) -> Result<Outcome, String> {
        let hold = crate::reservations::parse_id(&intent.reservation_id).ok_or("bad hold id")?;
        let payment = Payment {
            id: r.ledger_id,
            gateway: r.gateway.ledger_number(),
            amount_satang: r.amount_satang.into(),
        };
        let outcome = if r.gateway == GatewayKind::Sandbox && intent.gateway != GatewayKind::Sandbox
        {
            // Play money never confirms a payment opened with a real bank.
            Outcome::RefundDue("wrong_gateway")
        } else if r.amount_satang != intent.amount_satang {
            Outcome::RefundDue("amount_mismatch")
        } else if r.paid_at > intent.expires_at {
            // Paid after the deadline the payer was shown: too late, however early the
            // report, even while the ledger still keeps the hold through its grace.
            Outcome::RefundDue("hold_expired")
        } else {
            let confirm = self.ledger.confirm(&offering.spec, hold, &payment);
            match tokio::time::timeout(self.ledger_timeout, confirm)
                .await
                .map_err(|_| "ledger timeout".to_string())?
                .map_err(|e| e.to_string())?
            {
                ConfirmOutcome::Confirmed { .. } => Outcome::Succeeded,
                ConfirmOutcome::ConfirmedByOtherPayment => Outcome::RefundDue("paid_twice"),
                ConfirmOutcome::HoldExpired => Outcome::RefundDue("hold_expired"),
                ConfirmOutcome::HoldCancelled => Outcome::RefundDue("hold_cancelled"),
                ConfirmOutcome::HoldNotFound => Outcome::RefundDue("hold_not_found"),
            }
        };
        if let Outcome::RefundDue(_) = outcome {
            let refund = self.ledger.record_refund(&offering.spec, &payment);
            tokio::time::timeout(self.ledger_timeout, refund)
                .await
                .map_err(|_| "ledger timeout".to_string())?
                .map_err(|e| e.to_string())?;
        }
        Ok(outcome)
    }

    /// Step 4, in one transaction: the row's outcome, the intent's status, the notification
    /// to its owner (one statement), and the audit entry. Only the first application changes
    /// anything; a replay finds the row applied and leaves all of it alone.
    async fn mark(
        &self,
        r: &Recorded,
        outcome: &Outcome,
        target: Option<Target>,
    ) -> Result<(), String> {
        // The owner hears of it once per event: the payment's confirmation, or this money's
        // refund. Unmatched money has no owner to tell.
        let event = match (&r.payment_id, target) {
            (Some(payment_id), Some(target)) => {
                let (kind, subject) = match outcome {
                    Outcome::Succeeded => (Kind::PaymentConfirmed, payment_id.clone()),
                    _ => (Kind::RefundDue, format_payment_id(r.ledger_id)),
                };
                Some((format!("{}.{subject}", kind.as_str()), kind, target))
            }
            _ => None,
        };
        let mut client = self.db.get().await.map_err(|e| e.to_string())?;
        let tx = client.transaction().await.map_err(|e| e.to_string())?;
        let applied = Applied {
            gateway: r.gateway.as_str(),
            transaction_id: &r.transaction_id,
            outcome: outcome.stored(),
            reason: outcome.reason(),
            payment_id: r.payment_id.as_deref(),
            notice: event.as_ref().map(|(send_key, kind, target)| OwnerNotice {
                send_key,
                user_id: target.user_id,
                kind: kind.as_str(),
                args: &target.args,
            }),
        };
        if store::mark_applied(&tx, &applied).await.map_err(|e| e.to_string())? {
            audit_applied(&tx, r, outcome).await.map_err(|e| e.to_string())?;
        }
        tx.commit().await.map_err(|e| e.to_string())
    }

    /// The worker's half: applies notifications that were recorded but never marked (a
    /// crash or a ledger outage in between). Returns how many it applied.
    pub async fn reapply_unapplied(&self) -> Result<usize, String> {
        let client = self.db.get().await.map_err(|e| e.to_string())?;
        let cutoff = SystemTime::now() - REAPPLY_AFTER;
        let rows =
            store::unapplied(&client, cutoff, REAPPLY_ROWS_MAX).await.map_err(|e| e.to_string())?;
        drop(client);
        let (mut applied, mut failures) = (0, 0);
        for row in rows {
            let recorded = Recorded {
                gateway: GatewayKind::parse(&row.gateway).ok_or("unknown gateway in a row")?,
                transaction_id: row.transaction_id,
                amount_satang: row.amount_satang as u64,
                payment_id: row.payment_id,
                ledger_id: super::parse_payment_id(&row.ledger_id)
                    .ok_or("bad ledger id in a row")?,
                paid_at: row.paid_at,
            };
            // One row that cannot be applied (its offering gone, say) must not hold up the
            // rest.
            match self.apply_and_mark(&recorded).await {
                Ok(outcome) => {
                    (applied, failures) = (applied + 1, 0);
                    tracing::info!(transaction = %recorded.transaction_id,
                        outcome = outcome.as_str(), "late payment notification applied");
                }
                Err(e) => {
                    tracing::warn!(transaction = %recorded.transaction_id, error = %e,
                        "payment notification still not applied");
                    failures += 1;
                    if failures == REAPPLY_FAILURES_MAX {
                        // Likely the ledger is down: try again next pass, not row after row.
                        return Err(format!("{failures} failures in a row, last: {e}"));
                    }
                }
            }
        }
        Ok(applied)
    }
}

/// Refuses a `paid_at` in the future (beyond clock skew) or too far in the past to pay for
/// anything: the bank's mistake, which must not decide whether a hold is confirmed.
fn check_paid_at(paid_at: OffsetDateTime, now: OffsetDateTime) -> ApiResult<()> {
    if paid_at > now + PAID_AT_AHEAD_MAX || paid_at < now - PAID_AT_AGE_MAX {
        return Err(ApiError::field(ErrorCode::InvalidPaidAt, "paid_at"));
    }
    Ok(())
}

/// The intent a recorded notification pays for.
struct Target {
    user_id: i64,
    args: serde_json::Value,
}

/// The audit entry of a notification's first application, in its transaction.
async fn audit_applied(
    tx: &allot_store::Transaction<'_>,
    r: &Recorded,
    outcome: &Outcome,
) -> Result<i64, allot_store::Error> {
    let subject = format!("payment_notification:{}:{}", r.gateway.as_str(), r.transaction_id);
    let after = serde_json::json!({
        "outcome": outcome.as_str(),
        "reason": outcome.reason(),
        "payment_id": r.payment_id,
        "amount_satang": r.amount_satang,
        "ledger_id": format_payment_id(r.ledger_id),
    });
    let actor = crate::audit::system("payments");
    crate::audit::append(tx, &actor, "payment.applied", &subject, None, Some(&after)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paid_at_in_the_future_or_long_ago_is_refused() {
        let now = OffsetDateTime::now_utc();
        assert!(check_paid_at(now, now).is_ok());
        assert!(check_paid_at(now + PAID_AT_AHEAD_MAX, now).is_ok());
        assert!(check_paid_at(now - Duration::from_secs(7 * 24 * 3600), now).is_ok());
        let ahead = check_paid_at(now + PAID_AT_AHEAD_MAX + Duration::from_secs(1), now);
        assert_eq!(ahead.unwrap_err().code, ErrorCode::InvalidPaidAt);
        let old = check_paid_at(now - PAID_AT_AGE_MAX - Duration::from_secs(1), now);
        assert_eq!(old.unwrap_err().field.as_deref(), Some("paid_at"));
    }
}
