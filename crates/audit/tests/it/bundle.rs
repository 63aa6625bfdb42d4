//! The export bundle (controls L3, L5): what an auditor verifies offline, and how the
//! verifier treats bundles that are reformatted, malformed or incomplete.

use std::num::NonZeroU64;

use crate::support::*;
use portcullis_audit::{
    verify_bundle, BundleError, CheckpointSource, HeldCheckpoint, KeyTrust, ProblemKind,
    VerifyOptions,
};

fn lines(bytes: &[u8]) -> Vec<String> {
    String::from_utf8(bytes.to_vec())
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn join(lines: &[String]) -> Vec<u8> {
    let mut out = lines.join("\n");
    out.push('\n');
    out.into_bytes()
}

#[test]
fn l3_bundle_layout_is_header_checkpoints_entries() {
    let signer = key(1);
    let rows = chain((1..=2).map(|i| body(i, "alice")).collect());
    let cp = checkpoint(&rows, 2, &signer);
    let text = lines(&bundle(
        &[signer.public_key()],
        std::slice::from_ref(&cp),
        &rows,
    ));
    assert_eq!(text.len(), 4);
    assert_eq!(
        text[0],
        format!(
            r#"{{"format":"portcullis-audit-bundle/v2","environment_id":"0190f3c4-5b6a-7d8e-9f01-23456789abcd","public_keys":[{{"key_id":"{}","public_key":"{}"}}]}}"#,
            signer.key_id(),
            signer.public_key().to_hex()
        )
    );
    assert_eq!(
        text[1],
        serde_json::json!({"checkpoint": cp.to_string(), "sources": ["database"]}).to_string()
    );
    assert!(
        text[2].starts_with(r#"{"seq":1,"prev_hash":"0000"#),
        "{}",
        text[2]
    );
    assert!(
        text[3].ends_with(r#""body":{"action":"secret.read","actor":"alice","meta":{"ip":"10.0.0.1","ok":true},"n":2}}"#),
        "{}",
        text[3]
    );
}

/// Control L3: a bundle re-serialized by another tool (key order, whitespace) still
/// verifies: the verifier falls back to parsing and re-encoding the body.
#[test]
fn l3_reformatted_bodies_still_verify() {
    let signer = key(1);
    let trusted = [signer.public_key()];
    let rows = chain((1..=5).map(|i| body(i, "alice")).collect());
    let cp = checkpoint(&rows, 5, &signer);
    let mut text = lines(&bundle(&trusted, &[cp], &rows));
    for line in &mut text[2..] {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        *line = serde_json::to_string_pretty(&v).unwrap().replace('\n', " ");
    }
    let report = verify_bytes(&join(&text), &trusted);
    assert!(report.is_clean(), "{:?}", report.first_problem);
    assert_eq!(report.entries, 5);
}

#[test]
fn l3_malformed_lines_are_reported_with_their_line_number() {
    let signer = key(1);
    let trusted = [signer.public_key()];
    let rows = chain((1..=4).map(|i| body(i, "alice")).collect());
    let good = lines(&bundle(&trusted, &[], &rows));

    let mut garbage = good.clone();
    garbage[2] = "not json".into();
    let p = verify_bytes(&join(&garbage), &trusted)
        .first_problem
        .unwrap();
    assert_eq!((p.seq, p.kind), (None, ProblemKind::Malformed));
    assert!(p.detail.starts_with("line 3:"), "{}", p.detail);

    let mut upper = good.clone();
    let prev: serde_json::Value = serde_json::from_str(&good[3]).unwrap();
    let prev = prev["prev_hash"].as_str().unwrap();
    upper[3] = good[3].replace(prev, &prev.to_uppercase());
    let p = verify_bytes(&join(&upper), &trusted).first_problem.unwrap();
    assert_eq!((p.seq, p.kind), (Some(3), ProblemKind::Malformed));

    let mut extra_field = good.clone();
    extra_field[4] = extra_field[4].replacen("{", r#"{"note":1,"#, 1);
    let p = verify_bytes(&join(&extra_field), &trusted)
        .first_problem
        .unwrap();
    assert_eq!((p.seq, p.kind), (None, ProblemKind::Malformed));
    assert!(p.detail.starts_with("line 5:"), "{}", p.detail);

    let mut blank = good;
    blank.insert(3, String::new());
    let p = verify_bytes(&join(&blank), &trusted).first_problem.unwrap();
    assert_eq!(p.kind, ProblemKind::Malformed);
}

#[test]
fn bad_headers_are_errors_not_reports() {
    let signer = key(1);
    let trusted = [signer.public_key()];
    let rows = chain(vec![body(1, "alice")]);
    let good = lines(&bundle(&trusted, &[], &rows));
    let check = |bytes: &[u8]| verify_bundle(bytes, VerifyOptions::pinned(&trusted));

    assert!(matches!(check(b""), Err(BundleError::Header(_))));
    let mut other = good.clone();
    other[0] = other[0].replace("bundle/v2", "bundle/v3");
    assert!(matches!(check(&join(&other)), Err(BundleError::Header(_))));
    let mut wrong_id = good.clone();
    wrong_id[0] = wrong_id[0].replacen(&signer.key_id().to_string(), "0000000000000000", 1);
    assert!(matches!(
        check(&join(&wrong_id)),
        Err(BundleError::Header(_))
    ));
    let mut upper_env = good;
    upper_env[0] = upper_env[0].replace("0190f3c4", "0190F3C4");
    assert!(matches!(
        check(&join(&upper_env)),
        Err(BundleError::Header(_))
    ));
}

/// Control L3: trusting the keys a bundle lists proves only self-consistency; pinning the
/// real key catches a bundle re-signed with a key the operator made up.
#[test]
fn l3_pinned_keys_catch_a_resigned_bundle() {
    let real = key(1);
    let made_up = key(9);
    let mut rows = chain((1..=6).map(|i| body(i, "alice")).collect());
    rows[2].body = body(3, "mallory");
    rehash_from(&mut rows, 2);
    let resigned = bundle(
        &[made_up.public_key()],
        &[checkpoint(&rows, 6, &made_up)],
        &rows,
    );

    let self_consistent = verify_bundle(
        resigned.as_slice(),
        VerifyOptions {
            trust: KeyTrust::BundleKeys,
            extra_checkpoints: &[],
            evidence_findings: &[],
            progress: None,
        },
    )
    .unwrap();
    assert!(self_consistent.is_clean());

    let pinned = verify_bytes(&resigned, &[real.public_key()]);
    assert_eq!(
        pinned.first_problem.map(|p| p.kind),
        Some(ProblemKind::UnknownKey)
    );
}

/// Controls L3 and L4: checkpoints the auditor holds from write-once storage are checked even
/// when the bundle leaves them out, so omitting them does not hide a truncation.
#[test]
fn l3_checkpoints_held_by_the_auditor_cannot_be_omitted() {
    let signer = key(1);
    let trusted = [signer.public_key()];
    let rows = chain((1..=10).map(|i| body(i, "alice")).collect());
    let held = [HeldCheckpoint {
        checkpoint: checkpoint(&rows, 10, &signer),
        source: "the auditor's copy".into(),
    }];
    let truncated = bundle(&trusted, &[], &rows[..6]);
    let report = verify_bundle(
        truncated.as_slice(),
        VerifyOptions {
            trust: KeyTrust::Pinned(&trusted),
            extra_checkpoints: &held,
            evidence_findings: &[],
            progress: None,
        },
    )
    .unwrap();
    let p = report.first_problem.unwrap();
    assert_eq!((p.seq, p.kind), (Some(7), ProblemKind::Missing));
    assert!(p.detail.contains("from the auditor's copy"), "{}", p.detail);
}

#[test]
fn checkpoints_may_be_interleaved_but_not_late() {
    let signer = key(1);
    let trusted = [signer.public_key()];
    let rows = chain((1..=6).map(|i| body(i, "alice")).collect());
    let cp = checkpoint(&rows, 3, &signer);
    let cp_line =
        serde_json::json!({"checkpoint": cp.to_string(), "sources": ["anchor"]}).to_string();
    let mut text = lines(&bundle(&trusted, &[], &rows));

    // Right after entry 3 (line 4) is in time.
    text.insert(4, cp_line.clone());
    let report = verify_bytes(&join(&text), &trusted);
    assert!(report.is_clean(), "{:?}", report.first_problem);
    assert_eq!(report.checkpoints_checked, 1);

    // After entry 4 it can no longer be checked in constant memory.
    text.remove(4);
    text.insert(5, cp_line);
    let p = verify_bytes(&join(&text), &trusted).first_problem.unwrap();
    assert_eq!(p.kind, ProblemKind::Malformed);
}

/// Control L4 (issue 11, item 2): a bundle of a chain rewritten consistently after its
/// database checkpoints were deleted verifies with the pinned key on its own, but not once it
/// carries the anchored checkpoint (version 2): the verdict says it came from the anchor store.
#[test]
fn l4_an_anchored_checkpoint_in_the_bundle_contradicts_a_rewritten_chain() {
    let signer = key(1);
    let trusted = [signer.public_key()];
    let rows = chain((1..=6).map(|i| body(i, "alice")).collect());
    let anchored = checkpoint(&rows, 4, &signer);
    let mut rewritten = rows.clone();
    rewritten[1].body = body(2, "mallory");
    rehash_from(&mut rewritten, 1);
    let without = bundle(&trusted, &[], &rewritten);
    let r = verify_bytes(&without, &trusted);
    assert!(r.is_clean(), "{:?}", r.first_problem);

    let mut w = portcullis_audit::BundleWriter::new(Vec::new(), ENV, &trusted).unwrap();
    w.write_checkpoint(&anchored.to_string(), &[CheckpointSource::Anchor])
        .unwrap();
    for r in &rewritten {
        w.write_entry(r.seq, &r.prev_hash, &r.entry_hash, &r.body)
            .unwrap();
    }
    let with = w.finish().unwrap();
    assert!(String::from_utf8_lossy(&with).contains(r#""sources":["anchor"]"#));
    let p = verify_bytes(&with, &trusted).first_problem.unwrap();
    assert_eq!(
        (p.seq, p.kind),
        (Some(4), ProblemKind::InconsistentWithCheckpoint)
    );
    assert!(
        p.detail
            .contains("from the bundle (anchor store; not in the database)"),
        "{}",
        p.detail
    );
}

/// Control L4: version 1 bundles (checkpoint lines without sources) still verify; in version 2
/// a checkpoint line must say where it was found, and only "database" and "anchor", each once;
/// a checkpoint text that does not parse is a finding and the entries are still verified.
#[test]
fn l4_bundle_versions_and_checkpoint_sources_are_checked() {
    let signer = key(1);
    let trusted = [signer.public_key()];
    let rows = chain((1..=4).map(|i| body(i, "alice")).collect());
    let cp = checkpoint(&rows, 4, &signer);
    let v2 = lines(&bundle(&trusted, std::slice::from_ref(&cp), &rows));

    let mut v1 = v2.clone();
    v1[0] = v1[0].replace("bundle/v2", "bundle/v1");
    v1[1] = serde_json::json!({"checkpoint": cp.to_string()}).to_string();
    let r = verify_bytes(&join(&v1), &trusted);
    assert!(r.is_clean(), "{:?}", r.first_problem);
    assert_eq!(r.checkpoints_checked, 1);
    let mut v1_with_sources = v1.clone();
    v1_with_sources[1] = v2[1].clone();
    let p = verify_bytes(&join(&v1_with_sources), &trusted)
        .first_problem
        .unwrap();
    assert_eq!(
        (p.kind, p.detail.starts_with("line 2:")),
        (ProblemKind::Malformed, true)
    );

    for bad in [
        serde_json::json!({"checkpoint": cp.to_string()}),
        serde_json::json!({"checkpoint": cp.to_string(), "sources": []}),
        serde_json::json!({"checkpoint": cp.to_string(), "sources": ["anchor", "anchor"]}),
        serde_json::json!({"checkpoint": cp.to_string(), "sources": ["backup"]}),
    ] {
        let mut text = v2.clone();
        text[1] = bad.to_string();
        let p = verify_bytes(&join(&text), &trusted).first_problem.unwrap();
        assert_eq!(p.kind, ProblemKind::Malformed, "{bad}: {p}");
    }

    let mut damaged = v2.clone();
    damaged[1] = serde_json::json!({"checkpoint": "garbage", "sources": ["anchor"]}).to_string();
    damaged.insert(
        2,
        serde_json::json!({"checkpoint": cp.to_string(), "sources": ["database"]}).to_string(),
    );
    let r = verify_bytes(&join(&damaged), &trusted);
    assert_eq!(r.entries, 4, "the entries are still verified");
    assert_eq!(r.checkpoints_checked, 1, "and the good checkpoint");
    let p = r.first_problem.unwrap();
    assert_eq!(p.kind, ProblemKind::Malformed);
    assert!(p.detail.contains("anchor store"), "{}", p.detail);
}

/// Control L4: problems the auditor's own evidence showed before verification (a kept file
/// that is not a checkpoint) are findings: the report is not clean, and the chain is still
/// verified.
#[test]
fn l4_evidence_findings_make_the_report_unclean() {
    let signer = key(1);
    let trusted = [signer.public_key()];
    let rows = chain((1..=3).map(|i| body(i, "alice")).collect());
    let cp = checkpoint(&rows, 3, &signer);
    let bytes = bundle(&trusted, std::slice::from_ref(&cp), &rows);
    let finding = portcullis_audit::Problem {
        seq: None,
        kind: ProblemKind::Malformed,
        detail: "kept checkpoint file k/1.checkpoint does not parse".into(),
    };
    let mut options = VerifyOptions::pinned(&trusted);
    options.evidence_findings = std::slice::from_ref(&finding);
    let r = verify_bundle(bytes.as_slice(), options).unwrap();
    assert_eq!(r.entries, 3);
    assert_eq!(r.checkpoints_checked, 1);
    assert_eq!(r.first_problem, Some(finding));
}

#[test]
fn progress_is_reported_every_n_entries() {
    let signer = key(1);
    let trusted = [signer.public_key()];
    let rows = chain((1..=25).map(|i| body(i, "alice")).collect());
    let bytes = bundle(&trusted, &[], &rows);
    let mut seen = Vec::new();
    let mut on_progress = |n: u64| seen.push(n);
    let report = verify_bundle(
        bytes.as_slice(),
        VerifyOptions {
            trust: KeyTrust::Pinned(&trusted),
            extra_checkpoints: &[],
            evidence_findings: &[],
            progress: Some((NonZeroU64::new(10).unwrap(), &mut on_progress)),
        },
    )
    .unwrap();
    assert!(report.is_clean());
    assert_eq!(seen, vec![10, 20]);
}

/// Control L3: bundles long enough to be hashed in parallel batches still detect and localize
/// an edit, a deletion and a reordering, wherever in a batch (or across a batch boundary) they
/// fall, and a clean one verifies in full.
#[test]
fn l3_parallel_batches_detect_and_localize() {
    let signer = key(1);
    let trusted = [signer.public_key()];
    let n = 40_000u64;
    let rows = chain((1..=n).map(|i| body(i, "alice")).collect());
    let cp = checkpoint(&rows, n as usize, &signer);
    let clean = lines(&bundle(&trusted, std::slice::from_ref(&cp), &rows));
    let report = verify_bytes(&join(&clean), &trusted);
    assert!(report.is_clean(), "{:?}", report.first_problem);
    assert_eq!(report.entries, n);

    // Entry k sits on line k + 2 (header, checkpoint). 16,384 lines make a batch.
    for seq in [3u64, 16_382, 16_383, 16_384, 30_001, n] {
        let line = (seq + 1) as usize;
        let mut edited = clean.clone();
        edited[line] = edited[line].replace("\"alice\"", "\"mallory\"");
        assert_ne!(edited[line], clean[line]);
        let report = verify_bytes(&join(&edited), &trusted);
        let p = report.first_problem.expect("an edit is detected");
        assert_eq!(
            (p.seq, p.kind),
            (Some(seq), ProblemKind::Changed),
            "edit at {seq}"
        );

        if seq < n {
            let mut deleted = clean.clone();
            deleted.remove(line);
            let p = verify_bytes(&join(&deleted), &trusted)
                .first_problem
                .expect("a deletion is detected");
            assert_eq!(
                (p.seq, p.kind),
                (Some(seq), ProblemKind::Missing),
                "deletion at {seq}"
            );

            let mut swapped = clean.clone();
            swapped.swap(line, line + 1);
            let p = verify_bytes(&join(&swapped), &trusted)
                .first_problem
                .expect("a swap is detected");
            assert_eq!(p.seq, Some(seq), "swap at {seq}: {p:?}");
        }
    }
}
