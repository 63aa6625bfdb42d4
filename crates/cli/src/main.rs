//! The `portcullis` binary: argument parsing, logging setup and the subcommands. Everything
//! substantial lives in the library crates.
//!
//! This file holds the command line (every flag and help text) and the dispatch; `db`
//! (`migrate`, `controls`), `keys`, `audit`, `operator` and `verify_report` run the commands,
//! `output` has what the audit commands share.

mod audit;
mod db;
mod evidence;
mod fetch;
mod keys;
mod operator;
mod output;
mod progress;
mod verify_report;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use portcullis_server::serve;
use portcullis_service::config::{Config, LogFormat};

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
    /// Configuration file (TOML), as documented in portcullis.example.toml.
    ///
    /// Environment variables PORTCULLIS_<SECTION>__<KEY> override what it sets.
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
    /// The operator's own credentials for the platform routes (GET /v1/platform/audit).
    #[command(subcommand)]
    Operator(OperatorCommand),
}

#[derive(Debug, Subcommand)]
enum OperatorCommand {
    /// Operator tokens: create, list, revoke. Only this command, over the schema owner's
    /// connection, can make one; a running server cannot.
    #[command(subcommand)]
    Token(OperatorTokenCommand),
}

#[derive(Debug, Subcommand)]
enum OperatorTokenCommand {
    /// Create an operator token and print it once (stdout); only its SHA-256 is stored.
    ///
    /// Use it as `Authorization: Bearer pcs_op_...` on GET /v1/platform/audit. It reads the
    /// platform audit scope (sign-ups, sign-ins, setup, refused account requests) and nothing
    /// else; every read is audited under the token's id.
    Create {
        /// A name that says who or what holds it, e.g. "on-call SIEM export".
        #[arg(long)]
        name: String,
        /// Lifetime: a number of days or hours (`90d`, `12h`, 1 hour to 365 days), or `never`.
        #[arg(long, value_name = "DURATION", default_value = "90d", value_parser = parse_lifetime)]
        expires_in: Lifetime,
    },
    /// List operator tokens (never the tokens themselves): id, name, hint, state, last use.
    List {
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke an operator token; every node refuses it from the next request on.
    Revoke {
        /// The token's id, as `list` shows it.
        token_id: String,
    },
}

/// An operator token's lifetime as given on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lifetime {
    Never,
    For(time::Duration),
}

fn parse_lifetime(s: &str) -> Result<Lifetime, String> {
    if s == "never" {
        return Ok(Lifetime::Never);
    }
    let (n, unit) = s.split_at(s.len().saturating_sub(1));
    let n: i64 = n
        .parse()
        .map_err(|_| format!("expected e.g. 90d, 12h or never, not {s:?}"))?;
    let d = match unit {
        "d" => time::Duration::days(n),
        "h" => time::Duration::hours(n),
        _ => return Err(format!("expected e.g. 90d, 12h or never, not {s:?}")),
    };
    if !(portcullis_service::platform::MIN_LIFETIME..=portcullis_service::platform::MAX_LIFETIME)
        .contains(&d)
    {
        return Err("between 1h and 365d".into());
    }
    Ok(Lifetime::For(d))
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Verify an environment's chain against the database checkpoints and the anchors, or an
    /// exported bundle offline. Reports the first bad entry and why; exits 1 if any.
    #[command(group = clap::ArgGroup::new("source").required(true).args(["environment", "bundle"]))]
    Verify {
        /// The environment (its id) whose chain to verify, read from the database.
        #[arg(long, value_name = "ENVIRONMENT_ID")]
        environment: Option<String>,
        /// An export from `audit export --format bundle` (or the API); verified offline.
        #[arg(long)]
        bundle: Option<PathBuf>,
        /// A trusted checkpoint key (hex Ed25519); repeat it for several.
        ///
        /// E.g. from /.well-known/portcullis/audit-keys.json. Without it, a bundle's own keys
        /// are used, which proves integrity only relative to them.
        #[arg(long = "public-key", value_name = "HEX")]
        public_keys: Vec<String>,
        /// Accept entries no signed checkpoint covers, beyond the checkpoint interval.
        ///
        /// By default a chain that no signed checkpoint covers at all, or whose uncovered tail
        /// is longer than the checkpoint interval (`audit.checkpoint_every_entries`), fails:
        /// nothing but the chain itself vouches for those entries.
        #[arg(long)]
        accept_uncheckpointed: bool,
        /// Checkpoints kept elsewhere to check the bundle against; repeatable.
        ///
        /// A file of checkpoint texts or a saved checkpoint feed page, or a directory of
        /// `*.checkpoint` and `*.json` files (`audit fetch-checkpoints --out DIR`). Only with
        /// --bundle.
        #[arg(long, value_name = "FILE|DIR", conflicts_with = "environment")]
        checkpoints: Vec<PathBuf>,
        /// An anchor directory whose checkpoints to check the bundle against; repeatable.
        ///
        /// Laid out as `audit.anchor_dir` is: `DIR/<environment>/<size>.checkpoint`; the
        /// bundle's environment must be there. Only with --bundle.
        #[arg(long, value_name = "DIR", conflicts_with = "environment")]
        anchors: Vec<PathBuf>,
        /// A signed monthly report whose checkpoints to check the bundle against; repeatable.
        ///
        /// Its closing checkpoint and the previous month's. Only with --bundle.
        #[arg(long, value_name = "FILE", conflicts_with = "environment")]
        report: Vec<PathBuf>,
    },
    /// Keep copies of an environment's signed checkpoints from the checkpoint feed of a
    /// running server (`GET /v1/environments/{id}/audit/checkpoints`), one file per checkpoint
    /// (`OUT/<size>.checkpoint`), for `audit verify --bundle ... --checkpoints OUT`. Files
    /// already there are kept (never overwritten); a different checkpoint for a size already
    /// kept is reported and fails the command.
    FetchCheckpoints {
        /// The server's base URL, e.g. https://portcullis.example.com (http:// only to loopback).
        #[arg(long)]
        url: String,
        /// The environment (its id).
        #[arg(long, value_name = "ENVIRONMENT_ID", value_parser = parse_environment)]
        environment: portcullis_core::EnvironmentId,
        /// A file holding a bearer token with audit.read in that environment.
        ///
        /// E.g. an API token of the auditor role.
        #[arg(long, value_name = "FILE")]
        token_file: PathBuf,
        /// The directory to keep the checkpoints in (created if needed).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Trust this PEM certificate (a self-signed server's) instead of the public roots.
        #[arg(long, value_name = "FILE")]
        ca_file: Option<PathBuf>,
        /// Read the feed from the start and compare every kept copy.
        ///
        /// By default the fetch resumes after the largest size kept.
        #[arg(long)]
        recheck: bool,
    },
    /// List the newest entries of an environment's log, or of the platform scope (sign-ups,
    /// sign-ins, failed sign-ins, platform key changes), newest first.
    #[command(group = clap::ArgGroup::new("scope").required(true).args(["environment", "platform"]))]
    List {
        /// The environment (its id) whose entries to list.
        #[arg(long, value_name = "ENVIRONMENT_ID")]
        environment: Option<String>,
        /// List the platform scope instead of an environment.
        #[arg(long)]
        platform: bool,
        /// Only entries with this action, e.g. auth.login_failed.
        #[arg(long)]
        action: Option<String>,
        /// How many entries at most (1 to 10000).
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..=10_000))]
        limit: i64,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Export an environment's audit log.
    Export {
        /// The environment (its id) whose log to export.
        #[arg(long, value_name = "ENVIRONMENT_ID")]
        environment: String,
        /// jsonl, csv or bundle (bundle = verifiable offline).
        #[arg(long, default_value = "bundle")]
        format: String,
        /// The file to write (created or replaced).
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
        #[arg(long, value_name = "IDENTITY_ID")]
        identity: String,
        /// The environment (its id) to erase them from; the platform scope when omitted.
        #[arg(long, value_name = "ENVIRONMENT_ID", value_parser = parse_environment)]
        environment: Option<portcullis_core::EnvironmentId>,
    },
    /// Write the signed monthly report of an environment (control L6): `<env>-<YYYY-MM>.report.json`
    /// (authoritative, signed) and `.report.pdf` (for people). The month must have ended; if no
    /// checkpoint covers it yet, one is cut. Prints the two paths.
    Report {
        /// The environment (its id) to report on.
        #[arg(long, value_name = "ENVIRONMENT_ID", value_parser = parse_environment)]
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
        #[arg(long, value_name = "ENVIRONMENT_ID", value_parser = parse_environment)]
        environment: Option<portcullis_core::EnvironmentId>,
        /// Trusted keys: a file in the format of /.well-known/portcullis/audit-keys.json.
        ///
        /// Default: the keys published in the database (with --bundle: the bundle's own keys).
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
        /// One environment (its id); all environments with a keyring when omitted.
        #[arg(long, value_name = "ENVIRONMENT_ID", conflicts_with = "platform")]
        environment: Option<String>,
        /// The platform keyring instead (the keys of personal data).
        ///
        /// Shows the PII key versions and the accounts, invitations and subject keys each one
        /// seals.
        #[arg(long)]
        platform: bool,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Start a new data-key version and re-encrypt existing values, showing progress. If a
    /// previous job was interrupted, it is resumed instead.
    Rotate {
        /// The environment (its id) whose data key to rotate.
        #[arg(long, value_name = "ENVIRONMENT_ID")]
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

/// The log filter: `RUST_LOG` when set, else `[log] level`. Either must parse; a filter that
/// does not is an error at start, never silently replaced by another.
fn log_filter(config: &Config) -> Result<tracing_subscriber::filter::Targets, String> {
    let (source, text) = match std::env::var("RUST_LOG") {
        Ok(v) if !v.trim().is_empty() => ("RUST_LOG", v),
        _ => ("[log] level", config.log.level.clone()),
    };
    text.trim().parse().map_err(|e| {
        format!(
            "{source} = {text:?} is not a log filter ({e}); write a level (error, warn, info, \
             debug, trace) or target=level pairs, e.g. \"info,portcullis_store=debug\""
        )
    })
}

fn init_logging(config: &Config) -> Result<(), String> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = log_filter(config)?;
    // Colour only for a person at a terminal: a file, a pipe or a journal gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match config.log.format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .finish()
            .with(filter)
            .init(),
        LogFormat::Human => builder.finish().with(filter).init(),
    }
    Ok(())
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
    if let Err(e) = init_logging(&config) {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
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
        Command::Migrate => db::migrate(&config).await,
        Command::Controls { json } => db::controls(&config, json).await,
        Command::Keys(k) => keys::run(k, config).await,
        Command::Audit(a) => audit::run(a, config).await,
        Command::Operator(OperatorCommand::Token(t)) => operator::run(t, config).await,
        Command::Openapi => {
            println!(
                "{}",
                serde_json::to_string_pretty(&portcullis_server::openapi()).context("serialize")?
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn parse_environment(s: &str) -> Result<portcullis_core::EnvironmentId, String> {
    portcullis_core::EnvironmentId::parse(s).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// One line of a terminal, less the option's own column.
    const MAX_SHORT_HELP: usize = 90;

    fn collapse(text: &str) -> String {
        text.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    /// How an argument appears in help and usage: `--long`, or `<VALUE>` for a positional.
    fn shown_as(arg: &clap::Arg) -> String {
        match arg.get_long() {
            Some(long) => format!("--{long}"),
            None => format!("<{}>", arg.get_id().as_str().to_uppercase()),
        }
    }

    /// Renders the help of `cmd` and of every subcommand below it, collecting what a reader
    /// would miss: an option with no description (or one the help does not show), a required
    /// option or a required choice between options that the usage line hides.
    fn check(cmd: &mut clap::Command, path: &str, problems: &mut Vec<String>, seen: &mut usize) {
        *seen += 1;
        let help = collapse(&cmd.render_help().to_string());
        let usage = cmd.render_usage().to_string();
        if cmd.get_about().is_none() && path != "portcullis" {
            problems.push(format!("`{path}` has no description"));
        }
        for arg in cmd.get_arguments() {
            let id = arg.get_id().as_str();
            if id == "help" || id == "version" || arg.is_hide_set() {
                continue;
            }
            let name = shown_as(arg);
            match arg.get_help().map(|h| h.to_string()) {
                Some(h) if !h.trim().is_empty() => {
                    if !help.contains(&collapse(&h)) {
                        problems.push(format!("`{path}` help does not show what {name} is"));
                    }
                    // The rest of a longer description belongs in the long help (`--help`).
                    if h.contains('\n') || h.chars().count() > MAX_SHORT_HELP {
                        problems.push(format!(
                            "`{path}`: {name}'s description is longer than one line ({} characters); put the detail in a second paragraph",
                            h.chars().count()
                        ));
                    }
                }
                _ => problems.push(format!("`{path}`: {name} has no description")),
            }
            if arg.is_required_set() && !usage.contains(&name) {
                problems.push(format!("`{path}` usage hides the required {name}: {usage}"));
            }
        }
        for group in cmd.get_groups().filter(|g| g.is_required_set()) {
            for id in group.get_args() {
                let Some(arg) = cmd.get_arguments().find(|a| a.get_id() == id) else {
                    continue;
                };
                let name = shown_as(arg);
                if !usage.contains(&name) {
                    problems.push(format!(
                        "`{path}` usage hides {name}, one of a required choice: {usage}"
                    ));
                }
            }
        }
        let names: Vec<String> = cmd
            .get_subcommands()
            .map(|s| s.get_name().to_owned())
            .filter(|n| n != "help")
            .collect();
        for name in names {
            if let Some(sub) = cmd.find_subcommand_mut(&name) {
                check(sub, &format!("{path} {name}"), problems, seen);
            }
        }
    }

    /// Issue 12, item 7: every option of every subcommand has a one-line description in its
    /// rendered help, and required options and required choices show in the usage line.
    #[test]
    fn every_subcommand_documents_every_option() {
        let mut cli = Cli::command();
        cli.build();
        let mut problems = Vec::new();
        let mut seen = 0;
        check(&mut cli, "portcullis", &mut problems, &mut seen);
        assert!(seen > 15, "walked only {seen} commands");
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    /// `audit verify` needs --environment or --bundle, and its usage line says so.
    #[test]
    fn audit_verify_usage_shows_its_required_choice() {
        let mut cli = Cli::command();
        cli.build();
        let verify = cli
            .find_subcommand_mut("audit")
            .and_then(|a| a.find_subcommand_mut("verify"))
            .unwrap();
        let usage = verify.render_usage().to_string();
        assert!(
            usage.contains("<--environment <ENVIRONMENT_ID>|--bundle <BUNDLE>>"),
            "{usage}"
        );
        for args in [
            &["portcullis", "audit", "verify"][..],
            &[
                "portcullis",
                "audit",
                "verify",
                "--environment",
                "e",
                "--bundle",
                "b",
            ],
        ] {
            assert!(Cli::try_parse_from(args).is_err(), "{args:?}");
        }
        assert!(Cli::try_parse_from(["portcullis", "audit", "verify", "--bundle", "b"]).is_ok());
    }

    #[test]
    fn operator_token_lifetimes_parse_strictly() {
        assert_eq!(
            parse_lifetime("90d"),
            Ok(Lifetime::For(time::Duration::days(90)))
        );
        assert_eq!(
            parse_lifetime("12h"),
            Ok(Lifetime::For(time::Duration::hours(12)))
        );
        assert_eq!(parse_lifetime("never"), Ok(Lifetime::Never));
        for bad in ["", "d", "0h", "366d", "-1d", "5m", "1.5d", "forever"] {
            assert!(parse_lifetime(bad).is_err(), "{bad}");
        }
    }
}
