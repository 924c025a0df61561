//! Where notifications go, behind one trait: the log (dev default), an HTTP webhook, or
//! email over SMTP. Every sender passes the message's send key on, so a receiver can drop
//! the duplicate that a crash between sending and marking produces.

use std::fmt;
use std::time::Duration;

use futures::future::BoxFuture;
use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use serde::Serialize;

use crate::config::NotifySettings;

/// A rendered notification, ready to go.
#[derive(Clone, Debug, Serialize)]
pub struct Message {
    /// Unique per event: the receiver's deduplication key.
    pub send_key: String,
    pub user_id: i64,
    pub kind: &'static str,
    pub locale: String,
    /// The user's email, when we know one.
    pub email: Option<String>,
    pub subject: String,
    pub body: String,
}

#[derive(Debug)]
pub enum SendError {
    /// Worth trying again later (network, 5xx, 429).
    Retry(String),
    /// Will never work (no address, the receiver refuses the message itself).
    Permanent(String),
}

pub trait Sender: Send + Sync + fmt::Debug {
    fn send<'a>(&'a self, message: &'a Message) -> BoxFuture<'a, Result<(), SendError>>;
}

/// The dev default: the message goes to the log, nothing leaves the machine.
#[derive(Debug)]
pub struct LogSender;

impl Sender for LogSender {
    fn send<'a>(&'a self, m: &'a Message) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async move {
            tracing::info!(send_key = %m.send_key, user_id = m.user_id, kind = m.kind,
                locale = %m.locale, subject = %m.subject, "notification");
            Ok(())
        })
    }
}

/// POSTs the message as JSON; `Idempotency-Key` carries the send key.
#[derive(Debug)]
pub struct WebhookSender {
    client: reqwest::Client,
    url: String,
}

/// A receiver that answers slower than this is treated as down for this attempt.
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(5);

impl WebhookSender {
    pub fn new(url: &str) -> Result<WebhookSender, String> {
        let client = reqwest::Client::builder()
            .timeout(WEBHOOK_TIMEOUT)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(WebhookSender { client, url: url.to_owned() })
    }
}

impl Sender for WebhookSender {
    fn send<'a>(&'a self, m: &'a Message) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async move {
            let res = self
                .client
                .post(&self.url)
                .header("Idempotency-Key", &m.send_key)
                .json(m)
                .send()
                .await
                .map_err(|e| SendError::Retry(e.to_string()))?;
            let status = res.status();
            if status.is_success() {
                Ok(())
            } else if status.is_client_error() && status != 408 && status != 429 {
                Err(SendError::Permanent(format!("receiver answered {status}")))
            } else {
                Err(SendError::Retry(format!("receiver answered {status}")))
            }
        })
    }
}

/// Email through an SMTP relay (plain SMTP: the relay is local and does TLS onwards).
/// `Message-ID` is `<send_key@allot>`, the key mail systems deduplicate on.
pub struct SmtpSender {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl fmt::Debug for SmtpSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpSender").field("from", &self.from.to_string()).finish_non_exhaustive()
    }
}

const SMTP_TIMEOUT: Duration = Duration::from_secs(10);

impl SmtpSender {
    pub fn new(host: &str, port: u16, from: &str) -> Result<SmtpSender, String> {
        let from: Mailbox = from.parse().map_err(|e| format!("notify_from: {e}"))?;
        let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(port)
            .timeout(Some(SMTP_TIMEOUT))
            .build();
        Ok(SmtpSender { transport, from })
    }
}

impl Sender for SmtpSender {
    fn send<'a>(&'a self, m: &'a Message) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async move {
            let to = m
                .email
                .as_deref()
                .ok_or_else(|| SendError::Permanent("the user has no email address".into()))?;
            let to: Mailbox = to.parse().map_err(|e| SendError::Permanent(format!("to: {e}")))?;
            let email = lettre::Message::builder()
                .from(self.from.clone())
                .to(to)
                .subject(m.subject.clone())
                .message_id(Some(format!("<{}@allot>", m.send_key)))
                .header(ContentType::TEXT_PLAIN)
                .body(m.body.clone())
                .map_err(|e| SendError::Permanent(e.to_string()))?;
            match self.transport.send(email).await {
                Ok(_) => Ok(()),
                Err(e) if e.is_permanent() => Err(SendError::Permanent(e.to_string())),
                Err(e) => Err(SendError::Retry(e.to_string())),
            }
        })
    }
}

/// The sender `notify_url` names; `None` for `none` (this process does not send).
pub fn from_settings(settings: &NotifySettings) -> Result<Option<Box<dyn Sender>>, String> {
    let url = settings.url.trim();
    if url == "none" {
        return Ok(None);
    }
    if url == "log" {
        return Ok(Some(Box::new(LogSender)));
    }
    if url.starts_with("http://") || url.starts_with("https://") {
        return Ok(Some(Box::new(WebhookSender::new(url)?)));
    }
    if let Some(rest) = url.strip_prefix("smtp://") {
        let (host, port) = match rest.trim_end_matches('/').rsplit_once(':') {
            Some((host, port)) => {
                (host, port.parse().map_err(|_| format!("notify_url: bad port in {url}"))?)
            }
            None => (rest.trim_end_matches('/'), 25),
        };
        return Ok(Some(Box::new(SmtpSender::new(host, port, &settings.from)?)));
    }
    Err(format!("notify_url must be log, none, smtp://host:port or http(s)://...; got {url}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_url_picks_the_sender() {
        let pick = |url: &str| {
            let settings = NotifySettings { url: url.into(), ..NotifySettings::default() };
            from_settings(&settings).map(|s| s.map(|s| format!("{s:?}")))
        };
        assert_eq!(pick("none").unwrap(), None);
        assert!(pick("log").unwrap().unwrap().contains("LogSender"));
        assert!(pick("http://127.0.0.1:9/x").unwrap().unwrap().contains("WebhookSender"));
        assert!(pick("smtp://127.0.0.1:2525").unwrap().unwrap().contains("SmtpSender"));
        assert!(pick("smtp://mail.internal").unwrap().unwrap().contains("SmtpSender"));
        assert!(pick("smtp://host:port").is_err());
        assert!(pick("carrier-pigeon").is_err());
    }
}
