//! The one table of stable error codes. Every error a client can see is an [`ApiError`]:
//! a code from [`ErrorCode`] (stable, machine-readable), a message in the client's language
//! (Fluent, see `i18n`), and the field at fault when there is one. Internal error text never
//! reaches a client; it goes to the log.
//!
//! Nothing here knows the web server: `routes::respond` turns an [`ApiError`] into a
//! response, so every domain module can return one without importing actix.

use serde::Serialize;

macro_rules! error_codes {
    ($($variant:ident => ($code:literal, $status:literal)),* $(,)?) => {
        /// Stable error codes. Never rename one: clients match on them.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum ErrorCode { $($variant),* }

        impl ErrorCode {
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant),*];

            pub fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$variant => $code),* }
            }

            pub fn status(self) -> HttpStatus {
                match self { $(ErrorCode::$variant => HttpStatus($status)),* }
            }
        }
    };
}

error_codes! {
    ValidationError => ("validation_error", 400),
    InconsistentRequest => ("inconsistent_request", 422),
    MalformedJson => ("malformed_json", 400),
    PayloadTooLarge => ("payload_too_large", 413),
    UnsupportedMediaType => ("unsupported_media_type", 415),
    InvalidNationalId => ("invalid_national_id", 422),
    InvalidPassport => ("invalid_passport", 400),
    InvalidVerificationCode => ("invalid_verification_code", 400),
    DuplicateIdentity => ("duplicate_identity", 409),
    WeakPassword => ("weak_password", 422),
    InvalidCredentials => ("invalid_credentials", 401),
    MfaRequired => ("mfa_required", 401),
    InvalidMfaCode => ("invalid_mfa_code", 401),
    MfaEnrollmentRequired => ("mfa_enrollment_required", 403),
    Unauthorized => ("unauthorized", 401),
    Forbidden => ("forbidden", 403),
    NotFound => ("not_found", 404),
    MethodNotAllowed => ("method_not_allowed", 405),
    OfferingNotFound => ("offering_not_found", 404),
    OfferingExists => ("offering_exists", 409),
    OfferingNotOpen => ("offering_not_open", 409),
    ZoneNotFound => ("zone_not_found", 422),
    BelowMinimum => ("below_minimum", 422),
    AboveMaximum => ("above_maximum", 422),
    NotLotMultiple => ("not_lot_multiple", 422),
    PersonLimitExceeded => ("person_limit_exceeded", 409),
    PartnerAllocationExceeded => ("partner_allocation_exceeded", 409),
    IdentityNotEligible => ("identity_not_eligible", 403),
    KycRequired => ("kyc_required", 403),
    SoldOut => ("sold_out", 409),
    IdempotencyKeyRequired => ("idempotency_key_required", 400),
    IdempotencyKeyReused => ("idempotency_key_reused", 422),
    ReservationNotFound => ("reservation_not_found", 404),
    ReservationNotCancellable => ("reservation_not_cancellable", 409),
    HoldExpired => ("hold_expired", 409),
    ReservationNotPayable => ("reservation_not_payable", 409),
    PaymentNotFound => ("payment_not_found", 404),
    InvalidSignature => ("invalid_signature", 401),
    InvalidPaidAt => ("invalid_paid_at", 422),
    RefundNotFound => ("refund_not_found", 404),
    RefundOverpaid => ("refund_overpaid", 409),
    PayoutReferenceReused => ("payout_reference_reused", 409),
    NotBookBuilding => ("not_book_building", 409),
    SubscriptionsClosed => ("subscriptions_closed", 409),
    SubscriptionsStillOpen => ("subscriptions_still_open", 409),
    SubscriptionNotFound => ("subscription_not_found", 404),
    AllocationNotRun => ("allocation_not_run", 409),
    DepositDeadlineNotPassed => ("deposit_deadline_not_passed", 409),
    SeedMismatch => ("seed_mismatch", 422),
    QueueNotEnabled => ("queue_not_enabled", 409),
    QueueTicketInvalid => ("queue_ticket_invalid", 401),
    QueueAdmissionRequired => ("queue_admission_required", 403),
    ProofOfWorkRequired => ("proof_of_work_required", 403),
    ProofOfWorkInvalid => ("proof_of_work_invalid", 403),
    NotSoldOut => ("not_sold_out", 409),
    TicketInvalid => ("ticket_invalid", 400),
    TicketNotFound => ("ticket_not_found", 404),
    TicketAlreadyUsed => ("ticket_already_used", 409),
    TicketSuperseded => ("ticket_superseded", 409),
    TicketCancelled => ("ticket_cancelled", 409),
    TicketTransferLimit => ("ticket_transfer_limit", 409),
    TicketTransferClosed => ("ticket_transfer_closed", 409),
    RecipientNotFound => ("recipient_not_found", 404),
    AccountSuspended => ("account_suspended", 403),
    AlertNotFound => ("alert_not_found", 404),
    RateLimited => ("rate_limited", 429),
    LedgerUnavailable => ("ledger_unavailable", 503),
    ServiceUnavailable => ("service_unavailable", 503),
    Internal => ("internal_error", 500),
}

/// `Retry-After` of a `ledger_unavailable` answer: a replica fails over in about a second,
/// so retrying sooner mostly meets the same outage and later only keeps people waiting.
pub const LEDGER_RETRY_AFTER_SECONDS: u64 = 1;

/// The HTTP status an error code answers with. A number, not a web framework's type: the
/// domain modules that return errors know nothing of the server that sends them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpStatus(pub u16);

impl HttpStatus {
    pub fn as_u16(self) -> u16 {
        self.0
    }

    pub fn is_server_error(self) -> bool {
        (500..600).contains(&self.0)
    }
}

/// An error on its way to a client.
#[derive(Clone)]
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

    /// `inconsistent_request` (422): every field fits its schema, but the request breaks a
    /// rule no schema states (between fields, or of the resource it names). The OpenAPI
    /// document keeps 400 for what its schemas can say.
    pub fn inconsistent(field: impl Into<String>, reason: impl ToString) -> Self {
        Self::field(ErrorCode::InconsistentRequest, field).with_arg("reason", reason)
    }

    /// Logs the cause and answers a generic 500: internal detail is for operators only.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(ErrorCode::Internal)
    }

    /// A ledger call that outlived its deadline: counted, and answered as unavailable
    /// (fail closed; the client retries with the same Idempotency-Key).
    pub fn ledger_timeout() -> Self {
        metrics::counter!("allot_ledger_timeouts_total").increment(1);
        tracing::warn!("ledger call timed out");
        Self::ledger_unavailable()
    }

    /// TigerBeetle did not answer. The request may still be committed later (the client
    /// library keeps retrying it), so the outcome is unknown, never "failed": the answer
    /// says when to retry, and the message says to retry with the same Idempotency-Key,
    /// which names the same hold and so returns it if it was committed meanwhile.
    pub fn ledger_unavailable() -> Self {
        Self::new(ErrorCode::LedgerUnavailable).with_arg("retry_after", LEDGER_RETRY_AFTER_SECONDS)
    }

    pub fn unavailable(cause: impl std::fmt::Display) -> Self {
        tracing::warn!(error = %cause, "dependency unavailable");
        Self::new(ErrorCode::ServiceUnavailable)
    }
}

/// Names the message's placeables but not their values: a reason quotes what the client
/// sent (a national ID, say), and errors are logged.
impl std::fmt::Debug for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let args: Vec<&str> = self.args.iter().map(|(name, _)| *name).collect();
        f.debug_struct("ApiError")
            .field("code", &self.code)
            .field("field", &self.field)
            .field("args", &args)
            .finish()
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

impl From<allot_store::PoolError> for ApiError {
    fn from(e: allot_store::PoolError) -> Self {
        ApiError::unavailable(e)
    }
}

impl From<allot_store::Error> for ApiError {
    fn from(e: allot_store::Error) -> Self {
        ApiError::internal(e)
    }
}

impl From<allot_ledger::LedgerError> for ApiError {
    fn from(e: allot_ledger::LedgerError) -> Self {
        match e {
            allot_ledger::LedgerError::Unavailable(_) => {
                tracing::warn!(error = %e, "ledger unavailable");
                ApiError::ledger_unavailable()
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
