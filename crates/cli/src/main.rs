//! The `portcullis` binary: argument parsing, logging setup and the subcommands. Everything
//! substantial lives in the library crates.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use portcullis_server::serve;
use portcullis_service::config::{Config, LogFormat};
use portcullis_service::node;

#[derive(Debug, Parser)]
#[command(
    name = "portcullis",
    version,
    about = "Multi-tenant security kernel for SaaS products whose AI agents act for customers",
    long_about = "Portcullis serves a hardened HTTPS JSON API over PostgreSQL: tenant isolation in the \
application and in row-level security, roles with project scoping, hashed tokens and an \
append-only audit log.\n\nWith no database configured it provisions a private PostgreSQL \
cluster under the data directory from the system's server binaries."
)]
struct Cli {
    /// Configuration file (TOML); see portcullis.example.toml. Environment variables
    /// PORTCULLIS_<SECTION>__<KEY> override it.
    #[arg(long, short, global = true, env = "PORTCULLIS_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the API server (migrates first and refuses to start on a failed self-check).
    Serve,
    /// Create the database roles and apply pending migrations, then exit.
    Migrate,
    /// Run the security self-check against the database and print each check.
    Controls {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print the OpenAPI document.
    Openapi,
    /// The tamper-evident audit trail: verify, export, checkpoint, monthly reports.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Envelope-encryption keys: status, rotation, root-key rotation.
    #[command(subcommand)]
    Keys(KeysCommand),
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Verify an environment's chain against the database checkpoints and the anchors, or an
    /// exported bundle offline. Reports the first bad entry and why; exits 1 if any.
    Verify {
        #[arg(long, conflicts_with = "bundle", required_unless_present = "bundle")]
        environment: Option<String>,
        /// An export from `audit export --format bundle` (or the API); verified offline.
        #[arg(long)]
        bundle: Option<PathBuf>,
        /// Trusted checkpoint keys (hex Ed25519), e.g. from /.well-known/portcullis/audit-keys.json.
        /// Without it, a bundle's own keys are used, which proves integrity only relative to them.
        #[arg(long = "public-key")]
        public_keys: Vec<String>,
    },
    /// Export an environment's audit log.
    Export {
        #[arg(long)]
        environment: String,
        /// jsonl, csv or bundle (bundle = verifiable offline).
        #[arg(long, default_value = "bundle")]
        format: String,
        #[arg(long)]
        output: PathBuf,
    },
    /// Cut and anchor a signed checkpoint for every environment with new entries, now.
    Checkpoint,
    /// Erase a person's personal data from the audit trail (control D3): destroys their subject
    /// key in one environment, or in the platform scope (logins, sign-ups) without
    /// `--environment`. Their IP addresses and user agents then read `[erased]`; every entry,
    /// proof and checkpoint still verifies. The erasure is audited.
    EraseSubject {
        /// The person's identity id.
        #[arg(long)]
        identity: String,
        #[arg(long, value_parser = parse_environment)]
        environment: Option<portcullis_core::EnvironmentId>,
    },
    /// Write the signed monthly report of an environment (control L6): `<env>-<YYYY-MM>.report.json`
    /// (authoritative, signed) and `.report.pdf` (for people). The month must have ended; if no
    /// checkpoint covers it yet, one is cut. Prints the two paths.
    Report {
        #[arg(long, value_parser = parse_environment)]
        environment: portcullis_core::EnvironmentId,
        /// The calendar month in UTC.
        #[arg(long, value_name = "YYYY-MM")]
        month: portcullis_audit::report::Month,
        /// Directory to write the files into.
        #[arg(long, default_value = ".")]
        out: PathBuf,
    },
    /// Verify a monthly report: its signature against the published keys, its checkpoints, the
    /// consistency proof from the previous month, and (given a bundle or the database) its facts
    /// recomputed from the entries. Exits 0 if it verifies, 1 naming the first failure, 2 on
    /// usage errors.
    VerifyReport {
        /// The report's JSON file.
        report: PathBuf,
        /// Recompute the facts from this export bundle (`audit export --format bundle`), offline.
        #[arg(long, conflicts_with = "environment")]
        bundle: Option<PathBuf>,
        /// Recompute the facts from the database (must be the report's environment).
        #[arg(long, value_parser = parse_environment)]
        environment: Option<portcullis_core::EnvironmentId>,
        /// Trusted keys, a file in the format of /.well-known/portcullis/audit-keys.json. Default:
        /// the keys published in the database (with --bundle: the bundle's own keys).
        #[arg(long)]
        keys: Option<PathBuf>,
    },
    /// Create a new checkpoint signing key; older keys stay published for verification.
    RotateSigningKey,
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Show key versions, the values using each, and re-encryption jobs.
    Status {
        /// One environment; all environments with a keyring when omitted.
        #[arg(long, conflicts_with = "platform")]
        environment: Option<String>,
        /// The platform keyring instead: PII key versions and the accounts, invitations and
        /// subject keys each one seals.
        #[arg(long)]
        platform: bool,
        #[arg(long)]
        json: bool,
    },
    /// Start a new data-key version and re-encrypt existing values, showing progress. If a
    /// previous job was interrupted, it is resumed instead.
    Rotate {
        #[arg(long)]
        environment: String,
        /// Rows per transaction.
        #[arg(long, default_value_t = 500)]
        batch: i64,
    },
    /// Rotate the local master key and rewrap every data key it protects (ciphertexts are
    /// untouched).
    RotateRoot,
    /// Rotate the platform PII key (account emails and names, invitation emails, subject keys):
    /// a new version for new writes, then everything sealed under older versions is re-sealed,
    /// showing progress. Resumable; run it again to pick up rows other nodes sealed meanwhile.
    RotatePii,
}

fn init_logging(config: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log.format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Human => builder.init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref(), std::env::vars()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(&config);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command, config)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, config: Config) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve => {
            serve::run(config).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate => {
            let db = node::database(&config, true).await?;
            println!("migrations applied");
            db.shutdown().await;
            Ok(ExitCode::SUCCESS)
        }
        Command::Controls { json } => {
            let db = node::database(&config, false).await?;
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
        Command::Keys(k) => keys(k, config).await,
        Command::Audit(a) => audit(a, config).await,
        Command::Openapi => {
            println!(
                "{}",
                serde_json::to_string_pretty(&portcullis_server::openapi()).context("serialize")?
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn keys(command: KeysCommand, config: Config) -> anyhow::Result<ExitCode> {
    use portcullis_core::EnvironmentId;
    use portcullis_service::jobs;
    let db = node::database(&config, false).await?;
    let result = async {
        let store = portcullis_store::Store::new(
            portcullis_store::bootstrap::runtime_pool(&db.runtime, 4).await.context("runtime connection")?,
        );
        let owner = portcullis_store::bootstrap::runtime_pool(&db.owner, 2).await.context("owner connection")?;
        let vault = node::vault(&config).await?;
        let parse = |s: &str| EnvironmentId::parse(s).map_err(|e| anyhow::anyhow!("{e}"));
        match command {
            KeysCommand::Status {
                platform: true,
                json,
                ..
            } => {
                let st = portcullis_store::pii::status(&owner).await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&st)?);
                } else {
                    println!(
                        "platform keyring  email index key kek {}",
                        st.email_index_kek
                            .as_ref()
                            .map_or("(not created yet)".to_owned(), |k| k.to_string())
                    );
                    for v in &st.pii_versions {
                        println!(
                            "  PII v{:<4} {:<7} {:>8} accounts {:>8} invitations {:>8} subject keys  kek {}",
                            v.version,
                            if v.active { "active" } else { "usable" },
                            v.identities,
                            v.invitations,
                            v.subject_keys,
                            v.kek
                        );
                    }
                    if st.clear_identities + st.clear_invitations > 0 {
                        println!(
                            "  in clear (sealed at next server start): {} accounts, {} invitations",
                            st.clear_identities, st.clear_invitations
                        );
                    }
                }
            }
            KeysCommand::Status { environment, json, .. } => {
                let envs = match environment {
                    Some(e) => vec![parse(&e)?],
                    None => portcullis_store::vault::operator::keyrings(&owner)
                        .await?
                        .into_iter()
                        .map(|(e, _, _)| EnvironmentId::from_uuid(e))
                        .collect(),
                };
                let mut all = vec![];
                for env in envs {
                    all.push(jobs::status(&store, &vault, env).await.with_context(|| format!("environment {env}"))?);
                }
                if json {
                    println!("{}", serde_json::to_string_pretty(&all)?);
                } else {
                    for s in &all {
                        println!("environment {}  kek {}  active v{}  usable from v{}  rotated {}", s.environment_id, s.kek, s.active_version, s.min_decrypt_version, s.rotated_at);
                        for v in &s.versions {
                            let state = if v.retired_at.is_some() { "retired" } else if v.active { "active" } else { "usable" };
                            println!("  v{:<4} {:<8} {:>8} values", v.version, state, v.rows);
                        }
                        if s.plaintext_rows > 0 {
                            println!("  not yet encrypted: {} values", s.plaintext_rows);
                        }
                        for j in s.jobs.iter().filter(|j| j.finished_at.is_none()) {
                            println!("  job {} to v{}: {} values re-encrypted so far (unfinished)", j.job_id, j.target_version, j.rows_done);
                        }
                    }
                    if all.is_empty() {
                        println!("no environment has a keyring yet");
                    }
                }
            }
            KeysCommand::Rotate { environment, batch } => {
                let env = parse(&environment)?;
                let job = match jobs::running_job(&store, &vault, env).await? {
                    Some(job) => {
                        eprintln!("resuming interrupted re-encryption job {job}");
                        job
                    }
                    None => {
                        let r = jobs::rotate(&store, &vault, env, "operator").await?;
                        eprintln!("data key version {} is now active; re-encrypting existing values (job {})", r.version, r.job_id);
                        r.job_id
                    }
                };
                let started = std::time::Instant::now();
                let done = jobs::run_job(&store, &vault, env, job, batch, |o| {
                    eprintln!("  {} values re-encrypted ({:.1}s)", o.rows_done, started.elapsed().as_secs_f64());
                })
                .await?;
                println!("re-encryption finished: {} values; retire old versions with the API (POST /v1/environments/{env}/keys/retire) once backups no longer need them", done.rows_done);
            }
            KeysCommand::RotatePii => {
                let done = portcullis_store::pii::rotate(&owner, &store, &vault, |p| {
                    eprintln!(
                        "  version {}: {} accounts, {} invitations, {} subject keys re-sealed",
                        p.version, p.identities, p.invitations, p.subject_keys
                    )
                })
                .await?;
                let mut tx = store.auth(Default::default()).await?;
                tx.audit(
                    portcullis_store::Actor::System,
                    portcullis_store::AuditEvent::success("keys.pii_rotated", "platform_keys", "pii")
                        .after(done),
                )
                .await?;
                tx.commit().await?;
                println!(
                    "platform PII key version {} is active; re-sealed {} accounts, {} invitations and {} subject keys",
                    done.version, done.identities, done.invitations, done.subject_keys
                );
            }
            KeysCommand::RotateRoot => {
                let (name, envs) = jobs::rotate_root(&store, &owner, &vault).await?;
                println!("new local master key {name}; rewrapped the data keys of {} environments", envs.len());
            }
        }
        Ok::<_, anyhow::Error>(ExitCode::SUCCESS)
    }
    .await;
    db.shutdown().await;
    result
}

fn parse_environment(s: &str) -> Result<portcullis_core::EnvironmentId, String> {
    portcullis_core::EnvironmentId::parse(s).map_err(|e| e.to_string())
}

/// `audit verify-report`: exit 0 when the report verifies, 1 with its findings, 2 on usage
/// errors. Runs offline with `--bundle` (and `--keys`); otherwise reads keys and, with
/// `--environment`, entries from the database.
async fn verify_report(
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
            let store = portcullis_store::Store::new(
                portcullis_store::bootstrap::runtime_pool(&db.runtime, 2)
                    .await
                    .context("runtime connection")?,
            );
            let trusted = match pinned {
                Some(k) => k,
                None => trail::published_keys(&store).await?,
            };
            if environment.is_some() {
                anyhow::Ok((
                    report::verify_with_db(&store, &parsed, &trusted).await?,
                    "the entries in the database".to_owned(),
                ))
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
    println!("  facts checked against {checked_against}");
    Ok(ExitCode::SUCCESS)
}

fn parse_public_keys(
    keys: &[String],
) -> anyhow::Result<Vec<portcullis_audit::checkpoint::PublicKey>> {
    keys.iter()
        .map(|k| {
            portcullis_audit::checkpoint::PublicKey::from_hex(k.trim())
                .with_context(|| format!("`{k}` is not a 64-character hex Ed25519 public key"))
        })
        .collect()
}

fn print_report(report: &portcullis_audit::verify::Report) -> ExitCode {
    match &report.first_problem {
        None => {
            println!(
                "OK: {} entries verified, {} checkpoints consistent",
                report.entries, report.checkpoints_checked
            );
            ExitCode::SUCCESS
        }
        Some(p) => {
            println!("FAILED after {} good entries: {p}", report.entries);
            ExitCode::FAILURE
        }
    }
}

async fn audit(command: AuditCommand, config: Config) -> anyhow::Result<ExitCode> {
    use portcullis_core::EnvironmentId;
    use portcullis_service::trail;
    if let AuditCommand::Verify {
        bundle: Some(path),
        public_keys,
        ..
    } = &command
    {
        let pinned = parse_public_keys(public_keys)?;
        if pinned.is_empty() {
            eprintln!(
                "warning: no --public-key given; trusting the keys listed in the bundle itself"
            );
        }
        let file =
            std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let mut progress = |n: u64| eprintln!("  {n} entries verified");
        let mut options = if pinned.is_empty() {
            portcullis_audit::bundle::VerifyOptions {
                trust: portcullis_audit::bundle::KeyTrust::BundleKeys,
                extra_checkpoints: &[],
                progress: None,
            }
        } else {
            portcullis_audit::bundle::VerifyOptions::pinned(&pinned)
        };
        options.progress = Some((
            std::num::NonZeroU64::MIN.saturating_add(99_999),
            &mut progress,
        ));
        let report =
            portcullis_audit::bundle::verify_bundle(std::io::BufReader::new(file), options)?;
        return Ok(print_report(&report));
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
        let store = portcullis_store::Store::new(
            portcullis_store::bootstrap::runtime_pool(&db.runtime, 4)
                .await
                .context("runtime connection")?,
        );
        let owner = portcullis_store::bootstrap::runtime_pool(&db.owner, 2)
            .await
            .context("owner connection")?;
        let anchors = node::anchors(&config)?;
        match command {
            AuditCommand::Verify {
                environment,
                public_keys,
                ..
            } => {
                let env = EnvironmentId::parse(environment.as_deref().unwrap_or_default())
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                let mut trusted = parse_public_keys(&public_keys)?;
                if trusted.is_empty() {
                    trusted = trail::published_keys(&store).await?;
                }
                eprintln!("verifying environment {env} against database checkpoints and anchors in {anchors}");
                let report =
                    trail::verify_environment(&store, env.as_uuid(), &trusted, &anchors, |n| {
                        eprintln!("  {n} entries verified")
                    })
                    .await?;
                let chain = print_report(&report);
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
                let n = trail::export_to_file(&store, env.as_uuid(), &format, &output).await?;
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
                if pass.anchor_failures > 0 {
                    println!(
                        "{} checkpoints could not be anchored; the next pass retries them",
                        pass.anchor_failures
                    );
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
                let report = portcullis_service::report::generate_now(
                    &store,
                    &signer,
                    &anchors,
                    environment.as_uuid(),
                    month,
                )
                .await?;
                let (json, pdf) = portcullis_service::report::write_files(&report, &out)?;
                println!("{}", json.display());
                println!("{}", pdf.display());
                Ok(ExitCode::SUCCESS)
            }
            AuditCommand::VerifyReport { .. } => Ok(ExitCode::from(2)),
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
