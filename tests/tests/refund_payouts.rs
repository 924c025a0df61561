//! Refund payouts against real TigerBeetle and Postgres: finance records the bank
//! transfers that paid refunds back, from a file (`reconcile refunds pay`) or the API; the
//! ledger moves the money out of refunds payable once per bank reference; more than is owed
//! is refused; `reconcile report` and `reconcile check` account for every satang.

use allot_api::identity::Role;
use allot_tests::app::{tickets, TestApp};
use allot_tests::finance::{
    bank_pays, open_payment, paid_now, paid_today, reconcile, reserve, text,
};
use serde_json::{json, Value};

/// A refund of `amount_satang` (a payer who paid one satang short): (gateway, transaction).
async fn refund(app: &TestApp, offering: &str, transaction: &str) -> (String, String, u64) {
    let (token, r) = reserve(app, offering, 1).await;
    let intent = open_payment(app, &token, r["reservation_id"].as_str().unwrap()).await;
    let reference = intent["reference"].as_str().unwrap();
    let short = intent["amount_satang"].as_u64().unwrap() - 1;
    let answer = bank_pays(app, transaction, reference, short, &paid_now()).await;
    assert_eq!(
        (answer["status"].as_str(), answer["reason"].as_str()),
        (Some("refund_due"), Some("amount_mismatch"))
    );
    ("bank".into(), transaction.into(), short)
}

async fn money(app: &TestApp, offering: &str) -> (u128, u128) {
    let spec = &app.state.catalog.get(offering).unwrap().spec;
    let owed = app.state.ledger.money_balance(spec).await.unwrap().refunds_payable_satang;
    (owed, app.state.ledger.refunds_paid_out(spec).await.unwrap())
}

fn payouts_file(dir: &tempfile::TempDir, name: &str, lines: &[(&str, &str, &str, u64)]) -> String {
    let mut csv = String::from("bank_reference,gateway,transaction_id,amount_satang,paid_on\n");
    for (reference, gateway, transaction, amount) in lines {
        csv.push_str(&format!("{reference},{gateway},{transaction},{amount},{}\n", paid_today()));
    }
    let path = dir.path().join(name);
    std::fs::write(&path, csv).unwrap();
    path.to_str().unwrap().to_owned()
}

#[allot_tests::test]
async fn a_refund_paid_out_from_a_file_once_leaves_report_and_check_clean_and_refuses_more() {
    let app = TestApp::spawn().await;
    app.create_offering(tickets("refunds", 10, 4, 600)).await;
    let (gateway, transaction, owed) = refund(&app, "refunds", "T-SHORT-1").await;
    assert_eq!(money(&app, "refunds").await, (owed.into(), 0));
    let before = reconcile(&app, &["check"]);
    assert_eq!(before.status.code(), Some(0), "{}", text(&before));

    let dir = tempfile::tempdir().unwrap();
    let file = payouts_file(&dir, "payouts.csv", &[("BT-0001", &gateway, &transaction, owed)]);
    let paid = reconcile(&app, &["refunds", "pay", "--file", &file]);
    assert_eq!(paid.status.code(), Some(0), "{}", text(&paid));
    assert!(text(&paid).contains("BT-0001") && text(&paid).contains("recorded"), "{}", text(&paid));
    // The same file again: one payout per bank reference, nothing moves twice.
    let again = reconcile(&app, &["refunds", "pay", "--file", &file]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert!(text(&again).contains("already recorded"), "{}", text(&again));
    assert_eq!(money(&app, "refunds").await, (0, owed.into()));

    // A further payout of the same refund is more than is owed: refused, nothing moves.
    let more = payouts_file(&dir, "more.csv", &[("BT-0002", &gateway, &transaction, 1)]);
    let refused = reconcile(&app, &["refunds", "pay", "--file", &more]);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(text(&refused).contains("more than is owed"), "{}", text(&refused));
    assert_eq!(money(&app, "refunds").await, (0, owed.into()));

    let report = reconcile(&app, &["report", "--csv"]);
    let csv = String::from_utf8_lossy(&report.stdout);
    assert!(
        csv.lines().next().unwrap().ends_with("refunds_payable_satang,refunds_paid_out_satang"),
        "{csv}"
    );
    assert!(
        csv.lines().any(|l| l.starts_with("refunds,") && l.ends_with(&format!(",0,{owed}"))),
        "{csv}"
    );
    let check = reconcile(&app, &["check"]);
    assert_eq!(check.status.code(), Some(0), "{}", text(&check));
    assert!(text(&check).contains("refunds paid out"), "{}", text(&check));

    let finance = app.token(7, Role::Finance);
    let listed: Value = app
        .client
        .get(app.url("/v1/finance/refunds"))
        .bearer_auth(&finance)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (listed[0]["refund_status"].as_str(), listed[0]["paid_out_satang"].as_u64()),
        (Some("paid_out"), Some(owed))
    );
    let db = app.db().await;
    let audited: i64 = db
        .query_one("SELECT count(*) FROM audit_log WHERE action = 'refund.paid_out'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(audited, 1);
}

#[allot_tests::test]
async fn finance_pays_a_refund_out_through_the_api_in_parts_but_never_beyond_it() {
    let app = TestApp::spawn().await;
    app.create_offering(tickets("api-refunds", 10, 4, 600)).await;
    let (gateway, transaction, owed) = refund(&app, "api-refunds", "T-SHORT-2").await;
    let finance = app.token(7, Role::Finance);
    let pay = |token: String, reference: &'static str, amount: u64| {
        let (app, gateway, transaction) = (&app, gateway.clone(), transaction.clone());
        async move {
            let res = app
                .client
                .post(app.url("/v1/finance/refunds/payouts"))
                .bearer_auth(token)
                .json(&json!({
                    "bank_reference": reference,
                    "gateway": gateway,
                    "transaction_id": transaction,
                    "amount_satang": amount,
                    "paid_on": paid_today().to_string(),
                }))
                .send()
                .await
                .unwrap();
            (res.status().as_u16(), res.json::<Value>().await.unwrap())
        }
    };
    let (_, citizen) = app.citizen();
    let (status, body) = pay(citizen, "BT-1", 100).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("forbidden")));

    let half = owed / 2;
    let (status, first) = pay(finance.clone(), "BT-1", half).await;
    assert_eq!((status, first["refund_status"].as_str()), (201, Some("due")), "{first}");
    let (status, replay) = pay(finance.clone(), "BT-1", half).await;
    assert_eq!((status, replay["paid_out_satang"].as_u64()), (200, Some(half)), "{replay}");
    let (status, reused) = pay(finance.clone(), "BT-1", half + 1).await;
    assert_eq!(
        (status, reused["code"].as_str()),
        (409, Some("payout_reference_reused")),
        "{reused}"
    );
    let (status, over) = pay(finance.clone(), "BT-2", owed - half + 1).await;
    assert_eq!(
        (status, over["code"].as_str(), over["field"].as_str()),
        (409, Some("refund_overpaid"), Some("amount_satang")),
        "{over}"
    );
    assert_eq!(money(&app, "api-refunds").await, ((owed - half).into(), half.into()));

    let (status, rest) = pay(finance.clone(), "BT-2", owed - half).await;
    assert_eq!((status, rest["refund_status"].as_str()), (201, Some("paid_out")), "{rest}");
    assert_eq!(money(&app, "api-refunds").await, (0, owed.into()));
    let (status, body) = pay(finance, "BT-3", 1).await;
    assert_eq!((status, body["code"].as_str()), (409, Some("refund_overpaid")), "{body}");
    let check = reconcile(&app, &["check"]);
    assert_eq!(check.status.code(), Some(0), "{}", text(&check));
    let audit = reconcile(&app, &["audit", "verify"]);
    assert_eq!(audit.status.code(), Some(0), "{}", text(&audit));
}

#[allot_tests::test]
async fn a_payout_recorded_but_never_moved_is_named_by_check_and_mended_by_paying_again() {
    let app = TestApp::spawn().await;
    app.create_offering(tickets("half-done", 10, 4, 600)).await;
    let (gateway, transaction, owed) = refund(&app, "half-done", "T-SHORT-3").await;
    // A crash after the Postgres half: the payout is recorded, the ledger never moved it.
    let db = app.db().await;
    db.execute(
        "INSERT INTO refund_payouts (bank_reference, gateway, transaction_id, amount_satang,
             paid_on, recorded_by, recorded_at)
         VALUES ('BT-9', $1, $2, $3, $4, 'test', now() - interval '5 minutes')",
        &[&gateway, &transaction, &(owed as i64), &paid_today()],
    )
    .await
    .unwrap();
    db.execute(
        "UPDATE payment_notifications SET paid_out_satang = $3
         WHERE gateway = $1 AND transaction_id = $2",
        &[&gateway, &transaction, &(owed as i64)],
    )
    .await
    .unwrap();
    let check = reconcile(&app, &["check"]);
    assert_eq!(check.status.code(), Some(1), "{}", text(&check));
    assert!(text(&check).contains("payout_without_ledger_movement"), "{}", text(&check));

    let dir = tempfile::tempdir().unwrap();
    let today = paid_today();
    let csv = format!(
        "bank_reference,gateway,transaction_id,amount_satang,paid_on\nBT-9,{gateway},{transaction},{owed},{today}\n"
    );
    let file = dir.path().join("retry.csv");
    std::fs::write(&file, csv).unwrap();
    let paid = reconcile(&app, &["refunds", "pay", "--file", file.to_str().unwrap()]);
    assert_eq!(paid.status.code(), Some(0), "{}", text(&paid));
    assert_eq!(money(&app, "half-done").await, (0, owed.into()));
    let check = reconcile(&app, &["check"]);
    assert_eq!(check.status.code(), Some(0), "{}", text(&check));
}
