//! The payments background task: drains the notification outbox and applies any bank
//! notification that was recorded but not applied (a crash or a ledger outage in between).

use std::time::Duration;

use super::{outbox, senders, Payments};
use crate::config::NotifySettings;

/// How often the task looks for due notifications and unapplied payments when idle.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// Full batches drained back to back before the task yields to the re-apply pass.
const BATCHES_PER_PASS_MAX: usize = 32;

/// Runs forever. With `notify_url = "none"` this process sends nothing (another one drains
/// the outbox) but still finishes payments.
pub async fn run(payments: Payments, notify: NotifySettings) {
    let sender = match senders::from_settings(&notify) {
        Ok(sender) => sender,
        Err(e) => {
            tracing::error!(error = %e, "notifications disabled: bad notify_url");
            None
        }
    };
    loop {
        if let Some(sender) = &sender {
            for _ in 0..BATCHES_PER_PASS_MAX {
                match outbox::drain_once(&payments, sender.as_ref()).await {
                    Ok(n) if n as i64 == outbox::BATCH_ROWS_MAX => continue,
                    Ok(_) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "outbox pass failed");
                        break;
                    }
                }
            }
        }
        if let Err(e) = payments.reapply_unapplied().await {
            tracing::warn!(error = %e, "re-applying payment notifications failed");
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}
