//! Envelope encryption of tenant data (E2, E4, E5). Each environment has a keyring: versioned
//! 256-bit data keys, stored only wrapped by a key-encryption key (KEK) held by a key provider
//! (local master key, PKCS#11 HSM or AWS KMS, possibly the customer's own). Values are sealed
//! with the active version and bound to their place (environment, table, column, row).
//!
//! Unwrapped data keys are cached in memory, bounded and with a TTL, so steady-state reads make
//! no provider calls; revoking a KEK therefore takes effect within the TTL (or at once on
//! [`Vault::forget`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use portcullis_crypto::envelope::{self, DataKey, EnvelopeError, KeyLabel, Place, Plaintext};
use portcullis_keys::{KekRef, KeyError, Providers, WrapContext};
use serde::Serialize;
use sqlx::types::Json;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::pii::PlatformKeys;
use crate::subjects::SubjectKey;
use crate::{StoreError, TenantTx};

/// A column holding sealed values. Names are compile-time constants, never user input, which
/// is why they may be formatted into SQL.
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
}

pub const ENCRYPTED_COLUMNS: &[EncryptedColumn] = &[
    EncryptedColumn {
        table: "documents",
        id: "document_id",
        ciphertext: "body_ciphertext",
        version: "body_key_version",
        column: "body",
        legacy_plaintext: Some("body"),
    },
    EncryptedColumn {
        table: "integrations",
        id: "integration_id",
        ciphertext: "credentials_ciphertext",
        version: "credentials_key_version",
        column: "credentials",
        legacy_plaintext: None,
    },
    EncryptedColumn {
        table: "model_keys",
        id: "environment_id",
        ciphertext: "key_ciphertext",
        version: "key_key_version",
        column: "key",
        legacy_plaintext: None,
    },
];

#[derive(Clone, Debug)]
pub struct VaultConfig {
    /// The KEK that protects the data keys of new environments.
    pub default_kek: KekRef,
    pub cache_ttl: Duration,
    pub cache_max_entries: usize,
}

/// One environment's keyring, as stored.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Keyring {
    pub keyring_id: Uuid,
    pub kek: Json<KekRef>,
    pub active_version: i32,
    pub min_decrypt_version: i32,
    pub rotate_after_days: i32,
    pub rotated_at: OffsetDateTime,
}

/// A bounded in-memory map whose entries expire after a TTL. When full, expired entries are
/// dropped first, then the oldest. A poisoned lock reads as a miss and drops writes: a cache
/// must never take the request down with it.
#[derive(Debug)]
struct TtlCache<K, V> {
    map: Mutex<HashMap<K, (V, Instant)>>,
    ttl: Duration,
    max_entries: usize,
}

impl<K: Copy + Eq + std::hash::Hash, V: Clone> TtlCache<K, V> {
    fn new(ttl: Duration, max_entries: usize) -> Self {
        TtlCache {
            map: Mutex::new(HashMap::new()),
            ttl,
            max_entries,
        }
    }

    fn get(&self, key: &K) -> Option<V> {
        let mut map = self.map.lock().ok()?;
        match map.get(key) {
            Some((value, at)) if at.elapsed() < self.ttl => Some(value.clone()),
            Some(_) => {
                map.remove(key);
                None
            }
            None => None,
        }
    }

    fn insert(&self, key: K, value: V) {
        let Ok(mut map) = self.map.lock() else {
            return;
        };
        if map.len() >= self.max_entries {
            let ttl = self.ttl;
            map.retain(|_, (_, at)| at.elapsed() < ttl);
            if map.len() >= self.max_entries {
                // Still full of live entries: evict the oldest.
                if let Some(oldest) = map.iter().min_by_key(|(_, (_, at))| *at).map(|(k, _)| *k) {
                    map.remove(&oldest);
                }
            }
        }
        map.insert(key, (value, Instant::now()));
    }

    fn remove(&self, key: &K) {
        if let Ok(mut map) = self.map.lock() {
            map.remove(key);
        }
    }

    fn retain(&self, mut keep: impl FnMut(&K) -> bool) {
        if let Ok(mut map) = self.map.lock() {
            map.retain(|k, _| keep(k));
        }
    }
}

#[derive(Debug)]
pub struct Vault {
    providers: Providers,
    config: VaultConfig,
    cache: TtlCache<(Uuid, i32), DataKey>,
    platform: Mutex<Option<(Arc<PlatformKeys>, Instant)>>,
    /// Subject keys (D3) for writing, by (scope, subject). Reads never use it, so an erasure
    /// on another node shows at once; writes there may use a destroyed key for up to the TTL,
    /// which leaves those values unreadable too.
    subjects: TtlCache<(Uuid, Uuid), SubjectKey>,
    provider_calls: AtomicU64,
}

fn key_error(e: KeyError) -> StoreError {
    match e {
        KeyError::Unavailable { .. } | KeyError::NotConfigured(_) => {
            StoreError::KeyUnavailable(e.to_string())
        }
        KeyError::Invalid => StoreError::Integrity(
            "a wrapped data key failed to unwrap (wrong key or altered)".into(),
        ),
        KeyError::Provider(_) | KeyError::Config(_) => StoreError::KeyProvider(e.to_string()),
    }
}

pub(crate) fn envelope_error(e: EnvelopeError) -> StoreError {
    StoreError::Integrity(match e {
        EnvelopeError::Malformed => "a stored value is not a valid ciphertext".into(),
        EnvelopeError::Tampered => {
            "a stored value failed its integrity check (it was moved, copied or altered)".into()
        }
    })
}

/// (row id, ciphertext, key version, legacy plaintext) as the re-encryption job reads it.
type SealedRow = (Uuid, Option<Vec<u8>>, Option<i32>, Option<String>);

/// What `rotate` started.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Rotation {
    pub version: i32,
    pub job_id: Uuid,
}

/// One batch of a re-encryption job.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct BatchOutcome {
    pub rows_rewritten: u64,
    pub rows_done: i64,
    pub finished: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct VersionStatus {
    pub version: i32,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub retired_at: Option<OffsetDateTime>,
    /// Sealed values using this version, across every encrypted column.
    pub rows: i64,
    pub active: bool,
}

#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct JobStatus {
    pub job_id: Uuid,
    pub target_version: i32,
    pub rows_done: i64,
    pub progress: serde_json::Value,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
}

#[derive(Clone, Debug, Serialize)]
pub struct KeyStatus {
    pub environment_id: Uuid,
    /// The KEK protecting the data keys, e.g. `{"provider":"aws_kms","key_id":"..."}`.
    pub kek: KekRef,
    pub active_version: i32,
    pub min_decrypt_version: i32,
    pub rotate_after_days: i32,
    #[serde(with = "time::serde::rfc3339")]
    pub rotated_at: OffsetDateTime,
    pub versions: Vec<VersionStatus>,
    /// Values written before encryption that the job has not yet sealed.
    pub plaintext_rows: i64,
    pub jobs: Vec<JobStatus>,
}

impl Vault {
    pub fn new(providers: Providers, config: VaultConfig) -> Vault {
        let (ttl, max) = (config.cache_ttl, config.cache_max_entries);
        Vault {
            providers,
            config,
            cache: TtlCache::new(ttl, max),
            platform: Mutex::new(None),
            subjects: TtlCache::new(ttl, max),
            provider_calls: AtomicU64::new(0),
        }
    }

    pub fn providers(&self) -> &Providers {
        &self.providers
    }

    /// The key-encryption key for new keyrings (and for platform secrets such as the audit
    /// signing key).
    pub fn default_kek(&self) -> &KekRef {
        &self.config.default_kek
    }

    /// Provider calls (wraps and unwraps) since start: the steady-state target is zero.
    pub fn provider_calls(&self) -> u64 {
        self.provider_calls.load(Ordering::Relaxed)
    }

    /// Drops an environment's cached data keys (after a KEK change, retirement or deletion).
    pub fn forget(&self, environment: Uuid) {
        self.cache.retain(|(env, _)| *env != environment);
    }

    /// Drops the cached platform keys (after a rewrap or a new PII key version).
    pub fn forget_platform(&self) {
        if let Ok(mut p) = self.platform.lock() {
            *p = None;
        }
    }

    pub(crate) fn subject_cached(&self, scope: Uuid, subject: Uuid) -> Option<SubjectKey> {
        self.subjects.get(&(scope, subject))
    }

    pub(crate) fn subject_remember(&self, scope: Uuid, subject: Uuid, key: &SubjectKey) {
        self.subjects.insert((scope, subject), key.clone());
    }

    pub(crate) fn subject_forget(&self, scope: Uuid, subject: Uuid) {
        self.subjects.remove(&(scope, subject));
    }

    pub(crate) fn platform_cached(&self) -> Option<Arc<PlatformKeys>> {
        let mut slot = self.platform.lock().ok()?;
        match &*slot {
            Some((keys, at)) if at.elapsed() < self.config.cache_ttl => Some(keys.clone()),
            Some(_) => {
                *slot = None;
                None
            }
            None => None,
        }
    }

    pub(crate) fn platform_remember(&self, keys: Arc<PlatformKeys>) {
        if let Ok(mut slot) = self.platform.lock() {
            *slot = Some((keys, Instant::now()));
        }
    }

    pub(crate) async fn wrap_platform(
        &self,
        kek: &KekRef,
        key: &DataKey,
        purpose: &str,
        version: i32,
    ) -> Result<Vec<u8>, StoreError> {
        self.provider_calls.fetch_add(1, Ordering::Relaxed);
        let ctx = WrapContext {
            environment_id: "platform",
            purpose,
            version: version as u32,
        };
        self.providers.wrap(kek, key, &ctx).await.map_err(key_error)
    }

    pub(crate) async fn unwrap_platform(
        &self,
        kek: &KekRef,
        wrapped: &[u8],
        purpose: &str,
        version: i32,
    ) -> Result<DataKey, StoreError> {
        self.provider_calls.fetch_add(1, Ordering::Relaxed);
        let ctx = WrapContext {
            environment_id: "platform",
            purpose,
            version: version as u32,
        };
        self.providers
            .unwrap(kek, wrapped, &ctx)
            .await
            .map_err(key_error)
    }

    fn cached(&self, environment: Uuid, version: i32) -> Option<DataKey> {
        self.cache.get(&(environment, version))
    }

    fn remember(&self, environment: Uuid, version: i32, key: &DataKey) {
        self.cache.insert((environment, version), key.clone());
    }

    async fn wrap(
        &self,
        kek: &KekRef,
        key: &DataKey,
        env: Uuid,
        version: i32,
    ) -> Result<Vec<u8>, StoreError> {
        self.provider_calls.fetch_add(1, Ordering::Relaxed);
        let env_s = env.to_string();
        let ctx = WrapContext {
            environment_id: &env_s,
            purpose: "data-key",
            version: version as u32,
        };
        self.providers.wrap(kek, key, &ctx).await.map_err(key_error)
    }

    async fn unwrap(
        &self,
        kek: &KekRef,
        wrapped: &[u8],
        env: Uuid,
        version: i32,
    ) -> Result<DataKey, StoreError> {
        self.provider_calls.fetch_add(1, Ordering::Relaxed);
        let env_s = env.to_string();
        let ctx = WrapContext {
            environment_id: &env_s,
            purpose: "data-key",
            version: version as u32,
        };
        self.providers
            .unwrap(kek, wrapped, &ctx)
            .await
            .map_err(key_error)
    }

    /// The environment's keyring, created (with data key version 1 under the default KEK) on
    /// first use.
    pub async fn ring(&self, tx: &mut TenantTx) -> Result<Keyring, StoreError> {
        if let Some(r) = self.load_ring(tx, false).await? {
            return Ok(r);
        }
        let env = tx.environment_id().as_uuid();
        let key = DataKey::generate();
        let kek = self.config.default_kek.clone();
        let wrapped = self.wrap(&kek, &key, env, 1).await?;
        let now = OffsetDateTime::now_utc();
        sqlx::query(
            "INSERT INTO environment_keys (environment_id, keyring_id, kek, active_version, rotated_at, updated_at)
             VALUES ($1, $2, $3, 1, $4, $4) ON CONFLICT (environment_id) DO NOTHING",
        )
        .bind(env)
        .bind(Uuid::now_v7())
        .bind(Json(&kek))
        .bind(now)
        .execute(tx.conn())
        .await?;
        sqlx::query(
            "INSERT INTO data_keys (environment_id, version, wrapped, kek, created_at) VALUES ($1, 1, $2, $3, $4)
             ON CONFLICT (environment_id, version) DO NOTHING",
        )
        .bind(env)
        .bind(&wrapped)
        .bind(Json(&kek))
        .bind(now)
        .execute(tx.conn())
        .await?;
        self.load_ring(tx, false).await?.ok_or(StoreError::NotFound)
    }

    async fn load_ring(
        &self,
        tx: &mut TenantTx,
        for_update: bool,
    ) -> Result<Option<Keyring>, StoreError> {
        let env = tx.environment_id().as_uuid();
        let lock = if for_update { " FOR UPDATE" } else { "" };
        Ok(sqlx::query_as(&format!(
            "SELECT keyring_id, kek, active_version, min_decrypt_version, rotate_after_days, rotated_at
               FROM environment_keys WHERE environment_id = $1{lock}"
        ))
        .bind(env)
        .fetch_optional(tx.conn())
        .await?)
    }

    async fn data_key(&self, tx: &mut TenantTx, version: i32) -> Result<DataKey, StoreError> {
        let env = tx.environment_id().as_uuid();
        if let Some(k) = self.cached(env, version) {
            return Ok(k);
        }
        let row: Option<(Vec<u8>, Json<KekRef>, Option<OffsetDateTime>)> =
            sqlx::query_as("SELECT wrapped, kek, retired_at FROM data_keys WHERE environment_id = $1 AND version = $2")
                .bind(env)
                .bind(version)
                .fetch_optional(tx.conn())
                .await?;
        let Some((wrapped, kek, retired)) = row else {
            return Err(StoreError::Integrity(format!(
                "data key version {version} does not exist"
            )));
        };
        if retired.is_some() {
            return Err(StoreError::Integrity(format!(
                "data key version {version} is retired"
            )));
        }
        let key = self.unwrap(&kek.0, &wrapped, env, version).await?;
        self.remember(env, version, &key);
        Ok(key)
    }

    fn place<'a>(tx: &TenantTx, column: &EncryptedColumn, row: &'a str) -> Place<'a> {
        Place {
            environment: tx.environment_id().as_uuid(),
            table: column.table,
            column: column.column,
            row,
        }
    }

    /// Seals `plaintext` for `row` of `column` with the active data key; returns the
    /// ciphertext and the version used.
    pub async fn seal(
        &self,
        tx: &mut TenantTx,
        ring: &Keyring,
        column: &EncryptedColumn,
        row: &str,
        plaintext: &[u8],
    ) -> Result<(Vec<u8>, i32), StoreError> {
        let key = self.data_key(tx, ring.active_version).await?;
        let label = KeyLabel {
            key_id: ring.keyring_id,
            version: ring.active_version as u32,
        };
        Ok((
            envelope::seal(&key, label, &Self::place(tx, column, row), plaintext),
            ring.active_version,
        ))
    }

    /// Opens a value sealed for `row` of `column` in this environment.
    pub async fn open(
        &self,
        tx: &mut TenantTx,
        ring: &Keyring,
        column: &EncryptedColumn,
        row: &str,
        ciphertext: &[u8],
    ) -> Result<Plaintext, StoreError> {
        let label = envelope::label(ciphertext).map_err(envelope_error)?;
        if label.key_id != ring.keyring_id {
            return Err(StoreError::Integrity(
                "a stored value was sealed for another environment's keyring".into(),
            ));
        }
        let version = i32::try_from(label.version)
            .map_err(|_| StoreError::Integrity("bad key version".into()))?;
        if version < ring.min_decrypt_version || version > ring.active_version {
            return Err(StoreError::Integrity(format!(
                "a stored value uses key version {version}, outside the usable range"
            )));
        }
        let key = self.data_key(tx, version).await?;
        envelope::open(&key, &Self::place(tx, column, row), ciphertext).map_err(envelope_error)
    }

    pub async fn open_text(
        &self,
        tx: &mut TenantTx,
        ring: &Keyring,
        column: &EncryptedColumn,
        row: &str,
        ciphertext: &[u8],
    ) -> Result<String, StoreError> {
        let bytes = self.open(tx, ring, column, row, ciphertext).await?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| StoreError::Integrity("a sealed text value is not UTF-8".into()))
    }

    /// Starts a new data-key version: new writes use it at once; a re-encryption job moves
    /// existing values. One job per environment at a time.
    pub async fn rotate(
        &self,
        tx: &mut TenantTx,
        now: OffsetDateTime,
    ) -> Result<Rotation, StoreError> {
        self.ring(tx).await?;
        let ring = self
            .load_ring(tx, true)
            .await?
            .ok_or(StoreError::NotFound)?;
        let env = tx.environment_id().as_uuid();
        let running: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM key_rotation_jobs WHERE environment_id = $1 AND finished_at IS NULL)")
            .bind(env)
            .fetch_one(tx.conn())
            .await?;
        if running {
            return Err(StoreError::Conflict(
                "a re-encryption job is still running for this environment; let it finish first"
                    .into(),
            ));
        }
        let version = ring.active_version + 1;
        let key = DataKey::generate();
        let wrapped = self.wrap(&ring.kek.0, &key, env, version).await?;
        sqlx::query("INSERT INTO data_keys (environment_id, version, wrapped, kek, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(env)
            .bind(version)
            .bind(&wrapped)
            .bind(&ring.kek)
            .bind(now)
            .execute(tx.conn())
            .await?;
        sqlx::query("UPDATE environment_keys SET active_version = $2, rotated_at = $3, updated_at = $3 WHERE environment_id = $1")
            .bind(env)
            .bind(version)
            .bind(now)
            .execute(tx.conn())
            .await?;
        let job_id = Uuid::now_v7();
        sqlx::query("INSERT INTO key_rotation_jobs (environment_id, job_id, target_version, started_at) VALUES ($1, $2, $3, $4)")
            .bind(env)
            .bind(job_id)
            .bind(version)
            .bind(now)
            .execute(tx.conn())
            .await?;
        self.remember(env, version, &key);
        Ok(Rotation { version, job_id })
    }

    /// The running re-encryption job of this environment, if any.
    pub async fn running_job(&self, tx: &mut TenantTx) -> Result<Option<Uuid>, StoreError> {
        let env = tx.environment_id().as_uuid();
        Ok(sqlx::query_scalar("SELECT job_id FROM key_rotation_jobs WHERE environment_id = $1 AND finished_at IS NULL")
            .bind(env)
            .fetch_optional(tx.conn())
            .await?)
    }

    /// Re-encrypts up to `batch` rows of the job and records progress in the same transaction:
    /// committing it makes the batch durable; crashing before makes it as if it never ran.
    /// Values changed concurrently are left alone (they were just written with the new key).
    pub async fn run_batch(
        &self,
        tx: &mut TenantTx,
        job_id: Uuid,
        batch: i64,
    ) -> Result<BatchOutcome, StoreError> {
        let env = tx.environment_id().as_uuid();
        let job: Option<(i32, serde_json::Value, i64, Option<OffsetDateTime>)> = sqlx::query_as(
            "SELECT target_version, progress, rows_done, finished_at FROM key_rotation_jobs
              WHERE environment_id = $1 AND job_id = $2 FOR UPDATE",
        )
        .bind(env)
        .bind(job_id)
        .fetch_optional(tx.conn())
        .await?;
        let (target, mut progress, mut rows_done, finished) = job.ok_or(StoreError::NotFound)?;
        if finished.is_some() {
            return Ok(BatchOutcome {
                rows_rewritten: 0,
                rows_done,
                finished: true,
            });
        }
        let ring = self.ring(tx).await?;
        let mut rewritten = 0u64;
        let mut budget = batch;
        for col in ENCRYPTED_COLUMNS {
            let key = format!("{}.{}", col.table, col.column);
            let cursor = progress
                .get(&key)
                .and_then(|v| v.as_str())
                .map(str::to_owned);
            if cursor.as_deref() == Some("done") {
                continue;
            }
            if budget <= 0 {
                break;
            }
            let legacy = col.legacy_plaintext.unwrap_or("NULL");
            let limit = budget;
            let rows: Vec<SealedRow> = sqlx::query_as(&format!(
                "SELECT {id}, {ct}, {ver}, {legacy}::text FROM {table}
                  WHERE environment_id = $1 AND ($2::uuid IS NULL OR {id} > $2)
                  ORDER BY {id} LIMIT $3 FOR UPDATE",
                id = col.id,
                ct = col.ciphertext,
                ver = col.version,
                table = col.table
            ))
            .bind(env)
            .bind(cursor.as_deref().and_then(|c| Uuid::parse_str(c).ok()))
            .bind(limit)
            .fetch_all(tx.conn())
            .await?;
            let fetched = rows.len() as i64;
            budget -= fetched;
            let mut last = cursor.clone();
            for (id, ct, ver, plain) in rows {
                last = Some(id.to_string());
                let row = id.to_string();
                let plaintext: Plaintext = match (ct.as_deref(), ver, plain) {
                    (Some(ct), Some(v), _) if v < target => {
                        self.open(tx, &ring, col, &row, ct).await?
                    }
                    (None, _, Some(p)) => Plaintext::new(p.into_bytes()),
                    _ => continue,
                };
                let (new_ct, v) = self.seal(tx, &ring, col, &row, &plaintext).await?;
                let legacy_clear = col
                    .legacy_plaintext
                    .map(|c| format!(", {c} = NULL"))
                    .unwrap_or_default();
                let done = sqlx::query(&format!(
                    "UPDATE {table} SET {ct} = $3, {ver} = $4{legacy_clear}
                      WHERE environment_id = $1 AND {id} = $2 AND {ct} IS NOT DISTINCT FROM $5",
                    table = col.table,
                    ct = col.ciphertext,
                    ver = col.version,
                    id = col.id
                ))
                .bind(env)
                .bind(id)
                .bind(&new_ct)
                .bind(v)
                .bind(ct.as_deref())
                .execute(tx.conn())
                .await?;
                rewritten += done.rows_affected();
            }
            // Fewer rows than asked for: this column has nothing after the cursor.
            let exhausted = fetched < limit;
            let mark = if exhausted {
                Some("done".to_owned())
            } else {
                last
            };
            if let (Some(obj), Some(m)) = (progress.as_object_mut(), mark) {
                obj.insert(key, serde_json::Value::String(m));
            }
        }
        rows_done += rewritten as i64;
        let all_done = ENCRYPTED_COLUMNS.iter().all(|c| {
            progress
                .get(format!("{}.{}", c.table, c.column))
                .and_then(|v| v.as_str())
                == Some("done")
        });
        sqlx::query(
            "UPDATE key_rotation_jobs SET progress = $3, rows_done = $4, finished_at = CASE WHEN $5 THEN now() ELSE NULL END
              WHERE environment_id = $1 AND job_id = $2",
        )
        .bind(env)
        .bind(job_id)
        .bind(&progress)
        .bind(rows_done)
        .bind(all_done)
        .execute(tx.conn())
        .await?;
        Ok(BatchOutcome {
            rows_rewritten: rewritten,
            rows_done,
            finished: all_done,
        })
    }

    /// Values still sealed below `version` (or not sealed at all), across every column.
    async fn rows_below(&self, tx: &mut TenantTx, version: i32) -> Result<i64, StoreError> {
        let env = tx.environment_id().as_uuid();
        let mut total = 0i64;
        for col in ENCRYPTED_COLUMNS {
            let legacy = col
                .legacy_plaintext
                .map(|c| format!(" OR {c} IS NOT NULL"))
                .unwrap_or_default();
            let n: i64 = sqlx::query_scalar(&format!(
                "SELECT count(*) FROM {table} WHERE environment_id = $1 AND ({ver} < $2{legacy})",
                table = col.table,
                ver = col.version
            ))
            .bind(env)
            .bind(version)
            .fetch_one(tx.conn())
            .await?;
            total += n;
        }
        Ok(total)
    }

    /// Retires every version below the active one: refused while any value still uses one.
    /// The retired wrapped keys are erased, so not even the KEK can bring them back.
    pub async fn retire_old_versions(
        &self,
        tx: &mut TenantTx,
        now: OffsetDateTime,
    ) -> Result<i32, StoreError> {
        let ring = self.ring(tx).await?;
        let env = tx.environment_id().as_uuid();
        let below = ring.active_version;
        let remaining = self.rows_below(tx, below).await?;
        if remaining > 0 {
            return Err(StoreError::Conflict(format!(
                "{remaining} values still use a key version below {below}; let the re-encryption job finish first"
            )));
        }
        sqlx::query("UPDATE environment_keys SET min_decrypt_version = $2, updated_at = $3 WHERE environment_id = $1")
            .bind(env)
            .bind(below)
            .bind(now)
            .execute(tx.conn())
            .await?;
        sqlx::query("UPDATE data_keys SET wrapped = '\\x'::bytea, retired_at = $3 WHERE environment_id = $1 AND version < $2 AND retired_at IS NULL")
            .bind(env)
            .bind(below)
            .bind(now)
            .execute(tx.conn())
            .await?;
        self.forget(env);
        Ok(below)
    }

    /// Rewraps every usable data key under `new_kek` (for example the customer's own KMS key):
    /// the data keys themselves, and so every ciphertext, stay as they are.
    pub async fn set_kek(
        &self,
        tx: &mut TenantTx,
        new_kek: &KekRef,
        now: OffsetDateTime,
    ) -> Result<KekRef, StoreError> {
        self.ring(tx).await?;
        let ring = self
            .load_ring(tx, true)
            .await?
            .ok_or(StoreError::NotFound)?;
        let env = tx.environment_id().as_uuid();
        let versions: Vec<i32> = sqlx::query_scalar("SELECT version FROM data_keys WHERE environment_id = $1 AND retired_at IS NULL ORDER BY version")
            .bind(env)
            .fetch_all(tx.conn())
            .await?;
        for v in versions {
            let key = self.data_key(tx, v).await?;
            let wrapped = self.wrap(new_kek, &key, env, v).await?;
            sqlx::query("UPDATE data_keys SET wrapped = $3, kek = $4 WHERE environment_id = $1 AND version = $2")
                .bind(env)
                .bind(v)
                .bind(&wrapped)
                .bind(Json(new_kek))
                .execute(tx.conn())
                .await?;
        }
        sqlx::query(
            "UPDATE environment_keys SET kek = $2, updated_at = $3 WHERE environment_id = $1",
        )
        .bind(env)
        .bind(Json(new_kek))
        .bind(now)
        .execute(tx.conn())
        .await?;
        self.forget(env);
        Ok(ring.kek.0)
    }

    pub async fn status(&self, tx: &mut TenantTx) -> Result<KeyStatus, StoreError> {
        let ring = self.ring(tx).await?;
        let env = tx.environment_id().as_uuid();
        let mut counts: HashMap<i32, i64> = HashMap::new();
        let mut plaintext_rows = 0i64;
        for col in ENCRYPTED_COLUMNS {
            let rows: Vec<(Option<i32>, i64)> = sqlx::query_as(&format!(
                "SELECT {ver}, count(*) FROM {table} WHERE environment_id = $1 GROUP BY 1",
                ver = col.version,
                table = col.table
            ))
            .bind(env)
            .fetch_all(tx.conn())
            .await?;
            for (v, n) in rows {
                match v {
                    Some(v) => *counts.entry(v).or_default() += n,
                    None => plaintext_rows += n,
                }
            }
        }
        let versions: Vec<(i32, OffsetDateTime, Option<OffsetDateTime>)> =
            sqlx::query_as("SELECT version, created_at, retired_at FROM data_keys WHERE environment_id = $1 ORDER BY version")
                .bind(env)
                .fetch_all(tx.conn())
                .await?;
        let jobs: Vec<JobStatus> = sqlx::query_as(
            "SELECT job_id, target_version, rows_done, progress, started_at, finished_at FROM key_rotation_jobs
              WHERE environment_id = $1 ORDER BY job_id DESC LIMIT 20",
        )
        .bind(env)
        .fetch_all(tx.conn())
        .await?;
        Ok(KeyStatus {
            environment_id: env,
            kek: ring.kek.0.clone(),
            active_version: ring.active_version,
            min_decrypt_version: ring.min_decrypt_version,
            rotate_after_days: ring.rotate_after_days,
            rotated_at: ring.rotated_at,
            versions: versions
                .into_iter()
                .map(|(version, created_at, retired_at)| VersionStatus {
                    version,
                    created_at,
                    retired_at,
                    rows: counts.get(&version).copied().unwrap_or(0),
                    active: version == ring.active_version,
                })
                .collect(),
            plaintext_rows,
            jobs,
        })
    }
}

/// Operator queries: run as the schema owner (scheduler, CLI), they see key metadata of every
/// environment and nothing else (control T4: each result names its environment, and the work
/// itself then runs inside that environment's `TenantTx`).
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
