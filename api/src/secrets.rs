//! Server secrets. Production supplies them (`ALLOT_TOKEN_SECRET`, `ALLOT_IDENTITY_KEY`);
//! in dev mode missing ones are generated once into `data_dir/secrets.json` so tokens and
//! identity hashes survive restarts.

use std::path::Path;

use rand::RngCore;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::config::Settings;

/// Keys shorter than this are refused: HMAC keys must be at least as long as the hash.
const SECRET_BYTES_MIN: usize = 32;

#[derive(Debug, Serialize, Deserialize)]
struct Stored {
    token_secret: String,
    identity_key: String,
}

#[derive(Debug)]
pub struct Secrets {
    pub token_secret: Vec<u8>,
    pub identity_key: Vec<u8>,
}

pub fn load(settings: &Settings) -> Result<Secrets, String> {
    let (mut token, mut identity) = (settings.token_secret.clone(), settings.identity_key.clone());
    if settings.dev_mode && (token.is_empty() || identity.is_empty()) {
        let stored = load_or_generate(&settings.data_dir.join("secrets.json"), || Stored {
            token_secret: random_key_hex(),
            identity_key: random_key_hex(),
        })?;
        if token.is_empty() {
            token = stored.token_secret;
        }
        if identity.is_empty() {
            identity = stored.identity_key;
        }
    }
    Ok(Secrets {
        token_secret: decode("token_secret", &token)?,
        identity_key: decode("identity_key", &identity)?,
    })
}

pub(crate) fn decode(name: &str, hex_value: &str) -> Result<Vec<u8>, String> {
    let bytes = hex::decode(hex_value).map_err(|_| format!("{name} must be hex"))?;
    if bytes.len() < SECRET_BYTES_MIN {
        return Err(format!(
            "{name} must be at least {SECRET_BYTES_MIN} bytes (set ALLOT_{})",
            name.to_uppercase()
        ));
    }
    Ok(bytes)
}

/// A fresh random 32-byte key, hex.
pub(crate) fn random_key_hex() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Reads dev secrets from `path`, or generates them with `generate` and writes them there,
/// so they survive restarts.
pub(crate) fn load_or_generate<T: Serialize + DeserializeOwned>(
    path: &Path,
    generate: impl FnOnce() -> T,
) -> Result<T, String> {
    if let Ok(text) = std::fs::read_to_string(path) {
        return serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()));
    }
    let stored = generate();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    }
    let text = serde_json::to_string_pretty(&stored).expect("serializes");
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(stored)
}
