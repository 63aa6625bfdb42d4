//! Project grants (R3): a member's role on one project, e.g. contributor here while viewer
//! elsewhere. Only project-scoped permissions of the role take effect.

use portcullis_core::roles::check_assignable;
use portcullis_core::{BuiltinRole, EnvironmentId, IdentityId, Permission, ProjectId, RoleRef};
use portcullis_store::queries::projects::{self, Grant};
use portcullis_store::{AuditEvent, StoreError};
use time::OffsetDateTime;

use crate::roles::{parse_role, role_permissions};
use crate::{Principal, ServiceError, ServiceResult, Services};

pub async fn list_grants(
    services: &Services,
    caller: &Principal,
    env: EnvironmentId,
    project: ProjectId,
) -> ServiceResult<Vec<Grant>> {
    let mut tx = caller.enter_project(services, env, project).await?;
    tx.require(Permission::ProjectsRead)?;
    let list = projects::list_grants(&mut tx, project).await?;
    tx.commit().await?;
    Ok(list)
}

/// Gives `identity` the role named `role` (a built-in name or `custom:<role id>`) on `project`.
pub async fn put_grant(
    services: &Services,
    caller: &Principal,
    env: EnvironmentId,
    project: ProjectId,
    identity: IdentityId,
    role: &str,
) -> ServiceResult<Grant> {
    let mut tx = caller.enter(services, env).await?;
    projects::get(&mut tx, project).await?;
    tx.require(Permission::ProjectsManage)?;
    let role = parse_role(role)?;
    if let RoleRef::Builtin(b) = role {
        if !BuiltinRole::GRANTABLE_ON_PROJECTS.contains(&b) {
            return Err(ServiceError::bad_request("invalid_role", format!("`{b}` cannot be granted on a project; use contributor, reviewer, viewer or a custom role")));
        }
    }
    let granted = role_permissions(&mut tx, role).await?.project_scoped();
    check_assignable(tx.permissions(), role, granted)
        .map_err(|e| ServiceError::ForbiddenReason(e.to_string()))?;
    let before = projects::grant_of(&mut tx, project, identity).await?;
    let grant = match projects::put_grant(
        &mut tx,
        project,
        identity,
        role,
        OffsetDateTime::now_utc(),
    )
    .await
    {
        Err(StoreError::Conflict(_)) => {
            return Err(ServiceError::bad_request(
                "invalid_input",
                "the identity is not a member of this environment",
            ))
        }
        other => other?,
    };
    tx.audit(
        AuditEvent::success("project.grant_set", "project", project)
            .before(serde_json::json!({ "identity_id": identity, "role": before.map(|g| g.role) }))
            .after(serde_json::json!({ "identity_id": identity, "role": grant.role })),
    )
    .await?;
    tx.commit().await?;
    Ok(grant)
}

pub async fn remove_grant(
    services: &Services,
    caller: &Principal,
    env: EnvironmentId,
    project: ProjectId,
    identity: IdentityId,
) -> ServiceResult<()> {
    let mut tx = caller.enter(services, env).await?;
    projects::get(&mut tx, project).await?;
    tx.require(Permission::ProjectsManage)?;
    let before = projects::grant_of(&mut tx, project, identity)
        .await?
        .ok_or(ServiceError::NotFound)?;
    projects::remove_grant(&mut tx, project, identity).await?;
    tx.audit(
        AuditEvent::success("project.grant_removed", "project", project)
            .before(serde_json::json!({ "identity_id": identity, "role": before.role })),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}
