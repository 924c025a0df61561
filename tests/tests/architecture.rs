//! The architecture holds on the repository, and each check catches the violation it is
//! for when one is planted in an otherwise clean tree.

use std::path::Path;

use allot_tests::architecture::{self, Source};

/// The TigerBeetle client crate's name, spelled so that this file does not name it.
const TB_CRATE: &str = concat!("tigerbeetle", "-", "unofficial");

fn repository() -> Vec<Source> {
    architecture::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
}

#[test]
fn the_repository_keeps_every_architecture_invariant() {
    let tree = repository();
    assert!(tree.iter().any(|s| s.path == "api/src/routes/mod.rs"), "the tree was read");
    let broken = architecture::violations(&tree);
    assert!(broken.is_empty(), "architecture invariants broken:\n{}", broken.join("\n"));
}

/// A small tree that keeps every rule, to plant one violation in at a time.
fn clean() -> Vec<Source> {
    vec![
        Source::new("ledger/Cargo.toml", &format!("[dependencies]\n{TB_CRATE} = \"1\"\n")),
        Source::new("ledger/src/lib.rs", &format!("use {} as tb;\n", TB_CRATE.replace('-', "_"))),
        Source::new("store/Cargo.toml", "[dependencies]\ntokio-postgres = \"0.7\"\n"),
        Source::new("store/src/a.rs", "const Q: &str = \"SELECT id FROM offerings WHERE status = 'held'\";"),
        Source::new("store/migrations/V1__core.sql", "CREATE TABLE offerings (id TEXT);"),
        Source::new("api/Cargo.toml", "[dependencies]\nallot-ledger = { path = \"../ledger\" }\nallot-store.workspace = true\n"),
        Source::new("api/src/lib.rs", "pub mod routes;\npub mod catalog;\n"),
        Source::new("api/src/routes/mod.rs", "use actix_web::web;\nuse crate::catalog::Catalog;\nuse crate::state::AppState;"),
        Source::new("api/src/startup.rs", "use actix_web::App;\nuse crate::routes;"),
        Source::new("api/src/catalog/mod.rs", "//! Read with `SELECT * FROM offerings`; no actix_web here.\nuse crate::error::ApiError;\nlet s = \"held\";"),
        Source::new("api/src/error.rs", "pub struct ApiError;"),
    ]
}

fn with(tree: Vec<Source>, path: &str, text: &str) -> Vec<Source> {
    let mut tree: Vec<Source> = tree.into_iter().filter(|s| s.path != path).collect();
    tree.push(Source::new(path, text));
    tree
}

#[test]
fn a_clean_tree_passes_comments_and_plain_words_included() {
    assert_eq!(architecture::violations(&clean()), Vec::<String>::new());
}

#[test]
fn tigerbeetle_named_outside_ledger_is_caught_in_code_and_manifests() {
    let code = format!("use {}::Account;", TB_CRATE.replace('-', "_"));
    let tree = with(clean(), "api/src/reports.rs", &code);
    assert_eq!(
        architecture::violations(&tree),
        ["api/src/reports.rs: names the TigerBeetle client; only ledger may"]
    );
    let tree = with(clean(), "api/Cargo.toml", &format!("[dependencies]\n{TB_CRATE} = \"1\"\n"));
    assert_eq!(architecture::tigerbeetle_outside_ledger(&tree).len(), 1);
}

#[test]
fn sql_and_status_spellings_outside_store_are_caught() {
    let tree = with(
        clean(),
        "reconcile/src/check.rs",
        "let rows = db.query(\"SELECT seq, hash\n   FROM audit_head\", &[]);",
    );
    let found = architecture::sql_outside_store(&tree);
    assert_eq!(
        found,
        ["reconcile/src/check.rs: SQL outside store (SELECT seq, hash FROM audit_head)"]
    );
    let tree = with(clean(), "api/src/db.rs", "c.execute(r#\"UPDATE outbox SET x = 1\"#, &[]);");
    assert_eq!(architecture::sql_outside_store(&tree).len(), 1, "raw strings too");
    let tree = with(clean(), "api/src/p.rs", "let w = \"status = 'pending'\";");
    assert_eq!(
        architecture::sql_outside_store(&tree),
        ["api/src/p.rs: status 'pending' spelled outside store"]
    );
    let tree = with(clean(), "api/migrations/V9__x.sql", "ALTER TABLE x ADD y INT;");
    assert_eq!(architecture::sql_outside_store(&tree).len(), 1, "a stray migration");
}

#[test]
fn actix_in_a_domain_module_is_caught() {
    let tree = with(clean(), "api/src/fairness/pow.rs", "use actix_web::HttpRequest;");
    assert_eq!(
        architecture::violations(&tree),
        ["api/src/fairness/pow.rs: uses actix outside routes/, startup and main"]
    );
}

#[test]
fn a_dependency_against_the_arrows_is_caught() {
    let tree = with(clean(), "ledger/Cargo.toml", "[dependencies]\nallot-store.workspace = true\n");
    assert_eq!(
        architecture::crate_dependencies(&tree),
        ["ledger/Cargo.toml: ledger must not depend on store"]
    );
    let tree = with(clean(), "api/Cargo.toml", "[dev-dependencies]\nallot-reconcile = \"0\"\n");
    assert_eq!(architecture::crate_dependencies(&tree).len(), 1, "dev-dependencies count");
    let tree = with(clean(), "gadget/Cargo.toml", "[dependencies]\n");
    assert_eq!(architecture::crate_dependencies(&tree).len(), 1, "an unlisted crate");
}

#[test]
fn an_integration_test_without_a_deadline_is_caught() {
    let tree = with(clean(), "tests/tests/api_x.rs", "#[tokio::test]\nasync fn t() {}\n");
    assert_eq!(
        architecture::violations(&tree),
        ["tests/tests/api_x.rs: #[tokio::test] has no deadline; use #[allot_tests::test]"]
    );
    let tree = with(clean(), "tests/tests/api_x.rs", "#[allot_tests::test]\nasync fn t() {}\n");
    assert_eq!(architecture::unbounded_tests(&tree), Vec::<String>::new());
}

#[test]
fn domain_code_taking_the_app_state_is_caught() {
    let tree = with(clean(), "api/src/catalog/mod.rs", "use crate::state::AppState;");
    assert_eq!(
        architecture::violations(&tree),
        ["api module catalog imports state; only the top may"]
    );
}

#[test]
fn an_import_cycle_between_api_modules_is_caught() {
    let tree = with(clean(), "api/src/error.rs", "use crate::catalog::Offering;");
    assert_eq!(architecture::api_import_cycles(&tree), [vec!["catalog", "error"]]);
    let three = with(tree, "api/src/i18n.rs", "use crate::catalog::X;");
    let three = with(three, "api/src/error.rs", "use crate::i18n::Y;");
    assert_eq!(architecture::api_import_cycles(&three), [vec!["catalog", "error", "i18n"]]);
}
