//! Unusual activity: rules over what happened recently, each firing an alert for staff.
//!
//! - Events no other table keeps are appended where they happen ([`record`]): a
//!   registration (with the client's network and device), a wrong second-factor code, a
//!   payment webhook refused for its signature. The rest is read from the records already
//!   kept: cancelled reservations, payment notifications (with the payer's account),
//!   ticket transfers.
//! - [`rules`]: seven rules, thresholds in configuration (`[alerts]`). The leading instance
//!   evaluates them every `alerts.interval_ms` ([`Alerts::run`]); each firing is a row in
//!   `alerts` (rule, subject, evidence, severity), a count in
//!   `allot_unusual_activity_alerts_total{rule, severity}` and a `security` log line.
//! - Staff list alerts and acknowledge each with a note (audited); an admin may suspend an
//!   account (audited), which ends its sessions and refuses its sign-ins.
//!
//! Invariant: rules never block anything. They write alerts; only a person acts on them.

pub mod rules;

use std::net::IpAddr;
use std::time::Duration;

use allot_store::alerts::{self as store, AlertRow};
use allot_store::status::ActivityKind;
use allot_store::{GenericClient, Pool};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::config::AlertSettings;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::leader::Leader;
use rules::Rule;

/// Alerts listed at most per request.
pub const LIST_MAX: i64 = 500;
/// A note or a reason is for the audit trail: enough to say why.
pub const NOTE_CHARS_MAX: usize = 500;
/// Device ids longer than this are cut before hashing.
const DEVICE_BYTES_MAX: usize = 200;

/// The unusual-activity service: Postgres and the rules' settings.
#[derive(Clone, Debug)]
pub struct Alerts {
    db: Pool,
    settings: AlertSettings,
}

/// The client's network: its /24 (IPv4) or /48 (IPv6). Registrations from one household
/// or office share it; bots renting one block of addresses do too.
pub fn network(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => ipnet::Ipv4Net::new(v4, 24).expect("valid prefix").trunc().to_string(),
        IpAddr::V6(v6) => ipnet::Ipv6Net::new(v6, 48).expect("valid prefix").trunc().to_string(),
    }
}

/// A device id header as stored: hashed, so the table holds no client-chosen text.
pub fn device(header: &str) -> Option<String> {
    let header = header.trim();
    if header.is_empty() {
        return None;
    }
    let cut = &header.as_bytes()[..header.len().min(DEVICE_BYTES_MAX)];
    Some(hex::encode(&Sha256::digest(cut)[..16]))
}

/// Appends an event the rules read. A failure is logged, never the caller's problem: the
/// event is evidence, and what it records has happened either way.
pub async fn record(
    client: &impl GenericClient,
    kind: ActivityKind,
    user_id: Option<i64>,
    ip: Option<IpAddr>,
    device_header: Option<&str>,
    detail: Option<&str>,
) {
    let net = ip.map(network);
    let dev = device_header.and_then(device);
    let recorded =
        store::record_event(client, kind, user_id, net.as_deref(), dev.as_deref(), detail).await;
    if let Err(e) = recorded {
        tracing::warn!(error = %e, kind = kind.as_str(), "recording an activity event failed");
    }
}

/// An alert as staff see it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AlertView {
    pub id: i64,
    /// Which rule fired: `registrations_per_source`, `reserve_cancel_churn`,
    /// `payer_many_identities`, `mfa_failures`, `webhook_signature_failures`,
    /// `refunds_and_unmatched`, `ticket_transfer_chain`.
    pub rule: String,
    /// What it fired about: `user:7`, `network:203.0.113.0/24`, `device:…`, `payer:…`,
    /// `gateway:bank`, `outcome:unmatched`, `ticket:<id>`.
    pub subject: String,
    /// `info`, `warning` or `critical`.
    pub severity: &'static str,
    /// The count, window and threshold, and what was counted.
    #[schema(value_type = Object)]
    pub evidence: serde_json::Value,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub fired_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub acknowledged_at: Option<OffsetDateTime>,
    pub acknowledged_by: Option<i64>,
    pub note: Option<String>,
}

impl From<AlertRow> for AlertView {
    fn from(r: AlertRow) -> AlertView {
        AlertView {
            id: r.id,
            rule: r.rule,
            subject: r.subject,
            severity: r.severity.as_str(),
            evidence: r.evidence,
            fired_at: r.fired_at.into(),
            acknowledged_at: r.acknowledged_at.map(Into::into),
            acknowledged_by: r.acknowledged_by,
            note: r.note,
        }
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Acknowledge {
    /// What staff found, up to 500 characters; kept in the audit trail.
    pub note: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Suspend {
    /// Why, up to 500 characters; kept in the audit trail.
    pub reason: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Suspension {
    pub user_id: i64,
    pub suspended: bool,
}

/// A note or reason: present and not too long.
fn check_text(field: &str, text: &str) -> ApiResult<String> {
    let text = text.trim();
    if text.is_empty() || text.chars().count() > NOTE_CHARS_MAX {
        let reason = format!("1 to {NOTE_CHARS_MAX} characters");
        return Err(ApiError::validation(field, reason));
    }
    Ok(text.to_owned())
}

impl Alerts {
    pub fn new(db: Pool, settings: AlertSettings) -> Alerts {
        Alerts { db, settings }
    }

    /// Evaluates every rule once and records what fired; returns the new alerts' ids.
    pub async fn evaluate(&self) -> Result<Vec<i64>, String> {
        let client = self.db.get().await.map_err(|e| e.to_string())?;
        let mut fired = Vec::new();
        for rule in Rule::ALL {
            let t = rule.threshold(&self.settings);
            if t.count == 0 {
                continue; // turned off
            }
            let findings = rule.find(&client, t).await.map_err(|e| e.to_string())?;
            for mut finding in findings {
                if let serde_json::Value::Object(map) = &mut finding.evidence {
                    map.insert("count".into(), finding.count.into());
                    map.insert("threshold".into(), t.count.into());
                    map.insert("window_seconds".into(), t.window_seconds.into());
                }
                let window = Duration::from_secs(t.window_seconds);
                let severity = rule.severity();
                let id = store::fire(&client, rule.as_str(), severity, &finding, window)
                    .await
                    .map_err(|e| e.to_string())?;
                if let Some(id) = id {
                    let labels = [("rule", rule.as_str()), ("severity", severity.as_str())];
                    metrics::counter!("allot_unusual_activity_alerts_total", &labels).increment(1);
                    tracing::warn!(target: "security", alert = id, rule = rule.as_str(),
                        subject = %finding.subject, count = finding.count, "unusual activity");
                    fired.push(id);
                }
            }
        }
        Ok(fired)
    }

    /// Evaluates the rules every `interval_ms` while this instance leads; forever.
    pub async fn run(self, leader: Leader) {
        if self.settings.interval_ms == 0 {
            return;
        }
        let interval = Duration::from_millis(self.settings.interval_ms);
        loop {
            if leader.is_leading() {
                if let Err(e) = self.evaluate().await {
                    tracing::warn!(error = %e, "unusual-activity rules failed");
                }
            }
            tokio::time::sleep(interval).await;
        }
    }

    /// The newest alerts, open ones only when asked.
    pub async fn list(&self, open_only: bool) -> ApiResult<Vec<AlertView>> {
        let rows = store::list(&self.db.get().await?, open_only, LIST_MAX).await?;
        Ok(rows.into_iter().map(AlertView::from).collect())
    }

    /// Acknowledges an open alert with a note, audited in the same transaction. An alert
    /// already acknowledged keeps its first note (and answers as it is).
    pub async fn acknowledge(&self, by: i64, id: i64, body: &Acknowledge) -> ApiResult<AlertView> {
        let note = check_text("note", &body.note)?;
        let mut client = self.db.get().await?;
        let tx = client.transaction().await?;
        let Some(row) = store::acknowledge(&tx, id, by, &note).await? else {
            drop(tx);
            let existing = store::get(&client, id).await?;
            return existing
                .map(AlertView::from)
                .ok_or_else(|| ApiError::field(ErrorCode::AlertNotFound, "id"));
        };
        let after = serde_json::json!({ "rule": row.rule, "subject": row.subject, "note": note });
        let (actor, subject) = (crate::audit::user(by), format!("alert:{id}"));
        crate::audit::append(&tx, &actor, "alert.acknowledge", &subject, None, Some(&after))
            .await?;
        tx.commit().await?;
        Ok(row.into())
    }

    /// Suspends (or reinstates) an account, audited in the same transaction. The caller
    /// ends the account's sessions.
    pub async fn set_suspended(
        &self,
        admin: i64,
        user_id: i64,
        suspended: bool,
        reason: &str,
    ) -> ApiResult<Suspension> {
        let reason = check_text("reason", reason)?;
        let mut client = self.db.get().await?;
        let tx = client.transaction().await?;
        let before = store::set_suspended(&tx, user_id, suspended)
            .await?
            .ok_or_else(|| ApiError::field(ErrorCode::NotFound, "user_id"))?;
        let action = if suspended { "user.suspend" } else { "user.reinstate" };
        let (actor, subject) = (crate::audit::user(admin), crate::audit::user(user_id));
        let was = serde_json::json!({ "suspended": before });
        let after = serde_json::json!({ "suspended": suspended, "reason": reason });
        crate::audit::append(&tx, &actor, action, &subject, Some(&was), Some(&after)).await?;
        tx.commit().await?;
        tracing::warn!(target: "security", user_id, admin, suspended, "account suspension changed");
        Ok(Suspension { user_id, suspended })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_are_the_slash_24_or_slash_48_of_the_address() {
        assert_eq!(network("203.0.113.77".parse().unwrap()), "203.0.113.0/24");
        assert_eq!(network("2001:db8:aa:bb::1".parse().unwrap()), "2001:db8:aa::/48");
    }

    #[test]
    fn devices_are_hashed_and_blank_is_none() {
        assert_eq!(device("  "), None);
        let d = device("phone-1").unwrap();
        assert_eq!(d.len(), 32);
        assert_eq!(device(" phone-1 "), Some(d));
    }
}
