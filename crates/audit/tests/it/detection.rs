//! Control L3: the verifier detects and localizes any change, deletion, insertion or
//! reordering of entries and any tampering with checkpoints; L2: a rewrite by someone who
//! bypasses the append-only database still fails against a checkpoint signed before it.

use crate::support::*;
use portcullis_audit::{
    verify_entries, Body, Problem, ProblemKind, Report, SignedCheckpoint, StoredEntry,
    GENESIS_PREV_HASH,
};
use proptest::prelude::*;
use serde_json::{json, Value};

#[derive(Clone, Debug)]
enum Mutation {
    ChangeBody(usize),
    Delete(usize),
    SwapAdjacent(usize),
    Duplicate(usize),
    Insert {
        pos: usize,
        renumber: bool,
        link_ok: bool,
        hash_ok: bool,
    },
    /// Tampers with a checkpoint; `resign` models an operator who signs the lie with a
    /// trusted key, which the signature cannot catch but the entries do.
    Checkpoint {
        which: usize,
        what: CheckpointEdit,
        resign: bool,
    },
}

#[derive(Clone, Copy, Debug)]
enum CheckpointEdit {
    Root,
    Size,
    Signature,
}

fn arb_body() -> impl Strategy<Value = Value> {
    ("[a-z]{1,8}", any::<i32>(), any::<bool>(), "\\PC{0,10}").prop_map(|(actor, n, ok, note)| {
        json!({"actor": actor, "action": "record.update", "n": n, "ok": ok, "note": note})
    })
}

fn arb_case() -> impl Strategy<Value = (Vec<Value>, Vec<prop::sample::Index>, Mutation)> {
    (
        prop::collection::vec(arb_body(), 2..40),
        prop::collection::vec(any::<prop::sample::Index>(), 0..4),
        any::<(prop::sample::Index, u8, bool, bool, bool)>(),
    )
        .prop_map(|(bodies, checkpoint_picks, (at, choice, a, b, c))| {
            let n = bodies.len();
            let mutation = match choice % 7 {
                0 => Mutation::ChangeBody(at.index(n)),
                1 => Mutation::Delete(at.index(n)),
                2 => Mutation::SwapAdjacent(at.index(n - 1)),
                3 => Mutation::Duplicate(at.index(n)),
                4 | 5 => Mutation::Insert {
                    pos: at.index(n),
                    renumber: a,
                    link_ok: b,
                    hash_ok: c,
                },
                _ => Mutation::Checkpoint {
                    which: at.index(usize::MAX),
                    what: [
                        CheckpointEdit::Root,
                        CheckpointEdit::Size,
                        CheckpointEdit::Signature,
                    ][usize::from(choice / 7) % 3],
                    resign: a,
                },
            };
            (bodies, checkpoint_picks, mutation)
        })
}

/// Applies `mutation` and returns the problem the verifier must report.
fn apply(
    rows: &mut Vec<Row>,
    checkpoints: &mut [SignedCheckpoint],
    mutation: &Mutation,
) -> (Option<u64>, ProblemKind) {
    let signer = key(1);
    match *mutation {
        Mutation::ChangeBody(i) => {
            rows[i].body = json!({"tampered": rows[i].body.clone()});
            (Some(i as u64 + 1), ProblemKind::Changed)
        }
        Mutation::Delete(i) => {
            rows.remove(i);
            (Some(i as u64 + 1), ProblemKind::Missing)
        }
        Mutation::SwapAdjacent(i) => {
            rows.swap(i, i + 1);
            (Some(i as u64 + 1), ProblemKind::Reordered)
        }
        Mutation::Duplicate(i) => {
            rows.insert(i + 1, rows[i].clone());
            (Some(i as u64 + 1), ProblemKind::Reordered)
        }
        Mutation::Insert {
            pos,
            renumber,
            link_ok,
            hash_ok,
        } => {
            let seq = pos as u64 + 1;
            let prev = if link_ok {
                pos.checked_sub(1)
                    .map_or(GENESIS_PREV_HASH, |p| rows[p].entry_hash)
            } else {
                [0x5a; 32]
            };
            let mut forged = row(
                seq,
                prev,
                json!({"actor": "mallory", "action": "grant.admin"}),
            );
            if !hash_ok {
                forged.entry_hash[0] ^= 1;
            }
            if renumber {
                rows[pos..].iter_mut().for_each(|r| r.seq += 1);
            }
            rows.insert(pos, forged);
            (Some(seq), ProblemKind::Inserted)
        }
        Mutation::Checkpoint {
            which,
            what,
            resign,
        } => {
            let c = &mut checkpoints[which % checkpoints.len()];
            let size = c.checkpoint.tree_size;
            match what {
                CheckpointEdit::Root => c.checkpoint.root_hash[7] ^= 0x40,
                CheckpointEdit::Size => {
                    c.checkpoint.tree_size = if size > 1 { size - 1 } else { size + 1 };
                }
                CheckpointEdit::Signature => c.signature[3] ^= 1,
            }
            if resign && !matches!(what, CheckpointEdit::Signature) {
                *c = signer.sign(&c.checkpoint);
                (
                    Some(c.checkpoint.tree_size),
                    ProblemKind::InconsistentWithCheckpoint,
                )
            } else {
                (None, ProblemKind::BadSignature)
            }
        }
    }
}

fn stored(rows: &[Row]) -> impl Iterator<Item = StoredEntry<'_>> {
    rows.iter().map(|r| StoredEntry {
        seq: r.seq,
        prev_hash: r.prev_hash,
        entry_hash: r.entry_hash,
        body: Body::Json(&r.body),
    })
}

fn problem(report: &Report) -> Option<(Option<u64>, ProblemKind)> {
    report.first_problem.as_ref().map(|p| (p.seq, p.kind))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Control L3: one random mutation of a valid, checkpointed chain is reported with the
    /// right kind at the right seq, through the bundle (exported text) and through the
    /// in-memory `Value` path alike; the unmodified chain verifies clean.
    #[test]
    fn l3_detects_and_localizes_a_single_mutation((bodies, picks, mutation) in arb_case()) {
        let signer = key(1);
        let trusted = [signer.public_key()];
        let mut rows = chain(bodies);
        let n = rows.len();
        let mut sizes: Vec<usize> = picks.iter().map(|p| p.index(n) + 1).collect();
        sizes.push(n);
        sizes.sort_unstable();
        sizes.dedup();
        let mut checkpoints: Vec<SignedCheckpoint> =
            sizes.iter().map(|&s| checkpoint(&rows, s, &signer)).collect();

        let clean = verify_bytes(&bundle(&trusted, &checkpoints, &rows), &trusted);
        prop_assert_eq!(&clean.first_problem, &None);
        prop_assert_eq!(clean.entries, n as u64);
        prop_assert_eq!(clean.checkpoints_checked, checkpoints.len());
        prop_assert_eq!(clean.root_hash, root(&rows));

        let want = apply(&mut rows, &mut checkpoints, &mutation);
        let from_bundle = verify_bytes(&bundle(&trusted, &checkpoints, &rows), &trusted);
        prop_assert_eq!(problem(&from_bundle), Some(want), "{:?}", from_bundle.first_problem);
        let in_memory = verify_entries(crate::support::ENV, &trusted, &checkpoints, stored(&rows));
        // The same report, but that the bundle's checkpoints are named by where they came from.
        let mut unnamed = from_bundle.clone();
        if let Some(p) = &mut unnamed.first_problem {
            p.detail = p.detail.replace(" from the bundle (database)", "");
        }
        prop_assert_eq!(&in_memory, &unnamed);
    }
}

/// Control L2 + L3: a database superuser bypasses the append-only rules, edits an entry and
/// recomputes every hash after it. The chain alone cannot tell; a checkpoint signed before
/// the rewrite can, and the report bounds the rewrite between the last matching checkpoint
/// and the first failing one.
#[test]
fn l2_l3_consistent_rewrite_passes_the_chain_but_fails_an_earlier_checkpoint() {
    let signer = key(1);
    let trusted = [signer.public_key()];
    let mut rows = chain((1..=20).map(|i| body(i, "alice")).collect());
    let before = [
        checkpoint(&rows, 5, &signer),
        checkpoint(&rows, 12, &signer),
        checkpoint(&rows, 20, &signer),
    ];

    rows[8].body = body(9, "mallory");
    rehash_from(&mut rows, 8);

    let chain_only = verify_bytes(&bundle(&trusted, &[], &rows), &trusted);
    assert!(chain_only.is_clean(), "{:?}", chain_only.first_problem);

    // The operator re-signs fresh checkpoints over the rewritten log: internally consistent.
    let after: Vec<_> = [5, 12, 20]
        .iter()
        .map(|&s| checkpoint(&rows, s, &signer))
        .collect();
    assert!(verify_bytes(&bundle(&trusted, &after, &rows), &trusted).is_clean());

    // The auditor kept the earlier ones.
    let report = verify_bytes(&bundle(&trusted, &before, &rows), &trusted);
    let Some(Problem { seq, kind, detail }) = report.first_problem else {
        panic!("rewrite not detected");
    };
    assert_eq!(kind, ProblemKind::InconsistentWithCheckpoint);
    assert_eq!(seq, Some(12));
    assert!(detail.contains("after entry 5"), "{detail}");
    assert_eq!(report.checkpoints_checked, 1);
}

/// Control L3: an entry rewritten with its own hash recomputed (but not its successors) is
/// reported as Changed at that entry, not as a problem with its intact successor.
#[test]
fn l3_rehashed_entry_is_localized_to_itself() {
    let signer = key(1);
    let trusted = [signer.public_key()];
    let mut rows = chain((1..=10).map(|i| body(i, "alice")).collect());
    rows[4].body = body(5, "mallory");
    let prev = rows[3].entry_hash;
    rows[4] = row(5, prev, rows[4].body.clone());
    let report = verify_bytes(&bundle(&trusted, &[], &rows), &trusted);
    assert_eq!(problem(&report), Some((Some(5), ProblemKind::Changed)));
    assert_eq!(report.entries, 5, "entry 5 itself is self-consistent");
}

/// Control L3: deleting the newest entries leaves no gap; only a checkpoint covering them
/// shows the truncation.
#[test]
fn l3_truncation_shows_against_a_checkpoint() {
    let signer = key(1);
    let trusted = [signer.public_key()];
    let rows = chain((1..=10).map(|i| body(i, "alice")).collect());
    let cp = checkpoint(&rows, 10, &signer);
    let truncated = &rows[..7];
    assert!(verify_bytes(&bundle(&trusted, &[], truncated), &trusted).is_clean());
    let report = verify_bytes(&bundle(&trusted, &[cp], truncated), &trusted);
    assert_eq!(problem(&report), Some((Some(8), ProblemKind::Missing)));
}

/// Control L3: a gap of several entries is one Missing problem at its start.
#[test]
fn l3_a_deleted_range_is_reported_at_its_first_seq() {
    let trusted = [key(1).public_key()];
    let mut rows = chain((1..=10).map(|i| body(i, "alice")).collect());
    rows.drain(3..6);
    let report = verify_bytes(&bundle(&trusted, &[], &rows), &trusted);
    let p = report.first_problem.unwrap();
    assert_eq!((p.seq, p.kind), (Some(4), ProblemKind::Missing));
    assert!(p.detail.contains("4 to 6"), "{}", p.detail);
}

/// Control L3: a checkpoint for another environment, or from an untrusted key, is refused.
#[test]
fn l3_foreign_and_unknown_checkpoints_are_refused() {
    let signer = key(1);
    let stranger = key(2);
    let trusted = [signer.public_key()];
    let rows = chain((1..=4).map(|i| body(i, "alice")).collect());

    let mut foreign = checkpoint(&rows, 4, &signer).checkpoint;
    foreign.environment_id = uuid::Uuid::from_u128(1);
    let report = verify_bytes(&bundle(&trusted, &[signer.sign(&foreign)], &rows), &trusted);
    assert_eq!(
        problem(&report),
        Some((None, ProblemKind::WrongEnvironment))
    );

    let by_stranger = checkpoint(&rows, 4, &stranger);
    let report = verify_bytes(&bundle(&trusted, &[by_stranger], &rows), &trusted);
    assert_eq!(problem(&report), Some((None, ProblemKind::UnknownKey)));
}

/// Control L3: checkpoints signed before and after a key rotation verify while both keys are
/// trusted.
#[test]
fn l3_key_rotation_overlap_in_one_log() {
    let (old, new) = (key(1), key(2));
    let rows = chain((1..=8).map(|i| body(i, "alice")).collect());
    let cps = [checkpoint(&rows, 4, &old), checkpoint(&rows, 8, &new)];
    let both = [old.public_key(), new.public_key()];
    let report = verify_bytes(&bundle(&both, &cps, &rows), &both);
    assert!(report.is_clean(), "{:?}", report.first_problem);
    assert_eq!(report.checkpoints_checked, 2);
    let only_new = [new.public_key()];
    let report = verify_bytes(&bundle(&only_new, &cps, &rows), &only_new);
    assert_eq!(problem(&report), Some((None, ProblemKind::UnknownKey)));
}

/// Control L3 (issue 11, item 6): two adjacent entries that trade places while their seqs
/// stay in order (a swap of two rows' seq labels, or of two lines' bodies and hashes) are
/// reported as Reordered at the first of them, not as an insertion, with or without
/// checkpoints, through the bundle and in memory alike.
#[test]
fn l3_adjacent_swap_with_seqs_in_order_is_reordered() {
    let signer = key(1);
    let trusted = [signer.public_key()];
    let n = 8;
    for i in 0..n - 1 {
        for with_checkpoint in [false, true] {
            let mut rows = chain((1..=n as u64).map(|k| body(k, "alice")).collect());
            let checkpoints = if with_checkpoint {
                vec![checkpoint(&rows, n, &signer)]
            } else {
                vec![]
            };
            rows.swap(i, i + 1);
            rows[i].seq = i as u64 + 1;
            rows[i + 1].seq = i as u64 + 2;
            let want = Some((Some(i as u64 + 1), ProblemKind::Reordered));
            let from_bundle = verify_bytes(&bundle(&trusted, &checkpoints, &rows), &trusted);
            assert_eq!(
                problem(&from_bundle),
                want,
                "{:?}",
                from_bundle.first_problem
            );
            let in_memory =
                verify_entries(crate::support::ENV, &trusted, &checkpoints, stored(&rows));
            assert_eq!(problem(&in_memory), want, "{:?}", in_memory.first_problem);
        }
    }
}

/// Issue 11, item 3: the verdict states coverage. A bundle with every checkpoint line
/// removed no longer passes with "0 checkpoints consistent": it fails unless the reader
/// accepts an uncheckpointed chain; a bundle whose tail no checkpoint covers says how long
/// that tail is.
#[test]
fn l3_verdict_states_coverage_and_fails_without_a_checkpoint() {
    let signer = key(1);
    let trusted = [signer.public_key()];
    let rows = chain((1..=10).map(|i| body(i, "alice")).collect());

    let none = verify_bytes(&bundle(&trusted, &[], &rows), &trusted);
    assert!(none.is_clean());
    assert_eq!((none.covered, none.uncovered()), (0, 10));
    let verdict = none.verdict(false);
    assert!(!verdict.ok, "{:?}", verdict.lines);
    assert!(
        verdict.lines[0].starts_with("FAILED"),
        "{:?}",
        verdict.lines
    );
    assert!(
        verdict.lines[0].contains("no signed checkpoint"),
        "{:?}",
        verdict.lines
    );
    let accepted = none.verdict(true);
    assert!(accepted.ok, "{:?}", accepted.lines);
    assert!(accepted.lines[0].contains("no signed checkpoint covers any of the 10 entries"));

    let partial = verify_bytes(
        &bundle(&trusted, &[checkpoint(&rows, 7, &signer)], &rows),
        &trusted,
    );
    assert_eq!((partial.covered, partial.uncovered()), (7, 3));
    let verdict = partial.verdict(false);
    assert!(verdict.ok, "{:?}", verdict.lines);
    assert!(
        verdict.lines[0]
            .contains("cover entries 1-7; the 3 entries after entry 7 are covered by none"),
        "{:?}",
        verdict.lines
    );

    let full = verify_bytes(
        &bundle(&trusted, &[checkpoint(&rows, 10, &signer)], &rows),
        &trusted,
    );
    assert_eq!((full.covered, full.uncovered()), (10, 0));
    assert!(full.verdict(false).lines[0].contains("cover all 10 entries"));

    // A tail longer than the checkpoint interval fails, unless accepted.
    assert!(partial.verdict_within(false, Some(3)).ok);
    let long = partial.verdict_within(false, Some(2));
    assert!(!long.ok, "{:?}", long.lines);
    assert!(
        long.lines[0].contains("checkpoint interval of 2"),
        "{:?}",
        long.lines
    );
    assert!(partial.verdict_within(true, Some(2)).ok);
}
