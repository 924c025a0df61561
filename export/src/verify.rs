//! Checking an export: the manifest's signature, every record's hash, every file's count
//! and final hash, and the totals per ledger recomputed from the records. Any changed,
//! removed, added or reordered byte is reported, with the file and line where it shows.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::export::BUNDLE_FILE_PREFIX;
use crate::format::{self, Chain, FileEntry, FileKind, ManifestBody, Section, Sums};

/// The outcome of a verification: empty `problems` means the export is intact.
#[derive(Debug, Default)]
pub struct Verified {
    pub manifest: Option<ManifestBody>,
    /// (file, records checked)
    pub files: Vec<(String, u64)>,
    pub problems: Vec<String>,
}

impl Verified {
    pub fn ok(&self) -> bool {
        self.problems.is_empty() && self.manifest.is_some()
    }
}

#[derive(Deserialize)]
struct Signed<'a> {
    #[serde(borrow)]
    body: &'a serde_json::value::RawValue,
    signature: String,
}

/// Checks the signature of a manifest line and returns its body.
pub fn check_manifest(bytes: &[u8], pinned: Option<&VerifyingKey>) -> Result<ManifestBody, String> {
    let signed: Signed<'_> = serde_json::from_slice(bytes.trim_ascii_end())
        .map_err(|e| format!("manifest is not a signed manifest: {e}"))?;
    let body: ManifestBody = serde_json::from_str(signed.body.get())
        .map_err(|e| format!("manifest body is malformed: {e}"))?;
    if body.format != format::FORMAT {
        return Err(format!(
            "unknown format {:?} (this tool reads {})",
            body.format,
            format::FORMAT
        ));
    }
    let key = crate::keys::public_from_hex(&body.public_key)
        .map_err(|e| format!("manifest public key: {e}"))?;
    if let Some(pinned) = pinned {
        if pinned != &key {
            return Err(format!(
                "manifest is signed by {}, not by the pinned key {}",
                body.public_key,
                hex::encode(pinned.to_bytes())
            ));
        }
    }
    let mut sig = [0u8; 64];
    hex::decode_to_slice(&signed.signature, &mut sig)
        .map_err(|_| "manifest signature is not 128 hex digits".to_string())?;
    key.verify(signed.body.get().as_bytes(), &Signature::from_bytes(&sig))
        .map_err(|_| "manifest signature does not match its body".to_string())?;
    Ok(body)
}

/// Reads one file's lines and checks them as they come.
struct FileCheck {
    name: String,
    kind: FileKind,
    section: Section,
    chain: Chain,
    content: Sha256,
    lines: u64,
    broken: Option<String>,
    sums: BTreeMap<u32, Sums>,
}

impl FileCheck {
    fn new(name: &str) -> Result<FileCheck, String> {
        let kind = FileKind::of(name).ok_or_else(|| format!("{name}: unknown file type"))?;
        let section = Section::ALL
            .into_iter()
            .find(|s| s.file(kind) == name)
            .ok_or_else(|| format!("{name}: not a file of this format"))?;
        Ok(FileCheck {
            name: name.to_owned(),
            kind,
            section,
            chain: Chain::new(name),
            content: Sha256::new(),
            lines: 0,
            broken: None,
            sums: BTreeMap::new(),
        })
    }

    /// One line, with its newline if it had one.
    fn line(&mut self, raw: &[u8]) {
        self.content.update(raw);
        self.lines += 1;
        if self.broken.is_some() {
            return;
        }
        let Some(line) = raw.strip_suffix(b"\n") else {
            self.broken = Some(format!("line {}: the file ends without a newline", self.lines));
            return;
        };
        if self.kind == FileKind::Csv && self.lines == 1 {
            if line != self.section.csv_header().as_bytes() {
                self.broken = Some("line 1: the CSV header is not the format's".into());
            }
            return;
        }
        let Some((canonical, carried)) = format::split_line(self.kind, line) else {
            self.broken = Some(format!("line {}: not a record of this format", self.lines));
            return;
        };
        if &carried != self.chain.last() {
            self.broken = Some(format!(
                "line {} (record {}): its prev_hash does not match the record before it: \
                 a record was changed, removed, inserted or moved here",
                self.lines,
                self.chain.records() + 1
            ));
            return;
        }
        self.chain.link(&canonical);
        match format::parse_values(self.section, self.kind, &canonical) {
            Some(values) => {
                let ledger = Sums::ledger_of(self.section, &values);
                self.sums.entry(ledger).or_default().add(self.section, &values);
            }
            None => {
                self.broken = Some(format!("line {}: a field is malformed", self.lines));
            }
        }
    }

    fn finish(self, entry: &FileEntry, problems: &mut Vec<String>) -> BTreeMap<u32, Sums> {
        let name = &self.name;
        if let Some(broken) = self.broken {
            problems.push(format!("{name}: {broken}"));
            return self.sums;
        }
        if self.chain.records() != entry.records {
            problems.push(format!(
                "{name}: {} records, the manifest says {}: records were removed or added",
                self.chain.records(),
                entry.records
            ));
        } else if hex::encode(self.chain.last()) != entry.final_hash {
            problems.push(format!("{name}: the last record's hash is not the manifest's"));
        }
        if hex::encode(self.content.finalize()) != entry.sha256 {
            problems.push(format!("{name}: the file's SHA-256 is not the manifest's"));
        }
        self.sums
    }
}

/// Verifies a directory export or a one-file bundle (as the API streams it).
pub fn verify(path: &Path, pinned: Option<&VerifyingKey>) -> Verified {
    let result = if path.is_dir() { verify_dir(path, pinned) } else { verify_bundle(path, pinned) };
    match result {
        Ok(verified) => verified,
        Err(problem) => Verified { problems: vec![problem], ..Default::default() },
    }
}

fn verify_dir(dir: &Path, pinned: Option<&VerifyingKey>) -> Result<Verified, String> {
    let manifest_path = dir.join(format::MANIFEST_FILE);
    let bytes =
        std::fs::read(&manifest_path).map_err(|e| format!("{}: {e}", manifest_path.display()))?;
    let manifest = check_manifest(&bytes, pinned)?;
    let mut verified = Verified::default();
    let mut sums = Vec::new();
    for entry in &manifest.files {
        let mut check = FileCheck::new(&entry.name)?;
        let file = File::open(dir.join(&entry.name));
        let Ok(file) = file else {
            verified.problems.push(format!("{}: missing", entry.name));
            continue;
        };
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let mut line = Vec::with_capacity(512);
        loop {
            line.clear();
            let n = reader.read_until(b'\n', &mut line).map_err(|e| e.to_string())?;
            if n == 0 {
                break;
            }
            check.line(&line);
        }
        verified.files.push((entry.name.clone(), check.chain.records()));
        sums.push((check.section, check.finish(entry, &mut verified.problems)));
    }
    for name in std::fs::read_dir(dir).map_err(|e| e.to_string())?.flatten() {
        let name = name.file_name().to_string_lossy().into_owned();
        if name != format::MANIFEST_FILE && !manifest.files.iter().any(|f| f.name == name) {
            verified.problems.push(format!("{name}: not listed in the manifest"));
        }
    }
    check_totals(&manifest, &sums, &mut verified.problems);
    verified.manifest = Some(manifest);
    Ok(verified)
}

fn verify_bundle(path: &Path, pinned: Option<&VerifyingKey>) -> Result<Verified, String> {
    let file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut verified = Verified::default();
    let mut checks: Vec<FileCheck> = Vec::new();
    let mut manifest_line: Option<Vec<u8>> = None;
    let mut line = Vec::with_capacity(512);
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        if manifest_line.is_some() {
            verified.problems.push("the bundle goes on after its manifest".into());
            break;
        }
        if line.starts_with(b"{\"body\":") {
            manifest_line = Some(line.clone());
        } else if let Some(rest) = line.strip_prefix(BUNDLE_FILE_PREFIX.as_bytes()) {
            let name = rest.strip_suffix(b"\"}\n").ok_or("malformed file line in the bundle")?;
            checks.push(FileCheck::new(&String::from_utf8_lossy(name))?);
        } else {
            match checks.last_mut() {
                Some(check) => check.line(&line),
                None => return Err("the bundle does not start with a file line".into()),
            }
        }
    }
    let manifest_line = manifest_line.ok_or("the bundle has no manifest: it was cut short")?;
    let manifest = check_manifest(&manifest_line, pinned)?;
    let listed: Vec<&str> = manifest.files.iter().map(|f| f.name.as_str()).collect();
    let present: Vec<String> = checks.iter().map(|c| c.name.clone()).collect();
    if listed != present {
        verified.problems.push(format!("files {present:?}, the manifest lists {listed:?}"));
    }
    let mut sums = Vec::new();
    for check in checks {
        let Some(entry) = manifest.files.iter().find(|f| f.name == check.name) else { continue };
        verified.files.push((check.name.clone(), check.chain.records()));
        sums.push((check.section, check.finish(entry, &mut verified.problems)));
    }
    check_totals(&manifest, &sums, &mut verified.problems);
    verified.manifest = Some(manifest);
    Ok(verified)
}

/// Recomputes the manifest's totals from the records (one file per section is enough).
fn check_totals(
    manifest: &ManifestBody,
    sums: &[(Section, BTreeMap<u32, Sums>)],
    problems: &mut Vec<String>,
) {
    let mut recomputed: BTreeMap<u32, Sums> =
        manifest.ledgers.iter().map(|l| (*l, Sums::default())).collect();
    for section in Section::ALL {
        let Some((_, per_ledger)) = sums.iter().find(|(s, _)| *s == section) else { continue };
        for (ledger, s) in per_ledger {
            let Some(total) = recomputed.get_mut(ledger) else {
                problems
                    .push(format!("{}: ledger {ledger} is not in the manifest", section.name()));
                continue;
            };
            match section {
                Section::Accounts => total.accounts = s.accounts,
                Section::Transfers => {
                    total.transfers = s.transfers;
                    total.transfer_amount = s.transfer_amount;
                }
                Section::Balances => {
                    total.debits_pending = s.debits_pending;
                    total.debits_posted = s.debits_posted;
                    total.credits_pending = s.credits_pending;
                    total.credits_posted = s.credits_posted;
                }
            }
        }
    }
    let recomputed: Vec<_> = recomputed.iter().map(|(l, s)| s.totals(*l)).collect();
    if problems.is_empty() && recomputed != manifest.totals {
        problems.push(
            "the totals per ledger recomputed from the records are not the manifest's".into(),
        );
    }
}
