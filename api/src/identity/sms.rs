//! Text messages (the one-time codes that prove a phone number), behind one trait like the
//! notification senders: the log (default; nothing leaves the machine), an HTTP gateway, or
//! none (codes to phones are refused). Chosen by `identity.sms_url`.

use std::fmt;
use std::time::Duration;

use allot_secrets::{ExposeSecret, Secret};
use futures::future::BoxFuture;
use serde::Serialize;

/// A text to one phone number.
#[derive(Clone, Serialize)]
pub struct Sms {
    /// E.164.
    pub to: String,
    pub text: String,
    /// Unique per message: the gateway's deduplication key.
    pub send_key: String,
}

/// Names neither the number nor the text (which carries a code).
impl fmt::Debug for Sms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sms").field("send_key", &self.send_key).finish_non_exhaustive()
    }
}

pub trait SmsSender: Send + Sync + fmt::Debug {
    fn send<'a>(&'a self, sms: &'a Sms) -> BoxFuture<'a, Result<(), String>>;
}

/// Development: the text goes to the log with the number masked but its last three
/// digits, so a developer can read the code and no log keeps a phone number.
#[derive(Debug)]
pub struct LogSms;

impl SmsSender for LogSms {
    fn send<'a>(&'a self, sms: &'a Sms) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let tail = &sms.to[sms.to.len().saturating_sub(3)..];
            tracing::info!(to = %format!("***{tail}"), text = %sms.text, send_key = %sms.send_key, "sms");
            Ok(())
        })
    }
}

/// POSTs `{to, text, send_key}` as JSON to the gateway's URL with `Authorization: Bearer
/// <sms_key>` and `Idempotency-Key: <send_key>`; any 2xx is delivered.
pub struct HttpSms {
    client: reqwest::Client,
    url: String,
    key: Secret,
}

impl fmt::Debug for HttpSms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpSms").field("url", &self.url).finish_non_exhaustive()
    }
}

const SMS_TIMEOUT: Duration = Duration::from_secs(5);

impl SmsSender for HttpSms {
    fn send<'a>(&'a self, sms: &'a Sms) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let res = self
                .client
                .post(&self.url)
                .bearer_auth(self.key.expose_secret())
                .header("Idempotency-Key", &sms.send_key)
                .json(sms)
                .send()
                .await
                .map_err(|e| format!("sms gateway: {}", e.without_url()))?;
            match res.status() {
                s if s.is_success() => Ok(()),
                s => Err(format!("sms gateway answered {s}")),
            }
        })
    }
}

/// The sender `sms_url` names: `log`, `none` (`None`), or an `http(s)://` gateway.
pub fn from_settings(url: &str, key: &Secret) -> Result<Option<Box<dyn SmsSender>>, String> {
    match url.trim() {
        "none" => Ok(None),
        "log" => Ok(Some(Box::new(LogSms))),
        url if url.starts_with("http://") || url.starts_with("https://") => {
            let client = reqwest::Client::builder()
                .timeout(SMS_TIMEOUT)
                .build()
                .map_err(|e| e.to_string())?;
            Ok(Some(Box::new(HttpSms { client, url: url.to_owned(), key: key.clone() })))
        }
        other => Err(format!("sms_url must be log, none or http(s)://...; got {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sms_url_picks_the_sender() {
        let pick =
            |url: &str| from_settings(url, &Secret::default()).map(|s| s.map(|s| format!("{s:?}")));
        assert_eq!(pick("none").unwrap(), None);
        assert!(pick("log").unwrap().unwrap().contains("LogSms"));
        assert!(pick("https://sms.example/send").unwrap().unwrap().contains("HttpSms"));
        assert!(pick("smtp://x").is_err());
    }

    #[test]
    fn debug_names_neither_number_nor_text() {
        let sms =
            Sms { to: "+66812345678".into(), text: "code 123456".into(), send_key: "k".into() };
        let printed = format!("{sms:?}");
        assert!(!printed.contains("812345678") && !printed.contains("123456"), "{printed}");
    }
}
