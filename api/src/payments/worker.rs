//! The payments background task: drains the notification outbox (through
//! [`crate::notify`]) and applies any bank notification that was recorded but not applied
//! (a crash or a ledger outage in between).

use std::time::Duration;

use super::Payments;
use crate::config::NotifySettings;
use crate::leader::Leader;
use crate::notify::{self, Notifier};

/// How often the task looks for due notifications and unapplied payments when idle.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Runs forever. With `notify_url = "none"` this process sends nothing (another one drains
/// the outbox) but still finishes payments. Every instance drains the outbox (rows are
/// claimed with `SKIP LOCKED`); only the leading one re-applies payments, which would
/// otherwise be applied once per instance (harmless, being idempotent, but wasted).
pub async fn run(payments: Payments, notifier: Notifier, notify: NotifySettings, leader: Leader) {
    let sender = notify::sender(&notify);
    loop {
        if let Some(sender) = &sender {
            notifier.drain(sender.as_ref()).await;
        }
        if !leader.is_leading() {
            tokio::time::sleep(POLL_INTERVAL).await;
            continue;
        }
        if let Err(e) = payments.reapply_unapplied().await {
            tracing::warn!(error = %e, "re-applying payment notifications failed");
        }
        report_backlog(&payments).await;
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// The outbox's backlog as gauges (`allot_outbox_backlog`, `allot_outbox_oldest_due_seconds`),
/// for the operators' alert on notifications piling up. The leader reports for everyone.
async fn report_backlog(payments: &Payments) {
    let Ok(client) = payments.db.get().await else { return };
    match allot_store::outbox::backlog(&client).await {
        Ok((rows, oldest)) => {
            metrics::gauge!("allot_outbox_backlog").set(rows as f64);
            metrics::gauge!("allot_outbox_oldest_due_seconds").set(oldest);
        }
        Err(e) => tracing::warn!(error = %e, "reading the outbox backlog failed"),
    }
}
