//! The audit writer. An entry is submitted (`audit_pending`) in the same transaction as the
//! mutation it describes, so the two commit together or not at all (L7); [`crate::sequencer`]
//! then chains it. The log refuses UPDATE, DELETE and TRUNCATE (L2). Entries are hash-chained
//! and form an RFC 6962 Merkle tree whose frontier lives in `audit_heads` and whose subtree
//! nodes of 256 leaves or more are stored in `audit_subtrees` (L3).

use portcullis_core::AuditId;
use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

pub use crate::chain::{entry_body, jsonb_exact, rfc3339_micros};
use crate::custody::SubjectKeys;
use crate::subjects;
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
        self.before = serde_json::to_value(value).ok().map(jsonb_exact);
        self
    }

    pub fn after(mut self, value: impl Serialize) -> Self {
        self.after = serde_json::to_value(value).ok().map(jsonb_exact);
        self
    }

    pub fn outcome(mut self, outcome: Outcome) -> Self {
        self.outcome = outcome;
        self
    }
}

fn truncate_micros(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(t.microsecond() * 1000).unwrap_or(t)
}

/// Submits one entry for `environment`'s chain: inserts it into `audit_pending` in the caller's
/// transaction, so it commits or rolls back with the mutation it describes (L7). No shared
/// lock is taken; [`crate::sequencer`] gives it its sequence number and hashes after commit.
/// One round trip (two when the actor's subject key is created first).
pub(crate) async fn insert(
    conn: &mut sqlx::PgConnection,
    keys: Option<&SubjectKeys>,
    environment: Uuid,
    actor: Actor,
    meta: &RequestMeta,
    event: AuditEvent,
) -> Result<AuditId, StoreError> {
    insert_at(conn, keys, environment, actor, meta, event, None).await
}

/// [`insert`] with the entry's time given (`None`: now). Only the test support backdates
/// entries, to build months of history (L6).
pub(crate) async fn insert_at(
    conn: &mut sqlx::PgConnection,
    keys: Option<&SubjectKeys>,
    environment: Uuid,
    actor: Actor,
    meta: &RequestMeta,
    event: AuditEvent,
    occurred_at: Option<OffsetDateTime>,
) -> Result<AuditId, StoreError> {
    let id = AuditId::new();
    #[cfg(feature = "bench-unaudited")]
    if bench::unaudited() {
        return Ok(id);
    }
    let (ip, user_agent) = personal_metadata(conn, keys, environment, actor, meta, id).await?;
    let occurred_at = truncate_micros(occurred_at.unwrap_or_else(OffsetDateTime::now_utc));
    sqlx::query(
        "INSERT INTO audit_pending (environment_id, audit_id, occurred_at, actor_type, actor_id, action,
                                    action_version, target_type, target_id, outcome, before, after,
                                    request_id, ip, user_agent)
         VALUES ($1, $2, $3, $4, $5, $6, 1, $7, $8, $9, $10, $11, $12, $13, $14)",
    )
    .bind(environment)
    .bind(id.as_uuid())
    .bind(occurred_at)
    .bind(actor.kind())
    .bind(actor.id())
    .bind(event.action)
    .bind(event.target_type)
    .bind(&event.target_id)
    .bind(event.outcome.as_str())
    .bind(event.before.map(jsonb_exact))
    .bind(event.after.map(jsonb_exact))
    .bind(&meta.request_id)
    .bind(&ip)
    .bind(&user_agent)
    .execute(&mut *conn)
    .await?;
    Ok(id)
}

/// The person whose data the request metadata is: the identity acting, or the creator of the
/// API token acting. System actions carry none; anonymous requests (failed logins) have no
/// subject to erase and keep their metadata in clear for security monitoring.
fn subject_of(actor: Actor) -> Option<Uuid> {
    match actor {
        Actor::Identity(id) => Some(id.as_uuid()),
        Actor::ApiToken { created_by, .. } => Some(created_by.as_uuid()),
        Actor::System | Actor::Anonymous | Actor::OperatorToken(_) => None,
    }
}

/// The request IP and user agent as stored: sealed under the subject's key (D3) when the actor
/// is a person.
async fn personal_metadata(
    conn: &mut sqlx::PgConnection,
    keys: Option<&SubjectKeys>,
    scope: Uuid,
    actor: Actor,
    meta: &RequestMeta,
    id: AuditId,
) -> Result<(Option<String>, Option<String>), StoreError> {
    let Some(subject) = subject_of(actor) else {
        return Ok((meta.ip.clone(), meta.user_agent.clone()));
    };
    let audit_id = id.as_uuid().to_string();
    let fields = subjects::RequestMetaFields {
        scope,
        table: "audit_log",
        row: &audit_id,
    };
    fields
        .seal(
            conn,
            keys,
            subject,
            meta.ip.as_deref(),
            meta.user_agent.as_deref(),
        )
        .await
}

impl TenantTx {
    /// Records `event` in this environment's audit log, as the transaction's caller.
    pub async fn audit(&mut self, event: AuditEvent) -> Result<AuditId, StoreError> {
        let environment = self.environment_id().as_uuid();
        let actor = self.caller().actor;
        let meta = self.meta().clone();
        let (conn, keys) = self.conn_and_keys();
        let id = insert(conn, keys, environment, actor, &meta, event).await?;
        self.submitted();
        Ok(id)
    }
}

impl AuthTx {
    /// Records a platform-level event (sign-up, login) in the platform audit scope.
    /// `actor` must be the actor this transaction's context was signed for (the database
    /// refuses any other); a mismatch is a programming error, reported as such.
    pub async fn audit(&mut self, actor: Actor, event: AuditEvent) -> Result<AuditId, StoreError> {
        if self.actor() != actor {
            return Err(StoreError::Integrity(format!(
                "audit entry as {} in a transaction signed for {}",
                actor.kind(),
                self.actor().kind()
            )));
        }
        let meta = self.meta().clone();
        let (conn, keys) = self.conn_and_keys();
        let id = insert(conn, keys, PLATFORM_SCOPE, actor, &meta, event).await?;
        self.submitted();
        Ok(id)
    }
}

/// The benchmark-only switch (cargo feature `bench-unaudited`, off in every normal build):
/// with `BENCH_PORTCULLIS_UNAUDITED=disable-auditing` in the environment, this process writes
/// no audit entries, so bench/writes.sh can compare audited writes with the same writes
/// unaudited, from the same binary. Logged as an error once, loudly.
#[cfg(feature = "bench-unaudited")]
mod bench {
    use std::sync::OnceLock;

    pub(super) fn unaudited() -> bool {
        static OFF: OnceLock<bool> = OnceLock::new();
        *OFF.get_or_init(|| {
            let off = std::env::var("BENCH_PORTCULLIS_UNAUDITED").as_deref()
                == Ok("disable-auditing");
            if off {
                tracing::error!(
                    "AUDITING IS DISABLED in this process (benchmark build, BENCH_PORTCULLIS_UNAUDITED)"
                );
            }
            off
        })
    }
}
