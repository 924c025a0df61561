//! Book-building: subscriptions during the window, the allocation run (admin), its public
//! result and the export to recompute it from.

use actix_web::{delete, get, post, put, web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::json::Json;
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::fairness::book::{AllocationView, RoundTwoView, SubscribeRequest, SubscriptionView};
use crate::fairness::draw;
use crate::identity::Role;
use crate::routes::challenge::check_ip;
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(subscribe)
        .service(change)
        .service(withdraw)
        .service(show)
        .service(export)
        .service(export_round_two)
        .service(allocate_round_two)
        .service(allocate);
}

/// Subscribes for an amount while the window is open (201), or changes it (200). Nothing
/// is held yet: the allocation at close decides.
#[utoipa::path(post, path = "/v1/offerings/{id}/subscriptions", request_body = SubscribeRequest,
    responses(
        (status = 201, body = SubscriptionView),
        (status = 200, body = SubscriptionView),
        (status = 403, body = crate::error::ErrorBody, description = "`identity_not_eligible`, `kyc_required`"),
        (status = 409, body = crate::error::ErrorBody),
        (status = 422, body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])))]
#[post("/v1/offerings/{id}/subscriptions")]
pub async fn subscribe(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<String>,
    req: HttpRequest,
    body: Json<SubscribeRequest>,
) -> ApiResult<HttpResponse> {
    check_ip(&state, &req)?;
    state.fairness.limits.check_user(who.user_id)?;
    let offering = state.catalog.find(&id)?;
    let (view, created) = state.fairness.book.subscribe(&offering, &who, body.quantity).await?;
    Ok(if created { HttpResponse::Created() } else { HttpResponse::Ok() }.json(view))
}

/// Changes the caller's subscription while the window is open (creates it if missing).
#[utoipa::path(put, path = "/v1/offerings/{id}/subscriptions", request_body = SubscribeRequest,
    responses((status = 200, body = SubscriptionView),
        (status = 403, body = crate::error::ErrorBody, description = "`identity_not_eligible`, `kyc_required`"),
        (status = 409, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
#[put("/v1/offerings/{id}/subscriptions")]
pub async fn change(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<String>,
    req: HttpRequest,
    body: Json<SubscribeRequest>,
) -> ApiResult<HttpResponse> {
    check_ip(&state, &req)?;
    state.fairness.limits.check_user(who.user_id)?;
    let offering = state.catalog.find(&id)?;
    let (view, _) = state.fairness.book.subscribe(&offering, &who, body.quantity).await?;
    Ok(HttpResponse::Ok().json(view))
}

/// Withdraws the caller's subscription while the window is open.
#[utoipa::path(delete, path = "/v1/offerings/{id}/subscriptions",
    responses((status = 204), (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
#[delete("/v1/offerings/{id}/subscriptions")]
pub async fn withdraw(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    state.fairness.limits.check_user(who.user_id)?;
    let offering = state.catalog.find(&id)?;
    state.fairness.book.withdraw(&offering, &who).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The allocation: the seed's commitment from the start; after the run the seed, the
/// cutoff and counts; and, for a signed-in caller, their own subscription and result.
#[utoipa::path(get, path = "/v1/offerings/{id}/allocation",
    responses((status = 200, body = AllocationView), (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
#[get("/v1/offerings/{id}/allocation")]
pub async fn show(
    state: web::Data<AppState>,
    who: Option<Principal>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let offering = state.catalog.find(&id)?;
    Ok(HttpResponse::Ok().json(state.fairness.book.view(&offering, who.as_ref()).await?))
}

/// Every subscription under its pseudonym with what it was allotted, as JSON lines after a
/// header line (terms, seed, commitment): enough to recompute the allocation.
#[utoipa::path(get, path = "/v1/offerings/{id}/allocation/export",
    responses((status = 200, description = "application/x-ndjson: ExportHeader, then ExportLine per subscription"),
        (status = 409, body = crate::error::ErrorBody)))]
#[get("/v1/offerings/{id}/allocation/export")]
pub async fn export(state: web::Data<AppState>, id: web::Path<String>) -> ApiResult<HttpResponse> {
    let offering = state.catalog.find(&id)?;
    let body = state.fairness.book.export(&offering).await?;
    Ok(HttpResponse::Ok().content_type("application/x-ndjson").body(body))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AllocateRequest {
    /// The seed, hex, when officials bring the one whose hash was published; otherwise the
    /// stored seed is used.
    #[schema(pattern = "^[0-9a-fA-F]{64}$")]
    pub seed: Option<String>,
}

/// Runs the allocation (admin), at or after the subscription close: computes and stores
/// the result, reveals the seed, and holds every allotment with the offering's deposit
/// deadline. Safe to repeat: a repeat finishes what was left and changes nothing else.
#[utoipa::path(post, path = "/v1/admin/offerings/{id}/allocate", request_body = AllocateRequest,
    responses(
        (status = 200, body = AllocationView),
        (status = 403, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody),
        (status = 422, body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])))]
#[post("/v1/admin/offerings/{id}/allocate")]
pub async fn allocate(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<String>,
    body: Option<Json<AllocateRequest>>,
) -> ApiResult<HttpResponse> {
    who.require(&[Role::Admin])?;
    let offering = state.catalog.find(&id)?;
    let seed = match body.and_then(|b| b.into_inner().seed) {
        Some(text) => Some(
            draw::parse_seed(&text).ok_or_else(|| ApiError::validation("seed", "64 hex digits"))?,
        ),
        None => None,
    };
    let view = state.fairness.book.run(&offering, seed).await?;
    let after = serde_json::to_value(&view).map_err(ApiError::internal)?;
    let (actor, subject) = (crate::audit::user(who.user_id), format!("offering:{}", offering.id()));
    crate::audit::append(
        &state.db.get().await?,
        &actor,
        "allocation.run",
        &subject,
        None,
        Some(&after),
    )
    .await?;
    tracing::info!(offering = %offering.id(), admin = who.user_id, "allocation run");
    Ok(HttpResponse::Ok().json(view))
}

/// Round two's demand and allotments, in the export format of round one, with the context
/// its seed is derived under: enough to recompute it.
#[utoipa::path(get, path = "/v1/offerings/{id}/allocation/round-2/export",
    responses((status = 200, description = "application/x-ndjson: ExportHeader, then ExportLine per round-two applicant"),
        (status = 409, body = crate::error::ErrorBody)))]
#[get("/v1/offerings/{id}/allocation/round-2/export")]
pub async fn export_round_two(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let offering = state.catalog.find(&id)?;
    let body = state.fairness.book.export_round_two(&offering).await?;
    Ok(HttpResponse::Ok().content_type("application/x-ndjson").body(body))
}

/// Runs the second round (admin), after round one's payment deadline: the units of unpaid
/// allotments go to the unfilled demand by the same rule, with holds sharing one new
/// deadline. Safe to repeat.
#[utoipa::path(post, path = "/v1/admin/offerings/{id}/allocate/round-2",
    responses(
        (status = 200, body = RoundTwoView),
        (status = 403, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])))]
#[post("/v1/admin/offerings/{id}/allocate/round-2")]
pub async fn allocate_round_two(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    who.require(&[Role::Admin])?;
    let offering = state.catalog.find(&id)?;
    let view = state.fairness.book.run_round_two(&offering).await?;
    let after = serde_json::to_value(&view).map_err(ApiError::internal)?;
    let (actor, subject) = (crate::audit::user(who.user_id), format!("offering:{}", offering.id()));
    crate::audit::append(
        &state.db.get().await?,
        &actor,
        "allocation.round_two",
        &subject,
        None,
        Some(&after),
    )
    .await?;
    Ok(HttpResponse::Ok().json(view))
}
