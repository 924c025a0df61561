//! Messages in the client's language: th, en, ja, ko, zh (Fluent files in `api/locales/`).
//! The language comes from `Accept-Language`; anything else falls back to English. Error
//! bodies are translated on their way out by `routes::middleware::localize_errors`.

use std::borrow::Cow;
use std::collections::HashMap;

use fluent_templates::fluent_bundle::FluentValue;
use fluent_templates::{static_loader, LanguageIdentifier, Loader};

use crate::error::ApiError;

static_loader! {
    static LOCALES = {
        locales: "./locales",
        fallback_language: "en",
        customise: |bundle| bundle.set_use_isolating(false),
    };
}

pub const FALLBACK: &str = "en";
/// The languages we answer in, in no particular order.
pub const SUPPORTED: [&str; 5] = ["th", "en", "ja", "ko", "zh"];
/// `Accept-Language` headers longer than this are not worth parsing.
const ACCEPT_LANGUAGE_BYTES_MAX: usize = 512;

/// The best supported language for an `Accept-Language` header value.
pub fn negotiate(header: Option<&str>) -> &'static str {
    let Some(header) = header.filter(|h| h.len() <= ACCEPT_LANGUAGE_BYTES_MAX) else {
        return FALLBACK;
    };
    let mut best: Option<(&'static str, f32)> = None;
    for part in header.split(',') {
        let mut pieces = part.trim().split(';');
        let tag = pieces.next().unwrap_or("").trim();
        let quality = pieces
            .find_map(|p| p.trim().strip_prefix("q="))
            .and_then(|q| q.parse::<f32>().ok())
            .unwrap_or(1.0);
        let primary = tag.split('-').next().unwrap_or("").to_ascii_lowercase();
        if let Some(lang) = SUPPORTED.iter().find(|l| **l == primary) {
            if quality > 0.0 && best.is_none_or(|(_, q)| quality > q) {
                best = Some((lang, quality));
            }
        }
    }
    best.map_or(FALLBACK, |(lang, _)| lang)
}

/// A message by id, with placeables, in `lang`.
pub fn text(lang: &str, id: &str, args: &[(&'static str, String)]) -> String {
    let lang: LanguageIdentifier = lang.parse().unwrap_or_else(|_| FALLBACK.parse().unwrap());
    let args: HashMap<Cow<'static, str>, FluentValue> =
        args.iter().map(|(k, v)| (Cow::Borrowed(*k), FluentValue::from(v.clone()))).collect();
    LOCALES.lookup_with_args(&lang, id, &args)
}

/// The human message for an error in `lang`.
pub fn message(lang: &str, error: &ApiError) -> String {
    // Fluent refuses to format a message with a missing placeable; a client must still get
    // a readable sentence, so absent values read as a dash rather than an error.
    let mut args = error.args.clone();
    for name in PLACEABLES {
        if !args.iter().any(|(k, _)| *k == name) {
            args.push((name, "-".into()));
        }
    }
    text(lang, error.code.as_str(), &args)
}

/// The messages of a one-time identity code: its text (an email's body), an email's subject.
pub const IDENTITY_CODE_MESSAGES: [&str; 2] = ["identity-code-body", "identity-code-subject"];

/// Every placeable name used by an error message in `api/locales/*/main.ftl`.
const PLACEABLES: [&str; 6] = ["reason", "min", "max", "lot", "retry_after", "owed"];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    #[test]
    fn negotiates_by_quality_and_primary_tag() {
        assert_eq!(negotiate(Some("th-TH,th;q=0.9,en;q=0.8")), "th");
        assert_eq!(negotiate(Some("fr, ja;q=0.5, ko;q=0.7")), "ko");
        assert_eq!(negotiate(Some("zh-Hant-TW")), "zh");
        assert_eq!(negotiate(Some("de")), "en");
        assert_eq!(negotiate(None), "en");
    }

    /// The exact sentence per language for a few codes, with and without placeables: a
    /// language answered in another (a Japanese request read in Thai) or two messages
    /// swapped within a file fail here, where "not English" or "not ASCII" would pass.
    #[test]
    fn each_language_answers_with_its_own_exact_message() {
        type Case = (&'static str, ErrorCode, Option<(&'static str, &'static str)>, &'static str);
        let cases: [Case; 12] = [
            ("en", ErrorCode::OfferingNotFound, None, "This offering does not exist."),
            ("th", ErrorCode::OfferingNotFound, None, "ไม่พบรายการจำหน่ายนี้"),
            ("ja", ErrorCode::OfferingNotFound, None, "この販売は存在しません。"),
            ("ko", ErrorCode::OfferingNotFound, None, "이 판매는 존재하지 않습니다."),
            ("zh", ErrorCode::OfferingNotFound, None, "该发售不存在。"),
            ("en", ErrorCode::SoldOut, None, "Sold out: nothing is left to reserve."),
            ("th", ErrorCode::SoldOut, None, "ขายหมดแล้ว ไม่มีเหลือให้จอง"),
            ("ja", ErrorCode::SoldOut, None, "完売しました。予約できる在庫は残っていません。"),
            (
                "en",
                ErrorCode::BelowMinimum,
                Some(("min", "5000")),
                "The quantity is below the minimum of 5000.",
            ),
            ("th", ErrorCode::BelowMinimum, Some(("min", "5000")), "จำนวนต่ำกว่าขั้นต่ำ 5000"),
            (
                "ko",
                ErrorCode::RateLimited,
                Some(("retry_after", "2")),
                "요청이 너무 많습니다. 2초 후에 다시 시도해 주세요.",
            ),
            (
                "zh",
                ErrorCode::RateLimited,
                Some(("retry_after", "2")),
                "请求过于频繁：请在 2 秒后重试。",
            ),
        ];
        for (lang, code, arg, expected) in cases {
            let mut error = ApiError::new(code);
            if let Some((name, value)) = arg {
                error = error.with_arg(name, value);
            }
            assert_eq!(message(lang, &error), expected, "{lang} {code:?}");
        }
    }

    #[test]
    fn every_error_code_has_a_message_in_every_language() {
        for lang in SUPPORTED {
            for code in ErrorCode::ALL {
                let msg = message(lang, &ApiError::new(*code));
                assert!(
                    !msg.is_empty() && !msg.contains("Unknown localization"),
                    "{lang} {code:?}"
                );
                if lang != FALLBACK {
                    let en = message(FALLBACK, &ApiError::new(*code));
                    assert_ne!(msg, en, "{lang} {code:?} is not translated");
                }
            }
        }
    }
}
