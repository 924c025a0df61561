//! Bank partners: organisations that reserve for their customers, each within an
//! allocation per offering that the ledger enforces.
//!
//! - An admin creates a partner (`POST /v1/admin/partners`): it gets a client id and a
//!   256-bit client secret, shown once and stored only as its SHA-256 (a secret that long
//!   needs no slow hash), and a webhook signing key derived from the server's key.
//! - An admin grants it an allocation in an offering: its partner quota account in the
//!   ledger, funded once with the units, and a row in `partner_allocations`.
//! - The partner takes an access token with the OAuth 2.0 client-credentials grant
//!   (RFC 6749, 4.4) and reserves for a customer named by national ID. The customer's person
//!   number is their account's (one is made, without credentials, when they have none), so
//!   the per-person cap is shared by both channels; the hold's third link draws on the
//!   partner's allocation (`partner_allocation_exceeded` when short). The hold id is
//!   derived from (partner, offering, Idempotency-Key): a retried call holds once.
//! - Calls are rate-limited per partner and every hold a partner places is audited.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use allot_ledger::{HoldRequest, Ledger};
use allot_store::partners::{self as store, NewPartner};
use allot_store::Pool;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use hmac::{Hmac, Mac};
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::catalog::Catalog;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::holds::partner_hold_id;
use crate::identity::national_id::NationalId;
use crate::reservations::{MyReservation, Reservation, Reservations};

/// Audience of partner tokens: a person's token is not a partner's, nor the reverse.
pub const AUDIENCE: &str = "allot-partner";
/// A partner's access token lasts this long.
pub const TOKEN_SECONDS: u64 = 15 * 60;
/// Reservations a partner's list answers at most.
pub const LIST_MAX: i64 = 1_000;
const NAME_CHARS_MAX: usize = 100;

/// The partners' service, built once by `startup`.
#[derive(Clone)]
pub struct Partners {
    db: Pool,
    ledger: Arc<Ledger>,
    catalog: Arc<Catalog>,
    reservations: Reservations,
    identity_key: Arc<[u8]>,
    encoding: Arc<EncodingKey>,
    decoding: Arc<DecodingKey>,
    limiter: Option<Arc<DefaultKeyedRateLimiter<u16>>>,
    ledger_timeout: Duration,
    /// Delivers status webhooks.
    http: reqwest::Client,
}

/// How often each instance looks for due partner webhooks.
pub const WEBHOOK_POLL: Duration = Duration::from_millis(500);
/// A partner's endpoint slower than this counts as down for this attempt.
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(5);
const WEBHOOK_ROWS_MAX: i64 = 32;

impl std::fmt::Debug for Partners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Partners").finish_non_exhaustive()
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct PartnerClaims {
    sub: String,
    aud: String,
    iat: u64,
    exp: u64,
}

/// What an admin gets back once: the secret is not kept and cannot be shown again.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedPartner {
    pub partner_id: i32,
    pub name: String,
    pub client_id: String,
    pub client_secret: String,
    /// The key its status webhooks are signed with (HMAC-SHA256, `X-Allot-Signature`).
    pub webhook_secret: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PartnerReserveRequest {
    /// The customer's Thai national ID; the partner vouches for having verified them.
    pub national_id: String,
    pub quantity: u64,
    pub zone: Option<String>,
    #[serde(default)]
    pub allow_partial: bool,
}

/// A reservation in a partner's list.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PartnerReservation {
    #[serde(flatten)]
    pub reservation: MyReservation,
    /// The customer's person number (their account's user id).
    pub customer: i64,
}

impl Partners {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        db: Pool,
        ledger: Arc<Ledger>,
        catalog: Arc<Catalog>,
        reservations: Reservations,
        token_secret: &[u8],
        identity_key: &[u8],
        per_second: u32,
        ledger_timeout: Duration,
    ) -> Partners {
        // A key of its own, so no person's token can be replayed as a partner's.
        let key = derive(token_secret, b"allot/partner-token/v1");
        let limiter = NonZeroU32::new(per_second).map(|rate| {
            let burst = rate.saturating_mul(NonZeroU32::new(2).expect("2"));
            Arc::new(RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)))
        });
        Partners {
            db,
            ledger,
            catalog,
            reservations,
            identity_key: identity_key.into(),
            encoding: Arc::new(EncodingKey::from_secret(&key)),
            decoding: Arc::new(DecodingKey::from_secret(&key)),
            limiter,
            ledger_timeout,
            http: reqwest::Client::builder()
                .timeout(WEBHOOK_TIMEOUT)
                .build()
                .expect("a client with a timeout builds"),
        }
    }

    /// Creates a partner on an admin's behalf, audited.
    pub async fn create(
        &self,
        admin: i64,
        name: &str,
        webhook_url: Option<&str>,
    ) -> ApiResult<CreatedPartner> {
        let name = name.trim();
        if name.is_empty()
            || name.chars().count() > NAME_CHARS_MAX
            || name.chars().any(char::is_control)
        {
            return Err(ApiError::validation("name", format!("1 to {NAME_CHARS_MAX} characters")));
        }
        if let Some(url) = webhook_url {
            if !(url.starts_with("https://") || url.starts_with("http://")) || url.len() > 500 {
                return Err(ApiError::validation("webhook_url", "an http(s) URL"));
            }
        }
        let client_id = format!("partner_{}", random_hex(12));
        let client_secret = random_hex(32);
        let secret_hash = Sha256::digest(client_secret.as_bytes());
        let mut client = self.db.get().await?;
        let tx = client.transaction().await?;
        let new =
            NewPartner { name, client_id: &client_id, secret_hash: &secret_hash, webhook_url };
        let partner_id = store::insert(&tx, &new)
            .await?
            .ok_or_else(|| ApiError::validation("name", "a partner of that name exists"))?;
        let after =
            serde_json::json!({ "name": name, "client_id": client_id, "webhook_url": webhook_url });
        let subject = format!("partner:{partner_id}");
        crate::audit::append(
            &tx,
            &crate::audit::user(admin),
            "partner.create",
            &subject,
            None,
            Some(&after),
        )
        .await?;
        tx.commit().await?;
        let webhook_secret = hex::encode(self.webhook_key(partner_id));
        Ok(CreatedPartner {
            partner_id,
            name: name.to_owned(),
            client_id,
            client_secret,
            webhook_secret,
        })
    }

    /// The key a partner's webhooks are signed with: derived, so it is never stored.
    pub fn webhook_key(&self, partner_id: i32) -> Vec<u8> {
        derive(&self.identity_key, format!("allot/partner-webhook/v1/{partner_id}").as_bytes())
    }

    /// Grants a partner its allocation in an offering, in the ledger first (idempotent;
    /// another amount than the one granted is `validation_error`), audited.
    pub async fn set_allocation(
        &self,
        admin: i64,
        partner_id: i32,
        offering_id: &str,
        units: u64,
    ) -> ApiResult<i64> {
        let offering = self
            .catalog
            .get(offering_id)
            .ok_or_else(|| ApiError::field(ErrorCode::OfferingNotFound, "offering_id"))?;
        let number = partner_number(partner_id)?;
        if units == 0 || !units.is_multiple_of(offering.config.lot) || i64::try_from(units).is_err()
        {
            return Err(ApiError::validation("units", "a positive multiple of the lot"));
        }
        if !store::exists(&self.db.get().await?, partner_id).await? {
            return Err(ApiError::field(ErrorCode::NotFound, "partner_id"));
        }
        let grant = self.ledger.set_partner_allocation(&offering.spec, number, units.into());
        match tokio::time::timeout(self.ledger_timeout, grant).await {
            Err(_) => return Err(ApiError::ledger_timeout()),
            Ok(Err(allot_ledger::LedgerError::Conflict(_))) => {
                return Err(ApiError::validation(
                    "units",
                    "the partner already has another allocation here",
                ))
            }
            Ok(other) => other?,
        }
        let mut client = self.db.get().await?;
        let tx = client.transaction().await?;
        let units = store::set_allocation(&tx, partner_id, offering_id, units as i64).await?;
        let after = serde_json::json!({ "offering_id": offering_id, "units": units });
        let subject = format!("partner:{partner_id}");
        crate::audit::append(
            &tx,
            &crate::audit::user(admin),
            "partner.allocation",
            &subject,
            None,
            Some(&after),
        )
        .await?;
        tx.commit().await?;
        Ok(units)
    }

    /// The client-credentials grant: an access token for a partner whose secret matches.
    pub async fn token(&self, client_id: &str, client_secret: &str) -> ApiResult<String> {
        let refused = || ApiError::new(ErrorCode::InvalidCredentials);
        if client_id.len() > 64 || client_secret.len() > 128 {
            return Err(refused());
        }
        let found = store::by_client_id(&self.db.get().await?, client_id).await?;
        let given = Sha256::digest(client_secret.as_bytes());
        // Compared in constant time; an unknown client compares against zeros.
        let stored = found.as_ref().map_or(vec![0u8; 32], |p| p.secret_hash.clone());
        let equal = given.len() == stored.len()
            && given.iter().zip(&stored).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
        let partner = found.filter(|_| equal).ok_or_else(|| {
            tracing::warn!(target: "security", "partner token refused");
            refused()
        })?;
        let now = crate::identity::tokens::now_seconds();
        let claims = PartnerClaims {
            sub: partner.partner_id.to_string(),
            aud: AUDIENCE.into(),
            iat: now,
            exp: now + TOKEN_SECONDS,
        };
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).map_err(ApiError::internal)
    }

    /// The partner a bearer token names, rate-limited per partner.
    pub fn authenticate(&self, bearer: Option<&str>) -> ApiResult<u16> {
        let unauthorized = || ApiError::new(ErrorCode::Unauthorized);
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[AUDIENCE]);
        let claims =
            decode::<PartnerClaims>(bearer.ok_or_else(unauthorized)?, &self.decoding, &validation)
                .map_err(|_| unauthorized())?
                .claims;
        let partner: i32 = claims.sub.parse().map_err(|_| unauthorized())?;
        let number = partner_number(partner).map_err(|_| unauthorized())?;
        if let Some(limiter) = &self.limiter {
            limiter.check_key(&number).map_err(|not_until| {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                ApiError::new(ErrorCode::RateLimited).with_arg("retry_after", seconds.max(1))
            })?;
        }
        Ok(number)
    }

    /// Reserves for a customer: the offering must be open, the partner must hold an
    /// allocation in it, and the hold draws on the customer's cap and the allocation.
    pub async fn reserve(
        &self,
        partner: u16,
        offering_id: &str,
        key: &str,
        body: &PartnerReserveRequest,
    ) -> ApiResult<(Reservation, bool)> {
        let offering = self
            .catalog
            .get(offering_id)
            .ok_or_else(|| ApiError::field(ErrorCode::OfferingNotFound, "offering_id"))?;
        if !offering.accepts_reservations(self.catalog.now()) {
            return Err(ApiError::new(ErrorCode::OfferingNotOpen));
        }
        let national_id = NationalId::parse(&body.national_id)?;
        // The partner vouches for a verified Thai national ID: the offering must take one.
        let kind = allot_store::status::IdentityKind::ThaiNationalId;
        offering.config.eligibility.check(Some(kind), true)?;
        let zone = offering.zone_number(body.zone.as_deref())?;
        let client = self.db.get().await?;
        if store::allocation(&client, partner.into(), offering_id).await?.is_none() {
            return Err(ApiError::field(ErrorCode::PartnerAllocationExceeded, "offering_id"));
        }
        let hash = national_id.lookup_hash(&self.identity_key);
        let candidate = crate::identity::users::random_user_id();
        let person = allot_store::identity::person_of_identity(&client, candidate, &hash).await?;
        let request = HoldRequest {
            id: partner_hold_id(offering.spec.number, partner, key),
            zone,
            person: person as u64,
            quantity: body.quantity.into(),
            deadline: self.reservations.deadline(&offering),
            allow_partial: body.allow_partial,
            partner: Some(partner),
        };
        let (reservation, replayed) = self.reservations.place(&offering, &request).await?;
        if !replayed {
            let after = serde_json::json!({
                "reservation_id": reservation.reservation_id,
                "offering_id": offering_id,
                "customer": person,
                "quantity": reservation.quantity,
            });
            let actor = format!("partner:{partner}");
            crate::audit::append(
                &client,
                &actor,
                "partner.reserve",
                &crate::audit::user(person),
                None,
                Some(&after),
            )
            .await?;
        }
        Ok((reservation, replayed))
    }

    /// The partner's reservations, newest first, from the projection.
    pub async fn list(&self, partner: u16) -> ApiResult<Vec<PartnerReservation>> {
        let rows = store::reservations(&self.db.get().await?, partner.into(), LIST_MAX).await?;
        let now = SystemTime::now();
        Ok(rows
            .into_iter()
            .filter_map(|row| {
                let offering = self.catalog.get(&row.offering_id)?;
                let zone = row.zone as u16;
                let quantity = row.quantity as u64;
                let status = match row.status {
                    allot_store::status::ReservationStatus::Held if now >= row.expires_at => {
                        allot_store::status::ReservationStatus::Expired
                    }
                    status => status,
                };
                let (due, deposit) = offering.amounts_satang(zone, quantity);
                let reservation = MyReservation {
                    reservation_id: row.reservation_id,
                    offering_id: row.offering_id,
                    zone: offering.zone(zone).map_or_else(String::new, |z| z.id.clone()),
                    quantity,
                    amount_due_satang: due,
                    deposit_due_satang: deposit,
                    created_at: row.created_at.into(),
                    expires_at: row.expires_at.into(),
                    status: status.as_str(),
                };
                Some(PartnerReservation { reservation, customer: row.user_id })
            })
            .collect())
    }
}

impl Partners {
    /// Delivers due status webhooks every [`WEBHOOK_POLL`], forever. Every instance runs
    /// it: rows are claimed with `SKIP LOCKED`, so none is sent by two at once.
    pub async fn deliver_webhooks(self) {
        loop {
            match self.deliver_once().await {
                Ok(n) if n as i64 == WEBHOOK_ROWS_MAX => continue,
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "partner webhooks pass failed"),
            }
            tokio::time::sleep(WEBHOOK_POLL).await;
        }
    }

    /// One batch: claim, POST each signed (`X-Allot-Timestamp`, `X-Allot-Signature: v1=`
    /// HMAC-SHA256 of `timestamp.body` with the partner's webhook key, `Idempotency-Key`:
    /// the event's key), record what happened as the outbox does (retry with backoff, then
    /// failed), commit. Answers how many rows it claimed.
    pub async fn deliver_once(&self) -> Result<usize, String> {
        use crate::notify::outbox::{backoff, ATTEMPTS_MAX};
        use allot_store::outbox;
        use allot_store::status::OutboxStatus;
        let mut client = self.db.get().await.map_err(|e| e.to_string())?;
        let tx = client.transaction().await.map_err(|e| e.to_string())?;
        let rows = outbox::claim_partner_webhooks(&tx, WEBHOOK_ROWS_MAX)
            .await
            .map_err(|e| e.to_string())?;
        let sends = rows.iter().map(|row| async move {
            let mut event = row.args.clone();
            event["event"] = "reservation.status".into();
            let body = serde_json::to_vec(&event).expect("JSON serializes");
            let timestamp = time::OffsetDateTime::now_utc().unix_timestamp().to_string();
            let key = self.webhook_key(row.partner_id);
            let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("any key length");
            mac.update(timestamp.as_bytes());
            mac.update(b".");
            mac.update(&body);
            let signature = format!("v1={}", hex::encode(mac.finalize().into_bytes()));
            let sent = self
                .http
                .post(&row.url)
                .header("content-type", "application/json")
                .header(crate::identity::kyc::HEADER_TIMESTAMP, &timestamp)
                .header(crate::identity::kyc::HEADER_SIGNATURE, signature)
                .header("Idempotency-Key", &row.send_key)
                .body(body)
                .send()
                .await;
            match sent {
                Ok(res) if res.status().is_success() => Ok(()),
                Ok(res)
                    if res.status().is_client_error()
                        && res.status() != 408
                        && res.status() != 429 =>
                {
                    Err((false, format!("partner answered {}", res.status())))
                }
                Ok(res) => Err((true, format!("partner answered {}", res.status()))),
                Err(e) => Err((true, e.without_url().to_string())),
            }
        });
        let results = futures::future::join_all(sends).await;
        for (row, result) in rows.iter().zip(results) {
            let attempts = row.attempts + 1;
            match result {
                Ok(()) => outbox::mark_done(&tx, row.id, OutboxStatus::Sent, attempts).await,
                Err((true, error)) if attempts < ATTEMPTS_MAX => {
                    let seconds = backoff(attempts).as_secs() as f64;
                    outbox::mark_retry(&tx, row.id, attempts, &error, seconds).await
                }
                Err((_, error)) => {
                    tracing::error!(outbox_id = row.id, error = %error, "partner webhook failed for good");
                    outbox::mark_failed(&tx, row.id, attempts, &error).await
                }
            }
            .map_err(|e| e.to_string())?;
        }
        tx.commit().await.map_err(|e| e.to_string())?;
        Ok(rows.len())
    }
}

/// A partner's number in the ledger (1..=65535).
fn partner_number(partner_id: i32) -> ApiResult<u16> {
    u16::try_from(partner_id)
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| ApiError::field(ErrorCode::NotFound, "partner_id"))
}

fn derive(key: &[u8], label: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(label);
    mac.finalize().into_bytes().to_vec()
}

fn random_hex(bytes: usize) -> String {
    let mut raw = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut raw);
    hex::encode(raw)
}
