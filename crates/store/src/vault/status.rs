//! A keyring as the operator sees it: versions, how many values each seals, recent jobs.

use std::collections::HashMap;

use portcullis_keys::KekRef;
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Vault, ENCRYPTED_COLUMNS};
use crate::{StoreError, TenantTx};

const VERSIONS: &str = "SELECT version, created_at, retired_at FROM data_keys WHERE environment_id = $1 ORDER BY version";
const JOBS: &str =
    "SELECT job_id, target_version, rows_done, progress, started_at, finished_at FROM key_rotation_jobs
      WHERE environment_id = $1 ORDER BY job_id DESC LIMIT 20";

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
    pub async fn status(&self, tx: &mut TenantTx) -> Result<KeyStatus, StoreError> {
        let ring = self.ring(tx).await?;
        let env = tx.environment_id().as_uuid();
        let mut counts: HashMap<i32, i64> = HashMap::new();
        let mut plaintext_rows = 0i64;
        for col in ENCRYPTED_COLUMNS {
            let rows: Vec<(Option<i32>, i64)> = sqlx::query_as(col.sql.count_by_version)
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
        let versions: Vec<(i32, OffsetDateTime, Option<OffsetDateTime>)> = sqlx::query_as(VERSIONS)
            .bind(env)
            .fetch_all(tx.conn())
            .await?;
        let jobs: Vec<JobStatus> = sqlx::query_as(JOBS).bind(env).fetch_all(tx.conn()).await?;
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
