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
//!
//! `month` has the calendar arithmetic, `model` the document and its file form, `sign` the
//! report's own signature, `check` what can be checked without entries, `tally` and `compare`
//! what the entries say and where the report disagrees, `from_bundle` the offline tally.

mod check;
mod compare;
mod from_bundle;
mod model;
mod month;
mod sign;
mod summary;
mod tally;
#[cfg(test)]
mod tests;

use sha2::{Digest, Sha256};

use crate::hex;

pub use compare::compare;
pub use from_bundle::tally_bundle;
pub use model::{
    Finding, PreviousMonth, ReportBody, ReportCheckpoint, ReportSignature, SignedReport, Window,
    WindowEntries,
};
pub use month::{entry_month, Month, MonthError};
pub use summary::{
    default_rules, Activity, AnchorPlace, Anomaly, Condition, DeniedActor, LogVerdict, Person,
    Privileged, PrivilegedChange, PrivilegedRule, Summary, VerdictStatus, TOP_DENIED_ACTORS,
};
pub use tally::{jsonl_line, rules_of, watched_sizes, Tally, TallyResult};

/// The `format` member of the reports made now: format 1 and a `summary`.
pub const REPORT_FORMAT: &str = "portcullis-audit-report/2";

/// The first format, without `summary`; reports of it still verify.
pub const REPORT_FORMAT_V1: &str = "portcullis-audit-report/1";

/// The signature algorithm named in a report.
pub const SIGNATURE_ALGORITHM: &str = "ed25519";

/// SHA-256 of `bytes` as lowercase hex (the PDF names the JSON file by it).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(&Sha256::digest(bytes))
}
