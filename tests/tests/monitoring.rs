//! The operators' monitoring files name only metrics the API exports: a rule over a metric
//! nobody records would never fire. (`promtool check rules` and `promtool test rules` run
//! in `./ops/test`; this checks the names against the code that records them.)

use std::collections::BTreeSet;
use std::path::Path;

/// Every `allot_*` metric recorded in the API's code (`counter!`, `gauge!`, `histogram!`).
fn recorded() -> BTreeSet<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../api/src");
    let pattern =
        regex::Regex::new(r#"(?:counter|gauge|histogram)!\(\s*"(allot_[a-z_]+)""#).unwrap();
    let mut names = BTreeSet::new();
    let mut dirs = vec![root];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                names.extend(pattern.captures_iter(&text).map(|c| c[1].to_owned()));
            }
        }
    }
    names
}

/// The metric names a monitoring file uses (a histogram's `_bucket` is its histogram).
fn used(file: &str) -> BTreeSet<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ops/monitoring").join(file);
    let text = std::fs::read_to_string(path).unwrap();
    let pattern = regex::Regex::new(r"\ballot_[a-z_]+").unwrap();
    pattern
        .find_iter(&text)
        .map(|m| m.as_str().trim_end_matches("_bucket").to_owned())
        .filter(|name| name != "allot_tests")
        .collect()
}

#[test]
fn alert_rules_and_the_dashboard_use_only_metrics_the_api_records() {
    let recorded = recorded();
    assert!(recorded.contains("allot_http_requests_total"), "{recorded:?}");
    for file in ["alerts.yml", "alerts_test.yml", "grafana-dashboard.json"] {
        let unknown: Vec<_> = used(file).difference(&recorded).cloned().collect();
        assert!(unknown.is_empty(), "{file} uses metrics the API never records: {unknown:?}");
    }
}
