//! Signed ledger exports for regulators, streamed over HTTP in the format of
//! `allot_export::format` (the one-file bundle: each JSON Lines file in turn, then the
//! signed manifest), so `reconcile export verify FILE` checks a download exactly like a
//! directory written by the CLI.
//!
//! The [`Exports`] service holds the ledger, the catalog, the cluster id and where the
//! signing key comes from; `routes::exports` checks the caller and the window, records the
//! download in the audit trail, and streams what [`Exports::stream`] yields.

use std::io;
use std::sync::Arc;
use std::time::SystemTime;

use allot_export::export::{self, BundleSink, Emit, ExportRequest};
use allot_export::format::Section;
use allot_export::keys::SigningKey;
use allot_ledger::{ids, Ledger};
use allot_secrets::{ExposeSecret, Secret};
use bytes::Bytes;
use tokio::sync::mpsc;

use crate::catalog::Catalog;
use crate::error::ApiError;
use crate::secrets::Source;

/// Pages in flight between the ledger reader and a slow client: a full channel pauses the
/// reader, so a download never holds more than this many pages (each at most
/// [`allot_ledger::PAGE_EVENTS_MAX`] records) in memory.
pub const PAGES_BUFFERED_MAX: usize = 4;

/// Exports running at once in this process: each reads the whole ledger, so a few
/// regulators' downloads must not crowd out the reservation path's TigerBeetle client.
pub const EXPORTS_CONCURRENT_MAX: usize = 2;

static RUNNING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(EXPORTS_CONCURRENT_MAX);

/// A place for one export, or `None` when [`EXPORTS_CONCURRENT_MAX`] are running.
pub fn slot() -> Option<tokio::sync::SemaphorePermit<'static>> {
    RUNNING.try_acquire().ok()
}

/// The exports service: exactly the handles an export works with. Built once at start;
/// cheap to clone (Arcs).
#[derive(Clone, Debug)]
pub struct Exports {
    /// Read page by page; an export never writes to it.
    ledger: Arc<Ledger>,
    /// The offerings served, whose ledgers an export covers.
    catalog: Arc<Catalog>,
    /// The TigerBeetle cluster id, written into every manifest.
    cluster: u128,
    /// Where the signing key comes from: configuration, else (dev mode) the dev store.
    keys: Arc<SigningKeySource>,
}

/// The configured signing key and the store to fall back on; the key is resolved at each
/// export, so a bad key fails that export (a 500) rather than the whole server's start.
#[derive(Debug)]
struct SigningKeySource {
    source: Source,
    configured: Secret,
}

impl Exports {
    pub fn new(
        ledger: Arc<Ledger>,
        catalog: Arc<Catalog>,
        cluster: u128,
        source: Source,
        configured: Secret,
    ) -> Exports {
        let keys = Arc::new(SigningKeySource { source, configured });
        Exports { ledger, catalog, cluster, keys }
    }

    /// The signing key: configured, or in dev mode the one generated into the data
    /// directory.
    pub fn signing_key(&self) -> Result<SigningKey, ApiError> {
        match self.keys.source.get(&self.keys.configured, |d| &d.export_signing_key) {
            Some(hex) => {
                allot_export::keys::from_hex(hex.expose_secret()).map_err(ApiError::internal)
            }
            None => Err(ApiError::unavailable(
                "no export signing key configured (ALLOT_EXPORT_SIGNING_KEY)",
            )),
        }
    }

    /// Every ledger of the offerings this instance serves: money first, then each
    /// offering's inventory and quota ledgers.
    pub fn ledgers(&self) -> Vec<u32> {
        let mut ledgers = vec![ids::LEDGER_THB];
        for offering in self.catalog.all() {
            ledgers.push(ids::ledger_inventory(offering.spec.number));
            ledgers.push(ids::ledger_quota(offering.spec.number));
        }
        ledgers
    }

    /// Starts an export on a task of its own and returns the stream of its bytes. A
    /// failure midway ends the stream with an error, so the download lacks its manifest
    /// and fails verification rather than passing as complete.
    pub fn stream(
        &self,
        from: Option<SystemTime>,
        to: SystemTime,
        key: SigningKey,
        slot: tokio::sync::SemaphorePermit<'static>,
    ) -> impl futures::Stream<Item = Result<Bytes, io::Error>> {
        let (tx, rx) = mpsc::channel(PAGES_BUFFERED_MAX);
        let request = ExportRequest { cluster: self.cluster, ledgers: self.ledgers(), from, to };
        let ledger = self.ledger.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let errors = tx.clone();
            let mut sink = BundleSink::new(Channel(tx));
            let mut progress = |_: Section, _: u64| {};
            let result = export::export(&ledger, &request, &mut sink, &key, &mut progress).await;
            if let Err(e) = result {
                tracing::warn!(error = %e, "ledger export stopped");
                let _ = errors.send(Err(io::Error::other(e.to_string()))).await;
            }
        });
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) })
    }
}

struct Channel(mpsc::Sender<Result<Bytes, io::Error>>);

impl Emit for Channel {
    async fn emit(&mut self, bytes: Vec<u8>) -> io::Result<()> {
        self.0
            .send(Ok(Bytes::from(bytes)))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client went away"))
    }
}
