//! Ledger exports for regulators (role `regulator`).

use std::time::SystemTime;

use actix_web::{get, web, HttpResponse};
use serde::Deserialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::audit;
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::identity::Role;
use crate::state::AppState;

/// What a regulator is told to wait when every export slot is taken.
const RETRY_AFTER_SECONDS: u32 = 30;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(ledger);
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    /// First instant exported (RFC 3339); the beginning of the ledger when left out.
    pub from: Option<String>,
    /// Instant the export stops before (RFC 3339); now when left out.
    pub to: Option<String>,
}

fn instant(field: &str, text: &str) -> ApiResult<SystemTime> {
    OffsetDateTime::parse(text, &Rfc3339)
        .map(SystemTime::from)
        .map_err(|_| ApiError::validation(field, "an RFC 3339 date and time"))
}

/// Streams a signed, hash-chained export of every ledger (accounts, transfers, balances as
/// JSON Lines, then the signed manifest as the last line). Check it with
/// `reconcile export verify FILE`. The download is recorded in the audit trail.
#[utoipa::path(get, path = "/v1/exports/ledger", params(ExportQuery),
    responses(
        (status = 200, content_type = "application/x-ndjson",
            description = "The export bundle: `{\"file\":...}` lines introduce each file; the \
                           last line is the signed manifest"),
        (status = 400, body = crate::error::ErrorBody, description = "`validation_error`"),
        (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody),
        (status = 429, body = crate::error::ErrorBody,
            description = "`rate_limited`: other exports are running; retry after a while"),
    ),
    security(("bearer" = [])))]
#[get("/v1/exports/ledger")]
pub async fn ledger(
    state: web::Data<AppState>,
    who: Principal,
    query: web::Query<ExportQuery>,
) -> ApiResult<HttpResponse> {
    who.require(&[Role::Regulator])?;
    let from = query.from.as_deref().map(|t| instant("from", t)).transpose()?;
    let to =
        query.to.as_deref().map(|t| instant("to", t)).transpose()?.unwrap_or_else(SystemTime::now);
    if from.is_some_and(|from| from >= to) {
        return Err(ApiError::validation("to", "must be after from"));
    }
    let key = state.exports.signing_key()?;
    let slot = crate::exports::slot().ok_or_else(|| {
        ApiError::new(ErrorCode::RateLimited).with_arg("retry_after", RETRY_AFTER_SECONDS)
    })?;
    let after = serde_json::json!({ "from": query.from, "to": query.to });
    let actor = audit::user(who.user_id);
    audit::append(&state.db.get().await?, &actor, "ledger.export", "ledger", None, Some(&after))
        .await?;
    Ok(HttpResponse::Ok()
        .content_type("application/x-ndjson")
        .insert_header(("Content-Disposition", "attachment; filename=\"ledger-export.jsonl\""))
        .streaming(state.exports.stream(from, to, key, slot)))
}
