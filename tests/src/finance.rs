//! Helpers for the finance tests: a small sale with money in it, the `reconcile` binary,
//! and bank webhooks signed like the bank's.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::{json, Value};

use crate::app::{tickets, TestApp};
use crate::tigerbeetle;

/// The `reconcile` binary of this build (cargo builds it next to the test binaries for
/// the CLI's own tests; `cargo build -p allot-reconcile` builds it alone).
pub fn reconcile_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let bin = exe.parent().unwrap().parent().unwrap().join("reconcile");
    assert!(bin.exists(), "{} missing: run `cargo build -p allot-reconcile` first", bin.display());
    bin
}

/// Runs `reconcile ARGS` against the app's stores, with its own data directory.
pub fn reconcile(app: &TestApp, args: &[&str]) -> Output {
    Command::new(reconcile_binary())
        .args(args)
        .env("ALLOT_DATABASE_URL", &app.database_url)
        .env("ALLOT_TB_ADDRESSES", tigerbeetle::shared().address())
        .env("ALLOT_TB_CLUSTER", "0")
        .env("ALLOT_DATA_DIR", app.data_dir.path())
        // The test app runs in development: so does its finance team.
        .env("ALLOT_DEV_MODE", "true")
        .output()
        .expect("run reconcile")
}

/// The public key the app's exports (and `reconcile export` with the same data directory)
/// are signed with, hex: what a regulator pins with `--public-key`.
pub fn export_public_key(app: &TestApp) -> String {
    let key = allot_reconcile::keys::load_or_generate(app.data_dir.path()).unwrap();
    hex::encode(key.verifying_key().to_bytes())
}

pub fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Reserves `quantity` seats of `offering` for a new citizen; returns (token, reservation).
pub async fn reserve(app: &TestApp, offering: &str, quantity: u64) -> (String, Value) {
    let (_, token) = app.citizen();
    let key = uuid::Uuid::new_v4().to_string();
    let (status, r) = app.reserve(&token, offering, &key, json!({ "quantity": quantity })).await;
    assert_eq!(status, 201, "{r}");
    (token, r)
}

/// Opens the payment of a reservation; returns the intent.
pub async fn open_payment(app: &TestApp, token: &str, reservation: &str) -> Value {
    let res = app
        .client
        .post(app.url(&format!("/v1/reservations/{reservation}/payments")))
        .bearer_auth(token)
        .json(&json!({"method": "promptpay", "gateway": "bank"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    res.json().await.unwrap()
}

/// Bangkok's offset: banks date their statements in local time.
pub const BANGKOK: time::UtcOffset = time::macros::offset!(+7);

/// A bank's `paid_at` for a payment made just now, in Bangkok time (RFC 3339). Payments
/// must be recent: a `paid_at` far in the past is refused.
pub fn paid_now() -> String {
    let now = time::OffsetDateTime::now_utc().to_offset(BANGKOK);
    now.format(&time::format_description::well_known::Rfc3339).unwrap()
}

/// The Bangkok date of a payment made just now (see [`paid_now`]), for statement lines.
pub fn paid_today() -> time::Date {
    time::OffsetDateTime::now_utc().to_offset(BANGKOK).date()
}

/// Delivers the bank's notification that `amount_satang` arrived under `reference`.
pub async fn bank_pays(
    app: &TestApp,
    transaction: &str,
    reference: &str,
    amount_satang: u64,
    paid_at: &str,
) -> Value {
    let body = serde_json::to_vec(&json!({
        "transaction_id": transaction,
        "reference": reference,
        "amount_satang": amount_satang,
        "paid_at": paid_at,
        "currency": "THB",
    }))
    .unwrap();
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    let signature = app.state.payments.gateways().bank.sign(&ts, &body);
    let res = app
        .client
        .post(app.url("/v1/payments/webhooks/bank"))
        .header("content-type", "application/json")
        .header("X-Allot-Timestamp", ts)
        .header("X-Allot-Signature", signature)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

/// A sale with every kind of reservation in it, projected to Postgres: returns the
/// offering id and (reservation id, payment intent) of two paid reservations.
#[derive(Debug)]
pub struct Sale {
    pub offering: String,
    pub paid: Vec<(String, Value)>,
    pub held: String,
    pub cancelled: String,
}

pub async fn sale(app: &TestApp, offering: &str) -> Sale {
    app.create_offering(tickets(offering, 100, 4, 600)).await;
    let mut paid = Vec::new();
    for (i, quantity) in [2u64, 3].into_iter().enumerate() {
        let (token, r) = reserve(app, offering, quantity).await;
        let id = r["reservation_id"].as_str().unwrap().to_owned();
        let intent = open_payment(app, &token, &id).await;
        let reference = intent["reference"].as_str().unwrap();
        let amount = intent["amount_satang"].as_u64().unwrap();
        let answer =
            bank_pays(app, &format!("{offering}-T{i}"), reference, amount, &paid_now()).await;
        assert_eq!(answer["status"], "succeeded", "{answer}");
        paid.push((id, intent));
    }
    let (_, held) = reserve(app, offering, 1).await;
    let (token, cancelled) = reserve(app, offering, 4).await;
    let cancelled = cancelled["reservation_id"].as_str().unwrap().to_owned();
    let res = app
        .client
        .delete(app.url(&format!("/v1/reservations/{cancelled}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "cancel: {}", res.status());
    let db = app.db().await;
    app.eventually(Duration::from_secs(10), || async {
        let row = db
            .query_one(
                "SELECT count(*), count(*) FILTER (WHERE status = 'confirmed'),
                        count(*) FILTER (WHERE status = 'cancelled')
                 FROM reservations WHERE offering_id = $1",
                &[&offering],
            )
            .await
            .unwrap();
        (row.get::<_, i64>(0), row.get::<_, i64>(1), row.get::<_, i64>(2)) == (4, 2, 1)
    })
    .await;
    Sale {
        offering: offering.to_owned(),
        paid,
        held: held["reservation_id"].as_str().unwrap().to_owned(),
        cancelled,
    }
}
