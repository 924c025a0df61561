//! PromptPay bill-payment QR (Thai QR Payment, EMVCo merchant-presented mode), built and
//! parsed by us so that what we print is exactly what we can check.
//!
//! A payload is a string of TLV fields: a 2-digit tag, a 2-digit length, the value. We
//! write the fields a bill payment needs, in tag order:
//!
//! ```text
//! 00 = "01"                     payload format
//! 01 = "11" static | "12" dynamic (dynamic carries an amount)
//! 30 = 00 AID A000000677010112, 01 biller ID, 02 Ref1, 03 Ref2 (optional)
//! 53 = "764"                    currency: baht
//! 54 = amount, two decimals     only in a dynamic QR
//! 58 = "TH"
//! 62 = additional data          optional, kept verbatim
//! 63 = CRC-16/CCITT-FALSE over everything before it, including "6304"
//! ```
//!
//! The parser accepts exactly what the encoder writes, so `encode(parse(s)) == s` for every
//! payload it accepts: a QR that would not survive that round trip is refused rather than
//! half-understood.

use thiserror::Error;

/// Application identifier of a domestic bill payment in tag 30.
pub const AID_BILL_PAYMENT: &str = "A000000677010112";
/// ISO 4217 numeric code of the baht.
pub const CURRENCY_THB: &str = "764";
pub const COUNTRY_TH: &str = "TH";
/// A biller ID is a tax ID plus a 2-digit suffix: 15 digits. Shorter IDs exist in the
/// wild (and in the reference vector), so the codec accepts up to this many digits.
pub const BILLER_ID_DIGITS_MAX: usize = 15;
/// Ref1 and Ref2 are at most 20 characters in Thai bill payments.
pub const REF_CHARS_MAX: usize = 20;
/// The longest amount field EMVCo allows (tag 54).
const AMOUNT_CHARS_MAX: usize = 13;
/// Two decimal digits of length: no TLV value is longer.
const VALUE_CHARS_MAX: usize = 99;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BillPayment {
    /// Who is paid (tag 30, sub-tag 01).
    pub biller_id: String,
    /// The reference that tells us what the money is for (tag 30, sub-tag 02).
    pub ref1: String,
    pub ref2: Option<String>,
    /// `None` makes a static QR: the payer types the amount.
    pub amount_satang: Option<u64>,
    /// Tag 62 (terminal label and the like), written verbatim.
    pub additional_data: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum QrError {
    #[error("field {0} is invalid: {1}")]
    Field(&'static str, &'static str),
    #[error("the payload is cut short or its lengths are wrong")]
    Truncated,
    #[error("unexpected tag {0}")]
    UnexpectedTag(String),
    #[error("CRC mismatch: the payload says {stated}, its content gives {computed}")]
    Crc { stated: String, computed: String },
}

/// CRC-16/CCITT-FALSE: polynomial 0x1021, initial value 0xFFFF, no reflection, no final
/// XOR. Bitwise: payloads are a few hundred bytes, a table would buy nothing.
pub fn crc16_ccitt_false(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0xFFFF;
    for &byte in bytes {
        crc ^= (byte as u16) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 { (crc << 1) ^ 0x1021 } else { crc << 1 };
        }
    }
    crc
}

fn tlv(out: &mut String, tag: &str, value: &str) {
    assert!(value.len() <= VALUE_CHARS_MAX, "TLV value of tag {tag} too long");
    out.push_str(tag);
    out.push_str(&format!("{:02}", value.len()));
    out.push_str(value);
}

/// "1500.00" for 150,000 satang: integers only, never a float.
pub fn format_amount(satang: u64) -> String {
    format!("{}.{:02}", satang / 100, satang % 100)
}

fn parse_amount(text: &str) -> Option<u64> {
    let (baht, cents) = text.split_once('.')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(baht)
        || cents.len() != 2
        || !digits(cents)
        || (baht.len() > 1 && baht.starts_with('0'))
    {
        return None;
    }
    baht.parse::<u64>().ok()?.checked_mul(100)?.checked_add(cents.parse().ok()?)
}

fn valid_reference(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= REF_CHARS_MAX
        && text.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

fn valid_biller_id(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= BILLER_ID_DIGITS_MAX
        && text.bytes().all(|b| b.is_ascii_digit())
}

impl BillPayment {
    /// Checks every field before anything is written: a QR we print must parse.
    pub fn validate(&self) -> Result<(), QrError> {
        if !valid_biller_id(&self.biller_id) {
            return Err(QrError::Field("30.01", "biller ID must be 1-15 digits"));
        }
        if !valid_reference(&self.ref1) {
            return Err(QrError::Field("30.02", "Ref1 must be 1-20 of A-Z and 0-9"));
        }
        if self.ref2.as_deref().is_some_and(|r| !valid_reference(r)) {
            return Err(QrError::Field("30.03", "Ref2 must be 1-20 of A-Z and 0-9"));
        }
        if let Some(amount) = self.amount_satang {
            if amount == 0 || format_amount(amount).len() > AMOUNT_CHARS_MAX {
                return Err(QrError::Field(
                    "54",
                    "amount must be positive and at most 13 characters",
                ));
            }
        }
        if let Some(extra) = &self.additional_data {
            if extra.len() > VALUE_CHARS_MAX || !extra.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(QrError::Field("62", "additional data must be printable ASCII"));
            }
        }
        Ok(())
    }

    /// The QR payload string, CRC included.
    pub fn encode(&self) -> Result<String, QrError> {
        self.validate()?;
        let mut merchant = String::new();
        tlv(&mut merchant, "00", AID_BILL_PAYMENT);
        tlv(&mut merchant, "01", &self.biller_id);
        tlv(&mut merchant, "02", &self.ref1);
        if let Some(ref2) = &self.ref2 {
            tlv(&mut merchant, "03", ref2);
        }
        let mut out = String::new();
        tlv(&mut out, "00", "01");
        tlv(&mut out, "01", if self.amount_satang.is_some() { "12" } else { "11" });
        tlv(&mut out, "30", &merchant);
        tlv(&mut out, "53", CURRENCY_THB);
        if let Some(amount) = self.amount_satang {
            tlv(&mut out, "54", &format_amount(amount));
        }
        tlv(&mut out, "58", COUNTRY_TH);
        if let Some(extra) = &self.additional_data {
            tlv(&mut out, "62", extra);
        }
        out.push_str("6304");
        let crc = crc16_ccitt_false(out.as_bytes());
        out.push_str(&format!("{crc:04X}"));
        Ok(out)
    }

    /// Reads a payload written by [`BillPayment::encode`] (or by anyone following the same
    /// rules), checking the CRC first.
    pub fn parse(payload: &str) -> Result<BillPayment, QrError> {
        if !payload.is_ascii() || payload.len() < 8 {
            return Err(QrError::Truncated);
        }
        let (body, stated) = payload.split_at(payload.len() - 4);
        if !body.ends_with("6304") {
            return Err(QrError::Field("63", "the payload must end with the CRC field"));
        }
        let computed = format!("{:04X}", crc16_ccitt_false(body.as_bytes()));
        if computed != stated {
            return Err(QrError::Crc { stated: stated.to_owned(), computed });
        }
        let fields = split_tlv(&body[..body.len() - 4])?;
        let mut fields = fields.into_iter().peekable();
        let mut take = |tag: &'static str, required: bool| -> Result<Option<&str>, QrError> {
            match fields.peek() {
                Some((t, v)) if *t == tag => {
                    let v = *v;
                    fields.next();
                    Ok(Some(v))
                }
                _ if required => Err(QrError::Field(tag, "missing or out of order")),
                _ => Ok(None),
            }
        };
        if take("00", true)? != Some("01") {
            return Err(QrError::Field("00", "payload format must be 01"));
        }
        let dynamic = match take("01", true)? {
            Some("11") => false,
            Some("12") => true,
            _ => return Err(QrError::Field("01", "point of initiation must be 11 or 12")),
        };
        let merchant = take("30", true)?.expect("required");
        let currency = take("53", true)?;
        let amount = take("54", false)?;
        let country = take("58", true)?;
        let additional_data = take("62", false)?.map(str::to_owned);
        if let Some((tag, _)) = fields.next() {
            return Err(QrError::UnexpectedTag(tag.to_owned()));
        }
        if currency != Some(CURRENCY_THB) {
            return Err(QrError::Field("53", "currency must be 764"));
        }
        if country != Some(COUNTRY_TH) {
            return Err(QrError::Field("58", "country must be TH"));
        }
        let amount_satang = match (dynamic, amount) {
            (true, Some(text)) => Some(
                parse_amount(text).ok_or(QrError::Field("54", "amount must be like 1500.00"))?,
            ),
            (false, None) => None,
            _ => return Err(QrError::Field("54", "a dynamic QR has an amount, a static one none")),
        };
        let (biller_id, ref1, ref2) = parse_bill_payment(merchant)?;
        let parsed = BillPayment { biller_id, ref1, ref2, amount_satang, additional_data };
        parsed.validate()?;
        Ok(parsed)
    }
}

fn parse_bill_payment(merchant: &str) -> Result<(String, String, Option<String>), QrError> {
    let mut biller = None;
    let mut refs = (None, None);
    let mut expected = ["00", "01", "02", "03"].into_iter();
    for (tag, value) in split_tlv(merchant)? {
        // Sub-tags in order, each at most once, 03 optional.
        if !expected.by_ref().any(|t| t == tag) {
            return Err(QrError::UnexpectedTag(format!("30.{tag}")));
        }
        match tag {
            "00" if value == AID_BILL_PAYMENT => {}
            "00" => return Err(QrError::Field("30.00", "not a bill payment AID")),
            "01" => biller = Some(value.to_owned()),
            "02" => refs.0 = Some(value.to_owned()),
            _ => refs.1 = Some(value.to_owned()),
        }
    }
    let biller = biller.ok_or(QrError::Field("30.01", "missing biller ID"))?;
    let ref1 = refs.0.ok_or(QrError::Field("30.02", "missing Ref1"))?;
    Ok((biller, ref1, refs.1))
}

fn split_tlv(text: &str) -> Result<Vec<(&str, &str)>, QrError> {
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        if rest.len() < 4 {
            return Err(QrError::Truncated);
        }
        let (tag, after) = rest.split_at(2);
        let (len, after) = after.split_at(2);
        if !tag.bytes().all(|b| b.is_ascii_digit()) || !len.bytes().all(|b| b.is_ascii_digit()) {
            return Err(QrError::Truncated);
        }
        let len: usize = len.parse().map_err(|_| QrError::Truncated)?;
        if after.len() < len {
            return Err(QrError::Truncated);
        }
        let (value, after) = after.split_at(len);
        out.push((tag, value));
        rest = after;
    }
    Ok(out)
}

/// The payload as a QR code in SVG, for a screen or a printout.
pub fn svg(payload: &str) -> Result<String, String> {
    let code = qrcode::QrCode::with_error_correction_level(payload, qrcode::EcLevel::M)
        .map_err(|e| e.to_string())?;
    Ok(code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(256, 256)
        .quiet_zone(true)
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Published known-good vector: static bill payment with Ref2 and tag 62.
    const KNOWN_GOOD: &str = "00020101021130620016A000000677010112011301122334455660211CUSTOMER0010306INV00153037645802TH62070703SCB6304780E";

    #[test]
    fn crc_matches_the_standard_check_value() {
        assert_eq!(crc16_ccitt_false(b"123456789"), 0x29B1);
        assert_eq!(crc16_ccitt_false(b""), 0xFFFF);
    }

    #[test]
    fn the_known_good_vector_is_reproduced_byte_for_byte() {
        let qr = BillPayment {
            biller_id: "0112233445566".into(),
            ref1: "CUSTOMER001".into(),
            ref2: Some("INV001".into()),
            amount_satang: None,
            additional_data: Some("0703SCB".into()),
        };
        assert_eq!(qr.encode().unwrap(), KNOWN_GOOD);
    }

    #[test]
    fn parsing_round_trips_the_known_vector_and_our_own_payloads() {
        let parsed = BillPayment::parse(KNOWN_GOOD).unwrap();
        assert_eq!(parsed.biller_id, "0112233445566");
        assert_eq!((parsed.ref1.as_str(), parsed.ref2.as_deref()), ("CUSTOMER001", Some("INV001")));
        assert_eq!(parsed.amount_satang, None);
        assert_eq!(parsed.encode().unwrap(), KNOWN_GOOD);

        let ours = BillPayment {
            biller_id: "010555512345601".into(),
            ref1: "7K3M9QX2B8D4F6H1".into(),
            ref2: None,
            amount_satang: Some(100_000_005),
            additional_data: None,
        };
        let payload = ours.encode().unwrap();
        assert!(payload.starts_with("000201010212"), "dynamic: {payload}");
        assert!(payload.contains("54101000000.05"), "{payload}");
        let back = BillPayment::parse(&payload).unwrap();
        assert_eq!(back, ours);
        assert_eq!(back.encode().unwrap(), payload);
    }

    #[test]
    fn a_bad_crc_or_a_damaged_payload_is_refused() {
        let mut bad = KNOWN_GOOD.to_owned();
        bad.replace_range(bad.len() - 4.., "780F");
        assert!(matches!(BillPayment::parse(&bad), Err(QrError::Crc { .. })));
        // One changed digit in the amount must not pass.
        let ours = BillPayment {
            biller_id: "010555512345601".into(),
            ref1: "ABC".into(),
            ref2: None,
            amount_satang: Some(150_000),
            additional_data: None,
        };
        let tampered = ours.encode().unwrap().replace("1500.00", "1600.00");
        assert!(matches!(BillPayment::parse(&tampered), Err(QrError::Crc { .. })));
        assert!(BillPayment::parse("0002").is_err());
        assert!(BillPayment::parse("").is_err());
    }

    #[test]
    fn amounts_are_integers_with_two_decimals() {
        assert_eq!(format_amount(150_000), "1500.00");
        assert_eq!(format_amount(5), "0.05");
        assert_eq!(parse_amount("1500.00"), Some(150_000));
        assert_eq!(parse_amount("0.05"), Some(5));
        for bad in ["1500", "1500.0", "1500.000", ".50", "01.00", "1e3.00", "-1.00"] {
            assert_eq!(parse_amount(bad), None, "{bad}");
        }
    }

    #[test]
    fn invalid_fields_are_refused_before_encoding() {
        let mut qr = BillPayment {
            biller_id: "010555512345601".into(),
            ref1: "abc".into(),
            ref2: None,
            amount_satang: Some(100),
            additional_data: None,
        };
        assert!(qr.encode().is_err(), "lowercase Ref1");
        qr.ref1 = "A".repeat(21);
        assert!(qr.encode().is_err(), "Ref1 too long");
        qr.ref1 = "OK".into();
        qr.biller_id = "0105555123456012".into();
        assert!(qr.encode().is_err(), "16-digit biller");
    }

    #[test]
    fn the_svg_is_a_qr_image() {
        let svg = svg(KNOWN_GOOD).unwrap();
        assert!(svg.starts_with("<?xml") && svg.contains("<svg"), "{}", &svg[..80]);
    }
}
