//! Verifying the audit chain: every row read back in order and its hash recomputed outside
//! the database with the rule that lives beside the append statement (`allot_store::audit`).

use crate::store::Client;
use allot_store::audit::GENESIS;
use futures::TryStreamExt;
use sha2::{Digest, Sha256};

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
    let (head_seq, head_hash) =
        allot_store::audit::head(db).await.map_err(|e| format!("reading the audit head: {e}"))?;
    progress.set_length(head_seq.max(0) as u64);
    let rows =
        allot_store::audit::rows(db).await.map_err(|e| format!("reading the audit log: {e}"))?;
    futures::pin_mut!(rows);
    let mut out = AuditVerified { head_seq, ..Default::default() };
    let mut prev: Vec<u8> = Sha256::digest(GENESIS).to_vec();
    let mut expected_seq = 1i64;
    while let Some(row) = rows.try_next().await.map_err(|e| e.to_string())? {
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
