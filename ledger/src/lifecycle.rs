//! What happens to a hold after it is placed: confirm (post + move the money, one linked
//! chain), cancel (void), and reading its state. Expiry is TigerBeetle's job; we only
//! derive it from the pending transfer's timestamp + timeout (decoded in `events.rs`).

use std::time::SystemTime;

use tb::error::CreateTransferErrorKind as K;
use tb::transfer::Flags;
use tb::Transfer;
use tigerbeetle_unofficial as tb;

use crate::error::{LedgerError, Result};
use crate::events::decode_placed;
use crate::hold::HoldId;
use crate::ids::{self, AccountKind, TransferKind, PARTIAL_ATTEMPTS_MAX};
use crate::offering::{clearing_account, OfferingSpec};
use crate::results::{chain_cause, is_exists, transfer_results};
use crate::Ledger;

/// Posting with this amount posts whatever the pending transfer holds.
const AMOUNT_MAX: u128 = u128::MAX;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HoldState {
    Held,
    Confirmed,
    Cancelled,
    Expired,
}

impl HoldState {
    pub fn as_str(self) -> &'static str {
        match self {
            HoldState::Held => "held",
            HoldState::Confirmed => "confirmed",
            HoldState::Cancelled => "cancelled",
            HoldState::Expired => "expired",
        }
    }
}

/// A hold as the ledger records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HoldInfo {
    pub id: HoldId,
    pub offering: u32,
    pub zone: u16,
    pub person: u64,
    pub quantity: u128,
    pub created_at: SystemTime,
    /// The deadline the holder was told; past it an unpaid hold is `Expired`.
    pub expires_at: SystemTime,
    /// When TigerBeetle releases the units: the deadline plus the settlement grace, during
    /// which a payment made by the deadline can still confirm the hold.
    pub lapses_at: SystemTime,
    pub state: HoldState,
    /// Which attempt of the request succeeded (0 = full, 1.. = partial fills).
    pub attempt: u8,
    pub fingerprint: u64,
    /// The partner that placed it (its allocation is the chain's third link).
    pub partner: Option<u16>,
}

/// Money that arrived for a hold, as a gateway reported it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Payment {
    /// 120-bit id of the payment, chosen by the payments layer.
    pub id: u128,
    pub gateway: u64,
    pub amount_satang: u128,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfirmOutcome {
    /// Both holds posted and the money moved, now or by an earlier call with this payment.
    Confirmed {
        replayed: bool,
    },
    /// Another payment confirmed this hold before; this payment's money did not move.
    ConfirmedByOtherPayment,
    /// Too late: the hold lapsed. No money moved.
    HoldExpired,
    /// The hold was cancelled. No money moved.
    HoldCancelled,
    HoldNotFound,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CancelOutcome {
    Cancelled { replayed: bool },
    AlreadyConfirmed,
    AlreadyExpired,
    HoldNotFound,
}

impl Ledger {
    /// Reads a hold's state in one lookup: its pending transfer (whichever attempt
    /// succeeded) and the post/void that may follow it.
    pub async fn hold_info(&self, id: HoldId) -> Result<Option<HoldInfo>> {
        let base = id.get();
        let mut wanted: Vec<u128> = (0..=PARTIAL_ATTEMPTS_MAX)
            .map(|attempt| ids::transfer_id(TransferKind::HoldStock { attempt }, base))
            .collect();
        wanted.push(ids::transfer_id(TransferKind::PostStock, base));
        wanted.push(ids::transfer_id(TransferKind::VoidStock, base));
        let found = self.reply(self.client.lookup_transfers(wanted.clone())).await??;
        let find = |id: u128| found.iter().find(|t| t.id() == id);
        let Some(pending) =
            wanted[..=PARTIAL_ATTEMPTS_MAX as usize].iter().find_map(|id| find(*id))
        else {
            return Ok(None);
        };
        let hold = decode_placed(pending)?;
        let state = if find(wanted[wanted.len() - 2]).is_some() {
            HoldState::Confirmed
        } else if find(wanted[wanted.len() - 1]).is_some() {
            HoldState::Cancelled
        } else if SystemTime::now() >= hold.expires_at {
            HoldState::Expired
        } else {
            HoldState::Held
        };
        Ok(Some(HoldInfo {
            id,
            offering: hold.offering,
            zone: hold.zone,
            person: hold.person,
            quantity: hold.quantity,
            created_at: hold.created_at,
            expires_at: hold.expires_at,
            lapses_at: hold.lapses_at,
            state,
            attempt: hold.attempt,
            fingerprint: hold.fingerprint,
            partner: hold.partner,
        }))
    }

    /// Confirms a hold with a payment: one linked chain of [deposit, post stock, post
    /// quota] (and post partner quota, for a partner's hold). The deposit goes first and its id is derived from the hold, so a hold can
    /// move money at most once, and a replay is recognised by the first event alone.
    pub async fn confirm(
        &self,
        spec: &OfferingSpec,
        id: HoldId,
        payment: &Payment,
    ) -> Result<ConfirmOutcome> {
        let Some(info) = self.hold_info(id).await? else {
            return Ok(ConfirmOutcome::HoldNotFound);
        };
        let base = id.get();
        let deposit = Transfer::new(ids::transfer_id(TransferKind::Deposit, base))
            .with_debit_account_id(clearing_account(payment.gateway))
            .with_credit_account_id(spec.account(AccountKind::Deposits))
            .with_amount(payment.amount_satang)
            .with_ledger(ids::LEDGER_THB)
            .with_code(TransferKind::Deposit.code())
            .with_user_data_128(payment.id)
            .with_user_data_64(base as u64)
            .with_user_data_32(spec.number)
            .with_flags(Flags::LINKED);
        let post_stock = self
            .resolve(
                TransferKind::PostStock,
                TransferKind::HoldStock { attempt: info.attempt },
                base,
            )
            .with_flags(Flags::POST_PENDING_TRANSFER | Flags::LINKED);
        let post_quota = self.resolve(
            TransferKind::PostQuota,
            TransferKind::HoldQuota { attempt: info.attempt },
            base,
        );
        let mut chain = vec![deposit, post_stock];
        match info.partner {
            None => chain.push(post_quota.with_flags(Flags::POST_PENDING_TRANSFER)),
            Some(_) => {
                chain.push(post_quota.with_flags(Flags::POST_PENDING_TRANSFER | Flags::LINKED));
                let partner = TransferKind::HoldPartner { attempt: info.attempt };
                chain.push(
                    self.resolve(TransferKind::PostPartner, partner, base)
                        .with_flags(Flags::POST_PENDING_TRANSFER),
                );
            }
        }
        let len = chain.len();
        let results =
            transfer_results(len, self.reply(self.client.create_transfers(chain)).await?)?;
        Ok(match chain_cause(&results) {
            None => ConfirmOutcome::Confirmed { replayed: false },
            Some((0, K::Exists)) => ConfirmOutcome::Confirmed { replayed: true },
            Some((0, k)) if is_exists(k) => ConfirmOutcome::ConfirmedByOtherPayment,
            Some((1, K::PendingTransferExpired)) => ConfirmOutcome::HoldExpired,
            Some((1, K::PendingTransferAlreadyVoided)) => ConfirmOutcome::HoldCancelled,
            Some((i, k)) => {
                return Err(LedgerError::Unexpected(format!("confirm event {i}: {k:?}")))
            }
        })
    }

    /// Cancels a hold: voids both pending transfers in one linked chain. Past its deadline
    /// a hold is no longer cancellable, though the ledger still holds it through the
    /// settlement grace: a payment made in time may yet confirm it.
    pub async fn cancel(&self, id: HoldId) -> Result<CancelOutcome> {
        let Some(info) = self.hold_info(id).await? else {
            return Ok(CancelOutcome::HoldNotFound);
        };
        if info.state == HoldState::Expired {
            return Ok(CancelOutcome::AlreadyExpired);
        }
        let base = id.get();
        let void_stock = self
            .resolve(
                TransferKind::VoidStock,
                TransferKind::HoldStock { attempt: info.attempt },
                base,
            )
            .with_flags(Flags::VOID_PENDING_TRANSFER | Flags::LINKED);
        let void_quota = self.resolve(
            TransferKind::VoidQuota,
            TransferKind::HoldQuota { attempt: info.attempt },
            base,
        );
        let mut chain = vec![void_stock];
        match info.partner {
            None => chain.push(void_quota.with_flags(Flags::VOID_PENDING_TRANSFER)),
            Some(_) => {
                chain.push(void_quota.with_flags(Flags::VOID_PENDING_TRANSFER | Flags::LINKED));
                let partner = TransferKind::HoldPartner { attempt: info.attempt };
                chain.push(
                    self.resolve(TransferKind::VoidPartner, partner, base)
                        .with_flags(Flags::VOID_PENDING_TRANSFER),
                );
            }
        }
        let len = chain.len();
        let results =
            transfer_results(len, self.reply(self.client.create_transfers(chain)).await?)?;
        Ok(match chain_cause(&results) {
            None => CancelOutcome::Cancelled { replayed: false },
            Some((0, k)) if is_exists(k) => CancelOutcome::Cancelled { replayed: true },
            Some((0, K::PendingTransferAlreadyPosted)) => CancelOutcome::AlreadyConfirmed,
            Some((0, K::PendingTransferExpired)) => CancelOutcome::AlreadyExpired,
            Some((i, k)) => {
                return Err(LedgerError::Unexpected(format!("cancel event {i}: {k:?}")))
            }
        })
    }

    /// Books money that cannot confirm anything (late, duplicate or wrong payment) as
    /// refunds payable. One refund per payment id, ever.
    pub async fn record_refund(&self, spec: &OfferingSpec, payment: &Payment) -> Result<bool> {
        let refund = Transfer::new(ids::transfer_id(TransferKind::Refund, payment.id))
            .with_debit_account_id(clearing_account(payment.gateway))
            .with_credit_account_id(spec.account(AccountKind::RefundsPayable))
            .with_amount(payment.amount_satang)
            .with_ledger(ids::LEDGER_THB)
            .with_code(TransferKind::Refund.code())
            .with_user_data_128(payment.id)
            .with_user_data_32(spec.number);
        let results =
            transfer_results(1, self.reply(self.client.create_transfers(vec![refund])).await?)?;
        match results[0] {
            None => Ok(true),
            Some(K::Exists) => Ok(false),
            Some(k) => Err(LedgerError::Unexpected(format!("refund: {k:?}"))),
        }
    }

    /// A post or void of a pending transfer: accounts, ledger and code are inherited.
    /// Posts use `AMOUNT_MAX` (the whole pending amount), voids use zero (likewise).
    fn resolve(&self, kind: TransferKind, pending: TransferKind, base: u128) -> Transfer {
        let amount = match kind {
            TransferKind::VoidStock | TransferKind::VoidQuota | TransferKind::VoidPartner => 0,
            _ => AMOUNT_MAX,
        };
        Transfer::new(ids::transfer_id(kind, base))
            .with_pending_id(ids::transfer_id(pending, base))
            .with_amount(amount)
    }
}
