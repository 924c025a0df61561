//! The machine-readable zone of a passport (ICAO Doc 9303 Part 4, TD3: two lines of 44
//! characters), read only as far as registration needs: the issuing state, the document
//! number, and the check digits that catch a mistyped or made-up zone.
//!
//! A check digit (Doc 9303 Part 3, 4.9) weights the characters 7, 3, 1, 7, 3, 1, …: digits
//! count as themselves, `A`–`Z` as 10–35, the filler `<` as 0; the digit is the sum mod 10.
//! Line 2 carries five: document number (position 10), date of birth (20), date of expiry
//! (28), personal number (43, which may be `<` when that field is all fillers) and the
//! composite (44) over positions 1–10, 14–20 and 22–43.

/// Characters per TD3 line.
pub const LINE: usize = 44;

/// What a valid zone tells about its passport.
#[derive(Clone, PartialEq, Eq)]
pub struct Td3 {
    /// The issuing state as the zone spells it (three letters, fillers as `<`).
    pub issuing_state: String,
    /// The document number without its trailing fillers.
    pub number: String,
}

/// Names neither the number nor the zone.
impl std::fmt::Debug for Td3 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Td3").field("issuing_state", &self.issuing_state).finish_non_exhaustive()
    }
}

/// Why a zone was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MrzError {
    /// Not two lines of 44 characters of `A`–`Z`, `0`–`9` and `<`, or not a passport (`P`).
    Shape,
    /// One of the check digits does not match; the position (1-based, line 2) says which.
    CheckDigit(usize),
}

/// Parses a TD3 zone: the two lines separated by a line break, or run together (88
/// characters). Spaces around the lines are ignored; letters must be upper case, as printed.
pub fn parse_td3(zone: &str) -> Result<Td3, MrzError> {
    let joined: String = zone.split_whitespace().collect();
    if joined.len() != 2 * LINE || !joined.bytes().all(is_mrz_char) {
        return Err(MrzError::Shape);
    }
    let (line1, line2) = joined.split_at(LINE);
    if !line1.starts_with('P') {
        return Err(MrzError::Shape);
    }
    let l2 = line2.as_bytes();
    let checks: [(std::ops::Range<usize>, usize); 3] = [(0..9, 9), (13..19, 19), (21..27, 27)];
    for (field, at) in checks {
        if check_digit(&l2[field]) != l2[at] {
            return Err(MrzError::CheckDigit(at + 1));
        }
    }
    // The personal number's check digit may be a filler when the field is all fillers.
    let personal = &l2[28..42];
    let personal_ok =
        check_digit(personal) == l2[42] || (l2[42] == b'<' && personal.iter().all(|c| *c == b'<'));
    if !personal_ok {
        return Err(MrzError::CheckDigit(43));
    }
    let composite: Vec<u8> = [&l2[0..10], &l2[13..20], &l2[21..43]].concat();
    if check_digit(&composite) != l2[43] {
        return Err(MrzError::CheckDigit(44));
    }
    Ok(Td3 {
        issuing_state: line1[2..5].to_owned(),
        number: line2[0..9].trim_end_matches('<').to_owned(),
    })
}

fn is_mrz_char(c: u8) -> bool {
    c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'<'
}

/// The check digit of `field`, as an ASCII digit.
pub fn check_digit(field: &[u8]) -> u8 {
    const WEIGHTS: [u32; 3] = [7, 3, 1];
    let sum: u32 = field
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let value = match c {
                b'0'..=b'9' => u32::from(c - b'0'),
                b'A'..=b'Z' => u32::from(c - b'A') + 10,
                _ => 0,
            };
            value * WEIGHTS[i % 3]
        })
        .sum();
    b'0' + (sum % 10) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The specimen passport of Utopia printed in ICAO Doc 9303 Part 4 (Appendix A to
    /// Part 4, the TD3 MRP data page): every check digit below is the document's.
    const SPECIMEN_1: &str = "P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<";
    const SPECIMEN_2: &str = "L898902C36UTO7408122F1204159ZE184226B<<<<<10";

    #[test]
    fn the_doc_9303_specimen_passes_with_its_printed_check_digits() {
        assert_eq!(check_digit(b"L898902C3"), b'6', "document number");
        assert_eq!(check_digit(b"740812"), b'2', "date of birth");
        assert_eq!(check_digit(b"120415"), b'9', "date of expiry");
        assert_eq!(check_digit(b"ZE184226B<<<<<"), b'1', "personal number");
        assert_eq!(check_digit(b"L898902C3674081221204159ZE184226B<<<<<1"), b'0', "composite");
        let zone = format!("{SPECIMEN_1}\n{SPECIMEN_2}");
        let td3 = parse_td3(&zone).unwrap();
        assert_eq!((td3.issuing_state.as_str(), td3.number.as_str()), ("UTO", "L898902C3"));
        assert_eq!(parse_td3(&format!("{SPECIMEN_1}{SPECIMEN_2}")).unwrap(), td3);
    }

    #[test]
    fn every_altered_check_digit_of_the_specimen_is_refused() {
        for (at, field) in
            [(10, "number"), (20, "birth"), (28, "expiry"), (43, "personal"), (44, "all")]
        {
            let printed = SPECIMEN_2.as_bytes()[at - 1];
            for digit in (b'0'..=b'9').filter(|d| *d != printed) {
                let mut line = SPECIMEN_2.as_bytes().to_vec();
                line[at - 1] = digit;
                let zone = format!("{SPECIMEN_1}\n{}", String::from_utf8(line).unwrap());
                assert_eq!(parse_td3(&zone), Err(MrzError::CheckDigit(at)), "{field} {digit}");
            }
        }
    }

    #[test]
    fn a_changed_number_no_longer_matches_its_check_digit() {
        let line = SPECIMEN_2.replacen("L898902C3", "L898902C4", 1);
        assert_eq!(parse_td3(&format!("{SPECIMEN_1}\n{line}")), Err(MrzError::CheckDigit(10)));
    }

    #[test]
    fn wrong_shapes_are_refused() {
        for zone in [
            String::new(),
            SPECIMEN_2.to_owned(),
            format!("{SPECIMEN_1}\n{}", &SPECIMEN_2[..43]),
            format!("{}\n{SPECIMEN_2}", SPECIMEN_1.to_lowercase()),
            format!("{}\n{SPECIMEN_2}", SPECIMEN_1.replacen('P', "I", 1)),
        ] {
            assert_eq!(parse_td3(&zone), Err(MrzError::Shape), "{zone:?}");
        }
    }
}
