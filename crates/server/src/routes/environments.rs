//! The environment itself: create, list, read, rename, delete. Members, invitations, roles,
//! tokens and the audit log have their own modules. Every handler checks a permission (R2),
//! in the service function it calls.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use portcullis_core::EnvironmentId;
use portcullis_service::environments;
use serde::Deserialize;

use crate::auth::Auth;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{Json, Path};
use crate::state::AppState;
use crate::views::environments::{Environment, MyEnvironment};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEnvironment {
    #[schema(schema_with = super::input::name_200)]
    pub name: String,
    /// Data-residency region, e.g. `eu-central` (D1).
    #[schema(schema_with = super::input::region)]
    pub region: String,
}

impl From<NewEnvironment> for environments::NewEnvironment {
    fn from(r: NewEnvironment) -> Self {
        environments::NewEnvironment {
            name: r.name,
            region: r.region,
        }
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentUpdate {
    #[schema(schema_with = super::input::name_200)]
    pub name: String,
}

/// Environments the caller belongs to.
#[utoipa::path(get, path = "/v1/environments", tag = "environments", responses((status = 200, body = Vec<MyEnvironment>), (status = 401, body = ErrorBody)))]
pub async fn list_environments(
    State(state): State<AppState>,
    auth: Auth,
) -> ApiResult<axum::Json<Vec<MyEnvironment>>> {
    let list = environments::list_environments(&state, &auth).await?;
    Ok(axum::Json(list.into_iter().map(Into::into).collect()))
}

/// Create an environment; the caller becomes its owner.
#[utoipa::path(post, path = "/v1/environments", tag = "environments", request_body = NewEnvironment,
    responses((status = 201, body = Environment), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn create_environment(
    State(state): State<AppState>,
    auth: Auth,
    Json(req): Json<NewEnvironment>,
) -> ApiResult<impl IntoResponse> {
    let env = environments::create_environment(&state, &auth, req.into()).await?;
    Ok((StatusCode::CREATED, axum::Json(Environment::from(env))))
}

#[utoipa::path(get, path = "/v1/environments/{environment_id}", tag = "environments", params(("environment_id" = Uuid, Path)),
    responses((status = 200, body = Environment), (status = 404, body = ErrorBody)))]
pub async fn get_environment(
    State(state): State<AppState>,
    auth: Auth,
    Path(env): Path<EnvironmentId>,
) -> ApiResult<axum::Json<Environment>> {
    let e = environments::get_environment(&state, &auth, env).await?;
    Ok(axum::Json(e.into()))
}

#[utoipa::path(patch, path = "/v1/environments/{environment_id}", tag = "environments", params(("environment_id" = Uuid, Path)), request_body = EnvironmentUpdate,
    responses((status = 200, body = Environment), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update_environment(
    State(state): State<AppState>,
    auth: Auth,
    Path(env): Path<EnvironmentId>,
    Json(req): Json<EnvironmentUpdate>,
) -> ApiResult<axum::Json<Environment>> {
    let update = environments::EnvironmentUpdate { name: req.name };
    let e = environments::update_environment(&state, &auth, env, update).await?;
    Ok(axum::Json(e.into()))
}

/// Delete the environment and everything in it (owner only). Its audit entries are kept.
#[utoipa::path(delete, path = "/v1/environments/{environment_id}", tag = "environments", params(("environment_id" = Uuid, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_environment(
    State(state): State<AppState>,
    auth: Auth,
    Path(env): Path<EnvironmentId>,
) -> ApiResult<StatusCode> {
    environments::delete_environment(&state, &auth, env).await?;
    Ok(StatusCode::NO_CONTENT)
}
