//! An offering as the ledger sees it, and its one-time, idempotent setup.

use tb::account::Flags as AccountFlags;
use tb::{Account, Transfer};
use tigerbeetle_unofficial as tb;

use crate::error::{LedgerError, Result};
use crate::ids::{self, AccountKind, TransferKind};
use crate::results::{is_exists, transfer_results};
use crate::Ledger;

/// Zones per offering are bounded so that one lookup can read them all.
pub const ZONES_MAX: usize = 64;
/// Gateways per deployment are bounded for the same reason.
pub const GATEWAYS_MAX: usize = 16;

/// One priced part of an offering's supply (a bond issue has exactly one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZoneSpec {
    /// 1-based zone number, stable for the life of the offering.
    pub number: u16,
    /// Units for sale in this zone (baht of face value, or seats).
    pub supply: u128,
}

/// Everything the ledger must know of an offering; the rest (names, prices) is metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OfferingSpec {
    /// 1-based, unique per deployment; it names the offering's two ledgers.
    pub number: u32,
    pub zones: Vec<ZoneSpec>,
    /// Every hold is a whole number of lots.
    pub lot: u128,
    /// No hold, not even a partial fill, is smaller than this.
    pub min_quantity: u128,
    /// The most one person may hold and own together.
    pub max_per_person: u128,
    /// Payment gateways whose clearing accounts must exist before money can move.
    pub gateways: Vec<u64>,
}

impl OfferingSpec {
    /// Checks the invariants the rest of the crate relies on.
    pub fn validate(&self) -> Result<(), String> {
        if self.number == 0 || self.number >= ids::OFFERING_NUMBER_MAX {
            return Err(format!("number must be in 1..{}", ids::OFFERING_NUMBER_MAX));
        }
        if self.zones.is_empty() || self.zones.len() > ZONES_MAX {
            return Err(format!("an offering has 1..={ZONES_MAX} zones"));
        }
        if self.gateways.len() > GATEWAYS_MAX {
            return Err(format!("at most {GATEWAYS_MAX} gateways"));
        }
        if self.lot == 0 {
            return Err("lot must be positive".into());
        }
        if self.min_quantity == 0 || !self.min_quantity.is_multiple_of(self.lot) {
            return Err("min_quantity must be a positive multiple of lot".into());
        }
        if self.max_per_person < self.min_quantity || !self.max_per_person.is_multiple_of(self.lot)
        {
            return Err("max_per_person must be a multiple of lot and >= min_quantity".into());
        }
        let mut seen = std::collections::HashSet::new();
        for zone in &self.zones {
            if zone.number == 0 || !seen.insert(zone.number) {
                return Err(format!("zone numbers must be unique and positive ({})", zone.number));
            }
            if zone.supply == 0 {
                return Err(format!("zone {} has no supply", zone.number));
            }
        }
        Ok(())
    }

    pub fn zone(&self, number: u16) -> Option<&ZoneSpec> {
        self.zones.iter().find(|z| z.number == number)
    }

    pub fn total_supply(&self) -> u128 {
        self.zones.iter().map(|z| z.supply).sum()
    }

    pub fn stock_account(&self, zone: u16) -> u128 {
        ids::account_id(AccountKind::Stock, self.number, zone, 0)
    }

    pub fn holding_account(&self, person: u64) -> u128 {
        ids::account_id(AccountKind::Holding, self.number, 0, person)
    }

    pub fn quota_account(&self, person: u64) -> u128 {
        ids::account_id(AccountKind::Quota, self.number, 0, person)
    }

    pub fn account(&self, kind: AccountKind) -> u128 {
        ids::account_id(kind, self.number, 0, 0)
    }

    /// A partner's allocation in this offering.
    pub fn partner_account(&self, partner: u16) -> u128 {
        ids::account_id(AccountKind::PartnerQuota, self.number, 0, partner.into())
    }
}

/// The money account a gateway's received funds are booked against.
pub fn clearing_account(gateway: u64) -> u128 {
    ids::account_id(AccountKind::Clearing, 0, 0, gateway)
}

fn account(id: u128, ledger: u32, kind: AccountKind, flags: AccountFlags) -> Account {
    Account::new(id, ledger, kind.code()).with_flags(flags)
}

impl Ledger {
    /// Creates an offering's accounts and funds its stock. Safe to call at every start:
    /// what exists is left alone, and a changed supply is reported as a conflict rather
    /// than silently applied.
    pub async fn setup_offering(&self, spec: &OfferingSpec) -> Result<()> {
        spec.validate().map_err(LedgerError::Conflict)?;
        let inventory = ids::ledger_inventory(spec.number);
        let quota = ids::ledger_quota(spec.number);
        // Offering-wide accounts keep balance history for the officials' charts; per-person
        // accounts do not, because there are millions of them.
        let limited = AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS | AccountFlags::HISTORY;
        let none = AccountFlags::HISTORY;
        let mut accounts = vec![
            account(spec.account(AccountKind::Issuer), inventory, AccountKind::Issuer, none),
            account(spec.account(AccountKind::QuotaSource), quota, AccountKind::QuotaSource, none),
            account(spec.account(AccountKind::QuotaSink), quota, AccountKind::QuotaSink, none),
            account(
                spec.account(AccountKind::Deposits),
                ids::LEDGER_THB,
                AccountKind::Deposits,
                none,
            ),
            account(
                spec.account(AccountKind::RefundsPayable),
                ids::LEDGER_THB,
                AccountKind::RefundsPayable,
                none,
            ),
        ];
        for zone in &spec.zones {
            let id = spec.stock_account(zone.number);
            accounts.push(account(id, inventory, AccountKind::Stock, limited));
        }
        for gateway in &spec.gateways {
            let id = clearing_account(*gateway);
            accounts.push(account(id, ids::LEDGER_THB, AccountKind::Clearing, none));
        }
        crate::results::check_accounts(self.reply(self.client.create_accounts(accounts)).await?)?;

        let transfers: Vec<Transfer> = spec
            .zones
            .iter()
            .map(|zone| {
                let base = ids::setup_base(spec.number, zone.number, 0);
                Transfer::new(ids::transfer_id(TransferKind::FundStock, base))
                    .with_debit_account_id(spec.account(AccountKind::Issuer))
                    .with_credit_account_id(spec.stock_account(zone.number))
                    .with_amount(zone.supply)
                    .with_ledger(inventory)
                    .with_code(TransferKind::FundStock.code())
            })
            .collect();
        let len = transfers.len();
        let results =
            transfer_results(len, self.reply(self.client.create_transfers(transfers)).await?)?;
        for (zone, result) in spec.zones.iter().zip(results) {
            match result {
                None => {}
                Some(tb::error::CreateTransferErrorKind::Exists) => {}
                Some(k) if is_exists(k) => {
                    return Err(LedgerError::Conflict(format!(
                        "zone {} was funded with another supply ({k:?})",
                        zone.number
                    )))
                }
                Some(k) => {
                    return Err(LedgerError::Unexpected(format!(
                        "funding zone {}: {k:?}",
                        zone.number
                    )))
                }
            }
        }
        Ok(())
    }

    /// Creates the accounts of many people at once, a full batch per request, so a bulk
    /// job (allotting a whole book) pays one round trip per few thousand people instead of
    /// two per person.
    pub async fn prepare_people(&self, spec: &OfferingSpec, people: &[u64]) -> Result<()> {
        let new: Vec<u64> =
            people.iter().copied().filter(|p| !self.people.contains(spec.number, *p)).collect();
        // Many modest requests at once rather than a few huge ones: the client packs
        // concurrent requests into one message as large as the cluster accepts, whatever
        // that limit is (a development cluster takes far fewer events per message).
        let creations = new.chunks(CHUNK_EVENTS / 2).map(|chunk| {
            let accounts = chunk.iter().flat_map(|p| person_accounts(spec, *p)).collect::<Vec<_>>();
            async move {
                crate::results::check_accounts(
                    self.reply(self.client.create_accounts(accounts)).await?,
                )
            }
        });
        futures::future::try_join_all(creations).await?;
        let fundings = new.chunks(CHUNK_EVENTS).map(|chunk| {
            let funding: Vec<Transfer> = chunk.iter().map(|p| quota_funding(spec, *p)).collect();
            async move {
                let len = funding.len();
                let results = transfer_results(
                    len,
                    self.reply(self.client.create_transfers(funding)).await?,
                )?;
                match results.into_iter().flatten().find(|k| !is_exists(*k)) {
                    Some(k) => Err(LedgerError::Unexpected(format!("funding quota: {k:?}"))),
                    None => Ok(()),
                }
            }
        });
        futures::future::try_join_all(fundings).await?;
        for person in new {
            self.people.insert(spec.number, person);
        }
        Ok(())
    }

    /// Gives a partner its allocation in an offering: its quota account, funded once with
    /// `units`. Setting the same allocation again is a no-op; another amount is a
    /// `Conflict` (an allocation is fixed once granted). Off the hot path (an admin call).
    pub async fn set_partner_allocation(
        &self,
        spec: &OfferingSpec,
        partner: u16,
        units: u128,
    ) -> Result<()> {
        if partner == 0 || units == 0 {
            return Err(LedgerError::Conflict("partner and units must be positive".into()));
        }
        let quota = ids::ledger_quota(spec.number);
        let flags = AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS | AccountFlags::HISTORY;
        let accounts =
            vec![account(spec.partner_account(partner), quota, AccountKind::PartnerQuota, flags)];
        crate::results::check_accounts(self.reply(self.client.create_accounts(accounts)).await?)?;
        let fund = Transfer::new(ids::transfer_id(
            TransferKind::FundPartner,
            ids::setup_base(spec.number, 0, partner.into()),
        ))
        .with_debit_account_id(spec.account(AccountKind::QuotaSource))
        .with_credit_account_id(spec.partner_account(partner))
        .with_amount(units)
        .with_ledger(quota)
        .with_code(TransferKind::FundPartner.code());
        let results =
            transfer_results(1, self.reply(self.client.create_transfers(vec![fund])).await?)?;
        match results[0] {
            None | Some(tb::error::CreateTransferErrorKind::Exists) => Ok(()),
            Some(k) if is_exists(k) => Err(LedgerError::Conflict(format!(
                "partner {partner} already has another allocation ({k:?})"
            ))),
            Some(k) => Err(LedgerError::Unexpected(format!("funding a partner: {k:?}"))),
        }
    }

    /// Creates one person's holding and quota accounts and grants their allowance, once.
    /// Cached per process so the hot path pays for it only on a person's first hold.
    pub(crate) async fn ensure_person(&self, spec: &OfferingSpec, person: u64) -> Result<()> {
        if self.people.contains(spec.number, person) {
            return Ok(());
        }
        let accounts = person_accounts(spec, person).to_vec();
        crate::results::check_accounts(self.reply(self.client.create_accounts(accounts)).await?)?;
        let fund = quota_funding(spec, person);
        let results =
            transfer_results(1, self.reply(self.client.create_transfers(vec![fund])).await?)?;
        match results[0] {
            None => {}
            Some(k) if is_exists(k) => {}
            Some(k) => return Err(LedgerError::Unexpected(format!("funding quota: {k:?}"))),
        }
        self.people.insert(spec.number, person);
        Ok(())
    }
}

/// Events per bulk request: small enough for any cluster configuration.
pub(crate) const CHUNK_EVENTS: usize = 240;

/// A person's holding (inventory) and quota accounts in an offering.
fn person_accounts(spec: &OfferingSpec, person: u64) -> [Account; 2] {
    [
        account(
            spec.holding_account(person),
            ids::ledger_inventory(spec.number),
            AccountKind::Holding,
            AccountFlags::empty(),
        ),
        account(
            spec.quota_account(person),
            ids::ledger_quota(spec.number),
            AccountKind::Quota,
            AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS,
        ),
    ]
}

/// The one transfer that grants a person their allowance; its id is fixed per person.
fn quota_funding(spec: &OfferingSpec, person: u64) -> Transfer {
    Transfer::new(ids::transfer_id(
        TransferKind::FundQuota,
        ids::setup_base(spec.number, 0, person),
    ))
    .with_debit_account_id(spec.account(AccountKind::QuotaSource))
    .with_credit_account_id(spec.quota_account(person))
    .with_amount(spec.max_per_person)
    .with_ledger(ids::ledger_quota(spec.number))
    .with_code(TransferKind::FundQuota.code())
}
