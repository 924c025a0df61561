//! Users, their sessions and refresh tokens, and their second factor (`users`,
//! `refresh_tokens`, migration V1; `sessions`, V8; sign-in attempts, V7).
//!
//! A user's role travels as its stored spelling (`users.role`, whose `CHECK` constraint
//! lists the roles); the API's `Role` parses it, since that enum is also part of the
//! API's JSON. Refresh tokens are stored as the SHA-256 of the token, never the token.

use tokio_postgres::error::SqlState;
use uuid::Uuid;

use crate::status::{IdentityKind, Verification};
use crate::{Error, GenericClient};

/// Key of the advisory lock that serializes the development admin's creation across API
/// processes starting together (the migrations use 7411001).
const DEV_ADMIN_LOCK_KEY: i64 = 7_411_002;

// ---- Users ----------------------------------------------------------------------------------

/// A citizen to register; the caller picks the random `user_id`.
#[derive(Debug)]
pub struct NewUser<'a> {
    pub user_id: i64,
    /// Keyed hash of the identity (kind, country and value): never the value.
    pub identity_hash: &'a [u8],
    pub identity_kind: IdentityKind,
    /// ISO 3166-1 alpha-3 of a passport's issuer.
    pub identity_country: Option<&'a str>,
    pub email: &'a str,
    pub password_hash: &'a str,
    pub display_name: Option<&'a str>,
    pub locale: &'a str,
}

/// What became of a registration. The unique constraints decide duplicates, so two
/// concurrent registrations of one identity cannot both succeed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserInsert {
    Inserted,
    /// The random id is already someone's (`users_pkey`): draw another and retry.
    UserIdTaken,
    /// The national ID or the email already has an account.
    DuplicateIdentity,
    /// The identity was known only through a partner (a row without credentials): the
    /// registration claimed that row, keeping its user id (the person's number).
    Claimed(i64),
}

pub async fn insert_user(
    client: &impl GenericClient,
    user: &NewUser<'_>,
) -> Result<UserInsert, Error> {
    let inserted = client
        .execute(
            "INSERT INTO users (user_id, identity_hash, email, password_hash, display_name, locale,
                                identity_kind, identity_country)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &[
                &user.user_id,
                &user.identity_hash,
                &user.email,
                &user.password_hash,
                &user.display_name,
                &user.locale,
                &user.identity_kind,
                &user.identity_country,
            ],
        )
        .await;
    match inserted {
        Ok(_) => Ok(UserInsert::Inserted),
        Err(e) => match unique_violation(&e) {
            Some("users_pkey") => Ok(UserInsert::UserIdTaken),
            Some("users_identity_hash_key") => claim_customer(client, user).await,
            Some(_) => Ok(UserInsert::DuplicateIdentity),
            None => Err(e),
        },
    }
}

/// Gives credentials to a row a partner created for this identity; `DuplicateIdentity`
/// when the identity's row already has some (or the email is taken).
async fn claim_customer(
    client: &impl GenericClient,
    user: &NewUser<'_>,
) -> Result<UserInsert, Error> {
    let claimed = client
        .query_opt(
            "UPDATE users SET email = $2, password_hash = $3, display_name = $4, locale = $5,
                              identity_kind = $6, identity_country = $7
             WHERE identity_hash = $1 AND password_hash IS NULL AND email IS NULL
             RETURNING user_id",
            &[
                &user.identity_hash,
                &user.email,
                &user.password_hash,
                &user.display_name,
                &user.locale,
                &user.identity_kind,
                &user.identity_country,
            ],
        )
        .await;
    match claimed {
        Ok(Some(row)) => Ok(UserInsert::Claimed(row.get(0))),
        Ok(None) => Ok(UserInsert::DuplicateIdentity),
        Err(e) if unique_violation(&e).is_some() => Ok(UserInsert::DuplicateIdentity),
        Err(e) => Err(e),
    }
}

/// The person number of an identity, creating a row without credentials for it when no
/// account has it yet (a partner's customer). Concurrent calls for one identity agree.
pub async fn person_of_identity(
    client: &impl GenericClient,
    candidate_user_id: i64,
    identity_hash: &[u8],
) -> Result<i64, Error> {
    // A row inserted by a concurrent call after this statement's snapshot is invisible to
    // its SELECT; the second round sees it.
    for _ in 0..2 {
        let row = client
            .query_opt(
                "WITH new AS (
                     INSERT INTO users (user_id, identity_hash) VALUES ($1, $2)
                     ON CONFLICT (identity_hash) DO NOTHING RETURNING user_id)
                 SELECT user_id FROM new
                 UNION ALL SELECT user_id FROM users WHERE identity_hash = $2
                 LIMIT 1",
                &[&candidate_user_id, &identity_hash],
            )
            .await?;
        if let Some(row) = row {
            return Ok(row.get(0));
        }
    }
    let row = client
        .query_one("SELECT user_id FROM users WHERE identity_hash = $1", &[&identity_hash])
        .await?;
    Ok(row.get(0))
}

/// The constraint a unique violation hit, if `e` is one.
fn unique_violation(e: &Error) -> Option<&str> {
    let db = e.as_db_error()?;
    if *db.code() != SqlState::UNIQUE_VIOLATION {
        return None;
    }
    Some(db.constraint().unwrap_or(""))
}

/// What signing in checks.
pub struct Credentials {
    pub user_id: i64,
    /// argon2id PHC string; `None` for a customer known only through a partner, who has no
    /// credentials and cannot sign in.
    pub password_hash: Option<String>,
    pub role: String,
    pub totp_secret: Option<String>,
    pub totp_enabled: bool,
    /// Failed sign-ins since the last success, and how long ago the last one was.
    pub failures: i32,
    pub seconds_since_failure: Option<i64>,
    /// Seconds the account stays locked (second-factor failures); 0 when it is not.
    pub locked_seconds: i64,
    pub identity_kind: IdentityKind,
    pub verification: Verification,
}

/// Leaves out the password hash and the TOTP secret, so logging a row leaks neither.
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user_id", &self.user_id)
            .field("role", &self.role)
            .field("totp_enabled", &self.totp_enabled)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    fn from_row(row: &tokio_postgres::Row) -> Credentials {
        Credentials {
            user_id: row.get(0),
            password_hash: row.get(1),
            role: row.get(2),
            totp_secret: row.get(3),
            totp_enabled: row.get(4),
            failures: row.get(5),
            seconds_since_failure: row.get(6),
            locked_seconds: row.get(7),
            identity_kind: row.get(8),
            verification: row.get(9),
        }
    }
}

/// The columns [`Credentials::from_row`] reads, in order.
const CREDENTIALS: &str = "user_id, password_hash, role, totp_secret, totp_enabled,
    sign_in_failures, EXTRACT(EPOCH FROM now() - last_failure_at)::BIGINT,
    GREATEST(0, CEIL(EXTRACT(EPOCH FROM locked_until - now())))::BIGINT,
    identity_kind, verification";

/// The account of a (lower-cased) email.
pub async fn credentials_by_email(
    client: &impl GenericClient,
    email: &str,
) -> Result<Option<Credentials>, Error> {
    let row = client
        .query_opt(&format!("SELECT {CREDENTIALS} FROM users WHERE email = $1"), &[&email])
        .await?;
    Ok(row.as_ref().map(Credentials::from_row))
}

/// The account of a national ID's lookup hash.
pub async fn credentials_by_identity_hash(
    client: &impl GenericClient,
    identity_hash: &[u8],
) -> Result<Option<Credentials>, Error> {
    let row = client
        .query_opt(
            &format!("SELECT {CREDENTIALS} FROM users WHERE identity_hash = $1"),
            &[&identity_hash],
        )
        .await?;
    Ok(row.as_ref().map(Credentials::from_row))
}

/// What a user sees of their own account.
#[derive(Clone, Debug)]
pub struct Profile {
    pub email: String,
    pub display_name: Option<String>,
    pub locale: String,
    pub role: String,
    pub totp_enabled: bool,
    pub identity_kind: IdentityKind,
    pub identity_country: Option<String>,
    pub verification: Verification,
}

pub async fn profile(client: &impl GenericClient, user_id: i64) -> Result<Option<Profile>, Error> {
    let row = client
        .query_opt(
            "SELECT COALESCE(email, ''), display_name, locale, role, totp_enabled,
                    identity_kind, identity_country, verification
             FROM users WHERE user_id = $1",
            &[&user_id],
        )
        .await?;
    Ok(row.map(|row| Profile {
        email: row.get(0),
        display_name: row.get(1),
        locale: row.get(2),
        role: row.get(3),
        totp_enabled: row.get(4),
        identity_kind: row.get(5),
        identity_country: row.get(6),
        verification: row.get(7),
    }))
}

/// The user's password hash, `None` when there is no such user.
pub async fn password_hash(
    client: &impl GenericClient,
    user_id: i64,
) -> Result<Option<String>, Error> {
    let row = client
        .query_opt(
            "SELECT password_hash FROM users WHERE user_id = $1 AND password_hash IS NOT NULL",
            &[&user_id],
        )
        .await?;
    Ok(row.map(|row| row.get(0)))
}

pub async fn user_exists(client: &impl GenericClient, user_id: i64) -> Result<bool, Error> {
    let row = client.query_opt("SELECT 1 FROM users WHERE user_id = $1", &[&user_id]).await?;
    Ok(row.is_some())
}

// ---- Roles ----------------------------------------------------------------------------------

/// The user's role, `None` when there is no such user.
pub async fn role(client: &impl GenericClient, user_id: i64) -> Result<Option<String>, Error> {
    let row = client.query_opt("SELECT role FROM users WHERE user_id = $1", &[&user_id]).await?;
    Ok(row.map(|row| row.get(0)))
}

/// Sets the user's role; `false` when there is no such user.
pub async fn set_role(
    client: &impl GenericClient,
    user_id: i64,
    role: &str,
) -> Result<bool, Error> {
    let updated =
        client.execute("UPDATE users SET role = $2 WHERE user_id = $1", &[&user_id, &role]).await?;
    Ok(updated > 0)
}

// ---- Second factor --------------------------------------------------------------------------

/// Stores a new TOTP secret unless TOTP is already enabled, and answers the user's email
/// (the authenticator's account label). `None`: no such user, or TOTP already enabled.
pub async fn start_totp_enrolment(
    client: &impl GenericClient,
    user_id: i64,
    secret: &str,
) -> Result<Option<String>, Error> {
    let row = client
        .query_opt(
            "UPDATE users SET totp_secret = $2 WHERE user_id = $1 AND NOT totp_enabled
             RETURNING email",
            &[&user_id, &secret],
        )
        .await?;
    Ok(row.map(|row| row.get(0)))
}

/// The user's TOTP secret: `None` when there is no such user, `Some(None)` when they never
/// started enrolment.
pub async fn totp_secret(
    client: &impl GenericClient,
    user_id: i64,
) -> Result<Option<Option<String>>, Error> {
    let row =
        client.query_opt("SELECT totp_secret FROM users WHERE user_id = $1", &[&user_id]).await?;
    Ok(row.map(|row| row.get(0)))
}

/// Enables TOTP if the stored secret is still `secret` (a concurrent re-enrolment with
/// another secret is not enabled by a code for this one), using step `step` of the
/// confirming code as [`use_totp_step`] does: the code that confirmed cannot then sign in.
/// `false` when nothing changed.
pub async fn enable_totp(
    client: &impl GenericClient,
    user_id: i64,
    secret: &str,
    step: i64,
) -> Result<bool, Error> {
    let enabled = client
        .execute(
            "UPDATE users SET totp_enabled = TRUE, totp_last_step = $3
             WHERE user_id = $1 AND totp_secret = $2
               AND (totp_last_step IS NULL OR totp_last_step < $3)",
            &[&user_id, &secret, &step],
        )
        .await?;
    Ok(enabled > 0)
}

/// Records a failed sign-in of an existing account. A second-factor failure (`mfa`) also
/// counts towards the lockout: the `lock_after`-th one in a row locks the account for
/// `lock_seconds`, and each further one for twice as long as the one before (a day at
/// most). Answers whether this failure locked the account.
pub async fn record_sign_in_failure(
    client: &impl GenericClient,
    user_id: i64,
    mfa: bool,
    lock_after: i32,
    lock_seconds: i64,
) -> Result<bool, Error> {
    let row = client
        .query_opt(
            "UPDATE users SET sign_in_failures = sign_in_failures + 1, last_failure_at = now(),
                 mfa_failures = mfa_failures + CASE WHEN $2 THEN 1 ELSE 0 END,
                 locked_until = CASE WHEN $2 AND mfa_failures + 1 >= $3
                     THEN now() + LEAST(86400, $4::BIGINT * power(2, mfa_failures + 1 - $3))
                          * INTERVAL '1 second'
                     ELSE locked_until END
             WHERE user_id = $1
             RETURNING $2 AND mfa_failures >= $3",
            &[&user_id, &mfa, &lock_after, &lock_seconds],
        )
        .await?;
    Ok(row.is_some_and(|row| row.get(0)))
}

/// A successful sign-in: the failure counts start again.
pub async fn record_sign_in_success(
    client: &impl GenericClient,
    user_id: i64,
) -> Result<(), Error> {
    client
        .execute(
            "UPDATE users SET sign_in_failures = 0, mfa_failures = 0, last_failure_at = NULL,
                 locked_until = NULL
             WHERE user_id = $1",
            &[&user_id],
        )
        .await?;
    Ok(())
}

/// Uses TOTP step `step` (unix seconds / 30) of the user's code: `false` when this step or
/// a later one was used already, so a code works once, even by two requests at once.
pub async fn use_totp_step(
    client: &impl GenericClient,
    user_id: i64,
    step: i64,
) -> Result<bool, Error> {
    let used = client
        .execute(
            "UPDATE users SET totp_last_step = $2
             WHERE user_id = $1 AND (totp_last_step IS NULL OR totp_last_step < $2)",
            &[&user_id, &step],
        )
        .await?;
    Ok(used > 0)
}

// ---- Sessions and refresh tokens ------------------------------------------------------------

/// Starts a session (a refresh-token family) that ends `lifetime_seconds` from now at the
/// latest, whatever its refreshes.
pub async fn insert_session(
    client: &impl GenericClient,
    family: Uuid,
    user_id: i64,
    mfa: bool,
    lifetime_seconds: i64,
) -> Result<(), Error> {
    client
        .execute(
            "INSERT INTO sessions (family, user_id, mfa, expires_at)
             VALUES ($1, $2, $3, now() + $4::BIGINT * INTERVAL '1 second')",
            &[&family, &user_id, &mfa, &lifetime_seconds],
        )
        .await?;
    Ok(())
}

/// Stores a refresh token (its SHA-256) of session `family`, valid for `lifetime_seconds`
/// but never beyond the session's own end.
pub async fn insert_refresh_token(
    client: &impl GenericClient,
    token_hash: &[u8],
    user_id: i64,
    family: Uuid,
    lifetime_seconds: i64,
) -> Result<(), Error> {
    client
        .execute(
            "INSERT INTO refresh_tokens (token_hash, user_id, family, expires_at)
             SELECT $1, $2, $3, LEAST(now() + $4::BIGINT * INTERVAL '1 second', s.expires_at)
             FROM sessions s WHERE s.family = $3",
            &[&token_hash, &user_id, &family, &lifetime_seconds],
        )
        .await?;
    Ok(())
}

/// A presented refresh token, with its session and its owner's current role.
#[derive(Clone, Debug)]
pub struct RefreshToken {
    pub user_id: i64,
    pub family: Uuid,
    pub used: bool,
    /// The token's session was revoked (signed out, reuse detected, role or factor change).
    pub revoked: bool,
    /// The token or its session is past its end.
    pub expired: bool,
    pub role: String,
    /// Whether the session passed a second factor.
    pub mfa: bool,
    pub identity_kind: IdentityKind,
    pub verification: Verification,
}

/// The token of `token_hash`, locked until the transaction ends: of two concurrent
/// refreshes with one token, exactly one rotates it and the other sees it used. A token
/// without a session (issued before sessions were recorded) is unknown.
pub async fn lock_refresh_token(
    client: &impl GenericClient,
    token_hash: &[u8],
) -> Result<Option<RefreshToken>, Error> {
    let row = client
        .query_opt(
            "SELECT t.user_id, t.family, t.used_at IS NOT NULL,
                    t.revoked_at IS NOT NULL OR s.revoked_at IS NOT NULL,
                    t.expires_at <= now() OR s.expires_at <= now(), u.role, s.mfa,
                    u.identity_kind, u.verification
             FROM refresh_tokens t JOIN sessions s USING (family) JOIN users u ON u.user_id = t.user_id
             WHERE t.token_hash = $1 FOR UPDATE OF t",
            &[&token_hash],
        )
        .await?;
    Ok(row.map(|row| RefreshToken {
        user_id: row.get(0),
        family: row.get(1),
        used: row.get(2),
        revoked: row.get(3),
        expired: row.get(4),
        role: row.get(5),
        mfa: row.get(6),
        identity_kind: row.get(7),
        verification: row.get(8),
    }))
}

pub async fn mark_refresh_token_used(
    client: &impl GenericClient,
    token_hash: &[u8],
) -> Result<(), Error> {
    client
        .execute("UPDATE refresh_tokens SET used_at = now() WHERE token_hash = $1", &[&token_hash])
        .await?;
    Ok(())
}

fn families(rows: Vec<tokio_postgres::Row>) -> Vec<Uuid> {
    rows.iter().map(|row| row.get(0)).collect()
}

/// Revokes one session; answers it when it was live.
pub async fn revoke_family(client: &impl GenericClient, family: Uuid) -> Result<Vec<Uuid>, Error> {
    let rows = client
        .query(
            "UPDATE sessions SET revoked_at = now() WHERE family = $1 AND revoked_at IS NULL
             RETURNING family",
            &[&family],
        )
        .await?;
    Ok(families(rows))
}

/// Revokes the session that `token_hash` belongs to; an unknown hash revokes nothing.
pub async fn revoke_family_of(
    client: &impl GenericClient,
    token_hash: &[u8],
) -> Result<Vec<Uuid>, Error> {
    let rows = client
        .query(
            "UPDATE sessions SET revoked_at = now()
                 WHERE family = (SELECT family FROM refresh_tokens WHERE token_hash = $1)
                   AND revoked_at IS NULL
             RETURNING family",
            &[&token_hash],
        )
        .await?;
    Ok(families(rows))
}

/// Revokes every live session of the user but `keep` (the one asking, when it stays).
pub async fn revoke_user(
    client: &impl GenericClient,
    user_id: i64,
    keep: Option<Uuid>,
) -> Result<Vec<Uuid>, Error> {
    let rows = client
        .query(
            "UPDATE sessions SET revoked_at = now()
                 WHERE user_id = $1 AND revoked_at IS NULL AND family IS DISTINCT FROM $2
             RETURNING family",
            &[&user_id, &keep],
        )
        .await?;
    Ok(families(rows))
}

/// Marks a live session of the user as having passed a second factor; `false` when there
/// is no such session.
pub async fn set_session_mfa(
    client: &impl GenericClient,
    user_id: i64,
    family: Uuid,
) -> Result<bool, Error> {
    let n = client
        .execute(
            "UPDATE sessions SET mfa = TRUE WHERE family = $1 AND user_id = $2 AND revoked_at IS NULL",
            &[&family, &user_id],
        )
        .await?;
    Ok(n > 0)
}

/// Sessions revoked after `since` (by any process), and when: how every API process learns
/// which access tokens to refuse.
pub async fn revoked_since(
    client: &impl GenericClient,
    since: std::time::SystemTime,
) -> Result<Vec<(Uuid, std::time::SystemTime)>, Error> {
    let rows = client
        .query(
            "SELECT family, revoked_at FROM sessions WHERE revoked_at > $1 ORDER BY revoked_at",
            &[&since],
        )
        .await?;
    Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
}

/// The database's clock: revocation polls compare against it, not the API host's.
pub async fn now(client: &impl GenericClient) -> Result<std::time::SystemTime, Error> {
    Ok(client.query_one("SELECT now()", &[]).await?.get(0))
}

// ---- The development admin ------------------------------------------------------------------

/// Takes the development admin's advisory lock until the transaction `client` ends.
pub async fn lock_dev_admin(client: &impl GenericClient) -> Result<(), Error> {
    client.execute("SELECT pg_advisory_xact_lock($1)", &[&DEV_ADMIN_LOCK_KEY]).await?;
    Ok(())
}

pub async fn any_admin(client: &impl GenericClient) -> Result<bool, Error> {
    let row = client.query_opt("SELECT 1 FROM users WHERE role = 'admin' LIMIT 1", &[]).await?;
    Ok(row.is_some())
}

/// The development admin's account, TOTP enabled.
pub struct DevAdmin<'a> {
    pub user_id: i64,
    pub identity_hash: &'a [u8],
    pub email: &'a str,
    pub password_hash: &'a str,
    pub totp_secret: &'a str,
}

/// Leaves out the password hash and the TOTP secret.
impl std::fmt::Debug for DevAdmin<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevAdmin").field("email", &self.email).finish_non_exhaustive()
    }
}

/// Creates the development admin and answers its user id. An earlier one that was demoted
/// keeps its row (same email): it is taken over, promoted and given the new password and
/// secret; the caller revokes its sessions.
pub async fn upsert_dev_admin(
    client: &impl GenericClient,
    admin: &DevAdmin<'_>,
) -> Result<i64, Error> {
    let row = client
        .query_one(
            "INSERT INTO users (user_id, identity_hash, email, password_hash, display_name, locale,
                            role, totp_secret, totp_enabled)
         VALUES ($1, $2, $3, $4, 'Development admin', 'en', 'admin', $5, TRUE)
         ON CONFLICT (email) DO UPDATE SET role = 'admin', password_hash = EXCLUDED.password_hash,
             totp_secret = EXCLUDED.totp_secret, totp_enabled = TRUE, totp_last_step = NULL
         RETURNING user_id",
            &[
                &admin.user_id,
                &admin.identity_hash,
                &admin.email,
                &admin.password_hash,
                &admin.totp_secret,
            ],
        )
        .await?;
    Ok(row.get(0))
}
