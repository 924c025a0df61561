//! A real headless Chromium (Debian's `chromium`, or `$CHROMIUM`) driven over the DevTools
//! protocol: open a page, evaluate JavaScript in it, wait until the DOM shows something,
//! take a screenshot. The protocol is JSON over one WebSocket; the few calls the tests need
//! are written out here rather than pulling in a browser-automation framework.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long Chromium may take to start and answer a call.
const STARTUP_MAX: Duration = Duration::from_secs(60);
const CALL_MAX: Duration = Duration::from_secs(30);

/// The browser binary: `$CHROMIUM` if set, else Debian's.
pub fn chromium() -> PathBuf {
    let candidates = [std::env::var("CHROMIUM").unwrap_or_default(), "/usr/bin/chromium".into()];
    let found = candidates.iter().find(|c| !c.is_empty() && Path::new(c).exists());
    PathBuf::from(found.expect(
        "no Chromium: install Debian's `chromium` (./ops/test does) or set CHROMIUM to its path",
    ))
}

/// One headless Chromium showing one page; killed (and its profile removed) on drop.
#[derive(Debug)]
pub struct Page {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    _browser: tokio::process::Child,
    _profile: tempfile::TempDir,
}

impl Page {
    /// Starts Chromium on `url` with a new, empty profile, and attaches to that page.
    pub async fn open(url: &str) -> Page {
        let profile = tempfile::tempdir().unwrap();
        let mut browser = tokio::process::Command::new(chromium())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                "--window-size=1280,900",
                // Port 0: Chromium picks a free one and prints it on standard error.
                "--remote-debugging-port=0",
                "--remote-debugging-address=127.0.0.1",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("chromium starts");
        let stderr = browser.stderr.take().unwrap();
        let port = tokio::time::timeout(STARTUP_MAX, devtools_port(stderr))
            .await
            .expect("chromium announced its DevTools port within 60 s");
        let socket_url = page_socket(port).await;
        let (socket, _) =
            tokio_tungstenite::connect_async(&socket_url).await.expect("DevTools WebSocket");
        Page { socket, next_id: 0, _browser: browser, _profile: profile }
    }

    /// Sends one DevTools command and returns its `result`, skipping events meanwhile.
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let request = json!({"id": id, "method": method, "params": params}).to_string();
        self.socket.send(Message::text(request)).await.expect("DevTools send");
        let answer = tokio::time::timeout(CALL_MAX, async {
            loop {
                let message = self.socket.next().await.expect("DevTools open").expect("DevTools");
                let Ok(text) = message.to_text() else { continue };
                let Ok(reply) = serde_json::from_str::<Value>(text) else { continue };
                if reply["id"] == id {
                    return reply;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{method} unanswered within {CALL_MAX:?}"));
        assert!(answer["error"].is_null(), "{method}: {answer}");
        answer["result"].clone()
    }

    /// The value of a JavaScript expression in the page (JSON-serialisable values only).
    pub async fn eval(&mut self, expression: &str) -> Value {
        let params = json!({"expression": expression, "returnByValue": true});
        let result = self.call("Runtime.evaluate", params).await;
        assert!(result["exceptionDetails"].is_null(), "{expression}: {result}");
        result["result"]["value"].clone()
    }

    /// Evaluates `expression` until `done` accepts its value; returns that value, or panics
    /// after `limit` with the last value seen.
    pub async fn wait_for(
        &mut self,
        expression: &str,
        limit: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let start = Instant::now();
        loop {
            let value = self.eval(expression).await;
            if done(&value) {
                return value;
            }
            assert!(start.elapsed() < limit, "not within {limit:?}: {expression} = {value}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A PNG of the page as it is now.
    pub async fn screenshot(&mut self, file: &Path) {
        let shot = self.call("Page.captureScreenshot", json!({"format": "png"})).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("screenshot data"))
            .expect("base64 PNG");
        std::fs::write(file, png).unwrap();
    }
}

/// Reads Chromium's standard error until "DevTools listening on ws://127.0.0.1:PORT/...".
async fn devtools_port(stderr: tokio::process::ChildStderr) -> u16 {
    let mut lines = BufReader::new(stderr).lines();
    let mut seen = Vec::new();
    while let Some(line) = lines.next_line().await.expect("chromium's standard error") {
        if let Some(rest) = line.split("DevTools listening on ws://").nth(1) {
            let port = rest.split('/').next().and_then(|a| a.rsplit(':').next());
            // Keep draining, so Chromium never blocks on a full pipe.
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            return port.and_then(|p| p.parse().ok()).expect("a port in the DevTools line");
        }
        seen.push(line);
    }
    panic!("chromium exited without a DevTools port: {}", seen.join("\n"));
}

/// The WebSocket of the browser's one page, from its target list.
async fn page_socket(port: u16) -> String {
    let list = format!("http://127.0.0.1:{port}/json/list");
    let start = Instant::now();
    loop {
        let targets: Vec<Value> =
            reqwest::get(&list).await.expect("DevTools target list").json().await.unwrap();
        let page = targets.iter().find(|t| t["type"] == "page");
        if let Some(url) = page.and_then(|p| p["webSocketDebuggerUrl"].as_str()) {
            return url.to_owned();
        }
        assert!(start.elapsed() < STARTUP_MAX, "no page target: {targets:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
