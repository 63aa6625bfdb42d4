//! From configuration to a running server: the node's database, vault and anchors
//! (`portcullis_service::node`), the boot self-check (T7), the boot steps that need the schema
//! owner (then its connections are closed), the background passes on their own roles, the
//! first-run setup token, TLS, and graceful shutdown.

use std::time::Duration;

use anyhow::{bail, Context};
use portcullis_crypto::token::{self, TokenKind};
use portcullis_crypto::PasswordHasher;
use portcullis_service::config::{Config, Regions};
use portcullis_service::node::{
    anchor_placement_warning, anchors, database, self_check, vault, Database,
};
use portcullis_service::{jobs, trail};
use portcullis_store::bootstrap;
use portcullis_store::catalog;
use portcullis_store::queries::installation;
use portcullis_store::{RequestMeta, Store};

use crate::app::{router, Limits};
use crate::auth::PublicOrigins;
use crate::state::AppState;
use crate::tls;

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutdown requested; finishing in-flight requests");
}

/// `portcullis serve`.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let db = database(&config, true).await?;
    let result = serve_with(&config, &db).await;
    db.shutdown().await;
    result
}

async fn serve_with(config: &Config, db: &Database) -> anyhow::Result<()> {
    let checks = self_check(&db.runtime).await?;
    let failed = catalog::failures(&checks);
    if !failed.is_empty() {
        for c in &failed {
            tracing::error!(control = c.control, check = %c.name, finding = %c.detail, "self-check failed");
        }
        bail!("refusing to start: {} of {} self-checks failed (run `portcullis controls` for the report)", failed.len(), checks.len());
    }
    tracing::info!(checks = checks.len(), "self-check passed");

    // Boot-time steps as the schema owner: after migrations and the self-check, before
    // serving. This pool is closed below, so while serving the process holds no connection as
    // the owner (issue 9); a step that needs the owner (a key only the owner may read, a
    // one-time rewrite) belongs in this section and nowhere later.
    let owner_pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect_lazy_with(db.owner.clone());

    let pool = bootstrap::runtime_pool(&db.runtime, config.database.max_connections)
        .await
        .context("cannot open the runtime connection pool")?;
    // The audit sequencer chains what requests submit (issue 10): its own role, a few
    // connections (readers of the audit log wait on it too).
    let sequencer = portcullis_store::sequencer::Sequencer::new(
        bootstrap::background_pool(&db.sequencer, bootstrap::SEQUENCER_ROLE, 4).await?,
    );
    let store = Store::new(pool, db.context_key.clone())
        .with_auth_cache(portcullis_store::auth_cache::AuthCache::new(
            config.auth.cache(),
        ))
        .with_sequencer(sequencer.clone());
    // Every task that runs while serving, so that all of them stop before this function
    // returns, i.e. before the caller stops a private PostgreSQL cluster (a task still querying
    // then would log the lost connection as an error). Dropping the set aborts them too.
    let mut background = tokio::task::JoinSet::new();
    background.spawn(
        sequencer
            .clone()
            .run(portcullis_store::sequencer::SWEEP_EVERY),
    );
    if !store.autovacuum().await? {
        tracing::warn!(
            "PostgreSQL's autovacuum is off: the audit queue (audit_pending) and every other table \
             collect dead rows and stale statistics; turn it on (autovacuum = on, the default)"
        );
    }
    if config.auth.cache_ttl_seconds > 0 {
        // Holds one runtime connection for as long as the node runs.
        background.spawn(store.listen_for_changes());
    }
    let hasher = PasswordHasher::new(
        config.auth.password_memory_kib,
        config.auth.password_iterations,
    )?;
    let regions = config
        .environments
        .regions()
        .map_err(anyhow::Error::msg)
        .context("invalid configuration")?;
    let listen = config.server.listen.clone();
    let scheme = if config.server.tls { "https" } else { "http" };
    announce_setup(&store, scheme, &listen, &regions).await?;

    let vault = std::sync::Arc::new(vault(config).await?);
    let sealed = portcullis_store::pii::seal_legacy(&owner_pool, &store, &vault)
        .await
        .context("sealing personal data stored before encryption")?;
    if sealed != Default::default() {
        tracing::info!(
            identities = sealed.identities,
            invitations = sealed.invitations,
            sessions = sealed.sessions,
            "sealed personal data stored in clear by an earlier version"
        );
    }
    bootstrap::close_pool(owner_pool).await;
    tracing::info!("boot steps done; no connection as the schema owner is kept");

    // The background passes connect as roles of their own, each holding one connection for
    // its pass lock (`portcullis_store::leader`) and querying on another.
    let scheduler_pool =
        bootstrap::background_pool(&db.scheduler, bootstrap::SCHEDULER_ROLE, 2).await?;
    let checkpointer_pool =
        bootstrap::background_pool(&db.checkpointer, bootstrap::CHECKPOINTER_ROLE, 2).await?;
    background.spawn(jobs::scheduler(
        store.clone(),
        scheduler_pool,
        vault.clone(),
        Duration::from_secs(config.keys.rotation_check_seconds.max(10)),
        config.keys.reencrypt_batch,
    ));
    let signer = trail::Signer::load_or_create(&checkpointer_pool, &vault, vault.default_kek())
        .await
        .context("audit checkpoint signing key")?;
    let anchors = anchors(config)?;
    tracing::info!(key_id = %signer.key_id(), anchors = %anchors, "audit checkpoints are signed and anchored");
    // Issue 11, item 5: anchors on the database's host prove nothing against its root user.
    if let Some(warning) = anchor_placement_warning(config)? {
        tracing::warn!(control = "L4", "{warning}");
    }
    let trail_access = trail::TrailAccess::new(anchors.clone(), &signer);
    background.spawn(trail::checkpointer(
        store.clone(),
        checkpointer_pool,
        signer,
        anchors,
        config.audit.checkpoint_every_entries,
        Duration::from_secs(config.audit.checkpoint_every_seconds.max(1)),
    ));
    let state = AppState::new(
        store,
        hasher,
        config.auth.clone(),
        regions.clone(),
        vault,
        config.keys.reencrypt_batch,
        trail_access,
    )
    .with_public_origins(PublicOrigins::new(config.server.public_origins()))
    .with_gateway(
        portcullis_gateway::Gateway::from_config(&config.gateway)
            .map_err(anyhow::Error::msg)
            .context("invalid [gateway] configuration")?,
    );
    let app = router(
        state,
        Limits {
            max_body_bytes: config.server.max_body_bytes,
            request_timeout: Duration::from_secs(config.server.request_timeout_seconds),
            body_timeout: Duration::from_secs(config.server.body_timeout_seconds),
        },
    );
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let drain = Duration::from_secs(config.server.shutdown_grace_seconds);
    if config.server.tls {
        let files = tls::TlsFiles {
            cert_file: config.server.cert_file.clone(),
            key_file: config.server.key_file.clone(),
        };
        let (tls_config, source) = tls::server_config(&files, &config.data_dir())?;
        tracing::info!(address = %listen, certificate = %source.cert_file().display(), "serving HTTPS");
        tls::serve_tls(listener, tls_config, app, shutdown_signal(), drain).await?;
    } else {
        tracing::warn!(address = %listen, "serving plain HTTP (server.tls = false): only behind a TLS-terminating proxy");
        tls::serve_plain(listener, app, shutdown_signal(), drain).await?;
    }
    // Requests are done; the background passes stop at their next await point. A checkpoint
    // cut but not yet recorded as anchored is anchored by a later pass (L4).
    background.shutdown().await;
    // What the last requests submitted to the audit log is chained now rather than by the
    // next node to start (nothing would be lost either way: it stays pending until then).
    match sequencer.sweep().await {
        Ok(0) => {}
        Ok(n) => tracing::info!(entries = n, "sequenced the last audit entries"),
        Err(e) => tracing::warn!(error = %e, "audit entries left pending for the next start"),
    }
    tracing::info!("stopped");
    Ok(())
}

/// On a fresh installation, prints a one-time setup token (stored hashed) and how to use it.
async fn announce_setup(
    store: &Store,
    scheme: &str,
    listen: &str,
    regions: &Regions,
) -> anyhow::Result<()> {
    let mut tx = store.auth(RequestMeta::default()).await?;
    if installation::setup_completed(&mut tx).await? {
        return Ok(());
    }
    let (token, hash) = token::generate(TokenKind::Setup);
    installation::set_setup_token(&mut tx, &hash).await?;
    tx.commit().await?;
    let host = listen.replace("0.0.0.0", "127.0.0.1");
    let k = if scheme == "https" { "-k " } else { "" };
    // Printed, not logged: the token must not end up in log aggregation.
    println!(
        "\nFirst run: create the first owner with this one-time setup token (valid until used; a restart issues a new one):\n\n  curl {k}{scheme}://{host}/v1/setup -H 'content-type: application/json' \\\n    -d '{{\"setup_token\":\"{}\",\"email\":\"you@example.com\",\"password\":\"choose-a-long-password\",\"environment_name\":\"My company\",\"region\":\"{}\"}}'\n\nThe answer holds the owner's session token at session.token.\n",
        token.expose(),
        regions.as_slice()[0],
    );
    Ok(())
}
