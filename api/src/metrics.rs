//! Prometheus metrics through the `metrics` facade. The recorder is global to the process,
//! so it is installed once, however many applications a test builds. HTTP requests are
//! counted and timed by `routes::middleware::track`.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let buckets = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];
        PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &buckets)
            .expect("valid buckets")
            .install_recorder()
            .expect("one recorder per process")
    })
}
