//! `migrate` and `controls`: the database's schema and its security self-check.

use std::process::ExitCode;

use anyhow::Context;
use portcullis_service::config::Config;
use portcullis_service::node;

/// `migrate`: roles and pending migrations, then exit.
pub(crate) async fn migrate(config: &Config) -> anyhow::Result<ExitCode> {
    let db = node::database(config, true).await?;
    println!("migrations applied");
    db.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

/// `controls`: every check of the boot self-check, as a table or JSON; exits 1 if any fails.
/// Anchors on the database's host (L4) are a warning line (on stderr with `--json`).
pub(crate) async fn controls(config: &Config, json: bool) -> anyhow::Result<ExitCode> {
    let db = node::database(config, false).await?;
    let checks = node::self_check(&db.runtime).await;
    db.shutdown().await;
    let checks = checks?;
    // Issue 11, item 5: a warning, not a failed check (the exit code stays the checks').
    let anchors = node::anchor_placement_warning(config)?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&checks).context("serialize")?
        );
        if let Some(w) = &anchors {
            eprintln!("warning: L4: {w}");
        }
    } else {
        for c in &checks {
            let mark = if c.passed { "pass" } else { "FAIL" };
            println!("{mark}  {:<3} {}", c.control, c.name);
            if !c.passed {
                println!("           {}", c.detail);
            }
        }
        let failed = checks.iter().filter(|c| !c.passed).count();
        if let Some(w) = &anchors {
            println!("warn  L4  audit anchors are on the database's host");
            println!("           {w}");
        }
        println!(
            "\n{} checks, {} passed, {} failed{}",
            checks.len(),
            checks.len() - failed,
            failed,
            if anchors.is_some() { ", 1 warning" } else { "" }
        );
        println!("Controls proven by tests are listed in docs/CONTROLS.md.");
    }
    Ok(if checks.iter().all(|c| c.passed) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
