//! The environment's own model-provider key (E2, bring your own key). Write-only: responses
//! carry a hint, never the key.

use axum::extract::State;
use axum::http::StatusCode;
use portcullis_core::EnvironmentId;
use portcullis_service::model_key;
use serde::Deserialize;

use crate::auth::Auth;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{Json, Path};
use crate::state::AppState;
use crate::views::integrations::ModelKey;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelKeyInput {
    /// e.g. `anthropic`.
    #[schema(schema_with = super::input::model_provider)]
    pub provider: String,
    /// Stored envelope-encrypted; never returned.
    #[schema(schema_with = super::input::stored_secret)]
    pub api_key: String,
}

impl From<ModelKeyInput> for model_key::ModelKeyInput {
    fn from(r: ModelKeyInput) -> Self {
        model_key::ModelKeyInput {
            provider: r.provider,
            api_key: r.api_key,
        }
    }
}

/// The environment's model-provider key (hint only).
#[utoipa::path(get, path = "/v1/environments/{environment_id}/model-key", tag = "integrations", params(("environment_id" = Uuid, Path)),
    responses((status = 200, body = ModelKey), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_model_key(
    State(state): State<AppState>,
    auth: Auth,
    Path(env): Path<EnvironmentId>,
) -> ApiResult<axum::Json<ModelKey>> {
    let key = model_key::get_model_key(&state, &auth, env).await?;
    Ok(axum::Json(key.into()))
}

/// Set the environment's own model-provider key (bring your own key). Write-only.
///
/// The key is checked with the provider first (its models list, then a 1-token request); a key the
/// provider refuses is 400 `model_key_invalid` with the provider's reason, and is not stored.
#[utoipa::path(put, path = "/v1/environments/{environment_id}/model-key", tag = "integrations", params(("environment_id" = Uuid, Path)), request_body = ModelKeyInput,
    responses((status = 200, body = ModelKey), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn put_model_key(
    State(state): State<AppState>,
    auth: Auth,
    Path(env): Path<EnvironmentId>,
    Json(req): Json<ModelKeyInput>,
) -> ApiResult<axum::Json<ModelKey>> {
    let gateway = state.gateway().ok_or_else(|| {
        ApiError::Unavailable("the model gateway is not configured on this node".into())
    })?;
    let key =
        portcullis_gateway::connect_model_key(gateway, &state, &auth, env, req.into()).await?;
    Ok(axum::Json(key.into()))
}

#[utoipa::path(delete, path = "/v1/environments/{environment_id}/model-key", tag = "integrations", params(("environment_id" = Uuid, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_model_key(
    State(state): State<AppState>,
    auth: Auth,
    Path(env): Path<EnvironmentId>,
) -> ApiResult<StatusCode> {
    model_key::delete_model_key(&state, &auth, env).await?;
    Ok(StatusCode::NO_CONTENT)
}
