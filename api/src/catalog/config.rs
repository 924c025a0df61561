//! An offering's configuration: what admins post and what `offerings/*.toml` contain.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use allot_store::status::IdentityKind;

use crate::error::{ApiError, ErrorCode};

/// Largest supply of one zone: far above any real issue, far below overflow.
pub const SUPPLY_MAX: u64 = 1_000_000_000_000;
/// Largest price of one unit, in satang (10 million baht).
pub const PRICE_SATANG_MAX: u64 = 1_000_000_000;
/// Largest amount one zone's whole supply, or one person's maximum, may cost, in satang
/// (100 trillion baht). Every sum of amounts (a zone, an offering's 64 zones, a report)
/// then fits a signed 64-bit integer, so nothing computed after a hold can overflow.
pub const AMOUNT_SATANG_MAX: u64 = 10_000_000_000_000_000;
pub const ZONES_MAX: usize = 64;
// The OpenAPI schemas below repeat these limits as literals (an attribute takes no const).
const _: () = assert!(
    SUPPLY_MAX == 1_000_000_000_000
        && PRICE_SATANG_MAX == 1_000_000_000
        && ZONES_MAX == 64
        && allot_ledger::HOLD_SECONDS_MAX == 604_800
);
pub const ID_BYTES_MAX: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OfferingKind {
    Bond,
    Tickets,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ZoneConfig {
    /// Stable, URL-safe zone id (`vip`, `a`, `main`).
    #[schema(pattern = "^[a-z0-9_-]{1,64}$")]
    pub id: String,
    /// Units for sale: baht of face value (bonds) or seats (tickets).
    #[schema(minimum = 1, maximum = 1_000_000_000_000_u64)]
    pub supply: u64,
    /// Price of one unit in satang (a bond's unit is one baht of face value: 100 satang).
    #[schema(minimum = 1, maximum = 1_000_000_000_u64)]
    pub price_satang: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OfferingConfig {
    #[schema(pattern = "^[a-z0-9_-]{1,64}$")]
    pub id: String,
    pub kind: OfferingKind,
    /// Display name by language code (`en`, `th`, `ja`, `ko`, `zh`): English or Thai at least.
    pub name: BTreeMap<String, String>,
    /// A bond has one zone.
    #[schema(min_items = 1, max_items = 64)]
    pub zones: Vec<ZoneConfig>,
    /// A multiple of `lot`.
    #[schema(minimum = 1)]
    pub min_quantity: u64,
    /// A multiple of `lot`, at least `min_quantity`.
    #[schema(minimum = 1, maximum = 1_000_000_000_000_u64)]
    pub max_per_person: u64,
    #[schema(minimum = 1, maximum = 1_000_000_000_000_u64)]
    pub lot: u64,
    /// At most 7 days (the ledger's longest hold).
    #[schema(minimum = 1, maximum = 604_800)]
    pub hold_seconds: u32,
    /// Share of the amount due that confirms a reservation (10 for bonds, 100 for tickets).
    #[schema(minimum = 1, maximum = 100)]
    pub deposit_percent: u8,
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub opens_at: Option<OffsetDateTime>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub closes_at: Option<OffsetDateTime>,
    /// Whether reservations must pass the virtual waiting room.
    #[serde(default)]
    pub queue: bool,
    /// How an oversubscribed offering is shared: first come, or book-building.
    #[serde(default)]
    pub allocation: Allocation,
    /// Book-building: subscriptions are taken from `opens_at` until this instant.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub subscription_closes_at: Option<OffsetDateTime>,
    /// Who may reserve; left out, anyone signed in.
    #[serde(default)]
    pub eligibility: Eligibility,
    /// Tickets: when the show starts. Tickets change hands until the transfer cut-off
    /// before it (`tickets.transfer_cutoff_seconds`); without it, until they are used.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub show_at: Option<OffsetDateTime>,
}

/// An identity kind as offerings' configuration and API bodies spell it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    ThaiNationalId,
    Passport,
    Phone,
    Email,
}

impl Kind {
    pub fn stored(self) -> IdentityKind {
        match self {
            Kind::ThaiNationalId => IdentityKind::ThaiNationalId,
            Kind::Passport => IdentityKind::Passport,
            Kind::Phone => IdentityKind::Phone,
            Kind::Email => IdentityKind::Email,
        }
    }
}

/// Who may reserve an offering: which kinds of identity, and whether it must be verified
/// (a code for a phone or email, a KYC provider for a national ID or passport). Checked on
/// the reservation path from the caller's token, with no database.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Eligibility {
    /// The identity kinds that may reserve; empty (the default) means any.
    #[serde(default)]
    pub identity_kinds: Vec<Kind>,
    /// Whether the identity must be verified.
    #[serde(default)]
    pub verified: bool,
}

impl Eligibility {
    /// `identity_not_eligible` for a kind not listed, then `kyc_required` for an identity
    /// that must be verified and is not.
    pub fn check(&self, identity: Option<IdentityKind>, verified: bool) -> Result<(), ApiError> {
        let listed = |kind: IdentityKind| self.identity_kinds.iter().any(|k| k.stored() == kind);
        if !self.identity_kinds.is_empty() && !identity.is_some_and(listed) {
            return Err(ApiError::new(ErrorCode::IdentityNotEligible));
        }
        if self.verified && !verified {
            return Err(ApiError::new(ErrorCode::KycRequired));
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Allocation {
    /// Reservations are held in the order they reach the ledger.
    #[default]
    FirstCome,
    /// Subscriptions during a window, then the quantity-ceiling rule with a seeded draw.
    BookBuilding,
}

impl OfferingConfig {
    /// Every rule an offering must satisfy, each failure naming its field.
    pub fn validate(&self) -> Result<(), ApiError> {
        // A rule the document's schema states is `validation_error` (400); one between
        // fields, which no schema states, is `inconsistent_request` (422).
        let bad = |field: &str, reason: &str| ApiError::validation(field, reason);
        let inconsistent = |field: &str, reason: &str| ApiError::inconsistent(field, reason);
        if !valid_id(&self.id) {
            return Err(bad("id", "use 1-64 of a-z, 0-9, '-' and '_'"));
        }
        if !self.name.contains_key("en") && !self.name.contains_key("th") {
            return Err(inconsistent("name", "give at least an English or Thai name"));
        }
        if self.zones.is_empty() || self.zones.len() > ZONES_MAX {
            return Err(bad("zones", &format!("give 1 to {ZONES_MAX} zones")));
        }
        if self.kind == OfferingKind::Bond && self.zones.len() != 1 {
            return Err(inconsistent("zones", "a bond has exactly one zone"));
        }
        let mut ids = std::collections::HashSet::new();
        for (i, zone) in self.zones.iter().enumerate() {
            if !valid_id(&zone.id) {
                return Err(bad(&format!("zones[{i}].id"), "use 1-64 of a-z, 0-9, '-' and '_'"));
            }
            if !ids.insert(zone.id.as_str()) {
                return Err(inconsistent(&format!("zones[{i}].id"), "zone ids must be unique"));
            }
            if zone.supply == 0 || zone.supply > SUPPLY_MAX {
                return Err(bad(&format!("zones[{i}].supply"), &format!("1 to {SUPPLY_MAX}")));
            }
            if zone.price_satang == 0 || zone.price_satang > PRICE_SATANG_MAX {
                return Err(bad(
                    &format!("zones[{i}].price_satang"),
                    &format!("1 to {PRICE_SATANG_MAX}"),
                ));
            }
        }
        self.validate_amounts()?;
        if self.lot == 0 || self.lot > SUPPLY_MAX {
            return Err(bad("lot", "must be positive"));
        }
        if self.min_quantity == 0 || !self.min_quantity.is_multiple_of(self.lot) {
            return Err(inconsistent("min_quantity", "must be a positive multiple of lot"));
        }
        if self.max_per_person < self.min_quantity || !self.max_per_person.is_multiple_of(self.lot)
        {
            return Err(inconsistent(
                "max_per_person",
                "must be a multiple of lot, at least min_quantity",
            ));
        }
        if self.hold_seconds == 0 || self.hold_seconds > allot_ledger::HOLD_SECONDS_MAX {
            return Err(bad("hold_seconds", &format!("1 to {}", allot_ledger::HOLD_SECONDS_MAX)));
        }
        if self.deposit_percent == 0 || self.deposit_percent > 100 {
            return Err(bad("deposit_percent", "1 to 100"));
        }
        if let (Some(open), Some(close)) = (self.opens_at, self.closes_at) {
            if close <= open {
                return Err(inconsistent("closes_at", "must be after opens_at"));
            }
        }
        if self.allocation == Allocation::BookBuilding {
            let Some(close) = self.subscription_closes_at else {
                return Err(inconsistent(
                    "subscription_closes_at",
                    "book-building needs a closing time",
                ));
            };
            if self.zones.len() != 1 || self.opens_at.is_some_and(|open| close <= open) {
                return Err(inconsistent(
                    "subscription_closes_at",
                    "one zone, closing after opens_at",
                ));
            }
        }
        Ok(())
    }

    /// Every amount a hold or a report can compute stays within [`AMOUNT_SATANG_MAX`]: a
    /// zone's supply at its price, and the most one person may take at any zone's price.
    fn validate_amounts(&self) -> Result<(), ApiError> {
        let fits = |units: u64, price: u64| {
            units.checked_mul(price).is_some_and(|amount| amount <= AMOUNT_SATANG_MAX)
        };
        if self.max_per_person > SUPPLY_MAX {
            return Err(ApiError::validation("max_per_person", format!("1 to {SUPPLY_MAX}")));
        }
        for (i, zone) in self.zones.iter().enumerate() {
            if !fits(zone.supply, zone.price_satang) {
                return Err(ApiError::inconsistent(
                    format!("zones[{i}].price_satang"),
                    format!("supply × price must be at most {AMOUNT_SATANG_MAX} satang"),
                ));
            }
            if !fits(self.max_per_person, zone.price_satang) {
                return Err(ApiError::inconsistent(
                    "max_per_person",
                    format!("max_per_person × price must be at most {AMOUNT_SATANG_MAX} satang"),
                ));
            }
        }
        Ok(())
    }

    pub fn zone_index(&self, id: &str) -> Option<usize> {
        self.zones.iter().position(|z| z.id == id)
    }
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= ID_BYTES_MAX
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bond() -> OfferingConfig {
        OfferingConfig {
            id: "bond".into(),
            kind: OfferingKind::Bond,
            name: [("en".to_string(), "Bond".to_string())].into(),
            zones: vec![ZoneConfig { id: "main".into(), supply: 10_000, price_satang: 100 }],
            min_quantity: 5_000,
            max_per_person: 10_000,
            lot: 1_000,
            hold_seconds: 86_400,
            deposit_percent: 10,
            opens_at: None,
            closes_at: None,
            queue: false,
            allocation: Allocation::FirstCome,
            subscription_closes_at: None,
            eligibility: Eligibility::default(),
            show_at: None,
        }
    }

    #[test]
    fn eligibility_checks_the_kind_then_the_verification() {
        let bond = Eligibility { identity_kinds: vec![Kind::ThaiNationalId], verified: true };
        let code = |e: &Eligibility, kind, verified| e.check(kind, verified).err().map(|e| e.code);
        let (thai, passport) = (Some(IdentityKind::ThaiNationalId), Some(IdentityKind::Passport));
        assert_eq!(code(&bond, passport, true), Some(ErrorCode::IdentityNotEligible));
        assert_eq!(code(&bond, None, true), Some(ErrorCode::IdentityNotEligible));
        assert_eq!(code(&bond, thai, false), Some(ErrorCode::KycRequired));
        assert_eq!(code(&bond, thai, true), None);
        let concert = Eligibility { identity_kinds: vec![], verified: true };
        assert_eq!(code(&concert, passport, false), Some(ErrorCode::KycRequired));
        assert_eq!(code(&concert, Some(IdentityKind::Phone), true), None);
        assert_eq!(code(&Eligibility::default(), None, false), None);
    }

    #[test]
    fn a_sound_offering_validates_and_each_rule_names_its_field() {
        assert!(bond().validate().is_ok());
        let field = |c: OfferingConfig| c.validate().unwrap_err().field.unwrap();
        assert_eq!(field(OfferingConfig { id: "Bad Id".into(), ..bond() }), "id");
        assert_eq!(field(OfferingConfig { min_quantity: 5_500, ..bond() }), "min_quantity");
        assert_eq!(field(OfferingConfig { deposit_percent: 0, ..bond() }), "deposit_percent");
        assert_eq!(field(OfferingConfig { hold_seconds: 0, ..bond() }), "hold_seconds");
        let costly = ZoneConfig { id: "main".into(), supply: SUPPLY_MAX, price_satang: 100_000 };
        let too_dear = OfferingConfig { zones: vec![costly], max_per_person: 1_000, ..bond() };
        assert_eq!(field(too_dear), "zones[0].price_satang");
        let greedy = OfferingConfig { max_per_person: SUPPLY_MAX, ..bond() };
        let dear = ZoneConfig { id: "main".into(), supply: 10_000, price_satang: PRICE_SATANG_MAX };
        assert_eq!(field(OfferingConfig { zones: vec![dear], ..greedy.clone() }), "max_per_person");
        assert_eq!(field(OfferingConfig { max_per_person: u64::MAX, ..bond() }), "max_per_person");
        let mut two = bond();
        two.zones.push(ZoneConfig { id: "b".into(), supply: 1, price_satang: 1 });
        assert_eq!(field(two), "zones");
    }
}
