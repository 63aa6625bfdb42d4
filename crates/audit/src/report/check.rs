//! The checks that need no entries: the body's internal consistency, its two checkpoints
//! (signature, environment, spelled-out facts) and the consistency proof between them.

use uuid::Uuid;

use super::{
    Finding, Month, ReportBody, ReportCheckpoint, SignedReport, Summary, VerdictStatus,
    REPORT_FORMAT, REPORT_FORMAT_V1,
};
use crate::checkpoint::{PublicKey, SignedCheckpoint};
use crate::merkle::verify_consistency;
use crate::{hex, Hash};

impl SignedReport {
    /// Every check that needs no entries: internal consistency, both checkpoints' signatures
    /// and environment, the consistency proof between them, and the report's own signature
    /// (last, so that the findings name the members that were changed first).
    pub fn check(&self, trusted: &[PublicKey]) -> Vec<Finding> {
        let mut out = check_body(&self.body, trusted);
        if let Err(f) = self.check_signature(trusted) {
            out.push(f);
        }
        out
    }
}

/// A parsed and verified checkpoint of the report, or findings on `field`.
fn check_checkpoint(
    field: &str,
    cp: &ReportCheckpoint,
    environment_id: Uuid,
    trusted: &[PublicKey],
    out: &mut Vec<Finding>,
) -> Option<SignedCheckpoint> {
    let signed: SignedCheckpoint = match cp.signed.parse() {
        Ok(s) => s,
        Err(e) => {
            out.push(Finding::new(format!("{field}.signed"), e.to_string()));
            return None;
        }
    };
    let mut ok = true;
    if let Err(e) = signed.verify(trusted) {
        out.push(Finding::new(format!("{field}.signed"), e.to_string()));
        ok = false;
    }
    if signed.checkpoint.environment_id != environment_id {
        out.push(Finding::new(
            format!("{field}.signed"),
            format!(
                "checkpoint is for environment {}, not {environment_id}",
                signed.checkpoint.environment_id
            ),
        ));
        ok = false;
    }
    let spelled = ReportCheckpoint::from_signed(&signed);
    for (name, stated, actual) in [
        (
            "tree_size",
            cp.tree_size.to_string(),
            spelled.tree_size.to_string(),
        ),
        ("root_hash", cp.root_hash.clone(), spelled.root_hash.clone()),
        ("head_hash", cp.head_hash.clone(), spelled.head_hash.clone()),
        (
            "issued_at",
            cp.issued_at.to_string(),
            spelled.issued_at.to_string(),
        ),
        ("key_id", cp.key_id.clone(), spelled.key_id.clone()),
    ] {
        if stated != actual {
            out.push(Finding::new(
                format!("{field}.{name}"),
                format!("says {stated} but the signed checkpoint says {actual}"),
            ));
            ok = false;
        }
    }
    ok.then_some(signed)
}

fn check_body(body: &ReportBody, trusted: &[PublicKey]) -> Vec<Finding> {
    let mut out = vec![];
    let failed = match (body.format.as_str(), &body.summary) {
        (REPORT_FORMAT, Some(summary)) => {
            check_summary(summary, body.log_size_at_close, &mut out);
            summary.verdict.status == VerdictStatus::Failed
        }
        (REPORT_FORMAT, None) => {
            out.push(Finding::new("summary", "missing (format 2 has one)"));
            false
        }
        (REPORT_FORMAT_V1, None) => false,
        (REPORT_FORMAT_V1, Some(_)) => {
            out.push(Finding::new("summary", "format 1 has no summary"));
            false
        }
        _ => {
            out.push(Finding::new(
                "format",
                format!("expected {REPORT_FORMAT:?} or {REPORT_FORMAT_V1:?}"),
            ));
            false
        }
    };
    let mut push = |f: &str, r: String| out.push(Finding::new(f, r));
    let month: Option<Month> = match body.month.parse() {
        Ok(m) => Some(m),
        Err(e) => {
            push("month", e.to_string());
            None
        }
    };
    if let Some(m) = month {
        if body.window.from != m.window_from() {
            push(
                "window.from",
                format!("is {} but {m} starts {}", body.window.from, m.window_from()),
            );
        }
        if body.window.to != m.window_to() {
            push(
                "window.to",
                format!("is {} but {m} ends {}", body.window.to, m.window_to()),
            );
        }
        if !is_utc_seconds(&body.generated_at) {
            push(
                "generated_at",
                "is not RFC 3339 UTC to the second (YYYY-MM-DDTHH:MM:SSZ)".into(),
            );
        } else if body.generated_at < m.window_to() {
            push(
                "generated_at",
                format!(
                    "{} is before the month ended ({})",
                    body.generated_at,
                    m.window_to()
                ),
            );
        }
    }
    let e = &body.entries;
    match (e.count, e.first_seq, e.last_seq) {
        (0, None, None) => {}
        (0, _, _) => push(
            "entries.first_seq",
            "an empty month has no first or last seq (null)".into(),
        ),
        (n, Some(first), Some(last)) => {
            if first == 0 || first > last || n > last - first + 1 {
                push(
                    "entries.count",
                    format!("{n} entries cannot lie between seq {first} and {last}"),
                );
            }
            if last > body.log_size_at_close {
                push(
                    "log_size_at_close",
                    format!(
                        "{} is below the window's last seq {last}",
                        body.log_size_at_close
                    ),
                );
            }
        }
        (_, _, _) => push(
            "entries.first_seq",
            "a month with entries has a first and a last seq".into(),
        ),
    }
    if hex::decode::<32>(&e.jsonl_sha256).is_none() {
        push(
            "entries.jsonl_sha256",
            "is not 64 lowercase hex digits".into(),
        );
    }
    let sum: u64 = body.counts_by_action.values().sum();
    if sum != e.count {
        push(
            "counts_by_action",
            format!("add up to {sum} but entries.count is {}", e.count),
        );
    }
    if body.counts_by_action.values().any(|&c| c == 0) {
        push("counts_by_action", "lists an action with count 0".into());
    }

    let closing = match &body.closing_checkpoint {
        None => {
            // A report of a log that failed verification may lack a checkpoint: none is cut
            // over a broken chain.
            if body.log_size_at_close > 0 && !failed {
                push(
                    "closing_checkpoint",
                    format!(
                        "is missing, but {} entries were logged before the month ended",
                        body.log_size_at_close
                    ),
                );
            }
            None
        }
        Some(cp) => {
            let signed = check_checkpoint(
                "closing_checkpoint",
                cp,
                body.environment_id,
                trusted,
                &mut out,
            );
            if cp.tree_size < body.log_size_at_close {
                out.push(Finding::new(
                    "closing_checkpoint.tree_size",
                    format!(
                        "{} does not cover the {} entries logged before the month ended",
                        cp.tree_size, body.log_size_at_close
                    ),
                ));
            }
            signed
        }
    };

    let expected_previous = month.and_then(|m| m.previous()).map(|m| m.to_string());
    if let Some(prev) = &body.previous {
        if Some(&prev.month) != expected_previous.as_ref() {
            out.push(Finding::new(
                "previous.month",
                format!(
                    "is {} but the month before {} is {}",
                    prev.month,
                    body.month,
                    expected_previous.as_deref().unwrap_or("none")
                ),
            ));
        }
        if prev.log_size_at_close == 0 || prev.log_size_at_close > body.log_size_at_close {
            out.push(Finding::new(
                "previous.log_size_at_close",
                format!(
                    "{} must be between 1 and this month's {}",
                    prev.log_size_at_close, body.log_size_at_close
                ),
            ));
        }
        if prev.checkpoint.tree_size < prev.log_size_at_close {
            out.push(Finding::new(
                "previous.checkpoint.tree_size",
                format!(
                    "{} does not cover the previous month's {} entries",
                    prev.checkpoint.tree_size, prev.log_size_at_close
                ),
            ));
        }
        let old = check_checkpoint(
            "previous.checkpoint",
            &prev.checkpoint,
            body.environment_id,
            trusted,
            &mut out,
        );
        let proof: Option<Vec<Hash>> = prev
            .consistency_proof
            .iter()
            .map(|h| hex::decode::<32>(h))
            .collect();
        match (old, &closing, proof) {
            (_, _, None) => out.push(Finding::new(
                "previous.consistency_proof",
                "contains a hash that is not 64 lowercase hex digits",
            )),
            (Some(old), Some(new), Some(proof)) => {
                let (o, n) = (&old.checkpoint, &new.checkpoint);
                if !verify_consistency(o.tree_size, n.tree_size, &o.root_hash, &n.root_hash, &proof)
                {
                    out.push(Finding::new(
                        "previous.consistency_proof",
                        format!(
                            "does not prove that the tree of {} entries (root {}) extends the previous month's tree of {} (root {})",
                            n.tree_size,
                            hex::encode(&n.root_hash),
                            o.tree_size,
                            hex::encode(&o.root_hash)
                        ),
                    ));
                }
            }
            // The checkpoints themselves were already reported.
            _ => {}
        }
    }
    out
}

/// The summary's own coherence; its facts are compared with the entries by `compare`. A
/// report that states a failed verification is itself a finding: it verifies as a statement,
/// but the log it describes did not.
fn check_summary(s: &Summary, log_size_at_close: u64, out: &mut Vec<Finding>) {
    let v = &s.verdict;
    match (v.status, v.anomalies.first()) {
        (VerdictStatus::Verified, None) => {
            if v.verified_through != v.log_size {
                out.push(Finding::new(
                    "summary.verdict.verified_through",
                    format!(
                        "{} entries verified of {}, but the verdict is verified",
                        v.verified_through, v.log_size
                    ),
                ));
            }
            if v.log_size < log_size_at_close {
                out.push(Finding::new(
                    "summary.verdict.log_size",
                    format!(
                        "{} is below the {log_size_at_close} entries logged by the month's end",
                        v.log_size
                    ),
                ));
            }
        }
        (VerdictStatus::Verified, Some(_)) => out.push(Finding::new(
            "summary.verdict.status",
            "is verified but anomalies are listed",
        )),
        (VerdictStatus::Failed, None) => out.push(Finding::new(
            "summary.verdict.anomalies",
            "the verdict is failed but no anomaly is listed",
        )),
        (VerdictStatus::Failed, Some(first)) => out.push(Finding::new(
            "summary.verdict",
            format!(
                "the report states that the log failed verification when it was made ({} anomalies; first: {}{}: {})",
                v.anomalies.len(),
                first.kind,
                first.seq.map(|s| format!(" at entry {s}")).unwrap_or_default(),
                first.detail
            ),
        )),
    }
    if v.verified_through > v.log_size || v.covered_through > v.log_size {
        out.push(Finding::new(
            "summary.verdict.log_size",
            format!(
                "{} is below the entries said to be verified ({}) or covered ({})",
                v.log_size, v.verified_through, v.covered_through
            ),
        ));
    }
    if !matches!(
        v.anchors.kind.as_str(),
        "local_directory" | "s3_object_lock"
    ) {
        out.push(Finding::new(
            "summary.verdict.anchors.kind",
            format!(
                "{:?} is neither local_directory nor s3_object_lock",
                v.anchors.kind
            ),
        ));
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ`.
fn is_utc_seconds(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 20
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
}
