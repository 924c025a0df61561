//! Staff access to other people's records: who may read or cancel what, and the audit entry
//! each such access leaves.
//!
//! A role sees what its work needs and no more: finance answers questions about money, so
//! it reads reservations and payments; admins read everything; officials and regulators
//! work from reports and signed exports and read no one's record. Every read of someone
//! else's record is audited, naming the reader. Cancelling someone else's reservation is
//! an admin's act alone, with a reason, audited before the ledger is touched.
//!
//! Owners reading their own records never come here, so the read path of a citizen stays
//! free of Postgres.

use allot_store::Pool;

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::identity::Role;

/// A cancellation reason is for the audit trail: long enough to say why, short enough
/// that the trail is not a place to store documents.
pub const REASON_CHARS_MAX: usize = 500;

/// Kinds of records staff may look into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Record {
    Reservation,
    Payment,
}

impl Record {
    fn as_str(self) -> &'static str {
        match self {
            Record::Reservation => "reservation",
            Record::Payment => "payment",
        }
    }

    fn not_found(self) -> ApiError {
        match self {
            Record::Reservation => {
                ApiError::field(ErrorCode::ReservationNotFound, "reservation_id")
            }
            Record::Payment => ApiError::field(ErrorCode::PaymentNotFound, "payment_id"),
        }
    }
}

/// Whether `role` may read other people's records of this kind (after a second factor).
pub fn may_read(role: Role, _record: Record) -> bool {
    matches!(role, Role::Admin | Role::Finance)
}

/// Lets `who` read `owner`'s record `id`, auditing the read when it is someone else's. A
/// caller who may not read it is told it does not exist.
pub async fn check_read(
    db: &Pool,
    who: &Principal,
    owner: i64,
    record: Record,
    id: &str,
) -> ApiResult<()> {
    if owner == who.user_id {
        return Ok(());
    }
    if !may_read(who.role, record) || !who.mfa {
        return Err(record.not_found());
    }
    let (actor, subject) = (crate::audit::user(who.user_id), format!("{}:{id}", record.as_str()));
    let after = serde_json::json!({ "owner": owner, "role": who.role.as_str() });
    let action = format!("{}.staff_read", record.as_str());
    crate::audit::append(&db.get().await?, &actor, &action, &subject, None, Some(&after)).await?;
    Ok(())
}

/// Lets `who` cancel `owner`'s reservation `id`: the owner, or an admin (second factor
/// passed) who gives a reason, which is audited before anything changes. Staff who may
/// read the reservation are `forbidden`; anyone else is told it does not exist.
pub async fn check_cancel(
    db: &Pool,
    who: &Principal,
    owner: i64,
    id: &str,
    reason: Option<&str>,
) -> ApiResult<()> {
    if owner == who.user_id {
        return Ok(());
    }
    if who.role != Role::Admin || !who.mfa {
        return Err(match may_read(who.role, Record::Reservation) && who.mfa {
            true => ApiError::new(ErrorCode::Forbidden),
            false => Record::Reservation.not_found(),
        });
    }
    let reason = parse_reason(reason)?;
    let (actor, subject) = (crate::audit::user(who.user_id), format!("reservation:{id}"));
    let after = serde_json::json!({ "owner": owner, "reason": reason });
    let client = db.get().await?;
    crate::audit::append(&client, &actor, "reservation.admin_cancel", &subject, None, Some(&after))
        .await?;
    tracing::info!(admin = who.user_id, owner, reservation = id, "admin cancels a reservation");
    Ok(())
}

/// The shape of a reason, whoever gives it: at most [`REASON_CHARS_MAX`] characters, no
/// control characters (`validation_error`, as the document's schema says).
pub fn check_reason(reason: Option<&str>) -> ApiResult<()> {
    let reason = reason.unwrap_or("");
    if reason.chars().count() > REASON_CHARS_MAX || reason.chars().any(char::is_control) {
        return Err(ApiError::validation(
            "reason",
            "at most 500 characters, no control characters",
        ));
    }
    Ok(())
}

/// A reason an admin gives: of the right shape, and not blank once trimmed
/// (`inconsistent_request`: only someone else's reservation needs one).
fn parse_reason(reason: Option<&str>) -> ApiResult<String> {
    check_reason(reason)?;
    let reason = reason.map(str::trim).unwrap_or("");
    if reason.is_empty() {
        return Err(ApiError::inconsistent(
            "reason",
            "required to cancel someone else's reservation",
        ));
    }
    Ok(reason.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_finance_and_admins_read_other_peoples_records() {
        for role in [Role::Citizen, Role::Official, Role::Regulator] {
            assert!(!may_read(role, Record::Reservation), "{role:?}");
            assert!(!may_read(role, Record::Payment), "{role:?}");
        }
        assert!(may_read(Role::Finance, Record::Payment));
        assert!(may_read(Role::Admin, Record::Reservation));
    }

    #[test]
    fn a_reason_is_required_and_bounded() {
        assert_eq!(parse_reason(None).unwrap_err().field.as_deref(), Some("reason"));
        assert!(parse_reason(Some("  ")).is_err());
        assert!(parse_reason(Some(&"x".repeat(501))).is_err());
        assert!(parse_reason(Some("a\u{7}b")).is_err());
        assert_eq!(parse_reason(Some(" fraud report 42 ")).unwrap(), "fraud report 42");
    }
}
