//! Data-key rotation and the re-encryption job: a new version is active for writes at once,
//! and a resumable job re-seals existing values in batches, each batch and its progress
//! committed together.

use portcullis_crypto::envelope::{DataKey, Plaintext};
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Vault, ENCRYPTED_COLUMNS};
use crate::{StoreError, TenantTx};

const JOB_RUNNING: &str = "SELECT EXISTS (SELECT 1 FROM key_rotation_jobs WHERE environment_id = $1 AND finished_at IS NULL)";
const CREATE_KEY: &str = "INSERT INTO data_keys (environment_id, version, wrapped, kek, created_at) VALUES ($1, $2, $3, $4, $5)";
const ACTIVATE: &str = "UPDATE environment_keys SET active_version = $2, rotated_at = $3, updated_at = $3 WHERE environment_id = $1";
const CREATE_JOB: &str = "INSERT INTO key_rotation_jobs (environment_id, job_id, target_version, started_at) VALUES ($1, $2, $3, $4)";
const RUNNING_JOB: &str =
    "SELECT job_id FROM key_rotation_jobs WHERE environment_id = $1 AND finished_at IS NULL";
const LOCK_JOB: &str =
    "SELECT target_version, progress, rows_done, finished_at FROM key_rotation_jobs
      WHERE environment_id = $1 AND job_id = $2 FOR UPDATE";
const RECORD_PROGRESS: &str =
    "UPDATE key_rotation_jobs SET progress = $3, rows_done = $4, finished_at = CASE WHEN $5 THEN now() ELSE NULL END
      WHERE environment_id = $1 AND job_id = $2";

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

impl Vault {
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
        let running: bool = sqlx::query_scalar(JOB_RUNNING)
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
        sqlx::query(CREATE_KEY)
            .bind(env)
            .bind(version)
            .bind(&wrapped)
            .bind(&ring.kek)
            .bind(now)
            .execute(tx.conn())
            .await?;
        tx.keyring_changed();
        sqlx::query(ACTIVATE)
            .bind(env)
            .bind(version)
            .bind(now)
            .execute(tx.conn())
            .await?;
        let job_id = Uuid::now_v7();
        sqlx::query(CREATE_JOB)
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
        Ok(sqlx::query_scalar(RUNNING_JOB)
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
        let job: Option<(i32, serde_json::Value, i64, Option<OffsetDateTime>)> =
            sqlx::query_as(LOCK_JOB)
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
            let key = col.progress_key;
            let cursor = progress
                .get(key)
                .and_then(|v| v.as_str())
                .map(str::to_owned);
            if cursor.as_deref() == Some("done") {
                continue;
            }
            if budget <= 0 {
                break;
            }
            let limit = budget;
            let rows: Vec<SealedRow> = sqlx::query_as(col.sql.batch)
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
                let done = sqlx::query(col.sql.rewrite)
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
                obj.insert(key.to_owned(), serde_json::Value::String(m));
            }
        }
        rows_done += rewritten as i64;
        let all_done = ENCRYPTED_COLUMNS
            .iter()
            .all(|c| progress.get(c.progress_key).and_then(|v| v.as_str()) == Some("done"));
        sqlx::query(RECORD_PROGRESS)
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
}
