//! Refund payouts, as finance records them: the bank transfer that paid a refund back.
//! Recorded in Postgres first (with its audit entry, one transaction; the refund's row is
//! locked, so paying out more than is owed is refused), then moved in the ledger from
//! refunds payable to the clearing account the money came in through. Recording the same
//! bank reference again re-applies the ledger half, so a crash in between is mended by a
//! retry. `reconcile refunds pay` does the same from a file.

use allot_ledger::{Payout, PayoutOutcome};
use allot_store::payouts::{self as store, NewPayout, PayoutRow, Recorded};
use serde::{Deserialize, Serialize};

use super::Payments;
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult, ErrorCode};

/// Bank references are bounded like every other text a client sends.
pub const BANK_REFERENCE_BYTES_MAX: usize = 64;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PayoutRequest {
    /// The bank transfer's reference: one payout per reference, ever. 1 to 64 visible
    /// ASCII characters.
    #[schema(pattern = "^[!-~]{1,64}$")]
    pub bank_reference: String,
    /// The refund paid: the gateway and transaction id the money came in under (as in
    /// `GET /v1/finance/refunds`).
    #[schema(value_type = crate::payments::gateway::GatewayKind)]
    pub gateway: String,
    #[schema(pattern = "^[!-~]{1,64}$")]
    pub transaction_id: String,
    #[schema(minimum = 1, maximum = 9_223_372_036_854_775_807_u64)]
    pub amount_satang: u64,
    /// The bank transfer's date, `YYYY-MM-DD`.
    #[schema(format = Date)]
    pub paid_on: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PayoutView {
    pub bank_reference: String,
    pub gateway: String,
    pub transaction_id: String,
    pub amount_satang: u64,
    /// `YYYY-MM-DD`.
    #[schema(format = Date)]
    pub paid_on: String,
    pub offering_id: String,
    /// The refund's amount and how much of it is paid out now.
    pub refund_satang: u64,
    pub paid_out_satang: u64,
    /// `paid_out` once the whole refund went back, `due` before.
    pub refund_status: &'static str,
}

impl From<&PayoutRow> for PayoutView {
    fn from(r: &PayoutRow) -> PayoutView {
        PayoutView {
            bank_reference: r.bank_reference.clone(),
            gateway: r.gateway.clone(),
            transaction_id: r.transaction_id.clone(),
            amount_satang: r.amount_satang as u64,
            paid_on: r.paid_on.to_string(),
            offering_id: r.offering_id.clone(),
            refund_satang: r.refund_satang as u64,
            paid_out_satang: r.paid_out_satang as u64,
            refund_status: r.refund_status(),
        }
    }
}

impl Payments {
    /// Records a payout (role finance); `true` when this call recorded it.
    pub async fn pay_out(
        &self,
        who: &Principal,
        req: &PayoutRequest,
    ) -> ApiResult<(PayoutView, bool)> {
        let reference = req.bank_reference.as_str();
        if reference.is_empty()
            || reference.len() > BANK_REFERENCE_BYTES_MAX
            || !reference.bytes().all(|b| b.is_ascii_graphic())
        {
            let reason = format!("1 to {BANK_REFERENCE_BYTES_MAX} visible ASCII characters");
            return Err(ApiError::validation("bank_reference", reason));
        }
        if super::gateway::GatewayKind::parse(&req.gateway).is_none() {
            return Err(ApiError::validation("gateway", "sandbox or bank"));
        }
        let id = req.transaction_id.as_str();
        let max = super::gateway::TRANSACTION_ID_BYTES_MAX;
        if id.is_empty() || id.len() > max || !id.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ApiError::validation("transaction_id", "1 to 64 visible ASCII characters"));
        }
        let amount = i64::try_from(req.amount_satang)
            .ok()
            .filter(|a| *a > 0)
            .ok_or_else(|| ApiError::validation("amount_satang", "a positive number of satang"))?;
        let format = time::macros::format_description!("[year]-[month]-[day]");
        let paid_on = time::Date::parse(req.paid_on.trim(), format)
            .map_err(|_| ApiError::validation("paid_on", "a date, YYYY-MM-DD"))?;
        let actor = crate::audit::user(who.user_id);
        let new = NewPayout {
            bank_reference: reference,
            gateway: &req.gateway,
            transaction_id: &req.transaction_id,
            amount_satang: amount,
            paid_on,
            recorded_by: &actor,
        };
        let (row, created) = self.record_payout(&new).await?;
        self.move_payout(&row).await?;
        Ok((PayoutView::from(&row), created))
    }

    /// The Postgres half: the row, the refund's paid-out sum and the audit entry, in one
    /// transaction.
    async fn record_payout(&self, new: &NewPayout<'_>) -> ApiResult<(PayoutRow, bool)> {
        let mut client = self.db.get().await?;
        let tx = client.transaction().await?;
        let (row, created) = match store::record(&tx, new).await? {
            Recorded::New(row) => (row, true),
            Recorded::Replayed(row) => (row, false),
            Recorded::ReferenceReused => {
                return Err(ApiError::field(ErrorCode::PayoutReferenceReused, "bank_reference"))
            }
            Recorded::NoSuchRefund => {
                return Err(ApiError::field(ErrorCode::RefundNotFound, "transaction_id"))
            }
            Recorded::Overpaid { owed_satang } => {
                return Err(ApiError::field(ErrorCode::RefundOverpaid, "amount_satang")
                    .with_arg("owed", owed_satang))
            }
        };
        if created {
            store::audit_paid_out(&tx, new.recorded_by, &row).await?;
        }
        tx.commit().await?;
        Ok((row, created))
    }

    /// The ledger half: refunds payable back to the clearing account, once per reference.
    async fn move_payout(&self, row: &PayoutRow) -> ApiResult<()> {
        let refund = row.refund_id().ok_or_else(|| ApiError::internal("bad refund ledger id"))?;
        let payout =
            Payout { id: row.ledger_id(), refund, amount_satang: row.amount_satang as u128 };
        let outcome = tokio::time::timeout(self.ledger_timeout, self.ledger.record_payout(&payout))
            .await
            .map_err(|_| ApiError::ledger_timeout())??;
        match outcome {
            PayoutOutcome::Paid { .. } => Ok(()),
            PayoutOutcome::RefundNotFound => {
                Err(ApiError::internal("refund missing in the ledger"))
            }
        }
    }
}
