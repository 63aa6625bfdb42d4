//! Environments (tenants): creating one, reading, renaming and deleting it.

use portcullis_core::{validate, EnvironmentId, Permission};
use portcullis_store::queries::environments::{self, Environment, MyEnvironment};
use portcullis_store::AuditEvent;
use time::OffsetDateTime;

use crate::{Principal, ServiceResult, Services};

#[derive(Debug)]
pub struct NewEnvironment {
    pub name: String,
    /// Data-residency region, e.g. `eu-central` (D1).
    pub region: String,
}

#[derive(Debug)]
pub struct EnvironmentUpdate {
    pub name: String,
}

/// Environments the caller belongs to, with the caller's role in each.
pub async fn list_environments(
    services: &Services,
    caller: &Principal,
) -> ServiceResult<Vec<MyEnvironment>> {
    let id = caller.identity(services).await?;
    let mut tx = services.store().auth(caller.meta.clone()).await?;
    tx.act_as(id).await?;
    let list = environments::list_for_identity(&mut tx, id).await?;
    tx.commit().await?;
    Ok(list)
}

/// Creates an environment; the caller becomes its owner.
pub async fn create_environment(
    services: &Services,
    caller: &Principal,
    input: NewEnvironment,
) -> ServiceResult<Environment> {
    let id = caller.identity(services).await?;
    let name = validate::name("name", &input.name, 200)?;
    let region = services.regions().check(&input.region)?;
    let env_id = EnvironmentId::new();
    let mut tx = services
        .store()
        .new_environment(env_id, id, caller.meta.clone())
        .await?;
    let env = environments::create(&mut tx, &name, &region, id, OffsetDateTime::now_utc()).await?;
    tx.audit(AuditEvent::success("environment.created", "environment", env_id).after(&env))
        .await?;
    tx.commit().await?;
    Ok(env)
}

pub async fn get_environment(
    services: &Services,
    caller: &Principal,
    env: EnvironmentId,
) -> ServiceResult<Environment> {
    let mut tx = caller.enter(services, env).await?;
    tx.require(Permission::EnvironmentRead)?;
    let e = environments::get(&mut tx).await?;
    tx.commit().await?;
    Ok(e)
}

/// Renames the environment (audited with the prior and new value).
pub async fn update_environment(
    services: &Services,
    caller: &Principal,
    env: EnvironmentId,
    input: EnvironmentUpdate,
) -> ServiceResult<Environment> {
    let mut tx = caller.enter(services, env).await?;
    tx.require(Permission::EnvironmentManage)?;
    let name = validate::name("name", &input.name, 200)?;
    let before = environments::get(&mut tx).await?;
    let after = environments::rename(&mut tx, &name).await?;
    tx.audit(
        AuditEvent::success("environment.updated", "environment", env)
            .before(&before)
            .after(&after),
    )
    .await?;
    tx.commit().await?;
    Ok(after)
}

/// Deletes the environment and everything in it (owner only). Its audit entries are kept; its
/// data keys go with it (crypto-shredding).
pub async fn delete_environment(
    services: &Services,
    caller: &Principal,
    env: EnvironmentId,
) -> ServiceResult<()> {
    let mut tx = caller.enter(services, env).await?;
    tx.require(Permission::EnvironmentDelete)?;
    let before = environments::get(&mut tx).await?;
    tx.audit(
        AuditEvent::success("environment.deleted", "environment", env)
            .before(&before)
            .after(serde_json::json!({ "data_keys_destroyed": true })),
    )
    .await?;
    environments::delete(&mut tx).await?;
    tx.commit().await?;
    // The data keys went with the environment; drop any cached copy too.
    services.vault().forget(env.as_uuid());
    Ok(())
}
