//! The signed ledger export format, shared by `reconcile export` and the API's
//! `GET /v1/exports/ledger`.
//!
//! An export is three sections (accounts, transfers, balances), each written as CSV and/or
//! JSON Lines, plus a manifest. Every record carries the hash of the record before it:
//!
//! ```text
//! hash_0 = SHA-256("allot-ledger-export/1/" || file name)
//! hash_i = SHA-256(hash_(i-1) || record_i)
//! ```
//!
//! where `record_i` is the line as written minus its `prev_hash` (CSV: the line without its
//! last `,<hex>` field; JSON Lines: the object without its last `"prev_hash"` member) and
//! without the newline. A chain alone does not catch a truncated tail, so the manifest
//! carries every file's record count and final hash, totals per ledger, and an Ed25519
//! signature over its body. Anyone can check a file with a few lines of any language.
//!
//! Writing is streaming and allocation-free per record: each record is rendered into a
//! reused buffer, hashed once per file, and appended to a buffered writer.

use std::io::{self, Write};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const FORMAT: &str = "allot-ledger-export/1";
pub const MANIFEST_FILE: &str = "manifest.json";
const HASH_HEX: usize = 64;
const JSON_PREV: &[u8] = b",\"prev_hash\":\"";

/// The three kinds of record, in the order an export writes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Section {
    Accounts,
    Transfers,
    Balances,
}

impl Section {
    pub const ALL: [Section; 3] = [Section::Accounts, Section::Transfers, Section::Balances];

    pub fn name(self) -> &'static str {
        match self {
            Section::Accounts => "accounts",
            Section::Transfers => "transfers",
            Section::Balances => "balances",
        }
    }

    /// Column names, without the trailing `prev_hash` that every CSV line carries.
    pub fn columns(self) -> &'static [&'static str] {
        match self {
            Section::Accounts => &[
                "id",
                "ledger",
                "code",
                "flags",
                "user_data_128",
                "user_data_64",
                "user_data_32",
                "timestamp",
            ],
            Section::Transfers => &[
                "id",
                "debit_account_id",
                "credit_account_id",
                "amount",
                "pending_id",
                "user_data_128",
                "user_data_64",
                "user_data_32",
                "timeout",
                "ledger",
                "code",
                "flags",
                "timestamp",
            ],
            Section::Balances => &[
                "account_id",
                "ledger",
                "code",
                "debits_pending",
                "debits_posted",
                "credits_pending",
                "credits_posted",
            ],
        }
    }

    pub fn csv_header(self) -> String {
        let mut header = self.columns().join(",");
        header.push_str(",prev_hash");
        header
    }

    pub fn file(self, kind: FileKind) -> String {
        format!("{}.{}", self.name(), kind.extension())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FileKind {
    Csv,
    Jsonl,
}

impl FileKind {
    pub fn extension(self) -> &'static str {
        match self {
            FileKind::Csv => "csv",
            FileKind::Jsonl => "jsonl",
        }
    }

    pub fn of(name: &str) -> Option<FileKind> {
        match name.rsplit_once('.')?.1 {
            "csv" => Some(FileKind::Csv),
            "jsonl" => Some(FileKind::Jsonl),
            _ => None,
        }
    }
}

/// A field value of a record. 128- and 64-bit numbers are JSON strings, because JSON
/// readers commonly lose precision above 2^53; ids are 32 lower-case hex digits.
#[derive(Clone, Copy, Debug)]
pub enum Value {
    Id(u128),
    Big(u128),
    Small(u32),
}

/// One record: its section and its values in column order.
#[derive(Clone, Copy, Debug)]
pub struct Record<'a> {
    pub section: Section,
    pub values: &'a [Value],
}

fn put_hex_u128(out: &mut Vec<u8>, v: u128) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 32];
    for (i, b) in buf.iter_mut().enumerate() {
        *b = DIGITS[((v >> (4 * (31 - i))) & 0xf) as usize];
    }
    out.extend_from_slice(&buf);
}

fn put_value(out: &mut Vec<u8>, value: Value, fmt: &mut itoa::Buffer) {
    match value {
        Value::Id(v) => put_hex_u128(out, v),
        Value::Big(v) => out.extend_from_slice(fmt.format(v).as_bytes()),
        Value::Small(v) => out.extend_from_slice(fmt.format(v).as_bytes()),
    }
}

/// Renders a record's canonical CSV bytes (no `prev_hash`, no newline) into `out`.
pub fn render_csv(out: &mut Vec<u8>, record: &Record<'_>, fmt: &mut itoa::Buffer) {
    out.clear();
    for (i, value) in record.values.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        put_value(out, *value, fmt);
    }
}

/// Renders a record's canonical JSON object (no `prev_hash`, no newline) into `out`.
pub fn render_json(out: &mut Vec<u8>, record: &Record<'_>, fmt: &mut itoa::Buffer) {
    out.clear();
    out.push(b'{');
    for (i, (name, value)) in record.section.columns().iter().zip(record.values).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'"');
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\":");
        match value {
            Value::Small(_) => put_value(out, *value, fmt),
            _ => {
                out.push(b'"');
                put_value(out, *value, fmt);
                out.push(b'"');
            }
        }
    }
    out.push(b'}');
}

pub type Hash = [u8; 32];

/// The running hash of one file.
#[derive(Clone, Debug)]
pub struct Chain {
    last: Hash,
    records: u64,
}

impl Chain {
    pub fn new(file: &str) -> Chain {
        let mut h = Sha256::new();
        h.update(FORMAT.as_bytes());
        h.update(b"/");
        h.update(file.as_bytes());
        Chain { last: h.finalize().into(), records: 0 }
    }

    pub fn last(&self) -> &Hash {
        &self.last
    }

    pub fn records(&self) -> u64 {
        self.records
    }

    /// Links `record` and returns the hash it must carry (the previous one).
    pub fn link(&mut self, record: &[u8]) -> Hash {
        let prev = self.last;
        let mut h = Sha256::new();
        h.update(prev);
        h.update(record);
        self.last = h.finalize().into();
        self.records += 1;
        prev
    }
}

/// One output file being written: its chain and byte count. The writer is passed in, so
/// the same code writes a directory of files and one HTTP stream.
#[derive(Debug)]
pub struct ChainedFile {
    pub name: String,
    pub kind: FileKind,
    pub section: Section,
    chain: Chain,
    content: Sha256,
    bytes: u64,
}

impl ChainedFile {
    pub fn new(section: Section, kind: FileKind) -> ChainedFile {
        let name = section.file(kind);
        ChainedFile {
            chain: Chain::new(&name),
            name,
            kind,
            section,
            content: Sha256::new(),
            bytes: 0,
        }
    }

    fn emit(&mut self, out: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
        self.content.update(bytes);
        self.bytes += bytes.len() as u64;
        out.write_all(bytes)
    }

    /// Writes the CSV header line (CSV files only), which the chain does not cover: it is
    /// fixed by the format version and checked verbatim.
    pub fn header(&mut self, out: &mut impl Write) -> io::Result<()> {
        if self.kind == FileKind::Csv {
            let mut line = self.section.csv_header().into_bytes();
            line.push(b'\n');
            self.emit(out, &line)?;
        }
        Ok(())
    }

    /// Writes one record given its canonical bytes in this file's format.
    pub fn write(&mut self, out: &mut impl Write, canonical: &[u8]) -> io::Result<()> {
        let prev = self.chain.link(canonical);
        let mut hex = [0u8; HASH_HEX];
        hex::encode_to_slice(prev, &mut hex).expect("64 bytes");
        match self.kind {
            FileKind::Csv => {
                self.emit(out, canonical)?;
                self.emit(out, b",")?;
                self.emit(out, &hex)?;
                self.emit(out, b"\n")
            }
            FileKind::Jsonl => {
                // The canonical object ends with '}': splice prev_hash in before it.
                self.emit(out, &canonical[..canonical.len() - 1])?;
                self.emit(out, JSON_PREV)?;
                self.emit(out, &hex)?;
                self.emit(out, b"\"}\n")
            }
        }
    }

    pub fn summary(&self) -> FileEntry {
        FileEntry {
            name: self.name.clone(),
            records: self.chain.records(),
            final_hash: hex::encode(self.chain.last()),
            sha256: hex::encode(self.content.clone().finalize()),
            bytes: self.bytes,
        }
    }
}

/// A file as the manifest lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    pub name: String,
    pub records: u64,
    /// Hash of the last record (`hash_n` of the chain).
    pub final_hash: String,
    /// SHA-256 of the whole file, for tools that only compare files.
    pub sha256: String,
    pub bytes: u64,
}

/// Sums per ledger. 128-bit sums are decimal strings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerTotals {
    pub ledger: u32,
    pub accounts: u64,
    pub transfers: u64,
    /// Sum of the `amount` field of every exported transfer (posts of pending transfers
    /// count what they post; voids count zero).
    pub transfer_amount: String,
    pub debits_pending: String,
    pub debits_posted: String,
    pub credits_pending: String,
    pub credits_posted: String,
}

/// Running sums per ledger while writing or verifying.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sums {
    pub accounts: u64,
    pub transfers: u64,
    pub transfer_amount: u128,
    pub debits_pending: u128,
    pub debits_posted: u128,
    pub credits_pending: u128,
    pub credits_posted: u128,
}

impl Sums {
    pub fn totals(&self, ledger: u32) -> LedgerTotals {
        LedgerTotals {
            ledger,
            accounts: self.accounts,
            transfers: self.transfers,
            transfer_amount: self.transfer_amount.to_string(),
            debits_pending: self.debits_pending.to_string(),
            debits_posted: self.debits_posted.to_string(),
            credits_pending: self.credits_pending.to_string(),
            credits_posted: self.credits_posted.to_string(),
        }
    }

    /// Adds a record's contribution, from its values in column order.
    pub fn add(&mut self, section: Section, values: &[u128]) {
        match section {
            Section::Accounts => self.accounts += 1,
            Section::Transfers => {
                self.transfers += 1;
                self.transfer_amount += values[3];
            }
            Section::Balances => {
                self.debits_pending += values[3];
                self.debits_posted += values[4];
                self.credits_pending += values[5];
                self.credits_posted += values[6];
            }
        }
    }

    /// The ledger column of a record, from its values in column order.
    pub fn ledger_of(section: Section, values: &[u128]) -> u32 {
        let index = match section {
            Section::Accounts | Section::Balances => 1,
            Section::Transfers => 9,
        };
        values[index] as u32
    }
}

/// What the signature covers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestBody {
    pub format: String,
    /// RFC 3339, when the export was written.
    pub created_at: String,
    pub cluster: String,
    /// Transfers and accounts with TigerBeetle timestamps in `[from_ns, to_ns)`; accounts
    /// are exported from the beginning of time, since transfers refer to them.
    pub from_ns: Option<u64>,
    pub to_ns: u64,
    /// Balances are what TigerBeetle reported at this time (after the transfers were read),
    /// not balances as of `to_ns`.
    pub balances_as_of_ns: u64,
    pub ledgers: Vec<u32>,
    pub chain: String,
    pub files: Vec<FileEntry>,
    pub totals: Vec<LedgerTotals>,
    /// Ed25519 public key, hex; pin it with `reconcile export verify --public-key`.
    pub public_key: String,
}

pub const CHAIN_RULE: &str = "hash_0 = SHA-256(format || \"/\" || file name); \
     hash_i = SHA-256(hash_(i-1) || record_i); record_i = the line without its newline and \
     without its prev_hash (CSV: last field and its comma; JSON: the last member and its comma)";

/// A signed manifest as written: `{"body":{...},"signature":"<hex>"}` on one line, the
/// signature being over the exact bytes of `body`.
pub fn signed_manifest(body: &ManifestBody, key: &ed25519_dalek::SigningKey) -> Vec<u8> {
    use ed25519_dalek::Signer;
    let body = serde_json::to_vec(body).expect("manifest serializes");
    let signature = key.sign(&body);
    let mut out = Vec::with_capacity(body.len() + 160);
    out.extend_from_slice(b"{\"body\":");
    out.extend_from_slice(&body);
    out.extend_from_slice(b",\"signature\":\"");
    out.extend_from_slice(hex::encode(signature.to_bytes()).as_bytes());
    out.extend_from_slice(b"\"}\n");
    out
}

/// Splits a written line into its canonical record bytes and the hash it carries.
pub fn split_line(kind: FileKind, line: &[u8]) -> Option<(Vec<u8>, Hash)> {
    let parse = |hex_bytes: &[u8]| -> Option<Hash> {
        let mut hash = [0u8; 32];
        hex::decode_to_slice(hex_bytes, &mut hash).ok()?;
        Some(hash)
    };
    match kind {
        FileKind::Csv => {
            let comma = line.iter().rposition(|b| *b == b',')?;
            let hex_bytes = &line[comma + 1..];
            (hex_bytes.len() == HASH_HEX).then_some(())?;
            Some((line[..comma].to_vec(), parse(hex_bytes)?))
        }
        FileKind::Jsonl => {
            let tail = JSON_PREV.len() + HASH_HEX + 2;
            if line.len() < tail + 1 || !line.ends_with(b"\"}") {
                return None;
            }
            let start = line.len() - tail;
            (&line[start..start + JSON_PREV.len()] == JSON_PREV).then_some(())?;
            let hash = parse(&line[start + JSON_PREV.len()..line.len() - 2])?;
            let mut canonical = line[..start].to_vec();
            canonical.push(b'}');
            Some((canonical, hash))
        }
    }
}

/// The values of a canonical record, in column order, as numbers. Used by `verify` to
/// recompute the manifest's totals; `None` if the record is not well-formed.
pub fn parse_values(section: Section, kind: FileKind, canonical: &[u8]) -> Option<Vec<u128>> {
    let columns = section.columns();
    let text = std::str::from_utf8(canonical).ok()?;
    let raw: Vec<String> = match kind {
        FileKind::Csv => text.split(',').map(str::to_owned).collect(),
        FileKind::Jsonl => {
            let object: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(text).ok()?;
            if object.len() != columns.len() {
                return None;
            }
            let mut values = Vec::with_capacity(columns.len());
            for name in columns {
                values.push(match object.get(*name)? {
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Number(n) => n.to_string(),
                    _ => return None,
                });
            }
            values
        }
    };
    if raw.len() != columns.len() {
        return None;
    }
    columns
        .iter()
        .zip(&raw)
        .map(|(name, value)| {
            if is_id_column(name) {
                (value.len() == 32).then_some(())?;
                u128::from_str_radix(value, 16).ok()
            } else {
                value.parse::<u128>().ok()
            }
        })
        .collect()
}

fn is_id_column(name: &str) -> bool {
    name == "id" || name.ends_with("account_id") || name == "pending_id" || name == "user_data_128"
}

/// The record shapes, from the ledger's records of TigerBeetle's accounts and transfers.
pub mod records {
    use super::Value;
    use allot_ledger::{ExportAccount, ExportTransfer};

    pub fn nanos(t: std::time::SystemTime) -> u128 {
        t.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
    }

    pub fn account(a: &ExportAccount) -> [Value; 8] {
        [
            Value::Id(a.id),
            Value::Small(a.ledger),
            Value::Small(a.code.into()),
            Value::Small(a.flags.into()),
            Value::Id(a.user_data_128),
            Value::Big(a.user_data_64.into()),
            Value::Small(a.user_data_32),
            Value::Big(nanos(a.timestamp)),
        ]
    }

    pub fn transfer(t: &ExportTransfer) -> [Value; 13] {
        [
            Value::Id(t.id),
            Value::Id(t.debit_account_id),
            Value::Id(t.credit_account_id),
            Value::Big(t.amount),
            Value::Id(t.pending_id),
            Value::Id(t.user_data_128),
            Value::Big(t.user_data_64.into()),
            Value::Small(t.user_data_32),
            Value::Small(t.timeout),
            Value::Small(t.ledger),
            Value::Small(t.code.into()),
            Value::Small(t.flags.into()),
            Value::Big(nanos(t.timestamp)),
        ]
    }

    pub fn balance(a: &ExportAccount) -> [Value; 7] {
        [
            Value::Id(a.id),
            Value::Small(a.ledger),
            Value::Small(a.code.into()),
            Value::Big(a.debits_pending),
            Value::Big(a.debits_posted),
            Value::Big(a.credits_pending),
            Value::Big(a.credits_posted),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> [Value; 7] {
        [
            Value::Id(0xabc),
            Value::Small(764),
            Value::Small(7),
            Value::Big(1),
            Value::Big(u128::MAX),
            Value::Big(0),
            Value::Big(42),
        ]
    }

    #[test]
    fn csv_and_json_lines_split_back_into_their_record_and_hash() {
        let values = sample();
        let record = Record { section: Section::Balances, values: &values };
        let mut fmt = itoa::Buffer::new();
        for kind in [FileKind::Csv, FileKind::Jsonl] {
            let mut canonical = Vec::new();
            match kind {
                FileKind::Csv => render_csv(&mut canonical, &record, &mut fmt),
                FileKind::Jsonl => render_json(&mut canonical, &record, &mut fmt),
            }
            let mut file = ChainedFile::new(Section::Balances, kind);
            let mut out = Vec::new();
            file.write(&mut out, &canonical).unwrap();
            file.write(&mut out, &canonical).unwrap();
            let lines: Vec<&[u8]> = out.split(|b| *b == b'\n').filter(|l| !l.is_empty()).collect();
            let (first, h0) = split_line(kind, lines[0]).unwrap();
            let (second, h1) = split_line(kind, lines[1]).unwrap();
            assert_eq!(first, canonical);
            assert_eq!(second, canonical);
            let mut chain = Chain::new(&Section::Balances.file(kind));
            assert_eq!(chain.link(&first), h0);
            assert_eq!(chain.link(&second), h1);
            assert_eq!(hex::encode(chain.last()), file.summary().final_hash);
            let parsed = parse_values(Section::Balances, kind, &first).unwrap();
            assert_eq!(parsed, vec![0xabc, 764, 7, 1, u128::MAX, 0, 42]);
        }
    }

    #[test]
    fn json_records_are_valid_json_with_big_numbers_as_strings() {
        let values = sample();
        let mut out = Vec::new();
        render_json(
            &mut out,
            &Record { section: Section::Balances, values: &values },
            &mut itoa::Buffer::new(),
        );
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["account_id"], "00000000000000000000000000000abc");
        assert_eq!(v["ledger"], 764);
        assert_eq!(v["debits_posted"], u128::MAX.to_string());
    }
}
