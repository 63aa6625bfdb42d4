//! Documents: customer content. The body is stored sealed (E2) as the caller sealed it; rows
//! written before encryption may still hold a plaintext body until the re-encryption job seals
//! it.

use portcullis_core::{DocumentId, ProjectId};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Page, Paged};
use crate::vault::ENCRYPTED_COLUMNS;
use crate::{StoreError, TenantTx};

/// A document as stored.
#[derive(Clone, sqlx::FromRow)]
pub struct DocumentRow {
    pub document_id: Uuid,
    pub project_id: Uuid,
    pub title: String,
    /// A body written before encryption, until the re-encryption job seals it.
    pub body: Option<String>,
    pub body_ciphertext: Option<Vec<u8>>,
    pub version: i32,
    pub created_by: Uuid,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

impl std::fmt::Debug for DocumentRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DocumentRow")
            .field("document_id", &self.document_id)
            .finish_non_exhaustive()
    }
}

pub const BODY: &crate::vault::EncryptedColumn = &ENCRYPTED_COLUMNS[0];

// A macro rather than a const so that `concat!` can splice it into static SQL.
macro_rules! columns {
    () => {
        "document_id, project_id, title, body, body_ciphertext, version, created_by, created_at, updated_at"
    };
}

#[allow(clippy::too_many_arguments)]
pub async fn create(
    tx: &mut TenantTx,
    id: DocumentId,
    project: ProjectId,
    title: &str,
    body_ciphertext: &[u8],
    key_version: i32,
    created_by: Uuid,
    now: OffsetDateTime,
) -> Result<DocumentRow, StoreError> {
    let env = tx.environment_id().as_uuid();
    Ok(sqlx::query_as(concat!("INSERT INTO documents (environment_id, document_id, project_id, title, body_ciphertext, body_key_version, created_by, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) RETURNING ", columns!()))
    .bind(env)
    .bind(id.as_uuid())
    .bind(project.as_uuid())
    .bind(title)
    .bind(body_ciphertext)
    .bind(key_version)
    .bind(created_by)
    .bind(now)
    .fetch_one(tx.conn())
    .await?)
}

pub async fn list(
    tx: &mut TenantTx,
    project: ProjectId,
    page: Page,
) -> Result<Paged<DocumentRow>, StoreError> {
    let env = tx.environment_id().as_uuid();
    let rows: Vec<DocumentRow> = sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM documents
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
) -> Result<DocumentRow, StoreError> {
    let env = tx.environment_id().as_uuid();
    Ok(sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM documents WHERE environment_id = $1 AND project_id = $2 AND document_id = $3"
    ))
    .bind(env)
    .bind(project.as_uuid())
    .bind(id.as_uuid())
    .fetch_one(tx.conn())
    .await?)
}

/// Replaces title and body. `body` is `None` to keep the stored body as it is.
pub async fn update(
    tx: &mut TenantTx,
    project: ProjectId,
    id: DocumentId,
    title: &str,
    body: Option<(&[u8], i32)>,
    now: OffsetDateTime,
) -> Result<DocumentRow, StoreError> {
    let env = tx.environment_id().as_uuid();
    let (ct, ver) = match body {
        Some((ct, v)) => (Some(ct), Some(v)),
        None => (None, None),
    };
    Ok(sqlx::query_as(concat!(
        "UPDATE documents SET title = $4,
                body_ciphertext = COALESCE($5, body_ciphertext),
                body_key_version = COALESCE($6, body_key_version),
                body = CASE WHEN $5::bytea IS NULL THEN body ELSE NULL END,
                version = version + 1, updated_at = $7
          WHERE environment_id = $1 AND project_id = $2 AND document_id = $3 RETURNING ",
        columns!()
    ))
    .bind(env)
    .bind(project.as_uuid())
    .bind(id.as_uuid())
    .bind(title)
    .bind(ct)
    .bind(ver)
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
