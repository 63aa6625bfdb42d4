//! Projects. Inside a project the caller's effective permissions are the environment role's
//! plus their grant on that project, and the database policies are narrowed to that project
//! (R8).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use portcullis_core::{EnvironmentId, ProjectId};
use portcullis_service::projects;
use serde::Deserialize;

use super::{Page, PageQuery};
use crate::auth::Auth;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{Json, Path, Query};
use crate::state::AppState;
use crate::views::projects::Project;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewProject {
    #[schema(schema_with = super::input::name_200)]
    pub name: String,
}

impl From<NewProject> for projects::NewProject {
    fn from(r: NewProject) -> Self {
        projects::NewProject { name: r.name }
    }
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
    let page = projects::list_projects(&state, &auth, env, q.page()).await?;
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
    let project = projects::create_project(&state, &auth, env, req.into()).await?;
    Ok((StatusCode::CREATED, axum::Json(Project::from(project))))
}

#[utoipa::path(get, path = "/v1/environments/{environment_id}/projects/{project_id}", tag = "projects",
    params(("environment_id" = Uuid, Path), ("project_id" = Uuid, Path)),
    responses((status = 200, body = Project), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_project(
    State(state): State<AppState>,
    auth: Auth,
    Path((env, project)): Path<(EnvironmentId, ProjectId)>,
) -> ApiResult<axum::Json<Project>> {
    let p = projects::get_project(&state, &auth, env, project).await?;
    Ok(axum::Json(p.into()))
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
    projects::delete_project(&state, &auth, env, project).await?;
    Ok(StatusCode::NO_CONTENT)
}
