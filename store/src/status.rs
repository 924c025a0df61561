//! Every status kept in a text column, as an enum with its one spelling. Rows carry these
//! types (they convert to and from SQL text), so no status literal exists outside this
//! crate; the migrations' `CHECK` constraints list the same words.

macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vmeta])* $variant),* }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),*];

            /// The spelling stored in Postgres (and shown in API bodies).
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),* }
            }

            pub fn parse(text: &str) -> Option<$name> {
                match text { $($text => Some($name::$variant),)* _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl tokio_postgres::types::ToSql for $name {
            fn to_sql(
                &self,
                ty: &tokio_postgres::types::Type,
                out: &mut bytes::BytesMut,
            ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
                self.as_str().to_sql(ty, out)
            }

            fn accepts(ty: &tokio_postgres::types::Type) -> bool {
                <&str as tokio_postgres::types::ToSql>::accepts(ty)
            }

            tokio_postgres::types::to_sql_checked!();
        }

        impl<'a> tokio_postgres::types::FromSql<'a> for $name {
            fn from_sql(
                ty: &tokio_postgres::types::Type,
                raw: &'a [u8],
            ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
                let text = <&str as tokio_postgres::types::FromSql>::from_sql(ty, raw)?;
                $name::parse(text)
                    .ok_or_else(|| format!("unknown {} {text:?}", stringify!($name)).into())
            }

            fn accepts(ty: &tokio_postgres::types::Type) -> bool {
                <&str as tokio_postgres::types::FromSql>::accepts(ty)
            }
        }
    };
}

text_enum! {
    /// A reservation as the projector last saw it in the ledger (`reservations.status`).
    ReservationStatus {
        Held => "held",
        Confirmed => "confirmed",
        Cancelled => "cancelled",
        Expired => "expired",
    }
}

text_enum! {
    /// A payment intent (`payment_intents.status`).
    IntentStatus {
        Pending => "pending",
        Succeeded => "succeeded",
        RefundDue => "refund_due",
    }
}

text_enum! {
    /// What became of a bank's payment notification (`payment_notifications.outcome`).
    NotificationOutcome {
        /// Recorded, not yet applied to the ledger.
        Received => "received",
        Succeeded => "succeeded",
        RefundDue => "refund_due",
        /// No payment intent has this reference: listed for finance, no ledger movement.
        Unmatched => "unmatched",
    }
}

text_enum! {
    /// A notification waiting in, or gone from, the outbox (`outbox.status`).
    OutboxStatus {
        Pending => "pending",
        Sent => "sent",
        /// No longer true when it came due (the reservation was paid, say): not sent.
        Skipped => "skipped",
        Failed => "failed",
    }
}

text_enum! {
    /// A waitlist entry (`waitlist_entries.status`).
    WaitlistStatus {
        Waiting => "waiting",
        Offered => "offered",
        Left => "left",
        Ineligible => "ineligible",
    }
}

text_enum! {
    /// The kind of identity an account was registered with (`users.identity_kind`).
    IdentityKind {
        ThaiNationalId => "thai_national_id",
        Passport => "passport",
        Phone => "phone",
        Email => "email",
    }
}

text_enum! {
    /// Whether an account's identity was verified (`users.verification`): a phone or an
    /// email by a one-time code, a national ID or a passport by a KYC provider.
    Verification {
        Unverified => "unverified",
        /// A KYC request is open at the provider.
        Pending => "pending",
        Verified => "verified",
        Rejected => "rejected",
    }
}

text_enum! {
    /// An identity check at a KYC provider (`kyc_requests.status`).
    KycStatus {
        Open => "open",
        Approved => "approved",
        Rejected => "rejected",
    }
}

text_enum! {
    /// A named ticket (`tickets.status`).
    TicketStatus {
        /// Not yet through a gate.
        Valid => "valid",
        /// Admitted once at a gate; never again.
        Used => "used",
        Cancelled => "cancelled",
    }
}

text_enum! {
    /// An event kept for the unusual-activity rules (`activity_events.kind`).
    ActivityKind {
        Registration => "registration",
        MfaFailure => "mfa_failure",
        /// A payment webhook whose signature or timestamp failed.
        WebhookRejected => "webhook_rejected",
    }
}

text_enum! {
    /// How urgent an unusual-activity alert is (`alerts.severity`).
    AlertSeverity {
        Info => "info",
        Warning => "warning",
        Critical => "critical",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_parses_back_and_nothing_else_does() {
        for s in ReservationStatus::ALL {
            assert_eq!(ReservationStatus::parse(s.as_str()), Some(*s));
        }
        assert_eq!(NotificationOutcome::RefundDue.as_str(), "refund_due");
        assert_eq!(OutboxStatus::parse("Sent"), None, "spellings are exact");
        assert_eq!(WaitlistStatus::parse("ineligible"), Some(WaitlistStatus::Ineligible));
    }

    #[test]
    fn the_migrations_allow_exactly_these_words() {
        let sql: String = [
            "V1__core.sql",
            "V2__payments.sql",
            "V5__waitlist.sql",
            "V20__identity_kinds.sql",
            "V30__tickets.sql",
            "V31__unusual_activity.sql",
        ]
        .iter()
        .map(|f| std::fs::read_to_string(format!("migrations/{f}")).unwrap())
        .collect();
        let words = ReservationStatus::ALL.iter().map(|s| s.as_str());
        let words = words.chain(IntentStatus::ALL.iter().map(|s| s.as_str()));
        let words = words.chain(NotificationOutcome::ALL.iter().map(|s| s.as_str()));
        let words = words.chain(OutboxStatus::ALL.iter().map(|s| s.as_str()));
        let words = words.chain(IdentityKind::ALL.iter().map(|s| s.as_str()));
        let words = words.chain(Verification::ALL.iter().map(|s| s.as_str()));
        let words = words.chain(KycStatus::ALL.iter().map(|s| s.as_str()));
        let words = words.chain(TicketStatus::ALL.iter().map(|s| s.as_str()));
        let words = words.chain(ActivityKind::ALL.iter().map(|s| s.as_str()));
        let words = words.chain(AlertSeverity::ALL.iter().map(|s| s.as_str()));
        for word in words.chain(WaitlistStatus::ALL.iter().map(|s| s.as_str())) {
            assert!(sql.contains(&format!("'{word}'")), "{word} is not in a CHECK constraint");
        }
    }
}
