//! Comparing a report with what its entries say, member by member.

use std::collections::BTreeMap;

use super::{Finding, ReportBody, TallyResult};
use crate::hex;

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
    if let Some(summary) = &body.summary {
        differs(
            "summary.activity",
            serde_json::to_string(&summary.activity).unwrap_or_default(),
            serde_json::to_string(&tally.activity).unwrap_or_default(),
        );
        let stated = &summary.privileged.changes;
        let actual = &tally.privileged_changes;
        if stated != actual {
            let seqs = |c: &[super::PrivilegedChange]| {
                c.iter()
                    .map(|c| c.seq.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let first = stated
                .iter()
                .zip(actual.iter())
                .find(|(a, b)| a != b)
                .map(|(a, _)| format!("; entry {} differs first", a.seq))
                .unwrap_or_default();
            out.push(Finding::new(
                "summary.privileged.changes",
                format!(
                    "report lists entries [{}], the entries give [{}]{first}",
                    seqs(stated),
                    seqs(actual)
                ),
            ));
        }
        if summary.verdict.status == super::VerdictStatus::Verified
            && tally.size < summary.verdict.verified_through
        {
            out.push(Finding::new(
                "summary.verdict.verified_through",
                format!(
                    "the report verified {} entries but the log holds {}",
                    summary.verdict.verified_through, tally.size
                ),
            ));
        }
    }
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
