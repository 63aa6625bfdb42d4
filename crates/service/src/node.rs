//! What a node opens from its configuration, for `serve` and for the CLI alike: the database
//! (given or provisioned, with migrations), the key providers and the vault, the audit anchor
//! store, and the boot self-check (T7). Knows no HTTP.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use portcullis_provision::{ClusterOptions, LocalCluster};
use portcullis_store::bootstrap::{self, DatabaseTarget};
use portcullis_store::catalog::{self, Check};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};

use crate::config::{Config, KeyProviderKind};

/// The database side of a running node: how each role connects. `serve` uses the owner for
/// migrations and boot-time steps only, then serves as the runtime role with the background
/// passes on their own roles; the CLI's operator commands use the owner.
#[derive(Debug)]
pub struct Database {
    pub runtime: PgConnectOptions,
    pub owner: PgConnectOptions,
    /// Signs each transaction's database context (T2); read through the owner at start.
    pub context_key: portcullis_crypto::context::ContextKey,
    /// The audit checkpointer and its signing key (`portcullis_checkpointer`).
    pub checkpointer: PgConnectOptions,
    /// The key-rotation scheduler (`portcullis_scheduler`).
    pub scheduler: PgConnectOptions,
    /// The audit sequencer (`portcullis_sequencer`), the only writer of the chain.
    pub sequencer: PgConnectOptions,
    /// The private cluster, when Portcullis provisioned one.
    pub cluster: Option<LocalCluster>,
}

impl Database {
    /// Stops the private cluster if this process started it.
    pub async fn shutdown(self) {
        if let Some(c) = self.cluster {
            if c.started_by_us() {
                tracing::info!("stopping the private PostgreSQL cluster");
                if let Err(e) = c.stop().await {
                    tracing::warn!(error = %e, "could not stop the private PostgreSQL cluster");
                }
            }
        }
    }
}

fn ensure_private_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create data directory {}", dir.display()))?;
    Ok(())
}

/// Connects to the configured database, or provisions the private cluster; with `migrate`,
/// creates roles and applies migrations.
pub async fn database(config: &Config, migrate: bool) -> anyhow::Result<Database> {
    let data_dir = config.data_dir();
    ensure_private_dir(&data_dir)?;
    let (target, cluster) = match config.database_url()? {
        Some(owner_url) => {
            // E6: a password inside a URL taken from a plain environment variable.
            let has_password = owner_url
                .split_once("://")
                .and_then(|(_, rest)| rest.split_once('@'))
                .is_some_and(|(userinfo, _)| userinfo.contains(':'));
            if config.database.url.is_some()
                && has_password
                && std::env::var_os("PORTCULLIS_DATABASE__URL").is_some()
            {
                tracing::warn!("the database password comes from a plain environment variable; prefer database.url_file");
            }
            let target = DatabaseTarget::Existing {
                owner_url,
                runtime_url: config.runtime_url()?,
                runtime_password: config.runtime_password()?,
                checkpointer_url: config.checkpointer_url()?,
                scheduler_url: config.scheduler_url()?,
                sequencer_url: config.sequencer_url()?,
            };
            (target, None)
        }
        None => {
            let (data, moved) = portcullis_provision::cluster_location(&data_dir)
                .context("where to keep the private PostgreSQL cluster")?;
            if moved {
                tracing::info!(
                    data_dir = %data_dir.display(),
                    path = %data.display(),
                    "the data directory is inside a directory the `postgres` user cannot enter; \
                     the private PostgreSQL cluster is kept here instead"
                );
            }
            tracing::info!(path = %data.display(), "no database configured; using a private PostgreSQL cluster");
            let mut opts = ClusterOptions::new(&data);
            opts.bin_dir = config.database.postgres_bin_dir.clone();
            let cluster = LocalCluster::start(opts)
                .await
                .context("could not provision the private PostgreSQL cluster")?;
            let target = DatabaseTarget::Superuser {
                admin_url: cluster.superuser_url("postgres"),
                database: "portcullis".into(),
            };
            (target, Some(cluster))
        }
    };
    let prepared = if migrate {
        tracing::info!("applying migrations");
        bootstrap::prepare(&target)
            .await
            .context("database bootstrap or migration failed")?
    } else {
        bootstrap::options(&target)?
    };
    let context_key = bootstrap::context_key(&prepared.owner)
        .await
        .context("cannot read the database context key (as the schema owner)")?;
    Ok(Database {
        runtime: prepared.runtime,
        owner: prepared.owner,
        context_key,
        checkpointer: prepared.checkpointer,
        scheduler: prepared.scheduler,
        sequencer: prepared.sequencer,
        cluster,
    })
}

impl Database {
    /// A runtime-role store with `connections` connections and the audit sequencer on its
    /// own role, for the CLI's commands (which read the audit log or write audited changes).
    pub async fn store(&self, connections: u32) -> anyhow::Result<portcullis_store::Store> {
        let pool = bootstrap::runtime_pool(&self.runtime, connections)
            .await
            .context("runtime connection")?;
        let sequencer = bootstrap::background_pool(&self.sequencer, bootstrap::SEQUENCER_ROLE, 2)
            .await
            .context("audit sequencer connection")?;
        Ok(portcullis_store::Store::new(pool, self.context_key.clone())
            .with_sequencer(portcullis_store::sequencer::Sequencer::new(sequencer)))
    }
}

fn read_secret(path: &Path, key: &'static str) -> anyhow::Result<portcullis_crypto::Secret> {
    Ok(portcullis_crypto::Secret::new(
        crate::config::read_secret_file(path, key)?,
    ))
}

/// Key providers and the vault, from the `[keys]` configuration.
pub async fn vault(config: &Config) -> anyhow::Result<portcullis_store::vault::Vault> {
    use portcullis_keys::{kms, local, pkcs11, KekRef, Providers};
    use portcullis_outbound::AwsCredentials;
    let keys_dir = config.data_dir().join("keys");
    let mut providers = Providers::default();
    let has_local_keys = std::fs::read_dir(&keys_dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .any(|e| e.path().extension().is_some_and(|x| x == "key"))
        })
        .unwrap_or(false);
    if config.keys.provider == KeyProviderKind::Local || has_local_keys {
        providers.local = Some(local::LocalProvider::open(&keys_dir).context("local master key")?);
    }
    if let Some(p) = &config.keys.pkcs11 {
        let pin = read_secret(&p.pin_file, "keys.pkcs11.pin_file")?;
        let cfg = pkcs11::Pkcs11Config {
            module: p.module.clone(),
            token_label: p.token_label.clone(),
            pin,
        };
        providers.pkcs11 = Some(
            pkcs11::Pkcs11Provider::connect(cfg)
                .await
                .context("PKCS#11 key provider")?,
        );
    }
    if let Some(k) = &config.keys.aws_kms {
        let cfg = kms::KmsConfig {
            region: k.region.clone(),
            endpoint: k.endpoint.clone(),
            credentials: AwsCredentials {
                access_key_id: k.access_key_id.clone(),
                secret_access_key: read_secret(
                    &k.secret_access_key_file,
                    "keys.aws_kms.secret_access_key_file",
                )?,
                session_token: match &k.session_token_file {
                    Some(f) => Some(read_secret(f, "keys.aws_kms.session_token_file")?),
                    None => None,
                },
            },
        };
        providers.kms = Some(kms::KmsProvider::new(cfg).context("AWS KMS key provider")?);
    }
    let default_kek = match config.keys.provider {
        KeyProviderKind::Local => match &providers.local {
            Some(l) => KekRef::Local { name: l.current() },
            None => bail!("keys.provider = local but the local key provider could not be opened"),
        },
        KeyProviderKind::Pkcs11 => {
            if providers.pkcs11.is_none() {
                bail!("keys.provider = pkcs11 needs a [keys.pkcs11] section");
            }
            KekRef::Pkcs11 {
                label: config
                    .keys
                    .default_key
                    .clone()
                    .context("keys.provider = pkcs11 needs keys.default_key (the key label)")?,
            }
        }
        KeyProviderKind::AwsKms => {
            if providers.kms.is_none() {
                bail!("keys.provider = aws_kms needs a [keys.aws_kms] section");
            }
            KekRef::AwsKms {
                key_id: config.keys.default_key.clone().context(
                    "keys.provider = aws_kms needs keys.default_key (the key id or ARN)",
                )?,
            }
        }
    };
    tracing::info!(kek = %default_kek, "key-encryption key for new environments");
    Ok(portcullis_store::vault::Vault::new(
        providers,
        portcullis_store::vault::VaultConfig {
            default_kek,
            cache_ttl: Duration::from_secs(config.keys.cache_ttl_seconds),
            cache_max_entries: config.keys.cache_max_entries.max(1),
        },
    ))
}

/// The write-once anchor store for audit checkpoints: an S3 bucket with Object Lock when
/// `[audit.s3]` is configured, otherwise a local directory.
pub fn anchors(config: &Config) -> anyhow::Result<crate::anchor::Anchors> {
    use crate::anchor::{Anchors, LocalAnchors, S3AnchorConfig, S3Anchors};
    match &config.audit.s3 {
        Some(c) => {
            if config.audit.anchor_dir.is_some() {
                bail!("configure either audit.anchor_dir or [audit.s3], not both");
            }
            let mut cfg = S3AnchorConfig::new(
                c.region.clone(),
                c.bucket.clone(),
                c.access_key_id.clone(),
                read_secret(&c.secret_access_key_file, "audit.s3.secret_access_key_file")?,
            );
            if let Some(e) = &c.endpoint {
                cfg.endpoint = e.clone();
            }
            if let Some(p) = &c.prefix {
                cfg.prefix = p.clone();
            }
            if let Some(d) = c.retention_days {
                cfg.retention_days = d;
            }
            if let Some(f) = &c.session_token_file {
                cfg.credentials.session_token =
                    Some(read_secret(f, "audit.s3.session_token_file")?);
            }
            Ok(Anchors::S3(S3Anchors::new(cfg).context("S3 anchor store")?))
        }
        None => Ok(Anchors::Local(LocalAnchors::new(
            config
                .audit
                .anchor_dir
                .clone()
                .unwrap_or_else(|| config.data_dir().join("anchors")),
        ))),
    }
}

/// Runs the boot self-check as the runtime role.
pub async fn self_check(runtime: &PgConnectOptions) -> anyhow::Result<Vec<Check>> {
    let mut conn = runtime
        .connect()
        .await
        .context("cannot connect as the runtime role")?;
    let checks = catalog::run(&mut conn)
        .await
        .context("self-check queries failed")?;
    conn.close().await.ok();
    Ok(checks)
}
