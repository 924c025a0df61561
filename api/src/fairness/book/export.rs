//! The export anyone can recompute an allocation from, and the recomputation itself.

use serde::{Deserialize, Serialize};

use super::{book_building, BookBuilding};
use crate::catalog::Offering;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::fairness::allocation::{self, Application};
use crate::fairness::draw;
use crate::fairness::seeds::{self, SeedPurpose};

/// One line of the export after its header line.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ExportLine {
    pub pseudonym: String,
    pub requested: u64,
    pub allotted: u64,
}

/// The export's first line: everything needed to recompute the allotments.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ExportHeader {
    pub offering_id: String,
    pub supply: u64,
    pub lot: u64,
    pub min_quantity: u64,
    pub seed: String,
    pub commitment: String,
    pub context: String,
    pub applicants: u64,
}

impl BookBuilding {
    /// The export anyone can recompute the allocation from: a header line, then one line
    /// per subscription (pseudonym, requested, allotted), in pseudonym order. After the run
    /// only.
    pub async fn export(&self, offering: &Offering) -> ApiResult<String> {
        book_building(offering)?;
        let Some(result) = self.figures(offering).await? else {
            return Err(ApiError::new(ErrorCode::AllocationNotRun));
        };
        let seed_row = seeds::seed(&self.db, offering.id(), SeedPurpose::Allocation).await?;
        let header = ExportHeader {
            offering_id: offering.id().to_owned(),
            supply: result.supply,
            lot: result.lot,
            min_quantity: result.min_quantity,
            seed: hex::encode(seed_row.seed),
            commitment: hex::encode(&seed_row.commitment),
            context: String::from_utf8_lossy(draw::CONTEXT_ALLOCATION).into_owned(),
            applicants: result.applicants,
        };
        let client = self.db.get().await?;
        let rows = allot_store::book::export_rows(&client, offering.id()).await?;
        let mut out = serde_json::to_string(&header).expect("serializes");
        out.push('\n');
        for r in rows {
            let line = ExportLine {
                pseudonym: r.pseudonym,
                requested: r.requested as u64,
                allotted: r.allotted.unwrap_or(0) as u64,
            };
            out.push_str(&serde_json::to_string(&line).expect("serializes"));
            out.push('\n');
        }
        Ok(out)
    }
}

/// Recomputes an export (as produced by [`BookBuilding::export`]) and reports the first
/// line whose allotment differs, if any. The seed must match the published commitment.
pub fn verify_export(text: &str) -> Result<ExportHeader, String> {
    let mut lines = text.lines();
    let header: ExportHeader = serde_json::from_str(lines.next().ok_or("empty export")?)
        .map_err(|e| format!("header: {e}"))?;
    let seed = draw::parse_seed(&header.seed).ok_or("seed is not 32 hex bytes")?;
    let commitment = hex::decode(&header.commitment).map_err(|_| "commitment is not hex")?;
    if !draw::matches(&seed, &commitment) {
        return Err("the seed does not match the commitment".into());
    }
    // Round two draws with a seed derived from round one's published one.
    let seed = if header.context.as_bytes() == draw::CONTEXT_ROUND_TWO {
        draw::derive(&seed, draw::CONTEXT_ROUND_TWO)
    } else {
        seed
    };
    let mut applications = Vec::new();
    let mut claimed = Vec::new();
    for (i, line) in lines.enumerate() {
        let l: ExportLine =
            serde_json::from_str(line).map_err(|e| format!("line {}: {e}", i + 2))?;
        applications.push(Application { pseudonym: l.pseudonym, requested: l.requested });
        claimed.push(l.allotted);
    }
    if applications.len() as u64 != header.applicants {
        return Err(format!("{} lines, header says {}", applications.len(), header.applicants));
    }
    let recomputed =
        allocation::verify(&applications, &seed, header.supply, header.lot, header.min_quantity)
            .map_err(|e| e.to_string())?;
    if let Some(i) = (0..claimed.len()).find(|&i| claimed[i] != recomputed[i]) {
        return Err(format!(
            "line {}: {} allotted {}, recomputed {}",
            i + 2,
            applications[i].pseudonym,
            claimed[i],
            recomputed[i]
        ));
    }
    Ok(header)
}
