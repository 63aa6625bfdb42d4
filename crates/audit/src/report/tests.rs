//! The report's unit tests: a small in-memory log, reports generated from it, and every way
//! of changing one that a check must catch.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::*;
use crate::checkpoint::{Checkpoint, PublicKey, SignedCheckpoint, SigningKey};
use crate::entry::{entry_hash, merkle_leaf, EntryHashInput, GENESIS_PREV_HASH};
use crate::merkle::consistency_proof;
use crate::{hex, Hash};

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
        self.add_with(at, action, serde_json::json!({}));
    }

    /// An entry with further members (`outcome`, `actor_id`, `after`, ...).
    fn add_with(&mut self, at: &str, action: &str, extra: Value) {
        let seq = self.entries.len() as u64 + 1;
        let prev = self.entries.last().map_or(GENESIS_PREV_HASH, |e| e.2);
        let mut body = serde_json::json!({ "occurred_at": at, "action": action, "n": seq });
        if let (Value::Object(b), Value::Object(x)) = (&mut body, extra) {
            b.extend(x);
        }
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
        self.tally_by(month, watch, default_rules())
    }

    fn tally_by(&self, month: Month, watch: &[u64], rules: Vec<PrivilegedRule>) -> TallyResult {
        let mut t = Tally::new(self.env, month, watch).with_rules(rules);
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
            format: REPORT_FORMAT_V1.into(),
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
            summary: None,
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
        let tally = self.tally_by(month, &watched_sizes(&report.body), rules_of(&report.body));
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
    let v3 = String::from_utf8(report.to_json_pretty())
        .unwrap()
        .replace("report/1", "report/3");
    assert_eq!(
        SignedReport::parse(v3.as_bytes()).unwrap_err().field,
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
        let mut w = crate::bundle::BundleWriter::new(Vec::new(), env, &[key.public_key()]).unwrap();
        w.write_checkpoint(
            &log.checkpoint(&key, 6).to_string(),
            &[crate::bundle::CheckpointSource::Database],
        )
        .unwrap();
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

/// A format-2 report of `log` for March 2026: format 1's members and a summary from the
/// tally, as the generator makes it (verdict and names as the generator saw them).
fn report_v2(log: &Log, key: &SigningKey) -> SignedReport {
    let v1 = log.report(key, "2026-03", &[2, log.entries.len() as u64]);
    let t = log.tally("2026-03".parse().unwrap(), &[]);
    let mut body = v1.body;
    body.format = REPORT_FORMAT.into();
    body.summary = Some(Summary {
        environment_name: Some("Acme".into()),
        verdict: LogVerdict {
            status: VerdictStatus::Verified,
            log_size: t.size,
            verified_through: t.size,
            checkpoints_verified: 2,
            covered_through: t.size,
            anchors: AnchorPlace {
                kind: "local_directory".into(),
                location: "/var/lib/portcullis/anchors".into(),
            },
            anomalies: vec![],
        },
        activity: t.activity,
        privileged: Privileged {
            rules: default_rules(),
            changes: t.privileged_changes,
        },
        people: Default::default(),
    });
    body.sign(key).unwrap()
}

fn activity_log() -> Log {
    let mut log = sample();
    let bob = "0190f3c4-0000-7000-8000-00000000000b";
    let ada = "0190f3c4-0000-7000-8000-00000000000a";
    for (at, action, extra) in [
        (
            "2026-03-03T10:00:00.000000Z",
            "authorization.denied",
            serde_json::json!({"outcome": "denied", "actor_type": "identity", "actor_id": bob, "after": {"code": "role_access_denied", "suppressed_before": 4}}),
        ),
        (
            "2026-03-03T10:00:01.000000Z",
            "authorization.denied",
            serde_json::json!({"outcome": "denied", "actor_type": "identity", "actor_id": bob, "after": {"code": "role_access_denied", "suppressed_before": 0}}),
        ),
        (
            "2026-03-04T10:00:00.000000Z",
            "auth.login_failed",
            serde_json::json!({"outcome": "failure", "actor_type": "anonymous"}),
        ),
        (
            "2026-03-05T10:00:00.000000Z",
            "member.role_changed",
            serde_json::json!({"outcome": "success", "actor_type": "identity", "actor_id": ada, "target_type": "identity", "target_id": bob, "before": {"role": "admin"}, "after": {"role": "viewer"}}),
        ),
        (
            "2026-03-06T10:00:00.000000Z",
            "token.created",
            serde_json::json!({"outcome": "success", "actor_type": "identity", "actor_id": ada, "after": {"name": "ci", "role": "viewer"}}),
        ),
        (
            "2026-03-07T10:00:00.000000Z",
            "token.created",
            serde_json::json!({"outcome": "success", "actor_type": "identity", "actor_id": ada, "after": {"name": "deploy", "role": "admin"}}),
        ),
        (
            "2026-03-08T10:00:00.000000Z",
            "keys.rotated",
            serde_json::json!({"outcome": "success", "actor_type": "system", "after": {"version": 2, "reason": "scheduled"}}),
        ),
        // April: outside the window.
        (
            "2026-04-02T10:00:00.000000Z",
            "keys.rotated",
            serde_json::json!({"outcome": "success", "actor_type": "system"}),
        ),
    ] {
        log.add_with(at, action, extra);
    }
    log
}

/// Control L6 (issue 11): the summary's facts are the entries': outcomes, refusals by actor
/// (with what the rate limit left out), and the privileged changes the report's own rules
/// pick (a token only when it acts as admin or owner). A report of format 2 verifies.
#[test]
fn l6_summary_states_refusals_and_privileged_changes_from_the_entries() {
    let log = activity_log();
    let key = SigningKey::from_seed(&SEED).unwrap();
    let report = report_v2(&log, &key);
    let s = report.body.summary.as_ref().unwrap();
    let a = &s.activity;
    assert_eq!(a.by_outcome["denied"], 2);
    assert_eq!(a.by_outcome["failure"], 1);
    assert_eq!(a.not_successful["authorization.denied"]["denied"], 2);
    assert_eq!(a.denials_suppressed, 4);
    assert_eq!(a.top_denied_actors.len(), 1);
    assert_eq!(a.top_denied_actors[0].denials, 2);
    let picked: Vec<(&str, u64)> = s
        .privileged
        .changes
        .iter()
        .map(|c| (c.action.as_str(), c.seq))
        .collect();
    assert_eq!(
        picked,
        vec![
            ("member.role_changed", 10),
            ("token.created", 12),
            ("keys.rotated", 13)
        ]
    );
    assert_eq!(
        s.privileged.changes[0].before,
        serde_json::json!({"role": "admin"})
    );
    assert_eq!(
        log.verify(&report.to_json_pretty(), &[key.public_key()]),
        vec![]
    );
}

/// Control L6 (issue 11): every summary member the entries fix is checked, edited or re-signed;
/// the verdict must be coherent; a stated failure never verifies as clean; format 1 reports
/// still verify and the two formats cannot be mixed.
#[test]
fn l6_edited_summaries_and_stated_failures_are_findings() {
    let log = activity_log();
    let key = SigningKey::from_seed(&SEED).unwrap();
    let trusted = [key.public_key()];
    let report = report_v2(&log, &key);
    let json: Value = serde_json::from_slice(&report.to_json_pretty()).unwrap();
    for (pointer, value, field) in [
        (
            "/summary/activity/by_outcome/denied",
            serde_json::json!(1),
            "summary.activity",
        ),
        (
            "/summary/activity/denials_suppressed",
            serde_json::json!(0),
            "summary.activity",
        ),
        (
            "/summary/activity/top_denied_actors",
            serde_json::json!([]),
            "summary.activity",
        ),
        (
            "/summary/privileged/changes/0/after/role",
            serde_json::json!("owner"),
            "summary.privileged.changes",
        ),
        (
            "/summary/verdict/verified_through",
            serde_json::json!(3),
            "summary.verdict.verified_through",
        ),
        (
            "/summary/verdict/anchors/kind",
            serde_json::json!("nowhere"),
            "summary.verdict.anchors.kind",
        ),
        (
            "/summary/environment_name",
            serde_json::json!("Someone else"),
            "signature",
        ),
    ] {
        let mut edited = json.clone();
        *edited.pointer_mut(pointer).unwrap() = value;
        let findings = log.verify(&serde_json::to_vec(&edited).unwrap(), &trusted);
        assert!(
            fields(&findings).contains(&field),
            "{pointer}: {findings:?}"
        );
        assert!(
            fields(&findings).contains(&"signature"),
            "{pointer}: {findings:?}"
        );
    }

    // Re-signed with a privileged change left out: the entries say otherwise.
    let mut body = report.body.clone();
    body.summary.as_mut().unwrap().privileged.changes.remove(1);
    let findings = log.verify(&body.sign(&key).unwrap().to_json_pretty(), &trusted);
    assert_eq!(
        fields(&findings),
        vec!["summary.privileged.changes"],
        "{findings:?}"
    );
    assert!(findings[0].reason.contains("[10, 13]") && findings[0].reason.contains("[10, 12, 13]"));

    // Re-signed with the token rule removed: checked against its own (weaker) rules, and the
    // PDF's appendix states them; with the change still listed, the entries disagree.
    let mut body = report.body.clone();
    body.summary
        .as_mut()
        .unwrap()
        .privileged
        .rules
        .retain(|r| r.action != "token.created");
    let findings = log.verify(&body.clone().sign(&key).unwrap().to_json_pretty(), &trusted);
    assert_eq!(
        fields(&findings),
        vec!["summary.privileged.changes"],
        "{findings:?}"
    );
    body.summary
        .as_mut()
        .unwrap()
        .privileged
        .changes
        .retain(|c| c.action != "token.created");
    assert_eq!(
        log.verify(&body.sign(&key).unwrap().to_json_pretty(), &trusted),
        vec![]
    );

    // A stated failure is a finding even over an intact log; incoherent verdicts too.
    let failed = |edit: &dyn Fn(&mut LogVerdict)| {
        let mut body = report.body.clone();
        edit(&mut body.summary.as_mut().unwrap().verdict);
        log.verify(&body.sign(&key).unwrap().to_json_pretty(), &trusted)
    };
    let anomaly = Anomaly {
        kind: "Changed".into(),
        seq: Some(6),
        detail: "edited".into(),
    };
    let a = anomaly.clone();
    let findings = failed(&move |v| {
        v.status = VerdictStatus::Failed;
        v.anomalies = vec![a.clone()];
    });
    assert_eq!(fields(&findings), vec!["summary.verdict"], "{findings:?}");
    assert!(
        findings[0].reason.contains("Changed at entry 6: edited"),
        "{findings:?}"
    );
    let findings = failed(&|v| v.status = VerdictStatus::Failed);
    assert_eq!(fields(&findings), vec!["summary.verdict.anomalies"]);
    let findings = failed(&move |v| v.anomalies = vec![anomaly.clone()]);
    assert_eq!(fields(&findings), vec!["summary.verdict.status"]);

    // Formats: 2 needs a summary, 1 has none; anything else is unknown.
    let mut body = report.body.clone();
    body.summary = None;
    let findings = log.verify(&body.sign(&key).unwrap().to_json_pretty(), &trusted);
    assert_eq!(fields(&findings), vec!["summary"], "{findings:?}");
    let mut body = report.body.clone();
    body.format = REPORT_FORMAT_V1.into();
    let findings = log.verify(&body.sign(&key).unwrap().to_json_pretty(), &trusted);
    assert_eq!(fields(&findings), vec!["summary"], "{findings:?}");
    let v1 = log.report(&key, "2026-03", &[2, log.entries.len() as u64]);
    assert_eq!(v1.body.format, REPORT_FORMAT_V1);
    assert_eq!(log.verify(&v1.to_json_pretty(), &trusted), vec![]);
    let mut other = json.clone();
    other["format"] = "portcullis-audit-report/3".into();
    let findings = log.verify(&serde_json::to_vec(&other).unwrap(), &trusted);
    assert_eq!(fields(&findings), vec!["format"], "{findings:?}");
}
