//! Reading an environment's audit log. Export, checkpoints and proofs are in `audit`.

use axum::extract::State;
use portcullis_core::EnvironmentId;
use portcullis_service::audit_log;
use serde::Deserialize;
use uuid::Uuid;

use super::Page;
use crate::auth::Auth;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{Path, Query};
use crate::state::AppState;
use crate::views::audit_log::AuditEntry;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    pub after: Option<Uuid>,
    /// Items per page, 1-200 (default 50); a value outside is taken as the nearer bound.
    pub limit: Option<i64>,
    /// Only this action, e.g. `member.role_changed`.
    #[param(schema_with = super::input::filter_text)]
    pub action: Option<String>,
    pub actor_id: Option<Uuid>,
    #[param(schema_with = super::input::filter_text)]
    pub target_id: Option<String>,
    /// RFC 3339; entries at or after this time.
    #[param(schema_with = super::input::time)]
    pub from: Option<String>,
    /// RFC 3339; entries before this time.
    #[param(schema_with = super::input::time)]
    pub to: Option<String>,
}

impl From<AuditQuery> for audit_log::AuditQuery {
    fn from(q: AuditQuery) -> Self {
        audit_log::AuditQuery {
            page: portcullis_store::queries::Page::new(q.after, q.limit),
            action: q.action,
            actor_id: q.actor_id,
            target_id: q.target_id,
            from: q.from,
            to: q.to,
        }
    }
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
    let page = audit_log::list_audit(&state, &auth, env, q.into()).await?;
    Ok(axum::Json(page.into()))
}
