//! `allot-api`: the only crate that speaks HTTP and JSON.
//!
//! - [`startup`]: builds the application (config, pools, ledger, the services, background
//!   tasks) and serves it with graceful shutdown; [`state`]: the services a handler reaches.
//! - [`routes`]: one module per resource; handlers stay thin over the modules below. The
//!   OpenAPI document of every endpoint is there too (`routes::openapi`).
//! - [`catalog`]: offerings, cached in memory for the hot path, judged open or closed by
//!   its [`clock`] (the system's; a test's settable one only when built with it).
//! - [`reservations`]: the reservation hot path (TigerBeetle only); [`holds`]: the hold ids
//!   it shares with the fairness paths that place holds.
//! - [`projector`]: copies ledger events into Postgres, off the hot path, resumable;
//!   [`leader`]: the one instance that runs it (and the waitlist's offers), by a lease.
//! - [`payments`]: payment intents, PromptPay QR, signed bank webhooks that confirm holds in
//!   the ledger.
//! - [`notify`]: notifications to people through a Postgres outbox (payments and the
//!   waitlist enqueue; the payments worker drains), and their senders.
//! - [`identity`]: identity kinds (national ID, passport, phone, email) and their
//!   verification (codes, KYC provider), passwords, TOTP, roles, access tokens; [`auth`]:
//!   the caller.
//! - [`partners`]: bank partners reserving for their customers within a ledger-enforced
//!   allocation (client-credentials tokens, per-partner rate limits, audited).
//! - [`alerts`]: unusual-activity rules over recent events, alerts for staff, account
//!   suspension; rules never block anything.
//! - [`tickets`]: named tickets of confirmed concert seats (issued by the projector), their
//!   signed QR tokens, transfers, and the gate's single-use check.
//! - [`fairness`]: the waiting room, book-building allocation with published draws,
//!   proof-of-work and rate limits.
//! - [`client_ip`]: the client's address behind trusted proxies (rightmost untrusted).
//! - [`staff`]: which staff role may read or cancel other people's records, audited.
//! - [`audit`]: the hash-chained audit trail of state changes (never on the hot path);
//!   [`exports`]: signed ledger exports for regulators; [`reports`]: live figures for
//!   officials.
//! - [`error`]: the one table of stable error codes; [`i18n`]: their messages in th, en,
//!   ja, ko, zh; [`config`]: settings grouped by concern; [`production`]: what each mode
//!   refuses to start without; [`secrets`]: the server's keys; [`metrics`]: the Prometheus
//!   recorder.
//!
//! Invariants:
//! - actix only in [`routes`], [`startup`] and `main`: the modules below take narrow handles
//!   (a pool, the ledger, the catalog, a settings group) and never the whole [`state`]; they
//!   form no import cycle (`tests/tests/architecture.rs` checks both).
//! - A reservation request touches TigerBeetle only: no Postgres read or write on that path
//!   (eligibility is read from the token). A partner's reservation is another path: it
//!   reads its allocation and its customer's person number from Postgres first.
//! - A 201 is sent only after TigerBeetle acknowledged the hold, so an acknowledged
//!   reservation is never lost; the projector brings it to Postgres eventually.
//! - Client mistakes are 4xx with a stable code; only our own failures are 5xx.

pub mod alerts;
pub mod audit;
pub mod auth;
pub mod catalog;
pub mod client_ip;
pub mod clock;
pub mod config;
pub mod error;
pub mod exports;
pub mod fairness;
pub mod holds;
pub mod i18n;
pub mod identity;
pub mod leader;
pub mod metrics;
pub mod notify;
pub mod partners;
pub mod payments;
pub mod production;
pub mod projector;
pub mod reports;
pub mod reservations;
pub mod routes;
pub mod secrets;
pub mod staff;
pub mod startup;
pub mod state;
pub mod tickets;
