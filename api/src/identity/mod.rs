//! Who someone is, and the service that registers people, signs them in and enrols their
//! second factor.
//!
//! - [`Identity`]: the service, holding exactly its handles; built once by `startup`.
//! - [`users`]: registration and its input rules, the caller's profile, role changes.
//! - [`sessions`]: sign-in, refresh-token families, sign-out; [`guard`]: the defences
//!   against guessing (per-IP proof of work, per-account backoff and lockout, single-use
//!   TOTP codes); [`revocation`]: sign-out, and sessions revoked on role or factor change.
//! - [`mfa`]: TOTP enrolment, its confirmation, and the code check at sign-in.
//! - [`dev_bootstrap`]: the development admin and its private credentials file.
//! - [`kinds`]: the identities a person registers with (Thai national ID, passport with
//!   [`mrz`] check digits, phone, email) and the keyed hash each is found under.
//! - [`verification`]: proving a phone or email with a one-time code (sent through
//!   [`sms`] or the email sender), and every process learning of verification changes;
//!   [`kyc`]: identity checks at a provider (sandbox or HTTP) and their signed callbacks.
//! - [`national_id`], [`password`], [`tokens`], [`totp`]: the primitives they use.
//!
//! Invariants: the raw national ID is never logged, stored or returned; neither is a
//! password, a TOTP secret after enrolment, or a refresh token after it is issued. Nothing
//! here knows HTTP: the routes extract, call and answer.

pub mod dev_bootstrap;
pub mod guard;
pub mod kinds;
pub mod kyc;
pub mod mfa;
pub mod mrz;
pub mod national_id;
pub mod password;
pub mod revocation;
pub mod sessions;
pub mod sms;
pub mod tokens;
pub mod totp;
pub mod users;
pub mod verification;

use std::sync::Arc;

use allot_store::Pool;
use serde::{Deserialize, Serialize};

use crate::config::IdentitySettings;
use tokens::TokenKeys;

/// Identity's handles. Cheap to clone (the pool and Arcs). Password hashing needs no
/// handle: its bound is per process ([`password::hashing_concurrency_max`]), whatever
/// holds it.
#[derive(Clone)]
pub struct Identity {
    /// Users and refresh tokens live in Postgres; see `allot_store::identity`.
    db: Pool,
    /// Shared with the `Principal` extractor, which verifies what these keys issue.
    tokens: Arc<TokenKeys>,
    /// Key for national-ID lookup hashes: the raw number is never stored or logged.
    identity_key: Arc<[u8]>,
    /// For the refresh tokens' lifetime.
    settings: IdentitySettings,
    /// Failed sign-ins per client address, in memory.
    guard: Arc<guard::SignInGuard>,
    /// Where identities are checked: the sandbox (dev mode), an HTTP provider, or none.
    kyc: Option<Arc<dyn kyc::Provider>>,
    /// Texts with phone codes; email codes go through the notification sender.
    sms: Option<Arc<dyn sms::SmsSender>>,
    email: Option<Arc<dyn crate::notify::senders::Sender>>,
    dev_mode: bool,
}

/// How identities are verified: built by `startup` from the settings.
#[derive(Clone, Debug, Default)]
pub struct Verifiers {
    pub kyc: Option<Arc<dyn kyc::Provider>>,
    pub sms: Option<Arc<dyn sms::SmsSender>>,
    pub email: Option<Arc<dyn crate::notify::senders::Sender>>,
    pub dev_mode: bool,
}

/// Names no key.
impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity").field("tokens", &self.tokens).finish_non_exhaustive()
    }
}

impl Identity {
    pub fn new(
        db: Pool,
        tokens: Arc<TokenKeys>,
        identity_key: &[u8],
        settings: IdentitySettings,
        verifiers: Verifiers,
    ) -> Identity {
        let guard = Arc::new(guard::SignInGuard::new(settings.sign_in_pow_after_failures));
        let Verifiers { kyc, sms, email, dev_mode } = verifiers;
        Identity {
            db,
            tokens,
            identity_key: identity_key.into(),
            settings,
            guard,
            kyc,
            sms,
            email,
            dev_mode,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Bond buyers and concert fans alike.
    Citizen,
    Finance,
    Regulator,
    Official,
    Admin,
    /// Staff at a venue's gates: verify tickets, see a holder's initials and identity kind.
    Gate,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Citizen => "citizen",
            Role::Finance => "finance",
            Role::Regulator => "regulator",
            Role::Official => "official",
            Role::Admin => "admin",
            Role::Gate => "gate",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        [Role::Citizen, Role::Finance, Role::Regulator, Role::Official, Role::Admin, Role::Gate]
            .into_iter()
            .find(|r| r.as_str() == s)
    }

    /// Staff roles see money or other people's data: they must use a second factor.
    pub fn requires_mfa(self) -> bool {
        !matches!(self, Role::Citizen)
    }
}

/// Roles in the database passed its CHECK constraint, so an unknown one is a broken
/// invariant, not a client's mistake.
fn stored_role(text: &str) -> Role {
    Role::parse(text).unwrap_or_else(|| panic!("users.role holds unknown role {text:?}"))
}
