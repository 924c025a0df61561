//! The finance endpoints of the API, against real TigerBeetle and Postgres: the regulator's
//! streamed export verifies with `reconcile export verify` (and fails once tampered with),
//! officials' live report has the sale's figures, and the dashboard renders them in real
//! headless Chromium, which writes a screenshot.

use std::path::{Path, PathBuf};
use std::time::Duration;

use allot_api::identity::Role;
use allot_tests::app::TestApp;
use allot_tests::finance::{export_public_key, reconcile, sale, text};
use serde_json::Value;

#[allot_tests::test]
async fn a_regulator_downloads_a_signed_export_that_verifies() {
    let app = TestApp::spawn().await;
    sale(&app, "api-export").await;
    let url = app.url("/v1/exports/ledger?from=2020-01-01T00:00:00Z");
    for role in [Role::Citizen, Role::Official, Role::Finance] {
        let res = app.client.get(&url).bearer_auth(app.token(7, role)).send().await.unwrap();
        assert_eq!(res.status(), 403, "{role:?}");
    }
    let regulator = app.token(7, Role::Regulator);
    let bad = app.client.get(app.url("/v1/exports/ledger?from=yesterday")).bearer_auth(&regulator);
    let res = bad.send().await.unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(res.json::<Value>().await.unwrap()["field"], "from");

    let res = app.client.get(&url).bearer_auth(&regulator).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/x-ndjson");
    let body = res.bytes().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ledger-export.jsonl");
    std::fs::write(&file, &body).unwrap();
    let key = export_public_key(&app);
    let out = reconcile(&app, &["export", "verify", file.to_str().unwrap(), "--public-key", &key]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let lines: Vec<&[u8]> = body.split(|b| *b == b'\n').filter(|l| !l.is_empty()).collect();
    assert!(lines[0].starts_with(b"{\"file\":\"accounts.jsonl\"}"));
    assert!(lines.last().unwrap().starts_with(b"{\"body\":"));

    // Two records of the transfers swapped: refused.
    let start =
        lines.iter().position(|l| l.starts_with(b"{\"file\":\"transfers.jsonl\"}")).unwrap();
    let mut swapped: Vec<&[u8]> = lines.clone();
    swapped.swap(start + 1, start + 2);
    let tampered = dir.path().join("swapped.jsonl");
    let bytes: Vec<u8> = swapped.iter().flat_map(|l| l.iter().chain(b"\n")).copied().collect();
    std::fs::write(&tampered, bytes).unwrap();
    let out =
        reconcile(&app, &["export", "verify", tampered.to_str().unwrap(), "--public-key", &key]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));

    // The download is in the audit trail.
    let db = app.db().await;
    let row = db
        .query_one("SELECT actor FROM audit_log WHERE action = 'ledger.export'", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "user:7");
}

fn chromium() -> PathBuf {
    let candidates = [std::env::var("CHROMIUM").unwrap_or_default(), "/usr/bin/chromium".into()];
    let found = candidates.iter().find(|c| !c.is_empty() && Path::new(c).exists());
    PathBuf::from(found.expect(
        "no Chromium: install Debian's `chromium` (./ops/test does) or set CHROMIUM to its path",
    ))
}

/// Runs headless Chromium on `url` with `args`; returns its standard output.
async fn headless(args: &[String], url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let child = tokio::process::Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=1280,900",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), child)
        .await
        .expect("chromium finished within 60 s")
        .expect("chromium runs");
    assert!(out.status.success(), "chromium failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn screenshot_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap().join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[allot_tests::test]
async fn officials_see_live_figures_and_a_dashboard_in_thai_and_english() {
    let app = TestApp::spawn().await;
    let sale = sale(&app, "api-report").await;
    let official = app.token(9, Role::Official);
    let path = "/v1/reports/offerings/api-report";
    let res = app.client.get(app.url(path)).bearer_auth(app.token(9, Role::Citizen)).send().await;
    assert_eq!(res.unwrap().status(), 403);
    let report: Value = app
        .client
        .get(app.url(path))
        .bearer_auth(&official)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let deposits: u64 = sale.paid.iter().map(|(_, i)| i["amount_satang"].as_u64().unwrap()).sum();
    assert_eq!(report["supply"], 100);
    assert_eq!(report["confirmed"], 5);
    assert_eq!(report["held"], 1);
    assert_eq!(report["cancelled"], 4);
    assert_eq!(report["remaining"], 94);
    assert_eq!(report["reservations"]["cancelled"], 1);
    assert_eq!(report["deposits_collected_satang"], deposits);
    assert_eq!(report["refunds_payable_satang"], 0);
    let series = report["series"].as_array().unwrap();
    assert_eq!(series.len(), 60);
    let made: u64 = series.iter().map(|p| p["reservations"].as_u64().unwrap()).sum();
    assert_eq!(made, 4);
    assert_eq!(series.last().unwrap()["funds_satang"], deposits);

    let res = app
        .client
        .post(app.url(&format!("{path}/view-token")))
        .bearer_auth(&official)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let link: Value = res.json().await.unwrap();
    let dashboard = app.url(link["dashboard_url"].as_str().unwrap());
    let forged = dashboard.replace("view=", "view=1");
    assert_eq!(app.client.get(&forged).send().await.unwrap().status(), 401);

    // The event stream sends the figures straight away.
    let events = dashboard.replace("/dashboard?", "/events?");
    let res = app.client.get(&events).send().await.unwrap();
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let mut res = res;
    let first = res.chunk().await.unwrap().unwrap();
    let first = String::from_utf8_lossy(&first);
    assert!(first.starts_with("event: report\ndata: {"), "{first}");
    assert!(first.contains(&format!("\"deposits_collected_satang\":{deposits}")), "{first}");

    let baht = format!("฿{}.{:02}", deposits / 100, deposits % 100);
    let baht = if deposits >= 100_000 {
        let whole = (deposits / 100).to_string();
        let (head, tail) = whole.split_at(whole.len() - 3);
        format!("฿{head},{tail}.{:02}", deposits % 100)
    } else {
        baht
    };
    for (lang, label) in [("th", "ยืนยันแล้ว"), ("en", "Confirmed")] {
        let url = format!("{dashboard}&lang={lang}");
        let dom = headless(&["--dump-dom".into()], &url).await;
        assert!(dom.contains(label), "{lang}: {dom}");
        assert!(dom.contains(&baht), "{lang}: deposits {baht} not shown: {dom}");
        assert!(dom.contains("data-k=\"confirmed\">5<"), "{lang}: {dom}");
        assert!(dom.contains("data-rendered=\"1\""), "{lang}: the chart did not render: {dom}");
        assert!(dom.contains("<polyline"), "{lang}: no funds line: {dom}");
        let file = screenshot_dir().join(format!("dashboard-{lang}.png"));
        let _ = std::fs::remove_file(&file);
        headless(&[format!("--screenshot={}", file.display())], &url).await;
        let png =
            std::fs::read(&file).unwrap_or_else(|_| panic!("no screenshot at {}", file.display()));
        assert!(
            png.starts_with(b"\x89PNG") && png.len() > 10_000,
            "{} is not a page",
            file.display()
        );
        println!("screenshot: {}", file.display());
    }
}
