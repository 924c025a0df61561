//! What every hold announces to its holder, whoever placed it (a reservation, an
//! allotment, a waitlist offer): that it was made (the deposit, the deadline, how to pay),
//! reminders 6 h and 1 h before the deadline, and its expiry once the settlement grace is
//! over. The projector enqueues them in the transaction that projects the hold, so each
//! hold is told exactly once; a payment intent enqueues the same keys (kept once).
//! Reminders and the expiry are checked against the ledger when due and skipped when no
//! longer true (the hold was paid).

use std::time::{Duration, SystemTime};

use time::OffsetDateTime;

use super::outbox::{Event, Kind};

/// Reminders before a payment deadline, in hours; each only when the hold is long enough.
pub const REMINDER_HOURS: [u64; 2] = [6, 1];

/// A hold as its notices describe it.
#[derive(Clone, Debug)]
pub struct HoldNotice<'a> {
    pub reservation_id: &'a str,
    pub user_id: i64,
    pub offering_id: &'a str,
    /// The deposit that confirms it.
    pub deposit_satang: u64,
    /// The deadline its holder was told.
    pub deadline: SystemTime,
    /// When the ledger releases it: the expiry is told only then.
    pub lapses_at: SystemTime,
    /// Extra arguments (a payment's reference), merged into every notice's.
    pub extra: Option<&'a serde_json::Value>,
}

/// The notices of one hold: made (due now), reminders, expiry. Empty when the deadline has
/// passed already (a hold projected late tells nobody about a past it cannot change).
pub fn hold_events(h: &HoldNotice<'_>, now: SystemTime, expiry_grace: Duration) -> Vec<Event> {
    if h.deadline <= now {
        return Vec::new();
    }
    let mut args = serde_json::json!({
        "reservation_id": h.reservation_id,
        "offering_id": h.offering_id,
        "amount_satang": h.deposit_satang,
        "expires_at": OffsetDateTime::from(h.deadline).unix_timestamp(),
    });
    if let Some(serde_json::Value::Object(extra)) = h.extra {
        for (k, v) in extra {
            args[k] = v.clone();
        }
    }
    let event = |kind: Kind, tag: String, args: serde_json::Value, due_at| Event {
        send_key: format!("{}{tag}.{}", kind.as_str(), h.reservation_id),
        user_id: h.user_id,
        kind,
        args,
        due_at,
    };
    let mut events = vec![event(Kind::ReservationMade, String::new(), args.clone(), now)];
    for hours in REMINDER_HOURS {
        let due_at = h.deadline - Duration::from_secs(hours * 3600);
        if due_at > now {
            let mut args = args.clone();
            args["hours"] = hours.into();
            events.push(event(Kind::PaymentReminder, format!("_{hours}h"), args, due_at));
        }
    }
    let expiry_due = h.lapses_at.max(h.deadline) + expiry_grace;
    events.push(event(Kind::ReservationExpired, String::new(), args, expiry_due));
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_long_hold_is_told_made_twice_reminded_and_expired_after_the_grace() {
        let now = SystemTime::now();
        let deadline = now + Duration::from_secs(24 * 3600);
        let lapses_at = deadline + Duration::from_secs(900);
        let notice = HoldNotice {
            reservation_id: "abc",
            user_id: 7,
            offering_id: "bond",
            deposit_satang: 1_000,
            deadline,
            lapses_at,
            extra: None,
        };
        let events = hold_events(&notice, now, Duration::from_secs(2));
        let keys: Vec<&str> = events.iter().map(|e| e.send_key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "reservation_made.abc",
                "payment_reminder_6h.abc",
                "payment_reminder_1h.abc",
                "reservation_expired.abc"
            ]
        );
        assert_eq!(events[3].due_at, lapses_at + Duration::from_secs(2));
        assert_eq!(events[1].args["hours"], 6);
        let short = HoldNotice { deadline: now + Duration::from_secs(600), ..notice.clone() };
        assert_eq!(hold_events(&short, now, Duration::ZERO).len(), 2, "too short to remind");
        let past = HoldNotice { deadline: now, ..notice };
        assert!(hold_events(&past, now, Duration::ZERO).is_empty());
    }
}
