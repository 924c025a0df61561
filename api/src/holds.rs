//! What every path that places a hold shares: the hold's id, derived from its request, the
//! id's text form (the `reservation_id` clients see). A ledger call that runs out of time
//! is `ApiError::ledger_timeout`, the same on every path. Direct reservations, allotments and waitlist offers all use these, so
//! they sit below `reservations` and `fairness`, which both import this module.

use allot_ledger::HoldId;
use sha2::{Digest, Sha256};

/// The hold id of a request: the same person, offering and key always name the same hold,
/// which is what makes a retried request safe.
pub fn hold_id(offering: u32, person: u64, key: &str) -> HoldId {
    hashed_id(b"allot/hold/v1", offering, person, key)
}

/// The hold id of a hold the service places itself (an allotment, a waitlist offer). Its
/// own hash domain keeps it apart from every client's Idempotency-Key: a client who sends
/// `allotment` as a key names a hold of its own, never the allotment's.
pub fn internal_hold_id(offering: u32, person: u64, key: &str) -> HoldId {
    hashed_id(b"allot/hold/internal/v1", offering, person, key)
}

/// The hold id of a partner's request: the partner, offering and key name it, whichever
/// customer it is for, so a retried call holds once and a key reused for another customer
/// is `idempotency_key_reused`. Its own domain keeps it apart from people's keys.
pub fn partner_hold_id(offering: u32, partner: u16, key: &str) -> HoldId {
    hashed_id(b"allot/hold/partner/v1", offering, partner.into(), key)
}

fn hashed_id(domain: &[u8], offering: u32, person: u64, key: &str) -> HoldId {
    let mut hash = Sha256::new();
    hash.update(domain);
    hash.update(offering.to_le_bytes());
    hash.update(person.to_le_bytes());
    hash.update(key.as_bytes());
    let digest = hash.finalize();
    HoldId::from_hash(digest[..16].try_into().expect("16 bytes"))
}

pub fn format_id(id: HoldId) -> String {
    format!("{:030x}", id.get())
}

pub fn parse_id(text: &str) -> Option<HoldId> {
    if text.len() != 30 {
        return None;
    }
    u128::from_str_radix(text, 16).ok().and_then(HoldId::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hold_ids_are_stable_and_distinct_per_person_offering_and_key() {
        let a = hold_id(1, 42, "key-1");
        assert_eq!(a, hold_id(1, 42, "key-1"));
        assert_ne!(a, hold_id(1, 43, "key-1"));
        assert_ne!(a, hold_id(2, 42, "key-1"));
        assert_ne!(a, hold_id(1, 42, "key-2"));
        assert_eq!(parse_id(&format_id(a)), Some(a));
        assert_eq!(parse_id("zz"), None);
    }

    #[test]
    fn a_client_key_never_names_an_internal_hold() {
        for key in ["allotment", "waitlist:1:0"] {
            assert_ne!(hold_id(1, 42, key), internal_hold_id(1, 42, key));
        }
        assert_eq!(internal_hold_id(1, 42, "allotment"), internal_hold_id(1, 42, "allotment"));
    }
}
