//! Project grants (R3): a member's role on one project.

use axum::extract::State;
use axum::http::StatusCode;
use portcullis_core::{EnvironmentId, IdentityId, ProjectId};
use portcullis_service::grants;

use serde::Deserialize;

use crate::auth::Auth;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{Json, Path};
use crate::state::AppState;
use crate::views::projects::Grant;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectRole {
    #[schema(schema_with = super::input::project_role)]
    pub role: String,
}

#[utoipa::path(get, path = "/v1/environments/{environment_id}/projects/{project_id}/grants", tag = "projects",
    params(("environment_id" = Uuid, Path), ("project_id" = Uuid, Path)),
    responses((status = 200, body = Vec<Grant>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_grants(
    State(state): State<AppState>,
    auth: Auth,
    Path((env, project)): Path<(EnvironmentId, ProjectId)>,
) -> ApiResult<axum::Json<Vec<Grant>>> {
    let list = grants::list_grants(&state, &auth, env, project).await?;
    Ok(axum::Json(list.into_iter().map(Into::into).collect()))
}

/// Give a member a role on one project (R3), e.g. contributor here while viewer elsewhere.
#[utoipa::path(put, path = "/v1/environments/{environment_id}/projects/{project_id}/grants/{identity_id}", tag = "projects",
    params(("environment_id" = Uuid, Path), ("project_id" = Uuid, Path), ("identity_id" = Uuid, Path)), request_body = ProjectRole,
    responses((status = 200, body = Grant), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn put_grant(
    State(state): State<AppState>,
    auth: Auth,
    Path((env, project, identity)): Path<(EnvironmentId, ProjectId, IdentityId)>,
    Json(req): Json<ProjectRole>,
) -> ApiResult<axum::Json<Grant>> {
    let grant = grants::put_grant(&state, &auth, env, project, identity, &req.role).await?;
    Ok(axum::Json(grant.into()))
}

#[utoipa::path(delete, path = "/v1/environments/{environment_id}/projects/{project_id}/grants/{identity_id}", tag = "projects",
    params(("environment_id" = Uuid, Path), ("project_id" = Uuid, Path), ("identity_id" = Uuid, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn remove_grant(
    State(state): State<AppState>,
    auth: Auth,
    Path((env, project, identity)): Path<(EnvironmentId, ProjectId, IdentityId)>,
) -> ApiResult<StatusCode> {
    grants::remove_grant(&state, &auth, env, project, identity).await?;
    Ok(StatusCode::NO_CONTENT)
}
