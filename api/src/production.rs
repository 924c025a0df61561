//! Production is the default; development is asked for. Before anything else starts,
//! [`prepare`] checks the settings against the mode:
//!
//! - Production (`dev_mode = false`) refuses to start without each of its secrets, a real
//!   PromptPay biller id, an export signing key and a ticket signing key, and names every missing setting at
//!   once, so an operator fixes them in one go.
//! - Development (`dev_mode = true`) generates secrets, creates an admin and settles play
//!   money. Any of those on an address other machines reach is a gift to them, so dev mode
//!   listens on loopback addresses only.

use std::net::ToSocketAddrs;

use allot_secrets::{ExposeSecret, Secret};

use crate::config::Settings;

/// The made-up biller id dev mode prints in its QR codes when none is configured. A
/// production start refuses it: money paid to it would go nowhere we can see.
pub const DEV_PROMPTPAY_BILLER_ID: &str = "010555512345601";

/// Checks the settings against the mode and fills dev mode's placeholders.
pub fn prepare(mut settings: Settings) -> Result<Settings, String> {
    if settings.dev_mode {
        check_loopback(&settings.http.addr, "ALLOT_HTTP_ADDR")?;
        if settings.payments.promptpay_biller_id.is_empty() {
            settings.payments.promptpay_biller_id = DEV_PROMPTPAY_BILLER_ID.into();
        }
        return Ok(settings);
    }
    let missing = missing_in_production(&settings);
    if !missing.is_empty() {
        return Err(format!(
            "production mode (ALLOT_DEV_MODE is not true) refuses to start without: {}. \
             Set them, or run with ALLOT_DEV_MODE=true on a loopback address for development",
            missing.join("; ")
        ));
    }
    Ok(settings)
}

/// Every production setting that is unset or a placeholder, as `ENV_NAME (what it is)`.
fn missing_in_production(settings: &Settings) -> Vec<String> {
    let unset = |s: &Secret| s.expose_secret().trim().is_empty();
    let mut missing = Vec::new();
    let secrets = [
        ("ALLOT_TOKEN_SECRET", "hex HMAC key of access tokens", &settings.identity.token_secret),
        (
            "ALLOT_IDENTITY_KEY",
            "hex HMAC key of national-ID lookups",
            &settings.identity.identity_key,
        ),
        (
            "ALLOT_WEBHOOK_SECRET_BANK",
            "hex HMAC key of the bank's payment webhooks",
            &settings.payments.webhook_secret_bank,
        ),
        (
            "ALLOT_EXPORT_SIGNING_KEY",
            "hex Ed25519 seed that signs ledger exports",
            &settings.exports.signing_key,
        ),
        (
            "ALLOT_TICKET_SIGNING_KEY",
            "hex Ed25519 seed that signs tickets' QR codes",
            &settings.tickets.signing_key,
        ),
    ];
    for (name, what, secret) in secrets {
        if unset(secret) {
            missing.push(format!("{name} ({what})"));
        }
    }
    let biller = settings.payments.promptpay_biller_id.trim();
    if biller.is_empty() || biller == DEV_PROMPTPAY_BILLER_ID {
        missing.push(
            "ALLOT_PROMPTPAY_BILLER_ID (your PromptPay biller id, 15 digits; the development \
             placeholder is refused)"
                .into(),
        );
    }
    missing
}

/// Refuses an address that resolves to anything but loopback.
fn check_loopback(addr: &str, setting: &str) -> Result<(), String> {
    let resolved: Vec<_> = addr
        .to_socket_addrs()
        .map_err(|e| format!("{setting} {addr:?} is not an address: {e}"))?
        .collect();
    if resolved.is_empty() || resolved.iter().any(|a| !a.ip().is_loopback()) {
        return Err(format!(
            "dev mode serves generated secrets, a dev admin and play money, so it listens on \
             loopback only: {setting} is {addr}. Bind 127.0.0.1, or turn dev mode off"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn production_names_every_missing_setting() {
        let e = prepare(Settings::default()).unwrap_err();
        for name in [
            "ALLOT_TOKEN_SECRET",
            "ALLOT_IDENTITY_KEY",
            "ALLOT_WEBHOOK_SECRET_BANK",
            "ALLOT_EXPORT_SIGNING_KEY",
            "ALLOT_TICKET_SIGNING_KEY",
            "ALLOT_PROMPTPAY_BILLER_ID",
        ] {
            assert!(e.contains(name), "{name} not named in: {e}");
        }
        let mut s = Settings::default();
        s.identity.token_secret = "ab".repeat(32).into();
        s.identity.identity_key = "ab".repeat(32).into();
        s.payments.webhook_secret_bank = "ab".repeat(32).into();
        s.exports.signing_key = "ab".repeat(32).into();
        s.tickets.signing_key = "cd".repeat(32).into();
        s.payments.promptpay_biller_id = DEV_PROMPTPAY_BILLER_ID.into();
        let e = prepare(s.clone()).unwrap_err();
        assert!(e.contains("placeholder") && !e.contains("TOKEN"), "{e}");
        s.payments.promptpay_biller_id = "099400016550100".into();
        assert!(prepare(s).is_ok());
    }

    #[test]
    fn dev_mode_listens_on_loopback_only() {
        let dev = |addr: &str| {
            let mut s = Settings { dev_mode: true, ..Settings::default() };
            s.http.addr = addr.into();
            prepare(s)
        };
        assert!(dev("0.0.0.0:8080").unwrap_err().contains("loopback"));
        assert!(dev("[::]:8080").is_err());
        assert!(dev("192.0.2.1:0").is_err());
        let s = dev("127.0.0.1:0").unwrap();
        assert_eq!(s.payments.promptpay_biller_id, DEV_PROMPTPAY_BILLER_ID);
        assert!(dev("[::1]:0").is_ok());
    }
}
