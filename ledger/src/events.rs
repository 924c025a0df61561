//! What the ledger's transfers mean, read back in timestamp order: hold events (placed,
//! confirmed, cancelled) for the projector and the reconciliation, and money events
//! (deposits, refunds) for the reconciliation.
//!
//! This is the one place that decodes a hold from TigerBeetle's fields; `hold.rs` and
//! `lifecycle.rs` encode it (who is in the credit account id, the zone in the low half of
//! `user_data_32` and the placing partner, 0 for none, in its high half,
//! the deadline in `user_data_128`, the request's fingerprint in `user_data_64`, the attempt in the id's top byte). Readers
//! outside the crate see only [`HoldEvent`] and [`MoneyEvent`].

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tigerbeetle_unofficial as tb;

use crate::error::{LedgerError, Result};
use crate::hold::HoldId;
use crate::ids::{self, TransferKind};
use crate::page;
use crate::Ledger;

/// A hold as its pending stock transfer records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlacedHold {
    pub id: HoldId,
    pub offering: u32,
    pub zone: u16,
    pub person: u64,
    pub quantity: u128,
    /// The cluster's timestamp of the hold.
    pub created_at: SystemTime,
    /// The deadline the holder was told (see [`crate::Deadline`]): after it the hold is
    /// expired to everyone, though a payment made by it may still confirm it until
    /// `lapses_at`.
    pub expires_at: SystemTime,
    /// When TigerBeetle voids the hold by itself unless it was posted or voided before:
    /// the deadline plus the settlement grace.
    pub lapses_at: SystemTime,
    /// Which attempt of the request succeeded (0 = full, 1.. = partial fills).
    pub attempt: u8,
    /// The request's digest, to tell a replay from a reused hold id.
    pub fingerprint: u64,
    /// The partner that placed it for its customer; `None` for a direct hold.
    pub partner: Option<u16>,
}

/// One event in the life of a hold, as the offering's inventory ledger records it. Expiry
/// is no event: TigerBeetle writes nothing when a hold lapses (see [`PlacedHold::expires_at`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HoldEvent {
    Placed(PlacedHold),
    /// Posted: paid for, now owned.
    Confirmed {
        id: HoldId,
        at: SystemTime,
    },
    /// Voided before its deadline.
    Cancelled {
        id: HoldId,
        at: SystemTime,
    },
}

impl HoldEvent {
    pub fn id(&self) -> HoldId {
        match self {
            HoldEvent::Placed(hold) => hold.id,
            HoldEvent::Confirmed { id, .. } | HoldEvent::Cancelled { id, .. } => *id,
        }
    }

    /// The cluster's timestamp of the event, unique per cluster: where the next page starts.
    pub fn timestamp(&self) -> SystemTime {
        match self {
            HoldEvent::Placed(hold) => hold.created_at,
            HoldEvent::Confirmed { at, .. } | HoldEvent::Cancelled { at, .. } => *at,
        }
    }
}

/// Decodes one transfer of a stock hold chain: the pending transfer, its post or its void.
/// Anything else is a broken invariant of the account model, not a business outcome.
pub(crate) fn decode_hold(t: &tb::Transfer) -> Result<HoldEvent> {
    let id = HoldId::new(t.id() & ids::BASE_MASK).ok_or_else(|| not_a_hold(t))?;
    let at = t.timestamp();
    Ok(match ids::transfer_kind(t.id()) {
        Some(TransferKind::HoldStock { attempt }) => {
            let (_, offering, _, person) = ids::account_parts(t.credit_account_id());
            let lapses_at = at + Duration::from_secs(t.timeout().into());
            HoldEvent::Placed(PlacedHold {
                id,
                offering,
                zone: t.user_data_32() as u16,
                person,
                quantity: t.amount(),
                created_at: at,
                expires_at: deadline_of(t).unwrap_or(lapses_at),
                lapses_at,
                attempt,
                fingerprint: t.user_data_64(),
                partner: Some((t.user_data_32() >> 16) as u16).filter(|p| *p != 0),
            })
        }
        Some(TransferKind::PostStock) => HoldEvent::Confirmed { id, at },
        Some(TransferKind::VoidStock) => HoldEvent::Cancelled { id, at },
        _ => return Err(not_a_hold(t)),
    })
}

/// The deadline a hold records in `user_data_128` (unix seconds); `None` for a hold written
/// before deadlines were recorded (it held the hold id there), whose deadline was its lapse.
fn deadline_of(t: &tb::Transfer) -> Option<SystemTime> {
    const UNIX_SECONDS_MAX: u128 = 1 << 40;
    let seconds = t.user_data_128();
    (seconds > 0 && seconds < UNIX_SECONDS_MAX)
        .then(|| UNIX_EPOCH + Duration::from_secs(seconds as u64))
}

/// Decodes a pending stock transfer, the one record that says who holds what.
pub(crate) fn decode_placed(t: &tb::Transfer) -> Result<PlacedHold> {
    match decode_hold(t)? {
        HoldEvent::Placed(hold) => Ok(hold),
        _ => Err(not_a_hold(t)),
    }
}

fn not_a_hold(t: &tb::Transfer) -> LedgerError {
    LedgerError::Unexpected(format!("transfer {:032x} is not a stock hold event", t.id()))
}

/// Money the ledger moved for a payment, on the THB ledger.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MoneyKind {
    /// Clearing -> deposits: a payment confirmed a hold.
    Deposit,
    /// Clearing -> refunds payable: money that could confirm nothing.
    Refund,
    /// Refunds payable -> clearing: a refund paid back to its payer; `payment` is the
    /// refunded payment's id.
    Payout,
}

impl MoneyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MoneyKind::Deposit => "deposit",
            MoneyKind::Refund => "refund",
            MoneyKind::Payout => "payout",
        }
    }

    fn code(self) -> u16 {
        match self {
            MoneyKind::Deposit => ids::CODE_DEPOSIT,
            MoneyKind::Refund => ids::CODE_REFUND,
            MoneyKind::Payout => ids::CODE_PAYOUT,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MoneyEvent {
    pub kind: MoneyKind,
    /// The payment's id as the payments layer chose it ([`crate::Payment::id`]).
    pub payment: u128,
    /// The offering number the money was booked to. The THB ledger is shared by every
    /// deployment on a cluster, so a reader keeps only the offerings it knows.
    pub offering: u32,
    pub amount_satang: u128,
    pub timestamp: SystemTime,
}

/// Decodes a deposit or refund by the code it was queried with rather than its id, so that
/// foreign money on the shared THB ledger is read (and left to the caller) rather than
/// refused.
fn decode_money(kind: MoneyKind, t: &tb::Transfer) -> MoneyEvent {
    MoneyEvent {
        kind,
        payment: t.user_data_128(),
        offering: t.user_data_32(),
        amount_satang: t.amount(),
        timestamp: t.timestamp(),
    }
}

impl Ledger {
    /// The next page of an offering's hold events stamped after `after`, oldest first: at
    /// most [`crate::PAGE_EVENTS_MAX`]. A shorter page reached the end of the history, on a
    /// cluster with production-sized messages (a development cluster answers fewer).
    pub async fn hold_events(&self, offering: u32, after: SystemTime) -> Result<Vec<HoldEvent>> {
        let ledger = ids::ledger_inventory(offering);
        let filter = page::after(ledger, Some(ids::CODE_HOLD_STOCK), after);
        let page = self.reply(self.client.query_transfers(Box::new(filter))).await??;
        page.iter().map(decode_hold).collect()
    }

    /// The next page of deposits or refunds (every deployment's) stamped after `after`,
    /// oldest first, as [`Ledger::hold_events`].
    pub async fn money_events(
        &self,
        kind: MoneyKind,
        after: SystemTime,
    ) -> Result<Vec<MoneyEvent>> {
        let filter = page::after(ids::LEDGER_THB, Some(kind.code()), after);
        let page = self.reply(self.client.query_transfers(Box::new(filter))).await??;
        Ok(page.iter().map(|t| decode_money(kind, t)).collect())
    }
}
