//! The offline verifier's core (control L3): stream an environment's entries in order, with
//! the signed checkpoints that anchor them, and report the first problem and where it is.
//!
//! Memory is constant in the number of entries: the verifier keeps the last two entry
//! hashes, a [`MerkleTree`] frontier, one entry of lookahead and the checkpoints not yet
//! reached.
//!
//! # How a problem is classified
//!
//! Each entry is checked for, in this order: its seq is the next one; its `prev_hash` is the
//! predecessor's entry hash (the link); its stored entry hash is what its seq, `prev_hash`
//! and body hash to (the content). A failure is not reported at once: the next entry is read
//! first, because only it can tell a swap from a deletion or an insertion from an edit.
//!
//! - **Missing** at `s`: the seq jumps from `s - 1` past `s`, and the entry after that does
//!   not go back. A deleted row. Deleting the newest rows leaves no gap, so it shows when a
//!   checkpoint covers more entries than the log holds: Missing at the first absent seq.
//! - **Reordered** at `s`: the seq goes back or repeats. After a jump past `s`, the next entry
//!   going back (two adjacent entries swapped, or an entry moved) is Reordered at `s`; an
//!   entry appearing twice is Reordered at its seq. An entry displaced by more than one place
//!   is seen as Missing at its original seq, since lookahead is one entry.
//! - **Inserted** at `s`: entry `s` does not belong between its neighbours. Either its
//!   successor's link skips it (the successor's `prev_hash` is the hash of the entry before
//!   `s`), or two entries claim seq `s` after the same predecessor, or entry `s` has a broken
//!   link and nothing vouches for it (no successor links to it). This holds whether the
//!   forger renumbered the following rows or reused a seq, and whether or not the forged row's
//!   own hash is right.
//! - **Changed** at `s`: entry `s`'s content does not hash to its stored entry hash (an edited
//!   body, seq or link) and it was not inserted. Also: entry `s + 1` is intact and its
//!   successor links to it, but its link does not match entry `s` — entry `s` was rewritten
//!   and its own hash recomputed.
//! - **InconsistentWithCheckpoint** at `n`: every link and hash checks out, but the Merkle
//!   root or chain head after `n` entries is not what the checkpoint for size `n` signed. The
//!   log was rewritten consistently (every hash recomputed, as only someone bypassing L2 can)
//!   somewhere after the last checkpoint that matched; the detail names that range. Because
//!   an edit that broke a link localizes better, this is reported only if the next two entries
//!   show no entry-level problem at or before `n`.
//! - **BadSignature**, **UnknownKey**, **WrongEnvironment**: a checkpoint does not verify under
//!   the trusted keys, names a key that is not trusted, or is for another environment.
//! - **Malformed**: input that is not in the expected format (bundle lines, a checkpoint
//!   placed after the entries it covers).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;
use std::num::NonZeroU64;

use serde_json::Value;
use uuid::Uuid;

use crate::canonical::write_canonical_json;
use crate::checkpoint::{CheckpointError, PublicKey, SignedCheckpoint};
use crate::entry::{entry_hash_of_canonical, merkle_leaf, GENESIS_PREV_HASH};
use crate::merkle::MerkleTree;
use crate::{hex, Hash};

/// One entry as stored or exported.
#[derive(Clone, Copy, Debug)]
pub struct StoredEntry<'a> {
    pub seq: u64,
    pub prev_hash: Hash,
    pub entry_hash: Hash,
    pub body: Body<'a>,
}

#[derive(Clone, Copy, Debug)]
pub enum Body<'a> {
    Json(&'a Value),
    /// JSON text as exported. Exporters write canonical JSON, so it is hashed as it stands
    /// first: a match proves these are the bytes the entry hash commits to, which for any
    /// entry the log wrote is its canonical body, with no parsing. Only on a mismatch is it
    /// parsed and re-encoded.
    Text(&'a str),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProblemKind {
    Changed,
    Missing,
    Reordered,
    Inserted,
    BadSignature,
    UnknownKey,
    WrongEnvironment,
    InconsistentWithCheckpoint,
    Malformed,
}

/// The first problem found: its kind, the seq it localizes to (`None` for a checkpoint that
/// does not verify), and a sentence for the auditor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub seq: Option<u64>,
    pub kind: ProblemKind,
    pub detail: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.seq {
            Some(seq) => write!(f, "{:?} at seq {seq}: {}", self.kind, self.detail),
            None => write!(f, "{:?}: {}", self.kind, self.detail),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// Entries that passed the chain checks (seq, link, content), from seq 1 to this number. A
    /// checkpoint problem may still implicate some of them.
    pub entries: u64,
    /// Checkpoints whose signature verified and whose root and head matched the entries.
    pub checkpoints_checked: usize,
    /// The highest tree size a checkpoint that verified and matched covers (0: none). Entries
    /// after it are protected by the hash chain alone: removing or rewriting them is
    /// undetectable without a later checkpoint.
    pub covered: u64,
    /// Merkle root over the entries that passed.
    pub root_hash: Hash,
    pub first_problem: Option<Problem>,
    /// Problems noted while verification went on ([`Verifier::note`]: an anchored checkpoint
    /// that does not parse, a head row that disagrees with the log), in the order noted. When
    /// the entries and checkpoints showed nothing, the first of them is also `first_problem`.
    pub findings: Vec<Problem>,
}

impl Report {
    pub fn is_clean(&self) -> bool {
        self.first_problem.is_none()
    }

    /// Entries after the highest size a verified checkpoint covers.
    pub fn uncovered(&self) -> u64 {
        self.entries.saturating_sub(self.covered)
    }

    /// The verdict for a person (issue 11, item 3): the first problem and further findings,
    /// or OK with the coverage stated: the highest size a signed checkpoint covers and the
    /// uncovered tail. A non-empty log that no checkpoint covers at all fails unless
    /// `accept_uncheckpointed`.
    pub fn verdict(&self, accept_uncheckpointed: bool) -> Verdict {
        self.verdict_within(accept_uncheckpointed, None)
    }

    /// [`verdict`](Self::verdict), and an uncovered tail longer than `max_uncovered` entries
    /// (the checkpoint interval) fails too, unless `accept_uncheckpointed`.
    pub fn verdict_within(
        &self,
        accept_uncheckpointed: bool,
        max_uncovered: Option<u64>,
    ) -> Verdict {
        let coverage = match (self.entries, self.covered) {
            (0, _) => "the log is empty".to_owned(),
            (n, 0) => format!("no signed checkpoint covers any of the {n} entries"),
            (n, c) if c >= n => format!("signed checkpoints cover all {n} entries"),
            (_, c) => format!(
                "signed checkpoints cover entries 1-{c}; the {} entries after entry {c} are covered by none",
                self.uncovered()
            ),
        };
        let mut lines = vec![];
        let ok = match &self.first_problem {
            Some(p) => {
                lines.push(format!("FAILED after {} good entries: {p}", self.entries));
                for f in self.findings.iter().filter(|f| *f != p) {
                    lines.push(format!("  also: {f}"));
                }
                lines.push(format!("  coverage: {coverage}"));
                false
            }
            None if self.entries > 0 && self.covered == 0 && !accept_uncheckpointed => {
                lines.push(format!(
                    "FAILED: {} entries verified, but {coverage}: nothing vouches for the chain \
                     (pass --accept-uncheckpointed to accept it)",
                    self.entries
                ));
                false
            }
            None if self.covered > 0
                && max_uncovered.is_some_and(|max| self.uncovered() > max)
                && !accept_uncheckpointed =>
            {
                lines.push(format!(
                    "FAILED: {} entries verified, but {coverage}, more than the checkpoint interval of {} entries \
                     (pass --accept-uncheckpointed to accept it)",
                    self.entries,
                    max_uncovered.unwrap_or_default()
                ));
                false
            }
            None => {
                lines.push(format!(
                    "OK: {} entries verified, {} checkpoints consistent; {coverage}",
                    self.entries, self.checkpoints_checked
                ));
                true
            }
        };
        Verdict { ok, lines }
    }
}

/// A report as a person reads it: [`Report::verdict`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Whether verification passed.
    pub ok: bool,
    /// The lines to print, the verdict first.
    pub lines: Vec<String>,
}

/// A checkpoint whose size the stream has not reached yet.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Due {
    size: u64,
    root: Hash,
    head: Hash,
    /// Where the checkpoint came from, as [`Verifier::add_checkpoint_from`] was told: named in
    /// the problem it raises.
    source: String,
}

/// ` from <source>` for a problem's detail, or nothing when the source is not known.
fn from_source(source: &str) -> String {
    if source.is_empty() {
        String::new()
    } else {
        format!(" from {source}")
    }
}

/// A failure seen at one entry, classified once the next entry (or the end) is seen.
#[derive(Clone, Copy, Debug)]
enum Pending {
    Gap {
        missing: u64,
        seen: u64,
    },
    Suspect {
        seq: u64,
        hash: Hash,
        prev: Hash,
        self_ok: bool,
    },
}

/// Streaming verifier: [`add_checkpoint`](Self::add_checkpoint) for every checkpoint (before
/// the entry after its size is pushed), [`push`](Self::push) every entry in stored order,
/// then [`finish`](Self::finish).
pub struct Verifier<'a> {
    environment_id: Uuid,
    trusted: Vec<PublicKey>,
    due: BinaryHeap<Reverse<Due>>,
    tree: MerkleTree,
    count: u64,
    last_hash: Hash,
    last_prev: Hash,
    pending: Option<Pending>,
    deferred: Option<Problem>,
    problem: Option<Problem>,
    findings: Vec<Problem>,
    checkpoints_checked: usize,
    last_consistent_size: u64,
    body_buf: Vec<u8>,
    progress: Option<Progress<'a>>,
}

struct Progress<'a> {
    every: u64,
    next: u64,
    callback: Box<dyn FnMut(u64) + 'a>,
}

impl fmt::Debug for Verifier<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("environment_id", &self.environment_id)
            .field("entries", &self.count)
            .field("problem", &self.problem)
            .finish_non_exhaustive()
    }
}

impl<'a> Verifier<'a> {
    pub fn new(environment_id: Uuid, trusted_keys: &[PublicKey]) -> Self {
        Self {
            environment_id,
            trusted: trusted_keys.to_vec(),
            due: BinaryHeap::new(),
            tree: MerkleTree::new(),
            count: 0,
            last_hash: GENESIS_PREV_HASH,
            last_prev: GENESIS_PREV_HASH,
            pending: None,
            deferred: None,
            problem: None,
            findings: vec![],
            checkpoints_checked: 0,
            last_consistent_size: 0,
            body_buf: Vec::with_capacity(1024),
            progress: None,
        }
    }

    /// Calls `callback` with the number of entries verified so far after every `every` entries.
    pub fn with_progress(mut self, every: NonZeroU64, callback: impl FnMut(u64) + 'a) -> Self {
        self.progress = Some(Progress {
            every: every.get(),
            next: every.get(),
            callback: Box::new(callback),
        });
        self
    }

    /// True once the first problem is known: more input cannot change the report.
    pub fn is_done(&self) -> bool {
        self.problem.is_some()
    }

    pub fn add_checkpoint(&mut self, signed: &SignedCheckpoint) {
        self.add_checkpoint_from(signed, "");
    }

    /// [`add_checkpoint`](Self::add_checkpoint) of a checkpoint from `source` (e.g. `the anchor
    /// store`, `kept checkpoint file k/5.checkpoint`), which every problem it raises names.
    pub fn add_checkpoint_from(&mut self, signed: &SignedCheckpoint, source: &str) {
        if self.is_done() {
            return;
        }
        let cp = &signed.checkpoint;
        let from = from_source(source);
        if cp.environment_id != self.environment_id {
            return self.fail(Problem {
                seq: None,
                kind: ProblemKind::WrongEnvironment,
                detail: format!(
                    "checkpoint for size {}{from} is for environment {}",
                    cp.tree_size, cp.environment_id
                ),
            });
        }
        if let Err(e) = signed.verify(&self.trusted) {
            let kind = match e {
                CheckpointError::UnknownKey(_) => ProblemKind::UnknownKey,
                CheckpointError::BadSignature(_) | CheckpointError::Malformed(_) => {
                    ProblemKind::BadSignature
                }
            };
            return self.fail(Problem {
                seq: None,
                kind,
                detail: format!("checkpoint for size {}{from}: {e}", cp.tree_size),
            });
        }
        if cp.tree_size < self.count {
            return self.fail(Problem {
                seq: None,
                kind: ProblemKind::Malformed,
                detail: format!(
                    "checkpoint for size {}{from} came after entry {}; checkpoints must precede the entries after their size",
                    cp.tree_size, self.count
                ),
            });
        }
        self.due.push(Reverse(Due {
            size: cp.tree_size,
            root: cp.root_hash,
            head: cp.last_entry_hash,
            source: source.to_owned(),
        }));
        self.check_due();
    }

    pub fn push(&mut self, entry: &StoredEntry<'_>) {
        self.push_with(entry.seq, entry.prev_hash, entry.entry_hash, |v| {
            v.recompute(entry) == entry.entry_hash
        });
    }

    /// [`push`](Self::push) for an entry whose content the caller has already found to hash
    /// to `entry_hash` (the bundle reader's fast path), so it is not hashed twice.
    pub(crate) fn push_hashed(&mut self, seq: u64, prev_hash: Hash, entry_hash: Hash) {
        self.push_with(seq, prev_hash, entry_hash, |_| true);
    }

    fn push_with(
        &mut self,
        seq: u64,
        prev_hash: Hash,
        entry_hash: Hash,
        content_ok: impl FnOnce(&mut Self) -> bool,
    ) {
        if self.is_done() {
            return;
        }
        if let Some(pending) = self.pending.take() {
            let problem = self.classify(pending, Some((seq, prev_hash, entry_hash)));
            return self.record(problem);
        }
        let expected = self.count + 1;
        if seq > expected {
            self.pending = Some(Pending::Gap {
                missing: expected,
                seen: seq,
            });
            return;
        }
        if seq < expected {
            let problem = self.out_of_order(seq, prev_hash, entry_hash);
            return self.record(problem);
        }
        let link_ok = prev_hash == self.last_hash;
        if !link_ok && self.count > 0 && prev_hash == self.last_prev {
            return self.record(Problem {
                seq: Some(self.count),
                kind: ProblemKind::Inserted,
                detail: format!(
                    "entry {expected} links to entry {}, past entry {}: that entry was slipped into the chain",
                    self.count - 1,
                    self.count
                ),
            });
        }
        let self_ok = content_ok(self);
        if link_ok && self_ok {
            self.accept(entry_hash);
        } else {
            self.pending = Some(Pending::Suspect {
                seq,
                hash: entry_hash,
                prev: prev_hash,
                self_ok,
            });
        }
    }

    pub fn finish(mut self) -> Report {
        if let Some(pending) = self.pending.take() {
            let problem = self.classify(pending, None);
            self.record(problem);
        }
        if let Some(deferred) = self.deferred.take() {
            self.record(deferred);
        }
        if let Some(Reverse(due)) = self.due.peek() {
            let problem = Problem {
                seq: Some(self.count + 1),
                kind: ProblemKind::Missing,
                detail: format!(
                    "a checkpoint{} covers {} entries but the log ends after {}",
                    from_source(&due.source),
                    due.size,
                    self.count
                ),
            };
            self.record(problem);
        }
        let first_problem = self.problem.or_else(|| self.findings.first().cloned());
        Report {
            entries: self.count,
            checkpoints_checked: self.checkpoints_checked,
            covered: self.last_consistent_size,
            root_hash: self.tree.root(),
            first_problem,
            findings: self.findings,
        }
    }

    /// Notes a problem that does not stop verification (a malformed anchored checkpoint is
    /// skipped and the rest still checked): it is reported in [`Report::findings`] and makes
    /// the report unclean.
    pub fn note(&mut self, problem: Problem) {
        self.findings.push(problem);
    }

    /// Entries that passed so far.
    pub fn entries(&self) -> u64 {
        self.count
    }

    /// The Merkle root over the entries that passed so far.
    pub fn root(&self) -> Hash {
        self.tree.root()
    }

    /// The entry hash of the last entry that passed (zeros before the first).
    pub fn last_entry_hash(&self) -> Hash {
        self.last_hash
    }

    /// Records a problem found outside the entry checks (a checkpoint, a bundle line that
    /// does not parse). An entry failure still waiting for its lookahead came first in the
    /// input, so it is classified now, without one.
    pub(crate) fn fail(&mut self, problem: Problem) {
        if let Some(pending) = self.pending.take() {
            let earlier = self.classify(pending, None);
            self.record(earlier);
        }
        self.record(problem);
    }

    fn record(&mut self, problem: Problem) {
        if self.problem.is_some() {
            return;
        }
        // A checkpoint mismatch waits for entry evidence at or before its size, which
        // localizes better; anything later or unplaced loses to it.
        let first = match self.deferred.take() {
            Some(deferred) => match (problem.seq, deferred.seq) {
                (Some(at), Some(size)) if at <= size => problem,
                _ => deferred,
            },
            None => problem,
        };
        self.problem = Some(first);
    }

    fn recompute(&mut self, entry: &StoredEntry<'_>) -> Hash {
        let hash_of = |body: &[u8]| {
            entry_hash_of_canonical(&self.environment_id, entry.seq, &entry.prev_hash, body)
        };
        match entry.body {
            Body::Json(value) => {
                self.body_buf.clear();
                write_canonical_json(value, &mut self.body_buf);
                hash_of(&self.body_buf)
            }
            Body::Text(text) => {
                let as_is = hash_of(text.as_bytes());
                if as_is == entry.entry_hash {
                    return as_is;
                }
                match serde_json::from_str::<Value>(text) {
                    Ok(value) => {
                        self.body_buf.clear();
                        write_canonical_json(&value, &mut self.body_buf);
                        hash_of(&self.body_buf)
                    }
                    Err(_) => as_is,
                }
            }
        }
    }

    fn accept(&mut self, entry_hash: Hash) {
        self.tree.push(merkle_leaf(&entry_hash));
        self.count += 1;
        self.last_prev = self.last_hash;
        self.last_hash = entry_hash;
        self.check_due();
        if let Some(size) = self.deferred.as_ref().and_then(|d| d.seq) {
            if self.count >= size.saturating_add(2) {
                if let Some(deferred) = self.deferred.take() {
                    self.record(deferred);
                }
            }
        }
        if let Some(progress) = &mut self.progress {
            if self.count == progress.next {
                (progress.callback)(self.count);
                progress.next = progress.next.saturating_add(progress.every);
            }
        }
    }

    fn check_due(&mut self) {
        let mut root = None;
        while self
            .due
            .peek()
            .is_some_and(|Reverse(d)| d.size == self.count)
        {
            let Some(Reverse(due)) = self.due.pop() else {
                break;
            };
            let root = *root.get_or_insert_with(|| self.tree.root());
            if due.root == root && due.head == self.last_hash {
                self.checkpoints_checked += 1;
                self.last_consistent_size = due.size;
            } else if self.deferred.is_none() {
                self.deferred = Some(Problem {
                    seq: Some(due.size),
                    kind: ProblemKind::InconsistentWithCheckpoint,
                    detail: format!(
                        "after {} entries the Merkle root is {} and the head {}, but the checkpoint{} signed root {} and head {}; \
                         the log was rewritten after entry {} (the last checkpointed size that matched)",
                        due.size,
                        hex::encode(&root),
                        hex::encode(&self.last_hash),
                        from_source(&due.source),
                        hex::encode(&due.root),
                        hex::encode(&due.head),
                        self.last_consistent_size,
                    ),
                });
            }
        }
    }

    fn out_of_order(&self, seq: u64, prev_hash: Hash, entry_hash: Hash) -> Problem {
        let (at, kind, detail) = if self.count > 0 && seq == self.count {
            if entry_hash == self.last_hash {
                (
                    self.count,
                    ProblemKind::Reordered,
                    format!("entry {} appears twice", self.count),
                )
            } else if prev_hash == self.last_prev {
                (
                    self.count,
                    ProblemKind::Inserted,
                    format!(
                        "two different entries claim seq {} after the same predecessor",
                        self.count
                    ),
                )
            } else {
                (seq, ProblemKind::Reordered, format!("seq {seq} repeats"))
            }
        } else {
            (
                seq,
                ProblemKind::Reordered,
                format!("seq {seq} comes after seq {}", self.count),
            )
        };
        Problem {
            seq: Some(at),
            kind,
            detail,
        }
    }

    /// Decides what a pending failure was, given the next entry's seq, link and hash, if any.
    fn classify(&self, pending: Pending, next: Option<(u64, Hash, Hash)>) -> Problem {
        match pending {
            Pending::Gap { missing, seen } => match next {
                Some((next_seq, _, _)) if next_seq < seen => Problem {
                    seq: Some(missing),
                    kind: ProblemKind::Reordered,
                    detail: format!("entry {seen} is stored before entry {next_seq}"),
                },
                _ => Problem {
                    seq: Some(missing),
                    kind: ProblemKind::Missing,
                    detail: if seen - missing == 1 {
                        format!(
                            "entry {missing} is absent (seq goes from {} to {seen})",
                            missing - 1
                        )
                    } else {
                        format!("entries {missing} to {} are absent", seen - 1)
                    },
                },
            },
            Pending::Suspect {
                seq,
                hash,
                prev,
                self_ok,
            } => {
                let skipped = next.is_some_and(|(_, p, _)| p == self.last_hash);
                let vouched = next.is_some_and(|(_, p, _)| p == hash);
                // Entries `seq` and `seq + 1` traded places with their seqs kept in order: the
                // second links back to the predecessor, the first links to the second.
                let swapped = skipped && next.is_some_and(|(_, _, h)| h == prev);
                if swapped {
                    Problem {
                        seq: Some(seq),
                        kind: ProblemKind::Reordered,
                        detail: format!(
                            "entries {seq} and {} are swapped: entry {} links back to entry {} and entry {seq} links to it",
                            seq + 1,
                            seq + 1,
                            self.count
                        ),
                    }
                } else if skipped {
                    Problem {
                        seq: Some(seq),
                        kind: ProblemKind::Inserted,
                        detail: format!(
                            "the entry after seq {seq} links past it to entry {}: it was slipped into the chain",
                            self.count
                        ),
                    }
                } else if !self_ok {
                    Problem {
                        seq: Some(seq),
                        kind: ProblemKind::Changed,
                        detail: format!(
                            "entry {seq} does not hash to its stored entry hash {}",
                            hex::encode(&hash)
                        ),
                    }
                } else if vouched {
                    let changed = seq.saturating_sub(1).max(1);
                    Problem {
                        seq: Some(changed),
                        kind: ProblemKind::Changed,
                        detail: format!(
                            "entry {seq} is intact and its successor links to it, but its link does not match entry {changed}: \
                             entry {changed} was rewritten and rehashed"
                        ),
                    }
                } else {
                    Problem {
                        seq: Some(seq),
                        kind: ProblemKind::Inserted,
                        detail: format!(
                            "entry {seq} does not link to entry {} and nothing links to it",
                            self.count
                        ),
                    }
                }
            }
        }
    }
}

/// Verifies a whole in-memory or iterated log in one call.
pub fn verify_entries<'e>(
    environment_id: Uuid,
    trusted_keys: &[PublicKey],
    checkpoints: &[SignedCheckpoint],
    entries: impl IntoIterator<Item = StoredEntry<'e>>,
) -> Report {
    let mut verifier = Verifier::new(environment_id, trusted_keys);
    for checkpoint in checkpoints {
        verifier.add_checkpoint(checkpoint);
    }
    for entry in entries {
        if verifier.is_done() {
            break;
        }
        verifier.push(&entry);
    }
    verifier.finish()
}
