//! Reading an environment's audit log (owner, admin, auditor). Reading is itself audited (L5).

use portcullis_core::{EnvironmentId, Permission};
use portcullis_store::queries::audit_log::{self, AuditEntry};
use portcullis_store::queries::{Page, Paged};
use portcullis_store::AuditEvent;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{Principal, ServiceError, ServiceResult, Services};

/// Which entries to read. Times are RFC 3339 as the caller wrote them.
#[derive(Debug)]
pub struct AuditQuery {
    pub page: Page,
    /// Only this action, e.g. `member.role_changed`.
    pub action: Option<String>,
    pub actor_id: Option<Uuid>,
    pub target_id: Option<String>,
    /// Entries at or after this time.
    pub from: Option<String>,
    /// Entries before this time.
    pub to: Option<String>,
}

/// An RFC 3339 time given for `field`, or `invalid_query`.
pub fn parse_time(
    value: Option<&str>,
    field: &'static str,
) -> ServiceResult<Option<OffsetDateTime>> {
    value
        .map(|v| {
            OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339).map_err(|_| {
                ServiceError::bad_request(
                    "invalid_query",
                    format!("{field}: expected an RFC 3339 time such as 2026-11-01T00:00:00Z"),
                )
            })
        })
        .transpose()
}

/// A page of the environment's audit entries, with personal data opened (or
/// `[erased]`).
impl AuditQuery {
    /// The store's filter for this query; a malformed `from`/`to` is a clear input error.
    pub(crate) fn filter(&self) -> ServiceResult<audit_log::Filter> {
        Ok(audit_log::Filter {
            action: self.action.clone(),
            actor_id: self.actor_id,
            target_id: self.target_id.clone(),
            from: parse_time(self.from.as_deref(), "from")?,
            to: parse_time(self.to.as_deref(), "to")?,
        })
    }
}

pub async fn list_audit(
    services: &Services,
    caller: &Principal,
    env: EnvironmentId,
    query: AuditQuery,
) -> ServiceResult<Paged<AuditEntry>> {
    let mut tx = caller.enter(services, env).await?;
    tx.require(Permission::AuditRead)?;
    services.store().sequence(env.as_uuid()).await?;
    let filter = query.filter()?;
    let page = audit_log::list(&mut tx, query.page, &filter).await?;
    tx.audit(
        AuditEvent::success("audit.read", "audit_log", env)
            .after(serde_json::json!({ "returned": page.items.len(), "action": query.action })),
    )
    .await?;
    tx.commit().await?;
    Ok(page)
}
