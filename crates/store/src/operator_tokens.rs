//! Operator tokens (migration 0016): the operator's credential for the platform routes
//! (`GET /v1/platform/audit`). Only the schema owner creates, lists and revokes them, over its
//! own connection, which no serving node holds; each change and its audit entry (platform
//! scope, actor `system`) commit in one owner transaction. Only the token's SHA-256 is stored
//! (E3). A request finds its token through [`crate::Store::platform_as_operator`].

use portcullis_core::OperatorTokenId;
use portcullis_crypto::TokenHash;
use serde::Serialize;
use sqlx::PgPool;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::audit_writer::{self, AuditEvent};
use crate::tx::{Actor, RequestMeta};
use crate::{StoreError, PLATFORM_SCOPE};

/// An operator token as listed: never the token, only a short hint.
///
/// `Serialize` is for the audit entry; the CLI prints its own shape.
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct OperatorToken {
    pub token_id: Uuid,
    pub name: String,
    pub hint: String,
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
        "token_id, name, hint, created_at, expires_at, last_used_at, revoked_at"
    };
}

/// The new token's row.
#[derive(Debug)]
pub struct NewOperatorToken<'a> {
    pub id: OperatorTokenId,
    pub name: &'a str,
    pub hash: &'a TokenHash,
    pub hint: &'a str,
    pub created_at: OffsetDateTime,
    pub expires_at: Option<OffsetDateTime>,
}

/// Stores a new token and submits `event` (as system, platform scope) in the same owner
/// transaction. `owner` is the schema owner's pool.
pub async fn create(
    owner: &PgPool,
    token: NewOperatorToken<'_>,
    meta: &RequestMeta,
    event: AuditEvent,
) -> Result<OperatorToken, StoreError> {
    let mut tx = owner.begin().await?;
    let row: OperatorToken = sqlx::query_as(concat!(
        "INSERT INTO operator_tokens (token_id, name, token_hash, hint, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING ",
        columns!()
    ))
    .bind(token.id.as_uuid())
    .bind(token.name)
    .bind(token.hash.as_bytes().as_slice())
    .bind(token.hint)
    .bind(token.created_at)
    .bind(token.expires_at)
    .fetch_one(&mut *tx)
    .await?;
    audit_writer::insert(&mut tx, None, PLATFORM_SCOPE, Actor::System, meta, event).await?;
    tx.commit().await?;
    Ok(row)
}

/// Every operator token, revoked and expired ones included, oldest first.
pub async fn list(owner: &PgPool) -> Result<Vec<OperatorToken>, StoreError> {
    Ok(sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM operator_tokens ORDER BY created_at, token_id"
    ))
    .fetch_all(owner)
    .await?)
}

/// Revokes a live token and submits `event` in the same owner transaction. A token revoked
/// before is returned as it is, unchanged and not audited again (`false`); an unknown id is
/// `NotFound`.
pub async fn revoke(
    owner: &PgPool,
    id: OperatorTokenId,
    now: OffsetDateTime,
    meta: &RequestMeta,
    event: AuditEvent,
) -> Result<(OperatorToken, bool), StoreError> {
    let mut tx = owner.begin().await?;
    let revoked: Option<OperatorToken> = sqlx::query_as(concat!(
        "UPDATE operator_tokens SET revoked_at = $2 WHERE token_id = $1 AND revoked_at IS NULL
         RETURNING ",
        columns!()
    ))
    .bind(id.as_uuid())
    .bind(now)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(row) = revoked {
        audit_writer::insert(&mut tx, None, PLATFORM_SCOPE, Actor::System, meta, event).await?;
        tx.commit().await?;
        return Ok((row, true));
    }
    let before: Option<OperatorToken> = sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM operator_tokens WHERE token_id = $1"
    ))
    .bind(id.as_uuid())
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    before.map(|row| (row, false)).ok_or(StoreError::NotFound)
}
