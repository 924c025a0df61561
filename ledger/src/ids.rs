//! Deterministic identifiers: every ledger number, account id and transfer id is a pure
//! function of what the caller already knows (offering, zone, person, hold, payment).
//!
//! Why: the hot path must never look anything up to find an account, and a retried call
//! must produce the very same ids so that TigerBeetle answers `exists` instead of doing the
//! work twice.
//!
//! Layout of a 128-bit id (most significant first):
//!
//! ```text
//! account:  [kind: 8][offering: 32][zone: 16][reserved: 8][subject: 64]
//! transfer: [kind: 8][base: 120]
//! ```
//!
//! `subject` is a person id or a gateway id. A transfer's `base` is a hold id or a payment
//! id, both 120-bit values chosen by the caller (the API hashes person + Idempotency-Key).

/// THB money ledger: amounts in satang. ISO 4217 numeric code of the baht.
pub const LEDGER_THB: u32 = 764;
const LEDGER_INVENTORY_BASE: u32 = 1_000_000;
const LEDGER_QUOTA_BASE: u32 = 2_000_000;
/// Offering numbers live in `1..offering_number_max`, so ledgers never collide.
pub const OFFERING_NUMBER_MAX: u32 = 1_000_000;

/// Inventory ledger of an offering: units are baht of face value or seats.
pub fn ledger_inventory(offering: u32) -> u32 {
    assert!(offering > 0 && offering < OFFERING_NUMBER_MAX);
    LEDGER_INVENTORY_BASE + offering
}

/// Quota ledger of an offering: units are the same as inventory, counted per person.
pub fn ledger_quota(offering: u32) -> u32 {
    assert!(offering > 0 && offering < OFFERING_NUMBER_MAX);
    LEDGER_QUOTA_BASE + offering
}

/// Offering number of an inventory or quota ledger, if it is one.
pub fn offering_of_ledger(ledger: u32) -> Option<u32> {
    match ledger {
        l if l > LEDGER_INVENTORY_BASE && l < LEDGER_INVENTORY_BASE + OFFERING_NUMBER_MAX => {
            Some(l - LEDGER_INVENTORY_BASE)
        }
        l if l > LEDGER_QUOTA_BASE && l < LEDGER_QUOTA_BASE + OFFERING_NUMBER_MAX => {
            Some(l - LEDGER_QUOTA_BASE)
        }
        _ => None,
    }
}

/// What an account is for. The discriminant is both the id's top byte and the account code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum AccountKind {
    /// Inventory: the source of all supply; goes into debit when stock is funded.
    Issuer = 1,
    /// Inventory: what is left to sell in one zone; can never go below zero.
    Stock = 2,
    /// Inventory: what one person holds (pending) or owns (posted) in an offering.
    Holding = 3,
    /// Quota: the source of every person's allowance.
    QuotaSource = 4,
    /// Quota: where used allowance goes.
    QuotaSink = 5,
    /// Quota: one person's remaining allowance; can never go below zero.
    Quota = 6,
    /// Money: deposits collected for an offering.
    Deposits = 7,
    /// Money: money received that must go back to the payer (late, double or wrong payment).
    RefundsPayable = 8,
    /// Money: what a payment gateway (bank) has told us it received, per gateway.
    Clearing = 9,
    /// Quota: one partner's remaining allocation in an offering (subject: the partner's
    /// number); can never go below zero. Every hold the partner places debits it in the
    /// same linked chain as the stock and the customer's own quota.
    PartnerQuota = 10,
}

impl AccountKind {
    pub const ALL: [AccountKind; 10] = [
        AccountKind::Issuer,
        AccountKind::Stock,
        AccountKind::Holding,
        AccountKind::QuotaSource,
        AccountKind::QuotaSink,
        AccountKind::Quota,
        AccountKind::Deposits,
        AccountKind::RefundsPayable,
        AccountKind::Clearing,
        AccountKind::PartnerQuota,
    ];

    pub fn code(self) -> u16 {
        self as u16
    }

    pub fn from_code(code: u16) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.code() == code)
    }

    pub fn name(self) -> &'static str {
        match self {
            AccountKind::Issuer => "issuer",
            AccountKind::Stock => "stock",
            AccountKind::Holding => "holding",
            AccountKind::QuotaSource => "quota_source",
            AccountKind::QuotaSink => "quota_sink",
            AccountKind::Quota => "quota",
            AccountKind::Deposits => "deposits",
            AccountKind::RefundsPayable => "refunds_payable",
            AccountKind::Clearing => "clearing",
            AccountKind::PartnerQuota => "partner_quota",
        }
    }
}

/// An account id; see the module docs for its layout.
pub fn account_id(kind: AccountKind, offering: u32, zone: u16, subject: u64) -> u128 {
    ((kind as u128) << 120) | ((offering as u128) << 88) | ((zone as u128) << 72) | subject as u128
}

/// The parts of an account id, the inverse of [`account_id`].
pub fn account_parts(id: u128) -> (Option<AccountKind>, u32, u16, u64) {
    let kind = AccountKind::from_code((id >> 120) as u16);
    (kind, (id >> 88) as u32, (id >> 72) as u16, id as u64)
}

/// What a transfer does. The discriminant is the id's top byte; `code` groups them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TransferKind {
    /// Issuer -> stock, once per zone at setup.
    FundStock,
    /// Quota source -> a person's quota, once per person and offering.
    FundQuota,
    /// Quota source -> a partner's quota: its allocation, once per partner and offering.
    FundPartner,
    /// Pending stock -> holding; `attempt` 0 is the full request, 1.. are partial fills.
    HoldStock {
        attempt: u8,
    },
    /// Pending quota -> sink, linked to the stock hold of the same attempt.
    HoldQuota {
        attempt: u8,
    },
    /// Pending partner quota -> sink: the third link of a hold a partner places.
    HoldPartner {
        attempt: u8,
    },
    PostStock,
    PostQuota,
    PostPartner,
    VoidStock,
    VoidQuota,
    VoidPartner,
    /// Clearing -> deposits when a hold is confirmed; one per hold, ever.
    Deposit,
    /// Clearing -> refunds payable for money that cannot confirm anything; one per payment.
    Refund,
    /// Refunds payable -> clearing when finance pays a refund back through the bank; one
    /// per bank transfer reference.
    Payout,
}

/// Partial fills get a few attempts because others race for the same stock.
pub const PARTIAL_ATTEMPTS_MAX: u8 = 3;

impl TransferKind {
    fn tag(self) -> u8 {
        match self {
            TransferKind::FundStock => 0x01,
            TransferKind::FundQuota => 0x02,
            TransferKind::FundPartner => 0x03,
            TransferKind::HoldStock { attempt } => 0x10 + attempt,
            TransferKind::HoldQuota { attempt } => 0x20 + attempt,
            TransferKind::HoldPartner { attempt } => 0x28 + attempt,
            TransferKind::PostStock => 0x30,
            TransferKind::PostQuota => 0x31,
            TransferKind::PostPartner => 0x32,
            TransferKind::VoidStock => 0x40,
            TransferKind::VoidQuota => 0x41,
            TransferKind::VoidPartner => 0x42,
            TransferKind::Deposit => 0x50,
            TransferKind::Refund => 0x60,
            TransferKind::Payout => 0x70,
        }
    }

    /// The transfer code: one per family, so exports and queries can filter by it.
    pub fn code(self) -> u16 {
        match self {
            TransferKind::FundStock => CODE_FUND_STOCK,
            TransferKind::FundQuota => CODE_FUND_QUOTA,
            TransferKind::FundPartner => CODE_FUND_PARTNER,
            TransferKind::HoldPartner { .. }
            | TransferKind::PostPartner
            | TransferKind::VoidPartner => CODE_HOLD_PARTNER,
            TransferKind::HoldStock { .. } | TransferKind::PostStock | TransferKind::VoidStock => {
                CODE_HOLD_STOCK
            }
            TransferKind::HoldQuota { .. } | TransferKind::PostQuota | TransferKind::VoidQuota => {
                CODE_HOLD_QUOTA
            }
            TransferKind::Deposit => CODE_DEPOSIT,
            TransferKind::Refund => CODE_REFUND,
            TransferKind::Payout => CODE_PAYOUT,
        }
    }
}

pub const CODE_FUND_STOCK: u16 = 1;
pub const CODE_FUND_QUOTA: u16 = 2;
pub const CODE_FUND_PARTNER: u16 = 3;
pub const CODE_HOLD_STOCK: u16 = 10;
pub const CODE_HOLD_QUOTA: u16 = 11;
pub const CODE_HOLD_PARTNER: u16 = 12;
pub const CODE_DEPOSIT: u16 = 20;
pub const CODE_REFUND: u16 = 21;
pub const CODE_PAYOUT: u16 = 22;

/// Mask of the 120 bits a caller-chosen base id may use.
pub const BASE_MASK: u128 = (1u128 << 120) - 1;

/// A transfer id: the kind's tag in the top byte, the base below.
pub fn transfer_id(kind: TransferKind, base: u128) -> u128 {
    debug_assert_eq!(base & !BASE_MASK, 0);
    ((kind.tag() as u128) << 120) | (base & BASE_MASK)
}

/// The kind of a transfer from its id, the inverse of [`transfer_id`]'s top byte; `None`
/// for an id this model never writes.
pub fn transfer_kind(id: u128) -> Option<TransferKind> {
    let tag = (id >> 120) as u8;
    let attempts = 0..=PARTIAL_ATTEMPTS_MAX;
    Some(match tag {
        0x01 => TransferKind::FundStock,
        0x02 => TransferKind::FundQuota,
        0x03 => TransferKind::FundPartner,
        t if attempts.contains(&t.wrapping_sub(0x10)) => {
            TransferKind::HoldStock { attempt: t - 0x10 }
        }
        t if attempts.contains(&t.wrapping_sub(0x20)) => {
            TransferKind::HoldQuota { attempt: t - 0x20 }
        }
        t if attempts.contains(&t.wrapping_sub(0x28)) => {
            TransferKind::HoldPartner { attempt: t - 0x28 }
        }
        0x30 => TransferKind::PostStock,
        0x31 => TransferKind::PostQuota,
        0x32 => TransferKind::PostPartner,
        0x40 => TransferKind::VoidStock,
        0x41 => TransferKind::VoidQuota,
        0x42 => TransferKind::VoidPartner,
        0x50 => TransferKind::Deposit,
        0x60 => TransferKind::Refund,
        0x70 => TransferKind::Payout,
        _ => return None,
    })
}

/// Setup transfers have no caller-chosen base: derive it from where they go.
pub fn setup_base(offering: u32, zone: u16, person: u64) -> u128 {
    ((offering as u128) << 88) | ((zone as u128) << 72) | person as u128
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_ids_round_trip_and_never_collide_across_kinds() {
        let a = account_id(AccountKind::Quota, 7, 3, 42);
        assert_eq!(account_parts(a), (Some(AccountKind::Quota), 7, 3, 42));
        let b = account_id(AccountKind::Holding, 7, 3, 42);
        assert_ne!(a, b);
    }

    #[test]
    fn transfer_ids_differ_by_kind_and_keep_the_base() {
        let base = 0x00ab_cdef_u128 << 64 | 99;
        let s = transfer_id(TransferKind::HoldStock { attempt: 0 }, base);
        let q = transfer_id(TransferKind::HoldQuota { attempt: 0 }, base);
        let s1 = transfer_id(TransferKind::HoldStock { attempt: 1 }, base);
        assert_ne!(s, q);
        assert_ne!(s, s1);
        assert_eq!(s & BASE_MASK, base);
        assert_eq!(q & BASE_MASK, base);
    }

    #[test]
    fn every_transfer_kind_is_read_back_from_its_id() {
        let base = 0x00ab_cdef_u128 << 64 | 99;
        let mut kinds = vec![
            TransferKind::FundStock,
            TransferKind::FundQuota,
            TransferKind::FundPartner,
            TransferKind::PostStock,
            TransferKind::PostQuota,
            TransferKind::PostPartner,
            TransferKind::VoidStock,
            TransferKind::VoidQuota,
            TransferKind::VoidPartner,
            TransferKind::Deposit,
            TransferKind::Refund,
            TransferKind::Payout,
        ];
        for attempt in 0..=PARTIAL_ATTEMPTS_MAX {
            kinds.push(TransferKind::HoldStock { attempt });
            kinds.push(TransferKind::HoldQuota { attempt });
            kinds.push(TransferKind::HoldPartner { attempt });
        }
        for kind in kinds {
            assert_eq!(transfer_kind(transfer_id(kind, base)), Some(kind));
        }
        let past_attempts = 0x10 + PARTIAL_ATTEMPTS_MAX as u128 + 1;
        assert_eq!(transfer_kind(past_attempts << 120 | base), None);
        assert_eq!(transfer_kind(base), None, "tag 0 is never written by the model");
    }

    #[test]
    fn ledgers_map_back_to_their_offering() {
        assert_eq!(offering_of_ledger(ledger_inventory(12)), Some(12));
        assert_eq!(offering_of_ledger(ledger_quota(12)), Some(12));
        assert_eq!(offering_of_ledger(LEDGER_THB), None);
    }
}
