//! The virtual waiting room: join, status (one-shot and a live stream), and the published
//! pre-queue draw.

use std::time::Duration;

use actix_web::{get, post, web, HttpRequest, HttpResponse};
use serde::Deserialize;

use crate::auth::Principal;
use crate::catalog::Offering;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::fairness::queue::{JoinResponse, QueueFairness, QueueStatus, Standing};
use crate::fairness::tokens::TicketClaims;
use crate::routes::challenge::{check_ip, verify_pow};
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(join).service(status).service(events).service(fairness);
}

pub const TICKET_HEADER: &str = "X-Queue-Ticket";
/// A status stream ends after this long; the browser's EventSource reconnects by itself,
/// and no connection is held forever.
const STREAM_SECONDS_MAX: u64 = 900;
const STREAM_INTERVAL: Duration = Duration::from_secs(1);

fn queued(state: &AppState, id: &str) -> ApiResult<std::sync::Arc<Offering>> {
    let offering = state.catalog.find(id)?;
    if !offering.config.queue {
        return Err(ApiError::field(ErrorCode::QueueNotEnabled, "id"));
    }
    Ok(offering)
}

/// Joins the offering's waiting room (signed in, with a solved proof-of-work challenge in
/// `X-Pow`). Joining again answers 200 with the same entry, and needs no new challenge.
#[utoipa::path(post, path = "/v1/offerings/{id}/queue",
    params(("X-Pow" = Option<String>, Header,
        description = "base64 JSON of a solved challenge from /v1/challenge; required to join, not to rejoin")),
    responses(
        (status = 201, body = JoinResponse),
        (status = 200, body = JoinResponse, description = "already in the room: the same entry"),
        (status = 403, body = crate::error::ErrorBody,
            description = "`proof_of_work_required`, `proof_of_work_invalid`, `identity_not_eligible`, `kyc_required`"),
        (status = 409, body = crate::error::ErrorBody, description = "`queue_not_enabled`"),
        (status = 429, body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])))]
#[post("/v1/offerings/{id}/queue")]
pub async fn join(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<String>,
    req: HttpRequest,
) -> ApiResult<HttpResponse> {
    check_ip(&state, &req)?;
    state.fairness.limits.check_user(who.user_id)?;
    let offering = queued(&state, &id)?;
    let room = &state.fairness.queue;
    if let Some(existing) = room.find(&offering, &who).await? {
        return Ok(HttpResponse::Ok().json(existing));
    }
    verify_pow(&state, &req).await?;
    let joined = room.join(&offering, &who).await?;
    Ok(HttpResponse::Created().json(joined))
}

#[derive(Debug, Deserialize)]
pub struct TicketQuery {
    pub ticket: Option<String>,
}

/// The ticket from `X-Queue-Ticket`, or `?ticket=` for EventSource, which cannot set headers.
fn ticket(
    state: &AppState,
    req: &HttpRequest,
    query: &TicketQuery,
    offering: &str,
) -> ApiResult<TicketClaims> {
    let token = ticket_token(req, query)?;
    let claims = state
        .fairness
        .queue
        .verify_ticket(token, offering)
        .ok_or_else(|| ApiError::field(ErrorCode::QueueTicketInvalid, TICKET_HEADER))?;
    let user_id = claims.sub.parse().map_err(|_| ApiError::new(ErrorCode::QueueTicketInvalid))?;
    state.fairness.limits.check_user(user_id)?;
    Ok(claims)
}

fn ticket_token<'a>(req: &'a HttpRequest, query: &'a TicketQuery) -> ApiResult<&'a str> {
    req.headers()
        .get(TICKET_HEADER)
        .and_then(|v| v.to_str().ok())
        .or(query.ticket.as_deref())
        .ok_or_else(|| ApiError::field(ErrorCode::QueueTicketInvalid, TICKET_HEADER))
}

/// Where the ticket's holder stands: from memory and the ticket, no database read. Once
/// admitted, it carries the admission token the reservation endpoint wants.
#[utoipa::path(get, path = "/v1/offerings/{id}/queue/status",
    params(("X-Queue-Ticket" = String, Header, description = "the ticket from joining")),
    responses((status = 200, body = QueueStatus),
        (status = 401, body = crate::error::ErrorBody, description = "`queue_ticket_invalid`"),
        (status = 409, body = crate::error::ErrorBody, description = "`queue_not_enabled`"),
        (status = 429, body = crate::error::ErrorBody, description = "`rate_limited`")))]
#[get("/v1/offerings/{id}/queue/status")]
pub async fn status(
    state: web::Data<AppState>,
    id: web::Path<String>,
    req: HttpRequest,
    query: web::Query<TicketQuery>,
) -> ApiResult<HttpResponse> {
    // No ticket is the caller's first mistake, whatever the offering.
    ticket_token(&req, &query)?;
    let offering = queued(&state, &id)?;
    let claims = ticket(&state, &req, &query, offering.id())?;
    Ok(HttpResponse::Ok().json(state.fairness.queue.status(&offering, &claims)?))
}

/// The same status as a server-sent event stream (`event: status`), one a second, ending
/// once the holder is admitted or expired.
#[utoipa::path(get, path = "/v1/offerings/{id}/queue/events",
    params(("ticket" = String, Query, description = "the ticket from joining")),
    responses((status = 200, description = "text/event-stream of QueueStatus", content_type = "text/event-stream"),
        (status = 401, body = crate::error::ErrorBody, description = "`queue_ticket_invalid`"),
        (status = 409, body = crate::error::ErrorBody, description = "`queue_not_enabled`"),
        (status = 429, body = crate::error::ErrorBody, description = "`rate_limited`")))]
#[get("/v1/offerings/{id}/queue/events")]
pub async fn events(
    state: web::Data<AppState>,
    id: web::Path<String>,
    req: HttpRequest,
    query: web::Query<TicketQuery>,
) -> ApiResult<HttpResponse> {
    // No ticket is the caller's first mistake, whatever the offering.
    ticket_token(&req, &query)?;
    let offering = queued(&state, &id)?;
    let claims = ticket(&state, &req, &query, offering.id())?;
    let rounds = STREAM_SECONDS_MAX / STREAM_INTERVAL.as_secs();
    let stream = futures::stream::unfold((0u64, false), move |(round, done)| {
        let (state, offering, claims) = (state.clone(), offering.clone(), claims.clone());
        async move {
            if done || round >= rounds {
                return None;
            }
            if round > 0 {
                tokio::time::sleep(STREAM_INTERVAL).await;
            }
            let (event, finished) = match state.fairness.queue.status(&offering, &claims) {
                Ok(s) => {
                    (serde_json::to_string(&s).expect("serializes"), s.status != Standing::Waiting)
                }
                Err(e) => (format!("{{\"code\":\"{}\"}}", e.code.as_str()), false),
            };
            let chunk = web::Bytes::from(format!("event: status\ndata: {event}\n\n"));
            Some((Ok::<_, actix_web::Error>(chunk), (round + 1, finished)))
        }
    });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        .streaming(stream))
}

/// The pre-queue draw: the seed's commitment from the start; after opening the seed and
/// every pre-queue entry's pseudonym in position order, to recompute the draw.
#[utoipa::path(get, path = "/v1/offerings/{id}/queue/fairness",
    responses((status = 200, body = QueueFairness), (status = 404, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody, description = "`queue_not_enabled`")))]
#[get("/v1/offerings/{id}/queue/fairness")]
pub async fn fairness(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let offering = queued(&state, &id)?;
    Ok(HttpResponse::Ok().json(state.fairness.queue.published_draw(&offering).await?))
}
