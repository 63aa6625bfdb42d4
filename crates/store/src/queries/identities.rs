use portcullis_core::IdentityId;
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{AuthTx, StoreError};

#[derive(Clone, Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Identity {
    pub identity_id: Uuid,
    pub email: String,
    pub display_name: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
}

/// What a login needs; never leaves the server.
#[derive(sqlx::FromRow)]
pub struct LoginRecord {
    pub identity_id: Uuid,
    pub password_hash: String,
    pub failed_logins: i32,
    pub locked_until: Option<OffsetDateTime>,
}

impl std::fmt::Debug for LoginRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginRecord")
            .field("identity_id", &self.identity_id)
            .finish_non_exhaustive()
    }
}

pub async fn create(
    tx: &mut AuthTx,
    id: IdentityId,
    email: &str,
    display_name: &str,
    password_hash: &str,
    now: OffsetDateTime,
) -> Result<Identity, StoreError> {
    tx.act_as(id).await?;
    Ok(sqlx::query_as(
        "INSERT INTO identities (identity_id, email, display_name, password_hash, password_changed_at, created_at)
         VALUES ($1, $2, $3, $4, $5, $5)
         RETURNING identity_id, email, display_name, created_at",
    )
    .bind(id.as_uuid())
    .bind(email)
    .bind(display_name)
    .bind(password_hash)
    .bind(now)
    .fetch_one(tx.conn())
    .await?)
}

/// Looks an account up by email for a login attempt (the policy allows exactly this row).
pub async fn login_record(tx: &mut AuthTx, email: &str) -> Result<Option<LoginRecord>, StoreError> {
    tx.set("portcullis.login_email", email).await?;
    Ok(sqlx::query_as(
        "SELECT identity_id, password_hash, failed_logins, locked_until FROM identities WHERE email = $1",
    )
    .bind(email)
    .fetch_optional(tx.conn())
    .await?)
}

pub async fn record_login_failure(
    tx: &mut AuthTx,
    id: IdentityId,
    failed_logins: i32,
    locked_until: Option<OffsetDateTime>,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE identities SET failed_logins = $2, locked_until = $3 WHERE identity_id = $1",
    )
    .bind(id.as_uuid())
    .bind(failed_logins)
    .bind(locked_until)
    .execute(tx.conn())
    .await?;
    Ok(())
}

pub async fn record_login_success(tx: &mut AuthTx, id: IdentityId) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE identities SET failed_logins = 0, locked_until = NULL WHERE identity_id = $1",
    )
    .bind(id.as_uuid())
    .execute(tx.conn())
    .await?;
    Ok(())
}

/// The acting identity's own record (after `act_as`).
pub async fn get(tx: &mut AuthTx, id: IdentityId) -> Result<Identity, StoreError> {
    Ok(sqlx::query_as("SELECT identity_id, email, display_name, created_at FROM identities WHERE identity_id = $1")
        .bind(id.as_uuid())
        .fetch_one(tx.conn())
        .await?)
}

pub async fn password_hash(tx: &mut AuthTx, id: IdentityId) -> Result<String, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT password_hash FROM identities WHERE identity_id = $1")
            .bind(id.as_uuid())
            .fetch_one(tx.conn())
            .await?,
    )
}

pub async fn set_password(
    tx: &mut AuthTx,
    id: IdentityId,
    password_hash: &str,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE identities SET password_hash = $2, password_changed_at = $3 WHERE identity_id = $1",
    )
    .bind(id.as_uuid())
    .bind(password_hash)
    .bind(now)
    .execute(tx.conn())
    .await?;
    Ok(())
}
