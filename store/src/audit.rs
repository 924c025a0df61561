//! The audit trail: every state change a person or the service causes, appended to one
//! hash-chained log (`audit_log`, migration V4) with actor, time, subject and before/after.
//!
//! A row's hash is `SHA-256(prev_hash || f(seq) || f(at_micros) || f(actor) || f(action)
//! || f(subject) || f(before) || f(after))`, where `f(x)` is `<byte length>:<bytes>;` (or
//! `~;` for NULL) and `before`/`after` are Postgres's text form of the JSONB values, which is
//! deterministic. The first row's `prev_hash` is `SHA-256("allot/audit/v1")`. The append
//! statement computes it in SQL; [`AuditRow::expected_hash`] recomputes it outside the
//! database for `reconcile audit verify`: both live here so they cannot drift apart.

use futures::{Stream, TryStreamExt};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::{Error, GenericClient};

/// Appends one row: `$1` actor, `$2` action, `$3` subject, `$4` before (jsonb), `$5` after
/// (jsonb). Returns the new row's `seq`. The head row is locked `FOR UPDATE` for the rest
/// of the caller's transaction, so concurrent appends queue and the chain never forks; as
/// one statement it is atomic even outside a transaction.
const APPEND_SQL: &str = "
WITH head AS (
    SELECT seq, hash FROM audit_head WHERE one FOR UPDATE
), entry AS (
    SELECT head.seq + 1 AS seq, now() AS at, head.hash AS prev_hash FROM head
), ins AS (
    INSERT INTO audit_log (seq, at, actor, action, subject, before, after, prev_hash, hash)
    SELECT e.seq, e.at, $1::text, $2::text, $3::text, $4::jsonb, $5::jsonb, e.prev_hash,
           sha256(e.prev_hash
               || audit_field(e.seq::text)
               || audit_field(((extract(epoch FROM e.at) * 1000000)::bigint)::text)
               || audit_field($1::text) || audit_field($2::text) || audit_field($3::text)
               || audit_field($4::jsonb::text) || audit_field($5::jsonb::text))
    FROM entry e
    RETURNING seq, hash
)
UPDATE audit_head SET seq = ins.seq, hash = ins.hash FROM ins WHERE audit_head.one
RETURNING ins.seq";

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
) -> Result<i64, Error> {
    let row = client.query_one(APPEND_SQL, &[&actor, &action, &subject, &before, &after]).await?;
    Ok(row.get(0))
}

/// The chain's head: the last sequence number and its hash.
pub async fn head(client: &impl GenericClient) -> Result<(i64, Vec<u8>), Error> {
    let row = client.query_one("SELECT seq, hash FROM audit_head", &[]).await?;
    Ok((row.get(0), row.get(1)))
}

/// Every row in sequence order, streamed.
pub async fn rows(
    client: &impl GenericClient,
) -> Result<impl Stream<Item = Result<AuditRow, Error>>, Error> {
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 0] = [];
    let rows = client
        .query_raw(
            "SELECT seq, (extract(epoch FROM at) * 1000000)::bigint, actor, action, subject,
                    before::text, after::text, prev_hash, hash
             FROM audit_log ORDER BY seq",
            params,
        )
        .await?;
    Ok(rows.map_ok(|row| AuditRow {
        seq: row.get(0),
        at_micros: row.get(1),
        actor: row.get(2),
        action: row.get(3),
        subject: row.get(4),
        before: row.get(5),
        after: row.get(6),
        prev_hash: row.get(7),
        hash: row.get(8),
    }))
}

pub const GENESIS: &[u8] = b"allot/audit/v1";

fn field(out: &mut Vec<u8>, value: Option<&str>) {
    match value {
        None => out.extend_from_slice(b"~;"),
        Some(v) => {
            out.extend_from_slice(v.len().to_string().as_bytes());
            out.push(b':');
            out.extend_from_slice(v.as_bytes());
            out.push(b';');
        }
    }
}

/// One row as read back for verification.
#[derive(Debug, Clone)]
pub struct AuditRow {
    pub seq: i64,
    pub at_micros: i64,
    pub actor: String,
    pub action: String,
    pub subject: String,
    pub before: Option<String>,
    pub after: Option<String>,
    pub prev_hash: Vec<u8>,
    pub hash: Vec<u8>,
}

impl AuditRow {
    /// The hash this row must have, given the previous row's hash.
    pub fn expected_hash(&self, prev: &[u8]) -> [u8; 32] {
        let mut bytes = Vec::with_capacity(256);
        field(&mut bytes, Some(&self.seq.to_string()));
        field(&mut bytes, Some(&self.at_micros.to_string()));
        field(&mut bytes, Some(&self.actor));
        field(&mut bytes, Some(&self.action));
        field(&mut bytes, Some(&self.subject));
        field(&mut bytes, self.before.as_deref());
        field(&mut bytes, self.after.as_deref());
        let mut h = Sha256::new();
        h.update(prev);
        h.update(&bytes);
        h.finalize().into()
    }
}
