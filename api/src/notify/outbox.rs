//! Notifications to people through a Postgres outbox.
//!
//! An event is written in the same transaction as the change it announces, with a unique
//! `send_key`, so it exists if and only if the change does, and at most once. A worker
//! claims due rows with `FOR UPDATE SKIP LOCKED` (several workers never take the same row),
//! sends them while holding the claim, and marks them sent in the same transaction. A crash
//! between sending and marking rolls the claim back: the row is sent again later, with the
//! same key, which receivers use to drop the duplicate (HTTP `Idempotency-Key`, email
//! `Message-ID`).
//!
//! Failures are retried with exponential backoff up to [`ATTEMPTS_MAX`]; then the row is
//! `failed` and stays for an operator. Reminders and expiry notices are checked against the
//! ledger when due and `skipped` when no longer true (the hold was paid).
//!
//! The statements are in `allot_store::outbox`; kinds and their messages are here.

use std::time::{Duration, SystemTime};

use allot_ledger::HoldState;
use allot_store::outbox::{self as store, ClaimedRow, NewEvent};
use allot_store::status::OutboxStatus;
use allot_store::GenericClient;
use serde_json::Value;
use time::macros::format_description;
use time::{OffsetDateTime, UtcOffset};

use super::senders::{Message, SendError, Sender};
use super::Notifier;
use crate::catalog::Catalog;

/// Rows claimed per transaction: bounds how long claims are held and how much one crash
/// re-sends.
pub const BATCH_ROWS_MAX: i64 = 32;
/// A send that takes longer than this counts as failed (and keeps no claim for long).
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// After this many failed attempts a row is `failed`; backoff doubles from 1 s up to
/// [`BACKOFF_MAX`], so the last attempt comes about an hour and a half after the first.
pub const ATTEMPTS_MAX: i32 = 12;
pub const BACKOFF_MAX: Duration = Duration::from_secs(3600);
/// Message bodies we keep in `last_error` are cut to this.
const ERROR_CHARS_MAX: usize = 500;
/// Bangkok: deadlines are shown in the sale's local time.
const DISPLAY_OFFSET_HOURS: i8 = 7;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    ReservationMade,
    PaymentReminder,
    PaymentConfirmed,
    ReservationExpired,
    RefundDue,
    /// Units freed for a waitlisted person are held for them: come and pay.
    WaitlistOffered,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::ReservationMade,
        Kind::PaymentReminder,
        Kind::PaymentConfirmed,
        Kind::ReservationExpired,
        Kind::RefundDue,
        Kind::WaitlistOffered,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::ReservationMade => "reservation_made",
            Kind::PaymentReminder => "payment_reminder",
            Kind::PaymentConfirmed => "payment_confirmed",
            Kind::ReservationExpired => "reservation_expired",
            Kind::RefundDue => "refund_due",
            Kind::WaitlistOffered => "waitlist_offered",
        }
    }

    pub fn parse(text: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == text)
    }

    /// Fluent message id prefix: `notify-reservation-made`.
    pub(crate) fn message_id(self) -> String {
        format!("notify-{}", self.as_str().replace('_', "-"))
    }

    /// Notices whose message quotes the payment's reference, and so have a variant for a
    /// hold with no payment opened yet.
    fn quotes_reference(self) -> bool {
        matches!(self, Kind::ReservationMade | Kind::PaymentReminder)
    }

    /// The hold state in which this notice is still true; `None` when it always is.
    fn requires(self) -> Option<HoldState> {
        match self {
            Kind::PaymentReminder => Some(HoldState::Held),
            Kind::ReservationExpired => Some(HoldState::Expired),
            _ => None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Event {
    /// Unique per event, ever: `kind.subject` (dots and underscores only, so it is also a
    /// valid email Message-ID).
    pub send_key: String,
    pub user_id: i64,
    pub kind: Kind,
    /// What the message needs: reservation and payment ids, offering, amount, deadline.
    pub args: Value,
    /// Not sent before this.
    pub due_at: SystemTime,
}

/// Adds events in the caller's transaction (or on any client); an event whose key exists
/// is left alone. Returns how many were added.
pub async fn enqueue(
    client: &impl GenericClient,
    events: &[Event],
) -> Result<u64, allot_store::Error> {
    let mut added = 0;
    for e in events {
        let event = NewEvent {
            send_key: &e.send_key,
            user_id: e.user_id,
            kind: e.kind.as_str(),
            args: &e.args,
            due_at: e.due_at,
        };
        added += store::enqueue(client, &event).await?;
    }
    Ok(added)
}

/// Adds many events in one statement; an event whose key exists is left alone.
pub async fn enqueue_many(
    client: &impl GenericClient,
    events: &[Event],
) -> Result<u64, allot_store::Error> {
    let rows: Vec<NewEvent<'_>> = events
        .iter()
        .map(|e| NewEvent {
            send_key: &e.send_key,
            user_id: e.user_id,
            kind: e.kind.as_str(),
            args: &e.args,
            due_at: e.due_at,
        })
        .collect();
    store::enqueue_many(client, &rows).await
}

/// What became of one claimed row.
#[derive(Debug)]
enum Fate {
    Sent,
    Skipped,
    Retry(String),
    Failed(String),
}

struct Claimed {
    id: i64,
    attempts: i32,
    message: Option<Message>,
    fate: Option<Fate>,
}

/// Claims up to [`BATCH_ROWS_MAX`] due rows, sends them, records what happened, commits.
/// Returns how many rows it claimed (a full batch means: call again).
pub async fn drain_once(notifier: &Notifier, sender: &dyn Sender) -> Result<usize, String> {
    let mut client = notifier.db.get().await.map_err(|e| e.to_string())?;
    let tx = client.transaction().await.map_err(|e| e.to_string())?;
    let rows = store::claim_due(&tx, BATCH_ROWS_MAX).await.map_err(|e| e.to_string())?;
    let mut claimed = Vec::with_capacity(rows.len());
    for row in rows {
        let (id, attempts) = (row.id, row.attempts);
        let (message, fate) = match prepare(notifier, &tx, row).await {
            Ok(Some(message)) => (Some(message), None),
            Ok(None) => (None, Some(Fate::Skipped)),
            Err(fate) => (None, Some(fate)),
        };
        claimed.push(Claimed { id, attempts, message, fate });
    }
    let sends = claimed.iter().map(|c| async move {
        let message = c.message.as_ref()?;
        Some(match tokio::time::timeout(SEND_TIMEOUT, sender.send(message)).await {
            Ok(Ok(())) => Fate::Sent,
            Ok(Err(SendError::Retry(e))) => Fate::Retry(e),
            Ok(Err(SendError::Permanent(e))) => Fate::Failed(e),
            Err(_) => Fate::Retry(format!("no answer within {SEND_TIMEOUT:?}")),
        })
    });
    let results = futures::future::join_all(sends).await;
    for (c, result) in claimed.iter_mut().zip(results) {
        if let Some(fate) = result {
            c.fate = Some(fate);
        }
    }
    for c in &claimed {
        record_fate(&tx, c).await.map_err(|e| e.to_string())?;
    }
    tx.commit().await.map_err(|e| e.to_string())?;
    Ok(claimed.len())
}

async fn record_fate(tx: &impl GenericClient, c: &Claimed) -> Result<(), allot_store::Error> {
    let attempts = c.attempts + 1;
    let kind = c.message.as_ref().map_or("", |m| m.kind);
    match c.fate.as_ref().expect("every claimed row has a fate") {
        fate @ (Fate::Sent | Fate::Skipped) => {
            let status = match fate {
                Fate::Sent => OutboxStatus::Sent,
                _ => OutboxStatus::Skipped,
            };
            metrics::counter!("allot_notifications_total", "status" => status.as_str(), "kind" => kind)
                .increment(1);
            store::mark_done(tx, c.id, status, attempts).await?;
        }
        Fate::Retry(error) if attempts < ATTEMPTS_MAX => {
            let backoff = backoff(attempts);
            tracing::warn!(outbox_id = c.id, attempts, error = %error, "notification will be retried");
            let seconds = backoff.as_secs() as f64;
            store::mark_retry(tx, c.id, attempts, &truncate(error), seconds).await?;
        }
        Fate::Retry(error) | Fate::Failed(error) => {
            let status = OutboxStatus::Failed.as_str();
            metrics::counter!("allot_notifications_total", "status" => status, "kind" => kind)
                .increment(1);
            tracing::error!(outbox_id = c.id, attempts, error = %error, "notification failed for good");
            store::mark_failed(tx, c.id, attempts, &truncate(error)).await?;
        }
    }
    Ok(())
}

/// 1 s, 2 s, 4 s, ... capped at [`BACKOFF_MAX`].
pub fn backoff(attempts: i32) -> Duration {
    let exponent = attempts.clamp(1, 31) as u32 - 1;
    Duration::from_secs(1u64 << exponent).min(BACKOFF_MAX)
}

fn truncate(text: &str) -> String {
    text.chars().take(ERROR_CHARS_MAX).collect()
}

/// The message for a claimed row, `Ok(None)` when it is no longer true, or the fate of a
/// row that cannot be prepared now.
async fn prepare(
    notifier: &Notifier,
    client: &impl GenericClient,
    mut row: ClaimedRow,
) -> Result<Option<Message>, Fate> {
    let kind =
        Kind::parse(&row.kind).ok_or_else(|| Fate::Failed(format!("unknown kind {}", row.kind)))?;
    if let Some(required) = kind.requires() {
        let hold = row.args["reservation_id"]
            .as_str()
            .and_then(crate::holds::parse_id)
            .ok_or_else(|| Fate::Failed("no reservation id".into()))?;
        let info = tokio::time::timeout(notifier.ledger_timeout, notifier.ledger.hold_info(hold))
            .await
            .map_err(|_| Fate::Retry("ledger timeout".into()))?
            .map_err(|e| Fate::Retry(e.to_string()))?;
        if info.map(|i| i.state) != Some(required) {
            return Ok(None);
        }
    }
    add_reference(client, &mut row.args).await.map_err(|e| Fate::Retry(e.to_string()))?;
    let lang = row
        .locale
        .as_deref()
        .and_then(|l| crate::i18n::SUPPORTED.into_iter().find(|s| *s == l))
        .unwrap_or("th");
    let (subject, body) = render(&notifier.catalog, kind, lang, &row.args);
    Ok(Some(Message {
        send_key: row.send_key,
        user_id: row.user_id,
        kind: kind.as_str(),
        locale: lang.to_owned(),
        email: row.email,
        subject,
        body,
    }))
}

/// A notice written before its hold had a payment (the projector's) names the payment's
/// reference if one was opened since: the reference is read when the notice is sent.
async fn add_reference(
    client: &impl GenericClient,
    args: &mut Value,
) -> Result<(), allot_store::Error> {
    let has_reference = args["reference"].as_str().is_some_and(|r| !r.is_empty());
    let Some(reservation) = args["reservation_id"].as_str().filter(|_| !has_reference) else {
        return Ok(());
    };
    if let Some(intent) = allot_store::payments::intent_by_reservation(client, reservation).await? {
        args["reference"] = intent.reference.into();
    }
    Ok(())
}

/// Subject and body in `lang`, from the Fluent messages `notify-<kind>-subject` and
/// `notify-<kind>-body`.
pub fn render(catalog: &Catalog, kind: Kind, lang: &str, args: &Value) -> (String, String) {
    let offering = args["offering_id"].as_str().unwrap_or_default();
    let name = catalog
        .get(offering)
        .and_then(|o| {
            let names = &o.config.name;
            names.get(lang).or_else(|| names.get("en")).or_else(|| names.get("th")).cloned()
        })
        .unwrap_or_else(|| offering.to_owned());
    let text_args = vec![
        ("offering", name),
        ("amount", format_baht(args["amount_satang"].as_u64().unwrap_or(0))),
        ("reference", args["reference"].as_str().unwrap_or_default().to_owned()),
        ("deadline", format_deadline(args["expires_at"].as_i64().unwrap_or(0))),
        ("hours", args["hours"].as_u64().unwrap_or(0).to_string()),
        ("reason", args["reason"].as_str().unwrap_or_default().to_owned()),
    ];
    let id = kind.message_id();
    let subject = crate::i18n::text(lang, &format!("{id}-subject"), &text_args);
    // Before a payment is opened there is no reference to quote: say how to get one.
    let unpaid = kind.quotes_reference() && args["reference"].as_str().unwrap_or("").is_empty();
    let body_id = if unpaid { format!("{id}-body-unpaid") } else { format!("{id}-body") };
    let body = crate::i18n::text(lang, &body_id, &text_args);
    (subject, body)
}

/// 150,000 satang → "1,500.00" (integers only).
pub fn format_baht(satang: u64) -> String {
    let baht = (satang / 100).to_string();
    let mut grouped = String::new();
    for (i, c) in baht.chars().enumerate() {
        if i > 0 && (baht.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("{grouped}.{:02}", satang % 100)
}

fn format_deadline(unix: i64) -> String {
    let offset = UtcOffset::from_hms(DISPLAY_OFFSET_HOURS, 0, 0).expect("valid offset");
    OffsetDateTime::from_unix_timestamp(unix)
        .map(|t| t.to_offset(offset))
        .ok()
        .and_then(|t| t.format(format_description!("[year]-[month]-[day] [hour]:[minute]")).ok())
        .map_or_else(String::new, |t| format!("{t} (UTC+7)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(5), Duration::from_secs(16));
        assert_eq!(backoff(30), BACKOFF_MAX);
        assert_eq!(backoff(ATTEMPTS_MAX), Duration::from_secs(2048));
    }

    #[test]
    fn baht_are_grouped_and_exact() {
        assert_eq!(format_baht(0), "0.00");
        assert_eq!(format_baht(150_000), "1,500.00");
        assert_eq!(format_baht(100_000_000_005), "1,000,000,000.05");
        assert_eq!(format_baht(99_999), "999.99");
    }

    #[test]
    fn deadlines_show_in_bangkok_time() {
        assert_eq!(format_deadline(0), "1970-01-01 07:00 (UTC+7)");
    }

    #[test]
    fn every_kind_has_messages_in_every_language() {
        // Fluent refuses a message whose placeables have no value: give them all.
        let args: Vec<(&'static str, String)> =
            ["offering", "amount", "reference", "deadline", "hours", "reason"]
                .into_iter()
                .map(|k| (k, "x".to_owned()))
                .collect();
        for lang in crate::i18n::SUPPORTED {
            for kind in Kind::ALL {
                let unpaid = kind.quotes_reference().then_some("body-unpaid");
                for part in ["subject", "body"].into_iter().chain(unpaid) {
                    let id = format!("{}-{part}", kind.message_id());
                    let text = crate::i18n::text(lang, &id, &args);
                    assert!(!text.is_empty() && !text.contains("Unknown"), "{lang} {id}");
                    if lang != crate::i18n::FALLBACK {
                        let en = crate::i18n::text(crate::i18n::FALLBACK, &id, &args);
                        assert_ne!(text, en, "{lang} {id} is not translated");
                    }
                }
            }
        }
    }

    /// The message ids of one Fluent file, read with Fluent's own parser.
    fn ids_in(lang: &str) -> std::collections::BTreeSet<String> {
        use fluent_syntax::ast::Entry;
        let path = format!("{}/locales/{lang}/main.ftl", env!("CARGO_MANIFEST_DIR"));
        let source = std::fs::read_to_string(&path).expect("a Fluent file per language");
        let resource = fluent_syntax::parser::parse(source)
            .unwrap_or_else(|(_, errors)| panic!("{path}: {errors:?}"));
        resource
            .body
            .into_iter()
            .filter_map(|entry| match entry {
                Entry::Message(m) => Some(m.id.name),
                _ => None,
            })
            .collect()
    }

    /// Over the Fluent files themselves, not through the loader's fallback to English:
    /// every code of the error table, every notification and the ticket QR's title has its message in all five
    /// files, and no file holds a message nothing asks for. (Here rather than in `i18n`,
    /// which must not import the notifications.)
    #[test]
    fn the_fluent_files_hold_exactly_the_error_table_and_the_notifications() {
        let mut expected: std::collections::BTreeSet<String> =
            crate::error::ErrorCode::ALL.iter().map(|c| c.as_str().to_owned()).collect();
        for kind in Kind::ALL {
            let unpaid = kind.quotes_reference().then_some("body-unpaid");
            for part in ["subject", "body"].into_iter().chain(unpaid) {
                expected.insert(format!("{}-{part}", kind.message_id()));
            }
        }
        expected.extend(crate::i18n::IDENTITY_CODE_MESSAGES.map(str::to_owned));
        // The title of a ticket's QR image (`tickets::qr`).
        expected.insert("ticket-qr-title".to_owned());
        for lang in crate::i18n::SUPPORTED {
            let ids = ids_in(lang);
            let missing: Vec<_> = expected.difference(&ids).collect();
            let stray: Vec<_> = ids.difference(&expected).collect();
            assert!(missing.is_empty(), "{lang}/main.ftl lacks {missing:?}");
            assert!(stray.is_empty(), "{lang}/main.ftl has ids nothing uses: {stray:?}");
        }
    }
}
