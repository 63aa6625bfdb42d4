//! Environment-scoped routes: the environment itself, members, ownership, invitations,
//! custom roles, API tokens and the audit log. Every handler checks a permission (R2).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use portcullis_core::roles::check_assignable;
use portcullis_core::{
    validate, ApiTokenId, BuiltinRole, EnvironmentId, IdentityId, InvitationId, Permission,
    PermissionSet, RoleId, RoleRef,
};
use portcullis_crypto::token::{self, TokenKind};
use portcullis_store::queries::audit_log::{self, AuditEntry};
use portcullis_store::queries::environments::{self, Environment, MyEnvironment};
use portcullis_store::queries::invitations::{self, Invitation};
use portcullis_store::queries::members::{self, Member};
use portcullis_store::queries::roles::{self, CustomRole};
use portcullis_store::queries::tokens::{self, ApiToken};
use portcullis_store::vault::Vault;
use portcullis_store::{AuditEvent, StoreError, TenantTx};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Page, PageQuery};
use crate::auth::Auth;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{Json, Path, Query};
use crate::state::AppState;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEnvironment {
    pub name: String,
    /// Data-residency region, e.g. `eu-central` (D1).
    pub region: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentUpdate {
    pub name: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleChange {
    /// A built-in role (`admin`, `contributor`, `reviewer`, `viewer`, `auditor`, `guest`) or `custom:<role id>`.
    pub role: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OwnershipTransfer {
    /// The member who becomes owner. The current owner becomes admin.
    pub identity_id: Uuid,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewInvitation {
    pub email: String,
    pub role: String,
}

/// The invitation and its link token, shown this once.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct InvitationIssued {
    pub invitation: Invitation,
    /// Send this to the invitee; it is stored only as a hash.
    pub token: String,
    /// Relative accept path; the invitee signs in and POSTs the token to it.
    pub accept_path: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleDefinition {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Permission names, e.g. `documents.read`.
    pub permissions: Vec<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BuiltinRoleInfo {
    pub name: String,
    pub description: String,
    pub permissions: Vec<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RoleCatalog {
    pub builtin: Vec<BuiltinRoleInfo>,
    pub custom: Vec<CustomRole>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    pub name: String,
    /// The token's role; never more than the creator holds.
    pub role: String,
    /// Lifetime in days (1-365); omit for a token that lives until revoked.
    pub expires_in_days: Option<u32>,
}

/// The token itself, shown this once.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenIssued {
    pub token: String,
    pub api_token: ApiToken,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    pub after: Option<Uuid>,
    pub limit: Option<i64>,
    /// Only this action, e.g. `member.role_changed`.
    pub action: Option<String>,
    pub actor_id: Option<Uuid>,
    pub target_id: Option<String>,
    /// RFC 3339; entries at or after this time.
    pub from: Option<String>,
    /// RFC 3339; entries before this time.
    pub to: Option<String>,
}

pub(crate) fn parse_time(
    value: Option<&str>,
    field: &'static str,
) -> ApiResult<Option<OffsetDateTime>> {
    value
        .map(|v| {
            OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339).map_err(|_| {
                ApiError::bad_request(
                    "invalid_query",
                    format!("{field}: expected an RFC 3339 time such as 2026-11-01T00:00:00Z"),
                )
            })
        })
        .transpose()
}

pub(crate) fn parse_role(value: &str) -> ApiResult<RoleRef> {
    RoleRef::parse(value).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_role",
            format!("`{value}` is not a role: use a built-in role name or custom:<role id>"),
        )
    })
}

/// The permissions `role` confers here; an unknown custom role is bad input, not a 404 of the route.
pub(crate) async fn role_permissions(tx: &mut TenantTx, role: RoleRef) -> ApiResult<PermissionSet> {
    match roles::permissions_of(tx, role).await {
        Err(StoreError::NotFound) => Err(ApiError::bad_request(
            "invalid_role",
            format!("role {role} does not exist in this environment"),
        )),
        other => Ok(other?),
    }
}

/// Refuses roles the caller could not hold themselves (R2) and the owner seat (moves only by transfer).
pub(crate) fn ensure_assignable(
    tx: &TenantTx,
    role: RoleRef,
    granted: PermissionSet,
) -> ApiResult<()> {
    check_assignable(tx.permissions(), role, granted).map_err(|e| match e {
        portcullis_core::roles::AssignError::OwnerNotAssignable => {
            ApiError::Conflict(e.to_string())
        }
        portcullis_core::roles::AssignError::Escalation(_) => {
            ApiError::ForbiddenReason(e.to_string())
        }
    })
}

/// Environments the caller belongs to.
#[utoipa::path(get, path = "/v1/environments", tag = "environments", responses((status = 200, body = Vec<MyEnvironment>), (status = 401, body = ErrorBody)))]
pub async fn list_environments(
    State(state): State<AppState>,
    auth: Auth,
) -> ApiResult<axum::Json<Vec<MyEnvironment>>> {
    let id = auth.identity()?;
    let mut tx = state.store().auth(auth.0.meta).await?;
    tx.act_as(id).await?;
    let list = environments::list_for_identity(&mut tx, id).await?;
    tx.commit().await?;
    Ok(axum::Json(list))
}

/// Create an environment; the caller becomes its owner.
#[utoipa::path(post, path = "/v1/environments", tag = "environments", request_body = NewEnvironment,
    responses((status = 201, body = Environment), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn create_environment(
    State(state): State<AppState>,
    auth: Auth,
    Json(req): Json<NewEnvironment>,
) -> ApiResult<impl IntoResponse> {
    let id = auth.identity()?;
    let name = validate::name("name", &req.name, 200)?;
    let region = validate::region(&req.region)?;
    let env_id = EnvironmentId::new();
    let mut tx = state
        .store()
        .new_environment(env_id, id, auth.0.meta)
        .await?;
    let env = environments::create(&mut tx, &name, &region, id, OffsetDateTime::now_utc()).await?;
    tx.audit(AuditEvent::success("environment.created", "environment", env_id).after(&env))
        .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, axum::Json(env)))
}

#[utoipa::path(get, path = "/v1/environments/{environment_id}", tag = "environments", params(("environment_id" = Uuid, Path)),
    responses((status = 200, body = Environment), (status = 404, body = ErrorBody)))]
pub async fn get_environment(
    State(state): State<AppState>,
    auth: Auth,
    Path(env): Path<EnvironmentId>,
) -> ApiResult<axum::Json<Environment>> {
    let mut tx = auth.enter(&state, env).await?;
    tx.require(Permission::EnvironmentRead)?;
    let e = environments::get(&mut tx).await?;
    tx.commit().await?;
    Ok(axum::Json(e))
}

#[utoipa::path(patch, path = "/v1/environments/{environment_id}", tag = "environments", params(("environment_id" = Uuid, Path)), request_body = EnvironmentUpdate,
    responses((status = 200, body = Environment), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update_environment(
    State(state): State<AppState>,
    auth: Auth,
    Path(env): Path<EnvironmentId>,
    Json(req): Json<EnvironmentUpdate>,
) -> ApiResult<axum::Json<Environment>> {
    let mut tx = auth.enter(&state, env).await?;
    tx.require(Permission::EnvironmentManage)?;
    let name = validate::name("name", &req.name, 200)?;
    let before = environments::get(&mut tx).await?;
    let after = environments::rename(&mut tx, &name).await?;
    tx.audit(
        AuditEvent::success("environment.updated", "environment", env)
            .before(&before)
            .after(&after),
    )
    .await?;
    tx.commit().await?;
    Ok(axum::Json(after))
}

/// Delete the environment and everything in it (owner only). Its audit entries are kept.
#[utoipa::path(delete, path = "/v1/environments/{environment_id}", tag = "environments", params(("environment_id" = Uuid, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_environment(
    State(state): State<AppState>,
    auth: Auth,
    Path(env): Path<EnvironmentId>,
) -> ApiResult<StatusCode> {
    let mut tx = auth.enter(&state, env).await?;
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
    // The data keys went with the environment (crypto-shredding); drop any cached copy too.
    state.vault().forget(env.as_uuid());
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/v1/environments/{environment_id}/members", tag = "members", params(("environment_id" = Uuid, Path), PageQuery),
    responses((status = 200, body = Page<Member>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_members(
    State(state): State<AppState>,
    auth: Auth,
    Path(env): Path<EnvironmentId>,
    Query(q): Query<PageQuery>,
) -> ApiResult<axum::Json<Page<Member>>> {
    let mut tx = auth.enter(&state, env).await?;
    tx.require(Permission::MembersRead)?;
    let page = members::list(&mut tx, state.vault(), q.page()).await?;
    tx.commit().await?;
    Ok(axum::Json(page.into()))
}

/// Loads a member the caller may manage: not the owner, and holding nothing the caller lacks.
async fn managed_member(
    tx: &mut TenantTx,
    vault: &Vault,
    identity: IdentityId,
) -> ApiResult<(Member, RoleRef)> {
    let member = members::get(tx, vault, identity).await?;
    let current = members::role_of(tx, identity).await?;
    if current.is_owner() {
        return Err(ApiError::Conflict(
            "the owner cannot be changed or removed; transfer ownership first".into(),
        ));
    }
    let held = role_permissions(tx, current).await?;
    if !held.is_subset_of(tx.permissions()) {
        return Err(ApiError::ForbiddenReason(
            "you cannot change a member who holds permissions you do not hold".into(),
        ));
    }
    Ok((member, current))
}

/// Change a member's role (R5: audited with prior and new value).
#[utoipa::path(patch, path = "/v1/environments/{environment_id}/members/{identity_id}", tag = "members",
    params(("environment_id" = Uuid, Path), ("identity_id" = Uuid, Path)), request_body = RoleChange,
    responses((status = 200, body = Member), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn update_member(
    State(state): State<AppState>,
    auth: Auth,
    Path((env, identity)): Path<(EnvironmentId, IdentityId)>,
    Json(req): Json<RoleChange>,
) -> ApiResult<axum::Json<Member>> {
    let mut tx = auth.enter(&state, env).await?;
    tx.require(Permission::MembersManage)?;
    let role = parse_role(&req.role)?;
    let (before, _) = managed_member(&mut tx, state.vault(), identity).await?;
    let granted = role_permissions(&mut tx, role).await?;
    ensure_assignable(&tx, role, granted)?;
    members::set_role(&mut tx, identity, role, OffsetDateTime::now_utc()).await?;
    let after = members::get(&mut tx, state.vault(), identity).await?;
    tx.audit(
        AuditEvent::success("member.role_changed", "identity", identity)
            .before(serde_json::json!({ "role": before.role }))
            .after(serde_json::json!({ "role": after.role })),
    )
    .await?;
    tx.commit().await?;
    Ok(axum::Json(after))
}

#[utoipa::path(delete, path = "/v1/environments/{environment_id}/members/{identity_id}", tag = "members",
    params(("environment_id" = Uuid, Path), ("identity_id" = Uuid, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn remove_member(
    State(state): State<AppState>,
    auth: Auth,
    Path((env, identity)): Path<(EnvironmentId, IdentityId)>,
) -> ApiResult<StatusCode> {
    let mut tx = auth.enter(&state, env).await?;
    tx.require(Permission::MembersManage)?;
    let (before, _) = managed_member(&mut tx, state.vault(), identity).await?;
    members::remove(&mut tx, identity).await?;
    tx.audit(
        AuditEvent::success("member.removed", "identity", identity)
            .before(serde_json::json!({ "role": before.role })),
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// What an erasure did.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Erasure {
    pub identity_id: Uuid,
    /// Whether a key existed (and was destroyed). False for a member who left no personal data
    /// in this environment's audit log. Someone with neither a key nor a membership here is
    /// `404`.
    pub key_destroyed: bool,
}

/// Erase a person's personal data from this environment's audit log (D3): their subject key is
/// destroyed, so the IP addresses and user agents sealed under it read `[erased]` from now on,
/// while every entry, hash, proof and checkpoint still verifies. Works for former members too.
/// The erasure is itself audited.
#[utoipa::path(post, path = "/v1/environments/{environment_id}/members/{identity_id}/erasure", tag = "members",
    params(("environment_id" = Uuid, Path), ("identity_id" = Uuid, Path)),
    responses((status = 200, body = Erasure), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn erase_subject(
    State(state): State<AppState>,
    auth: Auth,
    Path((env, identity)): Path<(EnvironmentId, IdentityId)>,
) -> ApiResult<axum::Json<Erasure>> {
    let mut tx = auth.enter(&state, env).await?;
    tx.require(Permission::MembersManage)?;
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
    Ok(axum::Json(Erasure {
        identity_id: identity.as_uuid(),
        key_destroyed: destroyed,
    }))
}

/// Hand the owner seat to another member; the previous owner becomes admin.
#[utoipa::path(post, path = "/v1/environments/{environment_id}/ownership-transfer", tag = "members", params(("environment_id" = Uuid, Path)), request_body = OwnershipTransfer,
    responses((status = 200, body = Member), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn transfer_ownership(
    State(state): State<AppState>,
    auth: Auth,
    Path(env): Path<EnvironmentId>,
    Json(req): Json<OwnershipTransfer>,
) -> ApiResult<axum::Json<Member>> {
    let mut tx = auth.enter(&state, env).await?;
    tx.require(Permission::OwnershipTransfer)?;
    let from = tx.caller().actor.identity().ok_or_else(|| {
        ApiError::ForbiddenReason("only the owner in person can transfer ownership".into())
    })?;
    let to = IdentityId::from_uuid(req.identity_id);
    if to == from {
        return Err(ApiError::bad_request(
            "invalid_input",
            "you are already the owner",
        ));
    }
    let target = match members::get(&mut tx, state.vault(), to).await {
        Err(StoreError::NotFound) => {
            return Err(ApiError::bad_request(
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
    let after = members::get(&mut tx, state.vault(), to).await?;
    tx.commit().await?;
    Ok(axum::Json(after))
}

#[utoipa::path(get, path = "/v1/environments/{environment_id}/invitations", tag = "members", params(("environment_id" = Uuid, Path), PageQuery),
    responses((status = 200, body = Page<Invitation>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_invitations(
    State(state): State<AppState>,
    auth: Auth,
    Path(env): Path<EnvironmentId>,
    Query(q): Query<PageQuery>,
) -> ApiResult<axum::Json<Page<Invitation>>> {
    let mut tx = auth.enter(&state, env).await?;
    tx.require(Permission::MembersManage)?;
    let list = invitations::list(&mut tx, state.vault(), q.page()).await?;
    tx.commit().await?;
    Ok(axum::Json(list.into()))
}

/// Invite an email with a role. The token is returned once and stored only as a hash (E3).
#[utoipa::path(post, path = "/v1/environments/{environment_id}/invitations", tag = "members", params(("environment_id" = Uuid, Path)), request_body = NewInvitation,
    responses((status = 201, body = InvitationIssued), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create_invitation(
    State(state): State<AppState>,
    auth: Auth,
    Path(env): Path<EnvironmentId>,
    Json(req): Json<NewInvitation>,
) -> ApiResult<impl IntoResponse> {
    let mut tx = auth.enter(&state, env).await?;
    tx.require(Permission::MembersManage)?;
    let email = validate::email(&req.email)?;
    let role = parse_role(&req.role)?;
    let granted = role_permissions(&mut tx, role).await?;
    ensure_assignable(&tx, role, granted)?;
    if members::is_member_email(&mut tx, state.vault(), &email).await? {
        return Err(ApiError::Conflict(
            "this email already belongs to a member".into(),
        ));
    }
    let now = OffsetDateTime::now_utc();
    let expires = now + time::Duration::hours(i64::from(state.auth_config().invitation_ttl_hours));
    let (token, hash) = token::generate(TokenKind::Invitation);
    let invited_by = tx.caller().actor.id().unwrap_or_default();
    let invitation = invitations::create(
        &mut tx,
        state.vault(),
        InvitationId::new(),
        &email,
        role,
        &hash,
        invited_by,
        now,
        expires,
    )
    .await?;
    tx.audit(AuditEvent::success("invitation.created", "invitation", invitation.invitation_id)
        .after(serde_json::json!({ "role": invitation.role, "expires_at": invitation.expires_at.unix_timestamp() }))).await?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(InvitationIssued {
            invitation,
            token: token.expose().to_owned(),
            accept_path: "/v1/invitations/accept".into(),
        }),
    ))
}

#[utoipa::path(delete, path = "/v1/environments/{environment_id}/invitations/{invitation_id}", tag = "members",
    params(("environment_id" = Uuid, Path), ("invitation_id" = Uuid, Path)),
    responses((status = 200, body = Invitation), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn revoke_invitation(
    State(state): State<AppState>,
    auth: Auth,
    Path((env, id)): Path<(EnvironmentId, InvitationId)>,
) -> ApiResult<axum::Json<Invitation>> {
    let mut tx = auth.enter(&state, env).await?;
    tx.require(Permission::MembersManage)?;
    let inv = invitations::revoke(&mut tx, state.vault(), id, OffsetDateTime::now_utc()).await?;
    tx.audit(AuditEvent::success("invitation.revoked", "invitation", id))
        .await?;
    tx.commit().await?;
    Ok(axum::Json(inv))
}

/// Built-in roles and this environment's custom roles.
#[utoipa::path(get, path = "/v1/environments/{environment_id}/roles", tag = "roles", params(("environment_id" = Uuid, Path)),
    responses((status = 200, body = RoleCatalog), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_roles(
    State(state): State<AppState>,
    auth: Auth,
    Path(env): Path<EnvironmentId>,
) -> ApiResult<axum::Json<RoleCatalog>> {
    let mut tx = auth.enter(&state, env).await?;
    tx.require(Permission::MembersRead)?;
    let custom = roles::list(&mut tx).await?;
    tx.commit().await?;
    let builtin = BuiltinRole::ALL
        .iter()
        .map(|r| BuiltinRoleInfo {
            name: r.name().into(),
            description: r.description().into(),
            permissions: r
                .permissions()
                .names()
                .into_iter()
                .map(str::to_owned)
                .collect(),
        })
        .collect();
    Ok(axum::Json(RoleCatalog { builtin, custom }))
}

fn role_definition(req: &RoleDefinition) -> ApiResult<(String, String, PermissionSet)> {
    let name = validate::name("name", &req.name, 100)?;
    if BuiltinRole::parse(&name.to_lowercase()).is_some() {
        return Err(ApiError::bad_request(
            "invalid_input",
            format!("`{name}` is the name of a built-in role"),
        ));
    }
    if req.description.chars().count() > 1000 {
        return Err(ApiError::bad_request(
            "invalid_input",
            "description: must be at most 1000 characters",
        ));
    }
    let perms = PermissionSet::parse_names(&req.permissions).map_err(|p| {
        ApiError::bad_request("invalid_permission", format!("`{p}` is not a permission"))
    })?;
    if perms.contains(Permission::EnvironmentDelete)
        || perms.contains(Permission::OwnershipTransfer)
    {
        return Err(ApiError::bad_request(
            "invalid_permission",
            "environment.delete and ownership.transfer belong to the owner alone",
        ));
    }
    Ok((name, req.description.clone(), perms))
}

/// Define a custom role (R4). It cannot carry a permission the caller does not hold.
#[utoipa::path(post, path = "/v1/environments/{environment_id}/roles", tag = "roles", params(("environment_id" = Uuid, Path)), request_body = RoleDefinition,
    responses((status = 201, body = CustomRole), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create_role(
    State(state): State<AppState>,
    auth: Auth,
    Path(env): Path<EnvironmentId>,
    Json(req): Json<RoleDefinition>,
) -> ApiResult<impl IntoResponse> {
    let mut tx = auth.enter(&state, env).await?;
    tx.require(Permission::RolesManage)?;
    let (name, description, perms) = role_definition(&req)?;
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
    Ok((StatusCode::CREATED, axum::Json(role)))
}

/// Redefine a custom role; members holding it get the new permissions at once (R5: audited).
#[utoipa::path(patch, path = "/v1/environments/{environment_id}/roles/{role_id}", tag = "roles",
    params(("environment_id" = Uuid, Path), ("role_id" = Uuid, Path)), request_body = RoleDefinition,
    responses((status = 200, body = CustomRole), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update_role(
    State(state): State<AppState>,
    auth: Auth,
    Path((env, id)): Path<(EnvironmentId, RoleId)>,
    Json(req): Json<RoleDefinition>,
) -> ApiResult<axum::Json<CustomRole>> {
    let mut tx = auth.enter(&state, env).await?;
    tx.require(Permission::RolesManage)?;
    let (name, description, perms) = role_definition(&req)?;
    let before = roles::get(&mut tx, id).await?;
    let old = PermissionSet::parse_names(&before.permissions)
        .map_err(|p| ApiError::Internal(format!("stored permission {p}")))?;
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
    Ok(axum::Json(after))
}

#[utoipa::path(delete, path = "/v1/environments/{environment_id}/roles/{role_id}", tag = "roles",
    params(("environment_id" = Uuid, Path), ("role_id" = Uuid, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "the role is still held")))]
pub async fn delete_role(
    State(state): State<AppState>,
    auth: Auth,
    Path((env, id)): Path<(EnvironmentId, RoleId)>,
) -> ApiResult<StatusCode> {
    let mut tx = auth.enter(&state, env).await?;
    tx.require(Permission::RolesManage)?;
    let before = roles::get(&mut tx, id).await?;
    let perms = PermissionSet::parse_names(&before.permissions)
        .map_err(|p| ApiError::Internal(format!("stored permission {p}")))?;
    ensure_assignable(&tx, RoleRef::Custom(id), perms)?;
    roles::delete(&mut tx, id).await?;
    tx.audit(AuditEvent::success("role.deleted", "role", id).before(&before))
        .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/v1/environments/{environment_id}/tokens", tag = "tokens", params(("environment_id" = Uuid, Path), PageQuery),
    responses((status = 200, body = Page<ApiToken>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_tokens(
    State(state): State<AppState>,
    auth: Auth,
    Path(env): Path<EnvironmentId>,
    Query(q): Query<PageQuery>,
) -> ApiResult<axum::Json<Page<ApiToken>>> {
    let mut tx = auth.enter(&state, env).await?;
    tx.require(Permission::TokensManage)?;
    let list = tokens::list(&mut tx, q.page()).await?;
    tx.commit().await?;
    Ok(axum::Json(list.into()))
}

/// Create an API token for this environment. Returned once; stored only as SHA-256 (E3).
#[utoipa::path(post, path = "/v1/environments/{environment_id}/tokens", tag = "tokens", params(("environment_id" = Uuid, Path)), request_body = NewToken,
    responses((status = 201, body = TokenIssued), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn create_token(
    State(state): State<AppState>,
    auth: Auth,
    Path(env): Path<EnvironmentId>,
    Json(req): Json<NewToken>,
) -> ApiResult<impl IntoResponse> {
    let mut tx = auth.enter(&state, env).await?;
    tx.require(Permission::TokensManage)?;
    let creator = tx.caller().actor.identity().ok_or_else(|| {
        ApiError::ForbiddenReason("API tokens are created by people, not by other tokens".into())
    })?;
    let name = validate::name("name", &req.name, 200)?;
    let role = parse_role(&req.role)?;
    let granted = role_permissions(&mut tx, role).await?;
    ensure_assignable(&tx, role, granted)?;
    let expires_at = match req.expires_in_days {
        Some(d @ 1..=365) => Some(OffsetDateTime::now_utc() + time::Duration::days(i64::from(d))),
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_input",
                "expires_in_days: must be between 1 and 365",
            ))
        }
        None => None,
    };
    let (token, hash) = token::generate(TokenKind::ApiToken);
    let id = ApiTokenId::new();
    let api_token = tokens::create(
        &mut tx,
        id,
        &name,
        &hash,
        &token::display_hint(token.expose()),
        role,
        creator.as_uuid(),
        OffsetDateTime::now_utc(),
        expires_at,
    )
    .await?;
    tx.audit(AuditEvent::success("token.created", "api_token", id).after(&api_token))
        .await?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(TokenIssued {
            token: token.expose().to_owned(),
            api_token,
        }),
    ))
}

#[utoipa::path(delete, path = "/v1/environments/{environment_id}/tokens/{token_id}", tag = "tokens",
    params(("environment_id" = Uuid, Path), ("token_id" = Uuid, Path)),
    responses((status = 200, body = ApiToken), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn revoke_token(
    State(state): State<AppState>,
    auth: Auth,
    Path((env, id)): Path<(EnvironmentId, ApiTokenId)>,
) -> ApiResult<axum::Json<ApiToken>> {
    let mut tx = auth.enter(&state, env).await?;
    tx.require(Permission::TokensManage)?;
    let t = tokens::revoke(&mut tx, id, OffsetDateTime::now_utc()).await?;
    tx.audit(AuditEvent::success("token.revoked", "api_token", id))
        .await?;
    tx.commit().await?;
    Ok(axum::Json(t))
}

/// Read the audit log (owner, admin, auditor). Reading is itself audited (L5).
#[utoipa::path(get, path = "/v1/environments/{environment_id}/audit", tag = "audit", params(("environment_id" = Uuid, Path), AuditQuery),
    responses((status = 200, body = Page<AuditEntry>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_audit(
    State(state): State<AppState>,
    auth: Auth,
    Path(env): Path<EnvironmentId>,
    Query(q): Query<AuditQuery>,
) -> ApiResult<axum::Json<Page<AuditEntry>>> {
    let mut tx = auth.enter(&state, env).await?;
    tx.require(Permission::AuditRead)?;
    let filter = audit_log::Filter {
        action: q.action.clone(),
        actor_id: q.actor_id,
        target_id: q.target_id.clone(),
        from: parse_time(q.from.as_deref(), "from")?,
        to: parse_time(q.to.as_deref(), "to")?,
    };
    let page = audit_log::list(
        &mut tx,
        portcullis_store::queries::Page::new(q.after, q.limit),
        &filter,
    )
    .await?;
    tx.audit(
        AuditEvent::success("audit.read", "audit_log", env)
            .after(serde_json::json!({ "returned": page.items.len(), "action": q.action })),
    )
    .await?;
    tx.commit().await?;
    Ok(axum::Json(page.into()))
}
