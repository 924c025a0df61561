//! Holds: a linked pair of pending transfers (stock -> holding, quota -> sink) sharing one
//! timeout, and for a hold a partner places a third link (partner quota -> sink), so the
//! partner's allocation is enforced by the ledger exactly as the person's cap is. A direct
//! hold is the pair alone: no extra transfer. TigerBeetle voids every link by itself at the
//! deadline; nothing of ours has to run.
//!
//! How a hold is written into a transfer's fields is decided here (`submit_hold`); how it is
//! read back is decided once, in `events.rs`. Change both together.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tb::error::CreateTransferErrorKind as K;
use tb::transfer::Flags;
use tb::Transfer;
use tigerbeetle_unofficial as tb;

use crate::error::{LedgerError, Result};
use crate::events::decode_placed;
use crate::ids::{self, AccountKind, TransferKind, PARTIAL_ATTEMPTS_MAX};
use crate::offering::OfferingSpec;
use crate::results::{chain_cause, is_exists, transfer_results};
use crate::Ledger;

/// Holds longer than a week are a configuration mistake, not a business need.
pub const HOLD_SECONDS_MAX: u32 = 7 * 24 * 3600;

/// A caller-chosen, 120-bit hold identifier. The API derives it from person +
/// Idempotency-Key, so a retried request names the same hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HoldId(u128);

impl HoldId {
    /// Accepts any non-zero value that fits in 120 bits.
    pub fn new(raw: u128) -> Option<Self> {
        (raw != 0 && raw & !ids::BASE_MASK == 0).then_some(HoldId(raw))
    }

    /// Folds 16 bytes of a hash into a hold id (dropping the top byte).
    pub fn from_hash(bytes: [u8; 16]) -> Self {
        let raw = u128::from_be_bytes(bytes) & ids::BASE_MASK;
        HoldId(raw.max(1))
    }

    pub fn get(self) -> u128 {
        self.0
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HoldRequest {
    pub id: HoldId,
    pub zone: u16,
    pub person: u64,
    pub quantity: u128,
    /// When the holder must have paid by: what they are told, fixed by the caller (a
    /// reservation's is "now + hold", every allotment of a run shares one).
    pub deadline: Deadline,
    /// Take what is left, in whole lots and never below the minimum, instead of failing.
    pub allow_partial: bool,
    /// The partner placing it for its customer (its number, 1..=65535), whose allocation
    /// the hold also draws on; `None` for a person reserving directly.
    pub partner: Option<u16>,
}

/// A hold's deadline, and how long after it the ledger keeps the hold for a payment made in
/// time but reported late (the settlement grace). TigerBeetle's own timeout is the sum, so
/// the units stay held until a bank's late report of an on-time payment can still confirm
/// them; the holder sees only `unix_seconds`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deadline {
    /// Whole seconds since 1970: written into the hold, so every read of it (a replay, the
    /// projection, a payment) sees the very same instant.
    pub unix_seconds: u64,
    pub grace_seconds: u32,
}

impl Deadline {
    /// `hold_seconds` from now, to the whole second.
    pub fn after(hold_seconds: u32, grace_seconds: u32) -> Deadline {
        let now = unix_seconds(SystemTime::now());
        Deadline { unix_seconds: now + u64::from(hold_seconds), grace_seconds }
    }

    pub fn time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.unix_seconds)
    }

    /// TigerBeetle's timeout for a hold submitted at `now`: to the deadline, plus the grace.
    /// `None` when the deadline has passed or lies beyond [`HOLD_SECONDS_MAX`].
    fn timeout_seconds(self, now: SystemTime) -> Option<u32> {
        let left = self.unix_seconds.checked_sub(unix_seconds(now)).filter(|s| *s > 0)?;
        let left = u32::try_from(left).ok().filter(|s| *s <= HOLD_SECONDS_MAX)?;
        left.checked_add(self.grace_seconds)
    }
}

fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl HoldRequest {
    /// A digest of what was asked, stored with the hold so that reusing a hold id for a
    /// different request is detected instead of silently answered with the old hold.
    pub fn fingerprint(&self) -> u64 {
        // FNV-1a: stable across builds and platforms, which `DefaultHasher` is not.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |bytes: &[u8]| {
            for b in bytes {
                hash ^= *b as u64;
                hash = hash.wrapping_mul(0x0100_0000_01b3);
            }
        };
        eat(&self.zone.to_le_bytes());
        eat(&self.person.to_le_bytes());
        eat(&self.quantity.to_le_bytes());
        // Not the deadline: a retry a second later asks for the same hold.
        eat(&[self.allow_partial as u8]);
        // Only when there is one, so direct holds keep the fingerprints they always had.
        if let Some(partner) = self.partner {
            eat(&partner.to_le_bytes());
        }
        hash
    }

    /// `user_data_32` of every link: the zone below, the partner (0: direct) above.
    pub(crate) fn channel_and_zone(&self) -> u32 {
        u32::from(self.partner.unwrap_or(0)) << 16 | u32::from(self.zone)
    }
}

/// Why a hold request was refused before reaching the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HoldRejection {
    UnknownZone,
    BelowMinimum,
    NotLotMultiple,
    AboveMaximum,
    /// The deadline has passed, or lies further ahead than [`HOLD_SECONDS_MAX`].
    TimeoutOutOfRange,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Held {
    pub quantity: u128,
    /// The deadline the holder is told (the request's, as the hold records it).
    pub expires_at: SystemTime,
    /// The hold existed already: this call was a replay.
    pub replayed: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HoldOutcome {
    Held(Held),
    SoldOut,
    PersonLimitExceeded,
    /// The partner's allocation for the offering has not this much left.
    PartnerAllocationExceeded,
    /// The hold id was used before for a different request.
    IdReused,
    /// This hold id was refused once (sold out, over the cap) and TigerBeetle refuses it
    /// forever (`id_already_failed`): whatever is left now, only a new id can hold it. Not
    /// a sellout: a caller that retries on its own (the waitlist) takes a new id.
    IdFailed,
    Rejected(HoldRejection),
}

enum Attempt {
    Created,
    Existed,
    StockShort,
    QuotaShort,
    PartnerShort,
    IdFailed,
}

impl Ledger {
    /// Places a hold, or tells precisely why not. Never oversells: the stock account cannot
    /// go below zero and the quota account cannot exceed the per-person maximum.
    pub async fn hold(&self, spec: &OfferingSpec, req: &HoldRequest) -> Result<HoldOutcome> {
        match check_request(spec, req) {
            Ok(()) => {}
            // The minimum is a person's, not an order's: once they hold at least it, a
            // top-up of whole lots below it is fine (and meets the cap like any hold). Only
            // this rare path pays the extra lookup.
            Err(HoldRejection::BelowMinimum)
                if req.quantity > 0 && self.holds_minimum(spec, req.person).await? => {}
            Err(rejection) => return Ok(HoldOutcome::Rejected(rejection)),
        }
        let Some(timeout) = req.deadline.timeout_seconds(SystemTime::now()) else {
            return Ok(HoldOutcome::Rejected(HoldRejection::TimeoutOutOfRange));
        };
        self.ensure_person(spec, req.person).await?;
        let attempts = if req.allow_partial { PARTIAL_ATTEMPTS_MAX } else { 0 };
        let mut last = HoldOutcome::SoldOut;
        for attempt in 0..=attempts {
            let quantity = if attempt == 0 {
                req.quantity
            } else {
                // Even when nothing is left we submit the minimum: on a replay this attempt
                // may be the one that succeeded, and only the cluster knows.
                self.partial_quantity(spec, req).await?.unwrap_or(spec.min_quantity)
            };
            match self.submit_hold(spec, req, attempt, quantity, timeout).await? {
                Attempt::Created => {
                    let expires_at = req.deadline.time();
                    return Ok(HoldOutcome::Held(Held { quantity, expires_at, replayed: false }));
                }
                Attempt::Existed => return self.replayed_hold(req, attempt).await,
                Attempt::StockShort => last = HoldOutcome::SoldOut,
                Attempt::QuotaShort => last = HoldOutcome::PersonLimitExceeded,
                Attempt::PartnerShort => last = HoldOutcome::PartnerAllocationExceeded,
                Attempt::IdFailed => last = HoldOutcome::IdFailed,
            }
        }
        Ok(last)
    }

    async fn submit_hold(
        &self,
        spec: &OfferingSpec,
        req: &HoldRequest,
        attempt: u8,
        quantity: u128,
        timeout: u32,
    ) -> Result<Attempt> {
        let base = req.id.get();
        let pending = |kind: TransferKind| {
            Transfer::new(ids::transfer_id(kind, base))
                .with_amount(quantity)
                .with_code(kind.code())
                .with_timeout(timeout)
                .with_user_data_128(req.deadline.unix_seconds.into())
                .with_user_data_64(req.fingerprint())
                .with_user_data_32(req.channel_and_zone())
        };
        let stock = pending(TransferKind::HoldStock { attempt })
            .with_debit_account_id(spec.stock_account(req.zone))
            .with_credit_account_id(spec.holding_account(req.person))
            .with_ledger(ids::ledger_inventory(spec.number))
            .with_flags(Flags::PENDING | Flags::LINKED);
        let quota = pending(TransferKind::HoldQuota { attempt })
            .with_debit_account_id(spec.quota_account(req.person))
            .with_credit_account_id(spec.account(AccountKind::QuotaSink))
            .with_ledger(ids::ledger_quota(spec.number));
        let mut chain = Vec::with_capacity(3);
        chain.push(stock);
        match req.partner {
            // A direct hold: the pair, nothing more.
            None => chain.push(quota.with_flags(Flags::PENDING)),
            Some(partner) => {
                chain.push(quota.with_flags(Flags::PENDING | Flags::LINKED));
                chain.push(
                    pending(TransferKind::HoldPartner { attempt })
                        .with_debit_account_id(spec.partner_account(partner))
                        .with_credit_account_id(spec.account(AccountKind::QuotaSink))
                        .with_ledger(ids::ledger_quota(spec.number))
                        .with_flags(Flags::PENDING),
                );
            }
        }
        let len = chain.len();
        let results =
            transfer_results(len, self.reply(self.client.create_transfers(chain)).await?)?;
        Ok(match chain_cause(&results) {
            None => Attempt::Created,
            Some((0, k)) if is_exists(k) => Attempt::Existed,
            Some((_, K::IdAlreadyFailed)) => Attempt::IdFailed,
            Some((0, K::ExceedsCredits)) => Attempt::StockShort,
            Some((1, K::ExceedsCredits)) => Attempt::QuotaShort,
            // A partner with no allocation in this offering has no account here: nothing.
            Some((2, K::ExceedsCredits | K::DebitAccountNotFound)) => Attempt::PartnerShort,
            Some((i, k)) => {
                return Err(LedgerError::Unexpected(format!("hold event {i}: {k:?}")));
            }
        })
    }

    /// The most a partial fill can take now: what is left in the zone and in the person's
    /// allowance, rounded down to whole lots, capped at the request. `None` when that is
    /// below the offering's minimum.
    async fn partial_quantity(
        &self,
        spec: &OfferingSpec,
        req: &HoldRequest,
    ) -> Result<Option<u128>> {
        let mut ids = vec![spec.stock_account(req.zone), spec.quota_account(req.person)];
        ids.extend(req.partner.map(|p| spec.partner_account(p)));
        let accounts = self.reply(self.client.lookup_accounts(ids)).await??;
        let available = accounts
            .iter()
            .map(|a| a.credits_posted().saturating_sub(a.debits_posted() + a.debits_pending()))
            .min()
            .unwrap_or(0);
        let quantity = available.min(req.quantity) / spec.lot * spec.lot;
        Ok((quantity >= spec.min_quantity).then_some(quantity))
    }

    /// Whether the person holds (pending or owned) at least the offering's minimum.
    async fn holds_minimum(&self, spec: &OfferingSpec, person: u64) -> Result<bool> {
        let found =
            self.reply(self.client.lookup_accounts(vec![spec.holding_account(person)])).await??;
        Ok(found
            .first()
            .is_some_and(|a| a.credits_pending() + a.credits_posted() >= spec.min_quantity))
    }

    async fn replayed_hold(&self, req: &HoldRequest, attempt: u8) -> Result<HoldOutcome> {
        let id = ids::transfer_id(TransferKind::HoldStock { attempt }, req.id.get());
        let found = self.reply(self.client.lookup_transfers(vec![id])).await??;
        let Some(stock) = found.first() else {
            return Err(LedgerError::Unexpected("hold exists but cannot be read".into()));
        };
        let hold = decode_placed(stock)?;
        if hold.fingerprint != req.fingerprint() {
            return Ok(HoldOutcome::IdReused);
        }
        let expires_at = hold.expires_at;
        Ok(HoldOutcome::Held(Held { quantity: hold.quantity, expires_at, replayed: true }))
    }
}

fn check_request(spec: &OfferingSpec, req: &HoldRequest) -> Result<(), HoldRejection> {
    if spec.zone(req.zone).is_none() {
        return Err(HoldRejection::UnknownZone);
    }
    if req.quantity == 0 {
        return Err(HoldRejection::BelowMinimum);
    }
    if !req.quantity.is_multiple_of(spec.lot) {
        return Err(HoldRejection::NotLotMultiple);
    }
    if req.quantity > spec.max_per_person {
        return Err(HoldRejection::AboveMaximum);
    }
    // Last: the caller may still accept it as a top-up (see `Ledger::hold`).
    if req.quantity < spec.min_quantity {
        return Err(HoldRejection::BelowMinimum);
    }
    Ok(())
}
