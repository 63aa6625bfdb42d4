//! Invitations of an environment: list, create, revoke. Accepting one is an account route.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use portcullis_core::{EnvironmentId, InvitationId};
use portcullis_service::invitations;
use serde::Deserialize;

use super::{Page, PageQuery};
use crate::auth::Auth;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{Json, Path, Query};
use crate::state::AppState;
use crate::views::invitations::{Invitation, InvitationIssued};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewInvitation {
    #[schema(schema_with = super::input::email)]
    pub email: String,
    #[schema(schema_with = super::input::assignable_role)]
    pub role: String,
}

impl From<NewInvitation> for invitations::NewInvitation {
    fn from(r: NewInvitation) -> Self {
        invitations::NewInvitation {
            email: r.email,
            role: r.role,
        }
    }
}

#[utoipa::path(get, path = "/v1/environments/{environment_id}/invitations", tag = "members", params(("environment_id" = Uuid, Path), PageQuery),
    responses((status = 200, body = Page<Invitation>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_invitations(
    State(state): State<AppState>,
    auth: Auth,
    Path(env): Path<EnvironmentId>,
    Query(q): Query<PageQuery>,
) -> ApiResult<axum::Json<Page<Invitation>>> {
    let list = invitations::list_invitations(&state, &auth, env, q.page()).await?;
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
    let issued = invitations::create_invitation(&state, &auth, env, req.into()).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(InvitationIssued::from(issued)),
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
    let inv = invitations::revoke_invitation(&state, &auth, env, id).await?;
    Ok(axum::Json(inv.into()))
}
