//! The waitlist (migrations V5, V6): one entry per person and offering, ever, served in
//! joining order (`seq`) per zone; each entry counts its offer attempts (`offer_attempt`).

use crate::status::WaitlistStatus;
use crate::{Error, GenericClient};

/// A person's entry.
#[derive(Clone, Debug)]
pub struct EntryRow {
    pub zone: i32,
    pub quantity: i64,
    pub status: WaitlistStatus,
    /// The offer's hold, once offered.
    pub reservation_id: Option<String>,
    /// Entries of the same zone still waiting ahead of this one.
    pub ahead: i64,
}

/// An entry still waiting, as the offer round reads it.
#[derive(Clone, Copy, Debug)]
pub struct WaitingRow {
    pub user_id: i64,
    pub quantity: i64,
    pub seq: i64,
    /// Offers that lost the race for the units so far: the next offer's hold id takes it.
    pub attempt: i32,
}

/// Adds an entry unless the person has one (in any status).
pub async fn insert(
    client: &impl GenericClient,
    offering_id: &str,
    user_id: i64,
    zone: i32,
    quantity: i64,
) -> Result<(), Error> {
    client
        .execute(
            "INSERT INTO waitlist_entries (offering_id, user_id, zone, quantity) VALUES ($1, $2, $3, $4)
             ON CONFLICT (offering_id, user_id) DO NOTHING",
            &[&offering_id, &user_id, &zone, &quantity],
        )
        .await?;
    Ok(())
}

pub async fn entry(
    client: &impl GenericClient,
    offering_id: &str,
    user_id: i64,
) -> Result<Option<EntryRow>, Error> {
    let row = client
        .query_opt(
            "SELECT zone, quantity, status, reservation_id,
                    (SELECT count(*) FROM waitlist_entries o WHERE o.offering_id = w.offering_id
                       AND o.zone = w.zone AND o.status = 'waiting' AND o.seq < w.seq)
             FROM waitlist_entries w WHERE offering_id = $1 AND user_id = $2",
            &[&offering_id, &user_id],
        )
        .await?;
    Ok(row.map(|r| EntryRow {
        zone: r.get(0),
        quantity: r.get(1),
        status: r.get(2),
        reservation_id: r.get(3),
        ahead: r.get(4),
    }))
}

/// Marks a waiting entry as left; `false` when the person has no waiting entry.
pub async fn leave(
    client: &impl GenericClient,
    offering_id: &str,
    user_id: i64,
) -> Result<bool, Error> {
    let n = client
        .execute(
            "UPDATE waitlist_entries SET status = 'left'
             WHERE offering_id = $1 AND user_id = $2 AND status = 'waiting'",
            &[&offering_id, &user_id],
        )
        .await?;
    Ok(n > 0)
}

/// Every (offering, zone) with someone waiting.
pub async fn waiting_lines(client: &impl GenericClient) -> Result<Vec<(String, i32)>, Error> {
    let rows = client
        .query(
            "SELECT DISTINCT offering_id, zone FROM waitlist_entries WHERE status = 'waiting'",
            &[],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// The first `limit` waiting entries of a zone, in joining order.
pub async fn line(
    client: &impl GenericClient,
    offering_id: &str,
    zone: i32,
    limit: i64,
) -> Result<Vec<WaitingRow>, Error> {
    let rows = client
        .query(
            "SELECT user_id, quantity, seq, offer_attempt FROM waitlist_entries
             WHERE offering_id = $1 AND zone = $2 AND status = 'waiting' ORDER BY seq LIMIT $3",
            &[&offering_id, &zone, &limit],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| WaitingRow {
            user_id: r.get(0),
            quantity: r.get(1),
            seq: r.get(2),
            attempt: r.get(3),
        })
        .collect())
}

/// Ends a waiting entry's wait: `Offered` with the offer's hold, or `Ineligible`.
pub async fn settle(
    client: &impl GenericClient,
    offering_id: &str,
    user_id: i64,
    status: WaitlistStatus,
    reservation_id: Option<&str>,
) -> Result<(), Error> {
    client
        .execute(
            "UPDATE waitlist_entries SET status = $3, reservation_id = $4, offered_at = now()
             WHERE offering_id = $1 AND user_id = $2 AND status = 'waiting'",
            &[&offering_id, &user_id, &status, &reservation_id],
        )
        .await?;
    Ok(())
}

/// Moves a waiting entry past an offer attempt whose hold id the ledger refused: the next
/// offer uses a fresh id. Only from `attempt`, so two rounds racing bump it once.
pub async fn next_attempt(
    client: &impl GenericClient,
    offering_id: &str,
    user_id: i64,
    attempt: i32,
) -> Result<(), Error> {
    client
        .execute(
            "UPDATE waitlist_entries SET offer_attempt = offer_attempt + 1
             WHERE offering_id = $1 AND user_id = $2 AND status = 'waiting' AND offer_attempt = $3",
            &[&offering_id, &user_id, &attempt],
        )
        .await?;
    Ok(())
}
