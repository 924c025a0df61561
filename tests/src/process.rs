//! The API binary run as a process of its own, for tests of several instances sharing one
//! Postgres database and one TigerBeetle (and for killing one with `kill -9`).
//!
//! Every instance of a [`Cluster`] shares the data folder (so the same development secrets)
//! and the token secret, so a token one instance issued is good at every other, as behind
//! a load balancer.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use allot_api::identity::tokens::TokenKeys;
use allot_api::identity::Role;

use crate::tigerbeetle;

pub const TOKEN_SECRET_HEX: &str =
    "5eb1c7a0d2e4f6081a3c5e7092b4d6f8a1c3e5f7092b4d6f8a0c2e4f6a8b0c2d";

/// The `allot-api` binary cargo built beside the test binaries (`./ops/test` builds it).
pub fn api_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().unwrap().parent().unwrap().join("allot-api");
    assert!(bin.exists(), "{} missing: ./ops/test builds it before the tests", bin.display());
    bin
}

/// What the instances of one deployment share.
#[derive(Debug)]
pub struct Cluster {
    pub database_url: String,
    pub data_dir: tempfile::TempDir,
    pub offerings_dir: PathBuf,
    pub tb_addresses: String,
}

/// One running instance; killed (SIGKILL) when dropped.
#[derive(Debug)]
pub struct ApiProcess {
    child: Child,
    pub url: String,
}

impl Cluster {
    /// A deployment on `database_url` and the test binary's TigerBeetle, no seed offerings.
    pub fn new(database_url: String) -> Cluster {
        Cluster {
            database_url,
            data_dir: tempfile::tempdir().unwrap(),
            offerings_dir: PathBuf::from("/nonexistent"),
            tb_addresses: tigerbeetle::shared().address(),
        }
    }

    /// Starts one more instance and waits until it is ready.
    pub async fn start(&self) -> ApiProcess {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = self.data_dir.path().join(format!("api-{port}.log"));
        let mut cmd = self.command(port);
        let file = std::fs::File::create(&log).unwrap();
        cmd.stdout(file.try_clone().unwrap()).stderr(file);
        let child = cmd.spawn().expect("spawn allot-api");
        let url = format!("http://127.0.0.1:{port}");
        let api = ApiProcess { child, url };
        if !api.wait_ready(Duration::from_secs(30)).await {
            let ready = reqwest::get(api.url("/health/ready")).await.map(|r| r.status());
            let log = std::fs::read_to_string(&log).unwrap();
            panic!("API not ready within 30 s ({ready:?}): {log}");
        }
        api
    }

    /// Starts an instance that is expected to refuse: waits up to `limit` for it to exit
    /// and answers its output. Panics if it is still running then (it started serving).
    pub async fn start_refused(&self, limit: Duration) -> Output {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut child = self
            .command(port)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn allot-api");
        let start = Instant::now();
        while start.elapsed() < limit {
            if child.try_wait().unwrap().is_some() {
                return child.wait_with_output().unwrap();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        panic!("the API started instead of refusing: {}", String::from_utf8_lossy(&out.stderr));
    }

    fn command(&self, port: u16) -> Command {
        let mut cmd = Command::new(api_binary());
        cmd.env("ALLOT_HTTP_ADDR", format!("127.0.0.1:{port}"))
            .env("ALLOT_DEV_MODE", "true")
            .env("ALLOT_DATABASE_URL", &self.database_url)
            .env("ALLOT_TB_ADDRESSES", &self.tb_addresses)
            .env("ALLOT_DATA_DIR", self.data_dir.path())
            .env("ALLOT_OFFERINGS_DIR", &self.offerings_dir)
            .env("ALLOT_TOKEN_SECRET", TOKEN_SECRET_HEX)
            .env("ALLOT_PROJECTOR_INTERVAL_MS", "50")
            .env("ALLOT_WORKERS", "2")
            .env("ALLOT_DATABASE_POOL_MAX", "8")
            // Cheap proof of work and no rate limits: one test address plays many people.
            .env("ALLOT_POW_COST", "1")
            .env("ALLOT_POW_COUNTER_MAX", "40")
            .env("ALLOT_RATE_LIMIT_IP_PER_SECOND", "0")
            .env("ALLOT_RATE_LIMIT_USER_PER_SECOND", "0")
            // Holds lapse at their deadline, as the waitlist test expects (as in `app`).
            .env("ALLOT_SETTLEMENT_GRACE_SECONDS", "0")
            .env("ALLOT_LOG", std::env::var("ALLOT_LOG").unwrap_or_else(|_| "warn".into()));
        cmd
    }

    /// A token every instance accepts, as login would issue it.
    pub fn token(&self, user_id: i64, role: Role) -> String {
        let keys = TokenKeys::new(&hex::decode(TOKEN_SECRET_HEX).unwrap(), 3600);
        keys.issue(user_id, role, role != Role::Citizen)
    }

    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }
}

impl ApiProcess {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.url, path)
    }

    async fn wait_ready(&self, limit: Duration) -> bool {
        let client = reqwest::Client::new();
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Ok(res) = client.get(self.url("/health/ready")).send().await {
                if res.status() == 200 {
                    return true;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    /// `kill -9`: no shutdown, no cleanup, as a crash.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// One metric's value from `/metrics`, if this instance reports it.
    pub async fn metric(&self, name: &str) -> Option<f64> {
        let text = reqwest::get(self.url("/metrics")).await.ok()?.text().await.ok()?;
        text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
    }
}

impl Drop for ApiProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
