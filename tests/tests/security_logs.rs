//! What the logs keep, read from a running API process: no value a client sent in a bad
//! request body (a national ID sent as a number) and no query string (where queue tickets
//! and dashboard view tokens travel).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use allot_tests::app::fresh_database;
use allot_tests::tigerbeetle;

fn api_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().unwrap().parent().unwrap().join("allot-api");
    assert!(bin.exists(), "{} missing: ./ops/test builds it before the tests", bin.display());
    bin
}

/// The API binary logging to a file at `level` (`ALLOT_LOG`), serving: (process, its URL,
/// the log file, the data dir that holds the file).
async fn spawn(level: &str) -> (Child, String, PathBuf, tempfile::TempDir) {
    let database_url = fresh_database().await;
    let data_dir = tempfile::tempdir().unwrap();
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let log = data_dir.path().join("api.log");
    let child = Command::new(api_binary())
        .env("ALLOT_DEV_MODE", "true")
        .env("ALLOT_CONFIG", "/nonexistent/allot.toml")
        .env("ALLOT_HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("ALLOT_DATABASE_URL", &database_url)
        .env("ALLOT_TB_ADDRESSES", tigerbeetle::shared().address())
        .env("ALLOT_DATA_DIR", data_dir.path())
        .env("ALLOT_OFFERINGS_DIR", "/nonexistent")
        .env("ALLOT_LOG", level)
        .stdout(Stdio::from(std::fs::File::create(&log).unwrap()))
        .stderr(Stdio::from(std::fs::File::options().append(true).open(&log).unwrap()))
        .spawn()
        .expect("spawn allot-api");
    let url = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let start = Instant::now();
    while client.get(format!("{url}/health/live")).send().await.is_err() {
        assert!(start.elapsed() < Duration::from_secs(30), "API did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    (child, url, log, data_dir)
}

#[allot_tests::test]
async fn logs_keep_neither_a_clients_values_nor_query_strings() {
    let (mut child, url, log, _data_dir) = spawn("info").await;
    let client = reqwest::Client::new();
    let body = r#"{"national_id": 1234567890121, "email": "a@example.com", "password": "x"}"#;
    let res = client
        .post(format!("{url}/v1/users"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let res = client
        .get(format!(
            "{url}/v1/offerings/no-such-show?view_token=SECRETVIEWTOKEN&ticket=SECRETTICKET"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    tokio::time::sleep(Duration::from_millis(300)).await;
    child.kill().unwrap();
    child.wait().unwrap();

    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("/v1/users") && text.contains("/v1/offerings"),
        "no request lines:\n{text}"
    );
    for secret in ["1234567890121", "SECRETVIEWTOKEN", "SECRETTICKET"] {
        let line = text.lines().find(|l| l.contains(secret));
        assert!(line.is_none(), "{secret} reached the log: {}", line.unwrap_or(""));
    }
}

#[allot_tests::test]
async fn debug_logging_does_not_print_the_values_of_database_statements() {
    // Asked for everything, down to the database driver itself.
    for level in ["debug", "debug,tokio_postgres=trace"] {
        let (mut child, url, log, _data_dir) = spawn(level).await;
        let login = "statement-parameter@example.com";
        let res = reqwest::Client::new()
            .post(format!("{url}/v1/sessions"))
            .json(&serde_json::json!({"login": login, "password": "not-the-password-1"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401);
        child.kill().unwrap();
        child.wait().unwrap();

        let text = std::fs::read_to_string(&log).unwrap();
        assert!(text.contains("/v1/sessions"), "no request line:\n{text}");
        let line = text.lines().find(|l| l.contains(login) || l.contains("with parameters"));
        assert!(
            line.is_none(),
            "ALLOT_LOG={level}: a statement's values reached the log: {line:?}"
        );
    }
}
