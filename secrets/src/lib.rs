//! `allot-secrets`: secret values, and the one store of development secrets.
//!
//! - [`Secret`]: a configured secret (hex text). Its `Debug` prints `[REDACTED]`, it has no
//!   `Display`, and it is wiped from memory on drop, so settings can derive `Debug` and be
//!   logged whole without leaking a key.
//! - [`DevSecrets`]: in development only, every server secret generated once into
//!   `data_dir/secrets/dev.json`, so tokens, identity hashes, webhook signatures and export
//!   signatures survive restarts and the API and the `reconcile` CLI of one machine agree.
//! - [`write_private`]: the one way this project writes a file only its owner may read.
//!
//! Invariants:
//! - A secret file is created whole or not at all (written aside, then linked into place),
//!   mode 0600 in a folder of mode 0700; two processes starting at once agree on one file.
//! - A secret file or folder that others can read is refused, never used: whoever could read
//!   it could mint admin tokens or forge bank webhooks.
//! - Production never reads this store: the service only opens it in dev mode.

use std::io::Write;
use std::path::{Path, PathBuf};

use rand::RngCore;
pub use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

/// A secret value from configuration (hex text), never printed.
pub type Secret = secrecy::SecretString;

/// Bytes of every generated key: as long as the SHA-256 output the HMACs use.
pub const KEY_BYTES: usize = 32;

/// Folder (under the data directory) and file of the development secret store.
pub const DEV_DIR: &str = "secrets";
pub const DEV_FILE: &str = "dev.json";

/// Permission bits a secret file or folder must not have: any access by group or others.
const MODE_SHARED_BITS: u32 = 0o077;

/// Every secret the service needs, generated together for development.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevSecrets {
    #[serde(with = "exposed")]
    pub token_secret: Secret,
    #[serde(with = "exposed")]
    pub identity_key: Secret,
    #[serde(with = "exposed")]
    pub webhook_secret_bank: Secret,
    #[serde(with = "exposed")]
    pub webhook_secret_sandbox: Secret,
    /// An Ed25519 seed: 32 random bytes are a valid key.
    #[serde(with = "exposed")]
    pub export_signing_key: Secret,
    /// An Ed25519 seed that signs named tickets. Empty in a store written before tickets
    /// existed; the API then derives one from the export key (see `allot_api::tickets`).
    #[serde(default, with = "exposed")]
    pub ticket_signing_key: Secret,
}

impl DevSecrets {
    fn generate() -> DevSecrets {
        DevSecrets {
            token_secret: random_key_hex(),
            identity_key: random_key_hex(),
            webhook_secret_bank: random_key_hex(),
            webhook_secret_sandbox: random_key_hex(),
            export_signing_key: random_key_hex(),
            ticket_signing_key: random_key_hex(),
        }
    }

    /// Where the store of `data_dir` lives.
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join(DEV_DIR).join(DEV_FILE)
    }

    /// Reads the store of `data_dir`, creating it on first use.
    pub fn load_or_create(data_dir: &Path) -> Result<DevSecrets, String> {
        let path = Self::path(data_dir);
        if !path.exists() {
            let text = serde_json::to_string_pretty(&Self::generate()).expect("serializes");
            match write_private(&path, text.as_bytes()) {
                Ok(()) => {}
                // Another process created it first: use theirs, so both agree.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(format!("{}: {e}", path.display())),
            }
        }
        let text = read_private(&path)?;
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// A fresh random key, hex.
pub fn random_key_hex() -> Secret {
    let mut bytes = [0u8; KEY_BYTES];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes).into()
}

/// Creates `path` with `bytes`, readable and writable by its owner only (0600), in a folder
/// created 0700 if missing. Fails with `AlreadyExists` rather than replace a file: the bytes
/// go to a private temporary file first, which is then linked into place in one step.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    create_private_dir(dir)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("secret");
    let aside = dir.join(format!(".{name}.{:016x}.tmp", rand::random::<u64>()));
    let written = write_new_private(&aside, bytes).and_then(|()| std::fs::hard_link(&aside, path));
    let _ = std::fs::remove_file(&aside);
    written
}

/// Reads a secret file after checking that neither it nor its folder is open to others.
pub fn read_private(path: &Path) -> Result<String, String> {
    for p in [path, path.parent().unwrap_or(Path::new("."))] {
        check_private(p)?;
    }
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Refuses a file or folder that its group or others may access.
pub fn check_private(path: &Path) -> Result<(), String> {
    let mode = mode_of(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if mode & MODE_SHARED_BITS != 0 {
        return Err(format!(
            "{} has mode {:o}; secrets must be readable by their owner only \
             (chmod go-rwx {})",
            path.display(),
            mode & 0o777,
            path.display()
        ));
    }
    Ok(())
}

#[cfg(unix)]
fn mode_of(path: &Path) -> std::io::Result<u32> {
    use std::os::unix::fs::PermissionsExt;
    Ok(std::fs::metadata(path)?.permissions().mode())
}

#[cfg(not(unix))]
fn mode_of(_: &Path) -> std::io::Result<u32> {
    Ok(0o600)
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

fn write_new_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// The store's file holds the values themselves; only it may expose them.
mod exposed {
    use secrecy::ExposeSecret;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &super::Secret, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(value.expose_secret())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<super::Secret, D::Error> {
        Ok(String::deserialize(d)?.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        mode_of(path).unwrap() & 0o777
    }

    #[test]
    fn the_store_is_created_once_private_and_reread_unchanged() {
        let data = tempfile::tempdir().unwrap();
        let a = DevSecrets::load_or_create(data.path()).unwrap();
        let b = DevSecrets::load_or_create(data.path()).unwrap();
        assert_eq!(a.token_secret.expose_secret(), b.token_secret.expose_secret());
        assert_eq!(a.export_signing_key.expose_secret().len(), 2 * KEY_BYTES);
        assert_ne!(a.token_secret.expose_secret(), a.identity_key.expose_secret());
        #[cfg(unix)]
        {
            assert_eq!(mode(&DevSecrets::path(data.path())), 0o600);
            assert_eq!(mode(&data.path().join(DEV_DIR)), 0o700);
        }
        let leftovers = std::fs::read_dir(data.path().join(DEV_DIR)).unwrap().count();
        assert_eq!(leftovers, 1, "no temporary file is left behind");
    }

    #[cfg(unix)]
    #[test]
    fn a_store_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let data = tempfile::tempdir().unwrap();
        DevSecrets::load_or_create(data.path()).unwrap();
        let path = DevSecrets::path(data.path());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = DevSecrets::load_or_create(data.path()).unwrap_err();
        assert!(err.contains("mode 644"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let dir = data.path().join(DEV_DIR);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let err = DevSecrets::load_or_create(data.path()).unwrap_err();
        assert!(err.contains("mode 755"), "{err}");
    }

    #[test]
    fn write_private_never_replaces_a_file() {
        let data = tempfile::tempdir().unwrap();
        let path = data.path().join("a").join("key");
        write_private(&path, b"first").unwrap();
        let err = write_private(&path, b"second").unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&path).unwrap(), b"first");
    }

    #[test]
    fn a_secret_never_prints_its_value() {
        let secrets = DevSecrets::generate();
        let printed = format!("{secrets:?}");
        assert!(!printed.contains(secrets.token_secret.expose_secret()), "{printed}");
        assert!(printed.contains("REDACTED"), "{printed}");
    }
}
