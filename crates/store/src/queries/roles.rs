use portcullis_core::{PermissionSet, RoleId, RoleRef};
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{StoreError, TenantTx};

/// `Serialize` is for the audit entry's before/after; the API's shape is in the server's views.
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct CustomRole {
    pub role_id: Uuid,
    pub name: String,
    pub description: String,
    pub permissions: Vec<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

// A macro rather than a const so that `concat!` can splice it into static SQL.
macro_rules! columns {
    () => {
        "role_id, name, description, permissions, created_at, updated_at"
    };
}

pub async fn list(tx: &mut TenantTx) -> Result<Vec<CustomRole>, StoreError> {
    let env = tx.environment_id().as_uuid();
    Ok(sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM custom_roles WHERE environment_id = $1 ORDER BY role_id"
    ))
    .bind(env)
    .fetch_all(tx.conn())
    .await?)
}

pub async fn get(tx: &mut TenantTx, id: RoleId) -> Result<CustomRole, StoreError> {
    let env = tx.environment_id().as_uuid();
    Ok(sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM custom_roles WHERE environment_id = $1 AND role_id = $2"
    ))
    .bind(env)
    .bind(id.as_uuid())
    .fetch_one(tx.conn())
    .await?)
}

/// The permissions a role confers in this environment. `NotFound` for a custom role that
/// does not exist here (including one from another environment).
pub async fn permissions_of(tx: &mut TenantTx, role: RoleRef) -> Result<PermissionSet, StoreError> {
    match role {
        RoleRef::Builtin(b) => Ok(b.permissions()),
        RoleRef::Custom(id) => {
            let role = get(tx, id).await?;
            PermissionSet::parse_names(&role.permissions)
                .map_err(|p| StoreError::Bootstrap(format!("unknown stored permission {p}")))
        }
    }
}

pub async fn create(
    tx: &mut TenantTx,
    id: RoleId,
    name: &str,
    description: &str,
    permissions: PermissionSet,
    now: OffsetDateTime,
) -> Result<CustomRole, StoreError> {
    let env = tx.environment_id().as_uuid();
    Ok(sqlx::query_as(concat!("INSERT INTO custom_roles (environment_id, role_id, name, description, permissions, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING ", columns!()))
    .bind(env)
    .bind(id.as_uuid())
    .bind(name)
    .bind(description)
    .bind(permissions.names())
    .bind(now)
    .fetch_one(tx.conn())
    .await?)
}

pub async fn update(
    tx: &mut TenantTx,
    id: RoleId,
    name: &str,
    description: &str,
    permissions: PermissionSet,
    now: OffsetDateTime,
) -> Result<CustomRole, StoreError> {
    tx.invalidate(crate::auth_cache::Scope::Environment(
        tx.environment_id().as_uuid(),
    ));
    let env = tx.environment_id().as_uuid();
    Ok(sqlx::query_as(concat!(
        "UPDATE custom_roles SET name = $3, description = $4, permissions = $5, updated_at = $6
          WHERE environment_id = $1 AND role_id = $2 RETURNING ",
        columns!()
    ))
    .bind(env)
    .bind(id.as_uuid())
    .bind(name)
    .bind(description)
    .bind(permissions.names())
    .bind(now)
    .fetch_one(tx.conn())
    .await?)
}

/// Deletes a role no one holds; a role in use is a conflict (foreign keys refuse).
pub async fn delete(tx: &mut TenantTx, id: RoleId) -> Result<(), StoreError> {
    tx.invalidate(crate::auth_cache::Scope::Environment(
        tx.environment_id().as_uuid(),
    ));
    let env = tx.environment_id().as_uuid();
    let done = sqlx::query("DELETE FROM custom_roles WHERE environment_id = $1 AND role_id = $2")
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
