//! Named tickets (`tickets`, `ticket_transfers`, migration V30): one row per seat of a
//! confirmed concert reservation, bound to its holder.
//!
//! - [`issue_for_confirmed`]: the projector's statement, in the transaction that projects
//!   the confirmation; idempotent (primary key per seat), so a replayed page or a resent
//!   payment never makes a second ticket.
//! - [`admit`]: the gate's one conditional `UPDATE`: of two scans at the same moment, the
//!   row lock lets exactly one find the ticket still `valid`.
//! - [`transfer`]: hands a ticket on (a new generation, so the old QR stops verifying) and
//!   records the change of hands.

use std::time::SystemTime;

use crate::status::TicketStatus;
use crate::{Error, GenericClient};

/// A ticket as stored.
#[derive(Clone, Debug)]
pub struct TicketRow {
    pub reservation_id: String,
    pub seat: i32,
    pub offering_id: String,
    pub zone: i32,
    pub holder_user_id: i64,
    pub generation: i32,
    pub transfers: i32,
    pub status: TicketStatus,
    pub used_at: Option<SystemTime>,
    pub created_at: SystemTime,
}

const COLUMNS: &str = "reservation_id, seat, offering_id, zone, holder_user_id, generation, \
                       transfers, status, used_at, created_at";

fn ticket(r: &tokio_postgres::Row) -> TicketRow {
    TicketRow {
        reservation_id: r.get(0),
        seat: r.get(1),
        offering_id: r.get(2),
        zone: r.get(3),
        holder_user_id: r.get(4),
        generation: r.get(5),
        transfers: r.get(6),
        status: r.get(7),
        used_at: r.get(8),
        created_at: r.get(9),
    }
}

/// One ticket per seat of each confirmed reservation in `ids` (already projected), held by
/// its owner. Seats that already have a ticket are left alone. Returns how many were new.
pub async fn issue_for_confirmed(
    client: &impl GenericClient,
    ids: &[String],
) -> Result<u64, Error> {
    client
        .execute(
            "INSERT INTO tickets (reservation_id, seat, offering_id, zone, holder_user_id)
             SELECT r.reservation_id, s.seat, r.offering_id, r.zone, r.user_id
             FROM reservations r
             CROSS JOIN LATERAL generate_series(1, r.quantity::int) AS s(seat)
             WHERE r.reservation_id = ANY($1) AND r.status = 'confirmed'
             ON CONFLICT (reservation_id, seat) DO NOTHING",
            &[&ids],
        )
        .await
}

/// A holder's tickets, newest first (at most 500).
pub async fn of_holder(client: &impl GenericClient, user_id: i64) -> Result<Vec<TicketRow>, Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM tickets WHERE holder_user_id = $1
         ORDER BY created_at DESC, reservation_id, seat LIMIT 500"
    );
    Ok(client.query(&sql, &[&user_id]).await?.iter().map(ticket).collect())
}

/// One ticket, whatever its state.
pub async fn get(
    client: &impl GenericClient,
    reservation_id: &str,
    seat: i32,
) -> Result<Option<TicketRow>, Error> {
    let sql = format!("SELECT {COLUMNS} FROM tickets WHERE reservation_id = $1 AND seat = $2");
    Ok(client.query_opt(&sql, &[&reservation_id, &seat]).await?.as_ref().map(ticket))
}

/// Who a gate admitted: what staff compare with the identity document shown.
#[derive(Clone, Debug)]
pub struct Admitted {
    pub ticket: TicketRow,
    /// `None` when the holder has no account row (or no name on it).
    pub display_name: Option<String>,
    pub identity_kind: Option<String>,
}

/// Marks the ticket used if, and only if, it is still `valid` at `generation`: one
/// statement, so of any number of concurrent scans exactly one gets a row back. `None`
/// means refused; [`get`] tells why.
pub async fn admit(
    client: &impl GenericClient,
    reservation_id: &str,
    seat: i32,
    generation: i32,
    gate_user_id: i64,
) -> Result<Option<Admitted>, Error> {
    let sql = format!(
        "WITH t AS (
            UPDATE tickets SET status = 'used', used_at = now(), used_by = $4, updated_at = now()
            WHERE reservation_id = $1 AND seat = $2 AND generation = $3 AND status = 'valid'
            RETURNING {COLUMNS})
         SELECT t.*, u.display_name, u.identity_kind
         FROM t LEFT JOIN users u ON u.user_id = t.holder_user_id"
    );
    let row = client.query_opt(&sql, &[&reservation_id, &seat, &generation, &gate_user_id]).await?;
    Ok(row.map(|r| Admitted {
        ticket: ticket(&r),
        display_name: r.get(10),
        identity_kind: r.get(11),
    }))
}

/// Gives the ticket from `from` to `to` if `from` holds it, it is still `valid` and it has
/// changed hands fewer than `transfers_max` times: a new generation (the old QR stops
/// verifying) and a row in `ticket_transfers`. `None`: not transferred; [`get`] tells why.
pub async fn transfer(
    client: &impl GenericClient,
    reservation_id: &str,
    seat: i32,
    from: i64,
    to: i64,
    transfers_max: i32,
) -> Result<Option<TicketRow>, Error> {
    let sql = format!(
        "WITH t AS (
            UPDATE tickets SET holder_user_id = $4, generation = generation + 1,
                               transfers = transfers + 1, updated_at = now()
            WHERE reservation_id = $1 AND seat = $2 AND holder_user_id = $3
              AND status = 'valid' AND transfers < $5
            RETURNING {COLUMNS}),
         logged AS (
            INSERT INTO ticket_transfers (reservation_id, seat, generation, from_user_id, to_user_id)
            SELECT reservation_id, seat, generation, $3, $4 FROM t)
         SELECT * FROM t"
    );
    let row = client.query_opt(&sql, &[&reservation_id, &seat, &from, &to, &transfers_max]).await?;
    Ok(row.as_ref().map(ticket))
}

/// The account registered under `email` (lower-cased) if it may receive a ticket: its
/// identity verified, and not suspended.
pub async fn recipient_by_email(
    client: &impl GenericClient,
    email: &str,
) -> Result<Option<i64>, Error> {
    let row = client
        .query_opt(
            "SELECT user_id FROM users
             WHERE email = lower($1) AND verification = 'verified' AND suspended_at IS NULL",
            &[&email],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// The holder's language (`users.locale`), which their list of tickets is written in.
pub async fn holder_locale(
    client: &impl GenericClient,
    user_id: i64,
) -> Result<Option<String>, Error> {
    let row = client.query_opt("SELECT locale FROM users WHERE user_id = $1", &[&user_id]).await?;
    Ok(row.map(|r| r.get(0)))
}
