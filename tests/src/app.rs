//! The API, built in-process on a free port against real TigerBeetle and Postgres, with a
//! fresh database per test.
//!
//! Postgres comes from `ALLOT_TEST_DATABASE_URL` (started by `./ops/test`); TigerBeetle is
//! the test binary's shared server. Offerings get ledger numbers unique within the test
//! binary, so tests sharing one TigerBeetle never share an offering's accounts.

use std::path::PathBuf;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use actix_web::web;
use allot_api::clock::Clock;
use allot_api::config::Settings;
use allot_api::identity::Role;
use allot_api::startup::Application;
use allot_api::state::AppState;
use rand::Rng;
use serde_json::Value;

use crate::tigerbeetle;

/// Offering numbers handed to each test database start here and step by this much.
const OFFERING_NUMBERS_PER_TEST: i32 = 1_000;

#[derive(Debug)]
pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub state: web::Data<AppState>,
    pub database_url: String,
    pub data_dir: tempfile::TempDir,
}

pub fn admin_database_url() -> String {
    std::env::var("ALLOT_TEST_DATABASE_URL")
        .expect("ALLOT_TEST_DATABASE_URL is not set: run the tests through ./ops/test")
}

/// A fresh, migrated database whose offering numbers cannot collide with another test's.
pub async fn fresh_database() -> String {
    static NEXT: AtomicI32 = AtomicI32::new(1);
    let admin_url = admin_database_url();
    let name = format!("test_{}", uuid::Uuid::new_v4().simple());
    let (client, conn) =
        tokio_postgres::connect(&admin_url, tokio_postgres::NoTls).await.expect("connect");
    tokio::spawn(conn);
    client.execute(&format!("CREATE DATABASE {name}"), &[]).await.expect("create database");
    let url = replace_database(&admin_url, &name);
    let pool = allot_store::pool(&url, 2).unwrap();
    allot_store::migrate(&pool).await.unwrap();
    let start = NEXT.fetch_add(1, Ordering::Relaxed) * OFFERING_NUMBERS_PER_TEST;
    pool.get()
        .await
        .unwrap()
        .execute(&format!("ALTER SEQUENCE offerings_number_seq RESTART WITH {start}"), &[])
        .await
        .unwrap();
    url
}

/// Drops a test database made by [`fresh_database`], closing the connections the app may
/// still hold. Runs on a thread of its own, so it can be called from `Drop` inside a
/// runtime; reports failure instead of panicking (a panic while unwinding aborts).
/// `ALLOT_TEST_KEEP_DATABASES=1` keeps them, to look at after a failure.
pub fn drop_database(url: &str) {
    if std::env::var_os("ALLOT_TEST_KEEP_DATABASES").is_some() {
        return;
    }
    let name = url.rsplit_once('/').map_or(url, |(_, n)| n).to_owned();
    if !name.starts_with("test_") {
        return; // never anything but our own
    }
    let admin_url = admin_database_url();
    let dropped = std::thread::spawn(move || {
        let runtime =
            tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        runtime.block_on(async move {
            let drop = async {
                let (client, conn) =
                    tokio_postgres::connect(&admin_url, tokio_postgres::NoTls).await?;
                tokio::spawn(conn);
                let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                client.execute(&sql, &[]).await.map(|_| ())
            };
            match tokio::time::timeout(Duration::from_secs(10), drop).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(format!("dropping {name}: {e}")),
                Err(_) => Err(format!("dropping {name}: no answer within 10 s")),
            }
        })
    })
    .join();
    if let Ok(Err(e)) = dropped {
        eprintln!("{e}");
    }
}

fn replace_database(url: &str, name: &str) -> String {
    let (base, _) = url.rsplit_once('/').expect("url has a database");
    format!("{base}/{name}")
}

/// Settings for a test app: free port, fresh data dir, fast projector.
pub fn settings(
    database_url: &str,
    data_dir: &std::path::Path,
    offerings_dir: PathBuf,
) -> Settings {
    let mut s = Settings {
        offerings_dir,
        data_dir: data_dir.into(),
        dev_mode: true,
        ..Settings::default()
    };
    s.http.addr = "127.0.0.1:0".into();
    s.http.workers = 2;
    s.database.url = database_url.into();
    s.database.pool_max = 8;
    s.ledger.addresses = tigerbeetle::shared().address();
    s.ledger.projector_interval_ms = 50;
    // Units of an unpaid hold come back at its deadline, as the tests of expiry and the
    // waitlist expect; the tests of the settlement grace turn it on.
    s.payments.settlement_grace_seconds = 0;
    // Cheap proof of work and no rate limits: tests register many people from one IP.
    // The fairness tests turn both back on to test them.
    s.fairness.pow_cost = 1;
    s.fairness.pow_counter_max = 40;
    s.fairness.rate_limit_ip_per_second = 0;
    s.fairness.rate_limit_user_per_second = 0;
    // Nor a proof of work after failed sign-ins, which tests of wrong passwords make many
    // of from one address; the security tests turn it back on.
    s.identity.sign_in_pow_after_failures = 0;
    s
}

/// The repository's seed offerings (`offerings/*.toml`).
pub fn seed_offerings_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../offerings")
}

impl TestApp {
    /// An app with no offerings.
    pub async fn spawn() -> TestApp {
        Self::spawn_with(PathBuf::from("/nonexistent")).await
    }

    /// An app with the repository's seed offerings (bond and two concert rounds).
    pub async fn spawn_with_seeds() -> TestApp {
        Self::spawn_with(seed_offerings_dir()).await
    }

    pub async fn spawn_with(offerings_dir: PathBuf) -> TestApp {
        Self::spawn_configured(offerings_dir, |_| {}).await
    }

    /// An app whose test settings `configure` changes first (another TigerBeetle or
    /// Postgres, shorter timeouts).
    pub async fn spawn_configured(
        offerings_dir: PathBuf,
        configure: impl FnOnce(&mut Settings),
    ) -> TestApp {
        let data_dir = tempfile::tempdir().unwrap();
        let mut settings = settings("", data_dir.path(), offerings_dir);
        configure(&mut settings);
        if settings.database.url.is_empty() {
            settings.database.url = fresh_database().await;
        }
        TestApp::start(settings, data_dir, Clock::settable()).await
    }

    /// Builds and serves an app with `settings` (whose database and data dir are given),
    /// judging opening and closing times by `clock`: [`TestApp::clock`] moves it.
    pub async fn start(settings: Settings, data_dir: tempfile::TempDir, clock: Clock) -> TestApp {
        let database_url = settings.database.url.clone();
        let app = Application::build_with_clock(settings, clock).await.expect("app builds");
        let address = format!("http://127.0.0.1:{}", app.port());
        let state = app.state();
        tokio::spawn(app.run_until_stopped());
        TestApp { address, client: reqwest::Client::new(), state, database_url, data_dir }
    }

    /// The app's clock: `advance` it to reach an opening or a close without waiting.
    pub fn clock(&self) -> &Clock {
        self.state.catalog.clock()
    }

    /// A solved proof-of-work challenge for the `X-Pow` header (registration, queue join).
    pub async fn pow(&self) -> String {
        let challenge: Value =
            self.client.get(self.url("/v1/challenge")).send().await.unwrap().json().await.unwrap();
        allot_api::fairness::pow::solve(&serde_json::from_value(challenge).unwrap())
    }

    /// One JSON request: (status, body or null). A registration (`POST /v1/users`) carries a
    /// solved proof of work, as every client's must.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let registering = method == reqwest::Method::POST && path == "/v1/users";
        let mut req = self.client.request(method, self.url(path));
        if registering {
            req = req.header("X-Pow", self.pow().await);
        }
        if let Some(token) = bearer {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.unwrap();
        (res.status().as_u16(), res.json().await.unwrap_or(Value::Null))
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// A signed access token for a user id, as login would issue it. Reservation tests use
    /// it to act as thousands of people without registering each one.
    pub fn token(&self, user_id: i64, role: Role) -> String {
        self.state.tokens.issue(user_id, role, role != Role::Citizen)
    }

    /// A new random citizen and their token.
    pub fn citizen(&self) -> (i64, String) {
        let id = rand::thread_rng().gen_range(1..(1i64 << 53));
        (id, self.token(id, Role::Citizen))
    }

    pub async fn db(&self) -> tokio_postgres::Client {
        let (client, conn) =
            tokio_postgres::connect(&self.database_url, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        client
    }

    /// Creates an offering through the admin API.
    pub async fn create_offering(&self, config: Value) -> Value {
        let admin = self.token(1, Role::Admin);
        let res = self
            .client
            .post(self.url("/v1/admin/offerings"))
            .bearer_auth(admin)
            .json(&config)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
        res.json().await.unwrap()
    }

    /// POSTs a reservation without an admission and returns (status, body).
    pub async fn reserve(
        &self,
        token: &str,
        offering: &str,
        key: &str,
        body: Value,
    ) -> (u16, Value) {
        self.reserve_with(token, offering, key, body, None).await
    }

    /// POSTs a reservation, with `X-Queue-Admission` when given, and returns (status, body).
    pub async fn reserve_with(
        &self,
        token: &str,
        offering: &str,
        key: &str,
        body: Value,
        admission: Option<&str>,
    ) -> (u16, Value) {
        let mut req = self
            .client
            .post(self.url(&format!("/v1/offerings/{offering}/reservations")))
            .bearer_auth(token)
            .header("Idempotency-Key", key)
            .json(&body);
        if let Some(admission) = admission {
            req = req.header("X-Queue-Admission", admission);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// The fan's path into a queued offering: joins its waiting room (with a solved
    /// challenge), reads the status until admitted, and returns the admission token that
    /// reservations then carry in `X-Queue-Admission`.
    pub async fn admitted(&self, token: &str, offering: &str) -> String {
        let res = self
            .client
            .post(self.url(&format!("/v1/offerings/{offering}/queue")))
            .bearer_auth(token)
            .header("X-Pow", self.pow().await)
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        let joined: Value = res.json().await.unwrap_or(Value::Null);
        assert!(matches!(status, 200 | 201), "joining {offering}'s queue: {status} {joined}");
        let ticket = joined["ticket"].as_str().expect("a queue ticket").to_owned();
        let start = std::time::Instant::now();
        loop {
            let res = self
                .client
                .get(self.url(&format!("/v1/offerings/{offering}/queue/status")))
                .header("X-Queue-Ticket", &ticket)
                .send()
                .await
                .unwrap();
            let now: Value = res.json().await.unwrap_or(Value::Null);
            if now["status"] == "admitted" {
                return now["admission_token"].as_str().expect("an admission token").to_owned();
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "never admitted to {offering}: {now}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until `check` holds, polling; panics after `limit`.
    pub async fn eventually<F, Fut>(&self, limit: Duration, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let start = std::time::Instant::now();
        while !check().await {
            assert!(start.elapsed() < limit, "condition not reached within {limit:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for TestApp {
    /// What the test created in Postgres goes with it. Two apps on one database (a restart
    /// twin) both drop it; the second finds it gone.
    fn drop(&mut self) {
        drop_database(&self.database_url);
    }
}

/// A small offering for tests: `supply` seats in one zone, `max` per person.
pub fn tickets(id: &str, supply: u64, max: u64, hold_seconds: u32) -> Value {
    serde_json::json!({
        "id": id,
        "kind": "tickets",
        "name": {"en": "Test show", "th": "การแสดงทดสอบ"},
        "zones": [{"id": "main", "supply": supply, "price_satang": 150_000}],
        "min_quantity": 1,
        "max_per_person": max,
        "lot": 1,
        "hold_seconds": hold_seconds,
        "deposit_percent": 100
    })
}
