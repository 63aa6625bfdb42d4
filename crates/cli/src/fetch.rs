//! `audit fetch-checkpoints` (L4, issue 11 item 5): keeps copies of an environment's signed
//! checkpoints from a server's checkpoint feed, one file per checkpoint, where the operator
//! cannot rewrite them (the customer's or auditor's own machine). `audit verify --bundle ...
//! --checkpoints DIR` then checks a bundle against them.
//!
//! Write-once like an anchor directory: a kept file is never replaced; the same text again is
//! a no-op, a different checkpoint for a size already kept is a conflict (a forked log) that
//! fails the command. A fetch resumes after the largest size kept; `--recheck` reads the feed
//! from the start and compares every kept copy. Texts that do not parse, or that name another environment or size, are
//! refused and not kept.

use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use portcullis_audit::SignedCheckpoint;
use portcullis_core::EnvironmentId;
use portcullis_outbound::{Client, Endpoint, Limits, Method, Request};
use serde::Deserialize;

#[derive(Deserialize)]
struct Page {
    checkpoints: Vec<FeedCheckpoint>,
    next_after: Option<u64>,
}

#[derive(Deserialize)]
struct FeedCheckpoint {
    tree_size: u64,
    signed: String,
}

/// What was kept.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Fetched {
    pub new: usize,
    pub already: usize,
    pub refused: Vec<String>,
}

pub(crate) async fn run(
    url: &str,
    env: EnvironmentId,
    token_file: &Path,
    out: &Path,
    ca_file: Option<&Path>,
    recheck: bool,
) -> anyhow::Result<ExitCode> {
    let fetched = fetch(url, env, token_file, out, ca_file, recheck).await?;
    for r in &fetched.refused {
        println!("FAILED: {r}");
    }
    println!(
        "kept {} new checkpoints in {} ({} already kept)",
        fetched.new,
        out.display(),
        fetched.already
    );
    Ok(if fetched.refused.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub(crate) async fn fetch(
    url: &str,
    env: EnvironmentId,
    token_file: &Path,
    out: &Path,
    ca_file: Option<&Path>,
    recheck: bool,
) -> anyhow::Result<Fetched> {
    let token = std::fs::read_to_string(token_file)
        .with_context(|| format!("--token-file {}: cannot read it", token_file.display()))?;
    let token = token.trim();
    if token.is_empty() {
        bail!("--token-file {}: the file is empty", token_file.display());
    }
    let endpoint = Endpoint::parse(url.trim_end_matches('/')).context("--url")?;
    let limits = Limits {
        connect_timeout: Duration::from_secs(10),
        request_timeout: Duration::from_secs(60),
        max_response_bytes: 4 * 1024 * 1024,
    };
    let client = match ca_file {
        Some(path) => {
            let pem = std::fs::read(path)
                .with_context(|| format!("--ca-file {}: cannot read it", path.display()))?;
            let roots = portcullis_outbound::roots_from_pem(&pem)
                .with_context(|| format!("--ca-file {}", path.display()))?;
            Client::with_root_certificates(roots, limits)?
        }
        None => Client::new(limits)?,
    };
    std::fs::create_dir_all(out).with_context(|| format!("--out {}", out.display()))?;
    let mut fetched = Fetched::default();
    // Resume after the largest size kept (the feed only grows), or, to compare every kept
    // copy with what the server serves now, from the start.
    let mut after = if recheck {
        0
    } else {
        kept_sizes(out)?.into_iter().max().unwrap_or(0)
    };
    loop {
        let target = format!("/v1/environments/{env}/audit/checkpoints?after={after}");
        let request = Request::new(Method::GET, endpoint.clone(), target)
            .with_header("authorization", format!("Bearer {token}"))
            .with_header("accept", "application/json");
        let response = client
            .send(&request)
            .await
            .with_context(|| format!("GET {url}"))?;
        if !response.is_success() {
            let body = String::from_utf8_lossy(&response.body);
            bail!(
                "{url} answered {}: {}",
                response.status,
                portcullis_outbound::sanitize_remote_message(&body)
            );
        }
        let page: Page = response
            .json()
            .with_context(|| format!("{url}: not a checkpoint feed page"))?;
        for c in page.checkpoints {
            keep(env, out, c, &mut fetched)?;
        }
        match page.next_after {
            Some(next) if next > after => after = next,
            Some(next) => {
                bail!("{url}: the feed did not advance (next_after {next} after {after})")
            }
            None => break,
        }
    }
    Ok(fetched)
}

fn file_of(out: &Path, size: u64) -> PathBuf {
    out.join(format!("{size:020}.checkpoint"))
}

fn kept_sizes(out: &Path) -> anyhow::Result<Vec<u64>> {
    let mut sizes = vec![];
    for entry in std::fs::read_dir(out).with_context(|| format!("--out {}", out.display()))? {
        let name = entry?.file_name();
        if let Some(size) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".checkpoint"))
            .and_then(|n| n.parse::<u64>().ok())
        {
            sizes.push(size);
        }
    }
    Ok(sizes)
}

fn keep(
    env: EnvironmentId,
    out: &Path,
    c: FeedCheckpoint,
    fetched: &mut Fetched,
) -> anyhow::Result<()> {
    let checkpoint = match c.signed.parse::<SignedCheckpoint>() {
        Ok(cp) => cp,
        Err(e) => {
            fetched.refused.push(format!(
                "the feed's checkpoint for size {} does not parse ({e}); not kept",
                c.tree_size
            ));
            return Ok(());
        }
    };
    let cp = &checkpoint.checkpoint;
    if cp.environment_id != env.as_uuid() || cp.tree_size != c.tree_size {
        fetched.refused.push(format!(
            "the feed's checkpoint for size {} is of environment {} size {}; not kept",
            c.tree_size, cp.environment_id, cp.tree_size
        ));
        return Ok(());
    }
    let path = file_of(out, c.tree_size);
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
    {
        Ok(mut f) => {
            f.write_all(c.signed.as_bytes())
                .and_then(|()| f.sync_all())
                .with_context(|| format!("writing {}", path.display()))?;
            fetched.new += 1;
        }
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            let kept = std::fs::read(&path).with_context(|| format!("{}", path.display()))?;
            if kept == c.signed.as_bytes() {
                fetched.already += 1;
            } else {
                fetched.refused.push(format!(
                    "{} already holds a different checkpoint for size {}: the server's log forked or was rewritten; kept file unchanged",
                    path.display(),
                    c.tree_size
                ));
            }
        }
        Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
    }
    Ok(())
}
