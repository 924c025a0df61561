//! Offering administration: create, open, close. Each change is stored, audited with the
//! admin who made it, and set up in the ledger before the catalog serves it.

use std::sync::Arc;

use allot_ledger::Ledger;
use allot_store::Pool;

use super::{Catalog, Offering, OfferingConfig};
use crate::audit;
use crate::error::{ApiError, ApiResult, ErrorCode};

/// Creates an offering and sets it up in the ledger.
pub async fn create(
    db: &Pool,
    ledger: &Ledger,
    catalog: &Catalog,
    admin: i64,
    config: &OfferingConfig,
) -> ApiResult<Arc<Offering>> {
    if !super::insert(db, config, true).await? {
        return Err(ApiError::field(ErrorCode::OfferingExists, "id"));
    }
    let after = serde_json::to_value(config).map_err(ApiError::internal)?;
    let (actor, subject) = (audit::user(admin), format!("offering:{}", config.id));
    audit::append(&db.get().await?, &actor, "offering.create", &subject, None, Some(&after))
        .await?;
    catalog.refresh(db, ledger).await?;
    tracing::info!(offering = %config.id, admin, "offering created");
    catalog.get(&config.id).ok_or_else(|| ApiError::internal("offering vanished"))
}

/// Opens or closes an offering.
pub async fn set_open(
    db: &Pool,
    ledger: &Ledger,
    catalog: &Catalog,
    admin: i64,
    id: &str,
    is_open: bool,
) -> ApiResult<Arc<Offering>> {
    let was_open = catalog.get(id).map(|o| serde_json::json!({ "is_open": o.is_open }));
    if !super::set_open(db, id, is_open).await? {
        return Err(ApiError::field(ErrorCode::OfferingNotFound, "id"));
    }
    let (actor, subject) = (audit::user(admin), format!("offering:{id}"));
    let action = if is_open { "offering.open" } else { "offering.close" };
    let after = serde_json::json!({ "is_open": is_open });
    let client = db.get().await?;
    audit::append(&client, &actor, action, &subject, was_open.as_ref(), Some(&after)).await?;
    catalog.refresh(db, ledger).await?;
    tracing::info!(offering = %id, is_open, admin, "offering switched");
    catalog.get(id).ok_or_else(|| ApiError::internal("offering vanished"))
}
