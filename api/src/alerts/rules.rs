//! The unusual-activity rules: each a query over a sliding window with a threshold from
//! configuration (`[alerts.<rule>]`), a severity, and a name that labels its alerts and
//! its metric. Evaluated together by [`super::Alerts::evaluate`].

use std::time::Duration;

use allot_store::alerts::{self as store, Finding};
use allot_store::status::AlertSeverity;
use allot_store::GenericClient;

use crate::config::{AlertSettings, Threshold};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// Many accounts registered from one network (/24, /48) or one device.
    RegistrationsPerSource,
    /// One person reserving and cancelling again and again.
    ReserveCancelChurn,
    /// One payer's account paying for many people.
    PayerManyIdentities,
    /// Repeated wrong second-factor codes on one account.
    MfaFailures,
    /// Payment webhooks refused for their signature.
    WebhookSignatureFailures,
    /// Money booked for refund, or matching nothing, above a rate.
    RefundsAndUnmatched,
    /// A ticket passed along a chain of holders.
    TicketTransferChain,
}

impl Rule {
    pub const ALL: [Rule; 7] = [
        Rule::RegistrationsPerSource,
        Rule::ReserveCancelChurn,
        Rule::PayerManyIdentities,
        Rule::MfaFailures,
        Rule::WebhookSignatureFailures,
        Rule::RefundsAndUnmatched,
        Rule::TicketTransferChain,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Rule::RegistrationsPerSource => "registrations_per_source",
            Rule::ReserveCancelChurn => "reserve_cancel_churn",
            Rule::PayerManyIdentities => "payer_many_identities",
            Rule::MfaFailures => "mfa_failures",
            Rule::WebhookSignatureFailures => "webhook_signature_failures",
            Rule::RefundsAndUnmatched => "refunds_and_unmatched",
            Rule::TicketTransferChain => "ticket_transfer_chain",
        }
    }

    pub fn severity(self) -> AlertSeverity {
        match self {
            Rule::PayerManyIdentities | Rule::WebhookSignatureFailures => AlertSeverity::Critical,
            _ => AlertSeverity::Warning,
        }
    }

    pub fn threshold(self, s: &AlertSettings) -> &Threshold {
        match self {
            Rule::RegistrationsPerSource => &s.registrations_per_source,
            Rule::ReserveCancelChurn => &s.reserve_cancel_churn,
            Rule::PayerManyIdentities => &s.payer_many_identities,
            Rule::MfaFailures => &s.mfa_failures,
            Rule::WebhookSignatureFailures => &s.webhook_signature_failures,
            Rule::RefundsAndUnmatched => &s.refunds_and_unmatched,
            Rule::TicketTransferChain => &s.ticket_transfer_chain,
        }
    }

    /// The subjects over the threshold now.
    pub async fn find(
        self,
        client: &impl GenericClient,
        t: &Threshold,
    ) -> Result<Vec<Finding>, allot_store::Error> {
        let (window, count) = (Duration::from_secs(t.window_seconds), t.count as i64);
        match self {
            Rule::RegistrationsPerSource => {
                store::registrations_per_source(client, window, count).await
            }
            Rule::ReserveCancelChurn => store::reserve_cancel_churn(client, window, count).await,
            Rule::PayerManyIdentities => store::payer_many_identities(client, window, count).await,
            Rule::MfaFailures => store::mfa_failures(client, window, count).await,
            Rule::WebhookSignatureFailures => {
                store::webhook_signature_failures(client, window, count).await
            }
            Rule::RefundsAndUnmatched => store::refunds_and_unmatched(client, window, count).await,
            Rule::TicketTransferChain => store::ticket_transfer_chains(client, window, count).await,
        }
    }
}
