//! A forged export, from the command line: someone writes an export and signs it with a key
//! of their own. `reconcile export verify` must not take the manifest's word for its
//! signer: without a pinned key it refuses to verify, and with the real key (or a trusted
//! keys file) the forgery fails.

use allot_tests::app::TestApp;
use allot_tests::finance::{export_public_key, reconcile, sale, text};

#[allot_tests::test]
async fn an_export_signed_by_a_stranger_is_not_verified_by_its_own_key() {
    let app = TestApp::spawn().await;
    sale(&app, "forged-show").await;
    let dir = tempfile::tempdir().unwrap();
    let stranger_key = dir.path().join("stranger.key");
    std::fs::write(&stranger_key, "77".repeat(32)).unwrap();
    let forged = dir.path().join("forged");
    let out = reconcile(
        &app,
        &[
            "export",
            "--out",
            forged.to_str().unwrap(),
            "--signing-key",
            stranger_key.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let forged = forged.to_str().unwrap();

    // No pinned key: refused, and the answer says what to pass.
    let out = reconcile(&app, &["export", "verify", forged]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "verified against the manifest's own key: {}",
        text(&out)
    );
    assert!(text(&out).contains("--public-key"), "{}", text(&out));

    // Pinned to the real signer: the forgery fails.
    let real = export_public_key(&app);
    let out = reconcile(&app, &["export", "verify", forged, "--public-key", &real]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));

    // A trusted-keys file: only its keys count.
    let trusted = dir.path().join("trusted.keys");
    std::fs::write(&trusted, format!("# the ministry's export keys\n{real}\n")).unwrap();
    let trusted = trusted.to_str().unwrap();
    let out = reconcile(&app, &["export", "verify", forged, "--trusted-keys", trusted]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));

    // The real export passes with the real key, and says which key it trusted.
    let genuine = dir.path().join("genuine");
    let out = reconcile(&app, &["export", "--out", genuine.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = reconcile(
        &app,
        &["export", "verify", genuine.to_str().unwrap(), "--trusted-keys", trusted],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("pinned by --trusted-keys"), "{}", text(&out));
}
