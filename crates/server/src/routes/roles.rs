//! Roles of an environment: the catalogue and custom roles (R4).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use portcullis_core::{EnvironmentId, RoleId};
use portcullis_service::roles;
use serde::Deserialize;

use crate::auth::Auth;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{Json, Path};
use crate::state::AppState;
use crate::views::roles::{CustomRole, RoleCatalog};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleDefinition {
    #[schema(schema_with = super::input::role_name)]
    pub name: String,
    #[serde(default)]
    #[schema(schema_with = super::input::description)]
    pub description: String,
    /// Permission names, e.g. `documents.read`.
    #[schema(schema_with = super::input::role_permissions)]
    pub permissions: Vec<String>,
}

impl From<RoleDefinition> for roles::RoleDefinition {
    fn from(r: RoleDefinition) -> Self {
        roles::RoleDefinition {
            name: r.name,
            description: r.description,
            permissions: r.permissions,
        }
    }
}

/// Built-in roles and this environment's custom roles.
#[utoipa::path(get, path = "/v1/environments/{environment_id}/roles", tag = "roles", params(("environment_id" = Uuid, Path)),
    responses((status = 200, body = RoleCatalog), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_roles(
    State(state): State<AppState>,
    auth: Auth,
    Path(env): Path<EnvironmentId>,
) -> ApiResult<axum::Json<RoleCatalog>> {
    let catalog = roles::list_roles(&state, &auth, env).await?;
    Ok(axum::Json(catalog.into()))
}

/// Define a custom role (R4). It cannot carry a permission the caller does not hold.
#[utoipa::path(post, path = "/v1/environments/{environment_id}/roles", tag = "roles", params(("environment_id" = Uuid, Path)), request_body = RoleDefinition,
    responses((status = 201, body = CustomRole), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create_role(
    State(state): State<AppState>,
    auth: Auth,
    Path(env): Path<EnvironmentId>,
    Json(req): Json<RoleDefinition>,
) -> ApiResult<impl IntoResponse> {
    let role = roles::create_role(&state, &auth, env, req.into()).await?;
    Ok((StatusCode::CREATED, axum::Json(CustomRole::from(role))))
}

/// Redefine a custom role; members holding it get the new permissions at once (R5: audited).
#[utoipa::path(patch, path = "/v1/environments/{environment_id}/roles/{role_id}", tag = "roles",
    params(("environment_id" = Uuid, Path), ("role_id" = Uuid, Path)), request_body = RoleDefinition,
    responses((status = 200, body = CustomRole), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "another custom role has this name")))]
pub async fn update_role(
    State(state): State<AppState>,
    auth: Auth,
    Path((env, id)): Path<(EnvironmentId, RoleId)>,
    Json(req): Json<RoleDefinition>,
) -> ApiResult<axum::Json<CustomRole>> {
    let role = roles::update_role(&state, &auth, env, id, req.into()).await?;
    Ok(axum::Json(role.into()))
}

#[utoipa::path(delete, path = "/v1/environments/{environment_id}/roles/{role_id}", tag = "roles",
    params(("environment_id" = Uuid, Path), ("role_id" = Uuid, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "the role is still held")))]
pub async fn delete_role(
    State(state): State<AppState>,
    auth: Auth,
    Path((env, id)): Path<(EnvironmentId, RoleId)>,
) -> ApiResult<StatusCode> {
    roles::delete_role(&state, &auth, env, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
