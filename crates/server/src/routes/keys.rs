//! Key management (E4, E5), integrations and the model-provider key (E2). Secrets are
//! write-only: responses carry hints, never credentials.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use portcullis_core::{validate, EnvironmentId, IntegrationId, Permission, PermissionSet};
use portcullis_keys::KekRef;
use portcullis_store::queries::integrations::{self, Integration, ModelKey};
use portcullis_store::vault::{KeyStatus, Rotation};
use portcullis_store::{AuditEvent, Outcome, StoreError};
use serde::Deserialize;
use time::OffsetDateTime;

use super::{Page, PageQuery};
use crate::auth::Auth;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{Json, Path, Query};
use crate::state::AppState;

/// Maps a store result, and records a key access failure (L7) in its own transaction, since
/// the request's transaction is about to roll back.
pub(crate) async fn keyed<T>(
    state: &AppState,
    env: EnvironmentId,
    r: Result<T, StoreError>,
) -> ApiResult<T> {
    match r {
        Err(StoreError::KeyUnavailable(reason)) => {
            match state
                .store()
                .tenant_as_system(env, PermissionSet::EMPTY, Default::default())
                .await
            {
                Ok(mut tx) => {
                    let event = AuditEvent::success("keys.access_failed", "keyring", env)
                        .outcome(Outcome::Failure)
                        .after(serde_json::json!({ "reason": reason }));
                    if let Err(e) = async {
                        tx.audit(event).await?;
                        tx.commit().await
                    }
                    .await
                    {
                        tracing::error!(error = %e, environment = %env, "could not audit a key access failure");
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, environment = %env, "could not audit a key access failure")
                }
            }
            Err(ApiError::KeyUnavailable(reason))
        }
        other => other.map_err(Into::into),
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewIntegration {
    /// e.g. `slack`, `github`.
    pub kind: String,
    pub name: String,
    /// Stored envelope-encrypted; never returned.
    pub credentials: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCredentials {
    pub credentials: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelKeyInput {
    /// e.g. `anthropic`.
    pub provider: String,
    /// Stored envelope-encrypted; never returned.
    pub api_key: String,
}

fn kind(value: &str, field: &'static str) -> ApiResult<String> {
    let ok = (2..=40).contains(&value.len())
        && value.starts_with(|c: char| c.is_ascii_lowercase())
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(value.to_owned())
    } else {
        Err(ApiError::bad_request(
            "invalid_input",
            format!("{field}: must be 2-40 characters of a-z, 0-9 and _"),
        ))
    }
}

fn secret_input(value: &str, field: &'static str) -> ApiResult<()> {
    if value.is_empty() || value.len() > 16 * 1024 {
        return Err(ApiError::bad_request(
            "invalid_input",
            format!("{field}: must be 1 to 16384 bytes"),
        ));
    }
    Ok(())
}

/// Key status: KEK, data-key versions with row counts, re-encryption jobs.
#[utoipa::path(get, path = "/v1/environments/{environment_id}/keys", tag = "keys", params(("environment_id" = Uuid, Path)),
    responses((status = 200, body = KeyStatus), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn key_status(
    State(state): State<AppState>,
    auth: Auth,
    Path(env): Path<EnvironmentId>,
) -> ApiResult<axum::Json<KeyStatus>> {
    let mut tx = auth.enter(&state, env).await?;
    tx.require(Permission::KeysManage)?;
    let status = keyed(&state, env, state.vault().status(&mut tx).await).await?;
    tx.commit().await?;
    Ok(axum::Json(status))
}

/// Rotate the data key: new writes use the new version at once; existing values are
/// re-encrypted by a background job (see `jobs` in the key status).
#[utoipa::path(post, path = "/v1/environments/{environment_id}/keys/rotate", tag = "keys", params(("environment_id" = Uuid, Path)),
    responses((status = 202, body = Rotation), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn rotate_key(
    State(state): State<AppState>,
    auth: Auth,
    Path(env): Path<EnvironmentId>,
) -> ApiResult<impl IntoResponse> {
    let mut tx = auth.enter(&state, env).await?;
    tx.require(Permission::KeysManage)?;
    let rotation = keyed(
        &state,
        env,
        state
            .vault()
            .rotate(&mut tx, OffsetDateTime::now_utc())
            .await,
    )
    .await?;
    tx.audit(AuditEvent::success("keys.rotated", "keyring", env).after(serde_json::json!({ "version": rotation.version, "job_id": rotation.job_id, "reason": "requested" }))).await?;
    tx.commit().await?;
    let bg = state.clone();
    tokio::spawn(async move {
        if let Err(e) = portcullis_service::jobs::run_job(
            bg.store(),
            bg.vault(),
            env,
            rotation.job_id,
            bg.reencrypt_batch(),
            |_| {},
        )
        .await
        {
            tracing::error!(error = %e, environment = %env, "re-encryption job stopped; the scheduler resumes it");
        }
    });
    Ok((StatusCode::ACCEPTED, axum::Json(rotation)))
}

/// Retire every key version below the active one, once nothing uses them. Irreversible.
#[utoipa::path(post, path = "/v1/environments/{environment_id}/keys/retire", tag = "keys", params(("environment_id" = Uuid, Path)),
    responses((status = 200, body = KeyStatus), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn retire_keys(
    State(state): State<AppState>,
    auth: Auth,
    Path(env): Path<EnvironmentId>,
) -> ApiResult<axum::Json<KeyStatus>> {
    let mut tx = auth.enter(&state, env).await?;
    tx.require(Permission::KeysManage)?;
    let min = keyed(
        &state,
        env,
        state
            .vault()
            .retire_old_versions(&mut tx, OffsetDateTime::now_utc())
            .await,
    )
    .await?;
    tx.audit(
        AuditEvent::success("keys.retired", "keyring", env)
            .after(serde_json::json!({ "min_decrypt_version": min })),
    )
    .await?;
    let status = state.vault().status(&mut tx).await?;
    tx.commit().await?;
    Ok(axum::Json(status))
}

/// Switch the key-encryption key, e.g. to the customer's own KMS key or HSM key
/// (`{"provider":"aws_kms","key_id":"arn:..."}`, `{"provider":"pkcs11","label":"..."}`). Data
/// keys are rewrapped; ciphertexts are unchanged.
#[utoipa::path(put, path = "/v1/environments/{environment_id}/keys/kek", tag = "keys", params(("environment_id" = Uuid, Path)),
    request_body(content = Object, description = "A KEK reference: provider plus key_id, label or name"),
    responses((status = 200, body = KeyStatus), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn set_kek(
    State(state): State<AppState>,
    auth: Auth,
    Path(env): Path<EnvironmentId>,
    Json(kek): Json<KekRef>,
) -> ApiResult<axum::Json<KeyStatus>> {
    let mut tx = auth.enter(&state, env).await?;
    tx.require(Permission::KeysManage)?;
    let p = state.vault().providers();
    let configured = match &kek {
        KekRef::Local { .. } => p.local.is_some(),
        KekRef::Pkcs11 { .. } => p.pkcs11.is_some(),
        KekRef::AwsKms { .. } => p.kms.is_some(),
    };
    if !configured {
        return Err(ApiError::bad_request(
            "provider_not_configured",
            format!(
                "the {} key provider is not configured on this server",
                kek.provider()
            ),
        ));
    }
    let previous = keyed(
        &state,
        env,
        state
            .vault()
            .set_kek(&mut tx, &kek, OffsetDateTime::now_utc())
            .await,
    )
    .await?;
    tx.audit(
        AuditEvent::success("keys.kek_changed", "keyring", env)
            .before(&previous)
            .after(&kek),
    )
    .await?;
    let status = state.vault().status(&mut tx).await?;
    tx.commit().await?;
    Ok(axum::Json(status))
}

#[utoipa::path(get, path = "/v1/environments/{environment_id}/integrations", tag = "integrations", params(("environment_id" = Uuid, Path), PageQuery),
    responses((status = 200, body = Page<Integration>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_integrations(
    State(state): State<AppState>,
    auth: Auth,
    Path(env): Path<EnvironmentId>,
    Query(q): Query<PageQuery>,
) -> ApiResult<axum::Json<Page<Integration>>> {
    let mut tx = auth.enter(&state, env).await?;
    tx.require(Permission::IntegrationsRead)?;
    let list = integrations::list(&mut tx, q.page()).await?;
    tx.commit().await?;
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
    let mut tx = auth.enter(&state, env).await?;
    tx.require(Permission::IntegrationsManage)?;
    let kind = kind(&req.kind, "kind")?;
    let name = validate::name("name", &req.name, 200)?;
    secret_input(&req.credentials, "credentials")?;
    let vault = state.vault();
    let ring = keyed(&state, env, vault.ring(&mut tx).await).await?;
    let id = IntegrationId::new();
    let actor = tx.caller().actor.id().unwrap_or_default();
    let created = integrations::create(
        vault,
        &mut tx,
        &ring,
        id,
        &kind,
        &name,
        &req.credentials,
        actor,
        OffsetDateTime::now_utc(),
    )
    .await;
    let integration = keyed(&state, env, created).await?;
    tx.audit(AuditEvent::success("integration.created", "integration", id).after(&integration))
        .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, axum::Json(integration)))
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
    let mut tx = auth.enter(&state, env).await?;
    tx.require(Permission::IntegrationsManage)?;
    secret_input(&req.credentials, "credentials")?;
    let before = integrations::get(&mut tx, id).await?;
    let vault = state.vault();
    let ring = keyed(&state, env, vault.ring(&mut tx).await).await?;
    let replaced = integrations::replace_credentials(
        vault,
        &mut tx,
        &ring,
        id,
        &req.credentials,
        OffsetDateTime::now_utc(),
    )
    .await;
    let after = keyed(&state, env, replaced).await?;
    tx.audit(
        AuditEvent::success("integration.credentials_replaced", "integration", id)
            .before(serde_json::json!({ "credentials_hint": before.credentials_hint }))
            .after(serde_json::json!({ "credentials_hint": after.credentials_hint })),
    )
    .await?;
    tx.commit().await?;
    Ok(axum::Json(after))
}

#[utoipa::path(delete, path = "/v1/environments/{environment_id}/integrations/{integration_id}", tag = "integrations",
    params(("environment_id" = Uuid, Path), ("integration_id" = Uuid, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_integration(
    State(state): State<AppState>,
    auth: Auth,
    Path((env, id)): Path<(EnvironmentId, IntegrationId)>,
) -> ApiResult<StatusCode> {
    let mut tx = auth.enter(&state, env).await?;
    tx.require(Permission::IntegrationsManage)?;
    let before = integrations::get(&mut tx, id).await?;
    integrations::delete(&mut tx, id).await?;
    tx.audit(AuditEvent::success("integration.deleted", "integration", id).before(&before))
        .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The environment's model-provider key (hint only).
#[utoipa::path(get, path = "/v1/environments/{environment_id}/model-key", tag = "integrations", params(("environment_id" = Uuid, Path)),
    responses((status = 200, body = ModelKey), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_model_key(
    State(state): State<AppState>,
    auth: Auth,
    Path(env): Path<EnvironmentId>,
) -> ApiResult<axum::Json<ModelKey>> {
    let mut tx = auth.enter(&state, env).await?;
    tx.require(Permission::KeysManage)?;
    let key = integrations::model_key(&mut tx)
        .await?
        .ok_or(ApiError::NotFound)?;
    tx.commit().await?;
    Ok(axum::Json(key))
}

/// Set the environment's own model-provider key (bring your own key). Write-only.
#[utoipa::path(put, path = "/v1/environments/{environment_id}/model-key", tag = "integrations", params(("environment_id" = Uuid, Path)), request_body = ModelKeyInput,
    responses((status = 200, body = ModelKey), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn put_model_key(
    State(state): State<AppState>,
    auth: Auth,
    Path(env): Path<EnvironmentId>,
    Json(req): Json<ModelKeyInput>,
) -> ApiResult<axum::Json<ModelKey>> {
    let mut tx = auth.enter(&state, env).await?;
    tx.require(Permission::KeysManage)?;
    let provider = kind(&req.provider, "provider")?;
    secret_input(&req.api_key, "api_key")?;
    let vault = state.vault();
    let ring = keyed(&state, env, vault.ring(&mut tx).await).await?;
    let actor = tx.caller().actor.id().unwrap_or_default();
    let set = integrations::set_model_key(
        vault,
        &mut tx,
        &ring,
        &provider,
        &req.api_key,
        actor,
        OffsetDateTime::now_utc(),
    )
    .await;
    let key = keyed(&state, env, set).await?;
    tx.audit(AuditEvent::success("model_key.set", "model_key", env).after(&key))
        .await?;
    tx.commit().await?;
    Ok(axum::Json(key))
}

#[utoipa::path(delete, path = "/v1/environments/{environment_id}/model-key", tag = "integrations", params(("environment_id" = Uuid, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_model_key(
    State(state): State<AppState>,
    auth: Auth,
    Path(env): Path<EnvironmentId>,
) -> ApiResult<StatusCode> {
    let mut tx = auth.enter(&state, env).await?;
    tx.require(Permission::KeysManage)?;
    integrations::delete_model_key(&mut tx).await?;
    tx.audit(AuditEvent::success("model_key.deleted", "model_key", env))
        .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
