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
pub(crate) async fn controls(config: &Config, json: bool) -> anyhow::Result<ExitCode> {
    let db = node::database(config, false).await?;
    let checks = node::self_check(&db.runtime).await;
    db.shutdown().await;
    let checks = checks?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&checks).context("serialize")?
        );
    } else {
        for c in &checks {
            let mark = if c.passed { "pass" } else { "FAIL" };
            println!("{mark}  {:<3} {}", c.control, c.name);
            if !c.passed {
                println!("           {}", c.detail);
            }
        }
        let failed = checks.iter().filter(|c| !c.passed).count();
        println!(
            "\n{} checks, {} passed, {} failed",
            checks.len(),
            checks.len() - failed,
            failed
        );
        println!("Controls proven by tests are listed in docs/CONTROLS.md.");
    }
    Ok(if checks.iter().all(|c| c.passed) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
