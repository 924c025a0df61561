//! Synthetic money for benchmarks of the ledger's readers (the signed export) on a
//! throwaway cluster: many THB accounts and transfers written as fast as the cluster takes
//! them. Their ids have kind 0 in the top byte, which the account model never writes, so
//! they cannot be mistaken for an offering's; their codes are the clearing account's and
//! the deposit's, so they look like real money to a reader.

use tigerbeetle_unofficial as tb;

use crate::error::{LedgerError, Result};
use crate::ids::{self, AccountKind, TransferKind};
use crate::page::PAGE_EVENTS_MAX;
use crate::results::{check_accounts, transfer_results};
use crate::Ledger;

/// What to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyntheticMoney {
    /// Accounts, ids `1..=accounts`; at least two, since a transfer needs two.
    pub accounts: u128,
    /// Transfers, ids `1..=transfers`, each between two different accounts.
    pub transfers: u128,
}

impl Ledger {
    /// Writes `load` a full request at a time, one request after the other. Meant for a
    /// fresh cluster: any refusal, even `exists`, of a transfer is an error.
    pub async fn load_synthetic_money(&self, load: SyntheticMoney) -> Result<()> {
        assert!(load.accounts >= 2, "a transfer needs two accounts");
        let batch = u128::from(PAGE_EVENTS_MAX);
        let code = AccountKind::Clearing.code();
        let mut first = 1;
        while first <= load.accounts {
            let last = load.accounts.min(first + batch - 1);
            let accounts: Vec<tb::Account> =
                (first..=last).map(|id| tb::Account::new(id, ids::LEDGER_THB, code)).collect();
            check_accounts(self.reply(self.client.create_accounts(accounts)).await?)?;
            first = last + 1;
        }
        let mut first = 1;
        while first <= load.transfers {
            let last = load.transfers.min(first + batch - 1);
            let transfers: Vec<tb::Transfer> =
                (first..=last).map(|id| synthetic_transfer(id, load.accounts)).collect();
            let len = transfers.len();
            let results =
                transfer_results(len, self.reply(self.client.create_transfers(transfers)).await?)?;
            if let Some((i, Some(kind))) = results.iter().enumerate().find(|(_, r)| r.is_some()) {
                let id = first + i as u128;
                return Err(LedgerError::Unexpected(format!("synthetic transfer {id}: {kind:?}")));
            }
            first = last + 1;
        }
        Ok(())
    }
}

/// Transfer `id`: amounts and accounts vary with the id, so the export's numbers vary too.
fn synthetic_transfer(id: u128, accounts: u128) -> tb::Transfer {
    let debit = id % accounts + 1;
    let credit = (id * 7 + 3) % accounts + 1;
    let credit = if credit == debit { debit % accounts + 1 } else { credit };
    tb::Transfer::new(id)
        .with_debit_account_id(debit)
        .with_credit_account_id(credit)
        .with_amount(100 + id % 100_000)
        .with_ledger(ids::LEDGER_THB)
        .with_code(TransferKind::Deposit.code())
        .with_user_data_128(id << 8)
        .with_user_data_64(id as u64)
}
