//! Documents inside a project. Bodies are sealed and opened by the service; this edge sees
//! only plaintext requests and responses.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use portcullis_core::{DocumentId, EnvironmentId, ProjectId};
use portcullis_service::documents;
use serde::Deserialize;

use super::{Page, PageQuery};
use crate::auth::Auth;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{Json, Path, Query};
use crate::state::AppState;
use crate::views::documents::Document;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDocument {
    #[schema(schema_with = super::input::title)]
    pub title: String,
    #[serde(default)]
    #[schema(schema_with = super::input::document_body)]
    pub body: String,
}

impl From<NewDocument> for documents::NewDocument {
    fn from(r: NewDocument) -> Self {
        documents::NewDocument {
            title: r.title,
            body: r.body,
        }
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DocumentUpdate {
    #[schema(schema_with = super::input::optional_title)]
    pub title: Option<String>,
    #[schema(schema_with = super::input::optional_document_body)]
    pub body: Option<String>,
}

impl From<DocumentUpdate> for documents::DocumentUpdate {
    fn from(r: DocumentUpdate) -> Self {
        documents::DocumentUpdate {
            title: r.title,
            body: r.body,
        }
    }
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
    let page = documents::list_documents(&state, &auth, env, project, q.page()).await?;
    Ok(axum::Json(page.into()))
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
    let doc = documents::create_document(&state, &auth, env, project, req.into()).await?;
    Ok((StatusCode::CREATED, axum::Json(Document::from(doc))))
}

#[utoipa::path(get, path = "/v1/environments/{environment_id}/projects/{project_id}/documents/{document_id}", tag = "documents",
    params(("environment_id" = Uuid, Path), ("project_id" = Uuid, Path), ("document_id" = Uuid, Path)),
    responses((status = 200, body = Document), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_document(
    State(state): State<AppState>,
    auth: Auth,
    Path((env, project, id)): Path<(EnvironmentId, ProjectId, DocumentId)>,
) -> ApiResult<axum::Json<Document>> {
    let doc = documents::get_document(&state, &auth, env, project, id).await?;
    Ok(axum::Json(doc.into()))
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
    let doc = documents::update_document(&state, &auth, env, project, id, req.into()).await?;
    Ok(axum::Json(doc.into()))
}

#[utoipa::path(delete, path = "/v1/environments/{environment_id}/projects/{project_id}/documents/{document_id}", tag = "documents",
    params(("environment_id" = Uuid, Path), ("project_id" = Uuid, Path), ("document_id" = Uuid, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_document(
    State(state): State<AppState>,
    auth: Auth,
    Path((env, project, id)): Path<(EnvironmentId, ProjectId, DocumentId)>,
) -> ApiResult<StatusCode> {
    documents::delete_document(&state, &auth, env, project, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
