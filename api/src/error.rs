//! The one table of stable error codes. Every error a client can see is an [`ApiError`]:
//! a code from [`ErrorCode`] (stable, machine-readable), a message in the client's language
//! (Fluent, see `i18n`), and the field at fault when there is one. Internal error text never
//! reaches a client; it goes to the log.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

macro_rules! error_codes {
    ($($variant:ident => ($code:literal, $status:ident)),* $(,)?) => {
        /// Stable error codes. Never rename one: clients match on them.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum ErrorCode { $($variant),* }

        impl ErrorCode {
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant),*];

            pub fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$variant => $code),* }
            }

            pub fn status(self) -> StatusCode {
                match self { $(ErrorCode::$variant => StatusCode::$status),* }
            }
        }
    };
}

error_codes! {
    ValidationError => ("validation_error", BAD_REQUEST),
    MalformedJson => ("malformed_json", BAD_REQUEST),
    PayloadTooLarge => ("payload_too_large", PAYLOAD_TOO_LARGE),
    UnsupportedMediaType => ("unsupported_media_type", UNSUPPORTED_MEDIA_TYPE),
    InvalidNationalId => ("invalid_national_id", BAD_REQUEST),
    DuplicateIdentity => ("duplicate_identity", CONFLICT),
    WeakPassword => ("weak_password", BAD_REQUEST),
    InvalidCredentials => ("invalid_credentials", UNAUTHORIZED),
    MfaRequired => ("mfa_required", UNAUTHORIZED),
    InvalidMfaCode => ("invalid_mfa_code", UNAUTHORIZED),
    MfaEnrollmentRequired => ("mfa_enrollment_required", FORBIDDEN),
    Unauthorized => ("unauthorized", UNAUTHORIZED),
    Forbidden => ("forbidden", FORBIDDEN),
    NotFound => ("not_found", NOT_FOUND),
    MethodNotAllowed => ("method_not_allowed", METHOD_NOT_ALLOWED),
    OfferingNotFound => ("offering_not_found", NOT_FOUND),
    OfferingExists => ("offering_exists", CONFLICT),
    OfferingNotOpen => ("offering_not_open", CONFLICT),
    ZoneNotFound => ("zone_not_found", BAD_REQUEST),
    BelowMinimum => ("below_minimum", UNPROCESSABLE_ENTITY),
    AboveMaximum => ("above_maximum", UNPROCESSABLE_ENTITY),
    NotLotMultiple => ("not_lot_multiple", UNPROCESSABLE_ENTITY),
    PersonLimitExceeded => ("person_limit_exceeded", CONFLICT),
    SoldOut => ("sold_out", CONFLICT),
    IdempotencyKeyRequired => ("idempotency_key_required", BAD_REQUEST),
    IdempotencyKeyReused => ("idempotency_key_reused", UNPROCESSABLE_ENTITY),
    ReservationNotFound => ("reservation_not_found", NOT_FOUND),
    ReservationNotCancellable => ("reservation_not_cancellable", CONFLICT),
    HoldExpired => ("hold_expired", CONFLICT),
    ReservationNotPayable => ("reservation_not_payable", CONFLICT),
    PaymentNotFound => ("payment_not_found", NOT_FOUND),
    InvalidSignature => ("invalid_signature", UNAUTHORIZED),
    NotBookBuilding => ("not_book_building", CONFLICT),
    SubscriptionsClosed => ("subscriptions_closed", CONFLICT),
    SubscriptionsStillOpen => ("subscriptions_still_open", CONFLICT),
    SubscriptionNotFound => ("subscription_not_found", NOT_FOUND),
    AllocationNotRun => ("allocation_not_run", CONFLICT),
    SeedMismatch => ("seed_mismatch", UNPROCESSABLE_ENTITY),
    QueueNotEnabled => ("queue_not_enabled", CONFLICT),
    QueueTicketInvalid => ("queue_ticket_invalid", UNAUTHORIZED),
    QueueAdmissionRequired => ("queue_admission_required", FORBIDDEN),
    ProofOfWorkRequired => ("proof_of_work_required", FORBIDDEN),
    ProofOfWorkInvalid => ("proof_of_work_invalid", FORBIDDEN),
    NotSoldOut => ("not_sold_out", CONFLICT),
    RateLimited => ("rate_limited", TOO_MANY_REQUESTS),
    LedgerUnavailable => ("ledger_unavailable", SERVICE_UNAVAILABLE),
    ServiceUnavailable => ("service_unavailable", SERVICE_UNAVAILABLE),
    Internal => ("internal_error", INTERNAL_SERVER_ERROR),
}

/// An error on its way to a client.
#[derive(Clone, Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    /// The request field at fault (JSON field name, header or path segment).
    pub field: Option<String>,
    /// Values for the message's placeables (`{ $min }` and the like).
    pub args: Vec<(&'static str, String)>,
}

impl ApiError {
    pub fn new(code: ErrorCode) -> Self {
        ApiError { code, field: None, args: Vec::new() }
    }

    pub fn field(code: ErrorCode, field: impl Into<String>) -> Self {
        ApiError { code, field: Some(field.into()), args: Vec::new() }
    }

    pub fn with_arg(mut self, name: &'static str, value: impl ToString) -> Self {
        self.args.push((name, value.to_string()));
        self
    }

    pub fn validation(field: impl Into<String>, reason: impl ToString) -> Self {
        Self::field(ErrorCode::ValidationError, field).with_arg("reason", reason)
    }

    /// Logs the cause and answers a generic 500: internal detail is for operators only.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(ErrorCode::Internal)
    }

    pub fn unavailable(cause: impl std::fmt::Display) -> Self {
        tracing::warn!(error = %cause, "dependency unavailable");
        Self::new(ErrorCode::ServiceUnavailable)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.code.as_str())?;
        if let Some(field) = &self.field {
            write!(f, " ({field})")?;
        }
        Ok(())
    }
}

/// The JSON body of every error response.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub code: &'static str,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.code.status()
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
        if self.code == ErrorCode::RateLimited {
            if let Some((_, seconds)) = self.args.iter().find(|(k, _)| *k == "retry_after") {
                response.insert_header(("Retry-After", seconds.as_str()));
            }
        }
        let mut response = response.json(body);
        response.extensions_mut().insert(self.clone());
        response
    }
}

impl From<deadpool_postgres::PoolError> for ApiError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        ApiError::unavailable(e)
    }
}

impl From<tokio_postgres::Error> for ApiError {
    fn from(e: tokio_postgres::Error) -> Self {
        ApiError::internal(e)
    }
}

impl From<allot_ledger::LedgerError> for ApiError {
    fn from(e: allot_ledger::LedgerError) -> Self {
        match e {
            allot_ledger::LedgerError::Unavailable(_) => {
                tracing::warn!(error = %e, "ledger unavailable");
                ApiError::new(ErrorCode::LedgerUnavailable)
            }
            other => ApiError::internal(other),
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            let s = code.as_str();
            assert!(seen.insert(s), "duplicate code {s}");
            assert!(s.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{s}");
        }
    }

    #[test]
    fn only_internal_errors_are_5xx_besides_unavailability() {
        for code in ErrorCode::ALL {
            let server_side = matches!(
                code,
                ErrorCode::Internal | ErrorCode::LedgerUnavailable | ErrorCode::ServiceUnavailable
            );
            assert_eq!(code.status().is_server_error(), server_side, "{code:?}");
        }
    }
}
