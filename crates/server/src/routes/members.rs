//! Members of an environment: listing, role changes, removal, erasure and the ownership
//! transfer.

use axum::extract::State;
use axum::http::StatusCode;
use portcullis_core::{EnvironmentId, IdentityId};
use portcullis_service::members;
use serde::Deserialize;
use uuid::Uuid;

use super::{Page, PageQuery};
use crate::auth::Auth;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{Json, Path, Query};
use crate::state::AppState;
use crate::views::members::{Erasure, Member};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleChange {
    /// A built-in role (`admin`, `contributor`, `reviewer`, `viewer`, `auditor`, `guest`) or `custom:<role id>`.
    #[schema(schema_with = super::input::assignable_role)]
    pub role: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OwnershipTransfer {
    /// The member who becomes owner. The current owner becomes admin.
    pub identity_id: Uuid,
}

#[utoipa::path(get, path = "/v1/environments/{environment_id}/members", tag = "members", params(("environment_id" = Uuid, Path), PageQuery),
    responses((status = 200, body = Page<Member>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_members(
    State(state): State<AppState>,
    auth: Auth,
    Path(env): Path<EnvironmentId>,
    Query(q): Query<PageQuery>,
) -> ApiResult<axum::Json<Page<Member>>> {
    let page = members::list_members(&state, &auth, env, q.page()).await?;
    Ok(axum::Json(page.into()))
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
    let member = members::update_member(&state, &auth, env, identity, &req.role).await?;
    Ok(axum::Json(member.into()))
}

#[utoipa::path(delete, path = "/v1/environments/{environment_id}/members/{identity_id}", tag = "members",
    params(("environment_id" = Uuid, Path), ("identity_id" = Uuid, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn remove_member(
    State(state): State<AppState>,
    auth: Auth,
    Path((env, identity)): Path<(EnvironmentId, IdentityId)>,
) -> ApiResult<StatusCode> {
    members::remove_member(&state, &auth, env, identity).await?;
    Ok(StatusCode::NO_CONTENT)
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
    let erasure = members::erase_subject(&state, &auth, env, identity).await?;
    Ok(axum::Json(erasure.into()))
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
    let to = IdentityId::from_uuid(req.identity_id);
    let owner = members::transfer_ownership(&state, &auth, env, to).await?;
    Ok(axum::Json(owner.into()))
}
