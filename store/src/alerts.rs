//! Unusual activity (`activity_events`, `alerts`, migration V31): the events the rules
//! read that no other table keeps, one query per rule over a sliding window, and the
//! alerts staff acknowledge.
//!
//! Each rule query returns [`Finding`]s (a subject over its threshold, with evidence);
//! [`fire`] records one unless the same rule fired for the same subject within the window,
//! so a rule evaluated every few seconds raises one alert per burst, not one per pass.

use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::status::{ActivityKind, AlertSeverity};
use crate::{Error, GenericClient};

/// Appends one event.
pub async fn record_event(
    client: &impl GenericClient,
    kind: ActivityKind,
    user_id: Option<i64>,
    network: Option<&str>,
    device: Option<&str>,
    detail: Option<&str>,
) -> Result<(), Error> {
    client
        .execute(
            "INSERT INTO activity_events (kind, user_id, network, device, detail)
             VALUES ($1, $2, $3, $4, $5)",
            &[&kind, &user_id, &network, &device, &detail],
        )
        .await?;
    Ok(())
}

/// A subject over a rule's threshold within its window.
#[derive(Clone, Debug, PartialEq)]
pub struct Finding {
    pub subject: String,
    pub count: i64,
    /// What staff need to judge it: ids, amounts, the first and last time seen.
    pub evidence: Value,
}

/// One rule's query over the window: `$1` the window in seconds, `$2` the threshold; each
/// row is (subject, count, evidence).
async fn windowed(
    client: &impl GenericClient,
    sql: &str,
    window: Duration,
    threshold: i64,
) -> Result<Vec<Finding>, Error> {
    Ok(findings(client.query(sql, &[&seconds(window), &threshold]).await?))
}

fn findings(rows: Vec<tokio_postgres::Row>) -> Vec<Finding> {
    rows.iter()
        .map(|r| Finding { subject: r.get(0), count: r.get(1), evidence: r.get(2) })
        .collect()
}

fn seconds(window: Duration) -> f64 {
    window.as_secs_f64()
}

/// Accounts registered from one network, or one device, within the window.
pub async fn registrations_per_source(
    client: &impl GenericClient,
    window: Duration,
    threshold: i64,
) -> Result<Vec<Finding>, Error> {
    let sql = "SELECT subject, count(DISTINCT user_id),
                    jsonb_build_object('accounts', (array_agg(DISTINCT user_id))[1:20],
                                       'first', min(at), 'last', max(at))
             FROM (SELECT 'network:' || network AS subject, user_id, at FROM activity_events
                   WHERE kind = 'registration' AND network IS NOT NULL
                     AND at > now() - make_interval(secs => $1)
                   UNION ALL
                   SELECT 'device:' || device, user_id, at FROM activity_events
                   WHERE kind = 'registration' AND device IS NOT NULL
                     AND at > now() - make_interval(secs => $1)) e
             GROUP BY subject HAVING count(DISTINCT user_id) >= $2";
    windowed(client, sql, window, threshold).await
}

/// People who cancelled many reservations within the window (reserve, cancel, again).
pub async fn reserve_cancel_churn(
    client: &impl GenericClient,
    window: Duration,
    threshold: i64,
) -> Result<Vec<Finding>, Error> {
    let sql = "SELECT 'user:' || user_id, count(*),
                    jsonb_build_object('cancelled', (array_agg(reservation_id ORDER BY updated_at))[1:20],
                                       'offerings', array_agg(DISTINCT offering_id),
                                       'first', min(updated_at), 'last', max(updated_at))
             FROM reservations
             WHERE status = 'cancelled' AND updated_at > now() - make_interval(secs => $1)
             GROUP BY user_id HAVING count(*) >= $2";
    windowed(client, sql, window, threshold).await
}

/// One payer's account paying for many people's reservations within the window.
pub async fn payer_many_identities(
    client: &impl GenericClient,
    window: Duration,
    threshold: i64,
) -> Result<Vec<Finding>, Error> {
    let sql = "SELECT 'payer:' || n.payer_account, count(DISTINCT i.user_id),
                    jsonb_build_object('people', (array_agg(DISTINCT i.user_id))[1:20],
                                       'payments', count(*),
                                       'amount_satang', sum(n.amount_satang),
                                       'first', min(n.received_at), 'last', max(n.received_at))
             FROM payment_notifications n JOIN payment_intents i ON i.payment_id = n.payment_id
             WHERE n.payer_account IS NOT NULL
               AND n.received_at > now() - make_interval(secs => $1)
             GROUP BY n.payer_account HAVING count(DISTINCT i.user_id) >= $2";
    windowed(client, sql, window, threshold).await
}

/// Accounts with many wrong second-factor codes within the window.
pub async fn mfa_failures(
    client: &impl GenericClient,
    window: Duration,
    threshold: i64,
) -> Result<Vec<Finding>, Error> {
    let sql = "SELECT 'user:' || user_id, count(*),
                    jsonb_build_object('networks', array_agg(DISTINCT network),
                                       'first', min(at), 'last', max(at))
             FROM activity_events
             WHERE kind = 'mfa_failure' AND user_id IS NOT NULL
               AND at > now() - make_interval(secs => $1)
             GROUP BY user_id HAVING count(*) >= $2";
    windowed(client, sql, window, threshold).await
}

/// Payment webhooks refused for their signature, per gateway, within the window.
pub async fn webhook_signature_failures(
    client: &impl GenericClient,
    window: Duration,
    threshold: i64,
) -> Result<Vec<Finding>, Error> {
    let sql = "SELECT 'gateway:' || COALESCE(detail, '?'), count(*),
                    jsonb_build_object('networks', (array_agg(DISTINCT network))[1:20],
                                       'first', min(at), 'last', max(at))
             FROM activity_events
             WHERE kind = 'webhook_rejected' AND at > now() - make_interval(secs => $1)
             GROUP BY detail HAVING count(*) >= $2";
    windowed(client, sql, window, threshold).await
}

/// Money booked for refund, or matching no payment, above a count within the window
/// (one finding per outcome).
pub async fn refunds_and_unmatched(
    client: &impl GenericClient,
    window: Duration,
    threshold: i64,
) -> Result<Vec<Finding>, Error> {
    let sql = "SELECT 'outcome:' || outcome, count(*),
                    jsonb_build_object('amount_satang', sum(amount_satang),
                                       'transactions', (array_agg(transaction_id ORDER BY received_at))[1:20],
                                       'first', min(received_at), 'last', max(received_at))
             FROM payment_notifications
             WHERE outcome IN ('refund_due', 'unmatched')
               AND received_at > now() - make_interval(secs => $1)
             GROUP BY outcome HAVING count(*) >= $2";
    windowed(client, sql, window, threshold).await
}

/// Tickets passed along a chain: changed hands at least `threshold` times in the window.
pub async fn ticket_transfer_chains(
    client: &impl GenericClient,
    window: Duration,
    threshold: i64,
) -> Result<Vec<Finding>, Error> {
    let sql = "SELECT 'ticket:' || reservation_id || '-' || seat, count(*),
                    jsonb_build_object('holders', jsonb_agg(jsonb_build_array(from_user_id, to_user_id)
                                                            ORDER BY transferred_at),
                                       'first', min(transferred_at), 'last', max(transferred_at))
             FROM ticket_transfers
             WHERE transferred_at > now() - make_interval(secs => $1)
             GROUP BY reservation_id, seat HAVING count(*) >= $2";
    windowed(client, sql, window, threshold).await
}

/// Records an alert unless `rule` fired for `subject` within `window`; returns its id when
/// it is new.
pub async fn fire(
    client: &impl GenericClient,
    rule: &str,
    severity: AlertSeverity,
    finding: &Finding,
    window: Duration,
) -> Result<Option<i64>, Error> {
    let row = client
        .query_opt(
            "INSERT INTO alerts (rule, subject, severity, evidence)
             SELECT $1, $2, $3, $4
             WHERE NOT EXISTS (SELECT 1 FROM alerts WHERE rule = $1 AND subject = $2
                               AND fired_at > now() - make_interval(secs => $5))
             RETURNING id",
            &[&rule, &finding.subject, &severity, &finding.evidence, &seconds(window)],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// An alert as staff see it.
#[derive(Clone, Debug)]
pub struct AlertRow {
    pub id: i64,
    pub rule: String,
    pub subject: String,
    pub severity: AlertSeverity,
    pub evidence: Value,
    pub fired_at: SystemTime,
    pub acknowledged_at: Option<SystemTime>,
    pub acknowledged_by: Option<i64>,
    pub note: Option<String>,
}

const COLUMNS: &str =
    "id, rule, subject, severity, evidence, fired_at, acknowledged_at, acknowledged_by, note";

fn alert(r: &tokio_postgres::Row) -> AlertRow {
    AlertRow {
        id: r.get(0),
        rule: r.get(1),
        subject: r.get(2),
        severity: r.get(3),
        evidence: r.get(4),
        fired_at: r.get(5),
        acknowledged_at: r.get(6),
        acknowledged_by: r.get(7),
        note: r.get(8),
    }
}

/// The newest alerts (only those not yet acknowledged when `open_only`), at most `limit`.
pub async fn list(
    client: &impl GenericClient,
    open_only: bool,
    limit: i64,
) -> Result<Vec<AlertRow>, Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM alerts WHERE NOT $1 OR acknowledged_at IS NULL
         ORDER BY fired_at DESC, id DESC LIMIT $2"
    );
    Ok(client.query(&sql, &[&open_only, &limit]).await?.iter().map(alert).collect())
}

pub async fn get(client: &impl GenericClient, id: i64) -> Result<Option<AlertRow>, Error> {
    let sql = format!("SELECT {COLUMNS} FROM alerts WHERE id = $1");
    Ok(client.query_opt(&sql, &[&id]).await?.as_ref().map(alert))
}

/// Acknowledges an open alert with a note; `None` when there is no such open alert.
pub async fn acknowledge(
    client: &impl GenericClient,
    id: i64,
    by: i64,
    note: &str,
) -> Result<Option<AlertRow>, Error> {
    let sql = format!(
        "UPDATE alerts SET acknowledged_at = now(), acknowledged_by = $2, note = $3
         WHERE id = $1 AND acknowledged_at IS NULL RETURNING {COLUMNS}"
    );
    Ok(client.query_opt(&sql, &[&id, &by, &note]).await?.as_ref().map(alert))
}

/// Suspends (or reinstates) an account; `None` when there is no such user, else whether it
/// was suspended before.
pub async fn set_suspended(
    client: &impl GenericClient,
    user_id: i64,
    suspended: bool,
) -> Result<Option<bool>, Error> {
    let row = client
        .query_opt(
            "UPDATE users u SET suspended_at = CASE WHEN $2 THEN COALESCE(prev.suspended_at, now()) END
             FROM users prev WHERE u.user_id = $1 AND prev.user_id = u.user_id
             RETURNING prev.suspended_at IS NOT NULL",
            &[&user_id, &suspended],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// Whether the account is suspended (`false` when there is no such account).
pub async fn is_suspended(client: &impl GenericClient, user_id: i64) -> Result<bool, Error> {
    let row = client
        .query_opt("SELECT suspended_at IS NOT NULL FROM users WHERE user_id = $1", &[&user_id])
        .await?;
    Ok(row.is_some_and(|r| r.get(0)))
}
