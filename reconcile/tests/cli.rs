//! The command line itself: every command is explained, and bad input is refused with the
//! exit code that scripts rely on (2: could not run).

use std::process::Command;

fn reconcile(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_reconcile")).args(args).output().expect("runs")
}

#[test]
fn help_explains_every_command() {
    let out = reconcile(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for command in ["check", "export", "statement", "match", "report", "audit"] {
        assert!(help.contains(command), "{command} missing from:\n{help}");
    }
    let out = reconcile(&["export", "--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("verify") && help.contains("--from") && help.contains("--out"), "{help}");
}

#[test]
fn verifying_nothing_fails_and_bad_dates_are_usage_errors() {
    let dir = std::env::temp_dir().join(format!("reconcile-empty-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // A verification trusts only a key the verifier chose: without one it cannot run at all.
    let out = reconcile(&["export", "verify", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--public-key"));
    // With a pinned key (the encoded identity point), an empty folder verifies nothing: it fails.
    let pinned = format!("01{}", "00".repeat(31));
    let out = reconcile(&["export", "verify", dir.to_str().unwrap(), "--public-key", &pinned]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let out = reconcile(&["export", "--from", "yesterday", "--out", "x"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn an_export_without_a_signing_key_is_refused_outside_development() {
    let dir = std::env::temp_dir().join(format!("reconcile-nokey-{}", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_reconcile"))
        .args(["export", "--out", dir.join("out").to_str().unwrap()])
        .env_remove("ALLOT_EXPORT_SIGNING_KEY")
        .env_remove("ALLOT_DEV_MODE")
        .env("ALLOT_DATA_DIR", &dir)
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("ALLOT_EXPORT_SIGNING_KEY"), "{stderr}");
    assert!(!dir.exists(), "a development key was made: {}", dir.display());
}
