use portcullis_core::{DocumentId, ProjectId};
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Page, Paged};
use crate::{StoreError, TenantTx};

#[derive(Clone, Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Document {
    pub document_id: Uuid,
    pub project_id: Uuid,
    pub title: String,
    pub body: String,
    pub version: i32,
    pub created_by: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
}

const COLUMNS: &str =
    "document_id, project_id, title, body, version, created_by, created_at, updated_at";

pub async fn create(
    tx: &mut TenantTx,
    id: DocumentId,
    project: ProjectId,
    title: &str,
    body: &str,
    created_by: Uuid,
    now: OffsetDateTime,
) -> Result<Document, StoreError> {
    let env = tx.environment_id().as_uuid();
    Ok(sqlx::query_as(&format!(
        "INSERT INTO documents (environment_id, document_id, project_id, title, body, created_by, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING {COLUMNS}"
    ))
    .bind(env)
    .bind(id.as_uuid())
    .bind(project.as_uuid())
    .bind(title)
    .bind(body)
    .bind(created_by)
    .bind(now)
    .fetch_one(tx.conn())
    .await?)
}

pub async fn list(
    tx: &mut TenantTx,
    project: ProjectId,
    page: Page,
) -> Result<Paged<Document>, StoreError> {
    let env = tx.environment_id().as_uuid();
    let rows: Vec<Document> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM documents
          WHERE environment_id = $1 AND project_id = $2 AND ($3::uuid IS NULL OR document_id > $3)
          ORDER BY document_id LIMIT $4"
    ))
    .bind(env)
    .bind(project.as_uuid())
    .bind(page.after)
    .bind(page.fetch_limit())
    .fetch_all(tx.conn())
    .await?;
    Ok(Paged::from_rows(rows, page, |d| d.document_id))
}

pub async fn get(
    tx: &mut TenantTx,
    project: ProjectId,
    id: DocumentId,
) -> Result<Document, StoreError> {
    let env = tx.environment_id().as_uuid();
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM documents WHERE environment_id = $1 AND project_id = $2 AND document_id = $3"
    ))
    .bind(env)
    .bind(project.as_uuid())
    .bind(id.as_uuid())
    .fetch_one(tx.conn())
    .await?)
}

pub async fn update(
    tx: &mut TenantTx,
    project: ProjectId,
    id: DocumentId,
    title: &str,
    body: &str,
    now: OffsetDateTime,
) -> Result<Document, StoreError> {
    let env = tx.environment_id().as_uuid();
    Ok(sqlx::query_as(&format!(
        "UPDATE documents SET title = $4, body = $5, version = version + 1, updated_at = $6
          WHERE environment_id = $1 AND project_id = $2 AND document_id = $3 RETURNING {COLUMNS}"
    ))
    .bind(env)
    .bind(project.as_uuid())
    .bind(id.as_uuid())
    .bind(title)
    .bind(body)
    .bind(now)
    .fetch_one(tx.conn())
    .await?)
}

pub async fn delete(
    tx: &mut TenantTx,
    project: ProjectId,
    id: DocumentId,
) -> Result<(), StoreError> {
    let env = tx.environment_id().as_uuid();
    let done = sqlx::query(
        "DELETE FROM documents WHERE environment_id = $1 AND project_id = $2 AND document_id = $3",
    )
    .bind(env)
    .bind(project.as_uuid())
    .bind(id.as_uuid())
    .execute(tx.conn())
    .await?;
    if done.rows_affected() == 1 {
        Ok(())
    } else {
        Err(StoreError::NotFound)
    }
}
