//! Identity checks at a KYC provider, in the shape national schemes use: the person asks
//! (`POST /v1/me/kyc`), approves at the provider (their app, a counter), and the provider
//! tells us with a signed callback (`POST /v1/kyc/callbacks/{provider}`) naming our request;
//! the account becomes `verified` or `rejected`. Every change is audited and reaches every
//! process's token check within a second (`verification`).
//!
//! Providers: `sandbox` (dev mode only; `./ops/kyc` or `POST /v1/sandbox/kyc/{user_id}`
//! plays the person approving, and signs its callback with a key derived from the identity
//! key, through the very path a real provider's takes) and `http` (`identity.kyc_url`: we
//! POST the request there with `identity.kyc_key` as bearer; its callbacks are signed with
//! `identity.kyc_callback_secret`). A callback is authentic when `X-Allot-Signature` is
//! `v1=` and the hex HMAC-SHA256 of `X-Allot-Timestamp + "." + body`, within five minutes;
//! anything else is 401 and changes nothing.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use allot_secrets::{ExposeSecret, Secret};
use allot_store::status::{IdentityKind, KycStatus, Verification};
use allot_store::verification as store;
use futures::future::BoxFuture;
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::Identity;
use crate::error::{ApiError, ApiResult, ErrorCode};

/// A callback's timestamp may be this far from our clock.
pub const CALLBACK_SKEW_SECONDS_MAX: i64 = 5 * 60;
pub const HEADER_TIMESTAMP: &str = "X-Allot-Timestamp";
pub const HEADER_SIGNATURE: &str = "X-Allot-Signature";
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(10);

/// What the person is sent to the provider with.
#[derive(Clone, Debug, Serialize)]
pub struct Opened {
    pub request_id: String,
    pub identity_kind: &'static str,
    pub identity_country: Option<String>,
}

pub trait Provider: Send + Sync + fmt::Debug {
    /// `sandbox` or `http`: the `{provider}` of its callback URL.
    fn name(&self) -> &'static str;
    /// Tells the provider of a new request; answers where the person approves, if a page.
    fn open<'a>(&'a self, opened: &'a Opened) -> BoxFuture<'a, ApiResult<Option<String>>>;
    /// The key its callbacks are signed with.
    fn callback_key(&self) -> &[u8];
}

/// Dev mode's provider: nothing to call; the person "approves" through the sandbox route.
pub struct Sandbox {
    key: Vec<u8>,
}

impl fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sandbox")
    }
}

impl Sandbox {
    /// Its callback key: HMAC(identity key, "allot/kyc/sandbox"), so no new secret is needed
    /// and no other deployment's sandbox can sign for this one.
    pub fn new(identity_key: &[u8]) -> Sandbox {
        let mut mac = Hmac::<Sha256>::new_from_slice(identity_key).expect("any key length");
        mac.update(b"allot/kyc/sandbox");
        Sandbox { key: mac.finalize().into_bytes().to_vec() }
    }
}

impl Provider for Sandbox {
    fn name(&self) -> &'static str {
        "sandbox"
    }

    fn open<'a>(&'a self, _: &'a Opened) -> BoxFuture<'a, ApiResult<Option<String>>> {
        Box::pin(async { Ok(None) })
    }

    fn callback_key(&self) -> &[u8] {
        &self.key
    }
}

/// A provider over HTTP: `POST {kyc_url}` with the request as JSON and the API key as
/// bearer; it answers `{"redirect_url": "..."}` (optional), and later calls back.
pub struct HttpProvider {
    client: reqwest::Client,
    url: String,
    key: Secret,
    callback_key: Vec<u8>,
}

impl fmt::Debug for HttpProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpProvider").field("url", &self.url).finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct ProviderAnswer {
    redirect_url: Option<String>,
}

impl Provider for HttpProvider {
    fn name(&self) -> &'static str {
        "http"
    }

    fn open<'a>(&'a self, opened: &'a Opened) -> BoxFuture<'a, ApiResult<Option<String>>> {
        Box::pin(async move {
            let unavailable = |e: String| {
                tracing::warn!(error = %e, "KYC provider unreachable");
                ApiError::new(ErrorCode::ServiceUnavailable)
            };
            let res = self
                .client
                .post(&self.url)
                .bearer_auth(self.key.expose_secret())
                .json(opened)
                .send()
                .await
                .map_err(|e| unavailable(e.without_url().to_string()))?;
            if !res.status().is_success() {
                return Err(unavailable(format!("answered {}", res.status())));
            }
            let answer: ProviderAnswer =
                res.json().await.map_err(|e| unavailable(e.without_url().to_string()))?;
            Ok(answer.redirect_url)
        })
    }

    fn callback_key(&self) -> &[u8] {
        &self.callback_key
    }
}

/// The provider the settings name: `kyc_url` set → HTTP; else the sandbox in dev mode;
/// else none (KYC requests are refused, and so are callbacks).
pub fn from_settings(
    url: &str,
    key: &Secret,
    callback_secret: &Secret,
    identity_key: &[u8],
    dev_mode: bool,
) -> Result<Option<Arc<dyn Provider>>, String> {
    let url = url.trim();
    if url.is_empty() {
        return Ok(dev_mode.then(|| Arc::new(Sandbox::new(identity_key)) as Arc<dyn Provider>));
    }
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(format!("kyc_url must be http(s)://...; got {url}"));
    }
    let callback_key =
        crate::secrets::decode("kyc_callback_secret", callback_secret.expose_secret())?;
    let client =
        reqwest::Client::builder().timeout(PROVIDER_TIMEOUT).build().map_err(|e| e.to_string())?;
    Ok(Some(Arc::new(HttpProvider { client, url: url.to_owned(), key: key.clone(), callback_key })))
}

/// `v1=<hex>` of HMAC-SHA256(key, timestamp "." body).
pub fn sign(key: &[u8], timestamp: &str, body: &[u8]) -> String {
    format!("v1={}", hex::encode(mac(key, timestamp, body).finalize().into_bytes()))
}

fn mac(key: &[u8], timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// Whether a callback is authentic and fresh; the reason when not (logged, never answered).
pub fn authenticate(
    key: &[u8],
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now_unix: i64,
) -> Result<(), &'static str> {
    let (Some(timestamp), Some(signature)) = (timestamp, signature) else {
        return Err("missing timestamp or signature header");
    };
    let sent: i64 = timestamp.parse().map_err(|_| "timestamp is not unix seconds")?;
    if now_unix.saturating_sub(sent).abs() > CALLBACK_SKEW_SECONDS_MAX {
        return Err("timestamp outside the window");
    }
    let given = signature.strip_prefix("v1=").and_then(|h| hex::decode(h).ok());
    let given = given.ok_or("signature is not v1=<hex>")?;
    // `verify_slice` compares in constant time.
    mac(key, timestamp, body).verify_slice(&given).map_err(|_| "signature does not match")
}

/// The decision a provider reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Approved,
    Rejected,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Callback {
    /// Ours, as given when the request was opened.
    pub request_id: String,
    pub decision: Decision,
}

/// A KYC request as its owner sees it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct KycView {
    pub request_id: String,
    pub provider: String,
    /// Where to approve at the provider, when it has a page for that.
    pub redirect_url: Option<String>,
    /// The account's verification now: `unverified`, `pending`, `verified`, `rejected`.
    #[schema(value_type = String)]
    pub verification: &'static str,
}

impl Identity {
    /// Opens an identity check for the caller, or answers the one already open. Phone and
    /// email identities are proven by a code instead (`validation_error`); an account
    /// already verified has nothing to check (`inconsistent_request`).
    pub async fn start_kyc(&self, user_id: i64) -> ApiResult<(KycView, bool)> {
        let provider = self.kyc.clone().ok_or_else(|| ApiError::new(ErrorCode::NotFound))?;
        let profile = self.profile(user_id).await?;
        if matches!(profile.identity_kind, IdentityKind::Phone | IdentityKind::Email) {
            return Err(ApiError::validation(
                "identity",
                "a phone or email identity is verified with a code: POST /v1/me/identity/code",
            ));
        }
        if profile.verification == Verification::Verified {
            return Err(ApiError::inconsistent("identity", "already verified"));
        }
        let mut client = self.db.get().await?;
        if let Some(open) = store::open_kyc_request(&client, user_id).await? {
            let view = KycView {
                request_id: open.request_id,
                provider: open.provider,
                redirect_url: None,
                verification: profile.verification.as_str(),
            };
            return Ok((view, false));
        }
        let mut raw = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut raw);
        let request_id = hex::encode(raw);
        let tx = client.transaction().await?;
        store::insert_kyc_request(&tx, &request_id, user_id, provider.name()).await?;
        let before = store::set_verification(&tx, user_id, Verification::Pending).await?;
        let actor = crate::audit::user(user_id);
        let after = serde_json::json!({
            "verification": Verification::Pending.as_str(),
            "provider": provider.name(),
            "request_id": request_id,
        });
        let before = before.map(|v| serde_json::json!({ "verification": v.as_str() }));
        crate::audit::append(
            &tx,
            &actor,
            "identity.kyc_request",
            &actor,
            before.as_ref(),
            Some(&after),
        )
        .await?;
        tx.commit().await?;
        self.tokens.verifications.insert(user_id, false, std::time::SystemTime::now());
        let opened = Opened {
            request_id: request_id.clone(),
            identity_kind: profile.identity_kind.as_str(),
            identity_country: profile.identity_country,
        };
        // After the commit: the provider may call back at once, and must find the request.
        let redirect_url = provider.open(&opened).await?;
        tracing::info!(user_id, provider = provider.name(), "KYC request opened");
        let view = KycView {
            request_id,
            provider: provider.name().to_owned(),
            redirect_url,
            verification: Verification::Pending.as_str(),
        };
        Ok((view, true))
    }

    /// A provider's callback: authenticated before anything is read, then applied once. A
    /// decision on a request already decided changes nothing and is answered as it stands.
    pub async fn kyc_callback(
        &self,
        provider: &str,
        timestamp: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
    ) -> ApiResult<KycView> {
        let known = self.kyc.clone().filter(|p| p.name() == provider);
        let Some(known) = known else {
            return Err(ApiError::new(ErrorCode::NotFound));
        };
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        if let Err(reason) = authenticate(known.callback_key(), timestamp, signature, body, now) {
            tracing::warn!(target: "security", provider, reason, "KYC callback refused");
            return Err(ApiError::new(ErrorCode::InvalidSignature));
        }
        let callback: Callback = serde_json::from_slice(body).map_err(|e| {
            ApiError::field(ErrorCode::MalformedJson, "body").with_arg("reason", e.to_string())
        })?;
        let not_found = || ApiError::field(ErrorCode::NotFound, "request_id");
        let mut client = self.db.get().await?;
        let tx = client.transaction().await?;
        let request =
            store::lock_kyc_request(&tx, &callback.request_id).await?.ok_or_else(not_found)?;
        if request.provider != provider {
            return Err(not_found());
        }
        let (status, to) = match callback.decision {
            Decision::Approved => (KycStatus::Approved, Verification::Verified),
            Decision::Rejected => (KycStatus::Rejected, Verification::Rejected),
        };
        let user_id = request.user_id;
        if request.status != KycStatus::Open {
            tx.commit().await?;
            let now = self.profile(user_id).await?.verification;
            return Ok(view(request.request_id, request.provider, now));
        }
        store::decide_kyc_request(&tx, &request.request_id, status).await?;
        let before = store::set_verification(&tx, user_id, to).await?;
        let actor = crate::audit::system(&format!("kyc:{provider}"));
        let before = before.map(|v| serde_json::json!({ "verification": v.as_str() }));
        let after =
            serde_json::json!({ "verification": to.as_str(), "request_id": request.request_id });
        crate::audit::append(
            &tx,
            &actor,
            "identity.kyc_decision",
            &crate::audit::user(user_id),
            before.as_ref(),
            Some(&after),
        )
        .await?;
        tx.commit().await?;
        self.tokens.verifications.insert(
            user_id,
            to == Verification::Verified,
            std::time::SystemTime::now(),
        );
        tracing::info!(user_id, provider, verification = to.as_str(), "KYC decided");
        Ok(view(request.request_id, request.provider, to))
    }

    /// Dev mode: the caller plays themself approving (or not) at the sandbox provider, which
    /// signs its callback and delivers it through [`Identity::kyc_callback`].
    pub async fn sandbox_kyc(
        &self,
        caller: i64,
        user_id: i64,
        decision: Decision,
    ) -> ApiResult<KycView> {
        let sandbox = self
            .kyc
            .clone()
            .filter(|p| p.name() == "sandbox" && self.dev_mode)
            .ok_or_else(|| ApiError::new(ErrorCode::NotFound))?;
        let not_found = || ApiError::field(ErrorCode::NotFound, "user_id");
        if caller != user_id {
            return Err(not_found());
        }
        let open =
            store::open_kyc_request(&self.db.get().await?, user_id).await?.ok_or_else(not_found)?;
        let body = serde_json::to_vec(&Callback { request_id: open.request_id, decision })
            .map_err(ApiError::internal)?;
        let timestamp = time::OffsetDateTime::now_utc().unix_timestamp().to_string();
        let signature = sign(sandbox.callback_key(), &timestamp, &body);
        self.kyc_callback("sandbox", Some(&timestamp), Some(&signature), &body).await
    }
}

fn view(request_id: String, provider: String, verification: Verification) -> KycView {
    KycView { request_id, provider, redirect_url: None, verification: verification.as_str() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_fresh_callback_signed_with_the_key_is_authentic() {
        let key = b"0123456789abcdef0123456789abcdef";
        let body = br#"{"request_id":"r","decision":"approved"}"#;
        let now = 1_800_000_000;
        let ts = now.to_string();
        let good = sign(key, &ts, body);
        assert_eq!(authenticate(key, Some(&ts), Some(&good), body, now), Ok(()));
        let other = sign(b"another key another key another!", &ts, body);
        assert!(authenticate(key, Some(&ts), Some(&other), body, now).is_err());
        let tampered = br#"{"request_id":"r","decision":"rejected"}"#;
        assert!(authenticate(key, Some(&ts), Some(&good), tampered, now).is_err());
        assert!(authenticate(key, Some(&ts), Some(&good), body, now + 301).is_err());
        assert!(authenticate(key, None, Some(&good), body, now).is_err());
        assert!(
            authenticate(key, Some(&ts), Some(good.trim_start_matches("v1=")), body, now).is_err()
        );
    }

    #[test]
    fn the_sandbox_key_depends_on_the_identity_key() {
        assert_ne!(Sandbox::new(&[1; 32]).callback_key(), Sandbox::new(&[2; 32]).callback_key());
        assert_eq!(Sandbox::new(&[1; 32]).callback_key(), Sandbox::new(&[1; 32]).callback_key());
    }
}
