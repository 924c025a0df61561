//! The Ed25519 key that signs export manifests.
//!
//! Production passes the key (32-byte seed, hex) in the environment or a file. In
//! development the callers take the seed from the one dev secret store in the data
//! directory (`allot_secrets::DevSecrets`), so that exports from the CLI and the API of one
//! machine carry the same public key; this crate knows no secret store.

use std::path::Path;

pub use ed25519_dalek::{SigningKey, VerifyingKey};

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
    fn a_key_is_its_hex_seed_and_its_public_half_round_trips() {
        let key = from_hex(&"11".repeat(32)).unwrap();
        assert_eq!(key.to_bytes(), [0x11; 32]);
        let public = hex::encode(key.verifying_key().to_bytes());
        assert_eq!(public_from_hex(&public).unwrap(), key.verifying_key());
        assert!(from_hex("zz").is_err());
        assert!(public_from_hex("zz").is_err());
    }
}
