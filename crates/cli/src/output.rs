//! Shared by the `audit` commands: trusted keys from the command line, and how a verification
//! report is printed (and turned into the exit code).

use std::process::ExitCode;

use anyhow::Context;

pub(crate) fn parse_public_keys(
    keys: &[String],
) -> anyhow::Result<Vec<portcullis_audit::checkpoint::PublicKey>> {
    keys.iter()
        .map(|k| {
            portcullis_audit::checkpoint::PublicKey::from_hex(k.trim())
                .with_context(|| format!("`{k}` is not a 64-character hex Ed25519 public key"))
        })
        .collect()
}

/// Prints the verdict; `max_uncovered` is the configured checkpoint interval (entries).
pub(crate) fn print_report(
    report: &portcullis_audit::verify::Report,
    accept_uncheckpointed: bool,
    max_uncovered: Option<u64>,
) -> ExitCode {
    let verdict = report.verdict_within(accept_uncheckpointed, max_uncovered);
    for line in &verdict.lines {
        println!("{line}");
    }
    if verdict.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
