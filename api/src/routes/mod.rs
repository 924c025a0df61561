//! HTTP routes, one module per resource. Handlers parse, check the caller, call into the
//! domain modules and shape the answer; nothing else.
//!
//! Besides the resources: [`extract`] (the caller from its bearer token), [`json`] (request
//! bodies read as the document's schemas describe them), [`respond`] (an
//! `ApiError` as a JSON response; bad JSON, query and path as errors), [`middleware`]
//! (messages in the client's language, request metrics), [`logging`] (the request log
//! line, without query strings or the values a client sent), [`openapi`] (the document of every
//! endpoint, served at `/openapi.json`). Architecture invariant: this
//! folder, `startup` and `main` are the only code that knows actix.

pub mod admin;
pub mod alerts;
pub mod allocation;
pub mod challenge;
pub mod exports;
pub mod extract;
pub mod health;
pub mod identity;
pub mod json;
pub mod logging;
pub mod middleware;
pub mod offerings;
pub mod openapi;
pub mod partners;
pub mod payments;
pub mod queue;
pub mod reports;
pub mod reservations;
pub mod respond;
pub mod tickets;
pub mod verification;
pub mod waitlist;

use actix_web::web;

pub use respond::{json_error, not_found, path_error, query_error};

/// Every public route; readiness and metrics too when `operator` (they have no listener
/// of their own).
pub fn configure(cfg: &mut web::ServiceConfig, operator: bool) {
    cfg.configure(|cfg| health::configure(cfg, operator))
        .configure(identity::configure)
        .configure(offerings::configure)
        .configure(reservations::configure)
        .configure(admin::configure)
        .configure(payments::configure)
        .configure(exports::configure)
        .configure(reports::configure)
        .configure(queue::configure)
        .configure(allocation::configure)
        .configure(challenge::configure)
        .configure(waitlist::configure)
        .configure(verification::configure)
        .configure(partners::configure)
        .configure(tickets::configure)
        .configure(alerts::configure);
}
