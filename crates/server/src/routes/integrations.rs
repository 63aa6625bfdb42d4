//! Integrations: third-party credentials, write-only. Responses carry a hint, never the
//! credentials.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use portcullis_core::{EnvironmentId, IntegrationId};
use portcullis_service::integrations;
use serde::Deserialize;

use super::{Page, PageQuery};
use crate::auth::Auth;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{Json, Path, Query};
use crate::state::AppState;
use crate::views::integrations::Integration;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewIntegration {
    /// e.g. `slack`, `github`.
    #[schema(schema_with = super::input::integration_kind)]
    pub kind: String,
    #[schema(schema_with = super::input::name_200)]
    pub name: String,
    /// Stored envelope-encrypted; never returned.
    #[schema(schema_with = super::input::stored_secret)]
    pub credentials: String,
}

impl From<NewIntegration> for integrations::NewIntegration {
    fn from(r: NewIntegration) -> Self {
        integrations::NewIntegration {
            kind: r.kind,
            name: r.name,
            credentials: r.credentials,
        }
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCredentials {
    #[schema(schema_with = super::input::stored_secret)]
    pub credentials: String,
}

#[utoipa::path(get, path = "/v1/environments/{environment_id}/integrations", tag = "integrations", params(("environment_id" = Uuid, Path), PageQuery),
    responses((status = 200, body = Page<Integration>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_integrations(
    State(state): State<AppState>,
    auth: Auth,
    Path(env): Path<EnvironmentId>,
    Query(q): Query<PageQuery>,
) -> ApiResult<axum::Json<Page<Integration>>> {
    let list = integrations::list_integrations(&state, &auth, env, q.page()).await?;
    Ok(axum::Json(list.into()))
}

/// Store an integration's credentials (write-only).
#[utoipa::path(post, path = "/v1/environments/{environment_id}/integrations", tag = "integrations", params(("environment_id" = Uuid, Path)), request_body = NewIntegration,
    responses((status = 201, body = Integration), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create_integration(
    State(state): State<AppState>,
    auth: Auth,
    Path(env): Path<EnvironmentId>,
    Json(req): Json<NewIntegration>,
) -> ApiResult<impl IntoResponse> {
    let integration = integrations::create_integration(&state, &auth, env, req.into()).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(Integration::from(integration)),
    ))
}

/// Replace an integration's credentials.
#[utoipa::path(put, path = "/v1/environments/{environment_id}/integrations/{integration_id}/credentials", tag = "integrations",
    params(("environment_id" = Uuid, Path), ("integration_id" = Uuid, Path)), request_body = NewCredentials,
    responses((status = 200, body = Integration), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn replace_credentials(
    State(state): State<AppState>,
    auth: Auth,
    Path((env, id)): Path<(EnvironmentId, IntegrationId)>,
    Json(req): Json<NewCredentials>,
) -> ApiResult<axum::Json<Integration>> {
    let after = integrations::replace_credentials(&state, &auth, env, id, &req.credentials).await?;
    Ok(axum::Json(after.into()))
}

#[utoipa::path(delete, path = "/v1/environments/{environment_id}/integrations/{integration_id}", tag = "integrations",
    params(("environment_id" = Uuid, Path), ("integration_id" = Uuid, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_integration(
    State(state): State<AppState>,
    auth: Auth,
    Path((env, id)): Path<(EnvironmentId, IntegrationId)>,
) -> ApiResult<StatusCode> {
    integrations::delete_integration(&state, &auth, env, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
