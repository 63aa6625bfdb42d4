//! Integrations: third-party credentials, sealed (E2) and write-only through the API. Only a
//! hint (the last four characters) is ever shown.

use portcullis_core::IntegrationId;
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::vault::{Keyring, Vault, ENCRYPTED_COLUMNS};
use crate::{StoreError, TenantTx};

pub const CREDENTIALS: &crate::vault::EncryptedColumn = &ENCRYPTED_COLUMNS[1];
pub const MODEL_KEY: &crate::vault::EncryptedColumn = &ENCRYPTED_COLUMNS[2];

#[derive(Clone, Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Integration {
    pub integration_id: Uuid,
    pub kind: String,
    pub name: String,
    /// The last four characters of the credentials, to recognise them; never the credentials.
    pub credentials_hint: String,
    pub created_by: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
}

#[derive(Clone, Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct ModelKey {
    pub provider: String,
    pub key_hint: String,
    pub updated_by: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
}

// A macro rather than a const so that `concat!` can splice it into static SQL.
macro_rules! columns {
    () => {
        "integration_id, kind, name, credentials_hint, created_by, created_at, updated_at"
    };
}

/// `…abcd` for a secret: enough to recognise, useless to an attacker.
pub fn hint(secret: &str) -> String {
    let chars: Vec<char> = secret.chars().collect();
    let tail: String = chars[chars.len().saturating_sub(4)..].iter().collect();
    if chars.len() < 12 {
        "…".into()
    } else {
        format!("…{tail}")
    }
}

#[allow(clippy::too_many_arguments)]
pub async fn create(
    vault: &Vault,
    tx: &mut TenantTx,
    ring: &Keyring,
    id: IntegrationId,
    kind: &str,
    name: &str,
    credentials: &str,
    created_by: Uuid,
    now: OffsetDateTime,
) -> Result<Integration, StoreError> {
    let env = tx.environment_id().as_uuid();
    let (ct, v) = vault
        .seal(
            tx,
            ring,
            CREDENTIALS,
            &id.to_string(),
            credentials.as_bytes(),
        )
        .await?;
    Ok(sqlx::query_as(concat!("INSERT INTO integrations (environment_id, integration_id, kind, name, credentials_ciphertext, credentials_key_version, credentials_hint, created_by, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) RETURNING ", columns!()))
    .bind(env)
    .bind(id.as_uuid())
    .bind(kind)
    .bind(name)
    .bind(ct)
    .bind(v)
    .bind(hint(credentials))
    .bind(created_by)
    .bind(now)
    .fetch_one(tx.conn())
    .await?)
}

pub async fn replace_credentials(
    vault: &Vault,
    tx: &mut TenantTx,
    ring: &Keyring,
    id: IntegrationId,
    credentials: &str,
    now: OffsetDateTime,
) -> Result<Integration, StoreError> {
    let env = tx.environment_id().as_uuid();
    let (ct, v) = vault
        .seal(
            tx,
            ring,
            CREDENTIALS,
            &id.to_string(),
            credentials.as_bytes(),
        )
        .await?;
    Ok(sqlx::query_as(concat!("UPDATE integrations SET credentials_ciphertext = $3, credentials_key_version = $4, credentials_hint = $5, updated_at = $6
          WHERE environment_id = $1 AND integration_id = $2 RETURNING ", columns!()))
    .bind(env)
    .bind(id.as_uuid())
    .bind(ct)
    .bind(v)
    .bind(hint(credentials))
    .bind(now)
    .fetch_one(tx.conn())
    .await?)
}

pub async fn list(
    tx: &mut TenantTx,
    page: super::Page,
) -> Result<super::Paged<Integration>, StoreError> {
    let env = tx.environment_id().as_uuid();
    let rows: Vec<Integration> = sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM integrations WHERE environment_id = $1 AND ($2::uuid IS NULL OR integration_id > $2)
          ORDER BY integration_id LIMIT $3"
    ))
    .bind(env)
    .bind(page.after)
    .bind(page.fetch_limit())
    .fetch_all(tx.conn())
    .await?;
    Ok(super::Paged::from_rows(rows, page, |r| r.integration_id))
}

pub async fn get(tx: &mut TenantTx, id: IntegrationId) -> Result<Integration, StoreError> {
    let env = tx.environment_id().as_uuid();
    Ok(sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM integrations WHERE environment_id = $1 AND integration_id = $2"
    ))
    .bind(env)
    .bind(id.as_uuid())
    .fetch_one(tx.conn())
    .await?)
}

/// The plaintext credentials, for the server's own use (calling the integration). Never for
/// an API response.
pub async fn credentials(
    vault: &Vault,
    tx: &mut TenantTx,
    ring: &Keyring,
    id: IntegrationId,
) -> Result<portcullis_crypto::Secret, StoreError> {
    let env = tx.environment_id().as_uuid();
    let ct: Vec<u8> = sqlx::query_scalar("SELECT credentials_ciphertext FROM integrations WHERE environment_id = $1 AND integration_id = $2")
        .bind(env)
        .bind(id.as_uuid())
        .fetch_one(tx.conn())
        .await?;
    Ok(portcullis_crypto::Secret::new(
        vault
            .open_text(tx, ring, CREDENTIALS, &id.to_string(), &ct)
            .await?,
    ))
}

pub async fn delete(tx: &mut TenantTx, id: IntegrationId) -> Result<(), StoreError> {
    let env = tx.environment_id().as_uuid();
    let done =
        sqlx::query("DELETE FROM integrations WHERE environment_id = $1 AND integration_id = $2")
            .bind(env)
            .bind(id.as_uuid())
            .execute(tx.conn())
            .await?;
    if done.rows_affected() == 1 {
        Ok(())
    } else {
        Err(StoreError::NotFound)
    }
}

pub async fn set_model_key(
    vault: &Vault,
    tx: &mut TenantTx,
    ring: &Keyring,
    provider: &str,
    key: &str,
    by: Uuid,
    now: OffsetDateTime,
) -> Result<ModelKey, StoreError> {
    let env = tx.environment_id().as_uuid();
    let (ct, v) = vault
        .seal(tx, ring, MODEL_KEY, &env.to_string(), key.as_bytes())
        .await?;
    Ok(sqlx::query_as(
        "INSERT INTO model_keys (environment_id, provider, key_ciphertext, key_key_version, key_hint, updated_by, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (environment_id) DO UPDATE SET provider = EXCLUDED.provider, key_ciphertext = EXCLUDED.key_ciphertext,
             key_key_version = EXCLUDED.key_key_version, key_hint = EXCLUDED.key_hint, updated_by = EXCLUDED.updated_by, updated_at = EXCLUDED.updated_at
         RETURNING provider, key_hint, updated_by, updated_at",
    )
    .bind(env)
    .bind(provider)
    .bind(ct)
    .bind(v)
    .bind(hint(key))
    .bind(by)
    .bind(now)
    .fetch_one(tx.conn())
    .await?)
}

pub async fn model_key(tx: &mut TenantTx) -> Result<Option<ModelKey>, StoreError> {
    let env = tx.environment_id().as_uuid();
    Ok(sqlx::query_as("SELECT provider, key_hint, updated_by, updated_at FROM model_keys WHERE environment_id = $1")
        .bind(env)
        .fetch_optional(tx.conn())
        .await?)
}

/// The plaintext model key, for the LLM gateway's own use.
pub async fn model_key_secret(
    vault: &Vault,
    tx: &mut TenantTx,
    ring: &Keyring,
) -> Result<Option<portcullis_crypto::Secret>, StoreError> {
    let env = tx.environment_id().as_uuid();
    let ct: Option<Vec<u8>> =
        sqlx::query_scalar("SELECT key_ciphertext FROM model_keys WHERE environment_id = $1")
            .bind(env)
            .fetch_optional(tx.conn())
            .await?;
    match ct {
        Some(ct) => Ok(Some(portcullis_crypto::Secret::new(
            vault
                .open_text(tx, ring, MODEL_KEY, &env.to_string(), &ct)
                .await?,
        ))),
        None => Ok(None),
    }
}

pub async fn delete_model_key(tx: &mut TenantTx) -> Result<(), StoreError> {
    let env = tx.environment_id().as_uuid();
    let done = sqlx::query("DELETE FROM model_keys WHERE environment_id = $1")
        .bind(env)
        .execute(tx.conn())
        .await?;
    if done.rows_affected() == 1 {
        Ok(())
    } else {
        Err(StoreError::NotFound)
    }
}
