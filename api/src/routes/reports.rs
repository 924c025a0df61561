//! Live reports for officials (role `official`, or `admin`): the figures as JSON, and a
//! dashboard page (server-rendered, no external resources, Thai and English) that updates
//! itself over server-sent events. The page and its event stream open with a short-lived
//! view token in the query string, because a browser link or an `EventSource` cannot send
//! a bearer header.

use std::time::Duration;

use actix_web::http::header::{ACCEPT_LANGUAGE, CACHE_CONTROL, CONTENT_SECURITY_POLICY};
use actix_web::web::Bytes;
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::identity::Role;
use crate::reports::OfferingReport;
use crate::state::AppState;

/// How often the event stream sends fresh figures.
pub const EVENT_INTERVAL: Duration = Duration::from_secs(2);
/// Who may see the reports.
const READERS: [Role; 2] = [Role::Official, Role::Admin];

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(show).service(view_token).service(dashboard).service(events);
}

/// An offering's live figures: supply, held, confirmed, expired, cancelled, deposits,
/// refunds, reservations per minute, queue length, and the last hour minute by minute.
#[utoipa::path(get, path = "/v1/reports/offerings/{id}",
    responses(
        (status = 200, body = OfferingReport),
        (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody, description = "`offering_not_found`"),
    ),
    security(("bearer" = [])))]
#[get("/v1/reports/offerings/{id}")]
pub async fn show(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    who.require(&READERS)?;
    let offering = state.catalog.find(&id)?;
    Ok(HttpResponse::Ok().json(state.reports.build(&offering).await?))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ViewToken {
    pub token: String,
    /// Unix seconds.
    pub expires_at: u64,
    /// The dashboard, ready to open in a browser.
    pub dashboard_url: String,
}

/// A link to the offering's dashboard, valid for 15 minutes.
#[utoipa::path(post, path = "/v1/reports/offerings/{id}/view-token",
    responses(
        (status = 201, body = ViewToken),
        (status = 403, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody, description = "`offering_not_found`"),
    ),
    security(("bearer" = [])))]
#[post("/v1/reports/offerings/{id}/view-token")]
pub async fn view_token(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    who.require(&READERS)?;
    let offering = state.catalog.find(&id)?;
    let (token, expires_at) = state.reports.issue_view_token(offering.id(), who.user_id);
    let dashboard_url = format!("/v1/reports/offerings/{}/dashboard?view={token}", offering.id());
    Ok(HttpResponse::Created().json(ViewToken { token, expires_at, dashboard_url }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ViewQuery {
    /// A token from `POST /v1/reports/offerings/{id}/view-token`.
    pub view: String,
    /// `th` or `en`; by default from `Accept-Language`.
    pub lang: Option<String>,
}

/// The dashboard page for officials.
#[utoipa::path(get, path = "/v1/reports/offerings/{id}/dashboard", params(ViewQuery),
    responses(
        (status = 200, content_type = "text/html"),
        (status = 401, body = crate::error::ErrorBody, description = "`unauthorized`: bad or expired view token"),
    ))]
#[get("/v1/reports/offerings/{id}/dashboard")]
pub async fn dashboard(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
    query: web::Query<ViewQuery>,
) -> ApiResult<HttpResponse> {
    let offering = state.catalog.find(&id)?;
    state.reports.check_view_token(offering.id(), &query.view)?;
    let header = req.headers().get(ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok());
    let lang = match query.lang.as_deref() {
        Some("th") => Lang::Th,
        Some("en") => Lang::En,
        Some(_) => return Err(ApiError::validation("lang", "th or en")),
        None if crate::i18n::negotiate(header) == "th" => Lang::Th,
        None => Lang::En,
    };
    let report = state.reports.build(&offering).await?;
    let events_url =
        format!("/v1/reports/offerings/{}/events?view={}", offering.id(), urlencode(&query.view));
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((CACHE_CONTROL, "no-store"))
        // Everything is inline and same-origin: nothing may load from elsewhere.
        .insert_header((
            CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; \
             connect-src 'self'; img-src 'self' data:",
        ))
        .body(render(lang, &report, &events_url)))
}

/// Fresh figures every two seconds as server-sent events (`event: report`), until the
/// view token expires or the page goes away.
#[utoipa::path(get, path = "/v1/reports/offerings/{id}/events", params(ViewQuery),
    responses(
        (status = 200, content_type = "text/event-stream"),
        (status = 401, body = crate::error::ErrorBody),
    ))]
#[get("/v1/reports/offerings/{id}/events")]
pub async fn events(
    state: web::Data<AppState>,
    id: web::Path<String>,
    query: web::Query<ViewQuery>,
) -> ApiResult<HttpResponse> {
    let offering = state.catalog.find(&id)?;
    let (_, expires) = state.reports.check_view_token(offering.id(), &query.view)?;
    let reports = state.reports.clone();
    let stream = futures::stream::unfold(
        (reports, offering, true),
        move |(reports, offering, first)| async move {
            if !first {
                tokio::time::sleep(EVENT_INTERVAL).await;
            }
            if crate::identity::tokens::now_seconds() >= expires {
                return None;
            }
            let chunk = match reports.build(&offering).await {
                Ok(report) => {
                    let json = serde_json::to_string(&report).expect("report serializes");
                    format!("event: report\ndata: {json}\n\n")
                }
                // A failed read is a comment line: the page keeps its last figures.
                Err(e) => format!(": unavailable ({})\n\n", e.code.as_str()),
            };
            Some((Ok::<_, actix_web::Error>(Bytes::from(chunk)), (reports, offering, false)))
        },
    );
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((CACHE_CONTROL, "no-store"))
        .streaming(stream))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lang {
    Th,
    En,
}

/// (key, English, Thai) of each figure, in page order.
const FIGURES: [(&str, &str, &str); 10] = [
    ("supply", "Supply", "จำนวนทั้งหมด"),
    ("remaining", "Remaining", "คงเหลือ"),
    ("held", "Held (awaiting payment)", "จองไว้ (รอชำระ)"),
    ("confirmed", "Confirmed", "ยืนยันแล้ว"),
    ("expired", "Expired", "หมดเวลา"),
    ("cancelled", "Cancelled", "ยกเลิก"),
    ("deposits_collected_satang", "Deposits collected", "เงินมัดจำที่ได้รับ"),
    ("refunds_payable_satang", "Refunds payable", "เงินที่ต้องคืน"),
    ("reservations_per_minute", "Reservations per minute", "การจองต่อนาที"),
    ("queue_length", "Waiting in queue", "จำนวนผู้รอในคิว"),
];

fn text(lang: Lang, en: &'static str, th: &'static str) -> &'static str {
    match lang {
        Lang::En => en,
        Lang::Th => th,
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `1234567` as `1,234,567`.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn figure(report: &OfferingReport, key: &str) -> String {
    let value = match key {
        "supply" => Some(report.supply),
        "remaining" => Some(report.remaining),
        "held" => Some(report.held),
        "confirmed" => Some(report.confirmed),
        "expired" => Some(report.expired),
        "cancelled" => Some(report.cancelled),
        "deposits_collected_satang" => Some(report.deposits_collected_satang),
        "refunds_payable_satang" => Some(report.refunds_payable_satang),
        "reservations_per_minute" => Some(report.reservations_per_minute),
        "queue_length" => report.queue_length,
        _ => None,
    };
    match value {
        None => "–".into(),
        Some(satang) if key.ends_with("_satang") => {
            format!("฿{}.{:02}", grouped(satang / 100), satang % 100)
        }
        Some(n) => grouped(n),
    }
}

/// The page, with every figure already in it: it reads right before any script runs.
fn render(lang: Lang, report: &OfferingReport, events_url: &str) -> String {
    let code = match lang {
        Lang::En => "en",
        Lang::Th => "th",
    };
    let name = report
        .name
        .get(code)
        .or_else(|| report.name.get("en"))
        .or_else(|| report.name.get("th"))
        .cloned()
        .unwrap_or_else(|| report.offering_id.clone());
    let title = format!("{} — {}", text(lang, "Live report", "รายงานสด"), name);
    let cards: String = FIGURES
        .iter()
        .map(|(key, en, th)| {
            let class = if key.ends_with("_satang") { "card money" } else { "card" };
            format!(
                "    <div class=\"{class}\"><div class=\"label\">{}</div>\
                 <div class=\"value\" data-k=\"{key}\">{}</div></div>\n",
                text(lang, en, th),
                figure(report, key)
            )
        })
        .collect();
    // Inside a <script>, `<` must not start a tag: JSON allows it escaped.
    let json = serde_json::to_string(report).expect("report serializes").replace('<', "\\u003c");
    let updated = report.generated_at.format(&time::format_description::well_known::Rfc3339);
    include_str!("dashboard.html")
        .replace("{{lang}}", code)
        .replace("{{title}}", &escape(&title))
        .replace("{{updated_label}}", text(lang, "Updated", "อัปเดตล่าสุด"))
        .replace("{{updated}}", &updated.unwrap_or_default())
        .replace("{{cards}}", &cards)
        .replace(
            "{{chart_title}}",
            text(lang, "Reservations and deposits, last 60 minutes", "การจองและเงินมัดจำ 60 นาทีล่าสุด"),
        )
        .replace("{{legend_reservations}}", text(lang, "Reservations per minute", "การจองต่อนาที"))
        .replace("{{legend_funds}}", text(lang, "Deposits collected (THB)", "เงินมัดจำสะสม (บาท)"))
        .replace("{{number_locale}}", text(lang, "en-US", "th-TH"))
        .replace("{{events_url}}", events_url)
        .replace("{{report_json}}", &json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_grouped_and_markup_is_escaped() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(1_234_567), "1,234,567");
        assert_eq!(grouped(100), "100");
        assert_eq!(
            escape("<b>\"x\" & 'y'</b>"),
            "&lt;b&gt;&quot;x&quot; &amp; &#39;y&#39;&lt;/b&gt;"
        );
        assert_eq!(urlencode("1.2.ab+/"), "1.2.ab%2B%2F");
    }
}
