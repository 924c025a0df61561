//! The identities a person may register with, and the one key each is found under.
//!
//! - A Thai national ID (13 digits, check digit: [`NationalId`]).
//! - A passport: the issuing state as an ISO 3166-1 alpha-3 code and the document number;
//!   when the machine-readable zone is given too, its ICAO 9303 check digits are verified
//!   and it must name the same state and number ([`super::mrz`]).
//! - A phone number (E.164) or the account's email address, each proven by a one-time code
//!   sent to it ([`super::codes`]).
//!
//! One identity belongs to one account: `users.identity_hash` is unique and is a keyed hash
//! of (kind, country, value), so the same passport number from two states is two identities
//! and the raw value is never stored. A national ID keeps the hash of its 13 digits alone,
//! the key accounts registered before the other kinds are found under.

use allot_store::status::IdentityKind;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

use super::mrz::{self, MrzError};
use super::national_id::NationalId;
use crate::error::{ApiError, ApiResult, ErrorCode};

/// Longest passport number a TD3 zone can carry in its number field.
const PASSPORT_NUMBER_CHARS_MAX: usize = 9;
/// E.164: at most 15 digits after the `+`; fewer than 8 is no international number.
const PHONE_DIGITS: std::ops::RangeInclusive<usize> = 8..=15;
/// Input longer than this is refused before looking at it.
const INPUT_BYTES_MAX: usize = 200;

/// The identity part of a registration, as the client sends it. Its `Debug` names the kind
/// and country, never the number or the zone.
#[derive(Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IdentityInput {
    /// `thai_national_id`, `passport`, `phone` or `email` (the account's email address).
    #[schema(value_type = String, example = "passport")]
    pub kind: String,
    /// Passports: the issuing state, ISO 3166-1 alpha-3 (`KOR`, `JPN`, `THA`).
    pub country: Option<String>,
    /// The national ID, the passport number or the phone number (E.164, `+8210…`).
    pub number: Option<String>,
    /// Passports, optional: the two lines of the machine-readable zone (TD3), whose check
    /// digits are then verified.
    pub mrz: Option<String>,
}

impl std::fmt::Debug for IdentityInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityInput")
            .field("kind", &self.kind)
            .field("country", &self.country)
            .finish_non_exhaustive()
    }
}

/// A parsed identity. Its `Debug` names the kind and country only.
#[derive(Clone, PartialEq, Eq)]
pub enum Document {
    ThaiNationalId(NationalId),
    Passport { country: &'static str, number: String },
    Phone(String),
    Email(String),
}

impl std::fmt::Debug for Document {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Document({}", self.kind())?;
        if let Some(country) = self.country() {
            write!(f, ", {country}")?;
        }
        f.write_str(")")
    }
}

impl Document {
    /// Parses an identity; `email` is the account's (already normalised) address, the
    /// value of the `email` kind.
    pub fn parse(input: &IdentityInput, email: &str) -> ApiResult<Document> {
        let number = input.number.as_deref();
        if [number, input.country.as_deref(), input.mrz.as_deref()]
            .iter()
            .flatten()
            .any(|v| v.len() > INPUT_BYTES_MAX)
        {
            return Err(ApiError::validation(
                "identity",
                format!("at most {INPUT_BYTES_MAX} bytes"),
            ));
        }
        let only = |allowed: &[&str]| -> ApiResult<()> {
            let given = [("country", input.country.is_some()), ("mrz", input.mrz.is_some())];
            match given.iter().find(|(name, set)| *set && !allowed.contains(name)) {
                Some((name, _)) => Err(ApiError::validation(
                    format!("identity.{name}"),
                    format!("not part of a {} identity", input.kind),
                )),
                None => Ok(()),
            }
        };
        match IdentityKind::parse(&input.kind) {
            Some(IdentityKind::ThaiNationalId) => {
                only(&[])?;
                let id = NationalId::parse(required(number, "identity.number")?).map_err(|_| {
                    ApiError::field(ErrorCode::InvalidNationalId, "identity.number")
                })?;
                Ok(Document::ThaiNationalId(id))
            }
            Some(IdentityKind::Passport) => {
                only(&["country", "mrz"])?;
                let country =
                    parse_country(required(input.country.as_deref(), "identity.country")?)?;
                let number = parse_passport_number(required(number, "identity.number")?)?;
                if let Some(zone) = input.mrz.as_deref() {
                    check_zone(zone, country, &number)?;
                }
                Ok(Document::Passport { country, number })
            }
            Some(IdentityKind::Phone) => {
                only(&[])?;
                Ok(Document::Phone(parse_phone(required(number, "identity.number")?)?))
            }
            Some(IdentityKind::Email) => {
                only(&[])?;
                if number.is_some() {
                    return Err(ApiError::validation(
                        "identity.number",
                        "an email identity is the account's email",
                    ));
                }
                Ok(Document::Email(email.to_owned()))
            }
            None => Err(ApiError::validation(
                "identity.kind",
                "one of thai_national_id, passport, phone, email",
            )),
        }
    }

    pub fn kind(&self) -> IdentityKind {
        match self {
            Document::ThaiNationalId(_) => IdentityKind::ThaiNationalId,
            Document::Passport { .. } => IdentityKind::Passport,
            Document::Phone(_) => IdentityKind::Phone,
            Document::Email(_) => IdentityKind::Email,
        }
    }

    /// The issuing state of a passport.
    pub fn country(&self) -> Option<&'static str> {
        match self {
            Document::Passport { country, .. } => Some(country),
            _ => None,
        }
    }

    /// The raw value, for the password rule that it must not be built on it. Named loudly:
    /// it must not reach a log or a response.
    pub fn expose_value(&self) -> &str {
        match self {
            Document::ThaiNationalId(id) => id.expose_digits(),
            Document::Passport { number, .. } => number,
            Document::Phone(number) => number,
            Document::Email(email) => email,
        }
    }

    /// The key the account is found under: HMAC-SHA256 with the identity key, over the 13
    /// digits for a national ID, and over (kind, country, value) for the others.
    pub fn lookup_hash(&self, key: &[u8]) -> [u8; 32] {
        if let Document::ThaiNationalId(id) = self {
            return id.lookup_hash(key);
        }
        let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
        for part in [b"allot/identity/v1".as_slice(), self.kind().as_str().as_bytes()] {
            mac.update(part);
            mac.update(&[0]);
        }
        mac.update(self.country().unwrap_or("").as_bytes());
        mac.update(&[0]);
        mac.update(self.expose_value().as_bytes());
        mac.finalize().into_bytes().into()
    }
}

fn required<'a>(value: Option<&'a str>, field: &str) -> ApiResult<&'a str> {
    value.ok_or_else(|| ApiError::validation(field, "required for this kind of identity"))
}

/// An ISO 3166-1 alpha-3 code, upper case.
fn parse_country(raw: &str) -> ApiResult<&'static str> {
    let code = raw.trim().to_ascii_uppercase();
    isocountry::CountryCode::for_alpha3(&code).map(|c| c.alpha3()).map_err(|_| {
        ApiError::field(ErrorCode::InvalidPassport, "identity.country")
            .with_arg("reason", "an ISO 3166-1 alpha-3 country code")
    })
}

/// Letters and digits as printed, up to 9, upper-cased; spaces are ignored.
fn parse_passport_number(raw: &str) -> ApiResult<String> {
    let number: String = raw.chars().filter(|c| *c != ' ').collect::<String>().to_uppercase();
    if number.is_empty()
        || number.len() > PASSPORT_NUMBER_CHARS_MAX
        || !number.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    {
        return Err(ApiError::field(ErrorCode::InvalidPassport, "identity.number")
            .with_arg("reason", "1 to 9 letters and digits"));
    }
    Ok(number)
}

/// The zone's check digits hold, and it names the same state and number.
fn check_zone(zone: &str, country: &str, number: &str) -> ApiResult<()> {
    let refused = |reason: &str| {
        ApiError::field(ErrorCode::InvalidPassport, "identity.mrz").with_arg("reason", reason)
    };
    let td3 = mrz::parse_td3(zone).map_err(|e| match e {
        MrzError::Shape => refused("two lines of 44 characters of a passport's zone"),
        MrzError::CheckDigit(_) => refused("a check digit does not match"),
    })?;
    // Doc 9303 writes Germany as `D<<`; every other state by its alpha-3 code.
    let state = if td3.issuing_state == "D<<" { "DEU" } else { td3.issuing_state.as_str() };
    if state != country || td3.number != number {
        return Err(refused("the zone names another country or number"));
    }
    Ok(())
}

/// E.164: `+`, then 8 to 15 digits, the first not 0; spaces, dashes and brackets ignored.
fn parse_phone(raw: &str) -> ApiResult<String> {
    let invalid = || ApiError::validation("identity.number", "a phone number like +66812345678");
    let trimmed = raw.trim();
    let rest = trimmed.strip_prefix('+').ok_or_else(invalid)?;
    let mut digits = String::with_capacity(16);
    for c in rest.chars() {
        match c {
            '0'..='9' => digits.push(c),
            ' ' | '-' | '(' | ')' => {}
            _ => return Err(invalid()),
        }
    }
    if !PHONE_DIGITS.contains(&digits.len()) || digits.starts_with('0') {
        return Err(invalid());
    }
    Ok(format!("+{digits}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(
        kind: &str,
        country: Option<&str>,
        number: Option<&str>,
        mrz: Option<&str>,
    ) -> IdentityInput {
        IdentityInput {
            kind: kind.into(),
            country: country.map(Into::into),
            number: number.map(Into::into),
            mrz: mrz.map(Into::into),
        }
    }

    /// The Doc 9303 specimen with Korea as its issuing state: no check digit covers the
    /// state, so every printed digit still holds.
    const KOR_ZONE: &str = "P<KORERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<\n\
                            L898902C36KOR7408122F1204159ZE184226B<<<<<10";

    #[test]
    fn a_passport_needs_a_real_country_and_a_sane_number() {
        let ok =
            Document::parse(&input("passport", Some("kor"), Some("m1234 5678"), None), "a@b.c");
        assert_eq!(ok.unwrap(), Document::Passport { country: "KOR", number: "M12345678".into() });
        for (country, number, field) in [
            ("XYZ", "M12345678", "identity.country"),
            ("KR", "M12345678", "identity.country"),
            ("KOR", "M1234567890", "identity.number"),
            ("KOR", "M-1234", "identity.number"),
        ] {
            let e = Document::parse(&input("passport", Some(country), Some(number), None), "")
                .unwrap_err();
            assert_eq!((e.code, e.field.as_deref()), (ErrorCode::InvalidPassport, Some(field)));
        }
    }

    #[test]
    fn a_passport_zone_must_check_and_agree_with_the_number() {
        let with = |number: &str, zone: &str| {
            Document::parse(&input("passport", Some("KOR"), Some(number), Some(zone)), "")
        };
        assert!(with("L898902C3", KOR_ZONE).is_ok());
        let e = with("L898902C4", KOR_ZONE).unwrap_err();
        assert_eq!(
            (e.code, e.field.as_deref()),
            (ErrorCode::InvalidPassport, Some("identity.mrz"))
        );
        let e = with("L898902C3", &KOR_ZONE.replace("7408122", "7408123")).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("identity.mrz"));
        let e =
            Document::parse(&input("passport", Some("JPN"), Some("L898902C3"), Some(KOR_ZONE)), "")
                .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("identity.mrz"));
    }

    #[test]
    fn phones_are_e164() {
        let phone = |n: &str| Document::parse(&input("phone", None, Some(n), None), "");
        assert_eq!(phone("+66 81-234-5678").unwrap(), Document::Phone("+66812345678".into()));
        for bad in ["0812345678", "+0812345678", "+6681", "+66812345678901234", "+66 81x"] {
            assert!(phone(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn one_identity_one_key_across_kinds_and_countries() {
        let key = [7u8; 32];
        let kor = Document::Passport { country: "KOR", number: "M12345678".into() };
        let jpn = Document::Passport { country: "JPN", number: "M12345678".into() };
        assert_ne!(kor.lookup_hash(&key), jpn.lookup_hash(&key));
        assert_eq!(kor.lookup_hash(&key), kor.clone().lookup_hash(&key));
        let phone = Document::Phone("+66812345678".into());
        let email = Document::Email("+66812345678".into());
        assert_ne!(phone.lookup_hash(&key), email.lookup_hash(&key));
        let thai = Document::ThaiNationalId(NationalId::parse("1234567890121").unwrap());
        let same = NationalId::parse("1234567890121").unwrap().lookup_hash(&key);
        assert_eq!(thai.lookup_hash(&key), same, "national IDs keep their earlier key");
    }

    #[test]
    fn fields_of_another_kind_are_refused_and_debug_hides_the_value() {
        let e = Document::parse(&input("phone", Some("KOR"), Some("+66812345678"), None), "")
            .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("identity.country"));
        assert!(Document::parse(&input("fax", None, None, None), "").is_err());
        let printed = format!("{:?}", Document::Passport { country: "KOR", number: "M1".into() });
        assert_eq!(printed, "Document(passport, KOR)");
    }
}
