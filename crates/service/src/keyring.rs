//! An environment's keyring (E4, E5): its status, on-demand rotation with the re-encryption it
//! starts, retiring old data-key versions, and switching the key-encryption key (KEK).

use portcullis_core::{EnvironmentId, Permission};
use portcullis_keys::KekRef;
use portcullis_store::vault::{KeyStatus, Rotation};
use portcullis_store::AuditEvent;
use time::OffsetDateTime;

use crate::{jobs, Principal, ServiceError, ServiceResult, Services};

/// KEK, data-key versions with row counts, re-encryption jobs.
pub async fn key_status(
    services: &Services,
    caller: &Principal,
    env: EnvironmentId,
) -> ServiceResult<KeyStatus> {
    let mut tx = caller.enter(services, env).await?;
    tx.require(Permission::KeysManage)?;
    let status = services.vault().status(&mut tx).await;
    let status = services.keyed(env, status).await?;
    tx.commit().await?;
    Ok(status)
}

/// Rotates the data key: new writes use the new version at once; existing values are
/// re-encrypted by a job started here in the background (the scheduler resumes it if this
/// node stops).
pub async fn rotate_key(
    services: &Services,
    caller: &Principal,
    env: EnvironmentId,
) -> ServiceResult<Rotation> {
    let mut tx = caller.enter(services, env).await?;
    tx.require(Permission::KeysManage)?;
    let rotation = services
        .vault()
        .rotate(&mut tx, OffsetDateTime::now_utc())
        .await;
    let rotation = services.keyed(env, rotation).await?;
    tx.audit(AuditEvent::success("keys.rotated", "keyring", env).after(serde_json::json!({ "version": rotation.version, "job_id": rotation.job_id, "reason": "requested" }))).await?;
    tx.commit().await?;
    let bg = services.clone();
    tokio::spawn(async move {
        if let Err(e) = jobs::run_job(
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
    Ok(rotation)
}

/// Retires every key version below the active one, once nothing uses them. Irreversible.
pub async fn retire_keys(
    services: &Services,
    caller: &Principal,
    env: EnvironmentId,
) -> ServiceResult<KeyStatus> {
    let mut tx = caller.enter(services, env).await?;
    tx.require(Permission::KeysManage)?;
    let min = services
        .vault()
        .retire_old_versions(&mut tx, OffsetDateTime::now_utc())
        .await;
    let min = services.keyed(env, min).await?;
    tx.audit(
        AuditEvent::success("keys.retired", "keyring", env)
            .after(serde_json::json!({ "min_decrypt_version": min })),
    )
    .await?;
    let status = services.vault().status(&mut tx).await;
    let status = services.keyed(env, status).await?;
    tx.commit().await?;
    Ok(status)
}

/// Switches the KEK, e.g. to the customer's own KMS or HSM key. Data keys are rewrapped;
/// ciphertexts are unchanged. A provider this node has not configured is bad input.
pub async fn set_kek(
    services: &Services,
    caller: &Principal,
    env: EnvironmentId,
    kek: KekRef,
) -> ServiceResult<KeyStatus> {
    let mut tx = caller.enter(services, env).await?;
    tx.require(Permission::KeysManage)?;
    let p = services.vault().providers();
    let configured = match &kek {
        KekRef::Local { .. } => p.local.is_some(),
        KekRef::Pkcs11 { .. } => p.pkcs11.is_some(),
        KekRef::AwsKms { .. } => p.kms.is_some(),
    };
    if !configured {
        return Err(ServiceError::bad_request(
            "provider_not_configured",
            format!(
                "the {} key provider is not configured on this server",
                kek.provider()
            ),
        ));
    }
    let previous = services
        .vault()
        .set_kek(&mut tx, &kek, OffsetDateTime::now_utc())
        .await;
    let previous = services.keyed(env, previous).await?;
    tx.audit(
        AuditEvent::success("keys.kek_changed", "keyring", env)
            .before(&previous)
            .after(&kek),
    )
    .await?;
    let status = services.vault().status(&mut tx).await;
    let status = services.keyed(env, status).await?;
    tx.commit().await?;
    Ok(status)
}
