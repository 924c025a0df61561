//! The offerings this process serves, cached in memory so the reservation path reads no
//! database. Postgres holds the truth (config + open flag + ledger number); a background
//! refresh keeps every API instance in step with admin changes.
//!
//! - [`config`]: an offering's configuration and its validation.
//! - [`admin`]: create, open, close (stored, audited, set up in the ledger).
//! - [`view`]: the public view with live figures from the ledger.

pub mod admin;
pub mod config;
pub mod view;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use allot_ledger::{Ledger, OfferingSpec, ZoneBalance, ZoneSpec};
use allot_store::Pool;
use time::OffsetDateTime;

pub use config::{OfferingConfig, OfferingKind, ZoneConfig};
pub use view::{OfferingView, ViewLimits, ZoneView};

use crate::clock::Clock;
use crate::error::{ApiError, ApiResult, ErrorCode};

/// Payment gateways whose clearing accounts every offering gets: 1 = sandbox, 2 = bank.
pub const GATEWAYS: [u64; 2] = [1, 2];

/// An offering as served: its configuration, ledger spec and open flag.
#[derive(Debug)]
pub struct Offering {
    pub config: OfferingConfig,
    pub spec: OfferingSpec,
    pub is_open: bool,
    availability: Mutex<Option<Figures>>,
}

/// Zone figures as last read from the ledger, and when.
#[derive(Clone, Debug)]
pub struct Figures {
    pub read_at: Instant,
    pub as_of: OffsetDateTime,
    pub zones: Vec<ZoneBalance>,
}

impl Offering {
    fn new(config: OfferingConfig, number: u32, is_open: bool) -> Offering {
        let spec = OfferingSpec {
            number,
            zones: config
                .zones
                .iter()
                .enumerate()
                .map(|(i, z)| ZoneSpec { number: (i + 1) as u16, supply: z.supply.into() })
                .collect(),
            lot: config.lot.into(),
            min_quantity: config.min_quantity.into(),
            max_per_person: config.max_per_person.into(),
            gateways: GATEWAYS.to_vec(),
        };
        Offering { config, spec, is_open, availability: Mutex::new(None) }
    }

    pub fn id(&self) -> &str {
        &self.config.id
    }

    /// Open now: switched on, and inside its window when it has one.
    pub fn accepts_reservations(&self, now: OffsetDateTime) -> bool {
        self.is_open
            && self.config.opens_at.is_none_or(|t| now >= t)
            && self.config.closes_at.is_none_or(|t| now < t)
    }

    pub fn zone(&self, number: u16) -> Option<&ZoneConfig> {
        self.config.zones.get((number as usize).checked_sub(1)?)
    }

    /// Zone number for a zone id; `None` picks the only zone of a one-zone offering.
    pub fn zone_number(&self, id: Option<&str>) -> ApiResult<u16> {
        match id {
            Some(id) => self
                .config
                .zone_index(id)
                .map(|i| (i + 1) as u16)
                .ok_or_else(|| ApiError::field(ErrorCode::ZoneNotFound, "zone")),
            None if self.config.zones.len() == 1 => Ok(1),
            None => {
                Err(ApiError::inconsistent("zone", "this offering has several zones: pick one"))
            }
        }
    }

    /// Amount due for `quantity` units of a zone, and the deposit that confirms it
    /// (rounded up to the satang, so the deposit is never short).
    pub fn amounts_satang(&self, zone: u16, quantity: u64) -> (u64, u64) {
        let price = self.zone(zone).map_or(0, |z| z.price_satang);
        let due = quantity.checked_mul(price).expect("bounded by validation");
        let deposit = (due as u128 * self.config.deposit_percent as u128).div_ceil(100) as u64;
        (due, deposit)
    }

    /// Live zone figures from TigerBeetle, cached for at most `max_age`.
    pub async fn availability(&self, ledger: &Ledger, max_age: Duration) -> ApiResult<Figures> {
        if let Some(cached) = self.last_availability() {
            if cached.read_at.elapsed() < max_age {
                return Ok(cached);
            }
        }
        let zones = ledger.zone_balances(&self.spec).await?;
        let fresh = Figures { read_at: Instant::now(), as_of: OffsetDateTime::now_utc(), zones };
        *self.availability.lock().expect("not poisoned") = Some(fresh.clone());
        Ok(fresh)
    }

    /// The figures last read, however old: what a page shows, marked stale, while the
    /// ledger does not answer.
    pub fn last_availability(&self) -> Option<Figures> {
        self.availability.lock().expect("not poisoned").clone()
    }
}

impl Catalog {
    /// Reads every offering's figures now (each bounded by `timeout`), so an instance has
    /// last known figures to show in an outage even for pages it was never asked for.
    pub async fn warm_availability(&self, ledger: &Ledger, timeout: Duration) {
        for offering in self.all() {
            let read = offering.availability(ledger, Duration::ZERO);
            if let Ok(Err(e)) = tokio::time::timeout(timeout, read).await {
                tracing::debug!(offering = %offering.id(), error = %e, "figures not refreshed");
            }
        }
    }
}

/// Every offering, by id and by ledger number.
#[derive(Debug, Default)]
pub struct Catalog {
    by_id: RwLock<HashMap<String, Arc<Offering>>>,
    /// What "now" is when asking whether an offering or a window is open.
    clock: Clock,
}

impl Catalog {
    pub fn new(clock: Clock) -> Catalog {
        Catalog { by_id: RwLock::default(), clock }
    }

    /// The time opening and closing times are compared with.
    pub fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    pub fn get(&self, id: &str) -> Option<Arc<Offering>> {
        self.by_id.read().expect("not poisoned").get(id).cloned()
    }

    /// The offering a request names by id, or the `offering_not_found` every route answers.
    pub fn find(&self, id: &str) -> ApiResult<Arc<Offering>> {
        self.get(id).ok_or_else(|| ApiError::field(ErrorCode::OfferingNotFound, "id"))
    }

    pub fn by_number(&self, number: u32) -> Option<Arc<Offering>> {
        let by_id = self.by_id.read().expect("not poisoned");
        by_id.values().find(|o| o.spec.number == number).cloned()
    }

    pub fn all(&self) -> Vec<Arc<Offering>> {
        let mut all: Vec<_> = self.by_id.read().expect("not poisoned").values().cloned().collect();
        all.sort_by_key(|o| o.spec.number);
        all
    }

    /// Reloads from Postgres, setting up in the ledger any offering not seen before.
    /// Offerings whose config did not change keep their cached availability.
    pub async fn refresh(&self, db: &Pool, ledger: &Ledger) -> ApiResult<()> {
        let rows = allot_store::offerings::all(&db.get().await?).await?;
        let mut fresh = HashMap::new();
        for row in rows {
            let config: OfferingConfig =
                serde_json::from_value(row.config).map_err(ApiError::internal)?;
            let (number, is_open) = (row.number, row.is_open);
            let known = self.get(&config.id);
            let offering = match known {
                Some(o) if o.config == config && o.is_open == is_open => o,
                Some(o) if o.config == config => {
                    Arc::new(Offering::new(config, o.spec.number, is_open))
                }
                _ => {
                    let offering = Offering::new(config, number, is_open);
                    ledger.setup_offering(&offering.spec).await?;
                    Arc::new(offering)
                }
            };
            fresh.insert(offering.config.id.clone(), offering);
        }
        *self.by_id.write().expect("not poisoned") = fresh;
        Ok(())
    }
}

/// Inserts an offering, open or closed; `false` when one with its id exists already.
pub async fn insert(db: &Pool, config: &OfferingConfig, open: bool) -> ApiResult<bool> {
    config.validate()?;
    let json = serde_json::to_value(config).map_err(ApiError::internal)?;
    Ok(allot_store::offerings::insert(&db.get().await?, &config.id, &json, open).await?)
}

pub async fn set_open(db: &Pool, id: &str, open: bool) -> ApiResult<bool> {
    Ok(allot_store::offerings::set_open(&db.get().await?, id, open).await?)
}

/// Loads `dir/*.toml` seed offerings, inserting those not yet known. A file that differs
/// from the stored offering is reported and ignored: a live offering's supply never changes
/// behind the ledger's back. New ones are inserted `open` or closed: production loads them
/// closed, so nothing goes on sale before an admin opens it.
pub async fn load_seed_files(db: &Pool, dir: &Path, open: bool) -> Result<usize, String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        tracing::info!(dir = %dir.display(), "no offerings directory");
        return Ok(0);
    };
    let mut paths: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.retain(|p| p.extension().is_some_and(|e| e == "toml"));
    paths.sort();
    let mut inserted = 0;
    for path in paths {
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let config: OfferingConfig =
            toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        config.validate().map_err(|e| format!("{}: {e}", path.display()))?;
        if insert(db, &config, open).await.map_err(|e| e.to_string())? {
            inserted += 1;
            tracing::info!(offering = %config.id, "seed offering loaded");
        }
    }
    Ok(inserted)
}
