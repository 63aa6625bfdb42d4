//! Envelope encryption of tenant data (E2, E4, E5). Each environment has a keyring: versioned
//! 256-bit data keys, stored only wrapped by a key-encryption key (KEK) held by a key provider
//! (local master key, PKCS#11 HSM or AWS KMS, possibly the customer's own). Values are sealed
//! with the active version and bound to their place (environment, table, column, row).
//!
//! Unwrapped data keys are cached in memory, bounded and with a TTL, so steady-state reads make
//! no provider calls; revoking a KEK therefore takes effect within the TTL (or at once on
//! [`Vault::forget`]).
//!
//! - `keyring`: the per-environment keyring, its data keys and their cache, seal and open;
//! - `reencrypt`: rotation to a new data-key version and the resumable re-encryption job;
//! - `kek`: switching the KEK and retiring old versions;
//! - `status`: what an operator sees of a keyring.
//!
//! The providers, the platform keys and the subject keys are held by `custody`, which this
//! module shares with `pii` and `subjects`.

mod kek;
mod keyring;
mod reencrypt;
mod status;

use std::sync::Arc;
use std::time::Duration;

use portcullis_crypto::envelope::DataKey;
use portcullis_keys::{KekRef, Providers};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::custody::{Custody, PlatformKeys, SubjectKeys, TtlCache};
use crate::{Store, StoreError};

pub use keyring::Keyring;
pub use reencrypt::{BatchOutcome, Rotation};
pub use status::{JobStatus, KeyStatus, VersionStatus};

/// A column holding sealed values, with the SQL the vault runs on it. Names are compile-time
/// constants and the statements are built from them by `concat!` (see [`ENCRYPTED_COLUMNS`]),
/// so no SQL is ever formatted at run time.
#[derive(Clone, Copy, Debug)]
pub struct EncryptedColumn {
    pub table: &'static str,
    pub id: &'static str,
    pub ciphertext: &'static str,
    pub version: &'static str,
    /// The logical column name bound into the associated data.
    pub column: &'static str,
    /// A plaintext column from before encryption, moved into `ciphertext` by the job.
    pub legacy_plaintext: Option<&'static str>,
    /// `table.column`: the column's cursor key in a re-encryption job's progress.
    pub progress_key: &'static str,
    pub(crate) sql: ColumnSql,
}

/// The statements the vault runs on one sealed column.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ColumnSql {
    /// (id, ciphertext, version, legacy plaintext) of the next batch after cursor `$2`, locked.
    pub batch: &'static str,
    /// Stores a re-sealed value `$3` at version `$4` unless it changed since read (`$5`).
    pub rewrite: &'static str,
    /// Values below version `$2`, or still in clear.
    pub count_below: &'static str,
    /// (version, count) per version; version NULL counts values still in clear.
    pub count_by_version: &'static str,
}

/// One entry of [`ENCRYPTED_COLUMNS`]: the names once, the statements built from them.
macro_rules! encrypted_column {
    (@build $table:literal, $id:literal, $ct:literal, $ver:literal, $column:literal, $legacy:expr,
     select [$($select:literal),*], clear [$($clear:literal),*], below [$($below:literal),*]) => {
        EncryptedColumn {
            table: $table,
            id: $id,
            ciphertext: $ct,
            version: $ver,
            column: $column,
            legacy_plaintext: $legacy,
            progress_key: concat!($table, ".", $column),
            sql: ColumnSql {
                batch: concat!(
                    "SELECT ", $id, ", ", $ct, ", ", $ver, ", ", $($select,)* " FROM ", $table,
                    " WHERE environment_id = $1 AND ($2::uuid IS NULL OR ", $id, " > $2)",
                    " ORDER BY ", $id, " LIMIT $3 FOR UPDATE"
                ),
                rewrite: concat!(
                    "UPDATE ", $table, " SET ", $ct, " = $3, ", $ver, " = $4", $($clear,)*
                    " WHERE environment_id = $1 AND ", $id, " = $2 AND ", $ct,
                    " IS NOT DISTINCT FROM $5"
                ),
                count_below: concat!(
                    "SELECT count(*) FROM ", $table, " WHERE environment_id = $1 AND (", $ver,
                    " < $2", $($below,)* ")"
                ),
                count_by_version: concat!(
                    "SELECT ", $ver, ", count(*) FROM ", $table,
                    " WHERE environment_id = $1 GROUP BY 1"
                ),
            },
        }
    };
    ($table:literal, $id:literal, $ct:literal, $ver:literal, $column:literal, legacy: $legacy:literal) => {
        encrypted_column!(@build $table, $id, $ct, $ver, $column, Some($legacy),
            select [$legacy, "::text"], clear [", ", $legacy, " = NULL"],
            below [" OR ", $legacy, " IS NOT NULL"])
    };
    ($table:literal, $id:literal, $ct:literal, $ver:literal, $column:literal) => {
        encrypted_column!(@build $table, $id, $ct, $ver, $column, None,
            select ["NULL::text"], clear [], below [])
    };
}

pub const ENCRYPTED_COLUMNS: &[EncryptedColumn] = &[
    encrypted_column!("documents", "document_id", "body_ciphertext", "body_key_version", "body", legacy: "body"),
    encrypted_column!(
        "integrations",
        "integration_id",
        "credentials_ciphertext",
        "credentials_key_version",
        "credentials"
    ),
    encrypted_column!(
        "model_keys",
        "environment_id",
        "key_ciphertext",
        "key_key_version",
        "key"
    ),
];

/// The intelligence log's sealed prompt and output (L1, migration 0018), bound to the row's
/// `entry_id`. Deliberately not in [`ENCRYPTED_COLUMNS`]: the table is append-only (L2) and
/// each row's audit commitment covers its ciphertext, so these values are never re-encrypted;
/// they open while their data-key version is not retired.
pub const INTELLIGENCE_INPUT: EncryptedColumn = encrypted_column!(
    "intelligence_log",
    "entry_id",
    "input_ciphertext",
    "content_key_version",
    "input"
);
pub const INTELLIGENCE_OUTPUT: EncryptedColumn = encrypted_column!(
    "intelligence_log",
    "entry_id",
    "output_ciphertext",
    "content_key_version",
    "output"
);

#[derive(Clone, Debug)]
pub struct VaultConfig {
    /// The KEK that protects the data keys of new environments.
    pub default_kek: KekRef,
    pub cache_ttl: Duration,
    pub cache_max_entries: usize,
}

#[derive(Debug)]
pub struct Vault {
    custody: Arc<Custody>,
    config: VaultConfig,
    /// Unwrapped data keys by (environment, version).
    cache: TtlCache<(Uuid, i32), DataKey>,
}

impl Vault {
    pub fn new(providers: Providers, config: VaultConfig) -> Vault {
        let (ttl, max) = (config.cache_ttl, config.cache_max_entries);
        Vault {
            custody: Arc::new(Custody::new(
                providers,
                config.default_kek.clone(),
                ttl,
                max,
            )),
            config,
            cache: TtlCache::new(ttl, max),
        }
    }

    pub fn providers(&self) -> &Providers {
        self.custody.providers()
    }

    /// The key-encryption key for new keyrings (and for platform secrets such as the audit
    /// signing key).
    pub fn default_kek(&self) -> &KekRef {
        &self.config.default_kek
    }

    /// Provider calls (wraps and unwraps) since start: the steady-state target is zero.
    pub fn provider_calls(&self) -> u64 {
        self.custody.provider_calls()
    }

    /// The subject keys (D3) held by this vault's custody: what a transaction needs to seal a
    /// person's request metadata, and nothing more.
    pub fn subject_keys(&self) -> SubjectKeys {
        SubjectKeys::new(self.custody.clone())
    }

    pub(crate) fn custody(&self) -> &Custody {
        &self.custody
    }

    /// Drops an environment's cached data keys (after a KEK change, retirement or deletion).
    pub fn forget(&self, environment: Uuid) {
        self.cache.retain(|(env, _)| *env != environment);
    }

    /// Drops the cached platform keys (after a rewrap or a new PII key version).
    pub fn forget_platform(&self) {
        self.custody.forget_platform();
    }

    /// The platform keys, from the cache or unwrapped from `platform_keys` (created on first
    /// use in the caller's transaction).
    pub async fn platform_keys(
        &self,
        conn: &mut PgConnection,
    ) -> Result<Arc<PlatformKeys>, StoreError> {
        self.custody.platform_keys(conn).await
    }

    /// `keys`, or the platform keys reloaded if a ciphertext among `sealed` names a PII key
    /// version they lack: another node rotated the PII key after they were cached.
    pub async fn platform_keys_covering<'a>(
        &self,
        conn: &mut PgConnection,
        keys: Arc<PlatformKeys>,
        sealed: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<Arc<PlatformKeys>, StoreError> {
        self.custody
            .platform_keys_covering(conn, keys, sealed)
            .await
    }
}

impl Store {
    /// This store with the vault's subject keys, which its transactions use to seal personal
    /// data in audit entries.
    pub fn with_vault(self, vault: Arc<Vault>) -> Self {
        self.with_subject_keys(vault.subject_keys())
    }
}

/// Operator queries: they see key metadata of every environment and nothing else (control T4:
/// each result names its environment, and the work itself then runs inside that environment's
/// `TenantTx`). The scheduler's two run as `portcullis_scheduler` while serving, which may read
/// only their columns; the CLI runs them all as the schema owner.
pub mod operator {
    use sqlx::PgPool;
    use uuid::Uuid;

    use crate::StoreError;

    /// Unfinished re-encryption jobs: (environment, job).
    pub async fn unfinished_jobs(conn: &PgPool) -> Result<Vec<(Uuid, Uuid)>, StoreError> {
        Ok(sqlx::query_as("SELECT environment_id, job_id FROM key_rotation_jobs WHERE finished_at IS NULL ORDER BY started_at")
            .fetch_all(conn)
            .await?)
    }

    /// Environments whose active data key is older than their rotation period.
    pub async fn due_for_rotation(conn: &PgPool) -> Result<Vec<Uuid>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT environment_id FROM environment_keys
              WHERE rotated_at < now() - make_interval(days => rotate_after_days) ORDER BY rotated_at",
        )
        .fetch_all(conn)
        .await?)
    }

    /// Every environment with a keyring and the KEK protecting it.
    pub async fn keyrings(
        conn: &PgPool,
    ) -> Result<Vec<(Uuid, serde_json::Value, i32)>, StoreError> {
        Ok(sqlx::query_as("SELECT environment_id, kek, active_version FROM environment_keys ORDER BY environment_id")
            .fetch_all(conn)
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The statements `encrypted_column!` builds, spelled out once for a column with a legacy
    /// plaintext column and one without.
    #[test]
    fn sealed_column_statements() {
        let body = &ENCRYPTED_COLUMNS[0];
        assert_eq!(body.progress_key, "documents.body");
        assert_eq!(
            body.sql.batch,
            "SELECT document_id, body_ciphertext, body_key_version, body::text FROM documents \
             WHERE environment_id = $1 AND ($2::uuid IS NULL OR document_id > $2) \
             ORDER BY document_id LIMIT $3 FOR UPDATE"
        );
        assert_eq!(
            body.sql.rewrite,
            "UPDATE documents SET body_ciphertext = $3, body_key_version = $4, body = NULL \
             WHERE environment_id = $1 AND document_id = $2 AND body_ciphertext IS NOT DISTINCT FROM $5"
        );
        assert_eq!(
            body.sql.count_below,
            "SELECT count(*) FROM documents WHERE environment_id = $1 AND (body_key_version < $2 OR body IS NOT NULL)"
        );
        let creds = &ENCRYPTED_COLUMNS[1];
        assert_eq!(creds.progress_key, "integrations.credentials");
        assert_eq!(
            creds.sql.batch,
            "SELECT integration_id, credentials_ciphertext, credentials_key_version, NULL::text FROM integrations \
             WHERE environment_id = $1 AND ($2::uuid IS NULL OR integration_id > $2) \
             ORDER BY integration_id LIMIT $3 FOR UPDATE"
        );
        assert_eq!(
            creds.sql.rewrite,
            "UPDATE integrations SET credentials_ciphertext = $3, credentials_key_version = $4 \
             WHERE environment_id = $1 AND integration_id = $2 AND credentials_ciphertext IS NOT DISTINCT FROM $5"
        );
        assert_eq!(
            creds.sql.count_below,
            "SELECT count(*) FROM integrations WHERE environment_id = $1 AND (credentials_key_version < $2)"
        );
        assert_eq!(
            creds.sql.count_by_version,
            "SELECT credentials_key_version, count(*) FROM integrations WHERE environment_id = $1 GROUP BY 1"
        );
    }
}
