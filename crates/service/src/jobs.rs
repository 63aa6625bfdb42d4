//! Key rotation and re-encryption work, shared by the API, the CLI and the scheduler. Knows no
//! HTTP. Every job names its environment and runs inside that environment's transaction (T4).

use std::time::Duration;

use portcullis_core::{EnvironmentId, PermissionSet};
use portcullis_store::leader::{PassLock, KEY_ROTATION_SCHEDULER_LOCK};
use portcullis_store::vault::{operator, BatchOutcome, Rotation, Vault};
use portcullis_store::{AuditEvent, RequestMeta, Store, StoreError};
use sqlx::PgPool;
use time::OffsetDateTime;
use uuid::Uuid;

fn system_meta() -> RequestMeta {
    RequestMeta::system("scheduler", "job")
}

/// Starts a rotation as the system (CLI, scheduler) and audits it.
pub async fn rotate(
    store: &Store,
    vault: &Vault,
    env: EnvironmentId,
    reason: &str,
) -> Result<Rotation, StoreError> {
    let mut tx = store
        .tenant_as_system(env, PermissionSet::all(), system_meta())
        .await?;
    let rotation = vault.rotate(&mut tx, OffsetDateTime::now_utc()).await?;
    tx.audit(AuditEvent::success("keys.rotated", "keyring", env).after(serde_json::json!({ "version": rotation.version, "job_id": rotation.job_id, "reason": reason }))).await?;
    tx.commit().await?;
    Ok(rotation)
}

/// Runs a re-encryption job to the end, one committed batch at a time, reporting progress.
/// Safe to call again after a crash: it continues from the last committed batch.
pub async fn run_job(
    store: &Store,
    vault: &Vault,
    env: EnvironmentId,
    job: Uuid,
    batch: i64,
    mut progress: impl FnMut(&BatchOutcome),
) -> Result<BatchOutcome, StoreError> {
    loop {
        let mut tx = store
            .tenant_as_system(env, PermissionSet::all(), system_meta())
            .await?;
        let out = vault.run_batch(&mut tx, job, batch.max(1)).await?;
        if out.finished {
            tx.audit(
                AuditEvent::success("keys.reencryption_finished", "key_rotation_job", job)
                    .after(serde_json::json!({ "rows_done": out.rows_done })),
            )
            .await?;
        }
        tx.commit().await?;
        progress(&out);
        if out.finished {
            return Ok(out);
        }
    }
}

/// The running job of an environment, if any.
pub async fn running_job(
    store: &Store,
    vault: &Vault,
    env: EnvironmentId,
) -> Result<Option<Uuid>, StoreError> {
    let mut tx = store
        .tenant_as_system(env, PermissionSet::all(), system_meta())
        .await?;
    let job = vault.running_job(&mut tx).await?;
    tx.commit().await?;
    Ok(job)
}

/// What one scheduler pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SchedulerPass {
    /// Another node held the scheduler lock; nothing was done.
    pub skipped: bool,
    pub jobs_resumed: usize,
    pub rotated: usize,
}

/// One pass of the scheduler: resume unfinished jobs, then rotate environments that are due.
/// Only one node at a time runs it: the pass holds the advisory lock
/// [`KEY_ROTATION_SCHEDULER_LOCK`](portcullis_store::leader::KEY_ROTATION_SCHEDULER_LOCK)
/// and is skipped when another node holds it. `owner` needs a free connection for the lock.
pub async fn scheduler_pass(
    store: &Store,
    owner: &PgPool,
    vault: &Vault,
    batch: i64,
) -> Result<SchedulerPass, StoreError> {
    let Some(lock) = PassLock::try_acquire(owner, KEY_ROTATION_SCHEDULER_LOCK).await? else {
        tracing::debug!("key rotation scheduler pass skipped: another node holds its lock");
        return Ok(SchedulerPass {
            skipped: true,
            ..SchedulerPass::default()
        });
    };
    let mut done = SchedulerPass::default();
    let jobs = operator::unfinished_jobs(owner).await?;
    let due = operator::due_for_rotation(owner).await?;
    for (env, job) in jobs {
        tracing::info!(environment = %env, job = %job, "resuming re-encryption job");
        run_job(
            store,
            vault,
            EnvironmentId::from_uuid(env),
            job,
            batch,
            |_| {},
        )
        .await?;
        done.jobs_resumed += 1;
    }
    for env in due {
        let env = EnvironmentId::from_uuid(env);
        tracing::info!(environment = %env, "data key due for rotation");
        let r = rotate(store, vault, env, "scheduled").await?;
        run_job(store, vault, env, r.job_id, batch, |_| {}).await?;
        done.rotated += 1;
    }
    lock.release().await?;
    Ok(done)
}

/// Runs the scheduler every `every` until the process stops. Failures are logged and retried
/// on the next pass; they never stop the server.
pub async fn scheduler(
    store: Store,
    owner: PgPool,
    vault: std::sync::Arc<Vault>,
    every: Duration,
    batch: i64,
) {
    loop {
        if let Err(e) = scheduler_pass(&store, &owner, &vault, batch).await {
            tracing::error!(error = %e, "key rotation scheduler pass failed; retrying next time");
        }
        tokio::time::sleep(every).await;
    }
}

/// Key status of one environment, as the system.
pub async fn status(
    store: &Store,
    vault: &Vault,
    env: EnvironmentId,
) -> Result<portcullis_store::vault::KeyStatus, StoreError> {
    let mut tx = store
        .tenant_as_system(env, PermissionSet::all(), system_meta())
        .await?;
    let s = vault.status(&mut tx).await?;
    tx.commit().await?;
    Ok(s)
}

/// Rotates the local master key and rewraps every environment whose data keys it protects.
/// Returns the new key's name and the environments rewrapped.
pub async fn rotate_root(
    store: &Store,
    owner: &PgPool,
    vault: &Vault,
) -> Result<(String, Vec<Uuid>), StoreError> {
    let local =
        vault.providers().local.as_ref().ok_or_else(|| {
            StoreError::Conflict("the local key provider is not configured".into())
        })?;
    let name = local
        .rotate()
        .map_err(|e| StoreError::KeyProvider(e.to_string()))?;
    let new_kek = portcullis_keys::KekRef::Local { name: name.clone() };
    let mut done = vec![];
    for (env, kek, _) in operator::keyrings(owner).await? {
        if kek.get("provider").and_then(|p| p.as_str()) != Some("local") {
            continue;
        }
        let env_id = EnvironmentId::from_uuid(env);
        let mut tx = store
            .tenant_as_system(env_id, PermissionSet::all(), system_meta())
            .await?;
        let previous = vault
            .set_kek(&mut tx, &new_kek, OffsetDateTime::now_utc())
            .await?;
        tx.audit(
            AuditEvent::success("keys.root_rotated", "keyring", env)
                .before(&previous)
                .after(&new_kek),
        )
        .await?;
        tx.commit().await?;
        done.push(env);
    }
    let platform = portcullis_store::pii::rewrap_platform_keys(owner, vault, &new_kek).await?;
    if platform > 0 {
        let mut tx = store.auth(system_meta()).await?;
        tx.as_system(Default::default()).await?;
        tx.audit(
            portcullis_store::Actor::System,
            AuditEvent::success("keys.root_rotated", "platform_keys", "platform")
                .after(serde_json::json!({ "kek": new_kek, "platform_keys_rewrapped": platform })),
        )
        .await?;
        tx.commit().await?;
    }
    Ok((name, done))
}
