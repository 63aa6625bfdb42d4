//! The audit log listing.

use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub audit_id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub occurred_at: OffsetDateTime,
    pub actor_type: String,
    pub actor_id: Option<Uuid>,
    pub action: String,
    pub target_type: String,
    pub target_id: Option<String>,
    pub outcome: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
    pub request_id: Option<String>,
    /// The request's IP address and user agent. A person's are stored sealed under their
    /// subject key (D3) and shown opened; `[erased]` once that key was destroyed.
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

impl From<portcullis_store::queries::audit_log::AuditEntry> for AuditEntry {
    fn from(e: portcullis_store::queries::audit_log::AuditEntry) -> Self {
        AuditEntry {
            audit_id: e.audit_id,
            occurred_at: e.occurred_at,
            actor_type: e.actor_type,
            actor_id: e.actor_id,
            action: e.action,
            target_type: e.target_type,
            target_id: e.target_id,
            outcome: e.outcome,
            before: e.before,
            after: e.after,
            request_id: e.request_id,
            ip: e.ip,
            user_agent: e.user_agent,
        }
    }
}
