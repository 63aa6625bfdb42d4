//! Projects, project grants (R3) and documents. Inside a project the caller's effective
//! permissions are the environment role's plus their grant on that project, and the database
//! policies are narrowed to that project (R8).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use portcullis_core::{
    validate, BuiltinRole, DocumentId, EnvironmentId, IdentityId, Permission, ProjectId, RoleRef,
};
use portcullis_store::queries::documents::{self, Document};
use portcullis_store::queries::projects::{self, Grant, Project};
use portcullis_store::{AuditEvent, StoreError};
use serde::Deserialize;
use time::OffsetDateTime;

use super::environments::{parse_role, role_permissions, RoleChange};
use super::keys::keyed;
use super::{Page, PageQuery};
use crate::auth::Auth;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{Json, Path, Query};
use crate::state::AppState;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewProject {
    pub name: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDocument {
    pub title: String,
    #[serde(default)]
    pub body: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DocumentUpdate {
    pub title: Option<String>,
    pub body: Option<String>,
}

const MAX_BODY_CHARS: usize = 1_048_576;

fn body(value: &str) -> ApiResult<&str> {
    if value.chars().count() > MAX_BODY_CHARS {
        return Err(ApiError::bad_request(
            "invalid_input",
            format!("body: must be at most {MAX_BODY_CHARS} characters"),
        ));
    }
    Ok(value)
}

/// Projects the caller can see: all of them with `projects.read`, otherwise those granted.
#[utoipa::path(get, path = "/v1/environments/{environment_id}/projects", tag = "projects", params(("environment_id" = Uuid, Path), PageQuery),
    responses((status = 200, body = Page<Project>), (status = 404, body = ErrorBody)))]
pub async fn list_projects(
    State(state): State<AppState>,
    auth: Auth,
    Path(env): Path<EnvironmentId>,
    Query(q): Query<PageQuery>,
) -> ApiResult<axum::Json<Page<Project>>> {
    let mut tx = auth.enter(&state, env).await?;
    tx.require(Permission::EnvironmentRead)?;
    let only = if tx.permissions().contains(Permission::ProjectsRead) {
        None
    } else {
        Some(
            tx.caller()
                .actor
                .identity()
                .ok_or(ApiError::Forbidden(Permission::ProjectsRead))?,
        )
    };
    let page = projects::list(&mut tx, q.page(), only).await?;
    tx.commit().await?;
    Ok(axum::Json(page.into()))
}

#[utoipa::path(post, path = "/v1/environments/{environment_id}/projects", tag = "projects", params(("environment_id" = Uuid, Path)), request_body = NewProject,
    responses((status = 201, body = Project), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create_project(
    State(state): State<AppState>,
    auth: Auth,
    Path(env): Path<EnvironmentId>,
    Json(req): Json<NewProject>,
) -> ApiResult<impl IntoResponse> {
    let mut tx = auth.enter(&state, env).await?;
    tx.require(Permission::ProjectsManage)?;
    let name = validate::name("name", &req.name, 200)?;
    let id = ProjectId::new();
    let actor = tx.caller().actor.id().unwrap_or_default();
    let project = projects::create(&mut tx, id, &name, actor, OffsetDateTime::now_utc()).await?;
    tx.audit(AuditEvent::success("project.created", "project", id).after(&project))
        .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, axum::Json(project)))
}

#[utoipa::path(get, path = "/v1/environments/{environment_id}/projects/{project_id}", tag = "projects",
    params(("environment_id" = Uuid, Path), ("project_id" = Uuid, Path)),
    responses((status = 200, body = Project), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_project(
    State(state): State<AppState>,
    auth: Auth,
    Path((env, project)): Path<(EnvironmentId, ProjectId)>,
) -> ApiResult<axum::Json<Project>> {
    let mut tx = auth.enter(&state, env).await?;
    tx.enter_project(project).await?;
    tx.require(Permission::ProjectsRead)?;
    let p = projects::get(&mut tx, project).await?;
    tx.commit().await?;
    Ok(axum::Json(p))
}

/// Delete a project with its documents and grants.
#[utoipa::path(delete, path = "/v1/environments/{environment_id}/projects/{project_id}", tag = "projects",
    params(("environment_id" = Uuid, Path), ("project_id" = Uuid, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_project(
    State(state): State<AppState>,
    auth: Auth,
    Path((env, project)): Path<(EnvironmentId, ProjectId)>,
) -> ApiResult<StatusCode> {
    let mut tx = auth.enter(&state, env).await?;
    let before = projects::get(&mut tx, project).await?;
    tx.require(Permission::ProjectsManage)?;
    projects::delete(&mut tx, project).await?;
    tx.audit(AuditEvent::success("project.deleted", "project", project).before(&before))
        .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/v1/environments/{environment_id}/projects/{project_id}/grants", tag = "projects",
    params(("environment_id" = Uuid, Path), ("project_id" = Uuid, Path)),
    responses((status = 200, body = Vec<Grant>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_grants(
    State(state): State<AppState>,
    auth: Auth,
    Path((env, project)): Path<(EnvironmentId, ProjectId)>,
) -> ApiResult<axum::Json<Vec<Grant>>> {
    let mut tx = auth.enter(&state, env).await?;
    tx.enter_project(project).await?;
    tx.require(Permission::ProjectsRead)?;
    let list = projects::list_grants(&mut tx, project).await?;
    tx.commit().await?;
    Ok(axum::Json(list))
}

/// Give a member a role on one project (R3), e.g. contributor here while viewer elsewhere.
#[utoipa::path(put, path = "/v1/environments/{environment_id}/projects/{project_id}/grants/{identity_id}", tag = "projects",
    params(("environment_id" = Uuid, Path), ("project_id" = Uuid, Path), ("identity_id" = Uuid, Path)), request_body = RoleChange,
    responses((status = 200, body = Grant), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn put_grant(
    State(state): State<AppState>,
    auth: Auth,
    Path((env, project, identity)): Path<(EnvironmentId, ProjectId, IdentityId)>,
    Json(req): Json<RoleChange>,
) -> ApiResult<axum::Json<Grant>> {
    let mut tx = auth.enter(&state, env).await?;
    projects::get(&mut tx, project).await?;
    tx.require(Permission::ProjectsManage)?;
    let role = parse_role(&req.role)?;
    if let RoleRef::Builtin(b) = role {
        if !BuiltinRole::GRANTABLE_ON_PROJECTS.contains(&b) {
            return Err(ApiError::bad_request("invalid_role", format!("`{b}` cannot be granted on a project; use contributor, reviewer, viewer or a custom role")));
        }
    }
    let granted = role_permissions(&mut tx, role).await?.project_scoped();
    portcullis_core::roles::check_assignable(tx.permissions(), role, granted)
        .map_err(|e| ApiError::ForbiddenReason(e.to_string()))?;
    let before = projects::grant_of(&mut tx, project, identity).await?;
    let grant = match projects::put_grant(
        &mut tx,
        project,
        identity,
        role,
        OffsetDateTime::now_utc(),
    )
    .await
    {
        Err(StoreError::Conflict(_)) => {
            return Err(ApiError::bad_request(
                "invalid_input",
                "the identity is not a member of this environment",
            ))
        }
        other => other?,
    };
    tx.audit(
        AuditEvent::success("project.grant_set", "project", project)
            .before(serde_json::json!({ "identity_id": identity, "role": before.map(|g| g.role) }))
            .after(serde_json::json!({ "identity_id": identity, "role": grant.role })),
    )
    .await?;
    tx.commit().await?;
    Ok(axum::Json(grant))
}

#[utoipa::path(delete, path = "/v1/environments/{environment_id}/projects/{project_id}/grants/{identity_id}", tag = "projects",
    params(("environment_id" = Uuid, Path), ("project_id" = Uuid, Path), ("identity_id" = Uuid, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn remove_grant(
    State(state): State<AppState>,
    auth: Auth,
    Path((env, project, identity)): Path<(EnvironmentId, ProjectId, IdentityId)>,
) -> ApiResult<StatusCode> {
    let mut tx = auth.enter(&state, env).await?;
    projects::get(&mut tx, project).await?;
    tx.require(Permission::ProjectsManage)?;
    let before = projects::grant_of(&mut tx, project, identity)
        .await?
        .ok_or(ApiError::NotFound)?;
    projects::remove_grant(&mut tx, project, identity).await?;
    tx.audit(
        AuditEvent::success("project.grant_removed", "project", project)
            .before(serde_json::json!({ "identity_id": identity, "role": before.role })),
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/v1/environments/{environment_id}/projects/{project_id}/documents", tag = "documents",
    params(("environment_id" = Uuid, Path), ("project_id" = Uuid, Path), PageQuery),
    responses((status = 200, body = Page<Document>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_documents(
    State(state): State<AppState>,
    auth: Auth,
    Path((env, project)): Path<(EnvironmentId, ProjectId)>,
    Query(q): Query<PageQuery>,
) -> ApiResult<axum::Json<Page<Document>>> {
    let mut tx = auth.enter(&state, env).await?;
    tx.enter_project(project).await?;
    tx.require(Permission::DocumentsRead)?;
    let page = documents::list(&mut tx, project, q.page()).await?;
    let vault = state.vault();
    let ring = keyed(&state, env, vault.ring(&mut tx).await).await?;
    let mut items = Vec::with_capacity(page.items.len());
    for row in page.items {
        items.push(
            keyed(
                &state,
                env,
                documents::reveal(vault, &mut tx, &ring, row).await,
            )
            .await?,
        );
    }
    tx.commit().await?;
    Ok(axum::Json(Page {
        items,
        next_cursor: page.next,
    }))
}

#[utoipa::path(post, path = "/v1/environments/{environment_id}/projects/{project_id}/documents", tag = "documents",
    params(("environment_id" = Uuid, Path), ("project_id" = Uuid, Path)), request_body = NewDocument,
    responses((status = 201, body = Document), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn create_document(
    State(state): State<AppState>,
    auth: Auth,
    Path((env, project)): Path<(EnvironmentId, ProjectId)>,
    Json(req): Json<NewDocument>,
) -> ApiResult<impl IntoResponse> {
    let mut tx = auth.enter(&state, env).await?;
    tx.enter_project(project).await?;
    tx.require(Permission::DocumentsWrite)?;
    let title = validate::name("title", &req.title, 500)?;
    let id = DocumentId::new();
    let actor = tx.caller().actor.id().unwrap_or_default();
    let vault = state.vault();
    let ring = keyed(&state, env, vault.ring(&mut tx).await).await?;
    let sealed = vault
        .seal(
            &mut tx,
            &ring,
            documents::BODY,
            &id.to_string(),
            body(&req.body)?.as_bytes(),
        )
        .await;
    let (ct, key_version) = keyed(&state, env, sealed).await?;
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
    let doc = documents::reveal(vault, &mut tx, &ring, row).await?;
    // Content stays out of the audit trail; the entry records what changed, not the text.
    tx.audit(
        AuditEvent::success("document.created", "document", id)
            .after(serde_json::json!({ "project_id": project, "version": doc.version })),
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, axum::Json(doc)))
}

#[utoipa::path(get, path = "/v1/environments/{environment_id}/projects/{project_id}/documents/{document_id}", tag = "documents",
    params(("environment_id" = Uuid, Path), ("project_id" = Uuid, Path), ("document_id" = Uuid, Path)),
    responses((status = 200, body = Document), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_document(
    State(state): State<AppState>,
    auth: Auth,
    Path((env, project, id)): Path<(EnvironmentId, ProjectId, DocumentId)>,
) -> ApiResult<axum::Json<Document>> {
    let mut tx = auth.enter(&state, env).await?;
    tx.enter_project(project).await?;
    tx.require(Permission::DocumentsRead)?;
    let row = documents::get(&mut tx, project, id).await?;
    let vault = state.vault();
    let ring = keyed(&state, env, vault.ring(&mut tx).await).await?;
    let doc = keyed(
        &state,
        env,
        documents::reveal(vault, &mut tx, &ring, row).await,
    )
    .await?;
    tx.commit().await?;
    Ok(axum::Json(doc))
}

#[utoipa::path(patch, path = "/v1/environments/{environment_id}/projects/{project_id}/documents/{document_id}", tag = "documents",
    params(("environment_id" = Uuid, Path), ("project_id" = Uuid, Path), ("document_id" = Uuid, Path)), request_body = DocumentUpdate,
    responses((status = 200, body = Document), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update_document(
    State(state): State<AppState>,
    auth: Auth,
    Path((env, project, id)): Path<(EnvironmentId, ProjectId, DocumentId)>,
    Json(req): Json<DocumentUpdate>,
) -> ApiResult<axum::Json<Document>> {
    let mut tx = auth.enter(&state, env).await?;
    tx.enter_project(project).await?;
    tx.require(Permission::DocumentsWrite)?;
    let current = documents::get(&mut tx, project, id).await?;
    let title = match &req.title {
        Some(t) => validate::name("title", t, 500)?,
        None => current.title.clone(),
    };
    let vault = state.vault();
    let ring = keyed(&state, env, vault.ring(&mut tx).await).await?;
    let sealed = match &req.body {
        Some(b) => {
            let r = vault
                .seal(
                    &mut tx,
                    &ring,
                    documents::BODY,
                    &id.to_string(),
                    body(b)?.as_bytes(),
                )
                .await;
            Some(keyed(&state, env, r).await?)
        }
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
    let doc = keyed(
        &state,
        env,
        documents::reveal(vault, &mut tx, &ring, row).await,
    )
    .await?;
    tx.audit(AuditEvent::success("document.updated", "document", id)
        .before(serde_json::json!({ "version": current.version }))
        .after(serde_json::json!({ "version": doc.version, "title_changed": req.title.is_some(), "body_changed": req.body.is_some() }))).await?;
    tx.commit().await?;
    Ok(axum::Json(doc))
}

#[utoipa::path(delete, path = "/v1/environments/{environment_id}/projects/{project_id}/documents/{document_id}", tag = "documents",
    params(("environment_id" = Uuid, Path), ("project_id" = Uuid, Path), ("document_id" = Uuid, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_document(
    State(state): State<AppState>,
    auth: Auth,
    Path((env, project, id)): Path<(EnvironmentId, ProjectId, DocumentId)>,
) -> ApiResult<StatusCode> {
    let mut tx = auth.enter(&state, env).await?;
    tx.enter_project(project).await?;
    tx.require(Permission::DocumentsDelete)?;
    documents::delete(&mut tx, project, id).await?;
    tx.audit(
        AuditEvent::success("document.deleted", "document", id)
            .before(serde_json::json!({ "project_id": project })),
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
