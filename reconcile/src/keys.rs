//! The Ed25519 key that signs export manifests.
//!
//! Production passes the key (32-byte seed, hex) in the environment or a file. In
//! development the key comes from the one dev secret store in the data directory, so that exports from the
//! CLI and the API of one machine carry the same public key.

use std::path::Path;

use allot_secrets::ExposeSecret;
pub use ed25519_dalek::SigningKey;

/// A key from its hex seed.
pub fn from_hex(text: &str) -> Result<SigningKey, String> {
    let mut seed = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut seed)
        .map_err(|_| "an export signing key is 64 hex digits (a 32-byte Ed25519 seed)")?;
    Ok(SigningKey::from_bytes(&seed))
}

/// A key from a file holding its hex seed.
pub fn from_file(path: &Path) -> Result<SigningKey, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    from_hex(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// The development key of `data_dir`: the one in the dev secret store
/// (`allot_secrets::DevSecrets`), which the API of the same machine signs with too.
pub fn load_or_generate(data_dir: &Path) -> Result<SigningKey, String> {
    let dev = allot_secrets::DevSecrets::load_or_create(data_dir)?;
    from_hex(dev.export_signing_key.expose_secret())
}

/// A pinned public key from its hex form.
pub fn public_from_hex(text: &str) -> Result<ed25519_dalek::VerifyingKey, String> {
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut bytes)
        .map_err(|_| "a public key is 64 hex digits".to_string())?;
    ed25519_dalek::VerifyingKey::from_bytes(&bytes).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_is_kept_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_generate(dir.path()).unwrap();
        let b = load_or_generate(dir.path()).unwrap();
        assert_eq!(a.to_bytes(), b.to_bytes());
        assert!(from_hex("zz").is_err());
    }
}
