//! TigerBeetle's accounts and transfers field for field, for the signed export that
//! regulators verify: nothing is interpreted here, so the export shows the ledger as it
//! is, including anything our model would not have written.

use std::time::SystemTime;

use tigerbeetle_unofficial as tb;

use crate::error::Result;
use crate::page;
use crate::Ledger;

/// An account with its current balances, as TigerBeetle stores it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExportAccount {
    pub id: u128,
    pub ledger: u32,
    pub code: u16,
    /// TigerBeetle's account flag bits.
    pub flags: u16,
    pub user_data_128: u128,
    pub user_data_64: u64,
    pub user_data_32: u32,
    /// When the account was created, by the cluster's clock.
    pub timestamp: SystemTime,
    pub debits_pending: u128,
    pub debits_posted: u128,
    pub credits_pending: u128,
    pub credits_posted: u128,
}

/// A transfer as TigerBeetle stores it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExportTransfer {
    pub id: u128,
    pub debit_account_id: u128,
    pub credit_account_id: u128,
    pub amount: u128,
    pub pending_id: u128,
    pub user_data_128: u128,
    pub user_data_64: u64,
    pub user_data_32: u32,
    /// Seconds, for a pending transfer.
    pub timeout: u32,
    pub ledger: u32,
    pub code: u16,
    /// TigerBeetle's transfer flag bits.
    pub flags: u16,
    pub timestamp: SystemTime,
}

// Plain functions rather than `From` impls, so that no public item names TigerBeetle's types.
fn account(a: &tb::Account) -> ExportAccount {
    ExportAccount {
        id: a.id(),
        ledger: a.ledger(),
        code: a.code(),
        flags: a.flags().bits(),
        user_data_128: a.user_data_128(),
        user_data_64: a.user_data_64(),
        user_data_32: a.user_data_32(),
        timestamp: a.timestamp(),
        debits_pending: a.debits_pending(),
        debits_posted: a.debits_posted(),
        credits_pending: a.credits_pending(),
        credits_posted: a.credits_posted(),
    }
}

fn transfer(t: &tb::Transfer) -> ExportTransfer {
    ExportTransfer {
        id: t.id(),
        debit_account_id: t.debit_account_id(),
        credit_account_id: t.credit_account_id(),
        amount: t.amount(),
        pending_id: t.pending_id(),
        user_data_128: t.user_data_128(),
        user_data_64: t.user_data_64(),
        user_data_32: t.user_data_32(),
        timeout: t.timeout(),
        ledger: t.ledger(),
        code: t.code(),
        flags: t.flags().bits(),
        timestamp: t.timestamp(),
    }
}

impl Ledger {
    /// The next page of `ledger`'s accounts created in `[from, to)`, oldest first: at most
    /// [`crate::PAGE_EVENTS_MAX`], empty when none are left.
    pub async fn export_accounts(
        &self,
        ledger: u32,
        from: SystemTime,
        to: SystemTime,
    ) -> Result<Vec<ExportAccount>> {
        let Some(filter) = page::window(ledger, from, to) else { return Ok(Vec::new()) };
        let page = self.reply(self.client.query_accounts(Box::new(filter))).await??;
        Ok(page.iter().map(account).collect())
    }

    /// The next page of `ledger`'s transfers stamped in `[from, to)`, as
    /// [`Ledger::export_accounts`].
    pub async fn export_transfers(
        &self,
        ledger: u32,
        from: SystemTime,
        to: SystemTime,
    ) -> Result<Vec<ExportTransfer>> {
        let Some(filter) = page::window(ledger, from, to) else { return Ok(Vec::new()) };
        let page = self.reply(self.client.query_transfers(Box::new(filter))).await??;
        Ok(page.iter().map(transfer).collect())
    }
}
