//! The KEK side of a keyring: rewrapping every data key under a new KEK (for example the
//! customer's own), and retiring versions no value uses any more.

use portcullis_keys::KekRef;
use sqlx::types::Json;
use time::OffsetDateTime;

use super::{Vault, ENCRYPTED_COLUMNS};
use crate::{StoreError, TenantTx};

const RAISE_MIN_VERSION: &str = "UPDATE environment_keys SET min_decrypt_version = $2, updated_at = $3 WHERE environment_id = $1";
const RETIRE_KEYS: &str = "UPDATE data_keys SET wrapped = '\\x'::bytea, retired_at = $3 WHERE environment_id = $1 AND version < $2 AND retired_at IS NULL";
const LIVE_VERSIONS: &str = "SELECT version FROM data_keys WHERE environment_id = $1 AND retired_at IS NULL ORDER BY version";
const REWRAP_KEY: &str =
    "UPDATE data_keys SET wrapped = $3, kek = $4 WHERE environment_id = $1 AND version = $2";
const SET_KEK: &str =
    "UPDATE environment_keys SET kek = $2, updated_at = $3 WHERE environment_id = $1";

impl Vault {
    /// Values still sealed below `version` (or not sealed at all), across every column.
    pub(super) async fn rows_below(
        &self,
        tx: &mut TenantTx,
        version: i32,
    ) -> Result<i64, StoreError> {
        let env = tx.environment_id().as_uuid();
        let mut total = 0i64;
        for col in ENCRYPTED_COLUMNS {
            let n: i64 = sqlx::query_scalar(col.sql.count_below)
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
        tx.keyring_changed();
        sqlx::query(RAISE_MIN_VERSION)
            .bind(env)
            .bind(below)
            .bind(now)
            .execute(tx.conn())
            .await?;
        sqlx::query(RETIRE_KEYS)
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
        let versions: Vec<i32> = sqlx::query_scalar(LIVE_VERSIONS)
            .bind(env)
            .fetch_all(tx.conn())
            .await?;
        for v in versions {
            let key = self.data_key(tx, v).await?;
            // A key that will not wrap is the caller's choice, not a revocation of the
            // environment's key: refused as input, without the key-failure alarm.
            let wrapped = self
                .wrap(new_kek, &key, env, v)
                .await
                .map_err(|e| match e {
                    StoreError::KeyUnavailable(m) => StoreError::UnusableKek(m),
                    other => other,
                })?;
            sqlx::query(REWRAP_KEY)
                .bind(env)
                .bind(v)
                .bind(&wrapped)
                .bind(Json(new_kek))
                .execute(tx.conn())
                .await?;
        }
        tx.keyring_changed();
        sqlx::query(SET_KEK)
            .bind(env)
            .bind(Json(new_kek))
            .bind(now)
            .execute(tx.conn())
            .await?;
        self.forget(env);
        Ok(ring.kek.0)
    }
}
