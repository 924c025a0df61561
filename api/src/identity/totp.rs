//! TOTP second factor (RFC 6238): SHA-1, 6 digits, 30-second steps, which is what every
//! authenticator app accepts from an `otpauth://` URL. A code is accepted one step early or
//! late, to forgive a phone's clock drift and the time it takes to type.

use totp_rs::{Algorithm, Secret, TOTP};

pub const ISSUER: &str = "allot";
pub const DIGITS: usize = 6;
pub const STEP_SECONDS: u64 = 30;
/// Steps accepted on either side of the current one.
pub const SKEW_STEPS: u64 = 1;

/// A fresh secret: 160 random bits (the RFC 4226 recommendation), base32 without padding.
pub fn generate_secret() -> String {
    match Secret::generate_secret().to_encoded() {
        Secret::Encoded(text) => text,
        Secret::Raw(_) => unreachable!("to_encoded returns the encoded form"),
    }
}

/// The enrolment URL an authenticator app reads (usually from a QR code), labelled
/// `allot:<account>`.
pub fn otpauth_url(secret: &str, account: &str) -> String {
    format!(
        "otpauth://totp/{ISSUER}:{}?secret={secret}&issuer={ISSUER}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECONDS}",
        percent_encode(account)
    )
}

/// Whether `code` is the 6-digit code for `secret` at `unix_seconds`, one step of skew
/// either way. A malformed secret or code never matches.
pub fn verify(secret: &str, code: &str, unix_seconds: u64) -> bool {
    matching_step(secret, code, unix_seconds).is_some()
}

/// The step (unix seconds / [`STEP_SECONDS`]) whose code `code` is, within one step of
/// `unix_seconds` either way. Sign-in stores it, so that a code works only once.
pub fn matching_step(secret: &str, code: &str, unix_seconds: u64) -> Option<u64> {
    if code.len() != DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let Some(totp) = totp(secret) else {
        tracing::error!("stored TOTP secret is malformed");
        return None;
    };
    let step = unix_seconds / STEP_SECONDS;
    // Every candidate is compared, so the time taken says nothing about which one matched.
    (step.saturating_sub(SKEW_STEPS)..=step + SKEW_STEPS).fold(None, |matched, s| {
        let equal = constant_time_eq(totp.generate(s * STEP_SECONDS).as_bytes(), code.as_bytes());
        if equal {
            Some(s)
        } else {
            matched
        }
    })
}

/// The code for `secret` at `unix_seconds`: what the user's app shows. For tests and tools.
pub fn code_at(secret: &str, unix_seconds: u64) -> Option<String> {
    totp(secret).map(|t| t.generate(unix_seconds))
}

fn totp(secret: &str) -> Option<TOTP> {
    let bytes = Secret::Encoded(secret.to_owned()).to_bytes().ok()?;
    TOTP::new(Algorithm::SHA1, DIGITS, SKEW_STEPS as u8, STEP_SECONDS, bytes).ok()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// RFC 3986 percent-encoding of everything but the unreserved characters, for the label.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B: the ASCII secret "12345678901234567890", in base32.
    const RFC_SECRET: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";

    #[test]
    fn codes_match_the_rfc_6238_vectors() {
        // The RFC lists 8-digit codes; the 6-digit code is their last six digits.
        for (time, code) in [
            (59, "287082"),
            (1_111_111_109, "081804"),
            (1_111_111_111, "050471"),
            (1_234_567_890, "005924"),
            (2_000_000_000, "279037"),
        ] {
            assert_eq!(code_at(RFC_SECRET, time).as_deref(), Some(code), "t={time}");
            assert!(verify(RFC_SECRET, code, time), "t={time}");
        }
    }

    #[test]
    fn one_step_of_skew_is_accepted_and_two_are_not() {
        let t = 1_234_567_890;
        let code = code_at(RFC_SECRET, t).unwrap();
        assert!(verify(RFC_SECRET, &code, t - STEP_SECONDS));
        assert!(verify(RFC_SECRET, &code, t + STEP_SECONDS));
        assert!(!verify(RFC_SECRET, &code, t - 2 * STEP_SECONDS));
        assert!(!verify(RFC_SECRET, &code, t + 2 * STEP_SECONDS));
        let step = t / STEP_SECONDS;
        assert_eq!(matching_step(RFC_SECRET, &code, t + STEP_SECONDS), Some(step));
        assert_eq!(matching_step(RFC_SECRET, &code, t), Some(step));
    }

    #[test]
    fn malformed_codes_and_secrets_never_match() {
        let t = 59;
        for code in ["", "28708", "2870820", "28708a", " 287082", "２８７０８２"] {
            assert!(!verify(RFC_SECRET, code, t), "{code:?}");
        }
        assert!(!verify("not base32!", "287082", t));
        assert!(!verify("GEZDGNBV", "287082", t), "secrets under 128 bits are refused");
        assert!(verify(RFC_SECRET, "287082", 0), "no underflow near the epoch");
    }

    #[test]
    fn generated_secrets_are_160_bit_base32_and_usable() {
        let secret = generate_secret();
        assert_eq!(secret.len(), 32);
        assert!(secret.bytes().all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b)));
        assert_ne!(secret, generate_secret());
        let code = code_at(&secret, 1_700_000_000).unwrap();
        assert!(verify(&secret, &code, 1_700_000_000));
    }

    #[test]
    fn the_enrolment_url_names_the_issuer_and_encodes_the_account() {
        let url = otpauth_url(RFC_SECRET, "somchai+1@example.com");
        assert_eq!(
            url,
            "otpauth://totp/allot:somchai%2B1%40example.com?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\
             &issuer=allot&algorithm=SHA1&digits=6&period=30"
        );
    }
}
