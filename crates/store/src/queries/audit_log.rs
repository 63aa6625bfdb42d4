use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Page, Paged};
use crate::{StoreError, TenantTx};

#[derive(Clone, Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
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
}

#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub action: Option<String>,
    pub actor_id: Option<Uuid>,
    pub target_id: Option<String>,
}

pub async fn list(
    tx: &mut TenantTx,
    page: Page,
    filter: &Filter,
) -> Result<Paged<AuditEntry>, StoreError> {
    let env = tx.environment_id().as_uuid();
    let rows: Vec<AuditEntry> = sqlx::query_as(
        "SELECT audit_id, occurred_at, actor_type, actor_id, action, target_type, target_id, outcome,
                before, after, request_id
           FROM audit_log
          WHERE environment_id = $1 AND ($2::uuid IS NULL OR audit_id > $2)
            AND ($4::text IS NULL OR action = $4)
            AND ($5::uuid IS NULL OR actor_id = $5)
            AND ($6::text IS NULL OR target_id = $6)
          ORDER BY audit_id LIMIT $3",
    )
    .bind(env)
    .bind(page.after)
    .bind(page.fetch_limit())
    .bind(filter.action.as_deref())
    .bind(filter.actor_id)
    .bind(filter.target_id.as_deref())
    .fetch_all(tx.conn())
    .await?;
    Ok(Paged::from_rows(rows, page, |e| e.audit_id))
}
