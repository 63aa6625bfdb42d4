//! `audit verify --bundle` with evidence kept elsewhere (control L4, issue 11 item 2): a
//! customer's kept checkpoints (`--checkpoints FILE|DIR`, texts or feed pages), an anchor
//! directory (`--anchors DIR`) and monthly reports (`--report FILE`). A bundle of a chain
//! rewritten consistently, with the checkpoints that contradict it left out, verifies on its
//! own under the pinned key; each piece of evidence makes it fail, naming itself. Bad evidence
//! is a clear error or a finding. No server or database: the bundle is built with the audit
//! crate, as an attacker with the database would shape it.

use std::path::{Path, PathBuf};
use std::process::Command;

use portcullis_audit::entry::{entry_hash, merkle_leaf, EntryHashInput, GENESIS_PREV_HASH};
use portcullis_audit::merkle::MerkleTree;
use portcullis_audit::report::{ReportBody, ReportCheckpoint, Window, WindowEntries};
use portcullis_audit::{BundleWriter, Checkpoint, CheckpointSource, SignedCheckpoint, SigningKey};
use serde_json::{json, Value};
use uuid::Uuid;

use super::{scratch, BIN};

struct Case {
    env: Uuid,
    key: SigningKey,
    /// The real checkpoint of the first 4 entries, which the rewritten bundle leaves out.
    real: SignedCheckpoint,
    /// The rewritten log's bundle, checkpointed by a real checkpoint of its own tail (size 6,
    /// cut after the rewrite, as the node would sign it).
    rewritten: PathBuf,
    /// The original log's bundle.
    original: PathBuf,
    dir: PathBuf,
}

fn bodies(forged: bool) -> Vec<Value> {
    (1..=6)
        .map(|i| {
            let actor = if forged && i == 2 { "mallory" } else { "alice" };
            json!({"action": "project.created", "actor": actor, "n": i})
        })
        .collect()
}

fn checkpoint(env: Uuid, key: &SigningKey, hashes: &[[u8; 32]], size: usize) -> SignedCheckpoint {
    let mut tree = MerkleTree::new();
    for h in &hashes[..size] {
        tree.push(merkle_leaf(h));
    }
    key.sign(&Checkpoint {
        environment_id: env,
        tree_size: size as u64,
        root_hash: tree.root(),
        last_entry_hash: hashes[size - 1],
        issued_at: 1_764_000_000 + size as i64,
    })
}

fn write_bundle(
    path: &Path,
    env: Uuid,
    key: &SigningKey,
    bodies: &[Value],
    checkpoint_at: usize,
) -> Vec<[u8; 32]> {
    let mut hashes = vec![];
    let mut prev = GENESIS_PREV_HASH;
    for (i, body) in bodies.iter().enumerate() {
        let h = entry_hash(&EntryHashInput {
            environment_id: env,
            seq: i as u64 + 1,
            prev_hash: prev,
            body,
        });
        hashes.push(h);
        prev = h;
    }
    let mut w = BundleWriter::new(Vec::new(), env, &[key.public_key()]).unwrap();
    w.write_checkpoint(
        &checkpoint(env, key, &hashes, checkpoint_at).to_string(),
        &[CheckpointSource::Database, CheckpointSource::Anchor],
    )
    .unwrap();
    let mut prev = GENESIS_PREV_HASH;
    for (i, body) in bodies.iter().enumerate() {
        w.write_entry(i as u64 + 1, &prev, &hashes[i], body)
            .unwrap();
        prev = hashes[i];
    }
    std::fs::write(path, w.finish().unwrap()).unwrap();
    hashes
}

fn case() -> Case {
    let dir = scratch(&format!("evidence-{}", Uuid::now_v7()));
    let env = Uuid::now_v7();
    let key = SigningKey::generate().unwrap();
    let original = dir.join("original.bundle.jsonl");
    let hashes = write_bundle(&original, env, &key, &bodies(false), 6);
    let rewritten = dir.join("rewritten.bundle.jsonl");
    write_bundle(&rewritten, env, &key, &bodies(true), 6);
    Case {
        env,
        real: checkpoint(env, &key, &hashes, 4),
        key,
        rewritten,
        original,
        dir,
    }
}

impl Case {
    fn verify(&self, bundle: &Path, extra: &[&str]) -> (i32, String) {
        let out = Command::new(BIN)
            .args(["audit", "verify", "--bundle"])
            .arg(bundle)
            .args(["--public-key", &self.key.public_key().to_hex()])
            .args(extra)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code().unwrap_or(-1), text)
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    /// A signed report whose closing checkpoint is `closing`.
    fn report(&self, env: Uuid, closing: &SignedCheckpoint) -> String {
        // Format 1 (no summary for a person): only its checkpoints matter here.
        let body = ReportBody {
            format: portcullis_audit::report::REPORT_FORMAT_V1.into(),
            environment_id: env,
            month: "2026-11".into(),
            window: Window {
                from: "2026-11-01T00:00:00Z".into(),
                to: "2026-12-01T00:00:00Z".into(),
            },
            entries: WindowEntries {
                count: 4,
                first_seq: Some(1),
                last_seq: Some(4),
                jsonl_sha256: "00".repeat(32),
            },
            counts_by_action: [("project.created".to_owned(), 4)].into(),
            log_size_at_close: 4,
            closing_checkpoint: Some(ReportCheckpoint::from_signed(closing)),
            previous: None,
            generated_at: "2026-12-01T08:00:00Z".into(),
            summary: None,
        };
        String::from_utf8(body.sign(&self.key).unwrap().to_json_pretty()).unwrap()
    }
}

/// The attack without evidence: the rewritten bundle verifies under the pinned key.
#[test]
fn l4_a_consistently_rewritten_bundle_verifies_on_its_own() {
    let c = case();
    let (code, out) = c.verify(&c.rewritten, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("OK: 6 entries verified"), "{out}");
}

/// Control L4: a customer's kept checkpoint (a directory of `.checkpoint` files, a file of
/// several texts, a saved page of the checkpoint feed) contradicts the rewritten bundle: exit 1,
/// and the verdict names the kept file. The original bundle verifies with the same evidence.
#[test]
fn l4_kept_checkpoints_contradict_a_rewritten_bundle() {
    let c = case();
    let kept = c.dir.join("kept");
    std::fs::create_dir_all(&kept).unwrap();
    std::fs::write(
        kept.join("00000000000000000004.checkpoint"),
        c.real.to_string(),
    )
    .unwrap();
    let kept = kept.display().to_string();
    let (code, out) = c.verify(&c.rewritten, &["--checkpoints", &kept]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("FAILED"), "{out}");
    assert!(out.contains("InconsistentWithCheckpoint at seq 4"), "{out}");
    assert!(out.contains("from kept checkpoints"), "{out}");
    assert!(out.contains("00000000000000000004.checkpoint"), "{out}");
    let (code, out) = c.verify(&c.original, &["--checkpoints", &kept]);
    assert_eq!(code, 0, "{out}");

    // Several texts in one file.
    let other = checkpoint(c.env, &c.key, &[[7; 32]; 1], 1);
    let both = c.path("both.txt");
    std::fs::write(&both, format!("{}{}", c.real, other)).unwrap();
    let (code, out) = c.verify(&c.original, &["--checkpoints", &both]);
    assert_eq!(
        code, 1,
        "a kept checkpoint of another tree at size 1: {out}"
    );
    assert!(out.contains("(checkpoint 2)"), "{out}");

    // A feed page saved with curl.
    let page = c.path("page.json");
    let feed = json!({"checkpoints": [{"tree_size": 4, "signed": c.real.to_string()}], "next_after": null});
    std::fs::write(&page, feed.to_string()).unwrap();
    let (code, out) = c.verify(&c.rewritten, &["--checkpoints", &page]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("page.json (item 1)"), "{out}");
    let (code, out) = c.verify(&c.original, &["--checkpoints", &page]);
    assert_eq!(code, 0, "{out}");
}

/// Control L4: an anchor directory (`DIR/<environment>/<size>.checkpoint`) and a monthly
/// report's closing checkpoint contradict the rewritten bundle too, each named.
#[test]
fn l4_an_anchor_directory_and_a_monthly_report_contradict_a_rewritten_bundle() {
    let c = case();
    let anchors = c.dir.join("anchors");
    std::fs::create_dir_all(anchors.join(c.env.to_string())).unwrap();
    std::fs::write(
        anchors
            .join(c.env.to_string())
            .join("00000000000000000004.checkpoint"),
        c.real.to_string(),
    )
    .unwrap();
    let anchors = anchors.display().to_string();
    let (code, out) = c.verify(&c.rewritten, &["--anchors", &anchors]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("from anchor directory"), "{out}");
    let (code, out) = c.verify(&c.original, &["--anchors", &anchors]);
    assert_eq!(code, 0, "{out}");

    let report = c.path("2026-11.report.json");
    std::fs::write(&report, c.report(c.env, &c.real)).unwrap();
    let (code, out) = c.verify(&c.rewritten, &["--report", &report]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("from monthly report"), "{out}");
    assert!(out.contains("closing checkpoint"), "{out}");
    let (code, out) = c.verify(&c.original, &["--report", &report]);
    assert_eq!(code, 0, "{out}");
}

/// Control L4: bad evidence. A path that does not exist, an empty directory, an anchor
/// directory without the bundle's environment, a report of another environment or not a
/// report at all: a clear error, exit non-zero without a verdict. A kept file that is not a
/// checkpoint, or not UTF-8: a finding (exit 1), and the chain is still verified.
#[test]
fn l4_malformed_evidence_is_an_error_or_a_finding() {
    let c = case();
    let missing = c.path("nothing-here");
    let (code, out) = c.verify(&c.original, &["--checkpoints", &missing]);
    assert_ne!(code, 0);
    assert!(out.contains("cannot read it"), "{out}");

    let empty = c.dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let (code, out) = c.verify(
        &c.original,
        &["--checkpoints", &empty.display().to_string()],
    );
    assert_ne!(code, 0);
    assert!(out.contains("holds no .checkpoint or .json file"), "{out}");

    let (code, out) = c.verify(&c.original, &["--anchors", &empty.display().to_string()]);
    assert_ne!(code, 0);
    assert!(out.contains("no anchors of environment"), "{out}");

    let foreign = c.path("foreign.report.json");
    std::fs::write(&foreign, c.report(Uuid::now_v7(), &c.real)).unwrap();
    let (code, out) = c.verify(&c.original, &["--report", &foreign]);
    assert_ne!(code, 0);
    assert!(out.contains("the bundle for"), "{out}");
    let junk = c.path("junk.report.json");
    std::fs::write(&junk, "{\"format\":\"something else\"}").unwrap();
    let (code, out) = c.verify(&c.original, &["--report", &junk]);
    assert_ne!(code, 0);
    assert!(out.contains("not a signed monthly report"), "{out}");

    let garbage = c.dir.join("garbage");
    std::fs::create_dir_all(&garbage).unwrap();
    std::fs::write(garbage.join("a.checkpoint"), "not a checkpoint\n").unwrap();
    std::fs::write(garbage.join("b.checkpoint"), [0xff, 0xfe, 0x00]).unwrap();
    std::fs::write(garbage.join("c.json"), "{\"checkpoints\": 3}").unwrap();
    std::fs::write(garbage.join("d.checkpoint"), c.real.to_string()).unwrap();
    let (code, out) = c.verify(
        &c.original,
        &["--checkpoints", &garbage.display().to_string()],
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("Malformed"), "{out}");
    assert!(
        out.contains("a.checkpoint is not a signed checkpoint"),
        "{out}"
    );
    assert!(out.contains("b.checkpoint is not UTF-8"), "{out}");
    assert!(
        out.contains("c.json is not a checkpoint feed page"),
        "{out}"
    );
    assert!(out.contains("6 good entries"), "{out}");

    // The flags need a bundle.
    let out = Command::new(BIN)
        .args([
            "audit",
            "verify",
            "--environment",
            &c.env.to_string(),
            "--checkpoints",
            &missing,
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
