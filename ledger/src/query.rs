//! Balances read straight from TigerBeetle: per zone (supply, held, confirmed, remaining),
//! per person, the offering's money and the history of its deposits; and a ping.
//!
//! TigerBeetle releases expired holds at or shortly after their deadline, so `held` may
//! briefly include holds that have just lapsed; it never includes anything sold.

use std::collections::HashMap;
use std::time::SystemTime;

use tb::account::{Filter, FilterFlags};
use tigerbeetle_unofficial as tb;

use crate::error::{LedgerError, Result};
use crate::ids::AccountKind;
use crate::offering::{OfferingSpec, CHUNK_EVENTS};
use crate::page::PAGE_EVENTS_MAX;
use crate::Ledger;

/// The id a ping looks up. Its top byte (kind 0) is no account kind of the model, so the
/// lookup finds nothing and costs the cluster nothing but the round trip.
const PING_ACCOUNT: u128 = 1;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ZoneBalance {
    pub zone: u16,
    pub supply: u128,
    pub held: u128,
    pub confirmed: u128,
    pub remaining: u128,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PersonBalance {
    pub held: u128,
    pub confirmed: u128,
    /// What the person may still hold under the per-person maximum.
    pub allowance: u128,
}

/// A partner's allocation in an offering and what its holds use of it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PartnerBalance {
    pub allocation: u128,
    pub held: u128,
    pub confirmed: u128,
    /// What the partner may still hold.
    pub remaining: u128,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MoneyBalance {
    pub deposits_satang: u128,
    /// Refunds still owed: booked to refunds payable and not yet paid out.
    pub refunds_payable_satang: u128,
}

/// What one person holds (pending) and owns (posted) in an offering.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Holding {
    pub person: u64,
    pub held: u128,
    pub confirmed: u128,
}

/// The deposits account's balance at one change of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DepositsSample {
    pub timestamp: SystemTime,
    /// Everything collected up to and including this change.
    pub deposits_satang: u128,
}

/// How an offering's deposits grew over a window, for the officials' funds chart.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DepositsHistory {
    /// The balance at the window's start: after the last change at or before it.
    pub opening_satang: u128,
    /// Every change from the start on, oldest first; when there were more than
    /// [`PAGE_EVENTS_MAX`], only the newest that many.
    pub samples: Vec<DepositsSample>,
}

impl Ledger {
    /// One round trip to the cluster: `Ok` means it answered.
    pub async fn ping(&self) -> Result<()> {
        self.reply(self.client.lookup_accounts(vec![PING_ACCOUNT])).await??;
        Ok(())
    }

    pub async fn zone_balances(&self, spec: &OfferingSpec) -> Result<Vec<ZoneBalance>> {
        let ids: Vec<u128> = spec.zones.iter().map(|z| spec.stock_account(z.number)).collect();
        let accounts = self.reply(self.client.lookup_accounts(ids.clone())).await??;
        Ok(spec
            .zones
            .iter()
            .zip(ids)
            .map(|(zone, id)| {
                let Some(a) = accounts.iter().find(|a| a.id() == id) else {
                    return ZoneBalance { zone: zone.number, ..Default::default() };
                };
                let supply = a.credits_posted();
                let (held, confirmed) = (a.debits_pending(), a.debits_posted());
                // The stock account's own flag guarantees this never underflows.
                let remaining = supply - held - confirmed;
                ZoneBalance { zone: zone.number, supply, held, confirmed, remaining }
            })
            .collect())
    }

    pub async fn person_balance(&self, spec: &OfferingSpec, person: u64) -> Result<PersonBalance> {
        let holding_id = spec.holding_account(person);
        let quota_id = spec.quota_account(person);
        let accounts =
            self.reply(self.client.lookup_accounts(vec![holding_id, quota_id])).await??;
        let mut balance = PersonBalance { allowance: spec.max_per_person, ..Default::default() };
        for a in &accounts {
            if a.id() == holding_id {
                balance.held = a.credits_pending();
                balance.confirmed = a.credits_posted();
            } else if a.id() == quota_id {
                balance.allowance = a.credits_posted() - a.debits_posted() - a.debits_pending();
            }
        }
        Ok(balance)
    }

    /// A partner's allocation and its use; `None` when it has none in this offering.
    pub async fn partner_balance(
        &self,
        spec: &OfferingSpec,
        partner: u16,
    ) -> Result<Option<PartnerBalance>> {
        let id = spec.partner_account(partner);
        let accounts = self.reply(self.client.lookup_accounts(vec![id])).await??;
        Ok(accounts.first().map(|a| PartnerBalance {
            allocation: a.credits_posted(),
            held: a.debits_pending(),
            confirmed: a.debits_posted(),
            remaining: a.credits_posted().saturating_sub(a.debits_posted() + a.debits_pending()),
        }))
    }

    pub async fn money_balance(&self, spec: &OfferingSpec) -> Result<MoneyBalance> {
        let deposits = spec.account(AccountKind::Deposits);
        let refunds = spec.account(AccountKind::RefundsPayable);
        let accounts = self.reply(self.client.lookup_accounts(vec![deposits, refunds])).await??;
        let account = |id: u128| accounts.iter().find(|a| a.id() == id);
        let credit = |id: u128| account(id).map_or(0, |a| a.credits_posted());
        let paid_out = account(refunds).map_or(0, |a| a.debits_posted());
        Ok(MoneyBalance {
            deposits_satang: credit(deposits),
            refunds_payable_satang: credit(refunds).saturating_sub(paid_out),
        })
    }

    /// Refunds an offering has paid back to their payers (the refunds payable account's
    /// debits), in satang.
    pub async fn refunds_paid_out(&self, spec: &OfferingSpec) -> Result<u128> {
        let refunds = spec.account(AccountKind::RefundsPayable);
        let accounts = self.reply(self.client.lookup_accounts(vec![refunds])).await??;
        Ok(accounts.first().map_or(0, |a| a.debits_posted()))
    }

    /// What each of many people holds and owns, in the order asked (someone without
    /// accounts holds nothing). Lookups go out in modest chunks at once, which the client
    /// packs into as few messages as the cluster accepts.
    pub async fn holdings(&self, spec: &OfferingSpec, people: &[u64]) -> Result<Vec<Holding>> {
        let lookups = people.chunks(CHUNK_EVENTS).map(|chunk| async move {
            let ids: Vec<u128> = chunk.iter().map(|p| spec.holding_account(*p)).collect();
            let found = self.reply(self.client.lookup_accounts(ids.clone())).await??;
            let by_id: HashMap<u128, &tb::Account> = found.iter().map(|a| (a.id(), a)).collect();
            let holdings = chunk.iter().zip(ids).map(|(person, id)| {
                let a = by_id.get(&id);
                Holding {
                    person: *person,
                    held: a.map_or(0, |a| a.credits_pending()),
                    confirmed: a.map_or(0, |a| a.credits_posted()),
                }
            });
            Ok::<_, LedgerError>(holdings.collect::<Vec<_>>())
        });
        Ok(futures::future::try_join_all(lookups).await?.concat())
    }

    /// The deposits account's balance history from `since` (TigerBeetle keeps it because
    /// the account has the `history` flag).
    pub async fn deposits_history(
        &self,
        spec: &OfferingSpec,
        since: SystemTime,
    ) -> Result<DepositsHistory> {
        let account = spec.account(AccountKind::Deposits);
        let newest_first = FilterFlags::CREDITS | FilterFlags::REVERSED;
        let before = Filter::new(account, 1).with_timestamp_max(since).with_flags(newest_first);
        let before = self.reply(self.client.get_account_balances(Box::new(before))).await??;
        let window = Filter::new(account, PAGE_EVENTS_MAX)
            .with_timestamp_min(since)
            .with_flags(newest_first);
        let mut samples = self.reply(self.client.get_account_balances(Box::new(window))).await??;
        samples.reverse();
        let sample = |b: &tb::account::Balance| DepositsSample {
            timestamp: b.timestamp(),
            deposits_satang: b.credits_posted(),
        };
        Ok(DepositsHistory {
            opening_satang: before.first().map_or(0, |b| b.credits_posted()),
            samples: samples.iter().map(sample).collect(),
        })
    }
}
