//! The audit chain: how a row is appended (one SQL statement, used by the API) and how the
//! whole chain is verified (here, recomputing every hash outside the database).
//!
//! A row's hash is `SHA-256(prev_hash || f(seq) || f(at_micros) || f(actor) || f(action)
//! || f(subject) || f(before) || f(after))`, where `f(x)` is `<byte length>:<bytes>;` (or
//! `~;` for NULL) and `before`/`after` are Postgres's text form of the JSONB values, which is
//! deterministic. The first row's `prev_hash` is `SHA-256("allot/audit/v1")`.

use futures::TryStreamExt;
use sha2::{Digest, Sha256};
use tokio_postgres::Client;

/// Appends one row: `$1` actor, `$2` action, `$3` subject, `$4` before (jsonb), `$5` after
/// (jsonb). Returns the new row's `seq`. The head row is locked `FOR UPDATE` for the rest
/// of the caller's transaction, so concurrent appends queue and the chain never forks; as
/// one statement it is atomic even outside a transaction.
pub const APPEND_SQL: &str = "
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

/// A break in the chain, named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditProblem {
    /// `audit_gap`, `audit_prev_hash_mismatch`, `audit_row_altered`, `audit_tail_missing`.
    pub kind: &'static str,
    pub seq: i64,
    pub detail: String,
}

#[derive(Debug, Default)]
pub struct AuditVerified {
    pub rows: u64,
    pub head_seq: i64,
    pub problems: Vec<AuditProblem>,
}

/// Reads the whole chain in order and recomputes every hash.
pub async fn verify(
    db: &Client,
    progress: &indicatif::ProgressBar,
) -> Result<AuditVerified, String> {
    let head = db
        .query_one("SELECT seq, hash FROM audit_head", &[])
        .await
        .map_err(|e| format!("reading the audit head: {e}"))?;
    let (head_seq, head_hash): (i64, Vec<u8>) = (head.get(0), head.get(1));
    progress.set_length(head_seq.max(0) as u64);
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 0] = [];
    let rows = db
        .query_raw(
            "SELECT seq, (extract(epoch FROM at) * 1000000)::bigint, actor, action, subject,
                    before::text, after::text, prev_hash, hash
             FROM audit_log ORDER BY seq",
            params,
        )
        .await
        .map_err(|e| format!("reading the audit log: {e}"))?;
    futures::pin_mut!(rows);
    let mut out = AuditVerified { head_seq, ..Default::default() };
    let mut prev: Vec<u8> = Sha256::digest(GENESIS).to_vec();
    let mut expected_seq = 1i64;
    while let Some(row) = rows.try_next().await.map_err(|e| e.to_string())? {
        let row = AuditRow {
            seq: row.get(0),
            at_micros: row.get(1),
            actor: row.get(2),
            action: row.get(3),
            subject: row.get(4),
            before: row.get(5),
            after: row.get(6),
            prev_hash: row.get(7),
            hash: row.get(8),
        };
        out.rows += 1;
        progress.inc(1);
        if row.seq != expected_seq {
            out.problems.push(AuditProblem {
                kind: "audit_gap",
                seq: row.seq,
                detail: format!("expected row {expected_seq}: rows were removed or renumbered"),
            });
        }
        if row.prev_hash != prev {
            out.problems.push(AuditProblem {
                kind: "audit_prev_hash_mismatch",
                seq: row.seq,
                detail: "prev_hash is not the hash of the row before: the chain was cut or \
                         reordered here"
                    .into(),
            });
        }
        if row.expected_hash(&row.prev_hash) != row.hash.as_slice() {
            out.problems.push(AuditProblem {
                kind: "audit_row_altered",
                seq: row.seq,
                detail: format!(
                    "the row's content does not hash to its hash: {} {} {} was changed",
                    row.actor, row.action, row.subject
                ),
            });
        }
        prev = row.hash;
        expected_seq = row.seq + 1;
    }
    if expected_seq - 1 != head_seq || prev != head_hash {
        out.problems.push(AuditProblem {
            kind: "audit_tail_missing",
            seq: head_seq,
            detail: format!(
                "the chain ends at row {} but its head says {head_seq}: rows were removed from \
                 the end",
                expected_seq - 1
            ),
        });
    }
    progress.finish_and_clear();
    Ok(out)
}
