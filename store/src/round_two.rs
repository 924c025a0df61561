//! The second allocation round of book-building (migration V11): after round one's payment
//! deadline, the units of unpaid allotments go to the unfilled demand. Its figures live in
//! `allocation_round_two`; each subscription's round-two demand, allotment and hold flag in
//! `subscriptions`. Round two is computed and stored once, in one transaction.

use std::time::SystemTime;

use crate::{Error, GenericClient};

/// A subscription as round one left it.
#[derive(Clone, Debug)]
pub struct RoundOneRow {
    pub user_id: i64,
    pub pseudonym: String,
    pub requested: i64,
    pub allotted: i64,
    pub hold_placed: bool,
}

/// Round two's published terms.
#[derive(Clone, Debug)]
pub struct RoundTwoRow {
    pub supply: i64,
    pub lot: i64,
    pub min_quantity: i64,
    pub applicants: i64,
    pub allotted_total: i64,
    pub holds_deadline: SystemTime,
    pub ran_at: SystemTime,
}

/// One line of round two's export: demand and allotment under the pseudonym.
#[derive(Clone, Debug)]
pub struct RoundTwoLine {
    pub pseudonym: String,
    pub requested: i64,
    pub allotted: i64,
}

/// Every subscription with its round-one allotment, in pseudonym order.
pub async fn round_one(
    client: &impl GenericClient,
    offering_id: &str,
) -> Result<Vec<RoundOneRow>, Error> {
    let rows = client
        .query(
            "SELECT user_id, pseudonym, requested, COALESCE(allotted, 0), hold_placed
             FROM subscriptions WHERE offering_id = $1 ORDER BY pseudonym",
            &[&offering_id],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| RoundOneRow {
            user_id: r.get(0),
            pseudonym: r.get(1),
            requested: r.get(2),
            allotted: r.get(3),
            hold_placed: r.get(4),
        })
        .collect())
}

pub async fn round_two(
    client: &impl GenericClient,
    offering_id: &str,
) -> Result<Option<RoundTwoRow>, Error> {
    let row = client
        .query_opt(
            "SELECT supply, lot, min_quantity, applicants, allotted_total, holds_deadline, ran_at
             FROM allocation_round_two WHERE offering_id = $1",
            &[&offering_id],
        )
        .await?;
    Ok(row.map(|r| RoundTwoRow {
        supply: r.get(0),
        lot: r.get(1),
        min_quantity: r.get(2),
        applicants: r.get(3),
        allotted_total: r.get(4),
        holds_deadline: r.get(5),
        ran_at: r.get(6),
    }))
}

/// Stores round two: each applicant's demand and allotment, then its figures.
pub async fn insert_round_two(
    client: &impl GenericClient,
    offering_id: &str,
    users: &[i64],
    demand: &[i64],
    allotted: &[i64],
    figures: &RoundTwoRow,
) -> Result<(), Error> {
    client
        .execute(
            "UPDATE subscriptions s SET round_two_requested = u.requested,
                    round_two_allotted = u.allotted, updated_at = now()
             FROM unnest($2::bigint[], $3::bigint[], $4::bigint[]) AS u(user_id, requested, allotted)
             WHERE s.offering_id = $1 AND s.user_id = u.user_id",
            &[&offering_id, &users, &demand, &allotted],
        )
        .await?;
    client
        .execute(
            "INSERT INTO allocation_round_two (offering_id, supply, lot, min_quantity,
                    applicants, allotted_total, holds_deadline)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &offering_id,
                &figures.supply,
                &figures.lot,
                &figures.min_quantity,
                &figures.applicants,
                &figures.allotted_total,
                &figures.holds_deadline,
            ],
        )
        .await?;
    Ok(())
}

/// Round-two allotments still waiting for their hold: (user, units).
pub async fn to_hold(
    client: &impl GenericClient,
    offering_id: &str,
) -> Result<Vec<(i64, i64)>, Error> {
    let rows = client
        .query(
            "SELECT user_id, round_two_allotted FROM subscriptions
             WHERE offering_id = $1 AND round_two_allotted > 0 AND NOT round_two_hold_placed",
            &[&offering_id],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

pub async fn mark_placed(
    client: &impl GenericClient,
    offering_id: &str,
    users: &[i64],
) -> Result<(), Error> {
    client
        .execute(
            "UPDATE subscriptions SET round_two_hold_placed = TRUE
             WHERE offering_id = $1 AND user_id = ANY($2)",
            &[&offering_id, &users],
        )
        .await?;
    Ok(())
}

/// Round two's applicants with demand and allotment, in pseudonym order.
pub async fn export_lines(
    client: &impl GenericClient,
    offering_id: &str,
) -> Result<Vec<RoundTwoLine>, Error> {
    let rows = client
        .query(
            "SELECT pseudonym, round_two_requested, COALESCE(round_two_allotted, 0)
             FROM subscriptions WHERE offering_id = $1 AND round_two_requested IS NOT NULL
             ORDER BY pseudonym",
            &[&offering_id],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| RoundTwoLine { pseudonym: r.get(0), requested: r.get(1), allotted: r.get(2) })
        .collect())
}
