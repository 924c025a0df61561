//! The Ed25519 key that signs export manifests: `allot_export::keys`, plus the development
//! key of a data directory.
//!
//! In development the key comes from the one dev secret store in the data directory, so
//! that exports from the CLI and the API of one machine carry the same public key.

use std::path::Path;

pub use allot_export::keys::*;
use allot_secrets::ExposeSecret;

/// The development key of `data_dir`: the one in the dev secret store
/// (`allot_secrets::DevSecrets`), which the API of the same machine signs with too.
pub fn load_or_generate(data_dir: &Path) -> Result<SigningKey, String> {
    let dev = allot_secrets::DevSecrets::load_or_create(data_dir)?;
    from_hex(dev.export_signing_key.expose_secret())
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
