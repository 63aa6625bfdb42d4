//! Roles: the built-in catalogue, an environment's custom roles (R4), and the rules every
//! assignment of a role follows (members, invitations, tokens, project grants).

use portcullis_core::roles::{check_assignable, AssignError};
use portcullis_core::{
    validate, BuiltinRole, EnvironmentId, Permission, PermissionSet, RoleId, RoleRef,
};
use portcullis_store::queries::roles::{self, CustomRole};
use portcullis_store::{AuditEvent, StoreError, TenantTx};
use time::OffsetDateTime;

use crate::{Principal, ServiceError, ServiceResult, Services};

/// What a custom role is to be: a name, a description and permission names.
#[derive(Debug)]
pub struct RoleDefinition {
    pub name: String,
    pub description: String,
    /// Permission names, e.g. `documents.read`.
    pub permissions: Vec<String>,
}

/// The roles one can hold in an environment.
#[derive(Debug)]
pub struct RoleCatalog {
    pub builtin: &'static [BuiltinRole],
    pub custom: Vec<CustomRole>,
}

/// A role as written by a caller: a built-in role name or `custom:<role id>`.
pub fn parse_role(value: &str) -> ServiceResult<RoleRef> {
    RoleRef::parse(value).ok_or_else(|| {
        ServiceError::bad_request(
            "invalid_role",
            format!("`{value}` is not a role: use a built-in role name or custom:<role id>"),
        )
    })
}

/// The permissions `role` confers here; an unknown custom role is bad input, not a 404 of the route.
pub async fn role_permissions(tx: &mut TenantTx, role: RoleRef) -> ServiceResult<PermissionSet> {
    match roles::permissions_of(tx, role).await {
        Err(StoreError::NotFound) => Err(ServiceError::bad_request(
            "invalid_role",
            format!("role {role} does not exist in this environment"),
        )),
        other => Ok(other?),
    }
}

/// Refuses roles the caller could not hold themselves (R2) and the owner seat (moves only by transfer).
pub fn ensure_assignable(
    tx: &TenantTx,
    role: RoleRef,
    granted: PermissionSet,
) -> ServiceResult<()> {
    check_assignable(tx.permissions(), role, granted).map_err(|e| match e {
        AssignError::OwnerNotAssignable => ServiceError::Conflict(e.to_string()),
        AssignError::Escalation(_) => ServiceError::ForbiddenReason(e.to_string()),
    })
}

/// Parses `role` and checks that the caller may hand it out: the common first step of changing
/// a member's role, inviting and creating a token.
pub(crate) async fn assignable_role(tx: &mut TenantTx, role: &str) -> ServiceResult<RoleRef> {
    let role = parse_role(role)?;
    let granted = role_permissions(tx, role).await?;
    ensure_assignable(tx, role, granted)?;
    Ok(role)
}

fn validated(def: RoleDefinition) -> ServiceResult<(String, String, PermissionSet)> {
    let name = validate::name("name", &def.name, 100)?;
    if BuiltinRole::parse(&name.to_lowercase()).is_some() {
        return Err(ServiceError::bad_request(
            "invalid_input",
            format!("`{name}` is the name of a built-in role"),
        ));
    }
    if def.description.chars().count() > 1000 {
        return Err(ServiceError::bad_request(
            "invalid_input",
            "description: must be at most 1000 characters",
        ));
    }
    let perms = PermissionSet::parse_names(&def.permissions).map_err(|p| {
        ServiceError::bad_request("invalid_permission", format!("`{p}` is not a permission"))
    })?;
    if perms.contains(Permission::EnvironmentDelete)
        || perms.contains(Permission::OwnershipTransfer)
    {
        return Err(ServiceError::bad_request(
            "invalid_permission",
            "environment.delete and ownership.transfer belong to the owner alone",
        ));
    }
    Ok((name, def.description, perms))
}

fn stored_permissions(role: &CustomRole) -> ServiceResult<PermissionSet> {
    PermissionSet::parse_names(&role.permissions)
        .map_err(|p| ServiceError::Internal(format!("stored permission {p}")))
}

/// Built-in roles and this environment's custom roles.
pub async fn list_roles(
    services: &Services,
    caller: &Principal,
    env: EnvironmentId,
) -> ServiceResult<RoleCatalog> {
    let mut tx = caller.enter(services, env).await?;
    tx.require(Permission::MembersRead)?;
    let custom = roles::list(&mut tx).await?;
    tx.commit().await?;
    Ok(RoleCatalog {
        builtin: BuiltinRole::ALL,
        custom,
    })
}

/// Defines a custom role. It cannot carry a permission the caller does not hold.
pub async fn create_role(
    services: &Services,
    caller: &Principal,
    env: EnvironmentId,
    input: RoleDefinition,
) -> ServiceResult<CustomRole> {
    let mut tx = caller.enter(services, env).await?;
    tx.require(Permission::RolesManage)?;
    let (name, description, perms) = validated(input)?;
    let id = RoleId::new();
    ensure_assignable(&tx, RoleRef::Custom(id), perms)?;
    let role = roles::create(
        &mut tx,
        id,
        &name,
        &description,
        perms,
        OffsetDateTime::now_utc(),
    )
    .await?;
    tx.audit(AuditEvent::success("role.created", "role", id).after(&role))
        .await?;
    tx.commit().await?;
    Ok(role)
}

/// Redefines a custom role; members holding it get the new permissions at once (R5: audited
/// with prior and new value). The caller must hold both the old and the new permissions.
pub async fn update_role(
    services: &Services,
    caller: &Principal,
    env: EnvironmentId,
    id: RoleId,
    input: RoleDefinition,
) -> ServiceResult<CustomRole> {
    let mut tx = caller.enter(services, env).await?;
    tx.require(Permission::RolesManage)?;
    let (name, description, perms) = validated(input)?;
    let before = roles::get(&mut tx, id).await?;
    let old = stored_permissions(&before)?;
    ensure_assignable(&tx, RoleRef::Custom(id), perms.union(old))?;
    let after = roles::update(
        &mut tx,
        id,
        &name,
        &description,
        perms,
        OffsetDateTime::now_utc(),
    )
    .await?;
    tx.audit(
        AuditEvent::success("role.updated", "role", id)
            .before(&before)
            .after(&after),
    )
    .await?;
    tx.commit().await?;
    Ok(after)
}

/// Deletes a custom role nobody holds any more.
pub async fn delete_role(
    services: &Services,
    caller: &Principal,
    env: EnvironmentId,
    id: RoleId,
) -> ServiceResult<()> {
    let mut tx = caller.enter(services, env).await?;
    tx.require(Permission::RolesManage)?;
    let before = roles::get(&mut tx, id).await?;
    let perms = stored_permissions(&before)?;
    ensure_assignable(&tx, RoleRef::Custom(id), perms)?;
    roles::delete(&mut tx, id).await?;
    tx.audit(AuditEvent::success("role.deleted", "role", id).before(&before))
        .await?;
    tx.commit().await?;
    Ok(())
}
