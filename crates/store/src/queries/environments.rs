use portcullis_core::{EnvironmentId, IdentityId};
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{AuthTx, StoreError, TenantTx};

/// `Serialize` is for the audit entry's before/after; the API's shape is in the server's views.
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct Environment {
    pub environment_id: Uuid,
    pub name: String,
    pub region: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// An environment as seen from one of its members' list.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct MyEnvironment {
    pub environment_id: Uuid,
    pub name: String,
    pub region: String,
    /// The caller's role: a built-in role name or `custom:<role id>`.
    pub role: String,
}

/// Inserts the environment and its owner membership (the transaction must come from
/// `Store::new_environment`).
pub async fn create(
    tx: &mut TenantTx,
    name: &str,
    region: &str,
    owner: IdentityId,
    now: OffsetDateTime,
) -> Result<Environment, StoreError> {
    let id = tx.environment_id().as_uuid();
    let env = sqlx::query_as(
        "INSERT INTO environments (environment_id, name, region, created_by, created_at)
         VALUES ($1, $2, $3, $4, $5) RETURNING environment_id, name, region, created_at",
    )
    .bind(id)
    .bind(name)
    .bind(region)
    .bind(owner.as_uuid())
    .bind(now)
    .fetch_one(tx.conn())
    .await?;
    sqlx::query(
        "INSERT INTO memberships (environment_id, identity_id, role, created_at, updated_at)
         VALUES ($1, $2, 'owner', $3, $3)",
    )
    .bind(id)
    .bind(owner.as_uuid())
    .bind(now)
    .execute(tx.conn())
    .await?;
    Ok(env)
}

pub async fn get(tx: &mut TenantTx) -> Result<Environment, StoreError> {
    let id = tx.environment_id().as_uuid();
    Ok(sqlx::query_as("SELECT environment_id, name, region, created_at FROM environments WHERE environment_id = $1")
        .bind(id)
        .fetch_one(tx.conn())
        .await?)
}

pub async fn rename(tx: &mut TenantTx, name: &str) -> Result<Environment, StoreError> {
    let id = tx.environment_id().as_uuid();
    sqlx::query_as(
        "UPDATE environments SET name = $2 WHERE environment_id = $1
         RETURNING environment_id, name, region, created_at",
    )
    .bind(id)
    .bind(name)
    .fetch_optional(tx.conn())
    .await?
    .ok_or(StoreError::PolicyViolation)
}

/// Deletes the environment and, by cascade, everything it owns (audit entries survive).
pub async fn delete(tx: &mut TenantTx) -> Result<(), StoreError> {
    tx.invalidate(crate::auth_cache::Scope::Environment(
        tx.environment_id().as_uuid(),
    ));
    let id = tx.environment_id().as_uuid();
    // Project grants reach the environment two cascades deep (through projects and
    // memberships) but reference its custom roles directly; PostgreSQL may check that
    // reference before the deeper cascade has removed them, and refuse. Removing them first
    // leaves every other row to the one cascading statement.
    sqlx::query("DELETE FROM project_grants WHERE environment_id = $1")
        .bind(id)
        .execute(tx.conn())
        .await?;
    let done = sqlx::query("DELETE FROM environments WHERE environment_id = $1")
        .bind(id)
        .execute(tx.conn())
        .await?;
    if done.rows_affected() == 1 {
        Ok(())
    } else {
        Err(StoreError::PolicyViolation)
    }
}

/// Environments the acting identity belongs to (outside any tenant context).
pub async fn list_for_identity(
    tx: &mut AuthTx,
    identity: IdentityId,
) -> Result<Vec<MyEnvironment>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT e.environment_id, e.name, e.region,
                CASE WHEN m.role = 'custom' THEN 'custom:' || m.custom_role_id::text ELSE m.role END AS role
           FROM memberships m JOIN environments e ON e.environment_id = m.environment_id
          WHERE m.identity_id = $1
          ORDER BY e.environment_id",
    )
    .bind(identity.as_uuid())
    .fetch_all(tx.conn())
    .await?)
}

/// Used by tests and the CLI to refer to an environment by id only.
pub fn id_of(env: &Environment) -> EnvironmentId {
    EnvironmentId::from_uuid(env.environment_id)
}
