//! Layered configuration: built-in defaults, then a TOML file (`ALLOT_CONFIG`, default
//! `config/allot.toml` when present), then `ALLOT_*` environment variables.
//!
//! Settings are grouped by the part of the service that reads them, and each part is
//! handed only its group. The TOML file uses the groups as tables (`[ledger]`,
//! `addresses = "..."`); the environment keeps one flat, documented name per setting
//! ([`ENV_NAMES`]: `ALLOT_TB_ADDRESSES` sets `ledger.addresses`). Secrets are [`Secret`]s:
//! printing the settings never prints a key.

use std::path::PathBuf;

use allot_secrets::Secret;
use figment::providers::{Data, Env, Format, Toml};
use figment::Figment;
use serde::Deserialize;

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Development conveniences (generated secrets, dev admin, sandbox payments). Off unless
    /// asked for (`ALLOT_DEV_MODE=true`, as `./ops/up` does), and refused on an address
    /// other machines can reach: see `crate::production`.
    pub dev_mode: bool,
    /// Local state for development: generated secrets and the dev admin's credentials.
    pub data_dir: PathBuf,
    /// Offering files loaded (and created if missing) at start.
    pub offerings_dir: PathBuf,
    pub http: HttpSettings,
    pub database: DatabaseSettings,
    pub ledger: LedgerSettings,
    pub identity: IdentitySettings,
    pub payments: PaymentSettings,
    pub notify: NotifySettings,
    pub exports: ExportSettings,
    pub fairness: FairnessSettings,
    pub tickets: TicketSettings,
    pub alerts: AlertSettings,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSettings {
    /// Where the API listens. Port 0 picks a free port (tests).
    pub addr: String,
    /// The operator listener: readiness and metrics, out of the public's reach (`/health/live`
    /// on both). Empty: both on the public listener, with a warning at start.
    pub ops_addr: String,
    /// Worker threads; 0 means one per core.
    pub workers: usize,
    /// Request bodies above this are refused with `payload_too_large`.
    pub body_bytes_max: usize,
    /// Treat the peer as a reverse proxy whatever its address, and believe the
    /// `X-Forwarded-For` entry it appended (only behind a proxy that sets it).
    pub trust_forwarded_for: bool,
    /// Reverse proxies (addresses and CIDR blocks, comma-separated) whose `X-Forwarded-For`
    /// entries are believed; the client is the rightmost address none of them wrote.
    pub trusted_proxies: String,
    /// `json` for production logs, `pretty` for a terminal.
    pub log_format: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSettings {
    pub url: String,
    /// Postgres connections per API process.
    pub pool_max: usize,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LedgerSettings {
    /// TigerBeetle replica addresses, comma-separated (`3001` alone means a local port).
    #[serde(deserialize_with = "string_or_number")]
    pub addresses: String,
    pub cluster: u64,
    /// A ledger call that takes longer than this fails closed with `ledger_unavailable`.
    pub timeout_ms: u64,
    /// How often the projector copies new ledger events into Postgres.
    pub projector_interval_ms: u64,
    /// Live offering figures are cached at most this long.
    pub availability_cache_ms: u64,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IdentitySettings {
    /// HMAC key for access tokens, hex. Generated into the dev secret store in dev mode
    /// when empty.
    pub token_secret: Secret,
    /// HMAC key for identity lookup hashes, hex. Same rules as `token_secret`.
    pub identity_key: Secret,
    pub access_token_seconds: u64,
    /// A refresh token unused this long expires (an idle session ends).
    pub refresh_token_seconds: u64,
    /// A session ends this long after its sign-in whatever its refreshes (absolute).
    pub session_seconds_max: u64,
    /// Failed sign-ins from one address after which each further attempt from it needs a
    /// solved proof-of-work challenge (`X-Pow`); 0 turns this off.
    pub sign_in_pow_after_failures: u32,
    /// Texts with phone codes: `log` (default), `none`, or an HTTP gateway's URL.
    pub sms_url: String,
    /// Bearer key for the HTTP SMS gateway.
    pub sms_key: Secret,
    /// The KYC provider's URL; empty: the sandbox in dev mode, none in production.
    pub kyc_url: String,
    /// Bearer key for the KYC provider.
    pub kyc_key: Secret,
    /// Hex HMAC key the provider signs its callbacks with (required with `kyc_url`).
    pub kyc_callback_secret: Secret,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PaymentSettings {
    /// HMAC keys of the bank's and the sandbox's payment webhooks, hex. Generated in dev
    /// mode when empty; production must set the bank's.
    pub webhook_secret_bank: Secret,
    pub webhook_secret_sandbox: Secret,
    /// PromptPay biller ID printed in every payment QR: tax ID + 2-digit suffix. No default:
    /// production must set its own; dev mode prints a made-up one when empty.
    pub promptpay_biller_id: String,
    /// How long after a hold's deadline the ledger keeps it for a payment made by the
    /// deadline but reported late (a bank's slow webhook, a ledger outage the worker waits
    /// out). Holders still see the deadline itself; the units return to stock this much
    /// later. At most [`SETTLEMENT_GRACE_SECONDS_MAX`]; 0 turns the grace off.
    pub settlement_grace_seconds: u32,
}

/// A grace longer than this keeps unpaid units from the sale for too long.
pub const SETTLEMENT_GRACE_SECONDS_MAX: u32 = 24 * 3600;

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotifySettings {
    /// Where notifications go: `log`, `smtp://host:port`, an `http(s)://` webhook, or
    /// `none` (this process does not send; another one drains the outbox).
    pub url: String,
    /// Sender address of notification emails.
    pub from: String,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExportSettings {
    /// Ed25519 key (32-byte seed, hex) that signs ledger exports. Generated in dev mode
    /// when empty (shared with the `reconcile` CLI there); production must set it.
    pub signing_key: Secret,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TicketSettings {
    /// Ed25519 key (32-byte seed, hex) that signs the tickets' QR codes; gates verify with
    /// its public half. Generated in dev mode when empty; production must set it.
    pub signing_key: Secret,
    /// How many times one ticket may change hands (0: never).
    pub transfers_max: u32,
    /// Transfers close this long before the show (`show_at` of the offering).
    pub transfer_cutoff_seconds: u64,
}

impl Default for TicketSettings {
    fn default() -> Self {
        TicketSettings {
            signing_key: Secret::default(),
            transfers_max: 1,
            transfer_cutoff_seconds: 24 * 3600,
        }
    }
}

/// A rule fires for a subject that reaches `count` within `window_seconds`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Threshold {
    pub window_seconds: u64,
    pub count: u32,
}

const fn threshold(window_seconds: u64, count: u32) -> Threshold {
    Threshold { window_seconds, count }
}

/// The unusual-activity rules (`crate::alerts`): how often they run and each one's
/// threshold (`[alerts.mfa_failures]` `window_seconds = 3600`, `count = 5`). They raise
/// alerts for staff and never block anything.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertSettings {
    /// How often the leading instance evaluates the rules; 0 turns the loop off.
    pub interval_ms: u64,
    /// Accounts registered from one network (/24, /48) or one device.
    pub registrations_per_source: Threshold,
    /// Reservations one person cancelled.
    pub reserve_cancel_churn: Threshold,
    /// Distinct people one payer's account paid for.
    pub payer_many_identities: Threshold,
    /// Wrong second-factor codes on one account.
    pub mfa_failures: Threshold,
    /// Payment webhooks refused for their signature, per gateway.
    pub webhook_signature_failures: Threshold,
    /// Payments booked for refund, or unmatched (each counted on its own).
    pub refunds_and_unmatched: Threshold,
    /// Times one ticket changed hands.
    pub ticket_transfer_chain: Threshold,
}

impl Default for AlertSettings {
    fn default() -> Self {
        AlertSettings {
            interval_ms: 10_000,
            registrations_per_source: threshold(3600, 20),
            reserve_cancel_churn: threshold(3600, 5),
            payer_many_identities: threshold(24 * 3600, 5),
            mfa_failures: threshold(3600, 5),
            webhook_signature_failures: threshold(600, 10),
            refunds_and_unmatched: threshold(3600, 10),
            ticket_transfer_chain: threshold(30 * 24 * 3600, 2),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FairnessSettings {
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
    /// Waiting room: people admitted per second per offering, how long an admission lasts,
    /// and the reservation p99 latency above which admission holds back.
    pub queue_admissions_per_second: u32,
    pub queue_admission_seconds: u64,
    pub queue_latency_p99_ms_max: u64,
    /// Queue tickets stay valid this long after joining.
    pub queue_ticket_seconds: u64,
    /// Requests per second each bank partner may make (twice that in a burst); 0: none.
    pub rate_limit_partner_per_second: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            dev_mode: false,
            data_dir: ".data".into(),
            offerings_dir: "offerings".into(),
            http: HttpSettings::default(),
            database: DatabaseSettings::default(),
            ledger: LedgerSettings::default(),
            identity: IdentitySettings::default(),
            payments: PaymentSettings::default(),
            notify: NotifySettings::default(),
            exports: ExportSettings::default(),
            fairness: FairnessSettings::default(),
            tickets: TicketSettings::default(),
            alerts: AlertSettings::default(),
        }
    }
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            addr: "127.0.0.1:8080".into(),
            ops_addr: String::new(),
            workers: 0,
            body_bytes_max: 16 * 1024,
            trust_forwarded_for: false,
            trusted_proxies: String::new(),
            log_format: "json".into(),
        }
    }
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        DatabaseSettings { url: "postgres://allot@127.0.0.1:5433/allot".into(), pool_max: 32 }
    }
}

impl Default for LedgerSettings {
    fn default() -> Self {
        LedgerSettings {
            addresses: "127.0.0.1:3001".into(),
            cluster: 0,
            timeout_ms: 2_000,
            projector_interval_ms: 100,
            availability_cache_ms: 100,
        }
    }
}

impl Default for IdentitySettings {
    fn default() -> Self {
        IdentitySettings {
            token_secret: Secret::default(),
            identity_key: Secret::default(),
            access_token_seconds: 15 * 60,
            refresh_token_seconds: 7 * 24 * 3600,
            session_seconds_max: 30 * 24 * 3600,
            sign_in_pow_after_failures: 5,
            sms_url: "log".into(),
            sms_key: Secret::default(),
            kyc_url: String::new(),
            kyc_key: Secret::default(),
            kyc_callback_secret: Secret::default(),
        }
    }
}

impl Default for PaymentSettings {
    fn default() -> Self {
        PaymentSettings {
            webhook_secret_bank: Secret::default(),
            webhook_secret_sandbox: Secret::default(),
            promptpay_biller_id: String::new(),
            settlement_grace_seconds: 15 * 60,
        }
    }
}

impl Default for NotifySettings {
    fn default() -> Self {
        NotifySettings { url: "log".into(), from: "allot <no-reply@allot.invalid>".into() }
    }
}

impl Default for FairnessSettings {
    fn default() -> Self {
        FairnessSettings {
            pow_cost: 1_000,
            pow_counter_max: 20_000,
            pow_challenge_seconds: 300,
            rate_limit_ip_per_second: 20,
            rate_limit_ip_burst: 60,
            rate_limit_user_per_second: 5,
            rate_limit_user_burst: 20,
            queue_admissions_per_second: 200,
            queue_admission_seconds: 600,
            queue_latency_p99_ms_max: 500,
            queue_ticket_seconds: 24 * 3600,
            rate_limit_partner_per_second: 200,
        }
    }
}

/// The environment's name for every setting (after `ALLOT_`, lower-cased) and the setting
/// it sets. These names are the operators' interface: never rename one.
pub const ENV_NAMES: &[(&str, &str)] = &[
    ("dev_mode", "dev_mode"),
    ("data_dir", "data_dir"),
    ("offerings_dir", "offerings_dir"),
    ("http_addr", "http.addr"),
    ("ops_addr", "http.ops_addr"),
    ("workers", "http.workers"),
    ("body_bytes_max", "http.body_bytes_max"),
    ("trust_forwarded_for", "http.trust_forwarded_for"),
    ("trusted_proxies", "http.trusted_proxies"),
    ("log_format", "http.log_format"),
    ("database_url", "database.url"),
    ("database_pool_max", "database.pool_max"),
    ("tb_addresses", "ledger.addresses"),
    ("tb_cluster", "ledger.cluster"),
    ("tb_timeout_ms", "ledger.timeout_ms"),
    ("projector_interval_ms", "ledger.projector_interval_ms"),
    ("availability_cache_ms", "ledger.availability_cache_ms"),
    ("token_secret", "identity.token_secret"),
    ("identity_key", "identity.identity_key"),
    ("access_token_seconds", "identity.access_token_seconds"),
    ("refresh_token_seconds", "identity.refresh_token_seconds"),
    ("session_seconds_max", "identity.session_seconds_max"),
    ("sign_in_pow_after_failures", "identity.sign_in_pow_after_failures"),
    ("sms_url", "identity.sms_url"),
    ("sms_key", "identity.sms_key"),
    ("kyc_url", "identity.kyc_url"),
    ("kyc_key", "identity.kyc_key"),
    ("kyc_callback_secret", "identity.kyc_callback_secret"),
    ("webhook_secret_bank", "payments.webhook_secret_bank"),
    ("webhook_secret_sandbox", "payments.webhook_secret_sandbox"),
    ("promptpay_biller_id", "payments.promptpay_biller_id"),
    ("settlement_grace_seconds", "payments.settlement_grace_seconds"),
    ("notify_url", "notify.url"),
    ("notify_from", "notify.from"),
    ("export_signing_key", "exports.signing_key"),
    ("pow_cost", "fairness.pow_cost"),
    ("pow_counter_max", "fairness.pow_counter_max"),
    ("pow_challenge_seconds", "fairness.pow_challenge_seconds"),
    ("rate_limit_ip_per_second", "fairness.rate_limit_ip_per_second"),
    ("rate_limit_ip_burst", "fairness.rate_limit_ip_burst"),
    ("rate_limit_user_per_second", "fairness.rate_limit_user_per_second"),
    ("rate_limit_user_burst", "fairness.rate_limit_user_burst"),
    ("queue_admissions_per_second", "fairness.queue_admissions_per_second"),
    ("queue_admission_seconds", "fairness.queue_admission_seconds"),
    ("queue_latency_p99_ms_max", "fairness.queue_latency_p99_ms_max"),
    ("queue_ticket_seconds", "fairness.queue_ticket_seconds"),
    ("rate_limit_partner_per_second", "fairness.rate_limit_partner_per_second"),
    ("ticket_signing_key", "tickets.signing_key"),
    ("ticket_transfers_max", "tickets.transfers_max"),
    ("ticket_transfer_cutoff_seconds", "tickets.transfer_cutoff_seconds"),
    ("alerts_interval_ms", "alerts.interval_ms"),
];

impl Settings {
    pub fn load() -> Result<Settings, Box<figment::Error>> {
        let file = std::env::var("ALLOT_CONFIG").unwrap_or_else(|_| "config/allot.toml".into());
        Self::figment(Toml::file(file)).extract().map_err(Box::new)
    }

    /// Defaults come from `Default` (every group is `#[serde(default)]`); the file, then the
    /// environment, override them. Only variables naming a setting are read: the ops
    /// scripts export other `ALLOT_*` variables (ports, paths) that are theirs, and unknown
    /// keys in the file are still errors.
    fn figment(file: Data<Toml>) -> Figment {
        let env = Env::prefixed("ALLOT_").filter_map(|key| {
            ENV_NAMES.iter().find(|(name, _)| key == *name).map(|(_, path)| (*path).into())
        });
        Figment::new().merge(file).merge(env)
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

#[cfg(test)]
// figment's test jail returns its own (large) error type; these closures cannot box it.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use allot_secrets::ExposeSecret;

    #[test]
    fn flat_environment_names_set_grouped_settings() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("ALLOT_TB_ADDRESSES", "3001,3002");
            jail.set_env("ALLOT_TOKEN_SECRET", "ab".repeat(32));
            jail.set_env("ALLOT_POW_COST", "7");
            jail.set_env("ALLOT_DEV_MODE", "true");
            jail.set_env("ALLOT_TB_PORT", "9999"); // an ops variable, not a setting
            let s: Settings = Settings::figment(Toml::file("none.toml")).extract()?;
            assert_eq!(s.ledger.addresses, "3001,3002");
            assert_eq!(s.identity.token_secret.expose_secret(), "ab".repeat(32));
            assert_eq!(s.fairness.pow_cost, 7);
            assert!(s.dev_mode);
            assert_eq!(s.http.addr, "127.0.0.1:8080", "defaults fill the rest");
            Ok(())
        });
    }

    #[test]
    fn the_file_uses_groups_and_unknown_keys_are_errors() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("a.toml", "[notify]\nurl = \"none\"\n[ledger]\naddresses = 3001\n")?;
            let s: Settings = Settings::figment(Toml::file("a.toml")).extract()?;
            assert_eq!((s.notify.url.as_str(), s.ledger.addresses.as_str()), ("none", "3001"));
            jail.create_file("b.toml", "[notify]\nurll = \"none\"\n")?;
            assert!(Settings::figment(Toml::file("b.toml")).extract::<Settings>().is_err());
            Ok(())
        });
    }

    #[test]
    fn every_environment_name_is_a_setting_and_secrets_never_print() {
        let mut s = Settings::default();
        s.identity.token_secret = "feedface".repeat(8).into();
        let printed = format!("{s:?}");
        assert!(!printed.contains("feedface"), "{printed}");
        for (name, _) in ENV_NAMES {
            figment::Jail::expect_with(|jail| {
                jail.set_env(format!("ALLOT_{}", name.to_uppercase()), "1");
                // A type error is fine (a path takes "1"); an unknown field is not.
                if let Err(e) = Settings::figment(Toml::file("none.toml")).extract::<Settings>() {
                    assert!(!e.to_string().contains("unknown field"), "{name}: {e}");
                }
                Ok(())
            });
        }
    }
}
