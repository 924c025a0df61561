//! Named tickets: each seat of a confirmed concert reservation, bound to its holder, shown
//! as a QR code that gates verify.
//!
//! - Issued by the projector (`projector::write_page`), in the transaction that projects a
//!   confirmation of a `tickets` offering: one per seat, idempotent, so a resent payment or
//!   a replayed page never makes more.
//! - [`token`]: the signed token in the QR (Ed25519, 112 characters), checkable offline
//!   with the public key alone; [`qr`]: its SVG, titled in the holder's language.
//! - [`Tickets::admit`]: the gate's online check, one conditional `UPDATE` (two gates
//!   scanning at once admit one), answering the holder's initials and identity kind.
//! - [`Tickets::transfer`]: to another account, free, a configured number of times until
//!   a cut-off before the show; the ticket's generation moves on, so the old QR is refused.
//!
//! There is no price anywhere here: a ticket changes hands for nothing or not at all.

pub mod qr;
pub mod token;

use std::sync::Arc;

use allot_secrets::{ExposeSecret, Secret};
use allot_store::status::TicketStatus;
use allot_store::tickets::{self as store, TicketRow};
use allot_store::Pool;
use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::auth::Principal;
use crate::catalog::Catalog;
use crate::config::TicketSettings;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::secrets::Source;

/// The tickets service: its handles, built once at start.
#[derive(Clone)]
pub struct Tickets {
    db: Pool,
    catalog: Arc<Catalog>,
    key: Arc<SigningKey>,
    transfers_max: u32,
    transfer_cutoff: time::Duration,
}

/// Names no key.
impl std::fmt::Debug for Tickets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tickets")
            .field("public_key", &self.public_key_hex())
            .finish_non_exhaustive()
    }
}

/// The ticket signing key: configured, else (dev mode) the dev store's, else (a dev store
/// older than tickets) one derived from the store's export key under a label of its own.
pub fn signing_key(configured: &Secret, source: &Source) -> Result<SigningKey, String> {
    let hex_seed = match source.get(configured, |d| &d.ticket_signing_key) {
        Some(s) if !s.expose_secret().is_empty() => s,
        _ => match source.get(&Secret::default(), |d| &d.export_signing_key) {
            Some(export) => {
                let seed = Sha256::new()
                    .chain_update(b"allot ticket signing key/v1")
                    .chain_update(export.expose_secret().as_bytes())
                    .finalize();
                hex::encode(seed).into()
            }
            None => return Err("ALLOT_TICKET_SIGNING_KEY is not set".into()),
        },
    };
    allot_export::keys::from_hex(hex_seed.expose_secret())
        .map_err(|_| "ALLOT_TICKET_SIGNING_KEY must be 64 hex digits (an Ed25519 seed)".into())
}

/// A ticket as its holder sees it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TicketView {
    /// `<reservation id>-<seat>`.
    pub ticket_id: String,
    pub offering_id: String,
    /// The offering's name in the holder's language (else English, else Thai).
    pub offering_name: String,
    pub zone: String,
    pub seat: u16,
    /// `valid`, `used` or `cancelled`.
    pub status: &'static str,
    /// How many more times it may change hands (0 once the show's cut-off passed).
    pub transfers_left: u32,
    /// The signed token the QR carries; gates check it offline with the public key.
    pub token: String,
    /// The token as a QR code, SVG, titled in the holder's language.
    pub qr_svg: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScanRequest {
    /// The token read from the QR code.
    pub token: String,
}

/// A gate's answer: let this person in, once staff saw an identity document that matches.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Admission {
    pub admitted: bool,
    pub ticket_id: String,
    pub offering_id: String,
    pub zone: String,
    pub seat: u16,
    /// Initials of the holder's name (`S. K.`), `null` when the account has no name.
    pub holder_initials: Option<String>,
    /// The identity document the holder's account was verified with
    /// (`thai_national_id`): staff ask to see one of this kind.
    pub identity_kind: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransferRequest {
    /// Email of the receiving account: another account whose identity is verified (a KYC
    /// check, or a code for a phone or email) and that is not suspended.
    pub to_email: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Transferred {
    pub ticket_id: String,
    /// Changes of hands the ticket has left.
    pub transfers_left: u32,
}

/// The public verifying key, for gate devices.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct GateKey {
    /// Ed25519 public key, 64 hex digits.
    pub public_key: String,
    /// `ed25519`.
    pub algorithm: &'static str,
}

impl Tickets {
    pub fn new(db: Pool, catalog: Arc<Catalog>, key: SigningKey, s: &TicketSettings) -> Tickets {
        Tickets {
            db,
            catalog,
            key: Arc::new(key),
            transfers_max: s.transfers_max,
            transfer_cutoff: time::Duration::seconds(s.transfer_cutoff_seconds as i64),
        }
    }

    pub fn public_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    pub fn public_key_hex(&self) -> String {
        hex::encode(self.public_key().to_bytes())
    }

    pub fn gate_key(&self) -> GateKey {
        GateKey { public_key: self.public_key_hex(), algorithm: "ed25519" }
    }

    /// The caller's tickets, newest first, with their QR codes; `lang` (the request's)
    /// counts only when the account has no language of its own.
    pub async fn mine(&self, who: &Principal, lang: &str) -> ApiResult<Vec<TicketView>> {
        let client = self.db.get().await?;
        let rows = store::of_holder(&client, who.user_id).await?;
        let stored = store::holder_locale(&client, who.user_id).await?;
        let lang = stored.as_deref().filter(|l| crate::i18n::SUPPORTED.contains(l)).unwrap_or(lang);
        rows.iter().map(|row| self.view(row, lang)).collect()
    }

    fn view(&self, row: &TicketRow, lang: &str) -> ApiResult<TicketView> {
        let offering = self.catalog.get(&row.offering_id);
        let name = offering.as_ref().map_or_else(
            || row.offering_id.clone(),
            |o| {
                let names = &o.config.name;
                names.get(lang).or(names.get("en")).or(names.get("th")).cloned().unwrap_or_default()
            },
        );
        let zone = offering
            .as_ref()
            .and_then(|o| o.zone(row.zone as u16))
            .map_or_else(|| row.zone.to_string(), |z| z.id.clone());
        let token = self.token(row)?;
        let title = crate::i18n::text(
            lang,
            "ticket-qr-title",
            &[("offering", name.clone()), ("zone", zone.clone()), ("seat", row.seat.to_string())],
        );
        let closed = offering.as_ref().is_some_and(|o| self.transfers_closed(&o.config));
        let left = match (row.status, closed) {
            (TicketStatus::Valid, false) => self.transfers_max.saturating_sub(row.transfers as u32),
            _ => 0,
        };
        Ok(TicketView {
            ticket_id: ticket_id(&row.reservation_id, row.seat),
            offering_id: row.offering_id.clone(),
            offering_name: name,
            zone,
            seat: row.seat as u16,
            status: row.status.as_str(),
            transfers_left: left,
            qr_svg: qr::svg(&token, &title).map_err(ApiError::internal)?,
            token,
        })
    }

    /// The current token of a ticket.
    fn token(&self, row: &TicketRow) -> ApiResult<String> {
        let claims = token::Claims {
            reservation: crate::holds::parse_id(&row.reservation_id)
                .ok_or_else(|| ApiError::internal("bad reservation id in a ticket"))?
                .get(),
            seat: u16::try_from(row.seat).map_err(ApiError::internal)?,
            generation: u16::try_from(row.generation).map_err(ApiError::internal)?,
        };
        Ok(token::sign(&self.key, &claims))
    }

    /// The gate's check: a token of ours, of a ticket still valid at this generation,
    /// marked used by this very call. Exactly one of any number of concurrent scans of
    /// one ticket is admitted; the others are `ticket_already_used`.
    pub async fn admit(&self, gate: &Principal, text: &str) -> ApiResult<Admission> {
        let outcome = self.try_admit(gate, text).await;
        let label = match &outcome {
            Ok(_) => "admitted",
            Err(e) => e.code.as_str(),
        };
        metrics::counter!("allot_gate_scans_total", "outcome" => label).increment(1);
        outcome
    }

    async fn try_admit(&self, gate: &Principal, text: &str) -> ApiResult<Admission> {
        let claims = token::verify(&self.public_key(), text)
            .map_err(|_| ApiError::field(ErrorCode::TicketInvalid, "token"))?;
        let reservation = crate::holds::format_id(
            allot_ledger::HoldId::new(claims.reservation)
                .ok_or_else(|| ApiError::field(ErrorCode::TicketInvalid, "token"))?,
        );
        let seat = i32::from(claims.seat);
        let generation = i32::from(claims.generation);
        let client = self.db.get().await?;
        if let Some(a) = store::admit(&client, &reservation, seat, generation, gate.user_id).await?
        {
            let zone = self
                .catalog
                .get(&a.ticket.offering_id)
                .and_then(|o| o.zone(a.ticket.zone as u16).map(|z| z.id.clone()))
                .unwrap_or_else(|| a.ticket.zone.to_string());
            return Ok(Admission {
                admitted: true,
                ticket_id: ticket_id(&reservation, seat),
                offering_id: a.ticket.offering_id,
                zone,
                seat: claims.seat,
                holder_initials: a.display_name.as_deref().and_then(initials),
                identity_kind: a.identity_kind,
            });
        }
        // Refused: say why, from the row as it is now.
        let row = store::get(&client, &reservation, seat).await?;
        Err(match row {
            None => ApiError::field(ErrorCode::TicketNotFound, "token"),
            Some(r) if r.generation > generation => ApiError::new(ErrorCode::TicketSuperseded),
            Some(r) if r.generation < generation => {
                ApiError::field(ErrorCode::TicketInvalid, "token")
            }
            Some(r) if r.status == TicketStatus::Cancelled => {
                ApiError::new(ErrorCode::TicketCancelled)
            }
            Some(_) => ApiError::new(ErrorCode::TicketAlreadyUsed),
        })
    }

    /// Gives the caller's ticket to the account of `to_email`, free. Refused after the
    /// configured number of transfers, after the cut-off before the show, and once used.
    pub async fn transfer(
        &self,
        who: &Principal,
        id: &str,
        body: &TransferRequest,
    ) -> ApiResult<Transferred> {
        let not_found = || ApiError::field(ErrorCode::TicketNotFound, "ticket_id");
        let (reservation, seat) = parse_ticket_id(id).ok_or_else(not_found)?;
        let mut client = self.db.get().await?;
        let row = store::get(&client, &reservation, seat).await?;
        let row = row.filter(|r| r.holder_user_id == who.user_id).ok_or_else(not_found)?;
        let email = body.to_email.trim();
        // An unverified or suspended account receives nothing; it reads as no account.
        let recipient = store::recipient_by_email(&client, email)
            .await?
            .ok_or_else(|| ApiError::field(ErrorCode::RecipientNotFound, "to_email"))?;
        if recipient == who.user_id {
            return Err(ApiError::validation("to_email", "the ticket is already yours"));
        }
        check_transferable(&row)?;
        let offering = self.catalog.find(&row.offering_id)?;
        if self.transfers_closed(&offering.config) {
            return Err(ApiError::new(ErrorCode::TicketTransferClosed));
        }
        if row.transfers as u32 >= self.transfers_max {
            return Err(ApiError::new(ErrorCode::TicketTransferLimit));
        }
        let tx = client.transaction().await?;
        let max = i32::try_from(self.transfers_max).unwrap_or(i32::MAX);
        let Some(moved) =
            store::transfer(&tx, &reservation, seat, who.user_id, recipient, max).await?
        else {
            // Changed since we read it (used at a gate, or given away from another
            // device): say how it is now.
            drop(tx);
            let now = store::get(&client, &reservation, seat).await?;
            let now = now.filter(|r| r.holder_user_id == who.user_id).ok_or_else(not_found)?;
            check_transferable(&now)?;
            return Err(ApiError::new(ErrorCode::TicketTransferLimit));
        };
        let before = serde_json::json!({ "holder": who.user_id, "generation": row.generation });
        let after = serde_json::json!({ "holder": recipient, "generation": moved.generation });
        let subject = format!("ticket:{}", ticket_id(&reservation, seat));
        let actor = crate::audit::user(who.user_id);
        crate::audit::append(&tx, &actor, "ticket.transfer", &subject, Some(&before), Some(&after))
            .await?;
        tx.commit().await?;
        metrics::counter!("allot_ticket_transfers_total").increment(1);
        Ok(Transferred {
            ticket_id: ticket_id(&reservation, seat),
            transfers_left: self.transfers_max.saturating_sub(moved.transfers as u32),
        })
    }

    /// Past the cut-off before the show (never, for an offering with no show time).
    fn transfers_closed(&self, config: &crate::catalog::OfferingConfig) -> bool {
        config.show_at.is_some_and(|show| self.catalog.now() >= show - self.transfer_cutoff)
    }
}

fn check_transferable(row: &TicketRow) -> ApiResult<()> {
    match row.status {
        TicketStatus::Valid => Ok(()),
        TicketStatus::Used => Err(ApiError::new(ErrorCode::TicketAlreadyUsed)),
        TicketStatus::Cancelled => Err(ApiError::new(ErrorCode::TicketCancelled)),
    }
}

/// `<reservation id>-<seat>`.
pub fn ticket_id(reservation: &str, seat: i32) -> String {
    format!("{reservation}-{seat}")
}

fn parse_ticket_id(text: &str) -> Option<(String, i32)> {
    let (reservation, seat) = text.split_once('-')?;
    crate::holds::parse_id(reservation)?;
    let seat: u16 = seat.parse().ok().filter(|s| *s >= 1)?;
    Some((reservation.to_ascii_lowercase(), i32::from(seat)))
}

/// "Somchai Kaewmanee" -> "S. K.": the first letter of each of the first three words.
pub fn initials(name: &str) -> Option<String> {
    let letters: Vec<String> = name
        .split_whitespace()
        .filter_map(|w| w.chars().find(|c| c.is_alphabetic()))
        .take(3)
        .map(|c| format!("{}.", c.to_uppercase()))
        .collect();
    (!letters.is_empty()).then(|| letters.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initials_take_the_first_letter_of_each_name() {
        assert_eq!(initials("Somchai Kaewmanee").as_deref(), Some("S. K."));
        assert_eq!(initials("  anna  maria de souza ").as_deref(), Some("A. M. D."));
        assert_eq!(initials("สมชาย แก้วมณี").as_deref(), Some("ส. แ."));
        assert_eq!(initials("   "), None);
    }

    #[test]
    fn ticket_ids_name_a_reservation_and_a_seat() {
        let id = "0123456789abcdef0123456789abcd";
        assert_eq!(parse_ticket_id(&format!("{id}-3")), Some((id.to_owned(), 3)));
        assert_eq!(parse_ticket_id(&format!("{id}-0")), None);
        assert_eq!(parse_ticket_id(&format!("{id}-x")), None);
        assert_eq!(parse_ticket_id("abc-1"), None);
    }
}
