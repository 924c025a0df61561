//! Balances read straight from TigerBeetle: per zone (supply, held, confirmed, remaining),
//! per person, and the offering's money.
//!
//! TigerBeetle releases expired holds at or shortly after their deadline, so `held` may
//! briefly include holds that have just lapsed; it never includes anything sold.

use crate::error::Result;
use crate::ids::AccountKind;
use crate::offering::OfferingSpec;
use crate::Ledger;

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

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MoneyBalance {
    pub deposits_satang: u128,
    pub refunds_payable_satang: u128,
}

impl Ledger {
    pub async fn zone_balances(&self, spec: &OfferingSpec) -> Result<Vec<ZoneBalance>> {
        let ids: Vec<u128> = spec.zones.iter().map(|z| spec.stock_account(z.number)).collect();
        let accounts = self.client.lookup_accounts(ids.clone()).await?;
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
        let accounts = self.client.lookup_accounts(vec![holding_id, quota_id]).await?;
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

    pub async fn money_balance(&self, spec: &OfferingSpec) -> Result<MoneyBalance> {
        let deposits = spec.account(AccountKind::Deposits);
        let refunds = spec.account(AccountKind::RefundsPayable);
        let accounts = self.client.lookup_accounts(vec![deposits, refunds]).await?;
        let credit =
            |id: u128| accounts.iter().find(|a| a.id() == id).map_or(0, |a| a.credits_posted());
        Ok(MoneyBalance {
            deposits_satang: credit(deposits),
            refunds_payable_satang: credit(refunds),
        })
    }
}
