//! The server's secrets. Each is configured (production must set them:
//! `ALLOT_TOKEN_SECRET`, `ALLOT_IDENTITY_KEY`, `ALLOT_WEBHOOK_SECRET_BANK`,
//! `ALLOT_EXPORT_SIGNING_KEY`), or in dev mode taken from the one development store
//! (`allot_secrets::DevSecrets`: `data_dir/secrets/dev.json`, 0600 in a 0700 folder).

use allot_secrets::{DevSecrets, ExposeSecret, Secret};

use crate::config::Settings;

/// Keys shorter than this are refused: HMAC keys must be at least as long as the hash.
const SECRET_BYTES_MIN: usize = 32;

/// The secrets every request path needs, as checked bytes. Debug never shows them.
pub struct Secrets {
    pub token_secret: Vec<u8>,
    pub identity_key: Vec<u8>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets([REDACTED])")
    }
}

/// Resolves the token and identity keys.
pub fn load(settings: &Settings) -> Result<Secrets, String> {
    let source = Source::new(settings)?;
    let identity = &settings.identity;
    Ok(Secrets {
        token_secret: source.key("token_secret", &identity.token_secret, |d| &d.token_secret)?,
        identity_key: source.key("identity_key", &identity.identity_key, |d| &d.identity_key)?,
    })
}

/// Where secrets come from: configuration first, then (dev mode only) the dev store.
#[derive(Debug)]
pub struct Source {
    dev: Option<DevSecrets>,
}

impl Source {
    pub fn new(settings: &Settings) -> Result<Source, String> {
        let dev = match settings.dev_mode {
            true => Some(DevSecrets::load_or_create(&settings.data_dir)?),
            false => None,
        };
        Ok(Source { dev })
    }

    /// The configured value, else the dev store's, else `None`.
    pub fn get(&self, configured: &Secret, stored: fn(&DevSecrets) -> &Secret) -> Option<Secret> {
        if !configured.expose_secret().is_empty() {
            return Some(configured.clone());
        }
        self.dev.as_ref().map(|d| stored(d).clone())
    }

    /// A required HMAC key (hex, at least [`SECRET_BYTES_MIN`] bytes) named `name`.
    pub fn key(
        &self,
        name: &str,
        configured: &Secret,
        stored: fn(&DevSecrets) -> &Secret,
    ) -> Result<Vec<u8>, String> {
        let value = self.get(configured, stored).unwrap_or_default();
        decode(name, value.expose_secret())
    }
}

/// A hex key of at least [`SECRET_BYTES_MIN`] bytes.
pub fn decode(name: &str, hex_value: &str) -> Result<Vec<u8>, String> {
    let bytes = hex::decode(hex_value).map_err(|_| format!("{name} must be hex"))?;
    if bytes.len() < SECRET_BYTES_MIN {
        return Err(format!(
            "{name} must be at least {SECRET_BYTES_MIN} bytes (set ALLOT_{})",
            name.to_uppercase()
        ));
    }
    Ok(bytes)
}
