//! The development secret store under attack, through the binaries: the API and
//! `reconcile` create it 0600 in a 0700 folder, and refuse to start, naming the file and
//! the fix, when someone has opened it (or its folder) to the group or to others, since
//! whoever can read it can mint admin tokens and forge bank webhooks.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use allot_tests::app::fresh_database;
use allot_tests::finance::{reconcile_binary, text};
use allot_tests::process::Cluster;
use allot_tests::tigerbeetle;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// `reconcile export` in development, which signs with the store's key.
fn reconcile_export(cluster: &Cluster) -> std::process::Output {
    let out = cluster.data_dir().join("export");
    Command::new(reconcile_binary())
        .args(["export", "--out", out.to_str().unwrap()])
        .env_remove("ALLOT_EXPORT_SIGNING_KEY")
        .env("ALLOT_DEV_MODE", "true")
        .env("ALLOT_DATABASE_URL", &cluster.database_url)
        .env("ALLOT_TB_ADDRESSES", tigerbeetle::shared().address())
        .env("ALLOT_DATA_DIR", cluster.data_dir())
        .output()
        .expect("run reconcile")
}

#[allot_tests::test]
async fn the_store_is_private_and_a_readable_one_stops_the_api_and_reconcile() {
    let cluster = Cluster::new(fresh_database().await);
    let mut api = cluster.start().await;
    let (dir, file) =
        (cluster.data_dir().join("secrets"), cluster.data_dir().join("secrets/dev.json"));
    let credentials = cluster.data_dir().join("dev-credentials.json");
    assert_eq!((mode(&dir), mode(&file), mode(&credentials)), (0o700, 0o600, 0o600));
    api.kill();
    let out = reconcile_export(&cluster);
    assert!(out.status.success(), "reconcile with a private store: {}", text(&out));

    for (path, loose) in [(&file, 0o644), (&file, 0o640), (&dir, 0o755)] {
        chmod(path, loose);
        let out = cluster.start_refused(Duration::from_secs(30)).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{stderr}");
        let named = format!("{} has mode {loose:o}", path.display());
        assert!(stderr.contains(&named) && stderr.contains("chmod go-rwx"), "{stderr}");

        let out = reconcile_export(&cluster);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(text(&out).contains(&named), "{}", text(&out));
        chmod(path, if path == &dir { 0o700 } else { 0o600 });
    }
    // Put right, both start again.
    drop(cluster.start().await);
}
