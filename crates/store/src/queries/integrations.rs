//! Integrations and the model-provider key: third-party credentials, stored sealed (E2) as the
//! caller sealed them, with the hint the caller computed. Nothing here sees a plaintext.

use portcullis_core::IntegrationId;
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::vault::ENCRYPTED_COLUMNS;
use crate::{StoreError, TenantTx};

pub const CREDENTIALS: &crate::vault::EncryptedColumn = &ENCRYPTED_COLUMNS[1];
pub const MODEL_KEY: &crate::vault::EncryptedColumn = &ENCRYPTED_COLUMNS[2];

#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct Integration {
    pub integration_id: Uuid,
    pub kind: String,
    pub name: String,
    /// The last four characters of the credentials, to recognise them; never the credentials.
    pub credentials_hint: String,
    pub created_by: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct ModelKey {
    pub provider: String,
    pub key_hint: String,
    pub updated_by: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

// A macro rather than a const so that `concat!` can splice it into static SQL.
macro_rules! columns {
    () => {
        "integration_id, kind, name, credentials_hint, created_by, created_at, updated_at"
    };
}

#[allow(clippy::too_many_arguments)]
pub async fn create(
    tx: &mut TenantTx,
    id: IntegrationId,
    kind: &str,
    name: &str,
    (ct, v): (&[u8], i32),
    credentials_hint: &str,
    created_by: Uuid,
    now: OffsetDateTime,
) -> Result<Integration, StoreError> {
    let env = tx.environment_id().as_uuid();
    Ok(sqlx::query_as(concat!("INSERT INTO integrations (environment_id, integration_id, kind, name, credentials_ciphertext, credentials_key_version, credentials_hint, created_by, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) RETURNING ", columns!()))
    .bind(env)
    .bind(id.as_uuid())
    .bind(kind)
    .bind(name)
    .bind(ct)
    .bind(v)
    .bind(credentials_hint)
    .bind(created_by)
    .bind(now)
    .fetch_one(tx.conn())
    .await?)
}

pub async fn replace_credentials(
    tx: &mut TenantTx,
    id: IntegrationId,
    (ct, v): (&[u8], i32),
    credentials_hint: &str,
    now: OffsetDateTime,
) -> Result<Integration, StoreError> {
    let env = tx.environment_id().as_uuid();
    Ok(sqlx::query_as(concat!("UPDATE integrations SET credentials_ciphertext = $3, credentials_key_version = $4, credentials_hint = $5, updated_at = $6
          WHERE environment_id = $1 AND integration_id = $2 RETURNING ", columns!()))
    .bind(env)
    .bind(id.as_uuid())
    .bind(ct)
    .bind(v)
    .bind(credentials_hint)
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

/// The sealed credentials, for the service to open when it calls the integration itself.
pub async fn credentials_ciphertext(
    tx: &mut TenantTx,
    id: IntegrationId,
) -> Result<Vec<u8>, StoreError> {
    let env = tx.environment_id().as_uuid();
    Ok(sqlx::query_scalar("SELECT credentials_ciphertext FROM integrations WHERE environment_id = $1 AND integration_id = $2")
        .bind(env)
        .bind(id.as_uuid())
        .fetch_one(tx.conn())
        .await?)
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
    tx: &mut TenantTx,
    provider: &str,
    (ct, v): (&[u8], i32),
    key_hint: &str,
    by: Uuid,
    now: OffsetDateTime,
) -> Result<ModelKey, StoreError> {
    let env = tx.environment_id().as_uuid();
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
    .bind(key_hint)
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

/// The sealed model key, for the service to open for the LLM gateway.
pub async fn model_key_ciphertext(tx: &mut TenantTx) -> Result<Option<Vec<u8>>, StoreError> {
    let env = tx.environment_id().as_uuid();
    Ok(
        sqlx::query_scalar("SELECT key_ciphertext FROM model_keys WHERE environment_id = $1")
            .bind(env)
            .fetch_optional(tx.conn())
            .await?,
    )
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
