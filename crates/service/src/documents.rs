//! Documents: customer content inside a project. The body is sealed here before the store
//! sees it and opened here after it is read (E2); a row written before encryption still holds
//! its plaintext body until the re-encryption job seals it.

use portcullis_core::{validate, DocumentId, EnvironmentId, Permission, ProjectId};
use portcullis_store::queries::documents::{self, DocumentRow, BODY};
use portcullis_store::queries::{Page, Paged};
use portcullis_store::vault::Keyring;
use portcullis_store::{AuditEvent, TenantTx};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{Principal, ServiceError, ServiceResult, Services};

const MAX_BODY_CHARS: usize = 1_048_576;

/// A document with its body opened.
#[derive(Clone)]
pub struct Document {
    pub document_id: Uuid,
    pub project_id: Uuid,
    pub title: String,
    pub body: String,
    pub version: i32,
    pub created_by: Uuid,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

// Customer content stays out of logs.
impl std::fmt::Debug for Document {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Document")
            .field("document_id", &self.document_id)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Debug)]
pub struct NewDocument {
    pub title: String,
    pub body: String,
}

/// `None` keeps the stored value.
#[derive(Clone, Debug)]
pub struct DocumentUpdate {
    pub title: Option<String>,
    pub body: Option<String>,
}

fn body(value: &str) -> ServiceResult<&str> {
    if value.chars().count() > MAX_BODY_CHARS {
        return Err(ServiceError::bad_request(
            "invalid_input",
            format!("body: must be at most {MAX_BODY_CHARS} characters"),
        ));
    }
    Ok(value)
}

async fn seal(
    services: &Services,
    tx: &mut TenantTx,
    ring: &Keyring,
    id: DocumentId,
    body: &str,
) -> ServiceResult<(Vec<u8>, i32)> {
    let sealed = services
        .vault()
        .seal(tx, ring, BODY, &id.to_string(), body.as_bytes())
        .await;
    services.keyed(tx.environment_id(), sealed).await
}

/// Opens a stored row's body.
async fn open(
    services: &Services,
    tx: &mut TenantTx,
    ring: &Keyring,
    row: DocumentRow,
) -> ServiceResult<Document> {
    let body = match (row.body_ciphertext.as_deref(), row.body) {
        (Some(ct), _) => {
            let opened = services
                .vault()
                .open_text(tx, ring, BODY, &row.document_id.to_string(), ct)
                .await;
            services.keyed(tx.environment_id(), opened).await?
        }
        (None, Some(plain)) => plain,
        (None, None) => return Err(ServiceError::Integrity("a document has no body".into())),
    };
    Ok(Document {
        document_id: row.document_id,
        project_id: row.project_id,
        title: row.title,
        body,
        version: row.version,
        created_by: row.created_by,
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}

async fn ring(services: &Services, tx: &mut TenantTx) -> ServiceResult<Keyring> {
    let ring = services.vault().ring(tx).await;
    services.keyed(tx.environment_id(), ring).await
}

pub async fn list_documents(
    services: &Services,
    caller: &Principal,
    env: EnvironmentId,
    project: ProjectId,
    page: Page,
) -> ServiceResult<Paged<Document>> {
    let mut tx = caller.enter_project(services, env, project).await?;
    tx.require(Permission::DocumentsRead)?;
    let page = documents::list(&mut tx, project, page).await?;
    let ring = ring(services, &mut tx).await?;
    let mut items = Vec::with_capacity(page.items.len());
    for row in page.items {
        items.push(open(services, &mut tx, &ring, row).await?);
    }
    tx.commit().await?;
    Ok(Paged {
        items,
        next: page.next,
    })
}

pub async fn create_document(
    services: &Services,
    caller: &Principal,
    env: EnvironmentId,
    project: ProjectId,
    input: NewDocument,
) -> ServiceResult<Document> {
    let mut tx = caller.enter_project(services, env, project).await?;
    tx.require(Permission::DocumentsWrite)?;
    let title = validate::name("title", &input.title, 500)?;
    let id = DocumentId::new();
    let actor = tx.caller().actor.id().unwrap_or_default();
    let ring = ring(services, &mut tx).await?;
    let (ct, key_version) = seal(services, &mut tx, &ring, id, body(&input.body)?).await?;
    let row = documents::create(
        &mut tx,
        id,
        project,
        &title,
        &ct,
        key_version,
        actor,
        OffsetDateTime::now_utc(),
    )
    .await?;
    let doc = open(services, &mut tx, &ring, row).await?;
    // Content stays out of the audit trail; the entry records what changed, not the text.
    tx.audit(
        AuditEvent::success("document.created", "document", id)
            .after(serde_json::json!({ "project_id": project, "version": doc.version })),
    )
    .await?;
    tx.commit().await?;
    Ok(doc)
}

pub async fn get_document(
    services: &Services,
    caller: &Principal,
    env: EnvironmentId,
    project: ProjectId,
    id: DocumentId,
) -> ServiceResult<Document> {
    let mut tx = caller.enter_project(services, env, project).await?;
    tx.require(Permission::DocumentsRead)?;
    let row = documents::get(&mut tx, project, id).await?;
    let ring = ring(services, &mut tx).await?;
    let doc = open(services, &mut tx, &ring, row).await?;
    tx.commit().await?;
    Ok(doc)
}

pub async fn update_document(
    services: &Services,
    caller: &Principal,
    env: EnvironmentId,
    project: ProjectId,
    id: DocumentId,
    input: DocumentUpdate,
) -> ServiceResult<Document> {
    let mut tx = caller.enter_project(services, env, project).await?;
    tx.require(Permission::DocumentsWrite)?;
    let current = documents::get(&mut tx, project, id).await?;
    if input.title.is_none() && input.body.is_none() {
        // Nothing to change: the document as it is, no new version, nothing to audit.
        let ring = ring(services, &mut tx).await?;
        let doc = open(services, &mut tx, &ring, current).await?;
        tx.commit().await?;
        return Ok(doc);
    }
    let title = match &input.title {
        Some(t) => validate::name("title", t, 500)?,
        None => current.title.clone(),
    };
    let ring = ring(services, &mut tx).await?;
    let sealed = match &input.body {
        Some(b) => Some(seal(services, &mut tx, &ring, id, body(b)?).await?),
        None => None,
    };
    let new_body = sealed.as_ref().map(|(ct, v)| (ct.as_slice(), *v));
    let row = documents::update(
        &mut tx,
        project,
        id,
        &title,
        new_body,
        OffsetDateTime::now_utc(),
    )
    .await?;
    let doc = open(services, &mut tx, &ring, row).await?;
    tx.audit(AuditEvent::success("document.updated", "document", id)
        .before(serde_json::json!({ "version": current.version }))
        .after(serde_json::json!({ "version": doc.version, "title_changed": input.title.is_some(), "body_changed": input.body.is_some() }))).await?;
    tx.commit().await?;
    Ok(doc)
}

pub async fn delete_document(
    services: &Services,
    caller: &Principal,
    env: EnvironmentId,
    project: ProjectId,
    id: DocumentId,
) -> ServiceResult<()> {
    let mut tx = caller.enter_project(services, env, project).await?;
    tx.require(Permission::DocumentsDelete)?;
    documents::delete(&mut tx, project, id).await?;
    tx.audit(
        AuditEvent::success("document.deleted", "document", id)
            .before(serde_json::json!({ "project_id": project })),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}
