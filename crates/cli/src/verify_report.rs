//! `audit verify-report`: a monthly report checked offline against a bundle, or against the
//! database.

use std::process::ExitCode;

use portcullis_service::config::Config;
use portcullis_service::node;

/// `audit verify-report`: exit 0 when the report verifies, 1 with its findings, 2 on usage
/// errors. Runs offline with `--bundle` (and `--keys`); otherwise reads keys and, with
/// `--environment`, entries from the database.
pub(crate) async fn verify_report(
    path: &std::path::Path,
    bundle: Option<&std::path::Path>,
    environment: Option<portcullis_core::EnvironmentId>,
    keys: Option<&std::path::Path>,
    config: &Config,
) -> anyhow::Result<ExitCode> {
    use portcullis_audit::report::{compare, tally_bundle, Finding, SignedReport};
    use portcullis_service::{report, trail};
    fn usage(message: String) -> anyhow::Result<ExitCode> {
        eprintln!("error: {message}");
        Ok(ExitCode::from(2))
    }
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) => return usage(format!("cannot read {}: {e}", path.display())),
    };
    let pinned = match keys {
        None => None,
        Some(k) => match std::fs::read(k)
            .map_err(|e| e.to_string())
            .and_then(|b| report::parse_keys_file(&b))
        {
            Ok(list) if !list.is_empty() => Some(list),
            Ok(_) => return usage(format!("--keys {}: the file lists no keys", k.display())),
            Err(e) => return usage(format!("--keys {}: {e}", k.display())),
        },
    };
    let parsed = match SignedReport::parse(&text) {
        Ok(r) => r,
        Err(f) => {
            println!("FAILED: {f}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let body = &parsed.body;
    if let Some(env) = environment {
        if env.as_uuid() != body.environment_id {
            return usage(format!(
                "--environment {env}, but the report is for environment {}",
                body.environment_id
            ));
        }
    }

    let mut findings: Vec<Finding> = vec![];
    let checked_against: String;
    if let Some(bundle_path) = bundle {
        let file = match std::fs::File::open(bundle_path) {
            Ok(f) => f,
            Err(e) => return usage(format!("cannot open {}: {e}", bundle_path.display())),
        };
        let (tally, bundle_keys) = match tally_bundle(std::io::BufReader::new(file), body) {
            Ok((t, k)) => (Some(t), k),
            Err(f) => {
                findings.push(f);
                (None, vec![])
            }
        };
        let trusted = pinned.unwrap_or_else(|| {
            eprintln!("warning: no --keys given; trusting the keys listed in the bundle itself");
            bundle_keys
        });
        if let Some(tally) = &tally {
            findings.extend(compare(body, tally));
        }
        findings.extend(parsed.check(&trusted));
        checked_against = format!("the entries in {}", bundle_path.display());
    } else if let (Some(trusted), None) = (&pinned, environment) {
        findings.extend(parsed.check(trusted));
        checked_against = "nothing (give --bundle or --environment to check the entries)".into();
    } else {
        let db = node::database(config, false).await?;
        let result = async {
            let store = db.store(2).await?;
            let trusted = match pinned {
                Some(k) => k,
                None => trail::published_keys(&store).await?,
            };
            if environment.is_some() {
                let mut bar = crate::progress::Progress::new("checking", "entries", None);
                let found =
                    report::verify_with_db_progress(&store, &parsed, &trusted, &mut |n, t| {
                        bar.set_total(t);
                        bar.update(n);
                    })
                    .await;
                bar.end();
                anyhow::Ok((found?, "the entries in the database".to_owned()))
            } else {
                anyhow::Ok((
                    parsed.check(&trusted),
                    "nothing (give --bundle or --environment to check the entries)".to_owned(),
                ))
            }
        }
        .await;
        db.shutdown().await;
        let (found, against) = result?;
        findings.extend(found);
        checked_against = against;
    }

    if let Some(first) = findings.first() {
        println!("FAILED: {first}");
        for f in &findings[1..] {
            println!("  also: {f}");
        }
        return Ok(ExitCode::FAILURE);
    }
    println!(
        "OK: report of environment {} for {} verified",
        body.environment_id, body.month
    );
    println!("  signed by key {}", parsed.signature.key_id);
    let range = match (body.entries.first_seq, body.entries.last_seq) {
        (Some(a), Some(b)) => format!("seq {a} to {b}"),
        _ => "empty month".into(),
    };
    println!(
        "  {} entries ({range}), JSONL SHA-256 {}",
        body.entries.count, body.entries.jsonl_sha256
    );
    match &body.closing_checkpoint {
        Some(cp) => println!(
            "  closing checkpoint: size {}, root {}",
            cp.tree_size, cp.root_hash
        ),
        None => println!("  no closing checkpoint: nothing was logged by the end of the month"),
    }
    if let Some(prev) = &body.previous {
        println!(
            "  consistent with {}'s closing checkpoint (size {}, root {})",
            prev.month, prev.checkpoint.tree_size, prev.checkpoint.root_hash
        );
    }
    if let Some(summary) = &body.summary {
        let v = &summary.verdict;
        println!(
            "  when made: the log verified through entry {} of {}, {} checkpoints, anchored in {}",
            v.verified_through, v.log_size, v.checkpoints_verified, v.anchors.location
        );
        println!(
            "  {} privileged changes, {} refused and {} failed entries",
            summary.privileged.changes.len(),
            summary
                .activity
                .by_outcome
                .get("denied")
                .copied()
                .unwrap_or(0),
            summary
                .activity
                .by_outcome
                .get("failure")
                .copied()
                .unwrap_or(0)
        );
    }
    println!("  facts checked against {checked_against}");
    Ok(ExitCode::SUCCESS)
}
