//! The fairness check of the reservation path, in memory only: a book-building offering
//! takes no direct reservations, and a queued one wants a valid admission token for this
//! caller. It verifies a signature and reads the offering's config; no database, no lock
//! but the latency window's, so the hot path stays as fast as the ledger lets it.

use std::sync::Arc;

use super::latency::{Timing, Window};
use super::tokens::QueueKeys;
use crate::auth::Principal;
use crate::catalog::config::Allocation;
use crate::catalog::Offering;
use crate::error::{ApiError, ApiResult, ErrorCode};

/// The admission check and the latency window it feeds; shares both with the waiting room
/// (which signs the tokens and watches the window).
#[derive(Clone, Debug)]
pub struct Gate {
    tokens: Arc<QueueKeys>,
    latency: Arc<Window>,
}

impl Gate {
    pub fn new(tokens: Arc<QueueKeys>, latency: Arc<Window>) -> Gate {
        Gate { tokens, latency }
    }

    /// Lets a reservation of `offering` by `who` through, or says why not. The returned
    /// guard times the reservation for the admission controller.
    pub fn check(
        &self,
        offering: &Offering,
        who: &Principal,
        admission: Option<&str>,
    ) -> ApiResult<Timing<'_>> {
        if offering.config.allocation == Allocation::BookBuilding {
            return Err(ApiError::new(ErrorCode::OfferingNotOpen));
        }
        if offering.config.queue {
            let admitted =
                admission.and_then(|token| self.tokens.verify_admission(token)).is_some_and(
                    |claims| claims.sub == who.user_id.to_string() && claims.off == offering.id(),
                );
            if !admitted {
                return Err(ApiError::field(
                    ErrorCode::QueueAdmissionRequired,
                    "X-Queue-Admission",
                ));
            }
        }
        Ok(self.latency.start())
    }

    pub fn latency(&self) -> &Window {
        &self.latency
    }
}
