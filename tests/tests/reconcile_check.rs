//! `reconcile check`, `statement import`, `match` and `report` against a real sale in real
//! TigerBeetle and Postgres: a clean sale reconciles to zero, and each kind of tampering
//! is caught and named.

use allot_reconcile::indicatif::ProgressBar;
use allot_reconcile::{check, matching, report, statement, store};
use allot_tests::app::TestApp;
use allot_tests::finance::{reconcile, sale, text};
use allot_tests::tigerbeetle;

async fn run_check(app: &TestApp) -> check::CheckReport {
    let db = store::connect(&app.database_url).await.unwrap();
    check::run(&app.state.ledger, &db, &ProgressBar::hidden()).await.unwrap()
}

fn kinds(report: &check::CheckReport) -> Vec<(&'static str, String)> {
    report.discrepancies.iter().map(|d| (d.kind, d.subject.clone())).collect()
}

#[allot_tests::test]
async fn a_clean_sale_reconciles_and_each_tampering_is_named() {
    let _ = tigerbeetle::shared();
    let app = TestApp::spawn().await;
    let sale = sale(&app, "check-show").await;

    let clean = run_check(&app).await;
    assert!(clean.discrepancies.is_empty(), "{:?}", clean.discrepancies);
    let deposits = clean.summary.iter().find(|r| r.figure == "deposits (satang)").unwrap();
    assert_eq!(deposits.ledger, deposits.postgres);
    assert_ne!(deposits.ledger, "0");
    let cli = reconcile(&app, &["check"]);
    assert_eq!(cli.status.code(), Some(0), "{}", text(&cli));
    assert!(text(&cli).contains("0 discrepancies"), "{}", text(&cli));

    // A Postgres reservation row altered: one more seat than the ledger holds.
    let db = app.db().await;
    db.execute(
        "UPDATE reservations SET quantity = quantity + 1 WHERE reservation_id = $1",
        &[&sale.held],
    )
    .await
    .unwrap();
    let report = run_check(&app).await;
    assert_eq!(
        kinds(&report),
        [("reservation_quantity_mismatch", format!("reservation:{}", sale.held))],
    );
    let cli = reconcile(&app, &["check"]);
    assert_eq!(cli.status.code(), Some(1), "{}", text(&cli));
    assert!(text(&cli).contains("reservation_quantity_mismatch"), "{}", text(&cli));
    db.execute(
        "UPDATE reservations SET quantity = quantity - 1 WHERE reservation_id = $1",
        &[&sale.held],
    )
    .await
    .unwrap();

    // A cancelled reservation shown as confirmed.
    db.execute(
        "UPDATE reservations SET status = 'confirmed' WHERE reservation_id = $1",
        &[&sale.cancelled],
    )
    .await
    .unwrap();
    let names: Vec<_> = run_check(&app).await.discrepancies.iter().map(|d| d.kind).collect();
    assert!(names.contains(&"reservation_status_mismatch"), "{names:?}");
    db.execute(
        "UPDATE reservations SET status = 'cancelled' WHERE reservation_id = $1",
        &[&sale.cancelled],
    )
    .await
    .unwrap();
    assert!(run_check(&app).await.discrepancies.is_empty());

    // A payment recorded as succeeded that never moved money in the ledger.
    db.execute(
        "INSERT INTO payment_notifications
            (gateway, transaction_id, reference, amount_satang, paid_at, ledger_id, outcome, body, applied_at)
         VALUES ('bank', 'GHOST-1', 'NOSUCHREF', 150000, now(), $1, 'succeeded', '{}', now())",
        &[&format!("{:030x}", 0xdead_beef_u128)],
    )
    .await
    .unwrap();
    let report = run_check(&app).await;
    assert!(
        kinds(&report)
            .contains(&("payment_without_ledger_movement", "payment:bank/GHOST-1".into())),
        "{:?}",
        report.discrepancies
    );
    db.execute("DELETE FROM payment_notifications WHERE transaction_id = 'GHOST-1'", &[])
        .await
        .unwrap();

    // A recorded payment amount off by one satang from the money the ledger moved.
    let txn = "check-show-T1";
    db.execute("UPDATE payment_notifications SET amount_satang = amount_satang + 1 WHERE transaction_id = $1", &[&txn])
        .await
        .unwrap();
    let report = run_check(&app).await;
    let names: Vec<_> = kinds(&report);
    assert!(
        names.contains(&("payment_amount_mismatch", format!("payment:bank/{txn}"))),
        "{names:?}"
    );
    assert!(names.iter().any(|(k, _)| *k == "deposit_total_mismatch"), "{names:?}");
    db.execute("UPDATE payment_notifications SET amount_satang = amount_satang - 1 WHERE transaction_id = $1", &[&txn])
        .await
        .unwrap();
    assert!(run_check(&app).await.discrepancies.is_empty());
}

#[allot_tests::test]
async fn statements_match_payments_and_exceptions_are_named() {
    let app = TestApp::spawn().await;
    let sale = sale(&app, "match-show").await;
    let (first, second) = (&sale.paid[0].1, &sale.paid[1].1);
    let amount = |i: &serde_json::Value| i["amount_satang"].as_u64().unwrap();
    let baht = |satang: u64| format!("{}.{:02}", satang / 100, satang % 100);
    let dir = tempfile::tempdir().unwrap();

    // A CSV statement: the first payment exactly (booked the next day, lower-case ref),
    // the second one satang more than paid, and money nobody told us about.
    let day = allot_tests::finance::paid_today();
    let next = day.next_day().unwrap();
    let (d, m, y) = (next.day(), next.month() as u8, next.year());
    let csv = format!(
        "booking_date,amount,currency,reference,entry_id\n\
         {d:02}/{m:02}/{y},{},THB,{},B-1\n\
         {day},{},THB,{},B-2\n\
         {day},500.00,THB,UNKNOWNREF0000,B-3\n\
         {day},-20.00,THB,FEE,B-4\n",
        baht(amount(first)),
        first["reference"].as_str().unwrap().to_lowercase(),
        baht(amount(second) + 1),
        second["reference"].as_str().unwrap(),
    );
    let csv_path = dir.path().join("march.csv");
    std::fs::write(&csv_path, csv).unwrap();
    let out = reconcile(&app, &["statement", "import", csv_path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("4 lines imported"), "{}", text(&out));
    let again = reconcile(&app, &["statement", "import", csv_path.to_str().unwrap()]);
    assert!(text(&again).contains("0 lines imported, 4 already present"), "{}", text(&again));

    let db = store::connect(&app.database_url).await.unwrap();
    let report = matching::run(&db, None, None, 3).await.unwrap();
    assert_eq!(report.matched.len(), 1, "{:?}", report);
    assert_eq!(report.debits_skipped, 1);
    let mut names: Vec<_> =
        report.exceptions.iter().map(|e| (e.kind, e.subject.as_str())).collect();
    names.sort();
    assert_eq!(
        names,
        [
            ("amount_mismatch", "statement:march/B-2"),
            ("statement_line_without_payment", "statement:march/B-3")
        ]
    );
    let mismatch = report.exceptions.iter().find(|e| e.kind == "amount_mismatch").unwrap();
    assert!(mismatch.detail.contains("difference 1"), "{}", mismatch.detail);
    let cli = reconcile(&app, &["match"]);
    assert_eq!(cli.status.code(), Some(1), "{}", text(&cli));
    assert!(text(&cli).contains("statement_line_without_payment"), "{}", text(&cli));

    // The same money in a camt.053 statement of the next day matches the second payment.
    let xml = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"><BkToCstmrStmt><Stmt><Id>S-0304</Id>
<Ntry><Amt Ccy="THB">{}</Amt><CdtDbtInd>CRDT</CdtDbtInd><BookgDt><Dt>{}</Dt></BookgDt><AcctSvcrRef>C-1</AcctSvcrRef>
<NtryDtls><TxDtls><RmtInf><Strd><CdtrRefInf><Ref>{}</Ref></CdtrRefInf></Strd></RmtInf></TxDtls></NtryDtls></Ntry>
</Stmt></BkToCstmrStmt></Document>"#,
        baht(amount(second)),
        next.next_day().unwrap(),
        second["reference"].as_str().unwrap()
    );
    let xml_path = dir.path().join("s-0304.xml");
    std::fs::write(&xml_path, xml).unwrap();
    let lines = statement::parse_file(&xml_path).unwrap();
    assert_eq!(lines[0].amount_satang as u64, amount(second));
    db.execute("DELETE FROM bank_statement_lines WHERE entry_ref = 'B-2'", &[]).await.unwrap();
    let out = reconcile(&app, &["statement", "import", xml_path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report = matching::run(&db, None, None, 3).await.unwrap();
    let names: Vec<_> = report.exceptions.iter().map(|e| e.kind).collect();
    assert_eq!(report.matched.len(), 2, "{names:?}");
    assert_eq!(names, ["statement_line_without_payment"]);

    // The report: both deposits collected, the held seat outstanding, nothing refundable.
    let rows = report::run(&app.state.ledger, &db).await.unwrap();
    let row = rows.iter().find(|r| r.offering == sale.offering).unwrap();
    assert_eq!(row.collected_satang as u64, amount(first) + amount(second));
    assert_eq!((row.confirmed, row.held, row.outstanding_reservations), (5, 1, 1));
    assert_eq!(row.outstanding_satang, 150_000, "one seat at 1,500 baht, deposit 100%");
    assert_eq!(row.refunds_payable_satang, 0);
    let cli = reconcile(&app, &["report", "--csv"]);
    assert_eq!(cli.status.code(), Some(0), "{}", text(&cli));
    let csv = String::from_utf8_lossy(&cli.stdout);
    assert!(csv.starts_with("offering,supply,confirmed"), "{csv}");
    assert!(
        csv.contains(&format!("match-show,100,5,1,{}", amount(first) + amount(second))),
        "{csv}"
    );
}
