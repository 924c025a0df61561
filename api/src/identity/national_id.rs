//! The Thai national ID: 13 digits, the last a check digit over the first 12 (weights 13..2,
//! `check = (11 - sum mod 11) mod 10`). A valid check digit does not prove the person exists;
//! it catches typing mistakes before they become a second account.
//!
//! The number is personal data. It is parsed once into [`NationalId`], which never prints
//! itself (its `Debug` is masked and it has no `Display`), and it is stored only as a keyed
//! hash ([`NationalId::lookup_hash`]) so a leaked `users` table does not list citizens' IDs.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::{ApiError, ErrorCode};

/// The number of digits in a Thai national ID.
pub const DIGITS: usize = 13;
/// Input longer than this is refused before looking at it: 13 digits plus generous room for
/// the dashes and spaces people type between the groups.
const INPUT_BYTES_MAX: usize = 32;
/// The shape [`NationalId::parse`] accepts, as the OpenAPI document states it (with
/// `maxLength` 32).
pub const PATTERN: &str = "^[ -]*([0-9][ -]*){13}$";

/// A syntactically valid Thai national ID (check digit verified).
#[derive(Clone, PartialEq, Eq)]
pub struct NationalId {
    /// ASCII digits, no separators.
    digits: [u8; DIGITS],
}

impl NationalId {
    /// Accepts 13 digits, with dashes or spaces anywhere around them (`1-2345-67890-12-1`),
    /// at most 32 characters in all ([`PATTERN`]); anything else is `validation_error`. A
    /// number of that shape whose check digit is wrong is `invalid_national_id` (422). Both
    /// on field `national_id`.
    pub fn parse(input: &str) -> Result<NationalId, ApiError> {
        let malformed = || ApiError::validation("national_id", "13 digits, with dashes or spaces");
        if input.len() > INPUT_BYTES_MAX {
            return Err(malformed());
        }
        let mut digits = [0u8; DIGITS];
        let mut count = 0;
        for byte in input.bytes() {
            match byte {
                b'0'..=b'9' => {
                    *digits.get_mut(count).ok_or_else(malformed)? = byte;
                    count += 1;
                }
                b'-' | b' ' => {}
                _ => return Err(malformed()),
            }
        }
        if count != DIGITS {
            return Err(malformed());
        }
        if check_digit(&digits) != digits[DIGITS - 1] - b'0' {
            return Err(ApiError::field(ErrorCode::InvalidNationalId, "national_id"));
        }
        Ok(NationalId { digits })
    }

    /// The 13 digits without separators. Named loudly on purpose: every caller is a place
    /// where the raw number leaves this type, so it must not go to a log or a response.
    pub fn expose_digits(&self) -> &str {
        std::str::from_utf8(&self.digits).expect("ASCII digits")
    }

    /// The key under which the account is found: HMAC-SHA256 of the 13 digits. Keyed, not a
    /// plain hash, because 10^12 candidate numbers are few enough to hash them all.
    pub fn lookup_hash(&self, key: &[u8]) -> [u8; 32] {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
        mac.update(&self.digits);
        mac.finalize().into_bytes().into()
    }
}

/// The check digit for the first 12 digits of `digits` (ASCII).
fn check_digit(digits: &[u8; DIGITS]) -> u8 {
    let sum: u32 = digits[..DIGITS - 1]
        .iter()
        .zip((2..=13u32).rev())
        .map(|(d, weight)| u32::from(d - b'0') * weight)
        .sum();
    ((11 - sum % 11) % 10) as u8
}

impl std::fmt::Debug for NationalId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NationalId(*************)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "1234567890121";

    #[test]
    fn the_reference_example_is_valid_with_or_without_separators() {
        for input in [VALID, "1-2345-67890-12-1", "1 2345 67890 12 1", " 1-2345-67890-12-1 "] {
            let id = NationalId::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(id.expose_digits(), VALID);
        }
    }

    #[test]
    fn every_wrong_check_digit_is_refused() {
        for last in (0..10).filter(|d| *d != 1) {
            let input = format!("123456789012{last}");
            let error = NationalId::parse(&input).unwrap_err();
            assert_eq!(error.code, ErrorCode::InvalidNationalId);
            assert_eq!(error.field.as_deref(), Some("national_id"));
        }
    }

    #[test]
    fn a_check_of_ten_or_eleven_wraps_to_a_single_digit() {
        // sum mod 11 = 0 gives 11 - 0 = 11 → 1; sum mod 11 = 1 gives 10 → 0.
        assert_eq!(check_digit(b"0000000000000"), 1);
        assert!(NationalId::parse("0000000000001").is_ok());
        // 1 × 2 (the weight of the 12th digit) = 2 → 11 - 2 = 9.
        assert_eq!(check_digit(b"0000000000010"), 9);
        // 6 × 2 = 12, 12 mod 11 = 1 → 10 → 0.
        assert_eq!(check_digit(b"0000000000060"), 0);
        assert!(NationalId::parse("0000000000060").is_ok());
    }

    #[test]
    fn wrong_lengths_and_characters_are_refused() {
        for input in [
            "",
            "123456789012",
            "12345678901211",
            "1234567890l21",
            "１２３４５６７８９０１２１",
            "1_2345_67890_12_1",
            "1-2345-67890-12-1-----------------",
        ] {
            assert!(NationalId::parse(input).is_err(), "{input:?} was accepted");
        }
    }

    #[test]
    fn debug_never_shows_the_number() {
        let id = NationalId::parse(VALID).unwrap();
        let printed = format!("{id:?} {:?}", Some(&id));
        assert!(!printed.contains("1234") && !printed.contains("0121"), "{printed}");
    }

    #[test]
    fn lookup_hash_is_stable_per_key_and_differs_across_keys() {
        let id = NationalId::parse(VALID).unwrap();
        let same = NationalId::parse("1-2345-67890-12-1").unwrap();
        let key = [7u8; 32];
        assert_eq!(id.lookup_hash(&key), same.lookup_hash(&key));
        assert_ne!(id.lookup_hash(&key), id.lookup_hash(&[8u8; 32]));
        let other = NationalId::parse("0000000000001").unwrap();
        assert_ne!(id.lookup_hash(&key), other.lookup_hash(&key));
    }
}
