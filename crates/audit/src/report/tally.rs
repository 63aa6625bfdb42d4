//! Recomputing a report's facts from entries: the window's JSONL line, and the streaming
//! [`Tally`] over an environment's whole log.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::summary::ActivityTally;
use super::{
    default_rules, entry_month, Activity, Finding, Month, PrivilegedChange, PrivilegedRule,
    ReportBody, WindowEntries,
};
use crate::canonical::write_canonical_json;
use crate::entry::merkle_leaf;
use crate::merkle::MerkleTree;
use crate::verify::{Body, Problem, StoredEntry, Verifier};
use crate::{hex, Hash};

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
    activity: ActivityTally,
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
    /// What failed or was refused in the window (format 2's `summary.activity`).
    pub activity: Activity,
    /// The window's privileged changes under the tally's rules (`summary.privileged.changes`).
    pub privileged_changes: Vec<PrivilegedChange>,
}

impl Tally {
    /// `watch`: tree sizes whose root and head to record (the report's checkpoints). Privileged
    /// changes are picked by [`default_rules`] unless [`with_rules`](Self::with_rules) says
    /// otherwise.
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
            activity: ActivityTally::new(default_rules()),
        }
    }

    /// Picks privileged changes by `rules` (a report's own, when checking it).
    pub fn with_rules(mut self, rules: Vec<PrivilegedRule>) -> Tally {
        self.activity = ActivityTally::new(rules);
        self
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
        self.activity.push(seq, action, body);
        self.line.clear();
        jsonl_line(seq, prev_hash, entry_hash, body, &mut self.line);
        self.sha.update(&self.line);
    }

    pub fn finish(self) -> TallyResult {
        let report = self.verifier.finish();
        let (activity, privileged_changes) = self.activity.finish();
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
            activity,
            privileged_changes,
        }
    }
}

/// The rules a [`Tally`] must pick privileged changes by to check `body`: its own (format 2),
/// or the current ones (format 1 states none and is not checked for them).
pub fn rules_of(body: &ReportBody) -> Vec<PrivilegedRule> {
    body.summary
        .as_ref()
        .map_or_else(default_rules, |s| s.privileged.rules.clone())
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
