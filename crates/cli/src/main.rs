//! The `portcullis` binary: argument parsing, logging setup and the subcommands. Everything
//! substantial lives in the library crates.
//!
//! This file holds the command line (every flag and help text) and the dispatch; `db`
//! (`migrate`, `controls`), `keys`, `audit` and `verify_report` run the commands, `output` has
//! what the audit commands share.

mod audit;
mod db;
mod keys;
mod output;
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
        /// Accept a chain that no signed checkpoint covers at all, or whose uncovered tail is
        /// longer than the checkpoint interval (`audit.checkpoint_every_entries`); by default
        /// either fails: nothing but the chain itself vouches for those entries.
        #[arg(long)]
        accept_uncheckpointed: bool,
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
        Command::Migrate => db::migrate(&config).await,
        Command::Controls { json } => db::controls(&config, json).await,
        Command::Keys(k) => keys::run(k, config).await,
        Command::Audit(a) => audit::run(a, config).await,
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
