//! Bank partners (migration V21): their credentials (the client secret's SHA-256 only),
//! their allocations per offering, and the reservations they placed as the projection has
//! them.

use std::time::SystemTime;

use crate::status::ReservationStatus;
use crate::{Error, GenericClient};

/// A new partner; the caller draws the client id and secret.
#[derive(Debug)]
pub struct NewPartner<'a> {
    pub name: &'a str,
    pub client_id: &'a str,
    /// SHA-256 of the client secret.
    pub secret_hash: &'a [u8],
    pub webhook_url: Option<&'a str>,
}

/// Inserts a partner under the next number; `None` when the name is taken.
pub async fn insert(client: &impl GenericClient, p: &NewPartner<'_>) -> Result<Option<i32>, Error> {
    let row = client
        .query_opt(
            "INSERT INTO partners (partner_id, name, client_id, secret_hash, webhook_url)
             VALUES (nextval('partners_number'), $1, $2, $3, $4)
             ON CONFLICT (name) DO NOTHING RETURNING partner_id",
            &[&p.name, &p.client_id, &p.secret_hash, &p.webhook_url],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// What authenticating a partner needs. Debug leaves the hash out.
#[derive(Clone)]
pub struct PartnerCredentials {
    pub partner_id: i32,
    pub secret_hash: Vec<u8>,
}

impl std::fmt::Debug for PartnerCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartnerCredentials")
            .field("partner_id", &self.partner_id)
            .finish_non_exhaustive()
    }
}

pub async fn by_client_id(
    client: &impl GenericClient,
    client_id: &str,
) -> Result<Option<PartnerCredentials>, Error> {
    let row = client
        .query_opt(
            "SELECT partner_id, secret_hash FROM partners WHERE client_id = $1",
            &[&client_id],
        )
        .await?;
    Ok(row.map(|r| PartnerCredentials { partner_id: r.get(0), secret_hash: r.get(1) }))
}

pub async fn exists(client: &impl GenericClient, partner_id: i32) -> Result<bool, Error> {
    let row =
        client.query_opt("SELECT 1 FROM partners WHERE partner_id = $1", &[&partner_id]).await?;
    Ok(row.is_some())
}

/// Where a partner's status webhooks go.
pub async fn webhook_url(
    client: &impl GenericClient,
    partner_id: i32,
) -> Result<Option<String>, Error> {
    let row = client
        .query_opt("SELECT webhook_url FROM partners WHERE partner_id = $1", &[&partner_id])
        .await?;
    Ok(row.and_then(|r| r.get(0)))
}

/// Records an allocation; answers the units on record (an earlier allocation stays).
pub async fn set_allocation(
    client: &impl GenericClient,
    partner_id: i32,
    offering_id: &str,
    units: i64,
) -> Result<i64, Error> {
    let row = client
        .query_one(
            "WITH new AS (
                 INSERT INTO partner_allocations (partner_id, offering_id, units)
                 VALUES ($1, $2, $3) ON CONFLICT (partner_id, offering_id) DO NOTHING
                 RETURNING units)
             SELECT units FROM new
             UNION ALL SELECT units FROM partner_allocations WHERE partner_id = $1 AND offering_id = $2
             LIMIT 1",
            &[&partner_id, &offering_id, &units],
        )
        .await?;
    Ok(row.get(0))
}

pub async fn allocation(
    client: &impl GenericClient,
    partner_id: i32,
    offering_id: &str,
) -> Result<Option<i64>, Error> {
    let row = client
        .query_opt(
            "SELECT units FROM partner_allocations WHERE partner_id = $1 AND offering_id = $2",
            &[&partner_id, &offering_id],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// The partners with an allocation in an offering: (partner id, name), by id.
pub async fn allocations_of_offering(
    client: &impl GenericClient,
    offering_id: &str,
) -> Result<Vec<(i32, String)>, Error> {
    let rows = client
        .query(
            "SELECT a.partner_id, p.name FROM partner_allocations a JOIN partners p USING (partner_id)
             WHERE a.offering_id = $1 ORDER BY a.partner_id",
            &[&offering_id],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// A reservation a partner placed, as the projection has it.
#[derive(Clone, Debug)]
pub struct PartnerReservation {
    pub reservation_id: String,
    pub offering_id: String,
    pub zone: i32,
    pub user_id: i64,
    pub quantity: i64,
    pub created_at: SystemTime,
    pub expires_at: SystemTime,
    pub status: ReservationStatus,
}

/// The partner's reservations, newest first, at most `limit`.
pub async fn reservations(
    client: &impl GenericClient,
    partner_id: i32,
    limit: i64,
) -> Result<Vec<PartnerReservation>, Error> {
    let rows = client
        .query(
            "SELECT reservation_id, offering_id, zone, user_id, quantity, created_at, expires_at, status
             FROM reservations WHERE partner_id = $1 ORDER BY created_at DESC LIMIT $2",
            &[&partner_id, &limit],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| PartnerReservation {
            reservation_id: r.get(0),
            offering_id: r.get(1),
            zone: r.get(2),
            user_id: r.get(3),
            quantity: r.get(4),
            created_at: r.get(5),
            expires_at: r.get(6),
            status: r.get(7),
        })
        .collect())
}
