//! The export bundle (controls L3, L5): one JSON Lines file an auditor verifies offline.
//!
//! ```text
//! {"format":"portcullis-audit-bundle/v2","environment_id":"<uuid>","public_keys":[{"key_id":"<16 hex>","public_key":"<64 hex>"}]}
//! {"checkpoint":"<signed checkpoint text>","sources":["database","anchor"]}
//! {"seq":1,"prev_hash":"<64 hex>","entry_hash":"<64 hex>","body":<canonical JSON>}
//! ...
//! ```
//!
//! Line 1 is the header. Each further line is a checkpoint or an entry. Entries are in seq
//! order from 1. A checkpoint line must come before the entry line whose seq is its size plus
//! one, so a streaming verifier knows it when it gets there; [`BundleWriter`] puts all of
//! them right after the header. The header's keys say which keys signed; trusting them is the
//! auditor's decision ([`KeyTrust`]), since whoever wrote the bundle also wrote that list.
//!
//! Version 2 (issue 11) carries the anchored checkpoints too, each line saying where its
//! checkpoint was found (`sources`: the database, the write-once anchor store, or both), and a
//! checkpoint text that does not parse is a finding, not the end of verification. Version 1
//! bundles (checkpoint lines without `sources`) still verify.

use std::io::{self, BufRead, Write};
use std::num::NonZeroU64;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;
use uuid::Uuid;

use crate::canonical::write_canonical_json;
use crate::checkpoint::{PublicKey, SignedCheckpoint};
use crate::entry::entry_hash_of_canonical;
use crate::verify::{Body, Problem, ProblemKind, Report, StoredEntry, Verifier};
use crate::{hex, Hash};

pub const BUNDLE_FORMAT: &str = "portcullis-audit-bundle/v2";
/// The first version: database checkpoints only, checkpoint lines without `sources`.
/// Still verified.
pub const BUNDLE_FORMAT_V1: &str = "portcullis-audit-bundle/v1";

/// Where an exported checkpoint was found (bundle v2 `sources`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckpointSource {
    /// `audit_checkpoints`: reachable by whoever has the database.
    Database,
    /// The write-once anchor store (L4): a directory or S3 Object Lock.
    Anchor,
}

/// How a bundle's checkpoint from `sources` is named in a verdict.
fn bundle_source(sources: &[CheckpointSource]) -> Option<&'static str> {
    use CheckpointSource::{Anchor, Database};
    match sources {
        [Database] => Some("the bundle (database)"),
        [Anchor] => Some("the bundle (anchor store; not in the database)"),
        [Database, Anchor] | [Anchor, Database] => Some("the bundle (database and anchor store)"),
        _ => None,
    }
}

/// A checkpoint the auditor holds from elsewhere, and where from (named in the verdict: `kept
/// checkpoint file k/00000000000000000005.checkpoint`, `anchor directory /mnt/anchors`, ...).
#[derive(Clone, Debug)]
pub struct HeldCheckpoint {
    pub checkpoint: SignedCheckpoint,
    pub source: String,
}
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    format: String,
    environment_id: String,
    public_keys: Vec<KeyEntry>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyEntry {
    key_id: String,
    public_key: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryLine<'a> {
    seq: u64,
    prev_hash: &'a str,
    entry_hash: &'a str,
    #[serde(borrow)]
    body: &'a RawValue,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckpointLine {
    checkpoint: String,
    /// Version 2 only, and required there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sources: Option<Vec<CheckpointSource>>,
}

/// The bundle format versions this crate reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Version {
    V1,
    V2,
}

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("reading or writing the bundle failed")]
    Io(#[from] io::Error),
    #[error("not a portcullis audit bundle: {0}")]
    Header(String),
}

/// Writes a bundle. Bodies are written canonically, which keeps verification on its fast path.
#[derive(Debug)]
pub struct BundleWriter<W: Write> {
    out: W,
    line: Vec<u8>,
}

impl<W: Write> BundleWriter<W> {
    pub fn new(mut out: W, environment_id: Uuid, public_keys: &[PublicKey]) -> io::Result<Self> {
        let header = Header {
            format: BUNDLE_FORMAT.to_owned(),
            environment_id: environment_id.hyphenated().to_string(),
            public_keys: public_keys
                .iter()
                .map(|k| KeyEntry {
                    key_id: k.key_id().to_string(),
                    public_key: k.to_hex(),
                })
                .collect(),
        };
        serde_json::to_writer(&mut out, &header)?;
        out.write_all(b"\n")?;
        Ok(Self {
            out,
            line: Vec::with_capacity(1024),
        })
    }

    /// A checkpoint line: the checkpoint's text as it was found (a stored text that does not
    /// parse is written as it is, for the verifier to report) and where it was found, which
    /// must be one or both sources.
    pub fn write_checkpoint(
        &mut self,
        checkpoint: &str,
        sources: &[CheckpointSource],
    ) -> io::Result<()> {
        let mut sources = sources.to_vec();
        sources.sort();
        sources.dedup();
        if sources.is_empty() {
            return Err(io::Error::other(
                "a checkpoint line needs at least one source",
            ));
        }
        let line = CheckpointLine {
            checkpoint: checkpoint.to_owned(),
            sources: Some(sources),
        };
        serde_json::to_writer(&mut self.out, &line)?;
        self.out.write_all(b"\n")
    }

    pub fn write_entry(
        &mut self,
        seq: u64,
        prev_hash: &Hash,
        entry_hash: &Hash,
        body: &Value,
    ) -> io::Result<()> {
        let line = &mut self.line;
        line.clear();
        line.extend_from_slice(b"{\"seq\":");
        line.extend_from_slice(seq.to_string().as_bytes());
        line.extend_from_slice(b",\"prev_hash\":\"");
        hex::encode_into(prev_hash, line);
        line.extend_from_slice(b"\",\"entry_hash\":\"");
        hex::encode_into(entry_hash, line);
        line.extend_from_slice(b"\",\"body\":");
        write_canonical_json(body, line);
        line.extend_from_slice(b"}\n");
        self.out.write_all(line)
    }

    /// Flushes and returns the underlying writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Which public keys a checkpoint may be signed with.
#[derive(Clone, Copy, Debug)]
pub enum KeyTrust<'a> {
    /// Keys the auditor obtained independently of the bundle. Use this.
    Pinned(&'a [PublicKey]),
    /// The keys the bundle's header lists. This proves only that the bundle agrees with
    /// itself: whoever could rewrite the log could also re-sign and list a new key.
    BundleKeys,
}

pub struct VerifyOptions<'a> {
    pub trust: KeyTrust<'a>,
    /// Checkpoints the auditor holds from elsewhere (write-once storage, L4, copies kept from
    /// the checkpoint feed, monthly reports). The bundle's author can leave checkpoints out; it
    /// cannot take these away.
    pub extra_checkpoints: &'a [HeldCheckpoint],
    /// Problems in that evidence found before verification (a kept file that is not a
    /// checkpoint): reported as findings, and verification goes on with the rest.
    pub evidence_findings: &'a [Problem],
    /// Called with the number of verified entries every so many entries.
    pub progress: Option<(NonZeroU64, &'a mut dyn FnMut(u64))>,
}

impl<'a> VerifyOptions<'a> {
    pub fn pinned(keys: &'a [PublicKey]) -> Self {
        Self {
            trust: KeyTrust::Pinned(keys),
            extra_checkpoints: &[],
            evidence_findings: &[],
            progress: None,
        }
    }
}

impl std::fmt::Debug for VerifyOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyOptions")
            .field("trust", &self.trust)
            .field("extra_checkpoints", &self.extra_checkpoints.len())
            .field("evidence_findings", &self.evidence_findings.len())
            .field("progress_every", &self.progress.as_ref().map(|p| p.0))
            .finish()
    }
}

/// Verifies a bundle as it streams by, in memory independent of its length. An I/O failure
/// or a first line that is not a bundle header is an error; everything after that — tampering
/// or a line that does not parse — is the report's first problem.
/// Lines read per batch of [`verify_bundle`].
const BATCH_LINES: usize = 16_384;
/// Smaller batches (the tail of a file) are hashed on one thread.
const PARALLEL_FROM: usize = 2_048;

pub fn verify_bundle<R: BufRead>(
    mut reader: R,
    options: VerifyOptions<'_>,
) -> Result<Report, BundleError> {
    let mut line = Vec::with_capacity(4096);
    if reader.read_until(b'\n', &mut line)? == 0 {
        return Err(BundleError::Header("the file is empty".into()));
    }
    let (version, environment_id, listed_keys) = parse_versioned_header(trim_newline(&line))?;
    let trusted = match options.trust {
        KeyTrust::Pinned(keys) => keys,
        KeyTrust::BundleKeys => listed_keys.as_slice(),
    };
    let mut verifier = Verifier::new(environment_id, trusted);
    if let Some((every, callback)) = options.progress {
        verifier = verifier.with_progress(every, callback);
    }
    for finding in options.evidence_findings {
        verifier.note(finding.clone());
    }
    for held in options.extra_checkpoints {
        verifier.add_checkpoint_from(&held.checkpoint, &held.source);
    }

    // Lines are read in batches. The fast path (split the line without a JSON parser, hash the
    // entry) is most of the work and independent per line, so a batch's lines are hashed on
    // all cores; the chain itself is then checked in order on this thread.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 20);
    let mut spans: Vec<(usize, usize)> = Vec::with_capacity(BATCH_LINES);
    let mut fast: Vec<Option<(u64, Hash, Hash)>> = Vec::with_capacity(BATCH_LINES);
    let mut line_no = 1u64;
    'batches: while !verifier.is_done() {
        buf.clear();
        spans.clear();
        while spans.len() < BATCH_LINES {
            let start = buf.len();
            if reader.read_until(b'\n', &mut buf)? == 0 {
                break;
            }
            spans.push((start, buf.len()));
        }
        if spans.is_empty() {
            break;
        }
        fast.clear();
        fast.resize(spans.len(), None);
        let hash_line = |&(start, end): &(usize, usize)| -> Option<(u64, Hash, Hash)> {
            let entry = exact_entry(trim_newline(&buf[start..end]))?;
            let content =
                entry_hash_of_canonical(&environment_id, entry.seq, &entry.prev_hash, entry.body);
            (content == entry.entry_hash).then_some((entry.seq, entry.prev_hash, entry.entry_hash))
        };
        if threads > 1 && spans.len() >= PARALLEL_FROM {
            let per = spans.len().div_ceil(threads);
            let hash_line = &hash_line;
            std::thread::scope(|scope| {
                for (out, lines) in fast.chunks_mut(per).zip(spans.chunks(per)) {
                    scope.spawn(move || {
                        for (o, span) in out.iter_mut().zip(lines) {
                            *o = hash_line(span);
                        }
                    });
                }
            });
        } else {
            for (o, span) in fast.iter_mut().zip(&spans) {
                *o = hash_line(span);
            }
        }
        for (&(start, end), hashed) in spans.iter().zip(&fast) {
            if verifier.is_done() {
                break 'batches;
            }
            line_no += 1;
            if let Some((seq, prev_hash, entry_hash)) = *hashed {
                verifier.push_hashed(seq, prev_hash, entry_hash);
                continue;
            }
            let text = trim_newline(&buf[start..end]);
            let entry_err = match serde_json::from_slice::<EntryLine<'_>>(text) {
                Ok(entry) => {
                    match (hex::decode(entry.prev_hash), hex::decode(entry.entry_hash)) {
                        (Some(prev_hash), Some(entry_hash)) => verifier.push(&StoredEntry {
                            seq: entry.seq,
                            prev_hash,
                            entry_hash,
                            body: Body::Text(entry.body.get()),
                        }),
                        _ => verifier.fail(malformed(
                            Some(entry.seq),
                            line_no,
                            "a hash is not 64 lowercase hex digits",
                        )),
                    }
                    continue;
                }
                Err(e) => e,
            };
            match serde_json::from_slice::<CheckpointLine>(text) {
                Ok(line) => checkpoint_line(&mut verifier, version, line, line_no),
                Err(_) => verifier.fail(malformed(
                    None,
                    line_no,
                    &format!("neither an entry nor a checkpoint ({entry_err})"),
                )),
            }
        }
    }
    Ok(verifier.finish())
}

/// A checkpoint line of a bundle of `version`.
fn checkpoint_line(
    verifier: &mut Verifier<'_>,
    version: Version,
    line: CheckpointLine,
    line_no: u64,
) {
    let source = match (version, line.sources.as_deref()) {
        (Version::V1, None) => "the bundle",
        (Version::V2, Some(sources)) => match bundle_source(sources) {
            Some(source) => source,
            None => {
                return verifier.fail(malformed(
                    None,
                    line_no,
                    "sources must be \"database\", \"anchor\" or both, each once",
                ))
            }
        },
        (Version::V1, Some(_)) => {
            return verifier.fail(malformed(
                None,
                line_no,
                "a version 1 checkpoint line has no sources",
            ))
        }
        (Version::V2, None) => {
            return verifier.fail(malformed(
                None,
                line_no,
                "a version 2 checkpoint line says where it was found (sources)",
            ))
        }
    };
    match (line.checkpoint.parse::<SignedCheckpoint>(), version) {
        (Ok(checkpoint), _) => verifier.add_checkpoint_from(&checkpoint, source),
        (Err(e), Version::V1) => verifier.fail(malformed(None, line_no, &e.to_string())),
        // Exported as found (a damaged anchor file, a row someone wrote): a finding, and the
        // rest is still verified, as `verify --environment` does.
        (Err(e), Version::V2) => verifier.note(malformed(
            None,
            line_no,
            &format!("the checkpoint from {source} does not parse: {e}"),
        )),
    }
}

struct ExactEntry<'a> {
    seq: u64,
    prev_hash: Hash,
    entry_hash: Hash,
    body: &'a [u8],
}

/// Splits an entry line laid out exactly as [`BundleWriter`] writes it, without a JSON
/// parser (parsing would cost more than all the hashing). Whatever is between `"body":` and
/// the final `}` is taken as the body. If it hashes to the entry hash, these are the bytes the
/// entry hash commits to, and for any entry the log wrote — in particular every entry a
/// checkpoint covers — that is canonical JSON (the writer hashes nothing else, and SHA-256 is
/// collision resistant). Any other outcome goes through the full parser, which also
/// classifies what is wrong. (Only past the last checkpoint, where nothing is anchored and a
/// forger could append well-formed entries anyway, could hand-made non-JSON bytes pass here.)
fn exact_entry(line: &[u8]) -> Option<ExactEntry<'_>> {
    let rest = line.strip_prefix(b"{\"seq\":")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let (seq, rest) = rest.split_at(digits);
    if seq.is_empty() || (seq.len() > 1 && seq[0] == b'0') {
        return None;
    }
    let seq = seq.iter().try_fold(0u64, |n, d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })?;
    let rest = rest.strip_prefix(b",\"prev_hash\":\"")?;
    let prev_hash = hex::decode_bytes(rest.get(..64)?)?;
    let rest = rest[64..].strip_prefix(b"\",\"entry_hash\":\"")?;
    let entry_hash = hex::decode_bytes(rest.get(..64)?)?;
    let body = rest[64..]
        .strip_prefix(b"\",\"body\":")?
        .strip_suffix(b"}")?;
    Some(ExactEntry {
        seq,
        prev_hash,
        entry_hash,
        body,
    })
}

fn malformed(seq: Option<u64>, line_no: u64, why: &str) -> Problem {
    Problem {
        seq,
        kind: ProblemKind::Malformed,
        detail: format!("line {line_no}: {why}"),
    }
}

fn trim_newline(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\n").unwrap_or(line)
}

pub(crate) fn parse_header(line: &[u8]) -> Result<(Uuid, Vec<PublicKey>), BundleError> {
    parse_versioned_header(line).map(|(_, env, keys)| (env, keys))
}

/// The environment a bundle's header (its first line) names: which evidence to gather before
/// verifying it (`audit verify --bundle --anchors DIR` reads that environment's anchors).
pub fn header_environment(line: &[u8]) -> Result<Uuid, BundleError> {
    parse_header(trim_newline(line)).map(|(env, _)| env)
}

fn parse_versioned_header(line: &[u8]) -> Result<(Version, Uuid, Vec<PublicKey>), BundleError> {
    let bad = |why: String| BundleError::Header(why);
    let header: Header =
        serde_json::from_slice(line).map_err(|e| bad(format!("first line: {e}")))?;
    let version = match header.format.as_str() {
        BUNDLE_FORMAT => Version::V2,
        BUNDLE_FORMAT_V1 => Version::V1,
        _ => return Err(bad(format!("unknown format {:?}", header.format))),
    };
    let environment_id = Uuid::try_parse(&header.environment_id)
        .ok()
        .filter(|id| id.hyphenated().to_string() == header.environment_id)
        .ok_or_else(|| bad("environment_id is not a lowercase hyphenated UUID".into()))?;
    let mut keys = Vec::with_capacity(header.public_keys.len());
    for entry in &header.public_keys {
        let key = PublicKey::from_hex(&entry.public_key).ok_or_else(|| {
            bad(format!(
                "public key {:?} is not 64 lowercase hex",
                entry.key_id
            ))
        })?;
        if key.key_id().to_string() != entry.key_id {
            return Err(bad(format!(
                "key id {:?} does not match its public key ({})",
                entry.key_id,
                key.key_id()
            )));
        }
        keys.push(key);
    }
    Ok((version, environment_id, keys))
}
