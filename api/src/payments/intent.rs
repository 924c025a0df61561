//! Payment intents: what we ask a person to pay for a held reservation (the exact deposit,
//! under a reference of its own), the PromptPay QR that asks it, and the notifications an
//! open intent schedules. One intent per reservation.

use std::time::SystemTime;

use allot_ledger::{HoldInfo, HoldState};
use allot_store::payments::{self as store, IntentRow, NewIntent, Opened};
use allot_store::status::{IntentStatus, ReservationStatus};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::gateway::GatewayKind;
use super::promptpay::{self, BillPayment};
use super::{format_payment_id, new_payment_id, parse_payment_id, reference_for, Payments};
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::notify::holds::{hold_events, HoldNotice};
use crate::notify::outbox;
use crate::reservations::{self, Reservation};

/// Inserting an intent retries this often if its random reference is already taken.
const REFERENCE_ATTEMPTS_MAX: usize = 3;

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
    pub status: &'static str,
    /// Why money is due back: `hold_expired`, `hold_cancelled`, `amount_mismatch`,
    /// `paid_twice`, `hold_not_found`, `wrong_gateway` (play money for a bank payment).
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
    pub status: IntentStatus,
    pub reason: Option<String>,
    pub expires_at: SystemTime,
    pub created_at: SystemTime,
}

impl StoredIntent {
    fn from_row(row: IntentRow) -> StoredIntent {
        StoredIntent {
            payment_id: row.payment_id,
            reservation_id: row.reservation_id,
            offering_id: row.offering_id,
            user_id: row.user_id,
            gateway: GatewayKind::parse(&row.gateway).expect("checked by the schema"),
            amount_satang: row.amount_satang as u64,
            reference: row.reference,
            status: row.status,
            reason: row.reason,
            expires_at: row.expires_at,
            created_at: row.created_at,
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
        let status = match self.status {
            // Pending past its deadline: the hold it would have paid for has expired.
            IntentStatus::Pending if SystemTime::now() >= self.expires_at => {
                ReservationStatus::Expired.as_str()
            }
            status => status.as_str(),
        };
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

impl Payments {
    pub async fn load_by_id(&self, payment_id: &str) -> ApiResult<Option<StoredIntent>> {
        let client = self.db.get().await?;
        Ok(store::intent_by_id(&client, payment_id).await?.map(StoredIntent::from_row))
    }

    async fn load_by_reservation(&self, reservation_id: &str) -> ApiResult<Option<StoredIntent>> {
        let client = self.db.get().await?;
        let row = store::intent_by_reservation(&client, reservation_id).await?;
        Ok(row.map(StoredIntent::from_row))
    }

    /// Opens (or returns) the payment intent of a held reservation, for its owner. `true`
    /// when this call created it. One intent per reservation: asking again returns the same
    /// one.
    pub async fn create(
        &self,
        who: &Principal,
        reservation_id: &str,
        body: &CreatePayment,
    ) -> ApiResult<(PaymentIntent, bool)> {
        let (info, reservation) = self.own_reservation(who, reservation_id).await?;
        self.create_for(who.user_id, info, reservation, body).await
    }

    /// Opens (or returns) the payment intent of a reservation a partner placed, on the
    /// partner's behalf: its customer pays the deposit at their bank. Another partner's
    /// reservation, or a person's, does not exist for it.
    pub async fn create_for_partner(
        &self,
        partner: u16,
        reservation_id: &str,
        body: &CreatePayment,
    ) -> ApiResult<(PaymentIntent, bool)> {
        let not_found = || ApiError::field(ErrorCode::ReservationNotFound, "reservation_id");
        let (info, reservation) = self.reservation(reservation_id).await?;
        if info.partner != Some(partner) {
            return Err(not_found());
        }
        let customer = i64::try_from(info.person).map_err(|_| not_found())?;
        self.create_for(customer, info, reservation, body).await
    }

    async fn create_for(
        &self,
        user_id: i64,
        info: HoldInfo,
        reservation: Reservation,
        body: &CreatePayment,
    ) -> ApiResult<(PaymentIntent, bool)> {
        if let Some(existing) = self.load_by_reservation(&reservation.reservation_id).await? {
            return Ok((existing.describe(self.biller_id())?, false));
        }
        match info.state {
            HoldState::Held => {}
            HoldState::Expired => return Err(ApiError::new(ErrorCode::HoldExpired)),
            HoldState::Confirmed | HoldState::Cancelled => {
                return Err(ApiError::new(ErrorCode::ReservationNotPayable))
            }
        }
        let gateway = self.gateway_for(body)?;
        if reservation.deposit_due_satang == 0 {
            return Err(ApiError::new(ErrorCode::ReservationNotPayable));
        }
        self.open(user_id, &reservation, gateway, (info.expires_at, info.lapses_at)).await
    }

    /// The reservation as the ledger has it now, if `who` owns it: staff may read a
    /// reservation but only its owner pays for it.
    async fn own_reservation(
        &self,
        who: &Principal,
        id: &str,
    ) -> ApiResult<(HoldInfo, Reservation)> {
        let (info, reservation) = self.reservation(id).await?;
        if info.person != who.person() {
            return Err(ApiError::field(ErrorCode::ReservationNotFound, "reservation_id"));
        }
        Ok((info, reservation))
    }

    /// The reservation as the ledger has it now, whoever holds it.
    async fn reservation(&self, id: &str) -> ApiResult<(HoldInfo, Reservation)> {
        let not_found = || ApiError::field(ErrorCode::ReservationNotFound, "reservation_id");
        let hold = reservations::parse_id(id).ok_or_else(not_found)?;
        let info = tokio::time::timeout(self.ledger_timeout, self.ledger.hold_info(hold))
            .await
            .map_err(|_| ApiError::ledger_timeout())??
            .ok_or_else(not_found)?;
        let offering = self.catalog.by_number(info.offering).ok_or_else(not_found)?;
        Ok((info, reservations::describe(&offering, &info)))
    }

    fn gateway_for(&self, body: &CreatePayment) -> ApiResult<GatewayKind> {
        Ok(match body.gateway {
            Some(GatewayKind::Sandbox) if !self.dev_mode => {
                return Err(ApiError::validation(
                    "gateway",
                    "the sandbox exists only in development",
                ))
            }
            Some(g) => g,
            None if self.dev_mode => GatewayKind::Sandbox,
            None => GatewayKind::Bank,
        })
    }

    /// Inserts the intent with a fresh random id, and its notifications in the same
    /// transaction; draws again if the id or reference is taken.
    async fn open(
        &self,
        user_id: i64,
        reservation: &Reservation,
        gateway: GatewayKind,
        (expires_at, lapses_at): (SystemTime, SystemTime),
    ) -> ApiResult<(PaymentIntent, bool)> {
        let amount = reservation.deposit_due_satang;
        for _ in 0..REFERENCE_ATTEMPTS_MAX {
            let id = new_payment_id();
            let payment_id = format_payment_id(id);
            let reference = reference_for(id);
            // One connection per attempt, released before anything else is read: a handler
            // that held one while waiting for a second could deadlock a busy pool.
            let mut client = self.db.get().await?;
            let tx = client.transaction().await?;
            let new = NewIntent {
                payment_id: &payment_id,
                reservation_id: &reservation.reservation_id,
                offering_id: &reservation.offering_id,
                user_id,
                gateway: gateway.as_str(),
                amount_satang: amount as i64,
                reference: &reference,
                expires_at,
            };
            match store::open_intent(&tx, &new).await? {
                Opened::Opened(row) => {
                    let args = serde_json::json!({
                        "reservation_id": reservation.reservation_id,
                        "payment_id": payment_id,
                        "offering_id": reservation.offering_id,
                        "amount_satang": amount,
                        "reference": reference,
                        "expires_at": OffsetDateTime::from(expires_at).unix_timestamp(),
                    });
                    let notice = HoldNotice {
                        reservation_id: &reservation.reservation_id,
                        user_id,
                        offering_id: &reservation.offering_id,
                        deposit_satang: amount,
                        deadline: expires_at,
                        lapses_at,
                        extra: Some(&args),
                    };
                    let now = SystemTime::now();
                    let events = hold_events(&notice, now, reservations::EXPIRY_GRACE);
                    outbox::enqueue(&tx, &events).await?;
                    tx.commit().await?;
                    metrics::counter!("allot_payment_intents_total").increment(1);
                    return Ok((StoredIntent::from_row(row).describe(self.biller_id())?, true));
                }
                Opened::ReservationHasOne => {
                    // Someone (a concurrent retry) opened it first: theirs is the one.
                    drop(tx);
                    drop(client);
                    let existing =
                        self.load_by_reservation(&reservation.reservation_id).await?.ok_or_else(
                            || ApiError::internal("payment intent conflict without a row"),
                        )?;
                    return Ok((existing.describe(self.biller_id())?, false));
                }
                Opened::IdTaken => {
                    tracing::warn!("payment reference clash; drawing another id");
                }
            }
        }
        Err(ApiError::internal("no free payment reference after several attempts"))
    }

    /// A payment intent: its owner's, or (audited) anyone's for the roles `crate::staff`
    /// lets read payments.
    pub async fn read(&self, who: &Principal, payment_id: &str) -> ApiResult<PaymentIntent> {
        let not_found = || ApiError::field(ErrorCode::PaymentNotFound, "payment_id");
        parse_payment_id(payment_id).ok_or_else(not_found)?;
        let stored = self.load_by_id(payment_id).await?.ok_or_else(not_found)?;
        let record = crate::staff::Record::Payment;
        crate::staff::check_read(&self.db, who, stored.user_id, record, payment_id).await?;
        stored.describe(self.biller_id())
    }

    /// The QR image of a payment intent.
    pub async fn qr_svg(&self, payment_id: &str) -> ApiResult<String> {
        let not_found = || ApiError::field(ErrorCode::PaymentNotFound, "payment_id");
        parse_payment_id(payment_id).ok_or_else(not_found)?;
        let stored = self.load_by_id(payment_id).await?.ok_or_else(not_found)?;
        let payload = stored.qr(self.biller_id())?;
        promptpay::svg(&payload).map_err(ApiError::internal)
    }
}
