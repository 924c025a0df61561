//! Offerings: each one's configuration (JSON, validated by the API before it is stored),
//! its ledger number (from a sequence, so ledgers never collide) and its open flag.

use serde_json::Value;

use crate::{Error, GenericClient};

/// An offering as stored.
#[derive(Clone, Debug)]
pub struct OfferingRow {
    pub id: String,
    /// The offering's number in the ledger ids (`offerings_number_seq`).
    pub number: u32,
    pub config: Value,
    pub is_open: bool,
}

/// Every offering, in ledger-number order.
pub async fn all(client: &impl GenericClient) -> Result<Vec<OfferingRow>, Error> {
    let rows = client
        .query("SELECT id, number, config, is_open FROM offerings ORDER BY number", &[])
        .await?;
    Ok(rows
        .iter()
        .map(|r| OfferingRow {
            id: r.get(0),
            number: r.get::<_, i32>(1) as u32,
            config: r.get(2),
            is_open: r.get(3),
        })
        .collect())
}

/// Inserts an offering, open or closed; `false` when one with its id exists already.
pub async fn insert(
    client: &impl GenericClient,
    id: &str,
    config: &Value,
    open: bool,
) -> Result<bool, Error> {
    let n = client
        .execute(
            "INSERT INTO offerings (id, config, is_open) VALUES ($1, $2, $3)
                 ON CONFLICT (id) DO NOTHING",
            &[&id, &config, &open],
        )
        .await?;
    Ok(n == 1)
}

/// Opens or closes an offering; `false` when there is none with this id.
pub async fn set_open(client: &impl GenericClient, id: &str, open: bool) -> Result<bool, Error> {
    let n = client
        .execute(
            "UPDATE offerings SET is_open = $2, updated_at = now() WHERE id = $1",
            &[&id, &open],
        )
        .await?;
    Ok(n == 1)
}
