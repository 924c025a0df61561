//! `reconcile report`: per offering, the money as finance answers for it. Collected,
//! refunds payable (still owed) and refunds paid out come from the ledger; outstanding deposits are what live holds would
//! bring in if paid, from the reservation projection and the offering's prices.

use allot_ledger::Ledger;
use allot_store::projection;

use crate::store::{self, Client};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OfferingFunds {
    pub offering: String,
    pub supply: u128,
    pub confirmed: u128,
    pub held: u128,
    pub collected_satang: u128,
    pub outstanding_reservations: u64,
    pub outstanding_satang: u128,
    /// Refunds still owed to their payers.
    pub refunds_payable_satang: u128,
    /// Refunds paid back (`reconcile refunds pay`, or the finance API).
    pub refunds_paid_out_satang: u128,
}

pub const COLUMNS: [&str; 9] = [
    "offering",
    "supply",
    "confirmed",
    "held",
    "collected_satang",
    "outstanding_reservations",
    "outstanding_satang",
    "refunds_payable_satang",
    "refunds_paid_out_satang",
];

impl OfferingFunds {
    pub fn cells(&self) -> [String; 9] {
        [
            self.offering.clone(),
            self.supply.to_string(),
            self.confirmed.to_string(),
            self.held.to_string(),
            self.collected_satang.to_string(),
            self.outstanding_reservations.to_string(),
            self.outstanding_satang.to_string(),
            self.refunds_payable_satang.to_string(),
            self.refunds_paid_out_satang.to_string(),
        ]
    }
}

pub async fn run(ledger: &Ledger, db: &Client) -> Result<Vec<OfferingFunds>, String> {
    let mut out = Vec::new();
    for offering in store::offerings(db).await? {
        let spec = offering.spec();
        let zones = ledger.zone_balances(&spec).await.map_err(|e| e.to_string())?;
        let money = ledger.money_balance(&spec).await.map_err(|e| e.to_string())?;
        let paid_out = ledger.refunds_paid_out(&spec).await.map_err(|e| e.to_string())?;
        // Grouped so that a million holds are a handful of rows: deposits depend only on
        // zone and quantity.
        let groups =
            projection::outstanding_holds(db, &offering.id).await.map_err(|e| e.to_string())?;
        let (mut count, mut outstanding) = (0u64, 0u128);
        for g in groups {
            count += g.count as u64;
            outstanding +=
                offering.deposit_satang(g.zone as u16, g.quantity as u64) * g.count as u128;
        }
        out.push(OfferingFunds {
            offering: offering.id.clone(),
            supply: zones.iter().map(|z| z.supply).sum(),
            confirmed: zones.iter().map(|z| z.confirmed).sum(),
            held: zones.iter().map(|z| z.held).sum(),
            collected_satang: money.deposits_satang,
            outstanding_reservations: count,
            outstanding_satang: outstanding,
            refunds_payable_satang: money.refunds_payable_satang,
            refunds_paid_out_satang: paid_out,
        });
    }
    Ok(out)
}

/// Units of one offering by the channel that holds them: the ledger's partner quota
/// accounts for each partner, and what is left of the zones' figures for direct sales.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChannelFunds {
    pub offering: String,
    /// `direct`, or `partner:<id>:<name>`.
    pub channel: String,
    /// A partner's allocation; empty for direct.
    pub allocation: Option<u128>,
    pub held: u128,
    pub confirmed: u128,
}

pub const CHANNEL_COLUMNS: [&str; 5] = ["offering", "channel", "allocation", "held", "confirmed"];

impl ChannelFunds {
    pub fn cells(&self) -> [String; 5] {
        [
            self.offering.clone(),
            self.channel.clone(),
            self.allocation.map_or_else(String::new, |a| a.to_string()),
            self.held.to_string(),
            self.confirmed.to_string(),
        ]
    }
}

/// Per offering: one row per partner with an allocation, then the direct channel (the
/// zones' held and confirmed units less the partners').
pub async fn by_channel(ledger: &Ledger, db: &Client) -> Result<Vec<ChannelFunds>, String> {
    let mut out = Vec::new();
    for offering in store::offerings(db).await? {
        let spec = offering.spec();
        let zones = ledger.zone_balances(&spec).await.map_err(|e| e.to_string())?;
        let (mut held, mut confirmed): (u128, u128) =
            (zones.iter().map(|z| z.held).sum(), zones.iter().map(|z| z.confirmed).sum());
        let partners = allot_store::partners::allocations_of_offering(db, &offering.id)
            .await
            .map_err(|e| e.to_string())?;
        for (partner_id, name) in partners {
            let number = u16::try_from(partner_id).map_err(|e| e.to_string())?;
            let Some(balance) =
                ledger.partner_balance(&spec, number).await.map_err(|e| e.to_string())?
            else {
                continue;
            };
            held = held.saturating_sub(balance.held);
            confirmed = confirmed.saturating_sub(balance.confirmed);
            out.push(ChannelFunds {
                offering: offering.id.clone(),
                channel: format!("partner:{partner_id}:{name}"),
                allocation: Some(balance.allocation),
                held: balance.held,
                confirmed: balance.confirmed,
            });
        }
        out.push(ChannelFunds {
            offering: offering.id.clone(),
            channel: "direct".into(),
            allocation: None,
            held,
            confirmed,
        });
    }
    Ok(out)
}
