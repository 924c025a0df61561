//! Middleware of every route: error messages in the client's language, request metrics.

use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderValue, ACCEPT_LANGUAGE, CONTENT_LENGTH};
use actix_web::middleware::Next;

use crate::error::{ApiError, ErrorBody};
use crate::i18n::{message, negotiate, FALLBACK};

/// Rewrites error bodies into the request's language. Errors are built without sight of the
/// request (actix's `ResponseError`), so the translation happens here, on the way out.
pub async fn localize_errors(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let header = req.headers().get(ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok());
    let lang = negotiate(header);
    let res = next.call(req).await?.map_into_boxed_body();
    if lang == FALLBACK {
        return Ok(res);
    }
    let Some(error) = res.response().extensions().get::<ApiError>().cloned() else {
        return Ok(res);
    };
    let body = ErrorBody {
        code: error.code.as_str(),
        message: message(lang, &error),
        field: error.field.clone(),
    };
    let bytes = serde_json::to_vec(&body).expect("error body serializes");
    Ok(res.map_body(|head, _| {
        head.headers_mut().insert(CONTENT_LENGTH, HeaderValue::from(bytes.len()));
        head.headers_mut()
            .insert(actix_web::http::header::CONTENT_LANGUAGE, HeaderValue::from_static(lang));
        BoxBody::new(bytes)
    }))
}

/// Counts requests and times them, labelled by route pattern (never by raw path, which
/// would make one series per reservation id).
pub async fn track(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let start = Instant::now();
    let method = req.method().as_str().to_owned();
    let res = next.call(req).await?;
    let route = res.request().match_pattern().unwrap_or_else(|| "unmatched".into());
    let status = res.status().as_u16().to_string();
    let labels = [("method", method), ("route", route), ("status", status)];
    metrics::counter!("allot_http_requests_total", &labels).increment(1);
    metrics::histogram!("allot_http_request_duration_seconds", &labels[..2])
        .record(start.elapsed().as_secs_f64());
    Ok(res)
}
