//! JSON request bodies as the OpenAPI document describes them. [`Json`] replaces actix's
//! extractor (same size limit, content type and errors, from `web::JsonConfig`) and reads
//! numbers as JSON Schema does: `12.0` is the integer 12 (an `integer` schema accepts it,
//! and so do generated clients whose numbers are all doubles), while `12.5` still fails.
//! No text may contain U+0000 (`validation_error` naming the field): Postgres stores no
//! such character, and no name, reference or password needs one.

use actix_web::{web, FromRequest, HttpRequest};
use futures::future::LocalBoxFuture;
use serde::de::DeserializeOwned;
use serde_json::{Number, Value};

use crate::error::{ApiError, ErrorCode};

/// A JSON body of type `T`.
#[derive(Debug)]
pub struct Json<T>(pub T);

impl<T> Json<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> std::ops::Deref for Json<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for Json<T> {
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut actix_web::dev::Payload) -> Self::Future {
        let value = web::Json::<Value>::from_request(req, payload);
        Box::pin(async move {
            let value = value.await?.into_inner();
            Ok(Json(from_value(value)?))
        })
    }
}

/// `T` from JSON text (an optional body the handler reads itself).
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let value: Value = serde_json::from_slice(bytes).map_err(malformed)?;
    from_value(value)
}

fn from_value<T: DeserializeOwned>(mut value: Value) -> Result<T, ApiError> {
    if let Some(field) = nul_in(&value, "body") {
        return Err(ApiError::validation(field, "text may not contain U+0000"));
    }
    integral_numbers(&mut value);
    serde_json::from_value(value).map_err(malformed)
}

/// Whole numbers written with a fraction (`12.0`, `1e3`) become integers, where they fit.
fn integral_numbers(value: &mut Value) {
    match value {
        Value::Number(n) if n.is_f64() => {
            let f = n.as_f64().expect("a float");
            if f.fract() == 0.0 && f.abs() < 2f64.powi(63) {
                // Exact: a float this small and whole is an integer of i64.
                *n = Number::from(f as i64);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral_numbers),
        Value::Object(fields) => fields.values_mut().for_each(integral_numbers),
        _ => {}
    }
}

/// The field (or `at`) of the first text holding U+0000, in a key or a value.
fn nul_in(value: &Value, at: &str) -> Option<String> {
    match value {
        Value::String(s) if s.contains('\0') => Some(at.to_owned()),
        Value::Array(items) => items.iter().find_map(|item| nul_in(item, at)),
        Value::Object(fields) => fields.iter().find_map(|(key, value)| match key.contains('\0') {
            true => Some(at.to_owned()),
            false => nul_in(value, key),
        }),
        _ => None,
    }
}

/// `malformed_json`, naming the field when serde does.
fn malformed(e: serde_json::Error) -> ApiError {
    let reason = e.to_string();
    let field = reason.split('`').nth(1).filter(|_| reason.contains("field")).map(str::to_owned);
    ApiError { code: ErrorCode::MalformedJson, field, args: vec![("reason", reason)] }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize, PartialEq)]
    struct Body {
        quantity: u64,
        ratio: Option<f64>,
    }

    #[test]
    fn whole_numbers_with_a_fraction_are_integers_and_others_are_not() {
        let body: Body = from_slice(br#"{"quantity": 12.0, "ratio": 0.5}"#).unwrap();
        assert_eq!(body, Body { quantity: 12, ratio: Some(0.5) });
        let body: Body = from_slice(br#"{"quantity": 1e3}"#).unwrap();
        assert_eq!(body.quantity, 1000);
        let e = from_slice::<Body>(br#"{"quantity": 12.5}"#).unwrap_err();
        assert_eq!(e.code, ErrorCode::MalformedJson);
        let e = from_slice::<Body>(br#"{"quantity": -1.0}"#).unwrap_err();
        assert_eq!(e.code, ErrorCode::MalformedJson);
        let e = from_slice::<Body>(br#"{"quantity": 1e300}"#).unwrap_err();
        assert_eq!(e.code, ErrorCode::MalformedJson);
        let e = from_slice::<Body>(br#"{"quantity": 1, "extra": 2.0}"#);
        assert!(e.is_ok(), "unknown fields are the type's business");
    }

    #[test]
    fn text_with_a_nul_is_refused_naming_its_field() {
        let e = from_slice::<Value>(br#"{"a": {"b": ["x\u0000y"]}}"#).unwrap_err();
        assert_eq!((e.code, e.field.as_deref()), (ErrorCode::ValidationError, Some("b")));
        let e = from_slice::<Value>(br#"{"a\u0000": 1}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("body"));
    }
}
