//! The `portcullis` binary: argument parsing, logging setup and the subcommands. Everything
//! substantial lives in the library crates.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use portcullis_server::config::{Config, LogFormat};
use portcullis_server::serve;

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
            let db = serve::database(&config, true).await?;
            println!("migrations applied");
            db.shutdown().await;
            Ok(ExitCode::SUCCESS)
        }
        Command::Controls { json } => {
            let db = serve::database(&config, false).await?;
            let checks = serve::self_check(&db.runtime).await;
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
        Command::Openapi => {
            println!(
                "{}",
                serde_json::to_string_pretty(&portcullis_server::openapi()).context("serialize")?
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
