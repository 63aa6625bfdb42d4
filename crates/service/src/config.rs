//! Typed configuration: a TOML file, then `PORTCULLIS_<SECTION>__<KEY>` environment
//! overrides. Every key is documented in `portcullis.example.toml`; unknown keys are errors.

use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where Portcullis keeps its files: the provisioned database, generated TLS material.
    pub data_dir: Option<PathBuf>,
    pub server: ServerConfig,
    pub environments: EnvironmentsConfig,
    pub database: DatabaseConfig,
    pub auth: AuthConfig,
    pub keys: KeysConfig,
    pub audit: AuditConfig,
    pub gateway: GatewayConfig,
    pub log: LogConfig,
}

/// The model gateway (`/gateway/v1/...`, crate `portcullis-gateway`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// Where Anthropic's Messages API is reached: an origin, `https://` (or `http://` on a
    /// loopback host, for a local test double).
    pub anthropic_base_url: String,
    /// The operator's own Anthropic key, in a file (trimmed). Without it, only environments
    /// with their own key can call models.
    pub platform_key_file: Option<PathBuf>,
    /// How long after its creation an environment may use the platform key.
    pub trial_days: u32,
    /// Where a tenant sets its own key, named in the `connect_your_key` error.
    pub console_url: String,
    /// The model the connect-time check sends its 1-token request to.
    pub validation_model: String,
    /// How long the upstream may take to start answering, and between two pieces of a stream.
    pub upstream_timeout_seconds: u64,
    /// The largest upstream answer, streamed or not.
    pub max_response_bytes: usize,
    /// Control M3: the concrete model of each tier (`"model": "tier:fast"`), per provider.
    pub tiers: TiersConfig,
    /// Control M3: the concrete models a request may name (besides a tier). `None`: the tier
    /// models and every model of the price registry. Per-environment policy comes later.
    pub allowed_models: Option<Vec<String>>,
    /// Control I2: let calls to a model missing from the price registry through, costed 0
    /// with no pricing version. Off: such a call is refused before the upstream.
    pub allow_unpriced_models: bool,
    /// Control I2: a price registry of the operator's, replacing the shipped one as a whole
    /// (`None`: the shipped version, `portcullis_gateway::pricing`).
    pub pricing: Option<PricingConfig>,
}

/// The tier registry: one table per provider (`self_hosted` slots in beside `anthropic`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TiersConfig {
    pub anthropic: TierModels,
}

impl Default for TiersConfig {
    fn default() -> Self {
        TiersConfig {
            anthropic: TierModels {
                fast: "claude-haiku-4-5".into(),
                balanced: "claude-sonnet-4-5".into(),
                deep: "claude-opus-4-5".into(),
            },
        }
    }
}

/// The concrete model of each tier, for one provider: all three are required.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TierModels {
    pub fast: String,
    pub balanced: String,
    pub deep: String,
}

/// One version of the price registry: every model's prices, in micro-dollars (millionths of
/// a US dollar) per million tokens. Integers only: money is never a float.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PricingConfig {
    /// Recorded with every call costed with it, e.g. `"acme-2026-12-01"`.
    pub version: String,
    pub models: std::collections::BTreeMap<String, ModelPrice>,
}

/// A model's prices, micro-dollars per million tokens (`1_000_000` is $1 per million).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ModelPrice {
    pub input: u64,
    pub output: u64,
    /// Tokens written to the prompt cache (`cache_creation_input_tokens`).
    pub cache_write: u64,
    /// Tokens read from the prompt cache (`cache_read_input_tokens`).
    pub cache_read: u64,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            anthropic_base_url: "https://api.anthropic.com".into(),
            platform_key_file: None,
            trial_days: 14,
            console_url: "https://127.0.0.1:8443/console/model-key".into(),
            validation_model: "claude-haiku-4-5".into(),
            upstream_timeout_seconds: 600,
            max_response_bytes: 32 * 1024 * 1024,
            tiers: TiersConfig::default(),
            allowed_models: None,
            allow_unpriced_models: false,
            pricing: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Cut a signed checkpoint once this many entries are uncheckpointed ...
    pub checkpoint_every_entries: i64,
    /// ... or once the oldest uncheckpointed entry is this old.
    pub checkpoint_every_seconds: u64,
    /// Write-once directory for anchored checkpoints (default `<data_dir>/anchors`).
    pub anchor_dir: Option<PathBuf>,
    /// Anchor to an S3 bucket with Object Lock (compliance mode) instead of a directory.
    pub s3: Option<S3AnchorSettings>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3AnchorSettings {
    pub region: String,
    pub bucket: String,
    /// Default `https://s3.<region>.amazonaws.com`.
    pub endpoint: Option<String>,
    /// Default `portcullis-anchors/`.
    pub prefix: Option<String>,
    pub access_key_id: String,
    pub secret_access_key_file: PathBuf,
    pub session_token_file: Option<PathBuf>,
    /// Compliance-mode retention of each checkpoint (default 2557 days, 7 years).
    pub retention_days: Option<u32>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            checkpoint_every_entries: 1000,
            checkpoint_every_seconds: 60,
            anchor_dir: None,
            s3: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeysConfig {
    /// Provider of the key-encryption key for new environments: `local`, `pkcs11` or `aws_kms`.
    pub provider: KeyProviderKind,
    /// The default KEK: PKCS#11 key label or KMS key id/ARN (unused for `local`).
    pub default_key: Option<String>,
    /// How long an unwrapped data key stays in memory.
    pub cache_ttl_seconds: u64,
    pub cache_max_entries: usize,
    /// How often the scheduler looks for environments due for rotation.
    pub rotation_check_seconds: u64,
    /// Rows re-encrypted per transaction by the rotation job.
    pub reencrypt_batch: i64,
    pub pkcs11: Option<Pkcs11Settings>,
    pub aws_kms: Option<KmsSettings>,
}

impl Default for KeysConfig {
    fn default() -> Self {
        KeysConfig {
            provider: KeyProviderKind::Local,
            default_key: None,
            cache_ttl_seconds: 300,
            cache_max_entries: 10_000,
            rotation_check_seconds: 3600,
            reencrypt_batch: 500,
            pkcs11: None,
            aws_kms: None,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum KeyProviderKind {
    Local,
    Pkcs11,
    AwsKms,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pkcs11Settings {
    pub module: PathBuf,
    pub token_label: String,
    pub pin_file: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KmsSettings {
    pub region: String,
    pub endpoint: Option<String>,
    pub access_key_id: String,
    pub secret_access_key_file: PathBuf,
    pub session_token_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: String,
    /// `false` only behind a TLS-terminating proxy on a trusted network.
    pub tls: bool,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub max_body_bytes: usize,
    pub request_timeout_seconds: u64,
    /// How long a request's body may take to arrive once its headers have (408 after that);
    /// shorter than `request_timeout_seconds`, so a slow sender is cut off sooner.
    pub body_timeout_seconds: u64,
    pub shutdown_grace_seconds: u64,
    /// The origins (`scheme://host[:port]`) browsers reach the server at. A state-changing
    /// request authenticated by the session cookie must carry one of them in `Origin` (control
    /// E1). Unset: derived from `listen` and `tls` ([`ServerConfig::public_origins`]).
    pub public_origins: Option<Vec<String>>,
}

impl ServerConfig {
    /// `public_origins`, or when unset `http(s)://<listen>` and the same with `localhost` for a
    /// loopback or unspecified address (`0.0.0.0`, `[::]`), without the scheme's default port.
    pub fn public_origins(&self) -> Vec<String> {
        if let Some(origins) = &self.public_origins {
            return origins.clone();
        }
        let scheme = if self.tls { "https" } else { "http" };
        let (host, port) = match self.listen.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (self.listen.as_str(), None),
        };
        let default_port = if self.tls { "443" } else { "80" };
        let port = match port {
            Some(p) if p != default_port => format!(":{p}"),
            _ => String::new(),
        };
        let mut hosts = vec![];
        match host {
            "0.0.0.0" | "[::]" | "127.0.0.1" | "[::1]" | "localhost" => {
                hosts.push(if host == "0.0.0.0" {
                    "127.0.0.1"
                } else if host == "[::]" {
                    "[::1]"
                } else {
                    host
                });
                if host != "localhost" {
                    hosts.push("localhost");
                }
            }
            other => hosts.push(other),
        }
        hosts
            .into_iter()
            .map(|h| format!("{scheme}://{h}{port}"))
            .collect()
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8443".into(),
            tls: true,
            cert_file: None,
            key_file: None,
            max_body_bytes: 2 * 1024 * 1024,
            request_timeout_seconds: 30,
            body_timeout_seconds: 10,
            shutdown_grace_seconds: 20,
            public_origins: None,
        }
    }
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// Owner-role URL of an existing database. Unset: provision a private cluster.
    pub url: Option<String>,
    /// File holding the owner-role URL (preferred over `url` for secrets).
    pub url_file: Option<PathBuf>,
    /// Runtime-role URL; derived from the owner URL with user `portcullis_app` when unset.
    pub runtime_url: Option<String>,
    pub runtime_url_file: Option<PathBuf>,
    /// File holding the runtime role's password (set on the role at migration time, and on
    /// the background roles that have no URL of their own).
    pub runtime_password_file: Option<PathBuf>,
    /// URL of the audit checkpointer's role `portcullis_checkpointer`; derived from the owner
    /// URL like the runtime URL when unset.
    pub checkpointer_url: Option<String>,
    pub checkpointer_url_file: Option<PathBuf>,
    /// URL of the key-rotation scheduler's role `portcullis_scheduler`; derived likewise.
    pub scheduler_url: Option<String>,
    pub scheduler_url_file: Option<PathBuf>,
    /// URL of the audit sequencer's role `portcullis_sequencer`; derived likewise.
    pub sequencer_url: Option<String>,
    pub sequencer_url_file: Option<PathBuf>,
    pub max_connections: u32,
    /// Directory with `initdb`/`pg_ctl` for the provisioned cluster; discovered when unset.
    pub postgres_bin_dir: Option<PathBuf>,
}

impl std::fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &self.url.as_ref().map(|_| "[redacted]"))
            .field("url_file", &self.url_file)
            .field(
                "runtime_url",
                &self.runtime_url.as_ref().map(|_| "[redacted]"),
            )
            .field(
                "checkpointer_url",
                &self.checkpointer_url.as_ref().map(|_| "[redacted]"),
            )
            .field(
                "scheduler_url",
                &self.scheduler_url.as_ref().map(|_| "[redacted]"),
            )
            .field(
                "sequencer_url",
                &self.sequencer_url.as_ref().map(|_| "[redacted]"),
            )
            .field("max_connections", &self.max_connections)
            .finish_non_exhaustive()
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: None,
            url_file: None,
            runtime_url: None,
            runtime_url_file: None,
            runtime_password_file: None,
            checkpointer_url: None,
            checkpointer_url_file: None,
            scheduler_url: None,
            scheduler_url_file: None,
            sequencer_url: None,
            sequencer_url_file: None,
            max_connections: 16,
            postgres_bin_dir: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnvironmentsConfig {
    /// The data-residency regions an environment may be created in (D1); see [`Regions`].
    pub regions: Vec<String>,
}

impl EnvironmentsConfig {
    /// The configured regions, checked.
    pub fn regions(&self) -> Result<Regions, String> {
        Regions::new(self.regions.clone())
    }
}

impl Default for EnvironmentsConfig {
    fn default() -> Self {
        EnvironmentsConfig {
            regions: vec![Regions::DEFAULT.to_owned()],
        }
    }
}

/// The regions this installation offers (`environments.regions`): at least one, each a valid
/// region code, none twice. Creating an environment in any other region is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Regions(Vec<String>);

impl Regions {
    /// The one region offered when none are configured, as in `portcullis.example.toml`.
    pub const DEFAULT: &'static str = "eu-central";

    pub fn new(regions: Vec<String>) -> Result<Regions, String> {
        if regions.is_empty() {
            return Err(
                "environments.regions is empty: name at least one region, e.g. [\"eu-central\"]"
                    .into(),
            );
        }
        let mut checked: Vec<String> = Vec::with_capacity(regions.len());
        for r in &regions {
            let code = portcullis_core::validate::region(r)
                .map_err(|e| format!("environments.regions: {r:?}: {e}"))?;
            if checked.contains(&code) {
                return Err(format!("environments.regions names {code:?} twice"));
            }
            checked.push(code);
        }
        Ok(Regions(checked))
    }

    pub fn as_slice(&self) -> &[String] {
        &self.0
    }

    /// `region` as a known region code, or why not.
    pub fn check(&self, region: &str) -> Result<String, crate::ServiceError> {
        let code = portcullis_core::validate::region(region)?;
        if self.0.contains(&code) {
            return Ok(code);
        }
        Err(crate::ServiceError::bad_request(
            "region_unknown",
            format!(
                "region {code:?} is not offered by this server; it offers {} (the operator sets them in environments.regions)",
                self.0.join(", ")
            ),
        ))
    }
}

impl Default for Regions {
    fn default() -> Self {
        Regions(vec![Regions::DEFAULT.to_owned()])
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Whether anyone may create an account with `POST /v1/auth/signup`.
    pub open_signup: bool,
    pub session_ttl_hours: u32,
    pub invitation_ttl_hours: u32,
    /// Failed logins before an account backs off (doubling from 1 s, capped at 15 min).
    pub lockout_threshold: u32,
    pub password_memory_kib: u32,
    pub password_iterations: u32,
    /// How long a node may answer a session, API token, membership or project grant from
    /// memory (0 turns the cache off). Changes reach every node's cache at once through
    /// PostgreSQL notifications; this bounds how long an entry can outlive a lost one. At most
    /// [`AuthConfig::MAX_CACHE_TTL_SECONDS`].
    pub cache_ttl_seconds: u32,
    /// Entries of each kind the cache holds at most.
    pub cache_entries: u32,
}

impl AuthConfig {
    pub const MAX_CACHE_TTL_SECONDS: u32 = 10;

    /// The credential cache's settings.
    pub fn cache(&self) -> portcullis_store::auth_cache::CacheConfig {
        portcullis_store::auth_cache::CacheConfig {
            ttl: std::time::Duration::from_secs(u64::from(self.cache_ttl_seconds)),
            max_entries: self.cache_entries as usize,
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            open_signup: true,
            session_ttl_hours: 12,
            invitation_ttl_hours: 72,
            lockout_threshold: 5,
            password_memory_kib: portcullis_crypto::PasswordHasher::DEFAULT_MEMORY_KIB,
            password_iterations: portcullis_crypto::PasswordHasher::DEFAULT_ITERATIONS,
            cache_ttl_seconds: 5,
            cache_entries: 10_000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `human` or `json`.
    pub format: LogFormat,
    /// A log filter, e.g. `info` or `info,portcullis_store=debug,sqlx=warn` (checked by the CLI
    /// at start; `RUST_LOG` takes its place when set).
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Human,
            level: "info".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid configuration in {origin}: {message}")]
    Invalid { origin: String, message: String },
    #[error("cannot read secret file {path} (from {key}): {source}")]
    SecretFile {
        key: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

pub const ENV_PREFIX: &str = "PORTCULLIS_";
const NOT_KEYS: &[&str] = &["CONFIG", "TEST_DATABASE_URL"];

impl Config {
    /// Loads `path` (if given) and applies environment overrides from `vars`.
    pub fn load(
        path: Option<&Path>,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut table = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.to_owned(),
                    source,
                })?;
                text.parse::<toml::Table>()
                    .map_err(|e| ConfigError::Invalid {
                        origin: p.display().to_string(),
                        message: e.to_string(),
                    })?
            }
            None => toml::Table::new(),
        };
        let mut origin = path.map_or_else(|| "defaults".to_owned(), |p| p.display().to_string());
        for (name, value) in vars {
            let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let path: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
            // Variables that are not configuration keys: the config file path itself and the
            // test suite's database.
            if path.iter().any(String::is_empty) || NOT_KEYS.contains(&rest) {
                continue;
            }
            origin = format!("{origin} + environment");
            set_path(&mut table, &path, scalar(&value)).map_err(|message| {
                ConfigError::Invalid {
                    origin: format!("environment variable {name}"),
                    message,
                }
            })?;
        }
        let config =
            Config::deserialize(toml::Value::Table(table)).map_err(|e| ConfigError::Invalid {
                origin: origin.clone(),
                message: e.to_string(),
            })?;
        if let Err(message) = config.environments.regions() {
            return Err(ConfigError::Invalid { origin, message });
        }
        if config.auth.cache_ttl_seconds > AuthConfig::MAX_CACHE_TTL_SECONDS {
            return Err(ConfigError::Invalid {
                origin,
                message: format!(
                    "auth.cache_ttl_seconds is {}, at most {} is allowed: a cached credential may outlive its revocation by this long if a change notification is lost",
                    config.auth.cache_ttl_seconds,
                    AuthConfig::MAX_CACHE_TTL_SECONDS
                ),
            });
        }
        Ok(config)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(".portcullis"))
    }

    /// The owner URL, from `url_file` or `url`.
    pub fn database_url(&self) -> Result<Option<String>, ConfigError> {
        secret(
            self.database.url_file.as_deref(),
            self.database.url.as_deref(),
            "database.url_file",
        )
    }

    pub fn runtime_url(&self) -> Result<Option<String>, ConfigError> {
        secret(
            self.database.runtime_url_file.as_deref(),
            self.database.runtime_url.as_deref(),
            "database.runtime_url_file",
        )
    }

    pub fn checkpointer_url(&self) -> Result<Option<String>, ConfigError> {
        secret(
            self.database.checkpointer_url_file.as_deref(),
            self.database.checkpointer_url.as_deref(),
            "database.checkpointer_url_file",
        )
    }

    pub fn scheduler_url(&self) -> Result<Option<String>, ConfigError> {
        secret(
            self.database.scheduler_url_file.as_deref(),
            self.database.scheduler_url.as_deref(),
            "database.scheduler_url_file",
        )
    }

    pub fn sequencer_url(&self) -> Result<Option<String>, ConfigError> {
        secret(
            self.database.sequencer_url_file.as_deref(),
            self.database.sequencer_url.as_deref(),
            "database.sequencer_url_file",
        )
    }

    pub fn runtime_password(&self) -> Result<Option<String>, ConfigError> {
        secret(
            self.database.runtime_password_file.as_deref(),
            None,
            "database.runtime_password_file",
        )
    }
}

/// Reads a secret from a file (the `*_file` keys), without its trailing newline.
pub fn read_secret_file(path: &Path, key: &'static str) -> Result<String, ConfigError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim_end_matches(['\n', '\r']).to_owned())
        .map_err(|source| ConfigError::SecretFile {
            key,
            path: path.to_owned(),
            source,
        })
}

fn secret(
    file: Option<&Path>,
    inline: Option<&str>,
    key: &'static str,
) -> Result<Option<String>, ConfigError> {
    match file {
        Some(path) => read_secret_file(path, key).map(Some),
        None => Ok(inline.map(str::to_owned)),
    }
}

/// Environment values are typed like TOML scalars when they parse as one (`true`, `8`), else strings.
fn scalar(value: &str) -> toml::Value {
    // A list (e.g. `server.public_origins`) is written as TOML: `["https://a", "https://b"]`.
    if value.trim_start().starts_with('[') {
        if let Ok(mut t) = format!("v = {value}").parse::<toml::Table>() {
            if let Some(v) = t.remove("v") {
                return v;
            }
        }
    }
    if let Ok(b) = value.parse::<bool>() {
        return toml::Value::Boolean(b);
    }
    if let Ok(i) = value.parse::<i64>() {
        return toml::Value::Integer(i);
    }
    toml::Value::String(value.to_owned())
}

fn set_path(table: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), String> {
    match path {
        [] => Err("empty key".into()),
        [key] => {
            table.insert(key.clone(), value);
            Ok(())
        }
        [head, rest @ ..] => {
            let entry = table
                .entry(head.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            match entry {
                toml::Value::Table(t) => set_path(t, rest, value),
                _ => Err(format!("`{head}` is not a section")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_env_overrides() {
        let c = Config::load(
            None,
            vec![
                (
                    "PORTCULLIS_SERVER__LISTEN".to_owned(),
                    "0.0.0.0:9000".to_owned(),
                ),
                (
                    "PORTCULLIS_AUTH__OPEN_SIGNUP".to_owned(),
                    "false".to_owned(),
                ),
                ("PORTCULLIS_DATA_DIR".to_owned(), "/tmp/pc".to_owned()),
                ("UNRELATED".to_owned(), "x".to_owned()),
                (
                    "PORTCULLIS_CONFIG".to_owned(),
                    "/etc/portcullis.toml".to_owned(),
                ),
                (
                    "PORTCULLIS_TEST_DATABASE_URL".to_owned(),
                    "postgres://x".to_owned(),
                ),
            ],
        )
        .unwrap();
        assert_eq!(c.server.listen, "0.0.0.0:9000");
        assert!(!c.auth.open_signup);
        assert_eq!(c.data_dir(), PathBuf::from("/tmp/pc"));
        assert!(c.server.tls);
    }

    #[test]
    fn list_overrides_are_toml_arrays() {
        let c = Config::load(
            None,
            vec![(
                "PORTCULLIS_SERVER__PUBLIC_ORIGINS".to_owned(),
                r#"["https://app.example.com", "https://console.example.com"]"#.to_owned(),
            )],
        )
        .unwrap();
        assert_eq!(
            c.server.public_origins(),
            vec![
                "https://app.example.com".to_owned(),
                "https://console.example.com".to_owned()
            ]
        );
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = Config::load(
            None,
            vec![("PORTCULLIS_SERVER__LISTN".to_owned(), "x".to_owned())],
        )
        .unwrap_err();
        assert!(err.to_string().contains("listn"), "{err}");
    }

    #[test]
    fn e1_public_origins_default_from_listen_and_tls() {
        let d = ServerConfig::default();
        assert_eq!(
            d.public_origins(),
            ["https://127.0.0.1:8443", "https://localhost:8443"]
        );
        let c = ServerConfig {
            listen: "0.0.0.0:80".into(),
            tls: false,
            ..ServerConfig::default()
        };
        assert_eq!(c.public_origins(), ["http://127.0.0.1", "http://localhost"]);
        let c = ServerConfig {
            listen: "portcullis.internal:443".into(),
            ..ServerConfig::default()
        };
        assert_eq!(c.public_origins(), ["https://portcullis.internal"]);
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../portcullis.example.toml");
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("# public_origins = ", "public_origins = ");
        let dir = std::env::temp_dir().join(format!("pc-origins-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("portcullis.toml");
        std::fs::write(&f, text).unwrap();
        let c = Config::load(Some(&f), Vec::new()).unwrap();
        assert_eq!(c.server.public_origins, Some(d.public_origins()));
    }

    #[test]
    fn example_file_documents_a_valid_config() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../portcullis.example.toml");
        let c = Config::load(Some(&path), Vec::new()).unwrap();
        assert_eq!(c.server.listen, ServerConfig::default().listen);
        assert_eq!(
            c.environments.regions,
            EnvironmentsConfig::default().regions
        );
        assert_eq!(c.gateway.tiers.anthropic, TiersConfig::default().anthropic);
        assert!(!c.gateway.allow_unpriced_models);
        // The commented pricing example parses as a registry of its own.
        let text = std::fs::read_to_string(&path).unwrap();
        let pricing: String = text
            .lines()
            .skip_while(|l| !l.starts_with("# [gateway.pricing]"))
            .take_while(|l| l.starts_with('#'))
            .map(|l| format!("{}\n", l.trim_start_matches("# ")))
            .collect();
        let example = toml::from_str::<toml::Value>(&pricing).unwrap();
        let p: PricingConfig = example["gateway"]["pricing"].clone().try_into().unwrap();
        assert_eq!(p.version, "acme-2026-12-01");
        assert_eq!(p.models["claude-haiku-4-5"].cache_read, 100_000);
    }

    /// Control D1 (issue 12, item 5): one region by default, the one the example file names;
    /// the operator's list is checked when the configuration loads; any other region is
    /// refused with an error that names the regions offered.
    #[test]
    fn d1_regions_default_to_one_and_are_checked() {
        let c = Config::load(None, Vec::new()).unwrap();
        let regions = c.environments.regions().unwrap();
        assert_eq!(regions.as_slice(), [Regions::DEFAULT]);
        let example = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../portcullis.example.toml"),
        )
        .unwrap();
        assert!(example.contains(&format!("regions = [\"{}\"]", Regions::DEFAULT)));
        assert_eq!(regions.check(" eu-central").unwrap(), "eu-central");
        let err = regions.check("mars").unwrap_err().to_string();
        assert!(
            err.contains("\"mars\"") && err.contains("eu-central"),
            "{err}"
        );
        assert!(matches!(
            regions.check("mars"),
            Err(crate::ServiceError::BadRequest {
                code: "region_unknown",
                ..
            })
        ));
        assert!(matches!(
            regions.check("Mars!"),
            Err(crate::ServiceError::BadRequest {
                code: "invalid_input",
                ..
            })
        ));

        let var = |v: &str| vec![("PORTCULLIS_ENVIRONMENTS__REGIONS".to_owned(), v.to_owned())];
        let c = Config::load(None, var(r#"["eu-central", "us-east"]"#)).unwrap();
        let regions = c.environments.regions().unwrap();
        assert_eq!(regions.check("us-east").unwrap(), "us-east");
        for (bad, says) in [
            ("[]", "empty"),
            (r#"["EU"]"#, "\"EU\""),
            (r#"["us-east", "us-east"]"#, "twice"),
        ] {
            let err = Config::load(None, var(bad)).unwrap_err().to_string();
            assert!(
                err.contains("environments.regions") && err.contains(says),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn secrets_come_from_files() {
        let dir = std::env::temp_dir().join(format!("pc-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("url");
        std::fs::write(&f, "postgres://o:pw@db/portcullis\n").unwrap();
        let c = Config::load(
            None,
            vec![(
                "PORTCULLIS_DATABASE__URL_FILE".to_owned(),
                f.display().to_string(),
            )],
        )
        .unwrap();
        assert_eq!(
            c.database_url().unwrap().as_deref(),
            Some("postgres://o:pw@db/portcullis")
        );
        assert!(!format!("{c:?}").contains("pw@"));
    }
}
