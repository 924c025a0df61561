//! The OpenAPI document served at `/openapi.json`, listing every endpoint.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::identity;
use super::{admin, health, offerings, payments, reservations};
use super::{alerts, exports, partners, reports, tickets, verification};
use super::{allocation, challenge, queue, waitlist};

#[derive(Debug, OpenApi)]
#[openapi(
    info(title = "allot", description = "Fair, oversell-proof sales of bonds and tickets."),
    paths(
        health::live,
        health::ready,
        health::metrics,
        identity::register,
        identity::sign_in,
        identity::refresh,
        identity::sign_out,
        identity::me,
        identity::mfa_enrol,
        identity::mfa_confirm,
        identity::set_role,
        offerings::list,
        offerings::show,
        reservations::create,
        reservations::show,
        reservations::mine,
        reservations::cancel,
        admin::create,
        admin::open,
        admin::close,
        payments::create,
        payments::show,
        payments::qr_svg,
        payments::webhook,
        payments::settle,
        payments::refunds,
        payments::unmatched,
        payments::payout,
        queue::join,
        queue::status,
        queue::events,
        queue::fairness,
        allocation::subscribe,
        allocation::change,
        allocation::withdraw,
        allocation::show,
        allocation::export,
        allocation::allocate,
        allocation::allocate_round_two,
        allocation::export_round_two,
        challenge::challenge,
        waitlist::join,
        waitlist::mine,
        waitlist::leave,
        exports::ledger,
        reports::show,
        reports::view_token,
        reports::dashboard,
        reports::events,
        verification::send_code,
        verification::verify_code,
        verification::start_kyc,
        verification::callback,
        verification::sandbox,
        partners::create,
        partners::allocate,
        partners::token,
        partners::reserve,
        partners::pay,
        partners::list,
        tickets::mine,
        tickets::transfer,
        tickets::verify,
        tickets::key,
        alerts::list,
        alerts::acknowledge,
        alerts::suspension,
    ),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build(),
            ),
        );
        // A partner's token, from `POST /v1/partner/token` (client credentials).
        components.add_security_scheme(
            "partner",
            SecurityScheme::Http(
                HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build(),
            ),
        );
    }
}

pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
