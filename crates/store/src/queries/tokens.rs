use portcullis_core::{ApiTokenId, RoleRef};
use portcullis_crypto::TokenHash;
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::tx::encode_role;
use crate::{StoreError, TenantTx};

/// An API token as listed: never the token itself, only a short hint.
///
/// `Serialize` is for the audit entry's before/after; the API's shape is in the server's views.
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct ApiToken {
    pub token_id: Uuid,
    pub name: String,
    pub hint: String,
    pub role: String,
    pub created_by: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_used_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
}

// A macro rather than a const so that `concat!` can splice it into static SQL.
macro_rules! columns {
    () => {
        "token_id, name, hint,
    CASE WHEN role = 'custom' THEN 'custom:' || custom_role_id::text ELSE role END AS role,
    created_by, created_at, expires_at, last_used_at, revoked_at"
    };
}

#[allow(clippy::too_many_arguments)]
pub async fn create(
    tx: &mut TenantTx,
    id: ApiTokenId,
    name: &str,
    hash: &TokenHash,
    hint: &str,
    role: RoleRef,
    created_by: Uuid,
    now: OffsetDateTime,
    expires_at: Option<OffsetDateTime>,
) -> Result<ApiToken, StoreError> {
    let env = tx.environment_id().as_uuid();
    let (role, custom) = encode_role(role);
    Ok(sqlx::query_as(concat!("INSERT INTO api_tokens (environment_id, token_id, name, token_hash, hint, role, custom_role_id, created_by, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING ", columns!()))
    .bind(env)
    .bind(id.as_uuid())
    .bind(name)
    .bind(hash.as_bytes().as_slice())
    .bind(hint)
    .bind(role)
    .bind(custom)
    .bind(created_by)
    .bind(now)
    .bind(expires_at)
    .fetch_one(tx.conn())
    .await?)
}

pub async fn list(
    tx: &mut TenantTx,
    page: super::Page,
) -> Result<super::Paged<ApiToken>, StoreError> {
    let env = tx.environment_id().as_uuid();
    let rows: Vec<ApiToken> = sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM api_tokens WHERE environment_id = $1 AND ($2::uuid IS NULL OR token_id > $2)
          ORDER BY token_id LIMIT $3"
    ))
    .bind(env)
    .bind(page.after)
    .bind(page.fetch_limit())
    .fetch_all(tx.conn())
    .await?;
    Ok(super::Paged::from_rows(rows, page, |r| r.token_id))
}

pub async fn revoke(
    tx: &mut TenantTx,
    id: ApiTokenId,
    now: OffsetDateTime,
) -> Result<ApiToken, StoreError> {
    tx.invalidate(crate::auth_cache::Scope::Environment(
        tx.environment_id().as_uuid(),
    ));
    let env = tx.environment_id().as_uuid();
    Ok(sqlx::query_as(concat!(
        "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, $3)
          WHERE environment_id = $1 AND token_id = $2 RETURNING ",
        columns!()
    ))
    .bind(env)
    .bind(id.as_uuid())
    .bind(now)
    .fetch_one(tx.conn())
    .await?)
}
