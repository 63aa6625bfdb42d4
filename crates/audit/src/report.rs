//! The monthly audit report (control L6): what a month of an environment's log contained,
//! committed to by a SHA-256 over the month's entries, tied to the Merkle tree by the signed
//! checkpoint that closes the month and by a consistency proof from the previous month's, and
//! signed as a whole. Specified in `docs/AUDIT.md` ("Monthly report").
//!
//! This module is the pure part: the document, its signature, the month arithmetic, the
//! streaming [`Tally`] that recomputes a report's facts from entries, and the checks that
//! compare the two. Finding the entries and checkpoints (a database, a bundle) is the
//! caller's business.
//!
//! The report file is one JSON object. Its member `signature` holds an Ed25519 signature over
//! the canonical JSON ([`crate::canonical_json`]) of the object with `signature` removed; that
//! remainder is the *body*. It names its format (`format`), so the signed bytes cannot be
//! mistaken for another statement of the same key (a checkpoint text does not start with `{`).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use ring::signature::{UnparsedPublicKey, ED25519};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::canonical::write_canonical_json;
use crate::checkpoint::{KeyId, PublicKey, SignedCheckpoint, SigningKey};
use crate::entry::merkle_leaf;
use crate::merkle::{verify_consistency, MerkleTree};
use crate::verify::{Body, Problem, StoredEntry, Verifier};
use crate::{hex, Hash};

/// The `format` member of every report of this version.
pub const REPORT_FORMAT: &str = "portcullis-audit-report/1";

/// The signature algorithm named in a report.
pub const SIGNATURE_ALGORITHM: &str = "ed25519";

// ---------------------------------------------------------------------------------------------
// Months

/// A calendar month in UTC, written `YYYY-MM` (years 0001 to 9998).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Month {
    year: u16,
    month: u8,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MonthError(String);

impl Month {
    pub fn new(year: u16, month: u8) -> Option<Month> {
        ((1..=9998).contains(&year) && (1..=12).contains(&month)).then_some(Month { year, month })
    }

    pub fn year(&self) -> u16 {
        self.year
    }

    /// 1 to 12.
    pub fn number(&self) -> u8 {
        self.month
    }

    /// The month before, if it is in range.
    pub fn previous(&self) -> Option<Month> {
        match self.month {
            1 => Month::new(self.year.checked_sub(1)?, 12),
            m => Month::new(self.year, m - 1),
        }
    }

    /// The month after (always exists: years stop at 9998).
    pub fn next(&self) -> Month {
        match self.month {
            12 => Month {
                year: self.year + 1,
                month: 1,
            },
            m => Month {
                year: self.year,
                month: m + 1,
            },
        }
    }

    /// Start of the window, inclusive: `YYYY-MM-01T00:00:00Z`.
    pub fn window_from(&self) -> String {
        format!("{self}-01T00:00:00Z")
    }

    /// End of the window, exclusive: the first instant of the next month.
    pub fn window_to(&self) -> String {
        self.next().window_from()
    }
}

impl fmt::Display for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

impl FromStr for Month {
    type Err = MonthError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let shape = || {
            MonthError(format!(
                "`{s}` is not a month: expected YYYY-MM, e.g. 2026-03"
            ))
        };
        let b = s.as_bytes();
        if b.len() != 7 || b[4] != b'-' {
            return Err(shape());
        }
        let digits = |part: &[u8]| -> Option<u16> {
            part.iter().try_fold(0u16, |n, d| {
                d.is_ascii_digit().then(|| n * 10 + u16::from(d - b'0'))
            })
        };
        let (Some(year), Some(month)) = (digits(&b[..4]), digits(&b[5..])) else {
            return Err(shape());
        };
        if !(1..=12).contains(&month) {
            return Err(MonthError(format!(
                "`{s}`: month {month:02} does not exist (expected 01 to 12)"
            )));
        }
        if !(1..=9998).contains(&year) {
            return Err(MonthError(format!(
                "`{s}`: year {year:04} is out of range (0001 to 9998)"
            )));
        }
        Month::new(year, month as u8).ok_or_else(shape)
    }
}

/// The month of an entry: the first seven characters of its body's `occurred_at`, which the
/// writer always formats as RFC 3339 in UTC with six fractional digits
/// (`YYYY-MM-DDTHH:MM:SS.ffffffZ`). `None` for anything else.
pub fn entry_month(occurred_at: &str) -> Option<Month> {
    let b = occurred_at.as_bytes();
    let shape_ok = b.len() == 27
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'.',
            26 => *c == b'Z',
            _ => c.is_ascii_digit(),
        });
    if !shape_ok {
        return None;
    }
    occurred_at[..7].parse().ok()
}

// ---------------------------------------------------------------------------------------------
// The document

/// The signed part of a report. Field by field in `docs/AUDIT.md`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportBody {
    pub format: String,
    pub environment_id: Uuid,
    pub month: String,
    pub window: Window,
    pub entries: WindowEntries,
    /// Entries of the window per `action`, keys in bytewise order.
    pub counts_by_action: BTreeMap<String, u64>,
    /// Entries whose `occurred_at` is before `window.to`: the highest such seq (0 if none).
    pub log_size_at_close: u64,
    /// The earliest checkpoint whose size is at least `log_size_at_close`; `null` only when
    /// that is 0 (nothing was logged before the month ended).
    pub closing_checkpoint: Option<ReportCheckpoint>,
    /// The previous month's closing checkpoint and the proof that this month's extends it;
    /// `null` when nothing was logged before this month began.
    pub previous: Option<PreviousMonth>,
    /// When the report was made, RFC 3339 UTC to the second (`YYYY-MM-DDTHH:MM:SSZ`).
    pub generated_at: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Window {
    /// Inclusive, `YYYY-MM-01T00:00:00Z`.
    pub from: String,
    /// Exclusive, the first instant of the next month.
    pub to: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowEntries {
    pub count: u64,
    /// Lowest seq in the window; `null` for an empty month.
    pub first_seq: Option<u64>,
    /// Highest seq in the window; `null` for an empty month.
    pub last_seq: Option<u64>,
    /// SHA-256 of the window's JSONL ([`jsonl_line`] for each entry in seq order), hex.
    pub jsonl_sha256: String,
}

/// A signed checkpoint with its facts spelled out. `signed` is authoritative; the other
/// members must repeat it exactly.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportCheckpoint {
    pub tree_size: u64,
    pub root_hash: String,
    pub head_hash: String,
    pub issued_at: i64,
    pub key_id: String,
    pub signed: String,
}

impl ReportCheckpoint {
    pub fn from_signed(cp: &SignedCheckpoint) -> Self {
        ReportCheckpoint {
            tree_size: cp.checkpoint.tree_size,
            root_hash: hex::encode(&cp.checkpoint.root_hash),
            head_hash: hex::encode(&cp.checkpoint.last_entry_hash),
            issued_at: cp.checkpoint.issued_at,
            key_id: cp.key_id.to_string(),
            signed: cp.to_string(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreviousMonth {
    pub month: String,
    /// The previous month's `log_size_at_close`.
    pub log_size_at_close: u64,
    /// The previous month's closing checkpoint.
    pub checkpoint: ReportCheckpoint,
    /// RFC 6962 consistency proof from `checkpoint` to this report's closing checkpoint, hex.
    pub consistency_proof: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportSignature {
    pub algorithm: String,
    pub key_id: String,
    /// 64-byte Ed25519 signature, 128 hex digits.
    pub value: String,
}

/// A report as read from a file: the body exactly as it stood there (what the signature
/// covers), its typed form, and the signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedReport {
    pub raw_body: Value,
    pub body: ReportBody,
    pub signature: ReportSignature,
}

/// One thing wrong with a report: the member it concerns (a dotted path such as
/// `entries.count` or `previous.consistency_proof`) and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub field: String,
    pub reason: String,
}

impl Finding {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Finding {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

impl ReportBody {
    /// The bytes the signature covers: the canonical JSON of the body.
    pub fn signed_bytes(&self) -> Result<Vec<u8>, serde_json::Error> {
        Ok(crate::canonical_json(&serde_json::to_value(self)?))
    }

    /// Signs the body with `key`.
    pub fn sign(self, key: &SigningKey) -> Result<SignedReport, serde_json::Error> {
        let raw_body = serde_json::to_value(&self)?;
        let signature = key.sign_bytes(&crate::canonical_json(&raw_body));
        Ok(SignedReport {
            raw_body,
            body: self,
            signature: ReportSignature {
                algorithm: SIGNATURE_ALGORITHM.to_owned(),
                key_id: key.key_id().to_string(),
                value: hex::encode(&signature),
            },
        })
    }
}

impl SignedReport {
    /// Parses a report file (any JSON layout). A document that is not a report of this
    /// version is a [`Finding`] on `report` (or on the member that does not parse).
    pub fn parse(text: &[u8]) -> Result<SignedReport, Finding> {
        let value: Value = serde_json::from_slice(text)
            .map_err(|e| Finding::new("report", format!("not JSON: {e}")))?;
        let Value::Object(mut object) = value else {
            return Err(Finding::new("report", "not a JSON object"));
        };
        match object.get("format") {
            Some(Value::String(f)) if f == REPORT_FORMAT => {}
            other => {
                return Err(Finding::new(
                    "format",
                    format!("expected {REPORT_FORMAT:?}, found {other:?}"),
                ))
            }
        }
        let signature = object
            .remove("signature")
            .ok_or_else(|| Finding::new("signature", "missing"))?;
        let signature: ReportSignature = serde_json::from_value(signature)
            .map_err(|e| Finding::new("signature", format!("malformed: {e}")))?;
        let raw_body = Value::Object(object);
        let body: ReportBody = serde_json::from_value(raw_body.clone())
            .map_err(|e| Finding::new("report", format!("malformed: {e}")))?;
        Ok(SignedReport {
            raw_body,
            body,
            signature,
        })
    }

    /// The file form: the body's members and `signature`, pretty-printed, ending in a newline.
    /// Any layout verifies; this one is for people.
    pub fn to_json_pretty(&self) -> Vec<u8> {
        let mut object = match &self.raw_body {
            Value::Object(map) => map.clone(),
            _ => serde_json::Map::new(),
        };
        object.insert(
            "signature".into(),
            serde_json::to_value(&self.signature).unwrap_or(Value::Null),
        );
        let mut out = serde_json::to_vec_pretty(&Value::Object(object)).unwrap_or_default();
        out.push(b'\n');
        out
    }

    /// Checks the report's signature against the trusted keys (those with its key id).
    pub fn check_signature(&self, trusted: &[PublicKey]) -> Result<(), Finding> {
        let bad = |why: String| Finding::new("signature", why);
        if self.signature.algorithm != SIGNATURE_ALGORITHM {
            return Err(bad(format!(
                "algorithm {:?} is not {SIGNATURE_ALGORITHM}",
                self.signature.algorithm
            )));
        }
        let key_id: KeyId = self
            .signature
            .key_id
            .parse()
            .map_err(|_| bad("key_id is not 16 lowercase hex digits".into()))?;
        let value: [u8; 64] = hex::decode(&self.signature.value)
            .ok_or_else(|| bad("value is not 128 lowercase hex digits".into()))?;
        let message = crate::canonical_json(&self.raw_body);
        let mut known = false;
        for key in trusted.iter().filter(|k| k.key_id() == key_id) {
            known = true;
            if UnparsedPublicKey::new(&ED25519, key.as_bytes())
                .verify(&message, &value)
                .is_ok()
            {
                return Ok(());
            }
        }
        Err(bad(if known {
            format!("does not verify under key {key_id}: the signed body was changed or another key signed it")
        } else {
            format!("signed by key {key_id}, which is not a trusted (published) audit key")
        }))
    }

    /// Every check that needs no entries: internal consistency, both checkpoints' signatures
    /// and environment, the consistency proof between them, and the report's own signature
    /// (last, so that the findings name the members that were changed first).
    pub fn check(&self, trusted: &[PublicKey]) -> Vec<Finding> {
        let mut out = check_body(&self.body, trusted);
        if let Err(f) = self.check_signature(trusted) {
            out.push(f);
        }
        out
    }
}

/// A parsed and verified checkpoint of the report, or findings on `field`.
fn check_checkpoint(
    field: &str,
    cp: &ReportCheckpoint,
    environment_id: Uuid,
    trusted: &[PublicKey],
    out: &mut Vec<Finding>,
) -> Option<SignedCheckpoint> {
    let signed: SignedCheckpoint = match cp.signed.parse() {
        Ok(s) => s,
        Err(e) => {
            out.push(Finding::new(format!("{field}.signed"), e.to_string()));
            return None;
        }
    };
    let mut ok = true;
    if let Err(e) = signed.verify(trusted) {
        out.push(Finding::new(format!("{field}.signed"), e.to_string()));
        ok = false;
    }
    if signed.checkpoint.environment_id != environment_id {
        out.push(Finding::new(
            format!("{field}.signed"),
            format!(
                "checkpoint is for environment {}, not {environment_id}",
                signed.checkpoint.environment_id
            ),
        ));
        ok = false;
    }
    let spelled = ReportCheckpoint::from_signed(&signed);
    for (name, stated, actual) in [
        (
            "tree_size",
            cp.tree_size.to_string(),
            spelled.tree_size.to_string(),
        ),
        ("root_hash", cp.root_hash.clone(), spelled.root_hash.clone()),
        ("head_hash", cp.head_hash.clone(), spelled.head_hash.clone()),
        (
            "issued_at",
            cp.issued_at.to_string(),
            spelled.issued_at.to_string(),
        ),
        ("key_id", cp.key_id.clone(), spelled.key_id.clone()),
    ] {
        if stated != actual {
            out.push(Finding::new(
                format!("{field}.{name}"),
                format!("says {stated} but the signed checkpoint says {actual}"),
            ));
            ok = false;
        }
    }
    ok.then_some(signed)
}

fn check_body(body: &ReportBody, trusted: &[PublicKey]) -> Vec<Finding> {
    let mut out = vec![];
    let mut push = |f: &str, r: String| out.push(Finding::new(f, r));
    if body.format != REPORT_FORMAT {
        push("format", format!("expected {REPORT_FORMAT:?}"));
    }
    let month: Option<Month> = match body.month.parse() {
        Ok(m) => Some(m),
        Err(e) => {
            push("month", e.to_string());
            None
        }
    };
    if let Some(m) = month {
        if body.window.from != m.window_from() {
            push(
                "window.from",
                format!("is {} but {m} starts {}", body.window.from, m.window_from()),
            );
        }
        if body.window.to != m.window_to() {
            push(
                "window.to",
                format!("is {} but {m} ends {}", body.window.to, m.window_to()),
            );
        }
        if !is_utc_seconds(&body.generated_at) {
            push(
                "generated_at",
                "is not RFC 3339 UTC to the second (YYYY-MM-DDTHH:MM:SSZ)".into(),
            );
        } else if body.generated_at < m.window_to() {
            push(
                "generated_at",
                format!(
                    "{} is before the month ended ({})",
                    body.generated_at,
                    m.window_to()
                ),
            );
        }
    }
    let e = &body.entries;
    match (e.count, e.first_seq, e.last_seq) {
        (0, None, None) => {}
        (0, _, _) => push(
            "entries.first_seq",
            "an empty month has no first or last seq (null)".into(),
        ),
        (n, Some(first), Some(last)) => {
            if first == 0 || first > last || n > last - first + 1 {
                push(
                    "entries.count",
                    format!("{n} entries cannot lie between seq {first} and {last}"),
                );
            }
            if last > body.log_size_at_close {
                push(
                    "log_size_at_close",
                    format!(
                        "{} is below the window's last seq {last}",
                        body.log_size_at_close
                    ),
                );
            }
        }
        (_, _, _) => push(
            "entries.first_seq",
            "a month with entries has a first and a last seq".into(),
        ),
    }
    if hex::decode::<32>(&e.jsonl_sha256).is_none() {
        push(
            "entries.jsonl_sha256",
            "is not 64 lowercase hex digits".into(),
        );
    }
    let sum: u64 = body.counts_by_action.values().sum();
    if sum != e.count {
        push(
            "counts_by_action",
            format!("add up to {sum} but entries.count is {}", e.count),
        );
    }
    if body.counts_by_action.values().any(|&c| c == 0) {
        push("counts_by_action", "lists an action with count 0".into());
    }

    let closing = match &body.closing_checkpoint {
        None => {
            if body.log_size_at_close > 0 {
                push(
                    "closing_checkpoint",
                    format!(
                        "is missing, but {} entries were logged before the month ended",
                        body.log_size_at_close
                    ),
                );
            }
            None
        }
        Some(cp) => {
            let signed = check_checkpoint(
                "closing_checkpoint",
                cp,
                body.environment_id,
                trusted,
                &mut out,
            );
            if cp.tree_size < body.log_size_at_close {
                out.push(Finding::new(
                    "closing_checkpoint.tree_size",
                    format!(
                        "{} does not cover the {} entries logged before the month ended",
                        cp.tree_size, body.log_size_at_close
                    ),
                ));
            }
            signed
        }
    };

    let expected_previous = month.and_then(|m| m.previous()).map(|m| m.to_string());
    if let Some(prev) = &body.previous {
        if Some(&prev.month) != expected_previous.as_ref() {
            out.push(Finding::new(
                "previous.month",
                format!(
                    "is {} but the month before {} is {}",
                    prev.month,
                    body.month,
                    expected_previous.as_deref().unwrap_or("none")
                ),
            ));
        }
        if prev.log_size_at_close == 0 || prev.log_size_at_close > body.log_size_at_close {
            out.push(Finding::new(
                "previous.log_size_at_close",
                format!(
                    "{} must be between 1 and this month's {}",
                    prev.log_size_at_close, body.log_size_at_close
                ),
            ));
        }
        if prev.checkpoint.tree_size < prev.log_size_at_close {
            out.push(Finding::new(
                "previous.checkpoint.tree_size",
                format!(
                    "{} does not cover the previous month's {} entries",
                    prev.checkpoint.tree_size, prev.log_size_at_close
                ),
            ));
        }
        let old = check_checkpoint(
            "previous.checkpoint",
            &prev.checkpoint,
            body.environment_id,
            trusted,
            &mut out,
        );
        let proof: Option<Vec<Hash>> = prev
            .consistency_proof
            .iter()
            .map(|h| hex::decode::<32>(h))
            .collect();
        match (old, &closing, proof) {
            (_, _, None) => out.push(Finding::new(
                "previous.consistency_proof",
                "contains a hash that is not 64 lowercase hex digits",
            )),
            (Some(old), Some(new), Some(proof)) => {
                let (o, n) = (&old.checkpoint, &new.checkpoint);
                if !verify_consistency(o.tree_size, n.tree_size, &o.root_hash, &n.root_hash, &proof)
                {
                    out.push(Finding::new(
                        "previous.consistency_proof",
                        format!(
                            "does not prove that the tree of {} entries (root {}) extends the previous month's tree of {} (root {})",
                            n.tree_size,
                            hex::encode(&n.root_hash),
                            o.tree_size,
                            hex::encode(&o.root_hash)
                        ),
                    ));
                }
            }
            // The checkpoints themselves were already reported.
            _ => {}
        }
    }
    out
}

/// `YYYY-MM-DDTHH:MM:SSZ`.
fn is_utc_seconds(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 20
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

// ---------------------------------------------------------------------------------------------
// Recomputing a report from entries

/// One line of the window's JSONL: the canonical JSON of
/// `{"body":<body>,"entry_hash":"<hex>","prev_hash":"<hex>","seq":<seq>}` and a newline.
/// (The members are in canonical order; this is also what `audit export --format jsonl` and
/// the API's JSONL export write for an entry.)
pub fn jsonl_line(seq: u64, prev_hash: &Hash, entry_hash: &Hash, body: &Value, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"body\":");
    write_canonical_json(body, out);
    out.extend_from_slice(b",\"entry_hash\":\"");
    hex::encode_into(entry_hash, out);
    out.extend_from_slice(b"\",\"prev_hash\":\"");
    hex::encode_into(prev_hash, out);
    out.extend_from_slice(b"\",\"seq\":");
    out.extend_from_slice(seq.to_string().as_bytes());
    out.extend_from_slice(b"}\n");
}

/// Streams an environment's whole log (from seq 1, in order) and computes what a report for
/// `month` must say, checking the hash chain on the way.
pub struct Tally {
    month: Month,
    verifier: Verifier<'static>,
    tree: MerkleTree,
    watch: Vec<u64>,
    roots: BTreeMap<u64, (Hash, Hash)>,
    count: u64,
    first: Option<u64>,
    last: Option<u64>,
    counts: BTreeMap<String, u64>,
    sha: Sha256,
    log_size_at_close: u64,
    previous_size_at_close: u64,
    size: u64,
    malformed: Option<Finding>,
    line: Vec<u8>,
}

impl fmt::Debug for Tally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tally")
            .field("month", &self.month)
            .field("size", &self.size)
            .field("count", &self.count)
            .finish_non_exhaustive()
    }
}

/// What the entries say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TallyResult {
    pub entries: WindowEntries,
    pub counts_by_action: BTreeMap<String, u64>,
    pub log_size_at_close: u64,
    /// The previous month's `log_size_at_close`.
    pub previous_size_at_close: u64,
    /// Entries read.
    pub size: u64,
    /// Merkle root and chain head after each watched size that the log reached.
    pub roots: BTreeMap<u64, (Hash, Hash)>,
    /// The first problem in the hash chain (links, content hashes, sequence), if any.
    pub chain_problem: Option<Problem>,
    /// The first entry whose body lacks a well-formed `occurred_at` or `action`.
    pub malformed: Option<Finding>,
}

impl Tally {
    /// `watch`: tree sizes whose root and head to record (the report's checkpoints).
    pub fn new(environment_id: Uuid, month: Month, watch: &[u64]) -> Tally {
        Tally {
            month,
            verifier: Verifier::new(environment_id, &[]),
            tree: MerkleTree::new(),
            watch: watch.to_vec(),
            roots: BTreeMap::new(),
            count: 0,
            first: None,
            last: None,
            counts: BTreeMap::new(),
            sha: Sha256::new(),
            log_size_at_close: 0,
            previous_size_at_close: 0,
            size: 0,
            malformed: None,
            line: Vec::with_capacity(1024),
        }
    }

    pub fn push(&mut self, seq: u64, prev_hash: &Hash, entry_hash: &Hash, body: &Value) {
        self.verifier.push(&StoredEntry {
            seq,
            prev_hash: *prev_hash,
            entry_hash: *entry_hash,
            body: Body::Json(body),
        });
        self.tree.push(merkle_leaf(entry_hash));
        self.size += 1;
        if self.watch.contains(&self.size) {
            self.roots
                .insert(self.size, (self.tree.root(), *entry_hash));
        }
        let occurred = body
            .get("occurred_at")
            .and_then(Value::as_str)
            .and_then(entry_month);
        let Some(at) = occurred else {
            self.malformed.get_or_insert_with(|| {
                Finding::new(
                    "entries",
                    format!(
                        "entry {seq} has no occurred_at of the form YYYY-MM-DDTHH:MM:SS.ffffffZ"
                    ),
                )
            });
            return;
        };
        if at <= self.month {
            self.log_size_at_close = self.log_size_at_close.max(seq);
        }
        if at < self.month {
            self.previous_size_at_close = self.previous_size_at_close.max(seq);
        }
        if at != self.month {
            return;
        }
        let Some(action) = body.get("action").and_then(Value::as_str) else {
            self.malformed.get_or_insert_with(|| {
                Finding::new("entries", format!("entry {seq} has no action"))
            });
            return;
        };
        self.count += 1;
        self.first = Some(self.first.map_or(seq, |f| f.min(seq)));
        self.last = Some(self.last.map_or(seq, |l| l.max(seq)));
        *self.counts.entry(action.to_owned()).or_insert(0) += 1;
        self.line.clear();
        jsonl_line(seq, prev_hash, entry_hash, body, &mut self.line);
        self.sha.update(&self.line);
    }

    pub fn finish(self) -> TallyResult {
        let report = self.verifier.finish();
        TallyResult {
            entries: WindowEntries {
                count: self.count,
                first_seq: self.first,
                last_seq: self.last,
                jsonl_sha256: hex::encode(&self.sha.finalize()),
            },
            counts_by_action: self.counts,
            log_size_at_close: self.log_size_at_close,
            previous_size_at_close: self.previous_size_at_close,
            size: self.size,
            roots: self.roots,
            chain_problem: report.first_problem,
            malformed: self.malformed,
        }
    }
}

/// The tree sizes a [`Tally`] must watch to check `body`'s checkpoints.
pub fn watched_sizes(body: &ReportBody) -> Vec<u64> {
    let mut sizes = vec![];
    if let Some(cp) = &body.closing_checkpoint {
        sizes.push(cp.tree_size);
    }
    if let Some(prev) = &body.previous {
        sizes.push(prev.checkpoint.tree_size);
    }
    sizes
}

/// Compares a report with what its environment's entries say; one finding per member that
/// disagrees, named.
pub fn compare(body: &ReportBody, tally: &TallyResult) -> Vec<Finding> {
    let mut out = vec![];
    if let Some(p) = &tally.chain_problem {
        out.push(Finding::new(
            "entries",
            format!("the log's hash chain does not verify: {p}"),
        ));
    }
    if let Some(f) = &tally.malformed {
        out.push(f.clone());
    }
    let mut differs = |field: &str, stated: String, actual: String| {
        if stated != actual {
            out.push(Finding::new(
                field,
                format!("report says {stated}, the entries give {actual}"),
            ));
        }
    };
    let opt = |v: Option<u64>| v.map_or("null".to_owned(), |n| n.to_string());
    differs(
        "entries.count",
        body.entries.count.to_string(),
        tally.entries.count.to_string(),
    );
    differs(
        "entries.first_seq",
        opt(body.entries.first_seq),
        opt(tally.entries.first_seq),
    );
    differs(
        "entries.last_seq",
        opt(body.entries.last_seq),
        opt(tally.entries.last_seq),
    );
    differs(
        "entries.jsonl_sha256",
        body.entries.jsonl_sha256.clone(),
        tally.entries.jsonl_sha256.clone(),
    );
    let counts = |c: &BTreeMap<String, u64>| serde_json::to_string(c).unwrap_or_default();
    differs(
        "counts_by_action",
        counts(&body.counts_by_action),
        counts(&tally.counts_by_action),
    );
    differs(
        "log_size_at_close",
        body.log_size_at_close.to_string(),
        tally.log_size_at_close.to_string(),
    );
    differs(
        "previous.log_size_at_close",
        body.previous
            .as_ref()
            .map_or(0, |p| p.log_size_at_close)
            .to_string(),
        tally.previous_size_at_close.to_string(),
    );
    let checkpoints = [
        ("closing_checkpoint", body.closing_checkpoint.as_ref()),
        (
            "previous.checkpoint",
            body.previous.as_ref().map(|p| &p.checkpoint),
        ),
    ];
    for (field, cp) in checkpoints {
        let Some(cp) = cp else { continue };
        match tally.roots.get(&cp.tree_size) {
            None => out.push(Finding::new(
                format!("{field}.tree_size"),
                format!(
                    "the checkpoint covers {} entries but the log holds {}",
                    cp.tree_size, tally.size
                ),
            )),
            Some((root, head)) => {
                if cp.root_hash != hex::encode(root) {
                    out.push(Finding::new(
                        format!("{field}.root_hash"),
                        format!(
                            "{} is not the Merkle root of entries 1..{} ({})",
                            cp.root_hash,
                            cp.tree_size,
                            hex::encode(root)
                        ),
                    ));
                }
                if cp.head_hash != hex::encode(head) {
                    out.push(Finding::new(
                        format!("{field}.head_hash"),
                        format!(
                            "{} is not the hash of entry {} ({})",
                            cp.head_hash,
                            cp.tree_size,
                            hex::encode(head)
                        ),
                    ));
                }
            }
        }
    }
    out
}

/// SHA-256 of `bytes` as lowercase hex (the PDF names the JSON file by it).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(&Sha256::digest(bytes))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BundleEntry {
    seq: u64,
    prev_hash: String,
    entry_hash: String,
    body: Value,
}

/// Reads an export bundle (`crate::bundle`) into a [`Tally`] for `body`: the bundle must be of
/// the report's environment and hold the log from seq 1. Returns what the entries say and the
/// keys the bundle's header lists (trust them only for want of pinned keys). Checkpoint lines
/// are skipped: the report's own checkpoints are what is checked.
pub fn tally_bundle<R: std::io::BufRead>(
    mut reader: R,
    body: &ReportBody,
) -> Result<(TallyResult, Vec<PublicKey>), Finding> {
    let month: Month = body
        .month
        .parse()
        .map_err(|e: MonthError| Finding::new("month", e.to_string()))?;
    let io = |e: std::io::Error| Finding::new("bundle", format!("cannot read: {e}"));
    let mut line = Vec::with_capacity(4096);
    if reader.read_until(b'\n', &mut line).map_err(io)? == 0 {
        return Err(Finding::new("bundle", "the file is empty"));
    }
    let (environment_id, keys) = crate::bundle::parse_header(trim_newline(&line))
        .map_err(|e| Finding::new("bundle", e.to_string()))?;
    if environment_id != body.environment_id {
        return Err(Finding::new(
            "environment_id",
            format!(
                "the report is for {} but the bundle is for {environment_id}",
                body.environment_id
            ),
        ));
    }
    let mut tally = Tally::new(environment_id, month, &watched_sizes(body));
    let mut line_no = 1u64;
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).map_err(io)? == 0 {
            break;
        }
        line_no += 1;
        let text = trim_newline(&line);
        let bad = |why: String| Finding::new("bundle", format!("line {line_no}: {why}"));
        match serde_json::from_slice::<BundleEntry>(text) {
            Ok(e) => {
                let (Some(prev), Some(hash)) = (
                    hex::decode::<32>(&e.prev_hash),
                    hex::decode::<32>(&e.entry_hash),
                ) else {
                    return Err(bad("a hash is not 64 lowercase hex digits".into()));
                };
                tally.push(e.seq, &prev, &hash, &e.body);
            }
            Err(entry_err) => {
                let is_checkpoint = matches!(
                    serde_json::from_slice::<Value>(text),
                    Ok(Value::Object(ref o)) if o.len() == 1 && o.get("checkpoint").is_some_and(Value::is_string)
                );
                if !is_checkpoint {
                    return Err(bad(format!(
                        "neither an entry nor a checkpoint ({entry_err})"
                    )));
                }
            }
        }
    }
    Ok((tally.finish(), keys))
}

fn trim_newline(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\n").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::checkpoint::Checkpoint;
    use crate::entry::{entry_hash, EntryHashInput, GENESIS_PREV_HASH};
    use crate::merkle::consistency_proof;

    const ENV: &str = "0190f3c4-5b6a-7d8e-9f01-23456789abcd";
    const SEED: [u8; 32] = [0x42; 32];
    const OTHER_SEED: [u8; 32] = [0x43; 32];

    struct Log {
        env: Uuid,
        entries: Vec<(u64, Hash, Hash, Value)>,
    }

    impl Log {
        fn new() -> Log {
            Log {
                env: Uuid::parse_str(ENV).unwrap(),
                entries: vec![],
            }
        }

        fn add(&mut self, at: &str, action: &str) {
            let seq = self.entries.len() as u64 + 1;
            let prev = self.entries.last().map_or(GENESIS_PREV_HASH, |e| e.2);
            let body = serde_json::json!({ "occurred_at": at, "action": action, "n": seq });
            let hash = entry_hash(&EntryHashInput {
                environment_id: self.env,
                seq,
                prev_hash: prev,
                body: &body,
            });
            self.entries.push((seq, prev, hash, body));
        }

        fn leaves(&self, size: u64) -> Vec<Hash> {
            self.entries[..size as usize]
                .iter()
                .map(|e| merkle_leaf(&e.2))
                .collect()
        }

        fn checkpoint(&self, key: &SigningKey, size: u64) -> SignedCheckpoint {
            key.sign(&Checkpoint {
                environment_id: self.env,
                tree_size: size,
                root_hash: crate::merkle::root(&self.leaves(size)),
                last_entry_hash: self.entries[size as usize - 1].2,
                issued_at: 1_750_000_000 + size as i64,
            })
        }

        fn tally(&self, month: Month, watch: &[u64]) -> TallyResult {
            let mut t = Tally::new(self.env, month, watch);
            for (seq, prev, hash, body) in &self.entries {
                t.push(*seq, prev, hash, body);
            }
            t.finish()
        }

        /// What a generator does: tally, pick checkpoints, prove, sign.
        fn report(&self, key: &SigningKey, month: &str, checkpoints: &[u64]) -> SignedReport {
            let month: Month = month.parse().unwrap();
            let t = self.tally(month, &[]);
            let pick = |at_least: u64| {
                checkpoints
                    .iter()
                    .copied()
                    .filter(|s| *s >= at_least)
                    .min()
                    .map(|s| self.checkpoint(key, s))
            };
            let closing = (t.log_size_at_close > 0)
                .then(|| pick(t.log_size_at_close))
                .flatten();
            let previous = (t.previous_size_at_close > 0).then(|| {
                let old = pick(t.previous_size_at_close).unwrap();
                let new = closing.as_ref().unwrap();
                let proof = consistency_proof(
                    &self.leaves(new.checkpoint.tree_size),
                    old.checkpoint.tree_size,
                    new.checkpoint.tree_size,
                )
                .unwrap();
                PreviousMonth {
                    month: month.previous().unwrap().to_string(),
                    log_size_at_close: t.previous_size_at_close,
                    checkpoint: ReportCheckpoint::from_signed(&old),
                    consistency_proof: proof.iter().map(|h| hex::encode(h)).collect(),
                }
            });
            ReportBody {
                format: REPORT_FORMAT.into(),
                environment_id: self.env,
                month: month.to_string(),
                window: Window {
                    from: month.window_from(),
                    to: month.window_to(),
                },
                entries: t.entries,
                counts_by_action: t.counts_by_action,
                log_size_at_close: t.log_size_at_close,
                closing_checkpoint: closing.as_ref().map(ReportCheckpoint::from_signed),
                previous,
                generated_at: "2026-06-01T08:00:00Z".into(),
            }
            .sign(key)
            .unwrap()
        }

        /// Every check, as `verify-report --bundle` does them.
        fn verify(&self, report_json: &[u8], trusted: &[PublicKey]) -> Vec<Finding> {
            let report = match SignedReport::parse(report_json) {
                Ok(r) => r,
                Err(f) => return vec![f],
            };
            let month = report.body.month.parse().unwrap();
            let tally = self.tally(month, &watched_sizes(&report.body));
            let mut out = compare(&report.body, &tally);
            out.extend(report.check(trusted));
            out
        }
    }

    fn sample() -> Log {
        let mut log = Log::new();
        log.add("2026-01-10T09:00:00.000001Z", "project.created");
        log.add("2026-01-31T23:59:59.999999Z", "auth.login");
        log.add("2026-03-01T00:00:00.000000Z", "auth.login");
        log.add("2026-03-15T12:00:00.000000Z", "document.created");
        log.add("2026-03-20T12:00:00.000000Z", "auth.login");
        log.add("2026-04-01T00:00:00.000000Z", "auth.logout");
        log
    }

    fn fields(findings: &[Finding]) -> Vec<&str> {
        findings.iter().map(|f| f.field.as_str()).collect()
    }

    #[test]
    fn l6_months_parse_strictly_and_know_their_windows() {
        let m: Month = "2026-12".parse().unwrap();
        assert_eq!(m.window_from(), "2026-12-01T00:00:00Z");
        assert_eq!(m.window_to(), "2027-01-01T00:00:00Z");
        assert_eq!(m.previous().unwrap().to_string(), "2026-11");
        assert_eq!(
            "2026-01"
                .parse::<Month>()
                .unwrap()
                .previous()
                .unwrap()
                .to_string(),
            "2025-12"
        );
        assert_eq!("0001-01".parse::<Month>().unwrap().previous(), None);
        let err = "2026-13".parse::<Month>().unwrap_err().to_string();
        assert!(err.contains("month 13 does not exist"), "{err}");
        for bad in [
            "2026-1",
            "2026/01",
            "26-01",
            "2026-00",
            "202a-01",
            "2026-01-01",
            " 2026-01",
            "0000-05",
            "9999-01",
        ] {
            assert!(bad.parse::<Month>().is_err(), "{bad}");
        }
        assert_eq!(
            entry_month("2026-03-15T12:00:00.000000Z"),
            Some("2026-03".parse().unwrap())
        );
        assert_eq!(entry_month("2026-03-15T12:00:00Z"), None);
        assert_eq!(entry_month("2026-03-15 12:00:00.000000Z"), None);
    }

    #[test]
    fn l6_jsonl_line_is_canonical_json_of_the_entry() {
        let log = sample();
        let (seq, prev, hash, body) = &log.entries[1];
        let mut line = vec![];
        jsonl_line(*seq, prev, hash, body, &mut line);
        let object = serde_json::json!({
            "seq": seq, "prev_hash": hex::encode(prev), "entry_hash": hex::encode(hash), "body": body,
        });
        let mut expected = crate::canonical_json(&object);
        expected.push(b'\n');
        assert_eq!(line, expected);
    }

    #[test]
    fn l6_report_states_the_window_and_verifies() {
        let log = sample();
        let key = SigningKey::from_seed(&SEED).unwrap();
        let report = log.report(&key, "2026-03", &[2, 6]);
        let b = &report.body;
        assert_eq!(b.entries.count, 3);
        assert_eq!(
            (b.entries.first_seq, b.entries.last_seq),
            (Some(3), Some(5))
        );
        assert_eq!(b.counts_by_action["auth.login"], 2);
        assert_eq!(b.counts_by_action["document.created"], 1);
        assert_eq!(b.log_size_at_close, 5);
        assert_eq!(b.closing_checkpoint.as_ref().unwrap().tree_size, 6);
        let prev = b.previous.as_ref().unwrap();
        assert_eq!(
            (prev.month.as_str(), prev.log_size_at_close),
            ("2026-02", 2)
        );
        assert_eq!(prev.checkpoint.tree_size, 2);
        assert!(!prev.consistency_proof.is_empty());
        let mut sha = Sha256::new();
        for (seq, p, h, body) in &log.entries[2..5] {
            let mut line = vec![];
            jsonl_line(*seq, p, h, body, &mut line);
            sha.update(&line);
        }
        assert_eq!(b.entries.jsonl_sha256, hex::encode(&sha.finalize()));

        let json = report.to_json_pretty();
        assert_eq!(log.verify(&json, &[key.public_key()]), vec![]);
        // Signed bytes are the canonical body, whatever the file's layout.
        let compact = serde_json::to_vec(&serde_json::from_slice::<Value>(&json).unwrap()).unwrap();
        assert_eq!(log.verify(&compact, &[key.public_key()]), vec![]);
        assert_eq!(
            SignedReport::parse(&json).unwrap().raw_body,
            report.raw_body
        );
    }

    #[test]
    fn l6_empty_month_and_first_month_verify() {
        let log = sample();
        let key = SigningKey::from_seed(&SEED).unwrap();
        let feb = log.report(&key, "2026-02", &[2, 6]);
        let b = &feb.body;
        assert_eq!(b.entries.count, 0);
        assert_eq!((b.entries.first_seq, b.entries.last_seq), (None, None));
        // SHA-256 of nothing, which is also the empty Merkle tree's root.
        assert_eq!(
            b.entries.jsonl_sha256,
            hex::encode(&crate::merkle::EMPTY_ROOT)
        );
        assert!(b.counts_by_action.is_empty());
        assert_eq!(b.log_size_at_close, 2);
        assert_eq!(b.closing_checkpoint.as_ref().unwrap().tree_size, 2);
        assert_eq!(
            b.previous.as_ref().unwrap().consistency_proof,
            Vec::<String>::new()
        );
        assert_eq!(
            log.verify(&feb.to_json_pretty(), &[key.public_key()]),
            vec![]
        );

        let jan = log.report(&key, "2026-01", &[2, 6]);
        assert_eq!(jan.body.previous, None);
        assert_eq!(
            log.verify(&jan.to_json_pretty(), &[key.public_key()]),
            vec![]
        );

        // Before anything was logged: no checkpoint at all.
        let dec = log.report(&key, "2025-12", &[2, 6]);
        assert_eq!(dec.body.closing_checkpoint, None);
        assert_eq!(dec.body.log_size_at_close, 0);
        assert_eq!(
            log.verify(&dec.to_json_pretty(), &[key.public_key()]),
            vec![]
        );
    }

    /// Control L6: editing any member of the report is caught and the finding names it, even
    /// before the signature (which fails too).
    #[test]
    fn l6_edited_members_are_named() {
        let log = sample();
        let key = SigningKey::from_seed(&SEED).unwrap();
        let json = log.report(&key, "2026-03", &[2, 6]).to_json_pretty();
        let original: Value = serde_json::from_slice(&json).unwrap();
        let other_hash = "ab".repeat(32);
        let cases: Vec<(&str, Value, &str)> = vec![
            ("/entries/count", 4.into(), "entries.count"),
            ("/entries/first_seq", 2.into(), "entries.first_seq"),
            ("/entries/last_seq", 6.into(), "entries.last_seq"),
            (
                "/entries/jsonl_sha256",
                other_hash.clone().into(),
                "entries.jsonl_sha256",
            ),
            ("/counts_by_action/auth.login", 1.into(), "counts_by_action"),
            ("/log_size_at_close", 6.into(), "log_size_at_close"),
            (
                "/closing_checkpoint/root_hash",
                other_hash.clone().into(),
                "closing_checkpoint.root_hash",
            ),
            (
                "/closing_checkpoint/tree_size",
                5.into(),
                "closing_checkpoint.tree_size",
            ),
            (
                "/previous/checkpoint/head_hash",
                other_hash.clone().into(),
                "previous.checkpoint.head_hash",
            ),
            ("/window/from", "2026-02-01T00:00:00Z".into(), "window.from"),
            ("/month", "2026-04".into(), "window.from"),
            (
                "/generated_at",
                "2026-03-31T00:00:00Z".into(),
                "generated_at",
            ),
        ];
        for (pointer, value, field) in cases {
            let mut edited = original.clone();
            *edited.pointer_mut(pointer).unwrap() = value;
            let findings = log.verify(&serde_json::to_vec(&edited).unwrap(), &[key.public_key()]);
            assert!(
                fields(&findings).contains(&field),
                "{pointer}: {findings:?}"
            );
            assert!(
                fields(&findings).contains(&"signature"),
                "{pointer}: {findings:?}"
            );
        }
        // An edited checkpoint text breaks that checkpoint's own signature.
        let mut edited = original.clone();
        let signed = edited
            .pointer("/closing_checkpoint/signed")
            .unwrap()
            .as_str()
            .unwrap();
        let root = edited
            .pointer("/closing_checkpoint/root_hash")
            .unwrap()
            .as_str()
            .unwrap();
        let forged = signed.replace(root, &other_hash);
        *edited.pointer_mut("/closing_checkpoint/signed").unwrap() = forged.into();
        let findings = log.verify(&serde_json::to_vec(&edited).unwrap(), &[key.public_key()]);
        assert_eq!(
            findings[0].field, "closing_checkpoint.signed",
            "{findings:?}"
        );
    }

    /// Control L6: a report is only as good as the key that signed it.
    #[test]
    fn l6_unknown_key_and_bad_signature_fail() {
        let log = sample();
        let key = SigningKey::from_seed(&SEED).unwrap();
        let stranger = SigningKey::from_seed(&OTHER_SEED).unwrap();
        let report = log.report(&key, "2026-03", &[2, 6]);
        let findings = report.check(&[stranger.public_key()]);
        let sig = findings.iter().find(|f| f.field == "signature").unwrap();
        assert!(sig.reason.contains("not a trusted"), "{sig}");

        // The stranger re-signs the (correct) body: its key is not published.
        let resigned = report.body.clone().sign(&stranger).unwrap();
        let findings = log.verify(&resigned.to_json_pretty(), &[key.public_key()]);
        assert_eq!(fields(&findings), vec!["signature"], "{findings:?}");

        // A signature whose bytes were changed.
        let mut bent = report.clone();
        let flipped = if bent.signature.value.starts_with('0') {
            "1"
        } else {
            "0"
        };
        bent.signature.value = format!("{flipped}{}", &bent.signature.value[1..]);
        let err = bent.check_signature(&[key.public_key()]).unwrap_err();
        assert!(err.reason.contains("does not verify"), "{err}");
        // Not a report at all, or another version.
        assert_eq!(SignedReport::parse(b"[]").unwrap_err().field, "report");
        let v2 = String::from_utf8(report.to_json_pretty())
            .unwrap()
            .replace("report/1", "report/2");
        assert_eq!(
            SignedReport::parse(v2.as_bytes()).unwrap_err().field,
            "format"
        );
    }

    /// Control L6: the previous month's checkpoint must be a prefix of this month's. An operator
    /// who forked history (signing a second, different tree for February) cannot produce a
    /// proof, even signing the report with the real key.
    #[test]
    fn l6_forged_previous_checkpoint_or_proof_fails() {
        let log = sample();
        let key = SigningKey::from_seed(&SEED).unwrap();
        let report = log.report(&key, "2026-03", &[2, 6]);

        let forked = log_with_other_history();
        let fork_cp = forked.checkpoint(&key, 2);
        let mut body = report.body.clone();
        body.previous.as_mut().unwrap().checkpoint = ReportCheckpoint::from_signed(&fork_cp);
        let forged = body.sign(&key).unwrap();
        let findings = forged.check(&[key.public_key()]);
        assert_eq!(
            fields(&findings),
            vec!["previous.consistency_proof"],
            "{findings:?}"
        );

        // A bent proof, re-signed.
        let mut body = report.body.clone();
        let proof = &mut body.previous.as_mut().unwrap().consistency_proof;
        proof[0] = "cd".repeat(32);
        let findings = body.sign(&key).unwrap().check(&[key.public_key()]);
        assert_eq!(
            fields(&findings),
            vec!["previous.consistency_proof"],
            "{findings:?}"
        );

        // A dropped proof, and a previous month that is not the one before.
        let mut body = report.body.clone();
        body.previous.as_mut().unwrap().consistency_proof.clear();
        let findings = body.sign(&key).unwrap().check(&[key.public_key()]);
        assert_eq!(
            fields(&findings),
            vec!["previous.consistency_proof"],
            "{findings:?}"
        );
        let mut body = report.body.clone();
        body.previous.as_mut().unwrap().month = "2026-01".into();
        let findings = body.sign(&key).unwrap().check(&[key.public_key()]);
        assert_eq!(fields(&findings), vec!["previous.month"], "{findings:?}");

        // Leaving out the previous month altogether is caught against the entries.
        let mut body = report.body.clone();
        body.previous = None;
        let json = body.sign(&key).unwrap().to_json_pretty();
        let findings = log.verify(&json, &[key.public_key()]);
        assert_eq!(
            fields(&findings),
            vec!["previous.log_size_at_close"],
            "{findings:?}"
        );
    }

    /// Control L6: the offline path reads an export bundle; a bundle of another environment
    /// or with a broken line is refused, naming why.
    #[test]
    fn l6_bundle_tally_matches_and_refuses_other_bundles() {
        let log = sample();
        let key = SigningKey::from_seed(&SEED).unwrap();
        let report = log.report(&key, "2026-03", &[2, 6]);
        let bundle = |env: Uuid, extra: &str| {
            let mut w =
                crate::bundle::BundleWriter::new(Vec::new(), env, &[key.public_key()]).unwrap();
            w.write_checkpoint(&log.checkpoint(&key, 6)).unwrap();
            for (seq, prev, hash, body) in &log.entries {
                w.write_entry(*seq, prev, hash, body).unwrap();
            }
            let mut bytes = w.finish().unwrap();
            bytes.extend_from_slice(extra.as_bytes());
            bytes
        };
        let bytes = bundle(log.env, "");
        let (tally, keys) = tally_bundle(&bytes[..], &report.body).unwrap();
        assert_eq!(keys, vec![key.public_key()]);
        assert_eq!(compare(&report.body, &tally), vec![]);
        assert_eq!(
            tally,
            log.tally("2026-03".parse().unwrap(), &watched_sizes(&report.body))
        );

        let other = tally_bundle(&bundle(Uuid::nil(), "")[..], &report.body).unwrap_err();
        assert_eq!(other.field, "environment_id");
        let broken = tally_bundle(&bundle(log.env, "{\"x\":1}\n")[..], &report.body).unwrap_err();
        assert_eq!(broken.field, "bundle");
        assert!(broken.reason.contains("line 9"), "{broken}");
        assert_eq!(
            tally_bundle(&b""[..], &report.body).unwrap_err().field,
            "bundle"
        );
    }

    fn log_with_other_history() -> Log {
        let mut log = Log::new();
        log.add("2026-01-10T09:00:00.000001Z", "project.created");
        log.add("2026-01-31T23:59:59.999999Z", "secret.exfiltrated");
        log
    }

    /// Control L6: entries changed after the report (even with every hash recomputed) no
    /// longer match it.
    #[test]
    fn l6_entries_changed_after_the_report_fail() {
        let log = sample();
        let key = SigningKey::from_seed(&SEED).unwrap();
        let json = log.report(&key, "2026-03", &[2, 6]).to_json_pretty();

        // A body edited in place: the chain breaks, and the window hash differs.
        let mut edited = sample();
        edited.entries[3].3["action"] = "document.deleted".into();
        let findings = edited.verify(&json, &[key.public_key()]);
        let f = fields(&findings);
        assert!(
            f.contains(&"entries")
                && f.contains(&"entries.jsonl_sha256")
                && f.contains(&"counts_by_action"),
            "{findings:?}"
        );

        // History rewritten consistently: a clean chain, but not the signed tree.
        let mut rewritten = Log::new();
        for (i, (_, _, _, body)) in sample().entries.iter().enumerate() {
            let action = if i == 3 {
                "document.deleted"
            } else {
                body["action"].as_str().unwrap()
            };
            rewritten.add(body["occurred_at"].as_str().unwrap(), action);
        }
        let findings = rewritten.verify(&json, &[key.public_key()]);
        let f = fields(&findings);
        assert!(!f.contains(&"entries"), "{findings:?}");
        assert!(
            f.contains(&"closing_checkpoint.root_hash") && f.contains(&"entries.jsonl_sha256"),
            "{findings:?}"
        );

        // Entries cut off after the window.
        let mut short = sample();
        short.entries.truncate(5);
        let findings = short.verify(&json, &[key.public_key()]);
        assert_eq!(
            fields(&findings),
            vec!["closing_checkpoint.tree_size"],
            "{findings:?}"
        );
    }
}
