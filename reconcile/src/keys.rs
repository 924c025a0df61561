//! The Ed25519 key that signs export manifests.
//!
//! Production passes the key (32-byte seed, hex) in the environment or a file. In
//! development a key is generated once into the data directory, so that exports from the
//! CLI and the API of one machine carry the same public key.

use std::path::Path;

pub use ed25519_dalek::SigningKey;
use rand::RngCore;

/// File name of the generated development key inside the data directory.
pub const DEV_KEY_FILE: &str = "export_signing_key";

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

/// The development key in `data_dir`, generated (readable by its owner only) if missing.
pub fn load_or_generate(data_dir: &Path) -> Result<SigningKey, String> {
    let path = data_dir.join(DEV_KEY_FILE);
    if path.exists() {
        return from_file(&path);
    }
    let mut seed = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut seed);
    std::fs::create_dir_all(data_dir).map_err(|e| format!("{}: {e}", data_dir.display()))?;
    write_private(&path, hex::encode(seed).as_bytes())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(SigningKey::from_bytes(&seed))
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(bytes)
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
