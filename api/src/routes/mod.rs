//! HTTP routes, one module per resource. Handlers parse, check the caller, call into the
//! domain modules and shape the answer; nothing else.

pub mod admin;
pub mod allocation;
pub mod challenge;
pub mod exports;
pub mod health;
pub mod identity;
pub mod offerings;
pub mod payments;
pub mod queue;
pub mod reports;
pub mod reservations;
pub mod waitlist;

use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::{web, HttpRequest};

use crate::error::{ApiError, ErrorCode};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.configure(health::configure)
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
        .configure(waitlist::configure);
}

/// Bad JSON never reaches a handler: it becomes a 4xx with a code and, where serde names
/// it, the field.
pub fn json_error(err: JsonPayloadError, _: &HttpRequest) -> actix_web::Error {
    let api = match &err {
        JsonPayloadError::OverflowKnownLength { .. } | JsonPayloadError::Overflow { .. } => {
            ApiError::new(ErrorCode::PayloadTooLarge)
        }
        JsonPayloadError::ContentType => ApiError::new(ErrorCode::UnsupportedMediaType),
        JsonPayloadError::Deserialize(e) => {
            let reason = e.to_string();
            let field =
                reason.split('`').nth(1).filter(|_| reason.contains("field")).map(str::to_owned);
            ApiError { code: ErrorCode::MalformedJson, field, args: vec![("reason", reason)] }
        }
        other => ApiError::new(ErrorCode::MalformedJson).with_arg("reason", other.to_string()),
    };
    api.into()
}

pub fn query_error(err: QueryPayloadError, _: &HttpRequest) -> actix_web::Error {
    ApiError::validation("query", err.to_string()).into()
}

pub fn path_error(err: PathError, _: &HttpRequest) -> actix_web::Error {
    ApiError::validation("path", err.to_string()).into()
}

/// Anything unrouted: a JSON 404 like every other error.
pub async fn not_found() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::new(ErrorCode::NotFound))
}
