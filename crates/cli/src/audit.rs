//! `audit verify|export|checkpoint|report|erase-subject|rotate-signing-key`, and the dispatch
//! to `verify-report`: the tamper-evident trail of one environment.

use std::process::ExitCode;

use anyhow::Context;
use portcullis_service::config::Config;
use portcullis_service::node;

use crate::output::{parse_public_keys, print_report};
use crate::progress::Progress;
use crate::verify_report::verify_report;
use crate::AuditCommand;

pub(crate) async fn run(command: AuditCommand, config: Config) -> anyhow::Result<ExitCode> {
    use portcullis_core::EnvironmentId;
    use portcullis_service::trail;
    // A tail of more entries than the checkpoint interval no checkpoint covers fails `verify`.
    let interval = u64::try_from(config.audit.checkpoint_every_entries).ok();
    if let AuditCommand::FetchCheckpoints {
        url,
        environment,
        token_file,
        out,
        ca_file,
        recheck,
    } = &command
    {
        return crate::fetch::run(
            url,
            *environment,
            token_file,
            out,
            ca_file.as_deref(),
            *recheck,
        )
        .await;
    }
    if let AuditCommand::Verify {
        bundle: Some(path),
        public_keys,
        accept_uncheckpointed,
        checkpoints,
        anchors,
        report,
        ..
    } = &command
    {
        let pinned = parse_public_keys(public_keys)?;
        if pinned.is_empty() {
            eprintln!(
                "warning: no --public-key given; trusting the keys listed in the bundle itself"
            );
        }
        let mut file = std::io::BufReader::new(
            std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?,
        );
        // The evidence is gathered for the environment the bundle's header names.
        let mut header = Vec::new();
        std::io::BufRead::read_until(&mut file, b'\n', &mut header)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let env = portcullis_audit::bundle::header_environment(&header)?;
        let evidence = crate::evidence::gather(env, checkpoints, anchors, report)?;
        if !evidence.checkpoints.is_empty() || !evidence.findings.is_empty() {
            eprintln!(
                "checking the bundle against {} checkpoints kept elsewhere ({} unreadable)",
                evidence.checkpoints.len(),
                evidence.findings.len()
            );
        }
        let mut bar = Progress::new("verifying", "entries", None);
        let mut progress = |n: u64| bar.update(n);
        let mut options = if pinned.is_empty() {
            portcullis_audit::bundle::VerifyOptions {
                trust: portcullis_audit::bundle::KeyTrust::BundleKeys,
                extra_checkpoints: &[],
                evidence_findings: &[],
                progress: None,
            }
        } else {
            portcullis_audit::bundle::VerifyOptions::pinned(&pinned)
        };
        options.extra_checkpoints = &evidence.checkpoints;
        options.evidence_findings = &evidence.findings;
        options.progress = Some((
            std::num::NonZeroU64::MIN.saturating_add(99_999),
            &mut progress,
        ));
        // The header line read above, then the rest of the file.
        let report = portcullis_audit::bundle::verify_bundle(
            std::io::Read::chain(header.as_slice(), file),
            options,
        )?;
        return Ok(print_report(&report, *accept_uncheckpointed, interval));
    }
    if let AuditCommand::VerifyReport {
        report,
        bundle,
        environment,
        keys,
    } = &command
    {
        return verify_report(
            report,
            bundle.as_deref(),
            *environment,
            keys.as_deref(),
            &config,
        )
        .await;
    }
    let db = node::database(&config, false).await?;
    let result = async {
        let store = db.store(4).await?;
        let owner = portcullis_store::bootstrap::runtime_pool(&db.owner, 2)
            .await
            .context("owner connection")?;
        let anchors = node::anchors(&config)?;
        match command {
            AuditCommand::List {
                environment,
                platform,
                action,
                limit,
                json,
            } => {
                let scope = if platform {
                    EnvironmentId::from_uuid(portcullis_store::PLATFORM_SCOPE)
                } else {
                    EnvironmentId::parse(environment.as_deref().unwrap_or_default())
                        .map_err(|e| anyhow::anyhow!("{e}"))?
                };
                let entries = trail::newest_entries(&store, scope, action.as_deref(), limit).await?;
                for e in &entries {
                    if json {
                        println!("{}", serde_json::to_string(&trail::entry_json(e))?);
                    } else {
                        println!(
                            "{}  {:<9} {:<36}  {:<28} {:<7} {} {}",
                            portcullis_store::audit_writer::rfc3339_micros(e.occurred_at),
                            e.actor_type,
                            e.actor_id.map(|a| a.to_string()).unwrap_or_else(|| "-".into()),
                            e.action,
                            e.outcome,
                            e.target_id.as_deref().unwrap_or("-"),
                            e.ip.as_deref().unwrap_or(""),
                        );
                    }
                }
                if !json {
                    eprintln!("{} entries, newest first", entries.len());
                }
                Ok(ExitCode::SUCCESS)
            }
            AuditCommand::Verify {
                environment,
                public_keys,
                accept_uncheckpointed,
                ..
            } => {
                let env = EnvironmentId::parse(environment.as_deref().unwrap_or_default())
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                let mut trusted = parse_public_keys(&public_keys)?;
                if trusted.is_empty() {
                    trusted = trail::published_keys(&store).await?;
                }
                eprintln!("verifying environment {env} against database checkpoints and anchors in {anchors}");
                let mut bar = Progress::new("verifying", "entries", None);
                let report =
                    trail::verify_environment(&store, env.as_uuid(), &trusted, &anchors, |n| {
                        bar.update(n)
                    })
                    .await?;
                bar.finish(report.entries);
                let chain = print_report(&report, accept_uncheckpointed, interval);
                // The other two streams are checked against their commitments in the chain.
                let mut tx = store
                    .tenant_as_system(
                        env,
                        portcullis_core::PermissionSet::of(&[portcullis_core::Permission::AuditRead]),
                        Default::default(),
                    )
                    .await?;
                let streams = portcullis_store::streams::check(&mut tx).await?;
                eprintln!(
                    "streams: {} intelligence-log rows and {} kernel-trace steps checked against their audit commitments",
                    streams.intelligence_rows, streams.trace_rows
                );
                for p in &streams.problems {
                    println!("FAILED: {} row {}: {}", p.stream, p.row, match p.kind {
                        "changed" => "changed since it was committed",
                        "missing" => "committed in the audit chain but no longer present",
                        _ => "present but never committed in the audit chain",
                    });
                }
                if streams.problems.is_empty() {
                    Ok(chain)
                } else {
                    Ok(ExitCode::from(1))
                }
            }
            AuditCommand::Export {
                environment,
                format,
                output,
            } => {
                let env = EnvironmentId::parse(&environment).map_err(|e| anyhow::anyhow!("{e}"))?;
                let mut bar = Progress::new("exporting", "entries", None);
                let n = trail::export_to_file(&store, &anchors, env.as_uuid(), &format, &output, |n, total| {
                    bar.set_total(total);
                    bar.update(n);
                })
                .await?;
                bar.finish(n);
                println!("wrote {n} entries to {}", output.display());
                Ok(ExitCode::SUCCESS)
            }
            AuditCommand::Checkpoint => {
                let vault = node::vault(&config).await?;
                let signer =
                    trail::Signer::load_or_create(&owner, &vault, vault.default_kek()).await?;
                let pass = trail::checkpoint_pass(
                    &store,
                    &owner,
                    &signer,
                    &anchors,
                    1,
                    std::time::Duration::ZERO,
                )
                .await?;
                if pass.skipped {
                    println!("another node is checkpointing right now; nothing done");
                    return Ok(ExitCode::SUCCESS);
                }
                println!(
                    "cut {} checkpoints, anchored {} earlier ones",
                    pass.cut, pass.reanchored
                );
                // L4: an environment whose log contradicts its anchored checkpoint was left
                // unsigned; say which, and fail.
                for c in &pass.contradicted {
                    println!("REFUSED: {c}");
                }
                if !pass.contradicted.is_empty() {
                    println!(
                        "{} environments left unsigned: their audit log contradicts the anchored checkpoints (rewritten or truncated); run `portcullis audit verify --environment <id>`",
                        pass.contradicted.len()
                    );
                }
                if pass.anchor_failures > 0 {
                    println!(
                        "{} checkpoints could not be anchored (or checked against the anchors); the next pass retries them",
                        pass.anchor_failures
                    );
                }
                if pass.anchor_failures > 0 || !pass.contradicted.is_empty() {
                    return Ok(ExitCode::FAILURE);
                }
                Ok(ExitCode::SUCCESS)
            }
            AuditCommand::Report {
                environment,
                month,
                out,
            } => {
                let vault = node::vault(&config).await?;
                let signer =
                    trail::Signer::load_or_create(&owner, &vault, vault.default_kek()).await?;
                let mut steps = crate::progress::Steps::default();
                let report = portcullis_service::report::generate_now_with_progress(
                    &store,
                    &signer,
                    &anchors,
                    &vault,
                    environment.as_uuid(),
                    month,
                    &mut |step, done, total| {
                        let what = match step {
                            portcullis_service::report::Step::Reading => "reading the log",
                            portcullis_service::report::Step::Verifying => "verifying the log",
                            portcullis_service::report::Step::Checking => "checking the report",
                        };
                        steps.update(what, "entries", done, total);
                    },
                )
                .await;
                steps.finish();
                let report = report?;
                let (json, pdf) = portcullis_service::report::write_files(&report, &out)?;
                println!("{}", json.display());
                println!("{}", pdf.display());
                // A log that fails verification still gets its report, which says what failed;
                // the exit status says it too, for whoever runs this monthly.
                let verdict = report.body.summary.as_ref().map(|s| &s.verdict);
                match verdict {
                    Some(v) if v.status == portcullis_audit::report::VerdictStatus::Failed => {
                        for a in &v.anomalies {
                            let at = a.seq.map(|s| format!(" at entry {s}")).unwrap_or_default();
                            println!("FAILED: {}{at}: {}", a.kind, a.detail);
                        }
                        Ok(ExitCode::FAILURE)
                    }
                    _ => Ok(ExitCode::SUCCESS),
                }
            }
            AuditCommand::VerifyReport { .. } | AuditCommand::FetchCheckpoints { .. } => {
                Ok(ExitCode::from(2))
            }
            AuditCommand::EraseSubject {
                identity,
                environment,
            } => {
                let identity = portcullis_core::IdentityId::parse(&identity)
                    .map_err(|_| anyhow::anyhow!("--identity: not an identity id: {identity}"))?;
                let event = |destroyed: bool| {
                    portcullis_store::AuditEvent::success("subject.erased", "identity", identity)
                        .after(serde_json::json!({ "key_destroyed": destroyed }))
                };
                let (scope, destroyed) = match environment {
                    Some(env) => {
                        let mut tx = store
                            .tenant_as_system(
                                env,
                                portcullis_core::PermissionSet::all(),
                                Default::default(),
                            )
                            .await?;
                        let destroyed = tx.erase_subject(identity).await?;
                        tx.audit(event(destroyed)).await?;
                        tx.commit().await?;
                        (format!("environment {env}"), destroyed)
                    }
                    None => {
                        let mut tx = store.auth(Default::default()).await?;
                        let destroyed = tx.erase_platform_subject(identity).await?;
                        tx.audit(portcullis_store::Actor::System, event(destroyed))
                            .await?;
                        tx.commit().await?;
                        ("the platform scope".to_owned(), destroyed)
                    }
                };
                if destroyed {
                    println!("erased: the subject key of {identity} in {scope} is destroyed; their audit metadata there now reads [erased]");
                } else {
                    println!("nothing to erase: {identity} has no subject key in {scope}");
                }
                Ok(ExitCode::SUCCESS)
            }
            AuditCommand::RotateSigningKey => {
                let vault = node::vault(&config).await?;
                let signer = trail::Signer::create(&owner, &vault, vault.default_kek()).await?;
                let mut tx = store.auth(Default::default()).await?;
                tx.as_system(Default::default()).await?;
                tx.audit(
                    portcullis_store::Actor::System,
                    portcullis_store::AuditEvent::success(
                        "audit.signing_key_rotated",
                        "audit_signing_key",
                        signer.key_id(),
                    ),
                )
                .await?;
                tx.commit().await?;
                println!(
                    "new checkpoint signing key {}; restart servers to sign with it",
                    signer.key_id()
                );
                Ok(ExitCode::SUCCESS)
            }
        }
    }
    .await;
    db.shutdown().await;
    result
}
