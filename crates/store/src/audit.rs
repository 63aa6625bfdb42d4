//! The audit writer. An entry is inserted in the same transaction as the mutation it
//! describes, so the two commit together or not at all (L7). The table refuses UPDATE,
//! DELETE and TRUNCATE (L2); hash chaining and checkpoints come with the audit-trail work.

use portcullis_core::AuditId;
use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::tx::{Actor, AuthTx, RequestMeta, TenantTx};
use crate::{StoreError, PLATFORM_SCOPE};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
    Denied,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Denied => "denied",
        }
    }
}

/// One audit entry. `action` is namespaced (`member.role_changed`); `before`/`after` carry
/// the prior and new values of what changed, never secrets.
#[derive(Clone, Debug)]
pub struct AuditEvent {
    pub action: &'static str,
    pub target_type: &'static str,
    pub target_id: Option<String>,
    pub outcome: Outcome,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

impl AuditEvent {
    pub fn success(
        action: &'static str,
        target_type: &'static str,
        target_id: impl ToString,
    ) -> Self {
        AuditEvent {
            action,
            target_type,
            target_id: Some(target_id.to_string()),
            outcome: Outcome::Success,
            before: None,
            after: None,
        }
    }

    pub fn before(mut self, value: impl Serialize) -> Self {
        self.before = serde_json::to_value(value).ok();
        self
    }

    pub fn after(mut self, value: impl Serialize) -> Self {
        self.after = serde_json::to_value(value).ok();
        self
    }

    pub fn outcome(mut self, outcome: Outcome) -> Self {
        self.outcome = outcome;
        self
    }
}

async fn insert(
    conn: &mut sqlx::PgConnection,
    environment: Uuid,
    actor: Actor,
    meta: &RequestMeta,
    event: AuditEvent,
) -> Result<AuditId, StoreError> {
    let id = AuditId::new();
    sqlx::query(
        "INSERT INTO audit_log (environment_id, audit_id, occurred_at, actor_type, actor_id, action,
                                target_type, target_id, outcome, before, after, request_id, ip, user_agent)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
    )
    .bind(environment)
    .bind(id.as_uuid())
    .bind(OffsetDateTime::now_utc())
    .bind(actor.kind())
    .bind(actor.id())
    .bind(event.action)
    .bind(event.target_type)
    .bind(event.target_id)
    .bind(event.outcome.as_str())
    .bind(event.before)
    .bind(event.after)
    .bind(meta.request_id.as_deref())
    .bind(meta.ip.as_deref())
    .bind(meta.user_agent.as_deref())
    .execute(conn)
    .await?;
    Ok(id)
}

impl TenantTx {
    /// Records `event` in this environment's audit log, as the transaction's caller.
    pub async fn audit(&mut self, event: AuditEvent) -> Result<AuditId, StoreError> {
        let environment = self.environment_id().as_uuid();
        let actor = self.caller().actor;
        let meta = self.meta().clone();
        insert(self.conn(), environment, actor, &meta, event).await
    }
}

impl AuthTx {
    /// Records a platform-level event (sign-up, login) in the platform audit scope.
    pub async fn audit(&mut self, actor: Actor, event: AuditEvent) -> Result<AuditId, StoreError> {
        let meta = self.meta().clone();
        insert(self.conn(), PLATFORM_SCOPE, actor, &meta, event).await
    }
}
