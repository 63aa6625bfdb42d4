//! The per-environment keyring: its data keys (wrapped by the KEK, cached unwrapped), and
//! sealing and opening values with them.

use portcullis_crypto::envelope::{self, DataKey, KeyLabel, Place, Plaintext};
use portcullis_keys::{KekRef, WrapContext};
use sqlx::types::Json;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{EncryptedColumn, Vault};
use crate::custody::envelope_error;
pub use crate::keyring_row::Keyring;
use crate::{StoreError, TenantTx};

macro_rules! load_ring_sql {
    () => {
        "SELECT keyring_id, kek, active_version, min_decrypt_version, rotate_after_days, rotated_at
           FROM environment_keys WHERE environment_id = $1"
    };
}
const LOAD_RING: &str = load_ring_sql!();
const LOAD_RING_FOR_UPDATE: &str = concat!(load_ring_sql!(), " FOR UPDATE");
const CREATE_RING: &str =
    "INSERT INTO environment_keys (environment_id, keyring_id, kek, active_version, rotated_at, updated_at)
     VALUES ($1, $2, $3, 1, $4, $4) ON CONFLICT (environment_id) DO NOTHING";
const CREATE_FIRST_KEY: &str =
    "INSERT INTO data_keys (environment_id, version, wrapped, kek, created_at) VALUES ($1, 1, $2, $3, $4)
     ON CONFLICT (environment_id, version) DO NOTHING";
const DATA_KEY: &str =
    "SELECT wrapped, kek, retired_at FROM data_keys WHERE environment_id = $1 AND version = $2";

fn data_key_context(environment_id: &str, version: i32) -> WrapContext<'_> {
    WrapContext {
        environment_id,
        purpose: "data-key",
        version: version as u32,
    }
}

impl Vault {
    pub(super) fn cached(&self, environment: Uuid, version: i32) -> Option<DataKey> {
        self.cache.get(&(environment, version))
    }

    pub(super) fn remember(&self, environment: Uuid, version: i32, key: &DataKey) {
        self.cache.insert((environment, version), key.clone());
    }

    pub(super) async fn wrap(
        &self,
        kek: &KekRef,
        key: &DataKey,
        env: Uuid,
        version: i32,
    ) -> Result<Vec<u8>, StoreError> {
        let env_s = env.to_string();
        self.custody()
            .wrap(kek, key, &data_key_context(&env_s, version))
            .await
    }

    pub(super) async fn unwrap(
        &self,
        kek: &KekRef,
        wrapped: &[u8],
        env: Uuid,
        version: i32,
    ) -> Result<DataKey, StoreError> {
        let env_s = env.to_string();
        self.custody()
            .unwrap(kek, wrapped, &data_key_context(&env_s, version))
            .await
    }

    /// The environment's keyring, created (with data key version 1 under the default KEK) on
    /// first use.
    pub async fn ring(&self, tx: &mut TenantTx) -> Result<Keyring, StoreError> {
        // The row changes only by rotation, a KEK change or retiring old versions, each of
        // which drops it from this node's cache at commit and announces it to the others
        // (migration 0017), like a credential.
        let env_id = tx.environment_id();
        let cache = tx.ring_cache().cloned();
        if let Some(r) = cache.as_ref().and_then(|c| c.ring(env_id)) {
            return Ok(r);
        }
        let ticket = cache.as_ref().map(|c| c.ticket());
        if let Some(r) = self.load_ring(tx, false).await? {
            if let (Some(c), Some(t)) = (&cache, ticket) {
                c.store_ring(t, env_id, &r);
            }
            return Ok(r);
        }
        let env = tx.environment_id().as_uuid();
        let key = DataKey::generate();
        let kek = self.config.default_kek.clone();
        let wrapped = self.wrap(&kek, &key, env, 1).await?;
        let now = OffsetDateTime::now_utc();
        sqlx::query(CREATE_RING)
            .bind(env)
            .bind(Uuid::now_v7())
            .bind(Json(&kek))
            .bind(now)
            .execute(tx.conn())
            .await?;
        sqlx::query(CREATE_FIRST_KEY)
            .bind(env)
            .bind(&wrapped)
            .bind(Json(&kek))
            .bind(now)
            .execute(tx.conn())
            .await?;
        self.load_ring(tx, false).await?.ok_or(StoreError::NotFound)
    }

    pub(super) async fn load_ring(
        &self,
        tx: &mut TenantTx,
        for_update: bool,
    ) -> Result<Option<Keyring>, StoreError> {
        let env = tx.environment_id().as_uuid();
        let sql = if for_update {
            LOAD_RING_FOR_UPDATE
        } else {
            LOAD_RING
        };
        Ok(sqlx::query_as(sql)
            .bind(env)
            .fetch_optional(tx.conn())
            .await?)
    }

    pub(super) async fn data_key(
        &self,
        tx: &mut TenantTx,
        version: i32,
    ) -> Result<DataKey, StoreError> {
        let env = tx.environment_id().as_uuid();
        if let Some(k) = self.cached(env, version) {
            return Ok(k);
        }
        let row: Option<(Vec<u8>, Json<KekRef>, Option<OffsetDateTime>)> = sqlx::query_as(DATA_KEY)
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
}
