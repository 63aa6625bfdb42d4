//! The report document: the signed body and its members, the file form (parse and
//! pretty-print), and [`Finding`], the one shape every check reports in.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::{Summary, REPORT_FORMAT, REPORT_FORMAT_V1};
use crate::checkpoint::SignedCheckpoint;
use crate::hex;

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
    /// The first page for a person (format 2; absent in format 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<Summary>,
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
    /// SHA-256 of the window's JSONL ([`jsonl_line`](super::jsonl_line) for each entry in seq
    /// order), hex.
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

impl SignedReport {
    /// Parses a report file (any JSON layout) of format 2 or 1. A document that is not a
    /// report of either is a [`Finding`] on `report` (or on the member that does not parse).
    pub fn parse(text: &[u8]) -> Result<SignedReport, Finding> {
        let value: Value = serde_json::from_slice(text)
            .map_err(|e| Finding::new("report", format!("not JSON: {e}")))?;
        let Value::Object(mut object) = value else {
            return Err(Finding::new("report", "not a JSON object"));
        };
        match object.get("format") {
            Some(Value::String(f)) if f == REPORT_FORMAT || f == REPORT_FORMAT_V1 => {}
            other => {
                return Err(Finding::new(
                    "format",
                    format!("expected {REPORT_FORMAT:?} or {REPORT_FORMAT_V1:?}, found {other:?}"),
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
}
