//! Bank statements: CSV and ISO 20022 camt.053 (end-of-day statement) into
//! `bank_statement_lines`. Amounts become integer satang without ever passing through a
//! float; importing the same file twice adds nothing.

use allot_store::statements::{self, NewLine};
use quick_xml::events::Event;
use quick_xml::Reader;
use time::Date;

use crate::store::Client;

/// Statement files above this are refused: a day's statement is far smaller.
pub const STATEMENT_BYTES_MAX: usize = 256 << 20;

/// One booked entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatementLine {
    pub statement_id: String,
    /// The bank's id of the entry; the line number when the file has none.
    pub entry_ref: String,
    pub booked_on: Date,
    /// Credits positive, debits negative.
    pub amount_satang: i64,
    pub currency: String,
    pub reference: Option<String>,
    pub end_to_end_id: Option<String>,
    pub description: Option<String>,
}

impl StatementLine {
    fn as_row(&self) -> NewLine<'_> {
        NewLine {
            statement_id: &self.statement_id,
            entry_ref: &self.entry_ref,
            booked_on: self.booked_on,
            amount_satang: self.amount_satang,
            currency: &self.currency,
            reference: self.reference.as_deref(),
            end_to_end_id: self.end_to_end_id.as_deref(),
            description: self.description.as_deref(),
        }
    }
}

/// `1500`, `1500.5`, `1,500.00`, `-20.00` to satang; more than two decimals is an error.
pub fn parse_amount(text: &str) -> Result<i64, String> {
    let cleaned: String = text.trim().chars().filter(|c| *c != ',' && *c != ' ').collect();
    let (negative, digits) = match cleaned.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, cleaned.strip_prefix('+').unwrap_or(&cleaned)),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let bad = || format!("not an amount: {text:?}");
    if whole.is_empty() || fraction.len() > 2 || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    if !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let whole: i64 = whole.parse().map_err(|_| bad())?;
    let fraction: i64 = format!("{fraction:0<2}").parse().map_err(|_| bad())?;
    let satang = whole.checked_mul(100).and_then(|w| w.checked_add(fraction)).ok_or_else(bad)?;
    Ok(if negative { -satang } else { satang })
}

/// `2026-03-01`, `2026-03-01T10:00:00+07:00` (the date part) or `01/03/2026` (day first, as
/// Thai banks print it).
pub fn parse_date(text: &str) -> Result<Date, String> {
    let text = text.trim();
    let bad = || format!("not a date: {text:?}");
    let iso = time::macros::format_description!("[year]-[month]-[day]");
    let dmy = time::macros::format_description!("[day]/[month]/[year]");
    let head = text.get(..10).unwrap_or(text);
    Date::parse(head, iso).or_else(|_| Date::parse(head, dmy)).map_err(|_| bad())
}

/// A CSV statement with a header row. Columns are found by name (case-insensitive):
/// `date` or `booking_date`; `amount`; optional `currency` (THB), `reference` or `ref1`,
/// `entry_id` or `transaction_id`, `end_to_end_id`, `description`, `statement_id`.
pub fn parse_csv(bytes: &[u8], default_statement: &str) -> Result<Vec<StatementLine>, String> {
    let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(bytes);
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| e.to_string())?
        .iter()
        .map(|h| h.to_ascii_lowercase())
        .collect();
    let column = |names: &[&str]| headers.iter().position(|h| names.contains(&h.as_str()));
    let date = column(&["date", "booking_date", "booked_on"]).ok_or("no date column")?;
    let amount = column(&["amount"]).ok_or("no amount column")?;
    let currency = column(&["currency"]);
    let reference = column(&["reference", "ref1"]);
    let entry = column(&["entry_id", "transaction_id", "entry_ref"]);
    let end_to_end = column(&["end_to_end_id"]);
    let description = column(&["description"]);
    let statement = column(&["statement_id"]);
    let mut lines = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let record = record.map_err(|e| e.to_string())?;
        let line_no = i + 2;
        let get = |c: Option<usize>| {
            c.and_then(|c| record.get(c)).filter(|v| !v.is_empty()).map(str::to_owned)
        };
        let at = |e: String| format!("line {line_no}: {e}");
        lines.push(StatementLine {
            statement_id: get(statement).unwrap_or_else(|| default_statement.to_owned()),
            entry_ref: get(entry).unwrap_or_else(|| format!("line-{line_no}")),
            booked_on: parse_date(record.get(date).unwrap_or("")).map_err(at)?,
            amount_satang: parse_amount(record.get(amount).unwrap_or("")).map_err(at)?,
            currency: get(currency).unwrap_or_else(|| "THB".into()),
            reference: get(reference),
            end_to_end_id: get(end_to_end),
            description: get(description),
        });
    }
    Ok(lines)
}

/// An ISO 20022 camt.053 statement: every `Ntry` of every `Stmt` becomes a line.
pub fn parse_camt053(bytes: &[u8]) -> Result<Vec<StatementLine>, String> {
    let mut reader = Reader::from_reader(bytes);
    reader.config_mut().trim_text(true);
    let mut path: Vec<String> = Vec::new();
    let mut lines = Vec::new();
    let mut statement_id = String::new();
    let mut entry: Option<Entry> = None;
    let mut buf = Vec::new();
    loop {
        let event = reader.read_event_into(&mut buf).map_err(|e| format!("camt.053: {e}"))?;
        match event {
            Event::Start(e) => {
                let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                if name == "Ntry" {
                    entry = Some(Entry::default());
                }
                if name == "Amt" {
                    if let Some(entry) = entry.as_mut() {
                        for attr in e.attributes().flatten() {
                            if attr.key.local_name().as_ref() == b"Ccy" {
                                entry.currency =
                                    Some(String::from_utf8_lossy(&attr.value).into_owned());
                            }
                        }
                    }
                }
                path.push(name);
            }
            Event::End(_) => {
                let closed = path.pop();
                if closed.as_deref() == Some("Ntry") {
                    let done = entry.take().expect("inside an entry");
                    lines.push(done.line(&statement_id, lines.len() + 1)?);
                }
            }
            Event::Text(t) => {
                let text = t.unescape().map_err(|e| format!("camt.053: {e}"))?.into_owned();
                let tail = |n: usize| path[path.len().saturating_sub(n)..].join("/");
                if tail(2) == "Stmt/Id" {
                    statement_id = text;
                } else if let Some(entry) = entry.as_mut() {
                    entry.take(&tail(2), &tail(3), &tail(4), text);
                }
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    if lines.is_empty() && statement_id.is_empty() {
        return Err("camt.053: no statement (Stmt) found".into());
    }
    Ok(lines)
}

#[derive(Default)]
struct Entry {
    amount: Option<String>,
    currency: Option<String>,
    credit: Option<bool>,
    booked: Option<String>,
    entry_ref: Option<String>,
    servicer_ref: Option<String>,
    end_to_end: Option<String>,
    creditor_ref: Option<String>,
    unstructured: Option<String>,
    info: Option<String>,
}

impl Entry {
    /// Keeps the first value of each field: a batch entry's first transaction speaks for it.
    fn take(&mut self, two: &str, three: &str, four: &str, text: String) {
        let slot = match (two, three, four) {
            ("Ntry/Amt", _, _) => &mut self.amount,
            ("Ntry/CdtDbtInd", _, _) => {
                self.credit.get_or_insert(text == "CRDT");
                return;
            }
            (_, "Ntry/BookgDt/Dt" | "Ntry/BookgDt/DtTm", _) => &mut self.booked,
            ("Ntry/NtryRef", _, _) => &mut self.entry_ref,
            ("Ntry/AcctSvcrRef", _, _) => &mut self.servicer_ref,
            ("Refs/EndToEndId", _, _) => &mut self.end_to_end,
            ("CdtrRefInf/Ref", _, _) => &mut self.creditor_ref,
            ("RmtInf/Ustrd", _, _) => &mut self.unstructured,
            ("Ntry/AddtlNtryInf", _, _) => &mut self.info,
            _ => return,
        };
        slot.get_or_insert(text);
    }

    fn line(self, statement_id: &str, index: usize) -> Result<StatementLine, String> {
        let at = |e: String| format!("camt.053 entry {index}: {e}");
        let amount =
            parse_amount(self.amount.as_deref().ok_or("no Amt").map_err(|e| at(e.into()))?)
                .map_err(at)?;
        let credit = self.credit.ok_or_else(|| at("no CdtDbtInd".into()))?;
        let booked = self.booked.ok_or_else(|| at("no BookgDt".into()))?;
        Ok(StatementLine {
            statement_id: statement_id.to_owned(),
            entry_ref: self
                .servicer_ref
                .or(self.entry_ref)
                .unwrap_or_else(|| format!("entry-{index}")),
            booked_on: parse_date(&booked).map_err(at)?,
            amount_satang: if credit { amount } else { -amount },
            currency: self.currency.unwrap_or_else(|| "THB".into()),
            reference: self.creditor_ref.or(self.unstructured.clone()),
            end_to_end_id: self.end_to_end,
            description: self.info.or(self.unstructured),
        })
    }
}

/// Reads a statement file, choosing the parser by content (XML or CSV).
pub fn parse_file(path: &std::path::Path) -> Result<Vec<StatementLine>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if bytes.len() > STATEMENT_BYTES_MAX {
        return Err(format!("{}: larger than {STATEMENT_BYTES_MAX} bytes", path.display()));
    }
    let start = bytes.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(0);
    let name = path.file_stem().map_or("statement".into(), |s| s.to_string_lossy().into_owned());
    let lines = if bytes[start..].starts_with(b"<") {
        parse_camt053(&bytes)
    } else {
        parse_csv(&bytes, &name)
    };
    lines.map_err(|e| format!("{}: {e}", path.display()))
}

/// Inserts lines, all or none; returns (inserted, already present).
pub async fn import(
    db: &mut Client,
    lines: &[StatementLine],
    source: &str,
) -> Result<(u64, u64), String> {
    let rows: Vec<NewLine> = lines.iter().map(StatementLine::as_row).collect();
    let tx = db.transaction().await.map_err(|e| e.to_string())?;
    let inserted = statements::insert_lines(&tx, &rows, source).await.map_err(|e| e.to_string())?;
    tx.commit().await.map_err(|e| e.to_string())?;
    Ok((inserted, lines.len() as u64 - inserted))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_exact_satang() {
        assert_eq!(parse_amount("1500").unwrap(), 150_000);
        assert_eq!(parse_amount("1,500.5").unwrap(), 150_050);
        assert_eq!(parse_amount("-0.01").unwrap(), -1);
        assert!(parse_amount("1.001").is_err());
        assert!(parse_amount("1e3").is_err());
        assert!(parse_amount("").is_err());
    }

    #[test]
    fn dates_in_iso_and_thai_bank_order() {
        let d = time::macros::date!(2026 - 03 - 01);
        assert_eq!(parse_date("2026-03-01").unwrap(), d);
        assert_eq!(parse_date("2026-03-01T10:00:00+07:00").unwrap(), d);
        assert_eq!(parse_date("01/03/2026").unwrap(), d);
        assert!(parse_date("March 1").is_err());
    }

    #[test]
    fn a_camt053_statement_becomes_lines() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"><BkToCstmrStmt><Stmt>
  <Id>STMT-2026-03-01</Id>
  <Ntry><Amt Ccy="THB">1500.00</Amt><CdtDbtInd>CRDT</CdtDbtInd><BookgDt><Dt>2026-03-01</Dt></BookgDt>
    <AcctSvcrRef>BANK-1</AcctSvcrRef>
    <NtryDtls><TxDtls><Refs><EndToEndId>E2E-1</EndToEndId></Refs>
      <RmtInf><Strd><CdtrRefInf><Ref>ABCD1234EFGH5678</Ref></CdtrRefInf></Strd></RmtInf></TxDtls></NtryDtls>
  </Ntry>
  <Ntry><Amt Ccy="THB">20.00</Amt><CdtDbtInd>DBIT</CdtDbtInd><BookgDt><DtTm>2026-03-01T23:00:00+07:00</DtTm></BookgDt>
    <NtryDtls><TxDtls><RmtInf><Ustrd>fee</Ustrd></RmtInf></TxDtls></NtryDtls></Ntry>
</Stmt></BkToCstmrStmt></Document>"#;
        let lines = parse_camt053(xml.as_bytes()).unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].statement_id, "STMT-2026-03-01");
        assert_eq!(lines[0].entry_ref, "BANK-1");
        assert_eq!(lines[0].amount_satang, 150_000);
        assert_eq!(lines[0].reference.as_deref(), Some("ABCD1234EFGH5678"));
        assert_eq!(lines[0].end_to_end_id.as_deref(), Some("E2E-1"));
        assert_eq!(lines[1].amount_satang, -2_000);
        assert_eq!(lines[1].entry_ref, "entry-2");
        assert_eq!(lines[1].reference.as_deref(), Some("fee"));
    }

    #[test]
    fn a_csv_statement_finds_its_columns_by_name() {
        let csv =
            "Date,Amount,Reference,Entry_ID\n01/03/2026,\"1,500.00\",abcd,T1\n2026-03-02,15.5,,\n";
        let lines = parse_csv(csv.as_bytes(), "march").unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!((lines[0].amount_satang, lines[0].entry_ref.as_str()), (150_000, "T1"));
        assert_eq!(lines[1].entry_ref, "line-3");
        assert_eq!(lines[1].reference, None);
        assert_eq!(lines[1].statement_id, "march");
    }
}
