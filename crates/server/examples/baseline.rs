//! The baseline arm of `bench/http.sh` (docs/BENCHMARKS.md, "HTTP API"): the least a server
//! on Portcullis's own stack can do to answer the document GET, so the benchmark can report
//! Portcullis as a ratio to what this machine and stack allow.
//!
//! Same stack as `portcullis serve`: the listener is `portcullis_server::tls::serve_tls` (rustls
//! with the ring provider, TLS 1.3/1.2, ALPN h2 + http/1.1, hyper-util's auto builder), the
//! router is axum, the database driver sqlx with a pool of the same default size. What it leaves
//! out is all the security work: no authentication (the `Authorization` header is ignored), no
//! session, membership or permission lookup, no signed context, no row-level security (it
//! connects as the superuser in the URL, who bypasses it), no transaction, no decryption. A GET of
//! `/v1/environments/{env}/projects/{project}/documents/{document}` is one indexed SELECT of the
//! document row by its primary key; the JSON has the fields of Portcullis's document view, and
//! an encrypted body is returned as its ciphertext mapped byte for byte to printable ASCII, so
//! the response is about as large as the real one (the ciphertext is the 1 KiB plaintext plus
//! a 33-byte header and a 16-byte tag).
//!
//! ```text
//! cargo build --release -p portcullis-server --example baseline
//! target/release/examples/baseline DATABASE_URL LISTEN CERT_PEM KEY_PEM
//! ```
//!
//! Each argument may instead come from the environment: `BASELINE_DATABASE_URL`,
//! `BASELINE_LISTEN` (default 127.0.0.1:9445), `BASELINE_CERT_FILE`, `BASELINE_KEY_FILE`;
//! `BASELINE_MAX_CONNECTIONS` sets the pool size (default 16, `database.max_connections`'s
//! default). Its PostgreSQL connections carry `application_name` = `portcullis-baseline`, so
//! the benchmark can tell their backends from the real server's on the same database.
//! SIGTERM or Ctrl-C stops it.

#![allow(
    clippy::disallowed_methods,
    reason = "a benchmark baseline that deliberately runs its one SELECT outside the store"
)]

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{bail, Context};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use portcullis_server::tls::{self, TlsFiles};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use time::OffsetDateTime;
use uuid::Uuid;

/// The application name on every connection of the baseline's pool.
const APPLICATION_NAME: &str = "portcullis-baseline";

/// The one statement: the document row by its primary key `(environment_id, document_id)`.
const DOCUMENT: &str = "SELECT document_id, project_id, title, body, body_ciphertext, version, \
     created_by, created_at, updated_at FROM documents \
     WHERE environment_id = $1 AND document_id = $2 AND project_id = $3";

#[derive(sqlx::FromRow)]
struct Row {
    document_id: Uuid,
    project_id: Uuid,
    title: String,
    body: Option<String>,
    body_ciphertext: Option<Vec<u8>>,
    version: i32,
    created_by: Uuid,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
}

/// The fields of `portcullis_server::views::documents::Document`.
#[derive(serde::Serialize)]
struct Document {
    document_id: Uuid,
    project_id: Uuid,
    title: String,
    body: String,
    version: i32,
    created_by: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    updated_at: OffsetDateTime,
}

/// Printable stand-in for a ciphertext: same length, no JSON escaping, no decryption.
fn printable(bytes: &[u8]) -> String {
    bytes.iter().map(|b| char::from(b'a' + b % 26)).collect()
}

async fn document(
    State(pool): State<PgPool>,
    Path((environment_id, project_id, document_id)): Path<(Uuid, Uuid, Uuid)>,
) -> Response {
    let row = sqlx::query_as::<_, Row>(DOCUMENT)
        .bind(environment_id)
        .bind(document_id)
        .bind(project_id)
        .fetch_optional(&pool)
        .await;
    match row {
        Ok(Some(r)) => Json(Document {
            document_id: r.document_id,
            project_id: r.project_id,
            title: r.title,
            body: match (r.body, r.body_ciphertext) {
                (Some(body), _) => body,
                (None, Some(ciphertext)) => printable(&ciphertext),
                (None, None) => String::new(),
            },
            version: r.version,
            created_by: r.created_by,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
        .into_response(),
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(error) => {
            eprintln!("baseline: {error}");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! { _ = tokio::signal::ctrl_c() => {}, () = term => {} }
}

/// Positional argument `index`, else environment variable `var`, else `default`.
fn setting(index: usize, var: &str, default: Option<&str>) -> anyhow::Result<String> {
    if let Some(v) = std::env::args().nth(index) {
        return Ok(v);
    }
    if let Ok(v) = std::env::var(var) {
        return Ok(v);
    }
    match default {
        Some(d) => Ok(d.to_owned()),
        None => bail!("missing argument {index} (or {var}); usage: baseline DATABASE_URL LISTEN CERT_PEM KEY_PEM"),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = setting(1, "BASELINE_DATABASE_URL", None)?;
    let listen = setting(2, "BASELINE_LISTEN", Some("127.0.0.1:9445"))?;
    let cert_file = PathBuf::from(setting(3, "BASELINE_CERT_FILE", None)?);
    let key_file = PathBuf::from(setting(4, "BASELINE_KEY_FILE", None)?);
    let max_connections: u32 = std::env::var("BASELINE_MAX_CONNECTIONS")
        .unwrap_or_else(|_| "16".to_owned())
        .parse()
        .context("BASELINE_MAX_CONNECTIONS")?;

    let options = PgConnectOptions::from_str(&url)
        .context("database URL")?
        .application_name(APPLICATION_NAME);
    let pool = PgPoolOptions::new()
        .max_connections(max_connections)
        .min_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options)
        .await
        .context("cannot connect to the database")?;

    let files = TlsFiles {
        cert_file: Some(cert_file),
        key_file: Some(key_file),
    };
    // With both files given, the data directory is not used.
    let (config, _) = tls::server_config(&files, std::path::Path::new("."))?;
    let app = Router::new()
        .route(
            "/v1/environments/{environment_id}/projects/{project_id}/documents/{document_id}",
            get(document),
        )
        .with_state(pool.clone());
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    println!("baseline: listening on https://{listen}");
    tls::serve_tls(
        listener,
        config,
        app,
        shutdown_signal(),
        Duration::from_secs(5),
    )
    .await?;
    pool.close().await;
    Ok(())
}
