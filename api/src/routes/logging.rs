//! The request log line: method, route, path and status, and for an error its code and
//! field. Never the query string (queue tickets and dashboard view tokens travel there) and
//! never an error's details (serde's message quotes the offending value, a national ID sent
//! as a number, say): logs are read by more people than the database is.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::HttpMessage;
use tracing::field::{display, Empty};
use tracing::Span;
use tracing_actix_web::{RequestId, RootSpanBuilder};

/// `TracingLogger`'s span, without the query string and the error details.
#[derive(Debug)]
pub struct RequestSpan;

impl RootSpanBuilder for RequestSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        let route = request.match_pattern().unwrap_or_else(|| "unmatched".into());
        let request_id = request.extensions().get::<RequestId>().map(ToString::to_string);
        tracing::info_span!(
            "HTTP request",
            http.method = %request.method(),
            http.route = %route,
            http.target = %request.path(),
            http.status_code = Empty,
            exception.message = Empty,
            request_id = request_id.as_deref().unwrap_or(""),
        )
    }

    fn on_request_end<B: MessageBody>(
        span: Span,
        outcome: &Result<ServiceResponse<B>, actix_web::Error>,
    ) {
        match outcome {
            Ok(response) => {
                span.record("http.status_code", response.status().as_u16());
                if let Some(error) = response.response().error() {
                    // `ApiError`'s Display is its code and field, nothing the client sent.
                    span.record("exception.message", display(error));
                }
            }
            Err(error) => {
                let status = error.as_response_error().status_code();
                span.record("http.status_code", status.as_u16());
                span.record("exception.message", display(error));
            }
        }
    }
}
