//! An environment's keyring as the API shows it: versions, jobs and the KEK reference, never
//! key material.

use portcullis_keys::KekRef;
use portcullis_store::vault as store;
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

/// What `rotate` started.
#[derive(Clone, Copy, Debug, Serialize, utoipa::ToSchema)]
pub struct Rotation {
    pub version: i32,
    pub job_id: Uuid,
}

impl From<store::Rotation> for Rotation {
    fn from(r: store::Rotation) -> Self {
        Rotation {
            version: r.version,
            job_id: r.job_id,
        }
    }
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct VersionStatus {
    pub version: i32,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub retired_at: Option<OffsetDateTime>,
    /// Sealed values using this version, across every encrypted column.
    pub rows: i64,
    pub active: bool,
}

impl From<store::VersionStatus> for VersionStatus {
    fn from(v: store::VersionStatus) -> Self {
        VersionStatus {
            version: v.version,
            created_at: v.created_at,
            retired_at: v.retired_at,
            rows: v.rows,
            active: v.active,
        }
    }
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct JobStatus {
    pub job_id: Uuid,
    pub target_version: i32,
    pub rows_done: i64,
    #[schema(value_type = Object)]
    pub progress: serde_json::Value,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub started_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub finished_at: Option<OffsetDateTime>,
}

impl From<store::JobStatus> for JobStatus {
    fn from(j: store::JobStatus) -> Self {
        JobStatus {
            job_id: j.job_id,
            target_version: j.target_version,
            rows_done: j.rows_done,
            progress: j.progress,
            started_at: j.started_at,
            finished_at: j.finished_at,
        }
    }
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct KeyStatus {
    pub environment_id: Uuid,
    /// The KEK protecting the data keys, e.g. `{"provider":"aws_kms","key_id":"..."}`.
    #[schema(value_type = Object)]
    pub kek: KekRef,
    pub active_version: i32,
    pub min_decrypt_version: i32,
    pub rotate_after_days: i32,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub rotated_at: OffsetDateTime,
    pub versions: Vec<VersionStatus>,
    /// Values written before encryption that the job has not yet sealed.
    pub plaintext_rows: i64,
    pub jobs: Vec<JobStatus>,
}

impl From<store::KeyStatus> for KeyStatus {
    fn from(s: store::KeyStatus) -> Self {
        KeyStatus {
            environment_id: s.environment_id,
            kek: s.kek,
            active_version: s.active_version,
            min_decrypt_version: s.min_decrypt_version,
            rotate_after_days: s.rotate_after_days,
            rotated_at: s.rotated_at,
            versions: s.versions.into_iter().map(Into::into).collect(),
            plaintext_rows: s.plaintext_rows,
            jobs: s.jobs.into_iter().map(Into::into).collect(),
        }
    }
}
