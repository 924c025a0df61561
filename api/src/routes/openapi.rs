//! The OpenAPI document served at `/openapi.json`, listing every endpoint.

use serde_json::{json, Value};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::identity;
use super::{admin, health, offerings, payments, reservations};
use super::{alerts, exports, partners, reports, tickets, verification};
use super::{allocation, challenge, queue, waitlist};

#[derive(Debug, OpenApi)]
#[openapi(
    info(title = "allot", description = "Fair, oversell-proof sales of bonds and tickets.\n\n\
Text never contains U+0000: a JSON body with one is refused (400 `validation_error`). \
A request that fits its schema but breaks a rule no schema states (between fields, or of \
the resource it names: an offering's minimum and lot, a check digit) is 422."),
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

/// The document, with the answers every operation of a kind can give (see
/// [`common_responses`]). Built once: it never changes while the process runs.
pub fn document() -> utoipa::openapi::OpenApi {
    static DOCUMENT: std::sync::LazyLock<utoipa::openapi::OpenApi> =
        std::sync::LazyLock::new(|| {
            let mut doc = serde_json::to_value(ApiDoc::openapi()).expect("serializes");
            common_responses(&mut doc);
            flattened_fields(&mut doc);
            serde_json::from_value(doc).expect("still an OpenAPI document")
        });
    DOCUMENT.clone()
}

/// Answers that come from the edge rather than from a handler, added to every operation
/// they can happen on (unless it documents them itself): a request without a valid token
/// (401), a body that is not JSON, too large or not `application/json` (400, 413, 415),
/// a path or query parameter that does not parse (400), and an id that names nothing
/// (404). Clients generate code from this document; an answer it does not list is one
/// they cannot handle.
fn common_responses(doc: &mut Value) {
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else { return };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else { continue };
        for (method, op) in item.iter_mut() {
            if !HTTP_METHODS.contains(&method.as_str()) {
                continue;
            }
            let secured = op["security"].as_array().is_some_and(|requirements| {
                requirements.iter().all(|r| r.as_object().is_some_and(|r| !r.is_empty()))
            });
            let has_body = op.get("requestBody").is_some();
            let params_in = |place: &str| {
                op["parameters"]
                    .as_array()
                    .is_some_and(|params| params.iter().any(|p| p["in"] == place))
            };
            let (in_path, in_query) = (params_in("path"), params_in("query"));
            let mut add = |status: &str, description: &str| {
                let responses = op["responses"].as_object_mut().expect("every operation answers");
                responses.entry(status).or_insert_with(|| error_response(description));
            };
            if secured {
                add("401", "`unauthorized`: no bearer token, or one expired or revoked");
            }
            if secured && STAFF_PREFIXES.iter().any(|prefix| path.starts_with(prefix)) {
                add("403", "`forbidden`: not this role's; `mfa_enrollment_required`: staff without a second factor");
            }
            if has_body {
                add(
                    "400",
                    "`malformed_json`, `validation_error`: the body does not fit its schema",
                );
                add("413", "`payload_too_large`");
                add("415", "`unsupported_media_type`: the body must be `application/json`");
            }
            if in_path || in_query {
                add("400", "`validation_error`: a parameter does not fit its schema");
            }
            if in_path {
                add("404", "nothing has that id (`not_found` or the resource's own code)");
            }
        }
    }
}

/// A view that flattens a request type (`#[serde(flatten)]`: an offering's view is its
/// configuration plus live figures) is described as `allOf` that type and the extra
/// fields. The request type refuses unknown fields (`additionalProperties: false`), which
/// inside `allOf` would refuse the view's own extra fields too; the view refers to a copy
/// without that refusal instead (`<Type>Fields`).
fn flattened_fields(doc: &mut Value) {
    let Some(schemas) = doc.pointer_mut("/components/schemas").and_then(Value::as_object_mut)
    else {
        return;
    };
    let mut copies = Vec::new();
    let names: Vec<String> = schemas.keys().cloned().collect();
    for name in names {
        let Some(parts) = schemas[&name].get("allOf").and_then(Value::as_array).cloned() else {
            continue;
        };
        let mut parts = parts;
        for part in &mut parts {
            let Some(target) =
                part["$ref"].as_str().and_then(|r| r.strip_prefix("#/components/schemas/"))
            else {
                continue;
            };
            let Some(closed) = schemas.get(target).filter(|s| s["additionalProperties"] == false)
            else {
                continue;
            };
            let mut open = closed.clone();
            open.as_object_mut().expect("a schema").remove("additionalProperties");
            let copy = format!("{target}Fields");
            *part = json!({"$ref": format!("#/components/schemas/{copy}")});
            copies.push((copy, open));
        }
        schemas[&name]["allOf"] = Value::Array(parts);
    }
    schemas.extend(copies);
}

/// Paths whose operations need a staff role.
const STAFF_PREFIXES: [&str; 4] = ["/v1/admin/", "/v1/finance/", "/v1/reports/", "/v1/exports/"];

const HTTP_METHODS: [&str; 8] =
    ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_national_id_shape_is_the_one_the_parser_takes() {
        let doc = serde_json::to_value(document()).unwrap();
        let field = &doc["components"]["schemas"]["RegisterRequest"]["properties"]["national_id"];
        assert_eq!(field["pattern"], crate::identity::national_id::PATTERN);
    }

    #[test]
    fn every_operation_with_a_body_or_a_path_lists_what_the_edge_answers() {
        let doc = serde_json::to_value(document()).unwrap();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let responses = op["responses"].as_object().unwrap();
                if op.get("requestBody").is_some() {
                    for status in ["400", "413", "415"] {
                        assert!(responses.contains_key(status), "{method} {path}: no {status}");
                    }
                }
                if path.contains('{') {
                    assert!(responses.contains_key("404"), "{method} {path}: no 404");
                }
            }
        }
        // The view of an offering keeps its own fields next to the configuration's.
        let view = &doc["components"]["schemas"]["OfferingView"]["allOf"][0]["$ref"];
        assert_eq!(view, "#/components/schemas/OfferingConfigFields");
    }
}
