//! The evidence `audit verify --bundle` takes besides the bundle (L4, issue 11 item 2):
//! checkpoints a customer kept (`--checkpoints FILE|DIR`: checkpoint texts, or pages of the
//! checkpoint feed as the API answers them), an anchor directory (`--anchors DIR`) and signed
//! monthly reports (`--report FILE`). Each checkpoint is named by where it came from, so a
//! verdict says which piece of evidence contradicts the bundle.
//!
//! A path that cannot be read, a directory with nothing to read, an anchor directory without
//! the bundle's environment or a report of another environment is an error (the command was
//! given the wrong thing). A file that holds something other than checkpoints, or a checkpoint
//! that does not parse, is a finding: reported, and verification goes on with the rest.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use portcullis_audit::checkpoint::split_checkpoints;
use portcullis_audit::report::SignedReport;
use portcullis_audit::verify::{Problem, ProblemKind};
use portcullis_audit::{HeldCheckpoint, SignedCheckpoint};
use portcullis_service::anchor::LocalAnchors;
use uuid::Uuid;

#[derive(Debug, Default)]
pub(crate) struct Evidence {
    pub checkpoints: Vec<HeldCheckpoint>,
    pub findings: Vec<Problem>,
}

impl Evidence {
    fn add(&mut self, text: &str, source: String) {
        match text.parse::<SignedCheckpoint>() {
            Ok(checkpoint) => self.checkpoints.push(HeldCheckpoint { checkpoint, source }),
            Err(e) => self.findings.push(Problem {
                seq: None,
                kind: ProblemKind::Malformed,
                detail: format!("{source} is not a signed checkpoint: {e}"),
            }),
        }
    }

    fn malformed(&mut self, detail: String) {
        self.findings.push(Problem {
            seq: None,
            kind: ProblemKind::Malformed,
            detail,
        });
    }
}

/// Gathers the evidence for a bundle of environment `env`.
pub(crate) fn gather(
    env: Uuid,
    kept: &[PathBuf],
    anchors: &[PathBuf],
    reports: &[PathBuf],
) -> anyhow::Result<Evidence> {
    let mut evidence = Evidence::default();
    for path in kept {
        kept_checkpoints(path, &mut evidence)?;
    }
    for dir in anchors {
        anchor_dir(env, dir, &mut evidence)?;
    }
    for path in reports {
        report(env, path, &mut evidence)?;
    }
    Ok(evidence)
}

/// `--checkpoints FILE|DIR`: a file, or every `*.checkpoint` and `*.json` file of a directory.
fn kept_checkpoints(path: &Path, evidence: &mut Evidence) -> anyhow::Result<()> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("--checkpoints {}: cannot read it", path.display()))?;
    if !meta.is_dir() {
        return kept_file(path, evidence);
    }
    let mut files = vec![];
    for entry in std::fs::read_dir(path)
        .with_context(|| format!("--checkpoints {}: cannot list it", path.display()))?
    {
        let file = entry
            .with_context(|| format!("--checkpoints {}: cannot list it", path.display()))?
            .path();
        if file.is_file()
            && file
                .extension()
                .is_some_and(|x| x == "checkpoint" || x == "json")
        {
            files.push(file);
        }
    }
    if files.is_empty() {
        bail!(
            "--checkpoints {}: the directory holds no .checkpoint or .json file",
            path.display()
        );
    }
    files.sort();
    for file in files {
        kept_file(&file, evidence)?;
    }
    Ok(())
}

/// One kept file: checkpoint texts one after the other, or a page of the checkpoint feed
/// (`GET /v1/environments/{id}/audit/checkpoints`, saved as it came).
fn kept_file(path: &Path, evidence: &mut Evidence) -> anyhow::Result<()> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("--checkpoints {}: cannot read it", path.display()))?;
    let source = format!("kept checkpoints {}", path.display());
    let Ok(text) = String::from_utf8(bytes) else {
        evidence.malformed(format!("{source} is not UTF-8 text"));
        return Ok(());
    };
    if text.trim_start().starts_with('{') {
        let page: serde_json::Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(e) => {
                evidence.malformed(format!("{source} is not a checkpoint feed page: {e}"));
                return Ok(());
            }
        };
        let Some(list) = page.get("checkpoints").and_then(|c| c.as_array()) else {
            evidence.malformed(format!(
                "{source} is not a checkpoint feed page (no \"checkpoints\" list)"
            ));
            return Ok(());
        };
        for (i, item) in list.iter().enumerate() {
            match item.get("signed").and_then(|s| s.as_str()) {
                Some(signed) => evidence.add(signed, format!("{source} (item {})", i + 1)),
                None => evidence.malformed(format!(
                    "{source} (item {}) has no \"signed\" checkpoint text",
                    i + 1
                )),
            }
        }
        return Ok(());
    }
    let parts = split_checkpoints(&text);
    if parts.is_empty() {
        evidence.malformed(format!("{source} holds no checkpoint"));
    }
    let many = parts.len() > 1;
    for (i, part) in parts.into_iter().enumerate() {
        let source = if many {
            format!("{source} (checkpoint {})", i + 1)
        } else {
            source.clone()
        };
        evidence.add(part, source);
    }
    Ok(())
}

/// `--anchors DIR`: an anchor directory as `audit.anchor_dir` configures it,
/// `DIR/<environment>/<size>.checkpoint`.
fn anchor_dir(env: Uuid, dir: &Path, evidence: &mut Evidence) -> anyhow::Result<()> {
    let env_dir = dir.join(env.to_string());
    if !env_dir.is_dir() {
        bail!(
            "--anchors {}: no anchors of environment {env} there (expected {}/<size>.checkpoint)",
            dir.display(),
            env_dir.display()
        );
    }
    let anchored = LocalAnchors::new(dir)
        .list(env)
        .with_context(|| format!("--anchors {}", dir.display()))?;
    if anchored.is_empty() {
        bail!(
            "--anchors {}: {} holds no <size>.checkpoint file",
            dir.display(),
            env_dir.display()
        );
    }
    for (size, text) in anchored {
        evidence.add(
            &text,
            format!("anchor directory {} (size {size})", dir.display()),
        );
    }
    Ok(())
}

/// `--report FILE`: a signed monthly report's closing checkpoint and the previous month's.
/// The report's own signature is not needed for this: each checkpoint is signed.
fn report(env: Uuid, path: &Path, evidence: &mut Evidence) -> anyhow::Result<()> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("--report {}: cannot read it", path.display()))?;
    let report = SignedReport::parse(&bytes).map_err(|f| {
        anyhow::anyhow!(
            "--report {}: not a signed monthly report: {}: {}",
            path.display(),
            f.field,
            f.reason
        )
    })?;
    if report.body.environment_id != env {
        bail!(
            "--report {}: the report is for environment {}, the bundle for {env}",
            path.display(),
            report.body.environment_id
        );
    }
    let source = format!("monthly report {} ({})", path.display(), report.body.month);
    if let Some(closing) = &report.body.closing_checkpoint {
        evidence.add(&closing.signed, format!("{source}, closing checkpoint"));
    }
    if let Some(previous) = &report.body.previous {
        evidence.add(
            &previous.checkpoint.signed,
            format!("{source}, previous month's checkpoint"),
        );
    }
    Ok(())
}
