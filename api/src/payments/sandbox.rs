//! The sandbox gateway's "bank": settles a payment intent with play money by signing a
//! webhook with the sandbox secret and delivering it through the very path a bank's takes.
//! Dev mode only, and only for the intent's owner: play money must not confirm someone
//! else's reservation, nor a payment that was opened with the bank.

use serde::Deserialize;
use time::OffsetDateTime;

use super::gateway::{Delivery, GatewayKind, Notification};
use super::webhook::Receipt;
use super::Payments;
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult, ErrorCode};

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettleRequest {
    /// Defaults to the intent's amount; anything else plays a payer who got it wrong.
    #[schema(minimum = 1, maximum = 9_223_372_036_854_775_807_u64)]
    pub amount_satang: Option<u64>,
    /// Defaults to a fresh id; reuse one to play a bank that resends.
    #[schema(pattern = "^[!-~]{1,64}$")]
    pub transaction_id: Option<String>,
    /// Defaults to the intent's reference.
    #[schema(pattern = "^\\s*[!-~]{1,64}\\s*$")]
    pub reference: Option<String>,
    /// When the payer paid (RFC 3339); defaults to now. Plays a bank whose report of an
    /// earlier payment arrives late.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub paid_at: Option<OffsetDateTime>,
}

/// A settlement: the transaction the sandbox made up, and what the webhook made of it.
#[derive(Debug)]
pub struct Settlement {
    pub transaction_id: String,
    pub receipt: Receipt,
}

impl Payments {
    /// Pays `who`'s sandbox intent. Anyone else's intent is `payment_not_found`, as if it
    /// did not exist; a bank intent is a `validation_error` on `payment_id`.
    pub async fn settle_in_sandbox(
        &self,
        who: &Principal,
        payment_id: &str,
        req: SettleRequest,
    ) -> ApiResult<Settlement> {
        let gateway = self
            .gateways
            .get(GatewayKind::Sandbox)
            .filter(|_| self.dev_mode)
            .ok_or_else(|| ApiError::new(ErrorCode::NotFound))?;
        let not_found = || ApiError::field(ErrorCode::PaymentNotFound, "payment_id");
        super::parse_payment_id(payment_id).ok_or_else(not_found)?;
        let intent = self.load_by_id(payment_id).await?.ok_or_else(not_found)?;
        if intent.user_id != who.user_id {
            return Err(not_found());
        }
        if intent.gateway != GatewayKind::Sandbox {
            return Err(ApiError::validation(
                "payment_id",
                "a bank payment; the sandbox pays only its own",
            ));
        }
        let transaction_id =
            req.transaction_id.unwrap_or_else(|| format!("SBX{}", uuid::Uuid::new_v4().simple()));
        let notification = Notification {
            transaction_id: transaction_id.clone(),
            reference: req.reference.unwrap_or(intent.reference),
            amount_satang: req.amount_satang.unwrap_or(intent.amount_satang),
            paid_at: req.paid_at.unwrap_or_else(OffsetDateTime::now_utc),
            currency: Some(super::gateway::CURRENCY.into()),
            payer_account: None,
        };
        let body = serde_json::to_vec(&notification).map_err(ApiError::internal)?;
        let timestamp = OffsetDateTime::now_utc().unix_timestamp().to_string();
        let signature = gateway.sign(&timestamp, &body);
        let delivery =
            Delivery { timestamp: Some(&timestamp), signature: Some(&signature), body: &body };
        let receipt = self.receive(GatewayKind::Sandbox, delivery).await?;
        Ok(Settlement { transaction_id, receipt })
    }
}
