//! Writers for the intelligence log and the kernel trace (L1). Like the audit log, entries are
//! written inside the caller's `TenantTx`, so they commit with the work they describe.

use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{StoreError, TenantTx};

/// Whose model key paid for a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeySource {
    /// The environment's own key (bring your own key).
    Byok,
    Platform,
    SelfHosted,
}

impl KeySource {
    fn as_str(self) -> &'static str {
        match self {
            KeySource::Byok => "byok",
            KeySource::Platform => "platform",
            KeySource::SelfHosted => "self_hosted",
        }
    }
}

/// One AI call. `input` and `output` must already be redacted of secrets.
#[derive(Clone, Debug)]
pub struct IntelligenceEntry {
    pub workflow_id: Option<String>,
    pub model: String,
    pub key_source: KeySource,
    pub input: Value,
    pub output: Option<Value>,
    pub reasoning_excerpt: Option<String>,
    pub input_tokens: i32,
    pub output_tokens: i32,
    pub cost_micros: i64,
    pub success: bool,
    pub error: Option<String>,
}

/// One step of an agent's work.
#[derive(Clone, Debug)]
pub struct TraceStep {
    pub trace_id: Uuid,
    pub step: i32,
    pub workflow_id: Option<String>,
    pub intelligence_entry_id: Option<Uuid>,
    /// `tool_call`, `tool_result`, `decision`, `approval` or `note`.
    pub kind: &'static str,
    pub tool: Option<String>,
    pub tool_use_id: Option<String>,
    pub arguments: Option<Value>,
    pub result: Option<Value>,
    pub rationale: Option<String>,
}

fn excerpt(text: Option<String>) -> Option<String> {
    text.map(|t| t.chars().take(4000).collect())
}

impl TenantTx {
    /// Records an AI call in this environment's intelligence log; returns its id.
    pub async fn log_intelligence(&mut self, e: IntelligenceEntry) -> Result<Uuid, StoreError> {
        let id = Uuid::now_v7();
        let env = self.environment_id().as_uuid();
        let actor = self.caller().actor;
        let request_id = self.meta().request_id.clone();
        sqlx::query(
            "INSERT INTO intelligence_log (environment_id, entry_id, occurred_at, actor_type, actor_id, workflow_id, model, key_source,
                                           input, output, reasoning_excerpt, input_tokens, output_tokens, cost_micros, success, error, request_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
        )
        .bind(env)
        .bind(id)
        .bind(OffsetDateTime::now_utc())
        .bind(actor.kind())
        .bind(actor.id())
        .bind(e.workflow_id)
        .bind(e.model)
        .bind(e.key_source.as_str())
        .bind(e.input)
        .bind(e.output)
        .bind(excerpt(e.reasoning_excerpt))
        .bind(e.input_tokens)
        .bind(e.output_tokens)
        .bind(e.cost_micros)
        .bind(e.success)
        .bind(e.error)
        .bind(request_id)
        .execute(self.conn())
        .await?;
        Ok(id)
    }

    /// Records one step of an agent's trace.
    pub async fn trace_step(&mut self, s: TraceStep) -> Result<(), StoreError> {
        let env = self.environment_id().as_uuid();
        sqlx::query(
            "INSERT INTO kernel_trace (environment_id, trace_id, step, occurred_at, workflow_id, intelligence_entry_id, kind, tool,
                                       tool_use_id, arguments, result, rationale)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(env)
        .bind(s.trace_id)
        .bind(s.step)
        .bind(OffsetDateTime::now_utc())
        .bind(s.workflow_id)
        .bind(s.intelligence_entry_id)
        .bind(s.kind)
        .bind(s.tool)
        .bind(s.tool_use_id)
        .bind(s.arguments)
        .bind(s.result)
        .bind(excerpt(s.rationale))
        .execute(self.conn())
        .await?;
        Ok(())
    }
}
