//! The finance endpoints of the API, against real TigerBeetle and Postgres: the regulator's
//! streamed export verifies with `reconcile export verify` (and fails once tampered with),
//! officials' live report has the sale's figures, and the dashboard shows them in real
//! headless Chromium (read from the DOM over the DevTools protocol), updated live when a
//! reservation is made while it is open.

use std::path::PathBuf;
use std::time::Duration;

use allot_api::identity::Role;
use allot_tests::app::TestApp;
use allot_tests::browser::Page;
use allot_tests::finance::{export_public_key, reconcile, reserve, sale, text};
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

fn screenshot_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap().join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The dashboard's figures as the page shows them: each card's text, the labels' text, the
/// live indicator and whether the chart drew its funds line.
const FIGURES_JS: &str = r#"(function () {
  var text = function (k) { var e = document.querySelector('[data-k="' + k + '"]'); return e && e.textContent; };
  var chart = document.getElementById("chart"), status = document.getElementById("status");
  if (!chart || !status) return null;
  return {
    held: text("held"), remaining: text("remaining"), confirmed: text("confirmed"),
    cancelled: text("cancelled"), deposits: text("deposits_collected_satang"),
    labels: Array.prototype.map.call(document.querySelectorAll(".card .label"), function (e) { return e.textContent; }),
    state: status.getAttribute("data-state"),
    funds_line: !!chart.querySelector("polyline") && chart.getAttribute("data-rendered") === "1"
  };
})()"#;

/// Baht as the page formats them: the narrow symbol, thousands grouped, two decimals.
fn baht(satang: u64) -> String {
    let whole = (satang / 100).to_string();
    let mut grouped = String::new();
    for (i, digit) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    format!("฿{grouped}.{:02}", satang % 100)
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

    // In a real browser: the figures are in the DOM, in the language asked for, and a
    // reservation made while the page is open reaches it through the event stream.
    let deposits = baht(deposits);
    let mut held = 1;
    for (lang, label) in [("th", "ยืนยันแล้ว"), ("en", "Confirmed")] {
        let mut page = Page::open(&format!("{dashboard}&lang={lang}")).await;
        let live = |f: &Value| f["state"] == "live" && f["funds_line"] == true;
        let shown = page.wait_for(FIGURES_JS, Duration::from_secs(30), live).await;
        assert_eq!(shown["confirmed"], "5", "{lang}: {shown}");
        assert_eq!(shown["cancelled"], "4", "{lang}: {shown}");
        assert_eq!(shown["held"], held.to_string(), "{lang}: {shown}");
        assert_eq!(shown["remaining"], (95 - held).to_string(), "{lang}: {shown}");
        assert_eq!(shown["deposits"], deposits, "{lang}: {shown}");
        assert!(shown["labels"].as_array().unwrap().iter().any(|l| l == label), "{lang}: {shown}");

        // Two more seats held while the page is open: the next event shows them.
        reserve(&app, "api-report", 2).await;
        held += 2;
        let want = held.to_string();
        let updated = page
            .wait_for(FIGURES_JS, Duration::from_secs(15), |f| f["held"] == want.as_str())
            .await;
        assert_eq!(updated["remaining"], (95 - held).to_string(), "{lang}: {updated}");
        assert_eq!(updated["confirmed"], "5", "{lang}: {updated}");

        // A picture for people to look at; the assertions above are the test.
        let file = screenshot_dir().join(format!("dashboard-{lang}.png"));
        page.screenshot(&file).await;
        println!("screenshot: {}", file.display());
    }
}
