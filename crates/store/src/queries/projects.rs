use portcullis_core::{IdentityId, ProjectId, RoleRef};
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Page, Paged};
use crate::tx::encode_role;
use crate::{StoreError, TenantTx};

#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct Project {
    pub project_id: Uuid,
    pub name: String,
    pub created_by: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct Grant {
    pub identity_id: Uuid,
    /// A built-in role name or `custom:<role id>`.
    pub role: String,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

// A macro rather than a const so that `concat!` can splice it into static SQL.
macro_rules! columns {
    () => {
        "project_id, name, created_by, created_at"
    };
}

pub async fn create(
    tx: &mut TenantTx,
    id: ProjectId,
    name: &str,
    created_by: uuid::Uuid,
    now: OffsetDateTime,
) -> Result<Project, StoreError> {
    let env = tx.environment_id().as_uuid();
    Ok(sqlx::query_as(concat!(
        "INSERT INTO projects (environment_id, project_id, name, created_by, created_at)
         VALUES ($1, $2, $3, $4, $5) RETURNING ",
        columns!()
    ))
    .bind(env)
    .bind(id.as_uuid())
    .bind(name)
    .bind(created_by)
    .bind(now)
    .fetch_one(tx.conn())
    .await?)
}

/// All projects, or (when `only_granted_to` is set) only those the identity has a grant on.
pub async fn list(
    tx: &mut TenantTx,
    page: Page,
    only_granted_to: Option<IdentityId>,
) -> Result<Paged<Project>, StoreError> {
    let env = tx.environment_id().as_uuid();
    let rows: Vec<Project> = sqlx::query_as(
        "SELECT p.project_id, p.name, p.created_by, p.created_at FROM projects p
          WHERE p.environment_id = $1 AND ($2::uuid IS NULL OR p.project_id > $2)
            AND ($4::uuid IS NULL OR EXISTS (SELECT 1 FROM project_grants g
                  WHERE g.environment_id = p.environment_id AND g.project_id = p.project_id AND g.identity_id = $4))
          ORDER BY p.project_id LIMIT $3",
    )
    .bind(env)
    .bind(page.after)
    .bind(page.fetch_limit())
    .bind(only_granted_to.map(|i| i.as_uuid()))
    .fetch_all(tx.conn())
    .await?;
    Ok(Paged::from_rows(rows, page, |p| p.project_id))
}

pub async fn get(tx: &mut TenantTx, id: ProjectId) -> Result<Project, StoreError> {
    let env = tx.environment_id().as_uuid();
    Ok(sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM projects WHERE environment_id = $1 AND project_id = $2"
    ))
    .bind(env)
    .bind(id.as_uuid())
    .fetch_one(tx.conn())
    .await?)
}

pub async fn delete(tx: &mut TenantTx, id: ProjectId) -> Result<(), StoreError> {
    tx.invalidate(crate::auth_cache::Scope::Environment(
        tx.environment_id().as_uuid(),
    ));
    let env = tx.environment_id().as_uuid();
    let done = sqlx::query("DELETE FROM projects WHERE environment_id = $1 AND project_id = $2")
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

pub async fn list_grants(tx: &mut TenantTx, project: ProjectId) -> Result<Vec<Grant>, StoreError> {
    let env = tx.environment_id().as_uuid();
    Ok(sqlx::query_as(
        "SELECT identity_id,
                CASE WHEN role = 'custom' THEN 'custom:' || custom_role_id::text ELSE role END AS role,
                updated_at
           FROM project_grants WHERE environment_id = $1 AND project_id = $2 ORDER BY identity_id",
    )
    .bind(env)
    .bind(project.as_uuid())
    .fetch_all(tx.conn())
    .await?)
}

/// The identity's grant on the project, if any.
pub async fn grant_of(
    tx: &mut TenantTx,
    project: ProjectId,
    identity: IdentityId,
) -> Result<Option<Grant>, StoreError> {
    let env = tx.environment_id().as_uuid();
    Ok(sqlx::query_as(
        "SELECT identity_id,
                CASE WHEN role = 'custom' THEN 'custom:' || custom_role_id::text ELSE role END AS role,
                updated_at
           FROM project_grants WHERE environment_id = $1 AND project_id = $2 AND identity_id = $3",
    )
    .bind(env)
    .bind(project.as_uuid())
    .bind(identity.as_uuid())
    .fetch_optional(tx.conn())
    .await?)
}

pub async fn put_grant(
    tx: &mut TenantTx,
    project: ProjectId,
    identity: IdentityId,
    role: RoleRef,
    now: OffsetDateTime,
) -> Result<Grant, StoreError> {
    tx.invalidate(crate::auth_cache::Scope::Environment(
        tx.environment_id().as_uuid(),
    ));
    let env = tx.environment_id().as_uuid();
    let (role, custom) = encode_role(role);
    Ok(sqlx::query_as(
        "INSERT INTO project_grants (environment_id, project_id, identity_id, role, custom_role_id, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $6)
         ON CONFLICT (environment_id, project_id, identity_id)
         DO UPDATE SET role = EXCLUDED.role, custom_role_id = EXCLUDED.custom_role_id, updated_at = EXCLUDED.updated_at
         RETURNING identity_id,
                   CASE WHEN role = 'custom' THEN 'custom:' || custom_role_id::text ELSE role END AS role,
                   updated_at",
    )
    .bind(env)
    .bind(project.as_uuid())
    .bind(identity.as_uuid())
    .bind(role)
    .bind(custom)
    .bind(now)
    .fetch_one(tx.conn())
    .await?)
}

pub async fn remove_grant(
    tx: &mut TenantTx,
    project: ProjectId,
    identity: IdentityId,
) -> Result<(), StoreError> {
    tx.invalidate(crate::auth_cache::Scope::Environment(
        tx.environment_id().as_uuid(),
    ));
    let env = tx.environment_id().as_uuid();
    let done = sqlx::query("DELETE FROM project_grants WHERE environment_id = $1 AND project_id = $2 AND identity_id = $3")
        .bind(env)
        .bind(project.as_uuid())
        .bind(identity.as_uuid())
        .execute(tx.conn())
        .await?;
    if done.rows_affected() == 1 {
        Ok(())
    } else {
        Err(StoreError::NotFound)
    }
}
