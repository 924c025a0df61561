//! Notifications to people: a Postgres outbox, drained by a worker, sent through one of a
//! few senders.
//!
//! - This module: the [`Notifier`] service (the handles draining works with) and one
//!   drain pass.
//! - [`outbox`]: events written in the caller's transaction, claimed, checked against the
//!   ledger when due, rendered in the person's language, marked sent, retried or failed.
//! - [`senders`]: the log, an HTTP webhook or SMTP, behind one trait.
//! - [`holds`]: what every hold announces (made, reminders, expiry), enqueued by the
//!   projector as it projects the hold.
//!
//! Writers (payments, the waitlist) enqueue in their own transactions with
//! [`outbox::enqueue`]; the payments worker runs [`Notifier::drain`] in its loop. Every
//! statement is in `allot_store::outbox`.
//!
//! Invariants:
//! - An event exists if and only if the change it announces committed, and at most once
//!   (its `send_key` is unique).
//! - A notice that is no longer true when due (a reminder for a hold already paid) is
//!   skipped, never sent.
//! - This module sits below the domains that notify: it never imports `payments`,
//!   `fairness` or `reservations`.

pub mod holds;
pub mod outbox;
pub mod senders;

use std::sync::Arc;
use std::time::Duration;

use allot_ledger::Ledger;
use allot_store::Pool;

use crate::catalog::Catalog;
use crate::config::NotifySettings;
use senders::Sender;

/// Full batches drained back to back in one [`Notifier::drain`] pass, so that a long
/// backlog does not starve the other work of the loop that calls it.
pub const BATCHES_PER_PASS_MAX: usize = 32;

/// The notification service: exactly the handles draining the outbox works with. Built
/// once at start; cheap to clone (Arcs and the pool).
#[derive(Clone, Debug)]
pub struct Notifier {
    /// The outbox, and each person's email and language.
    db: Pool,
    /// Says whether a reminder or an expiry notice is still true when due.
    ledger: Arc<Ledger>,
    /// An offering's name, in the person's language, for the message.
    catalog: Arc<Catalog>,
    /// A ledger check that takes longer is retried later.
    ledger_timeout: Duration,
}

impl Notifier {
    pub fn new(
        db: Pool,
        ledger: Arc<Ledger>,
        catalog: Arc<Catalog>,
        ledger_timeout: Duration,
    ) -> Notifier {
        Notifier { db, ledger, catalog, ledger_timeout }
    }

    /// Sends what is due: full batches back to back, up to [`BATCHES_PER_PASS_MAX`]; a
    /// failed pass is logged and left for the next call.
    pub async fn drain(&self, sender: &dyn Sender) {
        for _ in 0..BATCHES_PER_PASS_MAX {
            match outbox::drain_once(self, sender).await {
                Ok(n) if n as i64 == outbox::BATCH_ROWS_MAX => continue,
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "outbox pass failed");
                    break;
                }
            }
        }
    }
}

/// The sender `notify_url` names; `None` when this process sends nothing (`none`, or a bad
/// `notify_url`, which is logged).
pub fn sender(settings: &NotifySettings) -> Option<Box<dyn Sender>> {
    match senders::from_settings(settings) {
        Ok(sender) => sender,
        Err(e) => {
            tracing::error!(error = %e, "notifications disabled: bad notify_url");
            None
        }
    }
}
