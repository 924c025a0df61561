//! Signed ledger exports from real TigerBeetle: written by `reconcile export`, verified by
//! `reconcile export verify`, and refused after any change, deletion or reordering.

use std::path::Path;

use allot_tests::app::TestApp;
use allot_tests::finance::{export_public_key, reconcile, sale, text};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// `reconcile export verify`, pinning the app's key unless `extra` pins one.
fn verify(app: &TestApp, path: &Path, extra: &[&str]) -> (Option<i32>, String) {
    let mut args = vec!["export", "verify", path.to_str().unwrap()];
    let key = export_public_key(app);
    if extra.is_empty() {
        args.extend_from_slice(&["--public-key", &key]);
    }
    args.extend_from_slice(extra);
    let out = reconcile(app, &args);
    (out.status.code(), text(&out))
}

/// Applies `tamper` to `file` in a copy of the export and expects verification to fail.
fn refused(
    app: &TestApp,
    export: &Path,
    file: &str,
    what: &str,
    tamper: impl Fn(&mut Vec<Vec<u8>>),
) {
    let copy = export.parent().unwrap().join(format!("{file}-{what}"));
    copy_dir(export, &copy);
    let path = copy.join(file);
    let bytes = std::fs::read(&path).unwrap();
    let mut lines: Vec<Vec<u8>> =
        bytes.split_inclusive(|b| *b == b'\n').map(<[u8]>::to_vec).collect();
    tamper(&mut lines);
    std::fs::write(&path, lines.concat()).unwrap();
    let (code, out) = verify(app, &copy, &[]);
    assert_eq!(code, Some(1), "{file} with {what} must fail verification:\n{out}");
    assert!(out.contains("FAILED"), "{out}");
}

#[allot_tests::test]
async fn an_export_verifies_and_any_change_deletion_or_reordering_is_refused() {
    let app = TestApp::spawn().await;
    sale(&app, "export-show").await;
    let dir = tempfile::tempdir().unwrap();
    let export = dir.path().join("export");
    let out = reconcile(&app, &["export", "--out", export.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let key_line = text(&out).lines().find(|l| l.starts_with("public key ")).unwrap().to_owned();
    let public_key = key_line.trim_start_matches("public key ").to_owned();

    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(export.join("manifest.json")).unwrap()).unwrap();
    let body = &manifest["body"];
    assert_eq!(body["public_key"], public_key.as_str());
    // The THB ledger, then the offering's inventory and quota ledgers.
    assert_eq!(body["ledgers"].as_array().unwrap().len(), 3);
    let files: Vec<&str> =
        body["files"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(
        files,
        [
            "accounts.csv",
            "accounts.jsonl",
            "transfers.csv",
            "transfers.jsonl",
            "balances.csv",
            "balances.jsonl"
        ]
    );
    let inventory = &body["totals"][1];
    // Funding + 4 holds + 2 posts + 1 void on the inventory ledger.
    assert_eq!(inventory["transfers"], 8, "{inventory}");
    let transfers = std::fs::read_to_string(export.join("transfers.csv")).unwrap();
    assert!(transfers.starts_with("id,debit_account_id,credit_account_id,amount,"), "{transfers}");

    let (code, out) = verify(&app, &export, &["--public-key", &public_key]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("every record intact"), "{out}");
    let other = allot_reconcile::keys::from_hex(&"11".repeat(32)).unwrap();
    let other = hex::encode(other.verifying_key().to_bytes());
    let (code, out) = verify(&app, &export, &["--public-key", &other]);
    assert_eq!(code, Some(1), "a manifest signed by another key is refused: {out}");

    for file in ["transfers.csv", "transfers.jsonl", "accounts.csv", "balances.jsonl"] {
        let header = usize::from(file.ends_with(".csv"));
        refused(&app, &export, file, "one-byte-changed", |lines| {
            // A digit of the amount (CSV) or of a value (JSON) of the second record.
            let line = &mut lines[header + 1];
            let at = line.iter().position(|b| b.is_ascii_digit() && *b != b'0').unwrap();
            line[at] = if line[at] == b'9' { b'8' } else { line[at] + 1 };
        });
        refused(&app, &export, file, "line-removed", |lines| {
            lines.remove(header + 1);
        });
        refused(&app, &export, file, "last-line-removed", |lines| {
            lines.pop();
        });
        refused(&app, &export, file, "lines-swapped", |lines| {
            lines.swap(header, header + 1);
        });
    }
    // A window before the sale holds nothing of it, and still verifies.
    let early = dir.path().join("early");
    let out = reconcile(
        &app,
        &["export", "--to", "2020-01-01", "--format", "csv", "--out", early.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("exported 0 accounts and 0 transfers"), "{}", text(&out));
    assert_eq!(verify(&app, &early, &[]).0, Some(0));
    // A second export into the same directory is refused rather than overwriting it.
    let again = reconcile(&app, &["export", "--out", export.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(2), "{}", text(&again));

    refused(&app, &export, "manifest.json", "totals-changed", |lines| {
        let text = String::from_utf8(lines[0].clone()).unwrap();
        lines[0] = text.replacen("\"transfers\":8", "\"transfers\":9", 1).into_bytes();
    });
}
