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

/// Why the configured anchors do not protect against whoever controls the database's host
/// (control L4, issue 11 item 5), or `None`. The rule: the anchor store is a local directory
/// (no `[audit.s3]`) and
/// 1. the database is the private cluster this node provisions (it runs on this host), or
/// 2. the owner's database URL names this host: a Unix-domain socket, `localhost` or a
///    loopback address, or
/// 3. the anchor directory is on the same filesystem (device) as the data directory, which
///    holds the local master keys and, when provisioned, the cluster.
///
/// Then a person with shell access to this host can rewrite the database, sign with the
/// checkpoint key (the local master key unwraps it) and replace the anchor files: the anchors
/// prove nothing against them. `serve` logs it as a warning and `portcullis controls` prints it.
pub fn anchor_placement_warning(config: &Config) -> anyhow::Result<Option<String>> {
    if config.audit.s3.is_some() {
        return Ok(None);
    }
    let data_dir = config.data_dir();
    let anchor_dir = config
        .audit
        .anchor_dir
        .clone()
        .unwrap_or_else(|| data_dir.join("anchors"));
    let mut reasons = vec![];
    match config.database_url()? {
        None => reasons.push("the database is the private cluster on this host".to_owned()),
        Some(url) => {
            let opts: PgConnectOptions = url
                .parse()
                .context("database URL (for the anchor placement check)")?;
            if let Some(host) = local_database_host(&opts) {
                reasons.push(format!("the database is on this host ({host})"));
            }
        }
    }
    if same_filesystem(&anchor_dir, &data_dir) {
        reasons.push(format!(
            "the anchor directory is on the same filesystem as the data directory {} (master keys)",
            data_dir.display()
        ));
    }
    if reasons.is_empty() {
        return Ok(None);
    }
    Ok(Some(format!(
        "audit checkpoints are anchored in the local directory {} and {}: whoever has shell access here \
         can rewrite the log and its anchors alike; anchor to S3 Object Lock in compliance mode \
         ([audit.s3]) or a directory on another host, and let customers keep the checkpoint feed",
        anchor_dir.display(),
        reasons.join(" and ")
    )))
}

/// The database host when it is this machine: a Unix-domain socket, `localhost` or loopback.
fn local_database_host(opts: &PgConnectOptions) -> Option<String> {
    if let Some(socket) = opts.get_socket() {
        return Some(format!("socket {}", socket.display()));
    }
    let host = opts.get_host();
    let loopback = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback());
    (host.starts_with('/') || host.eq_ignore_ascii_case("localhost") || loopback)
        .then(|| host.to_owned())
}

/// Whether `a` and `b` (or their nearest existing ancestors: the anchor directory is created
/// on first use) are on one filesystem. Unknown (not Unix) counts as the same.
fn same_filesystem(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let device = |p: &Path| {
            let absolute = std::path::absolute(p).unwrap_or_else(|_| p.to_owned());
            absolute
                .ancestors()
                .find_map(|a| std::fs::metadata(a).ok())
                .map(|m| m.dev())
        };
        match (device(a), device(b)) {
            (Some(x), Some(y)) => x == y,
            _ => true,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (a, b);
        true
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn config(toml: &str) -> Config {
        let dir = std::env::temp_dir().join(format!("pc-node-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("portcullis.toml");
        std::fs::write(
            &file,
            format!("data_dir = {:?}\n{toml}", dir.display().to_string()),
        )
        .unwrap();
        Config::load(Some(&file), std::iter::empty::<(String, String)>()).unwrap()
    }

    /// Control L4 (issue 11, item 5): the default (anchors in the data directory, the private
    /// cluster) is warned about with every reason; so are a local database URL and an anchor
    /// directory on the data directory's filesystem; S3 Object Lock is not.
    #[test]
    fn l4_local_anchors_next_to_the_database_are_warned_about_and_s3_is_not() {
        let default = anchor_placement_warning(&config("")).unwrap().unwrap();
        assert!(
            default.contains("private cluster on this host"),
            "{default}"
        );
        assert!(default.contains("same filesystem"), "{default}");
        assert!(default.contains("[audit.s3]"), "{default}");

        for url in [
            "postgres://portcullis@localhost/portcullis",
            "postgres://portcullis@127.0.0.1:5432/portcullis",
            "postgres://portcullis@[::1]/portcullis",
            "postgres://portcullis@%2Fvar%2Frun%2Fpostgresql/portcullis",
        ] {
            let w = anchor_placement_warning(&config(&format!("[database]\nurl = {url:?}\n")))
                .unwrap()
                .unwrap_or_else(|| panic!("{url}: no warning"));
            assert!(w.contains("the database is on this host"), "{url}: {w}");
        }
        // A remote database: only the shared filesystem is left to warn about.
        let remote = anchor_placement_warning(&config(
            "[database]\nurl = \"postgres://portcullis@db.internal.example/portcullis\"\n",
        ))
        .unwrap()
        .unwrap();
        assert!(!remote.contains("database is"), "{remote}");
        assert!(remote.contains("same filesystem"), "{remote}");

        let s3 = config(
            "[audit.s3]\nregion = \"eu-west-1\"\nbucket = \"b\"\naccess_key_id = \"AKIAEXAMPLE\"\nsecret_access_key_file = \"/nonexistent\"\n",
        );
        assert_eq!(anchor_placement_warning(&s3).unwrap(), None);
    }

    /// Control L4: the filesystem rule compares devices of the nearest existing ancestors.
    #[test]
    fn l4_same_filesystem_compares_devices() {
        let dir = std::env::temp_dir();
        assert!(same_filesystem(&dir.join("not/yet/created"), &dir));
        #[cfg(target_os = "linux")]
        if let (Ok(a), Ok(b)) = (std::fs::metadata("/proc"), std::fs::metadata(&dir)) {
            use std::os::unix::fs::MetadataExt;
            assert_eq!(
                same_filesystem(Path::new("/proc"), &dir),
                a.dev() == b.dev()
            );
        }
    }
}
