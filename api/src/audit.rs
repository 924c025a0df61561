//! The audit trail: every state change a person or the system causes, appended to one
//! hash-chained log in Postgres (`audit_log`, migration V4) with actor, time, subject and
//! before/after. `reconcile audit verify` recomputes the chain and proves it unbroken.
//!
//! The statement that appends (and so the hash rule) lives in `allot_store::audit`, beside
//! the reader that `reconcile audit verify` checks the chain with.
//!
//! Invariant: never on the reservation hot path. Reservations are audited by the ledger
//! itself (immutable TigerBeetle transfers, exported signed); an append takes a row lock
//! that serialises every writer, which a sale's opening minute must not wait on.

use allot_store::GenericClient;
use serde_json::Value;

/// Actor of a change made by a signed-in user.
pub fn user(user_id: i64) -> String {
    format!("user:{user_id}")
}

/// Actor of a change made by a background task of the service.
pub fn system(task: &str) -> String {
    format!("system:{task}")
}

/// Appends one entry and returns its sequence number. With a transaction as `client`, the
/// entry commits (or not) with the change it records, and the chain's head stays locked
/// until then, so chains never fork.
pub async fn append(
    client: &impl GenericClient,
    actor: &str,
    action: &str,
    subject: &str,
    before: Option<&Value>,
    after: Option<&Value>,
) -> Result<i64, tokio_postgres::Error> {
    let seq = allot_store::audit::append(client, actor, action, subject, before, after).await?;
    metrics::counter!("allot_audit_entries_total", "action" => action.to_owned()).increment(1);
    Ok(seq)
}
