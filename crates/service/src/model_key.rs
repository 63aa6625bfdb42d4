//! The environment's own model-provider key (E2, bring your own key): sealed here, write-only
//! to callers (a hint is shown), opened only by [`model_key_secret`] for the LLM gateway.

use portcullis_core::{EnvironmentId, Permission};
use portcullis_crypto::Secret;
use portcullis_store::queries::integrations::{self, ModelKey, MODEL_KEY};
use portcullis_store::{AuditEvent, TenantTx};
use time::OffsetDateTime;

use crate::integrations::{hint, kind, ring, seal, secret_input};
use crate::{Principal, ServiceError, ServiceResult, Services};

#[derive(Clone)]
pub struct ModelKeyInput {
    /// e.g. `anthropic`.
    pub provider: String,
    pub api_key: String,
}

impl std::fmt::Debug for ModelKeyInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelKeyInput")
            .field("provider", &self.provider)
            .finish_non_exhaustive()
    }
}

/// The model key's hint; `NotFound` if none is set.
pub async fn get_model_key(
    services: &Services,
    caller: &Principal,
    env: EnvironmentId,
) -> ServiceResult<ModelKey> {
    let mut tx = caller.enter(services, env).await?;
    tx.require(Permission::KeysManage)?;
    let key = integrations::model_key(&mut tx)
        .await?
        .ok_or(ServiceError::NotFound)?;
    tx.commit().await?;
    Ok(key)
}

pub async fn put_model_key(
    services: &Services,
    caller: &Principal,
    env: EnvironmentId,
    input: ModelKeyInput,
) -> ServiceResult<ModelKey> {
    let mut tx = caller.enter(services, env).await?;
    tx.require(Permission::KeysManage)?;
    let provider = kind(&input.provider, "provider")?;
    secret_input(&input.api_key, "api_key")?;
    let ring = ring(services, &mut tx).await?;
    let actor = tx.caller().actor.id().unwrap_or_default();
    let (ct, v) = seal(
        services,
        &mut tx,
        &ring,
        MODEL_KEY,
        &env.to_string(),
        &input.api_key,
    )
    .await?;
    let key = integrations::set_model_key(
        &mut tx,
        &provider,
        (&ct, v),
        &hint(&input.api_key),
        actor,
        OffsetDateTime::now_utc(),
    )
    .await?;
    tx.audit(AuditEvent::success("model_key.set", "model_key", env).after(&key))
        .await?;
    tx.commit().await?;
    Ok(key)
}

pub async fn delete_model_key(
    services: &Services,
    caller: &Principal,
    env: EnvironmentId,
) -> ServiceResult<()> {
    let mut tx = caller.enter(services, env).await?;
    tx.require(Permission::KeysManage)?;
    integrations::delete_model_key(&mut tx).await?;
    tx.audit(AuditEvent::success("model_key.deleted", "model_key", env))
        .await?;
    tx.commit().await?;
    Ok(())
}

/// The plaintext model key inside `tx`, for the LLM gateway's own use. Never for a response.
pub async fn model_key_secret(
    services: &Services,
    tx: &mut TenantTx,
) -> ServiceResult<Option<Secret>> {
    let Some(ct) = integrations::model_key_ciphertext(tx).await? else {
        return Ok(None);
    };
    let env = tx.environment_id();
    let ring = ring(services, tx).await?;
    let opened = services
        .vault()
        .open_text(tx, &ring, MODEL_KEY, &env.to_string(), &ct)
        .await;
    Ok(Some(Secret::new(services.keyed(env, opened).await?)))
}
