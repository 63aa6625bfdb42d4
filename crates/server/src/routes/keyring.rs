//! An environment's keyring (E4, E5): status, rotation, retiring old versions and switching
//! the key-encryption key. Responses describe keys; they never carry key material.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use portcullis_core::EnvironmentId;
use portcullis_keys::KekRef;
use portcullis_service::keyring;

use crate::auth::Auth;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{Json, Path};
use crate::state::AppState;
use crate::views::keyring::{KeyStatus, Rotation};

/// Key status: KEK, data-key versions with row counts, re-encryption jobs.
#[utoipa::path(get, path = "/v1/environments/{environment_id}/keys", tag = "keys", params(("environment_id" = Uuid, Path)),
    responses((status = 200, body = KeyStatus), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn key_status(
    State(state): State<AppState>,
    auth: Auth,
    Path(env): Path<EnvironmentId>,
) -> ApiResult<axum::Json<KeyStatus>> {
    let status = keyring::key_status(&state, &auth, env).await?;
    Ok(axum::Json(status.into()))
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
    let rotation = keyring::rotate_key(&state, &auth, env).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(Rotation::from(rotation))))
}

/// Retire every key version below the active one, once nothing uses them. Irreversible.
#[utoipa::path(post, path = "/v1/environments/{environment_id}/keys/retire", tag = "keys", params(("environment_id" = Uuid, Path)),
    responses((status = 200, body = KeyStatus), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn retire_keys(
    State(state): State<AppState>,
    auth: Auth,
    Path(env): Path<EnvironmentId>,
) -> ApiResult<axum::Json<KeyStatus>> {
    let status = keyring::retire_keys(&state, &auth, env).await?;
    Ok(axum::Json(status.into()))
}

/// A key-encryption key, as `PUT .../keys/kek` reads it (`portcullis_keys::KekRef`; this type
/// only documents it).
#[derive(Debug, utoipa::ToSchema)]
#[serde(tag = "provider", rename_all = "snake_case")]
#[allow(dead_code)]
pub enum KekChoice {
    /// A master key file of this installation, by name (`master-1`, `master-2`, ...).
    Local {
        #[schema(schema_with = super::input::key_reference)]
        name: String,
    },
    /// An AES-256 secret-key object in the configured PKCS#11 token, by `CKA_LABEL`.
    Pkcs11 {
        #[schema(schema_with = super::input::key_reference)]
        label: String,
    },
    /// An AWS KMS symmetric key: key id, key ARN or alias ARN.
    AwsKms {
        #[schema(schema_with = super::input::key_reference)]
        key_id: String,
    },
}

/// Switch the key-encryption key, e.g. to the customer's own KMS key or HSM key
/// (`{"provider":"aws_kms","key_id":"arn:..."}`, `{"provider":"pkcs11","label":"..."}`). Data
/// keys are rewrapped; ciphertexts are unchanged.
#[utoipa::path(put, path = "/v1/environments/{environment_id}/keys/kek", tag = "keys", params(("environment_id" = Uuid, Path)),
    request_body = KekChoice,
    responses((status = 200, body = KeyStatus), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn set_kek(
    State(state): State<AppState>,
    auth: Auth,
    Path(env): Path<EnvironmentId>,
    Json(kek): Json<KekRef>,
) -> ApiResult<axum::Json<KeyStatus>> {
    let status = keyring::set_kek(&state, &auth, env, kek).await?;
    Ok(axum::Json(status.into()))
}
