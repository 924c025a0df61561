//! Writing an export: pages TigerBeetle by timestamp, ledger by ledger, and streams every
//! record into a [`Sink`] (a directory of files for the CLI, one HTTP body for the API).
//!
//! Memory stays flat whatever the size: one page (at most
//! [`allot_ledger::PAGE_EVENTS_MAX`] records) and two line buffers are alive at a time.

use std::collections::BTreeMap;
use std::fs::File;
use std::future::Future;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use allot_ledger::{ExportAccount, ExportTransfer, Ledger, LedgerError};

use crate::format::{
    self, records, ChainedFile, FileKind, LedgerTotals, ManifestBody, Record, Section, Sums, Value,
};

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Its message says "ledger ..." already.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("writing: {0}")]
    Io(#[from] io::Error),
}

/// What to export.
#[derive(Clone, Debug)]
pub struct ExportRequest {
    pub cluster: u128,
    /// Every ledger to read, each one in turn, in this order.
    pub ledgers: Vec<u32>,
    /// Transfers from this TigerBeetle timestamp (inclusive), or from the beginning.
    pub from: Option<SystemTime>,
    /// Transfers and accounts before this timestamp (exclusive).
    pub to: SystemTime,
}

/// Where records go. Every record arrives in both forms; a sink keeps the ones it writes.
pub trait Sink: Send {
    fn begin(&mut self, section: Section) -> io::Result<()>;
    fn record(&mut self, section: Section, csv: &[u8], json: &[u8]) -> io::Result<()>;
    /// A page is done: a streaming sink hands its buffer on here (and waits for room).
    fn page_done(&mut self) -> impl Future<Output = io::Result<()>> + Send;
    /// Summaries of every file written, for the manifest.
    fn files(&self) -> Vec<format::FileEntry>;
    /// Writes the signed manifest and flushes everything.
    fn finish(&mut self, manifest: &[u8]) -> impl Future<Output = io::Result<()>> + Send;
}

/// Progress: (section, records written so far in it).
pub type Progress<'a> = &'a mut (dyn FnMut(Section, u64) + Send);

/// Runs an export and returns its manifest body (already written, signed, to the sink).
pub async fn export<S: Sink>(
    ledger: &Ledger,
    request: &ExportRequest,
    sink: &mut S,
    key: &ed25519_dalek::SigningKey,
    progress: Progress<'_>,
) -> Result<ManifestBody, ExportError> {
    let mut sums: BTreeMap<u32, Sums> =
        request.ledgers.iter().map(|l| (*l, Sums::default())).collect();
    let mut writer = RecordWriter::default();

    sink.begin(Section::Accounts)?;
    let mut written = 0u64;
    for number in &request.ledgers {
        let mut cursor = None;
        while let Some(page) = accounts_page(ledger, *number, &mut cursor, request.to).await? {
            for a in &page {
                let values = records::account(a);
                writer.write(sink, Section::Accounts, &values)?;
                sums.get_mut(number).expect("known ledger").accounts += 1;
            }
            written += page.len() as u64;
            progress(Section::Accounts, written);
            sink.page_done().await?;
        }
    }

    sink.begin(Section::Transfers)?;
    let mut written = 0u64;
    for number in &request.ledgers {
        let mut cursor = request.from;
        while let Some(page) = transfers_page(ledger, *number, &mut cursor, request.to).await? {
            let s = sums.get_mut(number).expect("known ledger");
            for t in &page {
                writer.write(sink, Section::Transfers, &records::transfer(t))?;
                s.transfers += 1;
                s.transfer_amount += t.amount;
            }
            written += page.len() as u64;
            progress(Section::Transfers, written);
            sink.page_done().await?;
        }
    }

    // Balances are read after the transfers, so they are never older than what was
    // exported; they may include transfers after `to`, as the manifest says.
    let balances_as_of = SystemTime::now();
    sink.begin(Section::Balances)?;
    let mut written = 0u64;
    for number in &request.ledgers {
        let mut cursor = None;
        while let Some(page) = accounts_page(ledger, *number, &mut cursor, request.to).await? {
            let s = sums.get_mut(number).expect("known ledger");
            for a in &page {
                writer.write(sink, Section::Balances, &records::balance(a))?;
                s.debits_pending += a.debits_pending;
                s.debits_posted += a.debits_posted;
                s.credits_pending += a.credits_pending;
                s.credits_posted += a.credits_posted;
            }
            written += page.len() as u64;
            progress(Section::Balances, written);
            sink.page_done().await?;
        }
    }

    let body = ManifestBody {
        format: format::FORMAT.into(),
        created_at: rfc3339(SystemTime::now()),
        cluster: request.cluster.to_string(),
        from_ns: request.from.map(nanos),
        to_ns: nanos(request.to),
        balances_as_of_ns: nanos(balances_as_of),
        ledgers: request.ledgers.clone(),
        chain: format::CHAIN_RULE.into(),
        files: sink.files(),
        totals: sums.iter().map(|(l, s)| s.totals(*l)).collect::<Vec<LedgerTotals>>(),
        public_key: hex::encode(key.verifying_key().to_bytes()),
    };
    sink.finish(&format::signed_manifest(&body, key)).await?;
    Ok(body)
}

/// Renders each record once per format into reused buffers.
#[derive(Default)]
struct RecordWriter {
    csv: Vec<u8>,
    json: Vec<u8>,
    fmt: itoa::Buffer,
}

impl RecordWriter {
    fn write<S: Sink>(
        &mut self,
        sink: &mut S,
        section: Section,
        values: &[Value],
    ) -> io::Result<()> {
        let record = Record { section, values };
        format::render_csv(&mut self.csv, &record, &mut self.fmt);
        format::render_json(&mut self.json, &record, &mut self.fmt);
        sink.record(section, &self.csv, &self.json)
    }
}

fn nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

pub fn rfc3339(t: SystemTime) -> String {
    time::OffsetDateTime::from(t)
        .format(&time::format_description::well_known::Rfc3339)
        .expect("formats")
}

/// The next page of a ledger's accounts created before `to`; `None` when done. `cursor` is
/// the smallest timestamp still to read (inclusive), moved past each page.
async fn accounts_page(
    ledger: &Ledger,
    number: u32,
    cursor: &mut Option<SystemTime>,
    to: SystemTime,
) -> Result<Option<Vec<ExportAccount>>, ExportError> {
    let from = cursor.unwrap_or(UNIX_EPOCH);
    let page = ledger.export_accounts(number, from, to).await?;
    Ok(advance(page, cursor, |a| a.timestamp))
}

/// The next page of a ledger's transfers in `[cursor, to)`, as [`accounts_page`].
async fn transfers_page(
    ledger: &Ledger,
    number: u32,
    cursor: &mut Option<SystemTime>,
    to: SystemTime,
) -> Result<Option<Vec<ExportTransfer>>, ExportError> {
    let from = cursor.unwrap_or(UNIX_EPOCH);
    let page = ledger.export_transfers(number, from, to).await?;
    Ok(advance(page, cursor, |t| t.timestamp))
}

/// Moves the cursor just past the page's last event; `None` for an empty page (done).
/// TigerBeetle timestamps are unique per cluster, so nothing is skipped or read twice.
fn advance<T>(
    page: Vec<T>,
    cursor: &mut Option<SystemTime>,
    timestamp: impl Fn(&T) -> SystemTime,
) -> Option<Vec<T>> {
    let last = page.last()?;
    *cursor = Some(timestamp(last) + Duration::from_nanos(1));
    Some(page)
}

/// A directory of files: CSV and JSON Lines of every section, and `manifest.json`.
#[derive(Debug)]
pub struct DirSink {
    dir: PathBuf,
    files: Vec<(ChainedFile, BufWriter<File>)>,
    kinds: Vec<FileKind>,
}

/// Big buffers: the export is one long sequential write per file.
const FILE_BUFFER_BYTES: usize = 1 << 20;

impl DirSink {
    /// Creates `dir` (it must be empty or absent) and writes the `kinds` asked for.
    pub fn create(dir: &Path, kinds: &[FileKind]) -> io::Result<DirSink> {
        std::fs::create_dir_all(dir)?;
        if std::fs::read_dir(dir)?.next().is_some() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} is not empty: an export never overwrites another", dir.display()),
            ));
        }
        Ok(DirSink { dir: dir.to_owned(), files: Vec::new(), kinds: kinds.to_vec() })
    }
}

impl Sink for DirSink {
    fn begin(&mut self, section: Section) -> io::Result<()> {
        for kind in &self.kinds {
            let mut file = ChainedFile::new(section, *kind);
            let mut out = BufWriter::with_capacity(
                FILE_BUFFER_BYTES,
                File::create(self.dir.join(&file.name))?,
            );
            file.header(&mut out)?;
            self.files.push((file, out));
        }
        Ok(())
    }

    fn record(&mut self, section: Section, csv: &[u8], json: &[u8]) -> io::Result<()> {
        for (file, out) in self.files.iter_mut().filter(|(f, _)| f.section == section) {
            match file.kind {
                FileKind::Csv => file.write(out, csv)?,
                FileKind::Jsonl => file.write(out, json)?,
            }
        }
        Ok(())
    }

    async fn page_done(&mut self) -> io::Result<()> {
        Ok(())
    }

    fn files(&self) -> Vec<format::FileEntry> {
        self.files.iter().map(|(f, _)| f.summary()).collect()
    }

    async fn finish(&mut self, manifest: &[u8]) -> io::Result<()> {
        for (_, out) in &mut self.files {
            out.flush()?;
            out.get_ref().sync_all()?;
        }
        let path = self.dir.join(format::MANIFEST_FILE);
        let mut file = File::create(path)?;
        file.write_all(manifest)?;
        file.sync_all()
    }
}

/// The one-stream form, for HTTP: each JSON Lines file in turn, introduced by a line
/// `{"file":"<name>"}`, then the signed manifest as the last line. `reconcile export
/// verify FILE` checks it exactly like a directory.
#[derive(Debug)]
pub struct BundleSink<F> {
    buffer: Vec<u8>,
    current: Option<ChainedFile>,
    done: Vec<format::FileEntry>,
    /// Receives each page's bytes; waiting on it is the backpressure of a slow reader.
    emit: F,
}

/// A page's bytes, about to be handed on.
pub trait Emit: Send {
    fn emit(&mut self, bytes: Vec<u8>) -> impl Future<Output = io::Result<()>> + Send;
}

impl<F: Emit> BundleSink<F> {
    pub fn new(emit: F) -> BundleSink<F> {
        BundleSink { buffer: Vec::with_capacity(4 << 20), current: None, done: Vec::new(), emit }
    }

    async fn hand_on(&mut self) -> io::Result<()> {
        if !self.buffer.is_empty() {
            let bytes = std::mem::replace(&mut self.buffer, Vec::with_capacity(4 << 20));
            self.emit.emit(bytes).await?;
        }
        Ok(())
    }
}

pub const BUNDLE_FILE_PREFIX: &str = "{\"file\":\"";

impl<F: Emit> Sink for BundleSink<F> {
    fn begin(&mut self, section: Section) -> io::Result<()> {
        if let Some(previous) = self.current.take() {
            self.done.push(previous.summary());
        }
        let file = ChainedFile::new(section, FileKind::Jsonl);
        writeln!(self.buffer, "{BUNDLE_FILE_PREFIX}{}\"}}", file.name)?;
        self.current = Some(file);
        Ok(())
    }

    fn record(&mut self, _: Section, _: &[u8], json: &[u8]) -> io::Result<()> {
        let file = self.current.as_mut().expect("begin comes first");
        file.write(&mut self.buffer, json)
    }

    async fn page_done(&mut self) -> io::Result<()> {
        self.hand_on().await
    }

    fn files(&self) -> Vec<format::FileEntry> {
        let mut files = self.done.clone();
        files.extend(self.current.as_ref().map(ChainedFile::summary));
        files
    }

    async fn finish(&mut self, manifest: &[u8]) -> io::Result<()> {
        self.buffer.extend_from_slice(manifest);
        self.hand_on().await
    }
}
