//! The operator's routes: the platform audit scope (sign-ups, sign-ins, setup, refused account
//! requests), with an operator token only.

use axum::extract::State;
use portcullis_service::platform;

use super::audit_log::AuditQuery;
use super::Page;
use crate::auth::Auth;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::Query;
use crate::state::AppState;
use crate::views::audit_log::AuditEntry;

/// Read the platform audit scope (environment id `00000000-0000-0000-0000-000000000000`:
/// setup, sign-ups, sign-ins and failed sign-ins, password changes, refused account requests),
/// with the filters and paging of an environment's log. Needs an operator token
/// (`pcs_op_...`, from `portcullis operator token create`): a session or an environment's API
/// token is 403, an unknown, revoked or expired operator token 401. Reading is itself audited,
/// in the platform scope, under the operator token's id.
#[utoipa::path(get, path = "/v1/platform/audit", tag = "platform", params(AuditQuery),
    responses((status = 200, body = Page<AuditEntry>), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "`role_access_denied`: the credential is not an operator token")))]
pub async fn list_platform_audit(
    State(state): State<AppState>,
    auth: Auth,
    Query(q): Query<AuditQuery>,
) -> ApiResult<axum::Json<Page<AuditEntry>>> {
    let page = platform::list_platform_audit(&state, &auth, q.into()).await?;
    Ok(axum::Json(page.into()))
}
