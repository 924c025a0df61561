//! Money that confirmed nothing, as finance sees it: refunds due (late, wrong-amount and
//! second payments) and money whose reference matches no payment.

use allot_store::payments::{self as store, ReceivedRow};
use allot_store::status::NotificationOutcome;
use serde::Serialize;
use time::OffsetDateTime;

use super::Payments;
use crate::error::ApiResult;

/// Rows a finance list returns: the newest first.
const FINANCE_ROWS_MAX: i64 = 1_000;

/// Money received through a gateway, as finance sees it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReceivedPayment {
    pub gateway: String,
    pub transaction_id: String,
    pub reference: String,
    pub amount_satang: u64,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub paid_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub received_at: OffsetDateTime,
    pub payment_id: Option<String>,
    pub reservation_id: Option<String>,
    pub user_id: Option<i64>,
    /// Why the money is due back (refunds only).
    pub reason: Option<String>,
    /// Refunds only: how much is paid back so far, and `due` or `paid_out`.
    pub paid_out_satang: u64,
    pub refund_status: Option<&'static str>,
}

impl ReceivedPayment {
    fn from_row(r: ReceivedRow) -> ReceivedPayment {
        // Only money that paid for something is refunded; unmatched money has no status.
        let paid_back = r.paid_out_satang >= r.amount_satang;
        let refund_status =
            r.payment_id.is_some().then_some(if paid_back { "paid_out" } else { "due" });
        ReceivedPayment {
            gateway: r.gateway,
            transaction_id: r.transaction_id,
            reference: r.reference,
            amount_satang: r.amount_satang as u64,
            paid_at: OffsetDateTime::from(r.paid_at),
            received_at: OffsetDateTime::from(r.received_at),
            payment_id: r.payment_id,
            reservation_id: r.reservation_id,
            user_id: r.user_id,
            reason: r.reason,
            paid_out_satang: r.paid_out_satang as u64,
            refund_status,
        }
    }
}

impl Payments {
    /// Money booked to refunds payable, newest first.
    pub async fn refunds_due(&self) -> ApiResult<Vec<ReceivedPayment>> {
        self.received(NotificationOutcome::RefundDue).await
    }

    /// Money whose reference matches no payment, newest first.
    pub async fn unmatched(&self) -> ApiResult<Vec<ReceivedPayment>> {
        self.received(NotificationOutcome::Unmatched).await
    }

    async fn received(&self, outcome: NotificationOutcome) -> ApiResult<Vec<ReceivedPayment>> {
        let client = self.db.get().await?;
        let rows = store::received(&client, outcome, FINANCE_ROWS_MAX).await?;
        Ok(rows.into_iter().map(ReceivedPayment::from_row).collect())
    }
}
