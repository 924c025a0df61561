//! Accounts: registration and the rules its input must pass, the caller's own profile, and
//! role changes by an admin.
//!
//! One account per national ID (stored as a keyed hash) and per email, enforced by the
//! unique constraints, never by a racy pre-check.

use allot_store::identity::{self as store, NewUser, UserInsert};
use allot_store::status::{IdentityKind, Verification};
use allot_store::GenericClient;
use rand::Rng;

use super::kinds::{Document, IdentityInput};
use super::national_id::NationalId;
use super::{password, stored_role, Identity, Role};
use crate::error::{ApiError, ApiResult, ErrorCode};

/// User ids are below 2^53 so JavaScript clients read them exactly; they are also the
/// ledger's person numbers.
const USER_ID_LIMIT: i64 = 1 << 53;
/// A random id colliding with an existing one is a 1-in-2^53-per-user event; a few retries
/// turn "practically never" into "never".
const USER_ID_ATTEMPTS_MAX: usize = 3;
/// RFC 5321: 64 bytes of local part, 254 bytes in all.
pub(super) const EMAIL_BYTES_MAX: usize = 254;
const EMAIL_LOCAL_BYTES_MAX: usize = 64;
const DISPLAY_NAME_CHARS_MAX: usize = 100;

/// A registration whose every field passed its rule. Parsing costs nothing, so it comes
/// before the rate limit, the proof of work and the deliberately slow password hash.
pub struct Registration {
    identity: Document,
    email: String,
    password: String,
    display_name: Option<String>,
    locale: &'static str,
}

/// Names neither the identity's value nor the password.
impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration")
            .field("email", &self.email)
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

/// Who the registration says the person is: the identity object, or the older
/// `national_id` field (a Thai national ID). Exactly one of the two. Debug names the kind
/// only.
pub enum IdentityField<'a> {
    NationalId(&'a str),
    Identity(&'a IdentityInput),
}

impl std::fmt::Debug for IdentityField<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IdentityField::NationalId(_) => f.write_str("NationalId(*)"),
            IdentityField::Identity(input) => write!(f, "{input:?}"),
        }
    }
}

impl Registration {
    /// Checks each field in turn; the first that fails is the error, naming its field.
    pub fn parse(
        identity: IdentityField<'_>,
        email: &str,
        password: String,
        display_name: Option<&str>,
        locale: Option<&str>,
    ) -> ApiResult<Registration> {
        let email = parse_email(email)?;
        let identity = match identity {
            IdentityField::NationalId(raw) => Document::ThaiNationalId(NationalId::parse(raw)?),
            IdentityField::Identity(input) => Document::parse(input, &email)?,
        };
        let display_name = parse_display_name(display_name)?;
        let locale = parse_locale(locale)?;
        let value = identity.expose_value().trim_start_matches('+');
        password::check_strength(&password, &email, value)?;
        Ok(Registration { identity, email, password, display_name, locale })
    }
}

/// What a user sees of their own account.
#[derive(Clone, Debug)]
pub struct Profile {
    pub email: String,
    pub display_name: Option<String>,
    pub locale: String,
    pub role: Role,
    pub mfa_enabled: bool,
    pub identity_kind: IdentityKind,
    pub identity_country: Option<String>,
    pub verification: Verification,
}

impl Identity {
    /// Creates a citizen account and answers its user id.
    pub async fn register(&self, registration: Registration) -> ApiResult<i64> {
        let Registration { identity, email, password, display_name, locale } = registration;
        let password_hash = password::hash(password).await?;
        let identity_hash = identity.lookup_hash(&self.identity_key);
        let new = NewUser {
            user_id: 0,
            identity_hash: &identity_hash,
            identity_kind: identity.kind(),
            identity_country: identity.country(),
            email: &email,
            password_hash: &password_hash,
            display_name: display_name.as_deref(),
            locale,
        };
        let user_id = insert_user(&self.db.get().await?, new).await?;
        let actor = crate::audit::user(user_id);
        let after = serde_json::json!({
            "role": Role::Citizen.as_str(),
            "identity_kind": identity.kind().as_str(),
            "identity_country": identity.country(),
        });
        crate::audit::append(
            &self.db.get().await?,
            &actor,
            "user.register",
            &actor,
            None,
            Some(&after),
        )
        .await?;
        tracing::info!(user_id, identity_kind = identity.kind().as_str(), "user registered");
        Ok(user_id)
    }

    /// The account of a signed-in user; `unauthorized` when it no longer exists.
    pub async fn profile(&self, user_id: i64) -> ApiResult<Profile> {
        let row = store::profile(&self.db.get().await?, user_id)
            .await?
            .ok_or_else(|| ApiError::new(ErrorCode::Unauthorized))?;
        Ok(Profile {
            email: row.email,
            display_name: row.display_name,
            locale: row.locale,
            role: stored_role(&row.role),
            mfa_enabled: row.totp_enabled,
            identity_kind: row.identity_kind,
            identity_country: row.identity_country,
            verification: row.verification,
        })
    }

    /// Sets a user's role on behalf of `admin` (whose role the caller checked), audited.
    /// Every session of the user ends with it (their access tokens too), so the new role
    /// applies from the next sign-in. Admins cannot change their own role, so the last admin
    /// cannot lock everyone out.
    pub async fn set_role(&self, admin: i64, user_id: i64, role: Role) -> ApiResult<()> {
        if user_id == admin {
            return Err(ApiError::field(ErrorCode::Forbidden, "user_id"));
        }
        let client = self.db.get().await?;
        let before =
            store::role(&client, user_id).await?.map(|role| serde_json::json!({ "role": role }));
        if !store::set_role(&client, user_id, role.as_str()).await? {
            return Err(ApiError::field(ErrorCode::NotFound, "user_id"));
        }
        let after = serde_json::json!({ "role": role.as_str() });
        let (actor, subject) = (crate::audit::user(admin), crate::audit::user(user_id));
        crate::audit::append(
            &client,
            &actor,
            "user.role_change",
            &subject,
            before.as_ref(),
            Some(&after),
        )
        .await?;
        self.revoke_sessions(&client, user_id, None).await?;
        tracing::info!(user_id, role = role.as_str(), admin, "role changed; sessions revoked");
        Ok(())
    }
}

/// A fresh random user id.
pub(crate) fn random_user_id() -> i64 {
    rand::thread_rng().gen_range(1..USER_ID_LIMIT)
}

/// Inserts a citizen under a fresh random id, drawing again when the id is taken.
async fn insert_user(client: &impl GenericClient, mut new: NewUser<'_>) -> ApiResult<i64> {
    for _ in 0..USER_ID_ATTEMPTS_MAX {
        new.user_id = random_user_id();
        match store::insert_user(client, &new).await? {
            UserInsert::Inserted => return Ok(new.user_id),
            // Known only through a partner until now: the account is theirs, and so are
            // the person number and the cap already used through the partner.
            UserInsert::Claimed(user_id) => return Ok(user_id),
            UserInsert::UserIdTaken => continue,
            UserInsert::DuplicateIdentity => {
                return Err(ApiError::new(ErrorCode::DuplicateIdentity))
            }
        }
    }
    Err(ApiError::internal("no free user id after several attempts"))
}

/// The role an admin asked for.
pub fn parse_role(text: &str) -> ApiResult<Role> {
    Role::parse(text).ok_or_else(|| {
        ApiError::validation("role", "one of citizen, finance, regulator, official, admin, gate")
    })
}

/// Trimmed and lower-cased, so one mailbox is one account whatever its spelling. Checks the
/// shape only; whether the mailbox exists is for a confirmation email to find out.
fn parse_email(raw: &str) -> ApiResult<String> {
    let email = raw.trim().to_lowercase();
    let invalid = || ApiError::validation("email", "an address like name@example.com");
    if email.len() > EMAIL_BYTES_MAX {
        return Err(ApiError::validation("email", format!("at most {EMAIL_BYTES_MAX} bytes")));
    }
    let (local, domain) = email.rsplit_once('@').ok_or_else(invalid)?;
    let labels_ok = domain.split('.').count() >= 2
        && domain.split('.').all(|l| !l.is_empty() && !l.starts_with('-') && !l.ends_with('-'));
    if local.is_empty()
        || local.len() > EMAIL_LOCAL_BYTES_MAX
        || local.contains('@')
        || !labels_ok
        || email.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(invalid());
    }
    Ok(email)
}

fn parse_display_name(raw: Option<&str>) -> ApiResult<Option<String>> {
    let Some(name) = raw.map(str::trim).filter(|n| !n.is_empty()) else {
        return Ok(None);
    };
    if name.chars().count() > DISPLAY_NAME_CHARS_MAX {
        let reason = format!("at most {DISPLAY_NAME_CHARS_MAX} characters");
        return Err(ApiError::validation("display_name", reason));
    }
    if name.chars().any(char::is_control) {
        return Err(ApiError::validation("display_name", "no control characters"));
    }
    Ok(Some(name.to_owned()))
}

fn parse_locale(raw: Option<&str>) -> ApiResult<&'static str> {
    let Some(raw) = raw else { return Ok("th") };
    crate::i18n::SUPPORTED
        .into_iter()
        .find(|l| *l == raw)
        .ok_or_else(|| ApiError::validation("locale", "one of th, en, ja, ko, zh"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalized_and_shape_checked() {
        assert_eq!(parse_email("  Somchai.J@Example.CO.TH ").unwrap(), "somchai.j@example.co.th");
        for bad in
            ["", "somchai", "@example.com", "a@b", "a@.com", "a@-x.com", "a b@x.com", "a@@x.com"]
        {
            let e = parse_email(bad).unwrap_err();
            assert_eq!(
                (e.code, e.field.as_deref()),
                (ErrorCode::ValidationError, Some("email")),
                "{bad}"
            );
        }
        let long = format!("{}@example.com", "a".repeat(65));
        assert!(parse_email(&long).is_err());
    }

    #[test]
    fn display_names_are_trimmed_and_bounded_in_characters() {
        assert_eq!(parse_display_name(None).unwrap(), None);
        assert_eq!(parse_display_name(Some("  ")).unwrap(), None);
        assert_eq!(parse_display_name(Some(" สมชาย ")).unwrap().as_deref(), Some("สมชาย"));
        // 100 Thai characters are 300 bytes and still allowed: the limit is in characters.
        assert!(parse_display_name(Some(&"ก".repeat(100))).is_ok());
        let e = parse_display_name(Some(&"ก".repeat(101))).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("display_name"));
        assert!(parse_display_name(Some("a\u{0}b")).is_err());
    }

    #[test]
    fn locales_default_to_thai_and_must_be_supported() {
        assert_eq!(parse_locale(None).unwrap(), "th");
        assert_eq!(parse_locale(Some("ja")).unwrap(), "ja");
        assert_eq!(parse_locale(Some("fr")).unwrap_err().field.as_deref(), Some("locale"));
    }
}
