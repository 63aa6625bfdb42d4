//! The monthly signed audit report at run time (control L6): generating one from the database
//! (cutting the closing checkpoint if none covers the month yet), writing it as JSON and PDF,
//! and recomputing a report's facts from the database for `audit verify-report`. The format
//! and the checks are in `portcullis_audit::report`; the PDF in [`pdf`]. Knows no HTTP.

pub mod pdf;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use portcullis_audit::checkpoint::{PublicKey, SignedCheckpoint};
use portcullis_audit::merkle;
use portcullis_audit::report::{
    compare, default_rules, rules_of, watched_sizes, AnchorPlace, Anomaly, Finding, LogVerdict,
    Month, Person, PreviousMonth, Privileged, ReportBody, ReportCheckpoint, SignedReport, Summary,
    Tally, TallyResult, VerdictStatus, Window, REPORT_FORMAT,
};
use portcullis_core::{EnvironmentId, Permission, PermissionSet};
use portcullis_store::audit_writer::entry_body;
use portcullis_store::queries::{audit_log, environments, members, Page};
use portcullis_store::vault::Vault;
use portcullis_store::{AuditEvent, Store, StoreError};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::anchor::Anchors;
use crate::trail::{self, Signer, TrailError};

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Trail(#[from] TrailError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("month {month} has not ended yet (it ends {ends}); a report covers a whole month, so generate it after that")]
    NotEnded { month: Month, ends: String },
    #[error("{0}")]
    Integrity(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The first instant of `month`, in UTC.
fn month_start(month: Month) -> Result<OffsetDateTime, ReportError> {
    let m =
        time::Month::try_from(month.number()).map_err(|e| ReportError::Integrity(e.to_string()))?;
    let date = time::Date::from_calendar_date(i32::from(month.year()), m, 1)
        .map_err(|e| ReportError::Integrity(e.to_string()))?;
    Ok(date.midnight().assume_utc())
}

/// `YYYY-MM-DDTHH:MM:SSZ`.
fn utc_seconds(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

fn hash32(bytes: &[u8], what: &str) -> Result<[u8; 32], ReportError> {
    <[u8; 32]>::try_from(bytes)
        .map_err(|_| ReportError::Integrity(format!("stored {what} is not 32 bytes")))
}

/// The long steps of a report, for progress: each reads the environment's whole log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Reading the entries to state the month's facts.
    Reading,
    /// Verifying the whole log against checkpoints, anchors and the head row, for the verdict.
    Verifying,
    /// Reading them again to check the signed report before it is handed out (and in
    /// [`verify_with_db`]).
    Checking,
}

/// Progress of a report: `(step, entries read, entries in the log)`, at least once per batch
/// of entries and once at the end of each step.
pub type Progress<'a> = &'a mut (dyn FnMut(Step, u64, u64) + Send);

/// Entries read per round trip while tallying.
const TALLY_BATCH: i64 = 5000;

/// Streams the environment's whole log from the database into a [`Tally`] for `month`,
/// reporting `(entries read, entries in the log)` after each batch.
pub async fn tally_from_db(
    store: &Store,
    env: Uuid,
    month: Month,
    watch: &[u64],
    rules: Vec<portcullis_audit::report::PrivilegedRule>,
    progress: &mut (dyn FnMut(u64, u64) + Send),
) -> Result<TallyResult, ReportError> {
    let perms = PermissionSet::of(&[Permission::AuditRead]);
    store.sequence(env).await?;
    let mut tx = store
        .tenant_as_system(EnvironmentId::from_uuid(env), perms, trail::meta())
        .await?;
    let total = audit_log::head(&mut tx)
        .await?
        .and_then(|(seq, _, _)| u64::try_from(seq).ok())
        .unwrap_or(0);
    progress(0, total);
    let mut tally = Tally::new(env, month, watch).with_rules(rules);
    let mut after = 0i64;
    loop {
        let rows = audit_log::stored_range(&mut tx, after, TALLY_BATCH).await?;
        let Some(last) = rows.last() else { break };
        after = last.seq;
        for r in &rows {
            let seq =
                u64::try_from(r.seq).map_err(|_| ReportError::Integrity("negative seq".into()))?;
            tally.push(
                seq,
                &hash32(&r.prev_hash, "prev_hash")?,
                &hash32(&r.entry_hash, "entry_hash")?,
                &entry_body(r),
            );
        }
        let done = u64::try_from(after).unwrap_or(0);
        progress(done, total.max(done));
    }
    tx.commit().await?;
    Ok(tally.finish())
}

/// The earliest stored checkpoint of at least `size` entries.
fn covering(
    rows: &[audit_log::CheckpointRow],
    size: u64,
) -> Result<Option<SignedCheckpoint>, ReportError> {
    let Some(row) = rows
        .iter()
        .filter(|r| u64::try_from(r.tree_size).is_ok_and(|s| s >= size))
        .min_by_key(|r| r.tree_size)
    else {
        return Ok(None);
    };
    row.signed
        .parse()
        .map(Some)
        .map_err(|e| ReportError::Integrity(format!("stored checkpoint {}: {e}", row.tree_size)))
}

async fn stored_checkpoints(
    store: &Store,
    env: Uuid,
) -> Result<Vec<audit_log::CheckpointRow>, ReportError> {
    let perms = PermissionSet::of(&[Permission::AuditRead]);
    let mut tx = store
        .tenant_as_system(EnvironmentId::from_uuid(env), perms, trail::meta())
        .await?;
    let rows = audit_log::checkpoints(&mut tx).await?;
    tx.commit().await?;
    Ok(rows)
}

/// Generates and signs the report of `env` for `month`, which must have ended by `now`. If no
/// checkpoint covers the month's last entry yet, one is cut (and anchored) now. The whole log
/// is verified (chain, checkpoints, anchors, head row) for the summary's verdict; a log that
/// fails still gets its report, which says what failed (see [`SignedReport::check`]: such a
/// report never verifies as clean). A clean report is checked against the entries before it is
/// returned, and generation is audited. `vault` opens the names of the people it lists.
pub async fn generate(
    store: &Store,
    signer: &Signer,
    anchors: &Anchors,
    vault: &Vault,
    env: Uuid,
    month: Month,
    now: OffsetDateTime,
) -> Result<SignedReport, ReportError> {
    generate_with_progress(
        store,
        signer,
        anchors,
        vault,
        env,
        month,
        now,
        &mut |_, _, _| {},
    )
    .await
}

/// [`generate`], reporting the progress of its three reads of the log.
#[allow(clippy::too_many_arguments)]
pub async fn generate_with_progress(
    store: &Store,
    signer: &Signer,
    anchors: &Anchors,
    vault: &Vault,
    env: Uuid,
    month: Month,
    now: OffsetDateTime,
    progress: Progress<'_>,
) -> Result<SignedReport, ReportError> {
    let ends = month_start(month.next())?;
    if now < ends {
        return Err(ReportError::NotEnded {
            month,
            ends: month.window_to(),
        });
    }
    let tally = tally_from_db(store, env, month, &[], default_rules(), &mut |n, t| {
        progress(Step::Reading, n, t)
    })
    .await?;
    // No checkpoint is cut over a chain that does not verify: the report says what failed.
    let broken = tally.chain_problem.is_some() || tally.malformed.is_some();

    let mut rows = stored_checkpoints(store, env).await?;
    let closing = if tally.log_size_at_close == 0 {
        None
    } else {
        match covering(&rows, tally.log_size_at_close)? {
            Some(cp) => Some(cp),
            None if broken => None,
            None => {
                trail::checkpoint(store, signer, anchors, env).await?;
                rows = stored_checkpoints(store, env).await?;
                Some(covering(&rows, tally.log_size_at_close)?.ok_or_else(|| {
                    ReportError::Integrity(format!(
                        "no checkpoint covers entry {} even after cutting one",
                        tally.log_size_at_close
                    ))
                })?)
            }
        }
    };

    let total = tally.size;
    let verification = trail::verify_environment(store, env, signer.public_keys(), anchors, |n| {
        progress(Step::Verifying, n, total.max(n))
    })
    .await?;
    progress(
        Step::Verifying,
        verification.entries.max(total),
        verification.entries.max(total),
    );
    let verdict = log_verdict(&verification, &tally, anchors);
    let failed = verdict.status == VerdictStatus::Failed;

    let previous = match previous_month(store, env, month, &rows, &closing, &tally).await {
        Ok(p) => p,
        // Over a failed log the proof may not exist; the verdict already says why.
        Err(_) if failed => None,
        Err(e) => return Err(e),
    };

    let privileged = Privileged {
        rules: default_rules(),
        changes: tally.privileged_changes.clone(),
    };
    let (environment_name, people) = names(store, vault, env, &tally, &privileged).await?;
    let body = ReportBody {
        format: REPORT_FORMAT.to_owned(),
        environment_id: env,
        month: month.to_string(),
        window: Window {
            from: month.window_from(),
            to: month.window_to(),
        },
        entries: tally.entries.clone(),
        counts_by_action: tally.counts_by_action.clone(),
        log_size_at_close: tally.log_size_at_close,
        closing_checkpoint: closing.as_ref().map(ReportCheckpoint::from_signed),
        previous,
        generated_at: utc_seconds(now),
        summary: Some(Summary {
            environment_name,
            verdict,
            activity: tally.activity.clone(),
            privileged,
            people,
        }),
    };
    let report = signer.sign_report(body)?;

    if failed {
        // The log does not verify, so neither would the report against it: its signature is
        // what can be checked.
        if let Err(f) = report.check_signature(signer.public_keys()) {
            return Err(ReportError::Integrity(format!(
                "the generated report does not verify: {f}"
            )));
        }
    } else if let Some(f) =
        verify_with_db_progress(store, &report, signer.public_keys(), &mut |n, t| {
            progress(Step::Checking, n, t)
        })
        .await?
        .first()
    {
        // What we sign must verify, against the stored entries and tree, before anyone sees it.
        return Err(ReportError::Integrity(format!(
            "the generated report does not verify: {f}"
        )));
    }

    let mut tx = store
        .tenant_as_system(
            EnvironmentId::from_uuid(env),
            PermissionSet::all(),
            trail::meta(),
        )
        .await?;
    tx.audit(
        AuditEvent::success("audit.report_generated", "audit_report", month).after(
            serde_json::json!({
                "month": month.to_string(),
                "entries": report.body.entries.count,
                "jsonl_sha256": report.body.entries.jsonl_sha256,
                "closing_checkpoint": report.body.closing_checkpoint.as_ref().map(|c| c.tree_size),
                "key_id": report.signature.key_id,
                "verdict": if failed { "failed" } else { "verified" },
            }),
        ),
    )
    .await?;
    tx.commit().await?;
    Ok(report)
}

/// The verdict of `verification` (and of the tally's own read of the chain).
fn log_verdict(
    verification: &portcullis_audit::verify::Report,
    tally: &TallyResult,
    anchors: &Anchors,
) -> LogVerdict {
    let anomaly = |p: &portcullis_audit::verify::Problem| Anomaly {
        kind: format!("{:?}", p.kind),
        seq: p.seq,
        detail: p.detail.clone(),
    };
    let mut anomalies: Vec<Anomaly> = vec![];
    for p in verification
        .first_problem
        .iter()
        .chain(verification.findings.iter())
        .chain(tally.chain_problem.iter())
    {
        let a = anomaly(p);
        if !anomalies.contains(&a) {
            anomalies.push(a);
        }
    }
    if let Some(f) = &tally.malformed {
        anomalies.push(Anomaly {
            kind: "Malformed".into(),
            seq: None,
            detail: f.to_string(),
        });
    }
    let (kind, location) = match anchors {
        Anchors::Local(_) => ("local_directory", anchors.to_string()),
        Anchors::S3(_) => ("s3_object_lock", anchors.to_string()),
    };
    LogVerdict {
        status: if anomalies.is_empty() {
            VerdictStatus::Verified
        } else {
            VerdictStatus::Failed
        },
        log_size: tally.size.max(verification.entries),
        verified_through: verification.entries,
        checkpoints_verified: u64::try_from(verification.checkpoints_checked).unwrap_or(u64::MAX),
        covered_through: verification.covered,
        anchors: AnchorPlace {
            kind: kind.into(),
            location,
        },
        anomalies,
    }
}

/// The previous month's closing checkpoint and the consistency proof from it to `closing`.
async fn previous_month(
    store: &Store,
    env: Uuid,
    month: Month,
    rows: &[audit_log::CheckpointRow],
    closing: &Option<SignedCheckpoint>,
    tally: &TallyResult,
) -> Result<Option<PreviousMonth>, ReportError> {
    let (Some(new), old_size) = (closing, tally.previous_size_at_close) else {
        return Ok(None);
    };
    if old_size == 0 {
        return Ok(None);
    }
    let old = covering(rows, old_size)?
        .ok_or_else(|| ReportError::Integrity(format!("no checkpoint covers entry {old_size}")))?;
    let new_size = new.checkpoint.tree_size;
    let mut tx = store
        .tenant_as_system(
            EnvironmentId::from_uuid(env),
            PermissionSet::of(&[Permission::AuditRead]),
            trail::meta(),
        )
        .await?;
    let size = i64::try_from(new_size).map_err(|_| ReportError::Integrity("tree size".into()))?;
    let hashes = audit_log::entry_hashes(&mut tx, size).await?;
    tx.commit().await?;
    let leaves: Vec<[u8; 32]> = hashes.iter().map(|h| merkle::leaf_hash(h)).collect();
    let old_size = old.checkpoint.tree_size;
    let proof = merkle::consistency_proof(&leaves, old_size, new_size).ok_or_else(|| {
        ReportError::Integrity(format!("no consistency proof {old_size} -> {new_size}"))
    })?;
    Ok(Some(PreviousMonth {
        month: month.previous().map(|m| m.to_string()).unwrap_or_default(),
        log_size_at_close: tally.previous_size_at_close,
        checkpoint: ReportCheckpoint::from_signed(&old),
        consistency_proof: proof.iter().map(|h| trail::hex(h)).collect(),
    }))
}

/// The environment's name and the people the summary names (actors and identity targets of
/// privileged changes, the most denied actors), opened from their sealed form here, where
/// the node holds the keys. A person who is no longer a member cannot be opened: they are
/// listed by id with a note saying so.
async fn names(
    store: &Store,
    vault: &Vault,
    env: Uuid,
    tally: &TallyResult,
    privileged: &Privileged,
) -> Result<(Option<String>, BTreeMap<Uuid, Person>), ReportError> {
    let mut wanted: BTreeSet<Uuid> = BTreeSet::new();
    for c in &privileged.changes {
        if c.actor_type == "identity" {
            wanted.extend(c.actor_id);
        }
        if c.target_type == "identity" {
            wanted.extend(c.target_id.as_deref().and_then(|t| Uuid::parse_str(t).ok()));
        }
        // A project grant names its grantee in the body.
        for v in [&c.before, &c.after] {
            let grantee = v.pointer("/identity_id").and_then(|i| i.as_str());
            wanted.extend(grantee.and_then(|t| Uuid::parse_str(t).ok()));
        }
    }
    for a in &tally.activity.top_denied_actors {
        if a.actor_type == "identity" {
            wanted.extend(a.actor_id);
        }
    }
    let perms = PermissionSet::of(&[Permission::AuditRead, Permission::MembersRead]);
    let mut tx = store
        .tenant_as_system(EnvironmentId::from_uuid(env), perms, trail::meta())
        .await?;
    let name = match environments::get(&mut tx).await {
        Ok(e) => Some(e.name),
        Err(StoreError::NotFound) => None,
        Err(e) => return Err(e.into()),
    };
    let mut people = BTreeMap::new();
    if !wanted.is_empty() {
        let mut page = Page::new(None, Some(Page::MAX_LIMIT));
        loop {
            let listed = members::list(&mut tx, vault, page).await?;
            for m in listed.items {
                if wanted.remove(&m.identity_id) {
                    people.insert(
                        m.identity_id,
                        Person {
                            name: Some(m.display_name),
                            email: Some(m.email),
                            role: Some(m.role),
                            note: None,
                        },
                    );
                }
            }
            match listed.next {
                Some(after) if !wanted.is_empty() => {
                    page = Page::new(Some(after), page.limit.into())
                }
                _ => break,
            }
        }
    }
    tx.commit().await?;
    for id in wanted {
        people.insert(
            id,
            Person {
                name: None,
                email: None,
                role: None,
                note: Some(
                    "no longer a member of this environment when the report was made: name not opened"
                        .into(),
                ),
            },
        );
    }
    Ok((name, people))
}

/// [`generate`] as of the current time.
pub async fn generate_now(
    store: &Store,
    signer: &Signer,
    anchors: &Anchors,
    vault: &Vault,
    env: Uuid,
    month: Month,
) -> Result<SignedReport, ReportError> {
    generate(
        store,
        signer,
        anchors,
        vault,
        env,
        month,
        OffsetDateTime::now_utc(),
    )
    .await
}

/// [`generate_with_progress`] as of the current time.
pub async fn generate_now_with_progress(
    store: &Store,
    signer: &Signer,
    anchors: &Anchors,
    vault: &Vault,
    env: Uuid,
    month: Month,
    progress: Progress<'_>,
) -> Result<SignedReport, ReportError> {
    let now = OffsetDateTime::now_utc();
    generate_with_progress(store, signer, anchors, vault, env, month, now, progress).await
}

/// The file names of a report: `<environment>-<YYYY-MM>.report.json` and `.report.pdf`.
pub fn file_names(report: &SignedReport) -> (String, String) {
    let stem = format!(
        "{}-{}.report",
        report.body.environment_id.hyphenated(),
        report.body.month
    );
    (format!("{stem}.json"), format!("{stem}.pdf"))
}

/// The JSON file's bytes and the PDF rendered from the same report (naming the JSON's SHA-256).
pub fn render(report: &SignedReport) -> (Vec<u8>, Vec<u8>) {
    let json = report.to_json_pretty();
    let (json_name, _) = file_names(report);
    let pdf = pdf::render(
        report,
        &json_name,
        &portcullis_audit::report::sha256_hex(&json),
    );
    (json, pdf)
}

/// Writes the JSON and PDF files into `dir`; returns their paths.
pub fn write_files(report: &SignedReport, dir: &Path) -> Result<(PathBuf, PathBuf), ReportError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| ReportError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let (json, pdf) = render(report);
    let (json_name, pdf_name) = file_names(report);
    let (json_path, pdf_path) = (dir.join(json_name), dir.join(pdf_name));
    std::fs::write(&json_path, json).map_err(io(&json_path))?;
    std::fs::write(&pdf_path, pdf).map_err(io(&pdf_path))?;
    Ok((json_path, pdf_path))
}

/// Every check of a report against the database: its facts recomputed from the stored
/// entries, its checkpoints against the stored tree, and the checks of
/// [`SignedReport::check`] under `trusted`.
pub async fn verify_with_db(
    store: &Store,
    report: &SignedReport,
    trusted: &[PublicKey],
) -> Result<Vec<Finding>, ReportError> {
    verify_with_db_progress(store, report, trusted, &mut |_, _| {}).await
}

/// [`verify_with_db`], reporting `(entries read, entries in the log)` as it reads the log.
pub async fn verify_with_db_progress(
    store: &Store,
    report: &SignedReport,
    trusted: &[PublicKey],
    progress: &mut (dyn FnMut(u64, u64) + Send),
) -> Result<Vec<Finding>, ReportError> {
    let month: Month = match report.body.month.parse() {
        Ok(m) => m,
        Err(e) => return Ok(vec![Finding::new("month", e.to_string())]),
    };
    let tally = tally_from_db(
        store,
        report.body.environment_id,
        month,
        &watched_sizes(&report.body),
        rules_of(&report.body),
        progress,
    )
    .await?;
    let mut findings = compare(&report.body, &tally);
    findings.extend(report.check(trusted));
    Ok(findings)
}

/// Keys from a file in the format of `/.well-known/portcullis/audit-keys.json`
/// (`{"keys":[{"key_id":"<16 hex>","public_key":"<64 hex>", ...}]}`); each key id must match.
pub fn parse_keys_file(bytes: &[u8]) -> Result<Vec<PublicKey>, String> {
    #[derive(serde::Deserialize)]
    struct File {
        keys: Vec<Key>,
    }
    #[derive(serde::Deserialize)]
    struct Key {
        key_id: String,
        public_key: String,
    }
    let file: File = serde_json::from_slice(bytes)
        .map_err(|e| format!("not an audit-keys.json document: {e}"))?;
    file.keys
        .iter()
        .map(|k| {
            let key = PublicKey::from_hex(&k.public_key).ok_or_else(|| {
                format!(
                    "key {}: public_key is not 64 lowercase hex digits",
                    k.key_id
                )
            })?;
            if key.key_id().to_string() != k.key_id {
                return Err(format!(
                    "key {}: the key id does not match its public key ({})",
                    k.key_id,
                    key.key_id()
                ));
            }
            Ok(key)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn l6_month_start_and_generated_at_are_utc() {
        let m: Month = "2026-12".parse().unwrap();
        assert_eq!(
            month_start(m.next()).unwrap(),
            time::macros::datetime!(2027-01-01 0:00 UTC)
        );
        assert_eq!(
            utc_seconds(time::macros::datetime!(2026-03-01 01:02:03.5 +01:00)),
            "2026-03-01T00:02:03Z"
        );
    }

    #[test]
    fn l6_keys_file_is_checked() {
        let key = portcullis_audit::checkpoint::SigningKey::from_seed(&[7; 32])
            .unwrap()
            .public_key();
        let good = format!(
            r#"{{"keys":[{{"key_id":"{}","public_key":"{}","created_at":"2026-01-01T00:00:00Z","retired_at":null}}]}}"#,
            key.key_id(),
            key.to_hex()
        );
        assert_eq!(parse_keys_file(good.as_bytes()).unwrap(), vec![key]);
        let wrong_id = good.replace(&key.key_id().to_string(), "0000000000000000");
        assert!(parse_keys_file(wrong_id.as_bytes())
            .unwrap_err()
            .contains("does not match"));
        assert!(parse_keys_file(b"{}").is_err());
    }
}
