//! Errors as responses: an [`ApiError`] becomes a JSON body with its stable code, an
//! English message (rewritten into the client's language by `middleware::localize_errors`)
//! and the field at fault; bad JSON, query strings and paths become errors the same way.

use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, ResponseError};

use crate::error::{ApiError, ErrorBody, ErrorCode};

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.code.status().as_u16()).expect("the table holds valid statuses")
    }

    /// Answers in English; the `i18n` middleware rewrites the message into the request's
    /// language, which it can see and this method cannot.
    fn error_response(&self) -> HttpResponse {
        let body = ErrorBody {
            code: self.code.as_str(),
            message: crate::i18n::message(crate::i18n::FALLBACK, self),
            field: self.field.clone(),
        };
        let mut response = HttpResponse::build(self.status_code());
        // Rate limits and ledger outages say when to come back.
        if let Some((_, seconds)) = self.args.iter().find(|(k, _)| *k == "retry_after") {
            response.insert_header(("Retry-After", seconds.as_str()));
        }
        let mut response = response.json(body);
        response.extensions_mut().insert(self.clone());
        response
    }
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

/// Anything unrouted: a JSON error like every other. A path the API serves, asked with a
/// method it does not take, is `method_not_allowed` (405) with `Allow` listing those it
/// does (RFC 9110, 15.5.6); anything else is `not_found`.
pub async fn not_found(req: HttpRequest) -> Result<actix_web::HttpResponse, ApiError> {
    let allowed = allowed_methods(req.path());
    // A documented method that did not route is served elsewhere (readiness and metrics on
    // the operator listener): not here, so 404.
    let method = req.method().as_str().to_lowercase();
    if allowed.is_empty() || allowed.contains(&method) {
        return Err(ApiError::new(ErrorCode::NotFound));
    }
    let error = ApiError::new(ErrorCode::MethodNotAllowed);
    let mut response = error.error_response();
    let allow = allowed.join(", ").to_uppercase();
    if let Ok(value) = actix_web::http::header::HeaderValue::from_str(&allow) {
        response.headers_mut().insert(actix_web::http::header::ALLOW, value);
    }
    Ok(response)
}

/// The methods the OpenAPI document lists for the template `path` matches.
fn allowed_methods(path: &str) -> Vec<String> {
    static PATHS: std::sync::LazyLock<Vec<(Vec<String>, Vec<String>)>> =
        std::sync::LazyLock::new(|| {
            let doc = serde_json::to_value(super::openapi::document()).expect("serializes");
            let paths = doc["paths"].as_object().cloned().unwrap_or_default();
            paths
                .into_iter()
                .map(|(template, item)| {
                    let segments = template.split('/').map(str::to_owned).collect();
                    let methods = item.as_object().map_or_else(Vec::new, |m| {
                        m.keys().filter(|k| k.as_str() != "parameters").cloned().collect()
                    });
                    (segments, methods)
                })
                .collect()
        });
    let segments: Vec<&str> = path.split('/').collect();
    PATHS
        .iter()
        .find(|(template, _)| {
            template.len() == segments.len()
                && template.iter().zip(&segments).all(|(t, s)| {
                    (t.starts_with('{') && t.ends_with('}') && !s.is_empty()) || t == s
                })
        })
        .map(|(_, methods)| methods.clone())
        .unwrap_or_default()
}
