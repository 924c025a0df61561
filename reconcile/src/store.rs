//! Connections to the two stores, and what every command reads from Postgres.

use allot_ledger::ids;
pub use allot_store::Connection as Client;

/// Connects to Postgres, first applying any migration not yet applied (as the API does
/// at start; safe beside a running API), so every table the commands read exists.
pub async fn connect(url: &str) -> Result<Client, String> {
    let pool = allot_store::pool(url, 1)?;
    // Reach the server first, so that an unreachable one is named as such.
    drop(pool.get().await.map_err(|e| format!("postgres: {e}"))?);
    allot_store::migrate(&pool).await.map_err(|e| format!("migrations: {e}"))?;
    pool.get().await.map_err(|e| format!("postgres: {e}"))
}

/// An offering as Postgres records it: what reconciliation needs of its configuration.
#[derive(Clone, Debug)]
pub struct OfferingRow {
    pub id: String,
    pub number: u32,
    pub config: serde_json::Value,
}

impl OfferingRow {
    /// Zone supplies and prices, in zone-number order (zone `n` is `zones[n - 1]`).
    pub fn zones(&self) -> Vec<(u128, u64)> {
        let zones = self.config["zones"].as_array().cloned().unwrap_or_default();
        zones
            .iter()
            .map(|z| {
                let supply = z["supply"].as_u64().unwrap_or(0);
                (supply.into(), z["price_satang"].as_u64().unwrap_or(0))
            })
            .collect()
    }

    pub fn deposit_percent(&self) -> u64 {
        self.config["deposit_percent"].as_u64().unwrap_or(100)
    }

    /// The deposit due for `quantity` units of `zone`, rounded up to the satang, as the
    /// API computes it when it shows a reservation.
    pub fn deposit_satang(&self, zone: u16, quantity: u64) -> u128 {
        let price = self.zones().get(zone as usize - 1).map_or(0, |z| z.1);
        let due = quantity as u128 * price as u128;
        (due * self.deposit_percent() as u128).div_ceil(100)
    }

    /// The ledger's view of this offering, enough for balance queries.
    pub fn spec(&self) -> allot_ledger::OfferingSpec {
        allot_ledger::OfferingSpec {
            number: self.number,
            zones: self
                .zones()
                .iter()
                .enumerate()
                .map(|(i, (supply, _))| allot_ledger::ZoneSpec {
                    number: (i + 1) as u16,
                    supply: *supply,
                })
                .collect(),
            lot: 1,
            min_quantity: 1,
            max_per_person: 1,
            gateways: Vec::new(),
        }
    }
}

pub async fn offerings(db: &Client) -> Result<Vec<OfferingRow>, String> {
    let rows =
        allot_store::offerings::all(db).await.map_err(|e| format!("reading offerings: {e}"))?;
    Ok(rows
        .into_iter()
        .map(|r| OfferingRow { id: r.id, number: r.number, config: r.config })
        .collect())
}

/// Every ledger of a deployment: money first, then each offering's inventory and quota.
pub fn ledgers(offerings: &[OfferingRow]) -> Vec<u32> {
    let mut ledgers = vec![ids::LEDGER_THB];
    for o in offerings {
        ledgers.push(ids::ledger_inventory(o.number));
        ledgers.push(ids::ledger_quota(o.number));
    }
    ledgers
}
