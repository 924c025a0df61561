//! Layered configuration: built-in defaults, then a TOML file (`ALLOT_CONFIG`, default
//! `config/allot.toml` when present), then `ALLOT_*` environment variables.

use std::path::PathBuf;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Where the API listens. Port 0 picks a free port (tests).
    pub http_addr: String,
    pub database_url: String,
    /// Postgres connections per API process.
    pub database_pool_max: usize,
    /// TigerBeetle replica addresses, comma-separated (`3001` alone means a local port).
    #[serde(deserialize_with = "string_or_number")]
    pub tb_addresses: String,
    pub tb_cluster: u64,
    /// A ledger call that takes longer than this fails closed with `ledger_unavailable`.
    pub tb_timeout_ms: u64,
    /// Offering files loaded (and created if missing) at start.
    pub offerings_dir: PathBuf,
    /// Local state for development: generated secrets and the dev admin's credentials.
    pub data_dir: PathBuf,
    /// Development conveniences (generated secrets, dev admin). Never on in production.
    pub dev_mode: bool,
    /// HMAC key for access tokens, hex. Generated into `data_dir` in dev mode when empty.
    pub token_secret: String,
    /// HMAC key for national-ID lookup hashes, hex. Same rules as `token_secret`.
    pub identity_key: String,
    pub access_token_seconds: u64,
    pub refresh_token_seconds: u64,
    /// Request bodies above this are refused with `payload_too_large`.
    pub body_bytes_max: usize,
    /// How often the projector copies new ledger events into Postgres.
    pub projector_interval_ms: u64,
    /// Live offering figures are cached at most this long.
    pub availability_cache_ms: u64,
    /// `json` for production logs, `pretty` for a terminal.
    pub log_format: String,
    pub workers: usize,
    /// HMAC keys of the bank's and the sandbox's payment webhooks, hex. Generated into
    /// `data_dir` in dev mode when empty; production must set the bank's.
    pub webhook_secret_bank: String,
    pub webhook_secret_sandbox: String,
    /// PromptPay biller ID printed in every payment QR: tax ID + 2-digit suffix.
    pub promptpay_biller_id: String,
    /// Where notifications go: `log`, `smtp://host:port`, an `http(s)://` webhook, or
    /// `none` (this process does not send; another one drains the outbox).
    pub notify_url: String,
    /// Sender address of notification emails.
    pub notify_from: String,
    /// Ed25519 key (32-byte seed, hex) that signs ledger exports. Generated into `data_dir`
    /// in dev mode when empty (shared with the `reconcile` CLI there); production must set it.
    pub export_signing_key: String,
    /// Proof-of-work difficulty (ALTCHA, PBKDF2/SHA-256): iterations per attempt, and the
    /// largest secret counter a client may have to reach. Expected work is about
    /// `pow_cost * pow_counter_max * 3/4` iterations.
    pub pow_cost: u32,
    pub pow_counter_max: u32,
    /// A challenge must be solved and used within this many seconds, and only once.
    pub pow_challenge_seconds: u64,
    /// Requests per second and burst allowed per client IP, and per signed-in user, on the
    /// paths bots aim at (queue join, challenges, subscriptions). 0 turns a limit off.
    pub rate_limit_ip_per_second: u32,
    pub rate_limit_ip_burst: u32,
    pub rate_limit_user_per_second: u32,
    pub rate_limit_user_burst: u32,
    /// Take the client IP from `X-Forwarded-For` (only behind a proxy that sets it).
    pub trust_forwarded_for: bool,
    /// Waiting room: people admitted per second per offering, how long an admission lasts,
    /// and the reservation p99 latency above which admission holds back.
    pub queue_admissions_per_second: u32,
    pub queue_admission_seconds: u64,
    pub queue_latency_p99_ms_max: u64,
    /// Queue tickets stay valid this long after joining.
    pub queue_ticket_seconds: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            http_addr: "127.0.0.1:8080".into(),
            database_url: "postgres://allot@127.0.0.1:5433/allot".into(),
            database_pool_max: 32,
            tb_addresses: "127.0.0.1:3001".into(),
            tb_cluster: 0,
            tb_timeout_ms: 2_000,
            offerings_dir: "offerings".into(),
            data_dir: ".data".into(),
            dev_mode: true,
            token_secret: String::new(),
            identity_key: String::new(),
            access_token_seconds: 15 * 60,
            refresh_token_seconds: 30 * 24 * 3600,
            body_bytes_max: 16 * 1024,
            projector_interval_ms: 100,
            availability_cache_ms: 100,
            log_format: "json".into(),
            workers: 0,
            webhook_secret_bank: String::new(),
            webhook_secret_sandbox: String::new(),
            promptpay_biller_id: "010555512345601".into(),
            notify_url: "log".into(),
            notify_from: "allot <no-reply@allot.invalid>".into(),
            export_signing_key: String::new(),
            pow_cost: 1_000,
            pow_counter_max: 20_000,
            pow_challenge_seconds: 300,
            rate_limit_ip_per_second: 20,
            rate_limit_ip_burst: 60,
            rate_limit_user_per_second: 5,
            rate_limit_user_burst: 20,
            trust_forwarded_for: false,
            queue_admissions_per_second: 200,
            queue_admission_seconds: 600,
            queue_latency_p99_ms_max: 500,
            queue_ticket_seconds: 24 * 3600,
        }
    }
}

impl Settings {
    pub fn load() -> Result<Settings, Box<figment::Error>> {
        let file = std::env::var("ALLOT_CONFIG").unwrap_or_else(|_| "config/allot.toml".into());
        // Only variables naming a setting: the ops scripts export other ALLOT_* variables
        // (ports, paths) that are theirs, and unknown keys in the file are still errors.
        let defaults = serde_json::to_value(Settings::default()).expect("serializes");
        let known: Vec<String> = defaults.as_object().expect("a struct").keys().cloned().collect();
        Figment::from(Serialized::defaults(Settings::default()))
            .merge(Toml::file(file))
            .merge(
                Env::prefixed("ALLOT_").filter(move |key| known.iter().any(|k| key == k.as_str())),
            )
            .extract()
            .map_err(Box::new)
    }
}

/// Environment values arrive typed (`3001` is a number); an address list is text either way.
fn string_or_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Text {
        S(String),
        N(u64),
    }
    Ok(match Text::deserialize(d)? {
        Text::S(s) => s,
        Text::N(n) => n.to_string(),
    })
}
