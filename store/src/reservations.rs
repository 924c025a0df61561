//! The projection of the ledger's holds (`reservations`, migration V1), as their owners
//! read it. The projector writes it, a fraction of a second behind TigerBeetle, which stays
//! the record; nothing here is on the reservation hot path.

use std::time::SystemTime;

use crate::status::ReservationStatus;
use crate::{Error, GenericClient};

/// A reservation as the projector last saw it.
#[derive(Clone, Debug)]
pub struct ReservationRow {
    /// The hold id, hex.
    pub reservation_id: String,
    pub offering_id: String,
    pub zone: i32,
    pub quantity: i64,
    pub created_at: SystemTime,
    pub expires_at: SystemTime,
    pub status: ReservationStatus,
}

/// A person's reservations, newest first, the latest 500 at most.
pub async fn of_user(
    client: &impl GenericClient,
    user_id: i64,
) -> Result<Vec<ReservationRow>, Error> {
    let rows = client
        .query(
            "SELECT reservation_id, offering_id, zone, quantity, created_at, expires_at, status
             FROM reservations WHERE user_id = $1 AND partner_id IS NULL
             ORDER BY created_at DESC LIMIT 500",
            &[&user_id],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| ReservationRow {
            reservation_id: r.get(0),
            offering_id: r.get(1),
            zone: r.get(2),
            quantity: r.get(3),
            created_at: r.get(4),
            expires_at: r.get(5),
            status: r.get(6),
        })
        .collect())
}
