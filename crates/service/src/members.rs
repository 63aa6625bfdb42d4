//! Members of an environment: listing, changing a role, removal, erasure of a person's
//! personal data from the audit log (D3) and the transfer of the owner seat.

use portcullis_core::{BuiltinRole, EnvironmentId, IdentityId, Permission, RoleRef};
use portcullis_store::queries::members::{self, Member};
use portcullis_store::queries::{Page, Paged};
use portcullis_store::vault::Vault;
use portcullis_store::{AuditEvent, StoreError, TenantTx};
use time::OffsetDateTime;

use crate::roles::{ensure_assignable, parse_role, role_permissions};
use crate::{Principal, ServiceError, ServiceResult, Services};

/// What an erasure did.
#[derive(Debug)]
pub struct Erasure {
    pub identity: IdentityId,
    /// Whether a key existed (and was destroyed).
    pub key_destroyed: bool,
}

pub async fn list_members(
    services: &Services,
    caller: &Principal,
    env: EnvironmentId,
    page: Page,
) -> ServiceResult<Paged<Member>> {
    let mut tx = caller.enter(services, env).await?;
    tx.require(Permission::MembersRead)?;
    let page = members::list(&mut tx, services.vault(), page).await?;
    tx.commit().await?;
    Ok(page)
}

/// Loads a member the caller may manage: not the owner, and holding nothing the caller lacks.
async fn managed_member(
    tx: &mut TenantTx,
    vault: &Vault,
    identity: IdentityId,
) -> ServiceResult<Member> {
    let member = members::get(tx, vault, identity).await?;
    let current = members::role_of(tx, identity).await?;
    if current.is_owner() {
        return Err(ServiceError::Conflict(
            "the owner cannot be changed or removed; transfer ownership first".into(),
        ));
    }
    if holds_more_than_caller(tx, current).await? {
        return Err(ServiceError::ForbiddenReason(
            "you cannot change a member who holds permissions you do not hold".into(),
        ));
    }
    Ok(member)
}

/// Whether `role` carries a permission the caller does not hold (the no-escalation rule).
async fn holds_more_than_caller(tx: &mut TenantTx, role: RoleRef) -> ServiceResult<bool> {
    let held = role_permissions(tx, role).await?;
    Ok(!held.is_subset_of(tx.permissions()))
}

/// Changes a member's role (R5: audited with prior and new value).
pub async fn update_member(
    services: &Services,
    caller: &Principal,
    env: EnvironmentId,
    identity: IdentityId,
    role: &str,
) -> ServiceResult<Member> {
    let mut tx = caller.enter(services, env).await?;
    tx.require(Permission::MembersManage)?;
    let role = parse_role(role)?;
    let before = managed_member(&mut tx, services.vault(), identity).await?;
    let granted = role_permissions(&mut tx, role).await?;
    ensure_assignable(&tx, role, granted)?;
    members::set_role(&mut tx, identity, role, OffsetDateTime::now_utc()).await?;
    let after = members::get(&mut tx, services.vault(), identity).await?;
    tx.audit(
        AuditEvent::success("member.role_changed", "identity", identity)
            .before(serde_json::json!({ "role": before.role }))
            .after(serde_json::json!({ "role": after.role })),
    )
    .await?;
    tx.commit().await?;
    Ok(after)
}

pub async fn remove_member(
    services: &Services,
    caller: &Principal,
    env: EnvironmentId,
    identity: IdentityId,
) -> ServiceResult<()> {
    let mut tx = caller.enter(services, env).await?;
    tx.require(Permission::MembersManage)?;
    let before = managed_member(&mut tx, services.vault(), identity).await?;
    members::remove(&mut tx, identity).await?;
    tx.audit(
        AuditEvent::success("member.removed", "identity", identity)
            .before(serde_json::json!({ "role": before.role })),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Erasure is irreversible, so it follows the rule for removing someone, and is stricter for
/// the owner: a person may erase their own data; another current member only if they hold
/// nothing the caller does not; the owner only by the owner. A former member has no role left
/// to compare.
async fn erasable(tx: &mut TenantTx, identity: IdentityId) -> ServiceResult<()> {
    if tx.caller().actor.identity() == Some(identity) {
        return Ok(());
    }
    let current = match members::role_of(tx, identity).await {
        Ok(role) => role,
        Err(StoreError::NotFound) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if current.is_owner() {
        return Err(ServiceError::ForbiddenReason(
            "only the owner can erase the owner's personal data".into(),
        ));
    }
    if holds_more_than_caller(tx, current).await? {
        return Err(ServiceError::ForbiddenReason(
            "you cannot erase a member who holds permissions you do not hold".into(),
        ));
    }
    Ok(())
}

/// Destroys a person's subject key in this environment, so the personal data sealed under it
/// in the audit log reads `[erased]` while every entry and proof still verifies. Works for
/// former members too; someone with neither a key nor a membership here is `NotFound`.
pub async fn erase_subject(
    services: &Services,
    caller: &Principal,
    env: EnvironmentId,
    identity: IdentityId,
) -> ServiceResult<Erasure> {
    let mut tx = caller.enter(services, env).await?;
    tx.require(Permission::MembersManage)?;
    erasable(&mut tx, identity).await?;
    let destroyed = tx.erase_subject(identity).await?;
    if !destroyed {
        // Nothing of this person's here: a stranger's id is not found (as on every route),
        // a member without personal data in the log is erased trivially.
        members::role_of(&mut tx, identity).await?;
    }
    tx.audit(
        AuditEvent::success("subject.erased", "identity", identity)
            .after(serde_json::json!({ "key_destroyed": destroyed })),
    )
    .await?;
    tx.commit().await?;
    Ok(Erasure {
        identity,
        key_destroyed: destroyed,
    })
}

/// Hands the owner seat to another member; the previous owner becomes admin. Only the owner in
/// person can do it, never a token.
pub async fn transfer_ownership(
    services: &Services,
    caller: &Principal,
    env: EnvironmentId,
    to: IdentityId,
) -> ServiceResult<Member> {
    let mut tx = caller.enter(services, env).await?;
    tx.require(Permission::OwnershipTransfer)?;
    let from = tx.caller().actor.identity().ok_or_else(|| {
        ServiceError::ForbiddenReason("only the owner in person can transfer ownership".into())
    })?;
    if to == from {
        return Err(ServiceError::bad_request(
            "invalid_input",
            "you are already the owner",
        ));
    }
    // Concurrent transfers by the same owner: the first to take the lock wins; the others see
    // its committed result and the caller no longer owns the seat.
    members::lock_ownership(&mut tx).await?;
    if !members::role_of(&mut tx, from).await?.is_owner() {
        return Err(ServiceError::Forbidden(Permission::OwnershipTransfer));
    }
    let target = match members::get(&mut tx, services.vault(), to).await {
        Err(StoreError::NotFound) => {
            return Err(ServiceError::bad_request(
                "invalid_input",
                "the new owner must already be a member",
            ))
        }
        other => other?,
    };
    let now = OffsetDateTime::now_utc();
    members::set_role(&mut tx, from, RoleRef::Builtin(BuiltinRole::Admin), now).await?;
    members::set_role(&mut tx, to, RoleRef::Builtin(BuiltinRole::Owner), now).await?;
    tx.audit(
        AuditEvent::success("ownership.transferred", "environment", env)
            .before(serde_json::json!({ "owner": from, "new_owner_role": target.role }))
            .after(serde_json::json!({ "owner": to, "previous_owner_role": "admin" })),
    )
    .await?;
    let after = members::get(&mut tx, services.vault(), to).await?;
    tx.commit().await?;
    Ok(after)
}
