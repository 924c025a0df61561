//! Verifying an account's identity (migration V20): the one-time codes that prove a phone
//! number or an email address, the identity checks at a KYC provider, and the account's
//! `verification` with the instant it last changed, which every API process polls so a
//! token issued before a change is judged by the change.

use std::time::SystemTime;

use crate::status::{KycStatus, Verification};
use crate::{Error, GenericClient};

// ---- The account's verification -------------------------------------------------------

/// Sets the account's verification and stamps the change; answers what it was before
/// (`None`: no such user).
pub async fn set_verification(
    client: &impl GenericClient,
    user_id: i64,
    to: Verification,
) -> Result<Option<Verification>, Error> {
    let row = client
        .query_opt(
            "UPDATE users u SET verification = $2, verification_changed_at = clock_timestamp()
             FROM (SELECT user_id, verification FROM users WHERE user_id = $1 FOR UPDATE) old
             WHERE u.user_id = old.user_id
             RETURNING old.verification",
            &[&user_id, &to],
        )
        .await?;
    Ok(row.map(|row| row.get(0)))
}

/// Verification changes after `since` (the database's clock): (user, verification, when).
pub async fn changed_since(
    client: &impl GenericClient,
    since: SystemTime,
) -> Result<Vec<(i64, Verification, SystemTime)>, Error> {
    let rows = client
        .query(
            "SELECT user_id, verification, verification_changed_at FROM users
             WHERE verification_changed_at > $1",
            &[&since],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect())
}

/// What a one-time code needs of an account. Debug leaves the hash and email out.
#[derive(Clone)]
pub struct Contact {
    pub identity_kind: crate::status::IdentityKind,
    pub identity_hash: Vec<u8>,
    pub email: String,
    pub locale: String,
    pub verification: Verification,
}

impl std::fmt::Debug for Contact {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Contact")
            .field("identity_kind", &self.identity_kind)
            .finish_non_exhaustive()
    }
}

pub async fn contact(client: &impl GenericClient, user_id: i64) -> Result<Option<Contact>, Error> {
    let row = client
        .query_opt(
            "SELECT identity_kind, identity_hash, COALESCE(email, ''), locale, verification FROM users
             WHERE user_id = $1",
            &[&user_id],
        )
        .await?;
    Ok(row.map(|r| Contact {
        identity_kind: r.get(0),
        identity_hash: r.get(1),
        email: r.get(2),
        locale: r.get(3),
        verification: r.get(4),
    }))
}

// ---- One-time codes -------------------------------------------------------------------

/// Stores a new code (its keyed hash), replacing any earlier one.
pub async fn put_code(
    client: &impl GenericClient,
    user_id: i64,
    code_hash: &[u8],
    lifetime_seconds: i64,
) -> Result<(), Error> {
    client
        .execute(
            "INSERT INTO identity_codes (user_id, code_hash, expires_at)
             VALUES ($1, $2, now() + make_interval(secs => $3))
             ON CONFLICT (user_id) DO UPDATE
                 SET code_hash = EXCLUDED.code_hash, expires_at = EXCLUDED.expires_at,
                     attempts = 0, created_at = now()",
            &[&user_id, &code_hash, &(lifetime_seconds as f64)],
        )
        .await?;
    Ok(())
}

/// The user's live code, locked, with one attempt counted: (hash, attempts before this
/// one). `None` when there is none or it has expired.
pub async fn take_attempt(
    client: &impl GenericClient,
    user_id: i64,
) -> Result<Option<(Vec<u8>, i32)>, Error> {
    let row = client
        .query_opt(
            "UPDATE identity_codes SET attempts = attempts + 1
             WHERE user_id = $1 AND expires_at > now()
             RETURNING code_hash, attempts - 1",
            &[&user_id],
        )
        .await?;
    Ok(row.map(|r| (r.get(0), r.get(1))))
}

/// A code that worked is spent.
pub async fn delete_code(client: &impl GenericClient, user_id: i64) -> Result<(), Error> {
    client.execute("DELETE FROM identity_codes WHERE user_id = $1", &[&user_id]).await?;
    Ok(())
}

// ---- KYC requests ---------------------------------------------------------------------

pub async fn insert_kyc_request(
    client: &impl GenericClient,
    request_id: &str,
    user_id: i64,
    provider: &str,
) -> Result<(), Error> {
    client
        .execute(
            "INSERT INTO kyc_requests (request_id, user_id, provider, status)
             VALUES ($1, $2, $3, $4)",
            &[&request_id, &user_id, &provider, &KycStatus::Open],
        )
        .await?;
    Ok(())
}

/// A KYC request, locked until the transaction ends.
#[derive(Clone, Debug)]
pub struct KycRequest {
    pub request_id: String,
    pub user_id: i64,
    pub provider: String,
    pub status: KycStatus,
}

pub async fn lock_kyc_request(
    client: &impl GenericClient,
    request_id: &str,
) -> Result<Option<KycRequest>, Error> {
    let row = client
        .query_opt(
            "SELECT request_id, user_id, provider, status FROM kyc_requests
             WHERE request_id = $1 FOR UPDATE",
            &[&request_id],
        )
        .await?;
    Ok(row.map(|r| KycRequest {
        request_id: r.get(0),
        user_id: r.get(1),
        provider: r.get(2),
        status: r.get(3),
    }))
}

/// The user's latest open request, if any.
pub async fn open_kyc_request(
    client: &impl GenericClient,
    user_id: i64,
) -> Result<Option<KycRequest>, Error> {
    let row = client
        .query_opt(
            "SELECT request_id, user_id, provider, status FROM kyc_requests
             WHERE user_id = $1 AND status = $2 ORDER BY created_at DESC LIMIT 1",
            &[&user_id, &KycStatus::Open],
        )
        .await?;
    Ok(row.map(|r| KycRequest {
        request_id: r.get(0),
        user_id: r.get(1),
        provider: r.get(2),
        status: r.get(3),
    }))
}

pub async fn decide_kyc_request(
    client: &impl GenericClient,
    request_id: &str,
    status: KycStatus,
) -> Result<(), Error> {
    client
        .execute(
            "UPDATE kyc_requests SET status = $2, decided_at = now() WHERE request_id = $1",
            &[&request_id, &status],
        )
        .await?;
    Ok(())
}
