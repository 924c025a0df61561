//! The audit trail: admin, identity and payment changes are appended to one hash chain that
//! `reconcile audit verify` proves unbroken, concurrent appends never fork it, and a
//! changed, removed or reordered row is caught and named.

use allot_api::identity::Role;
use allot_tests::app::TestApp;
use allot_tests::finance::{reconcile, sale, text};
use allot_tests::people::national_id;
use serde_json::json;

fn verify(app: &TestApp) -> (Option<i32>, String) {
    let out = reconcile(app, &["audit", "verify"]);
    (out.status.code(), text(&out))
}

#[allot_tests::test]
async fn changes_are_chained_and_any_tampering_is_named() {
    let app = TestApp::spawn().await;
    sale(&app, "audit-show").await;
    let admin = app.token(1, Role::Admin);
    let close =
        app.client.post(app.url("/v1/admin/offerings/audit-show/close")).bearer_auth(&admin);
    assert_eq!(close.send().await.unwrap().status(), 200);
    let email = format!("{}@example.com", uuid::Uuid::new_v4().simple());
    let password = "plum-orbit-kettle-92";
    let res = app
        .client
        .post(app.url("/v1/users"))
        .header("X-Pow", app.pow().await)
        .json(&json!({"national_id": national_id(), "email": email, "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let user_id = res.json::<serde_json::Value>().await.unwrap()["user_id"].as_i64().unwrap();
    let res = app
        .client
        .post(app.url("/v1/sessions"))
        .json(&json!({"login": email, "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = app
        .client
        .put(app.url(&format!("/v1/admin/users/{user_id}/role")))
        .bearer_auth(&admin)
        .json(&json!({"role": "official"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    let db = app.db().await;
    let rows = db
        .query("SELECT action, subject, before, after FROM audit_log ORDER BY seq", &[])
        .await
        .unwrap();
    let actions: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(
        actions,
        [
            "offering.create",
            "payment.applied",
            "payment.applied",
            "offering.close",
            "user.register",
            "user.sign_in",
            "user.role_change",
        ]
    );
    let role_change = &rows[6];
    assert_eq!(role_change.get::<_, String>(1), format!("user:{user_id}"));
    assert_eq!(role_change.get::<_, serde_json::Value>(2), json!({"role": "citizen"}));
    assert_eq!(role_change.get::<_, serde_json::Value>(3), json!({"role": "official"}));
    let (code, out) = verify(&app);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("7 rows") && out.contains("unbroken"), "{out}");

    // Concurrent appends queue on the chain's head: no fork, no gap.
    let appends = (0..40).map(|i| {
        let pool = app.state.db.clone();
        tokio::spawn(async move {
            let client = pool.get().await.unwrap();
            let after = json!({ "n": i });
            allot_api::audit::append(
                &client,
                "system:test",
                "test.append",
                "test",
                None,
                Some(&after),
            )
            .await
            .unwrap()
        })
    });
    let mut seqs: Vec<i64> =
        futures::future::join_all(appends).await.into_iter().map(Result::unwrap).collect();
    seqs.sort();
    assert_eq!(seqs, (8..48).collect::<Vec<i64>>());
    assert_eq!(verify(&app).0, Some(0));

    // A row's content changed: named at that row.
    db.execute("UPDATE audit_log SET after = '{\"role\": \"admin\"}' WHERE seq = 7", &[])
        .await
        .unwrap();
    let (code, out) = verify(&app);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("audit_row_altered") && out.contains("seq 7 "), "{out}");
    db.execute("UPDATE audit_log SET after = '{\"role\": \"official\"}' WHERE seq = 7", &[])
        .await
        .unwrap();
    assert_eq!(verify(&app).0, Some(0));

    // Two rows swapped.
    db.batch_execute(
        "UPDATE audit_log SET seq = -1 WHERE seq = 3; UPDATE audit_log SET seq = 3 WHERE seq = 4;
         UPDATE audit_log SET seq = 4 WHERE seq = -1;",
    )
    .await
    .unwrap();
    let (code, out) = verify(&app);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("audit_prev_hash_mismatch"), "{out}");

    // A row removed from the middle, and the last row removed.
    db.execute("DELETE FROM audit_log WHERE seq = 10", &[]).await.unwrap();
    let (_, out) = verify(&app);
    assert!(out.contains("audit_gap") && out.contains("seq 11 "), "{out}");
    db.execute("DELETE FROM audit_log WHERE seq = 47", &[]).await.unwrap();
    let (code, out) = verify(&app);
    assert_eq!(code, Some(1));
    assert!(out.contains("audit_tail_missing"), "{out}");
}
