//! The development admin: in dev mode, a fresh database gets one admin (TOTP enabled) whose
//! credentials are written to `data_dir/dev-credentials.json`, readable by the owner only,
//! so a developer can sign in as staff without a manual setup step.

use std::path::Path;

use allot_store::identity::{self as store, DevAdmin};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::RngCore;
use serde::{Deserialize, Serialize};

use super::national_id::NationalId;
use super::{password, totp, users, Identity};

/// The credentials file, under the data directory.
pub const CREDENTIALS_FILE: &str = "dev-credentials.json";
const EMAIL: &str = "admin@allot.local";
/// A valid but obviously made-up national ID (1, then zeros, then its check digit).
const NATIONAL_ID: &str = "1000000000009";
/// Random bytes of the generated password (192 bits, 32 base64url characters).
const PASSWORD_BYTES: usize = 24;

#[derive(Serialize, Deserialize)]
struct DevCredentials {
    email: String,
    password: String,
    totp_secret: String,
}

/// Names neither the password nor the secret.
impl std::fmt::Debug for DevCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevCredentials").field("email", &self.email).finish_non_exhaustive()
    }
}

/// When no admin exists, creates one and writes its credentials to
/// `data_dir/`[`CREDENTIALS_FILE`]. Does nothing otherwise, so restarts keep the admin and
/// the file from the first start. Only for dev mode: the caller checks it.
pub async fn ensure_admin(identity: &Identity, data_dir: &Path) -> Result<(), String> {
    let mut client = identity.db.get().await.map_err(|e| e.to_string())?;
    let tx = client.transaction().await.map_err(|e| e.to_string())?;
    // Several API processes may start at once; only one may create the admin and write
    // the file, or the file could name a password the database does not hold.
    store::lock_dev_admin(&tx).await.map_err(|e| e.to_string())?;
    if store::any_admin(&tx).await.map_err(|e| e.to_string())? {
        return Ok(());
    }
    let credentials = DevCredentials {
        email: EMAIL.into(),
        password: {
            let mut raw = [0u8; PASSWORD_BYTES];
            rand::thread_rng().fill_bytes(&mut raw);
            URL_SAFE_NO_PAD.encode(raw)
        },
        totp_secret: totp::generate_secret(),
    };
    let password_hash =
        password::hash(credentials.password.clone()).await.map_err(|e| e.to_string())?;
    let national_id = NationalId::parse(NATIONAL_ID).map_err(|e| e.to_string())?;
    let admin = DevAdmin {
        user_id: users::random_user_id(),
        identity_hash: &national_id.lookup_hash(&identity.identity_key),
        email: &credentials.email,
        password_hash: &password_hash,
        totp_secret: &credentials.totp_secret,
    };
    let user_id = store::upsert_dev_admin(&tx, &admin)
        .await
        .map_err(|e| format!("creating the dev admin: {e}"))?;
    // A taken-over account's earlier sign-ins must not carry over to the new admin.
    identity.revoke_sessions(&tx, user_id, None).await.map_err(|e| format!("{e:?}"))?;
    let path = data_dir.join(CREDENTIALS_FILE);
    replace_private(&path, &serde_json::to_vec_pretty(&credentials).expect("serializes"))?;
    tx.commit().await.map_err(|e| e.to_string())?;
    tracing::info!(path = %path.display(), "dev admin created; credentials written");
    Ok(())
}

/// Writes `bytes` to `path` as a private (0600) file, replacing an older one: the file of
/// an earlier dev admin, since demoted, names a password the database no longer holds.
/// `write_private` never replaces a file, so the old one goes first; the advisory lock
/// keeps other API processes of this database out meanwhile.
fn replace_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let fail = |e: std::io::Error| format!("{}: {e}", path.display());
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(fail(e)),
        _ => {}
    }
    allot_secrets::write_private(path, bytes).map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dev_admin_national_id_is_valid() {
        assert!(NationalId::parse(NATIONAL_ID).is_ok());
    }

    #[cfg(unix)]
    #[test]
    fn the_credentials_file_is_replaced_and_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("allot-dev-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir(&dir).unwrap();
        let path = dir.join(CREDENTIALS_FILE);
        std::fs::write(&path, b"old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        replace_private(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
