//! Refund payouts: finance pays a refund back through the bank, and the ledger moves the
//! money out of refunds payable into the clearing account it came in through, once per
//! bank transfer.

use tb::error::CreateTransferErrorKind as K;
use tb::Transfer;
use tigerbeetle_unofficial as tb;

use crate::error::{LedgerError, Result};
use crate::ids::{self, TransferKind};
use crate::results::transfer_results;
use crate::Ledger;

/// A refund paid back to its payer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Payout {
    /// 120-bit id the caller derives from the bank transfer's reference, so recording the
    /// same transfer again is a replay.
    pub id: u128,
    /// The refunded payment's id ([`crate::Payment::id`]): its refund says which refunds
    /// payable account pays and which clearing account receives.
    pub refund: u128,
    pub amount_satang: u128,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PayoutOutcome {
    /// The money moved, now or by an earlier call with this payout's id.
    Paid { replayed: bool },
    /// The ledger booked no refund for that payment.
    RefundNotFound,
}

impl Ledger {
    /// Moves a payout from the refund's refunds payable account back to the clearing
    /// account of the gateway the money came in through. How much is still owed is the
    /// caller's to check first (finance's records say what was paid out before).
    pub async fn record_payout(&self, payout: &Payout) -> Result<PayoutOutcome> {
        let refund_id = ids::transfer_id(TransferKind::Refund, payout.refund);
        let found = self.reply(self.client.lookup_transfers(vec![refund_id])).await??;
        let Some(refund) = found.first() else {
            return Ok(PayoutOutcome::RefundNotFound);
        };
        let transfer = Transfer::new(ids::transfer_id(TransferKind::Payout, payout.id))
            .with_debit_account_id(refund.credit_account_id())
            .with_credit_account_id(refund.debit_account_id())
            .with_amount(payout.amount_satang)
            .with_ledger(ids::LEDGER_THB)
            .with_code(TransferKind::Payout.code())
            .with_user_data_128(payout.refund)
            .with_user_data_32(refund.user_data_32());
        let results =
            transfer_results(1, self.reply(self.client.create_transfers(vec![transfer])).await?)?;
        match results[0] {
            None => Ok(PayoutOutcome::Paid { replayed: false }),
            Some(K::Exists) => Ok(PayoutOutcome::Paid { replayed: true }),
            Some(k) => Err(LedgerError::Unexpected(format!("payout: {k:?}"))),
        }
    }
}
