//! Writers for the intelligence log and the kernel trace (L1). Like the audit log, entries are
//! written inside the caller's `TenantTx`, so they commit with the work they describe.
//!
//! Tamper evidence (L3) for these two streams comes from the audit chain: every row written
//! here is committed to by an audit entry in the same transaction (`intelligence.recorded`,
//! `trace.step_recorded`) whose `after` holds the SHA-256 of the row's canonical JSON
//! ([`intelligence_digest`], [`trace_digest`]). An edited row no longer matches its
//! commitment, a deleted one leaves a commitment without a row, and a row slipped in has no
//! commitment; the commitments themselves are chained, checkpointed and anchored like every
//! audit entry. [`check`] compares the two.

use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::chain::{jsonb_exact, rfc3339_micros};
use crate::{AuditEvent, StoreError, TenantTx};

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

/// One AI call. Its content (prompt and output) arrives sealed: the caller seals it under the
/// environment's data key for this row ([`crate::vault::INTELLIGENCE_INPUT`],
/// [`crate::vault::INTELLIGENCE_OUTPUT`], row = `entry_id`), so the store never holds it in
/// clear; the database refuses a row without it (migration 0018).
#[derive(Clone, Debug)]
pub struct IntelligenceEntry {
    /// Chosen by the caller: the sealed content is bound to it.
    pub entry_id: Uuid,
    pub workflow_id: Option<String>,
    pub model: String,
    /// e.g. `anthropic`.
    pub provider: String,
    pub key_source: KeySource,
    pub content: SealedContent,
    pub input_tokens: i32,
    pub output_tokens: i32,
    pub cache_creation_tokens: i32,
    pub cache_read_tokens: i32,
    pub cost_micros: i64,
    /// The tier the request named (`fast`, `balanced`, `deep`); `model` is the concrete one.
    pub tier: Option<&'static str>,
    /// The price registry version `cost_micros` was computed with (migration 0022).
    pub pricing_version: Option<String>,
    pub success: bool,
    pub error: Option<String>,
    /// The provider's own id for the call (its `request-id`), when it answered.
    pub upstream_request_id: Option<String>,
}

/// Prompt and output of a call, sealed with data-key version `key_version`.
#[derive(Clone)]
pub struct SealedContent {
    pub input: Vec<u8>,
    pub output: Option<Vec<u8>>,
    pub key_version: i32,
}

impl std::fmt::Debug for SealedContent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedContent")
            .field("key_version", &self.key_version)
            .finish_non_exhaustive()
    }
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

/// An intelligence-log row as stored, as far as its digest covers it. Rows written before
/// migration 0018 hold `input`/`output` in clear and none of the later columns.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct StoredIntelligence {
    pub entry_id: Uuid,
    pub occurred_at: OffsetDateTime,
    pub actor_type: String,
    pub actor_id: Option<Uuid>,
    pub workflow_id: Option<String>,
    pub model: String,
    pub key_source: String,
    pub input: Option<Value>,
    pub output: Option<Value>,
    pub reasoning_excerpt: Option<String>,
    pub input_tokens: i32,
    pub output_tokens: i32,
    pub cost_micros: i64,
    pub success: bool,
    pub error: Option<String>,
    pub request_id: Option<String>,
    pub provider: Option<String>,
    pub cache_creation_tokens: i32,
    pub cache_read_tokens: i32,
    pub upstream_request_id: Option<String>,
    pub input_ciphertext: Option<Vec<u8>>,
    pub output_ciphertext: Option<Vec<u8>>,
    pub content_key_version: Option<i32>,
    pub tier: Option<String>,
    pub pricing_version: Option<String>,
}

/// A kernel-trace row as stored.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct StoredStep {
    pub trace_id: Uuid,
    pub step: i32,
    pub occurred_at: OffsetDateTime,
    pub workflow_id: Option<String>,
    pub intelligence_entry_id: Option<Uuid>,
    pub kind: String,
    pub tool: Option<String>,
    pub tool_use_id: Option<String>,
    pub arguments: Option<Value>,
    pub result: Option<Value>,
    pub rationale: Option<String>,
}

fn sha256_hex(value: &Value) -> String {
    portcullis_audit::report::sha256_hex(&portcullis_audit::canonical::canonical_json(value))
}

/// SHA-256 (hex) of the canonical JSON of an intelligence-log row: what its audit commitment
/// holds. A sealed row (migration 0018) is committed to with its ciphertexts, so neither the
/// digest nor the chain reveals the content; a row from before keeps its original digest.
pub fn intelligence_digest(r: &StoredIntelligence) -> String {
    let mut doc = serde_json::json!({
        "entry_id": r.entry_id,
        "occurred_at": rfc3339_micros(r.occurred_at),
        "actor_type": r.actor_type,
        "actor_id": r.actor_id,
        "workflow_id": r.workflow_id,
        "model": r.model,
        "key_source": r.key_source,
        "input": r.input,
        "output": r.output,
        "reasoning_excerpt": r.reasoning_excerpt,
        "input_tokens": r.input_tokens,
        "output_tokens": r.output_tokens,
        "cost_micros": r.cost_micros,
        "success": r.success,
        "error": r.error,
        "request_id": r.request_id,
    });
    if let (Some(version), Some(obj)) = (r.content_key_version, doc.as_object_mut()) {
        let hex = |b: &Option<Vec<u8>>| b.as_deref().map(portcullis_audit::hex::encode);
        for (k, v) in [
            ("provider", serde_json::json!(r.provider)),
            (
                "cache_creation_tokens",
                serde_json::json!(r.cache_creation_tokens),
            ),
            ("cache_read_tokens", serde_json::json!(r.cache_read_tokens)),
            (
                "upstream_request_id",
                serde_json::json!(r.upstream_request_id),
            ),
            (
                "input_ciphertext",
                serde_json::json!(hex(&r.input_ciphertext)),
            ),
            (
                "output_ciphertext",
                serde_json::json!(hex(&r.output_ciphertext)),
            ),
            ("content_key_version", serde_json::json!(version)),
        ] {
            obj.insert(k.to_owned(), v);
        }
    }
    // Migration 0022: covered when set, so a row written before keeps its digest and setting,
    // changing or clearing either later changes it.
    if let Some(obj) = doc.as_object_mut() {
        for (k, v) in [("tier", &r.tier), ("pricing_version", &r.pricing_version)] {
            if let Some(v) = v {
                obj.insert(k.to_owned(), serde_json::json!(v));
            }
        }
    }
    sha256_hex(&doc)
}

/// SHA-256 (hex) of the canonical JSON of a kernel-trace row.
pub fn trace_digest(r: &StoredStep) -> String {
    sha256_hex(&serde_json::json!({
        "trace_id": r.trace_id,
        "step": r.step,
        "occurred_at": rfc3339_micros(r.occurred_at),
        "workflow_id": r.workflow_id,
        "intelligence_entry_id": r.intelligence_entry_id,
        "kind": r.kind,
        "tool": r.tool,
        "tool_use_id": r.tool_use_id,
        "arguments": r.arguments,
        "result": r.result,
        "rationale": r.rationale,
    }))
}

fn now_micros() -> OffsetDateTime {
    let t = OffsetDateTime::now_utc();
    t.replace_nanosecond(t.microsecond() * 1000).unwrap_or(t)
}

impl TenantTx {
    /// Records an AI call in this environment's intelligence log, and its commitment in the
    /// audit chain; returns its id.
    pub async fn log_intelligence(&mut self, e: IntelligenceEntry) -> Result<Uuid, StoreError> {
        let id = e.entry_id;
        let env = self.environment_id().as_uuid();
        let actor = self.caller().actor;
        let clean = |t: String| t.replace('\0', "");
        let row = StoredIntelligence {
            entry_id: id,
            occurred_at: now_micros(),
            actor_type: actor.kind().to_owned(),
            actor_id: actor.id(),
            workflow_id: e.workflow_id,
            model: clean(e.model),
            key_source: e.key_source.as_str().to_owned(),
            input: None,
            output: None,
            reasoning_excerpt: None,
            input_tokens: e.input_tokens,
            output_tokens: e.output_tokens,
            cost_micros: e.cost_micros,
            success: e.success,
            error: e.error.map(clean),
            request_id: self.meta().request_id.clone(),
            provider: Some(e.provider),
            cache_creation_tokens: e.cache_creation_tokens,
            cache_read_tokens: e.cache_read_tokens,
            upstream_request_id: e
                .upstream_request_id
                .map(|t| clean(t).chars().take(200).collect()),
            input_ciphertext: Some(e.content.input),
            output_ciphertext: e.content.output,
            content_key_version: Some(e.content.key_version),
            tier: e.tier.map(str::to_owned),
            pricing_version: e.pricing_version,
        };
        let digest = intelligence_digest(&row);
        sqlx::query(
            "INSERT INTO intelligence_log (environment_id, entry_id, occurred_at, actor_type, actor_id, workflow_id, model, key_source,
                                           input_tokens, output_tokens, cost_micros, success, error, request_id, provider,
                                           cache_creation_tokens, cache_read_tokens, upstream_request_id, input_ciphertext,
                                           output_ciphertext, content_key_version, tier, pricing_version)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23)",
        )
        .bind(env)
        .bind(id)
        .bind(row.occurred_at)
        .bind(&row.actor_type)
        .bind(row.actor_id)
        .bind(&row.workflow_id)
        .bind(&row.model)
        .bind(&row.key_source)
        .bind(row.input_tokens)
        .bind(row.output_tokens)
        .bind(row.cost_micros)
        .bind(row.success)
        .bind(&row.error)
        .bind(&row.request_id)
        .bind(&row.provider)
        .bind(row.cache_creation_tokens)
        .bind(row.cache_read_tokens)
        .bind(&row.upstream_request_id)
        .bind(&row.input_ciphertext)
        .bind(&row.output_ciphertext)
        .bind(row.content_key_version)
        .bind(&row.tier)
        .bind(&row.pricing_version)
        .execute(self.conn())
        .await?;
        self.audit(
            AuditEvent::success("intelligence.recorded", "intelligence_log", id).after(
                serde_json::json!({ "sha256": digest, "model": row.model, "success": row.success }),
            ),
        )
        .await?;
        Ok(id)
    }

    /// Records one step of an agent's trace, and its commitment in the audit chain.
    pub async fn trace_step(&mut self, s: TraceStep) -> Result<(), StoreError> {
        let env = self.environment_id().as_uuid();
        let row = StoredStep {
            trace_id: s.trace_id,
            step: s.step,
            occurred_at: now_micros(),
            workflow_id: s.workflow_id,
            intelligence_entry_id: s.intelligence_entry_id,
            kind: s.kind.to_owned(),
            tool: s.tool,
            tool_use_id: s.tool_use_id,
            arguments: s.arguments.map(jsonb_exact),
            result: s.result.map(jsonb_exact),
            rationale: excerpt(s.rationale),
        };
        let digest = trace_digest(&row);
        sqlx::query(
            "INSERT INTO kernel_trace (environment_id, trace_id, step, occurred_at, workflow_id, intelligence_entry_id, kind, tool,
                                       tool_use_id, arguments, result, rationale)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(env)
        .bind(row.trace_id)
        .bind(row.step)
        .bind(row.occurred_at)
        .bind(&row.workflow_id)
        .bind(row.intelligence_entry_id)
        .bind(&row.kind)
        .bind(&row.tool)
        .bind(&row.tool_use_id)
        .bind(&row.arguments)
        .bind(&row.result)
        .bind(&row.rationale)
        .execute(self.conn())
        .await?;
        self.audit(
            AuditEvent::success(
                "trace.step_recorded",
                "kernel_trace",
                format!("{}:{}", row.trace_id, row.step),
            )
            .after(serde_json::json!({ "sha256": digest, "kind": row.kind })),
        )
        .await?;
        Ok(())
    }
}

const SELECT_INTELLIGENCE: &str = "SELECT entry_id, occurred_at, actor_type, actor_id, workflow_id, model, key_source, input, output,
        reasoning_excerpt, input_tokens, output_tokens, cost_micros, success, error, request_id, provider,
        cache_creation_tokens, cache_read_tokens, upstream_request_id, input_ciphertext, output_ciphertext,
        content_key_version, tier, pricing_version
   FROM intelligence_log WHERE environment_id = $1 ORDER BY entry_id LIMIT $2";

/// The environment's intelligence-log rows, oldest first, at most `limit` (all with `None`);
/// needs `audit.read`. Sealed content stays sealed: the caller opens it.
pub async fn intelligence_rows(
    tx: &mut TenantTx,
    limit: Option<i64>,
) -> Result<Vec<StoredIntelligence>, StoreError> {
    let env = tx.environment_id().as_uuid();
    Ok(sqlx::query_as(SELECT_INTELLIGENCE)
        .bind(env)
        .bind(limit)
        .fetch_all(tx.conn())
        .await?)
}

/// What [`check`] found wrong with a stream row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StreamProblem {
    /// `intelligence_log` or `kernel_trace`.
    pub stream: &'static str,
    /// The row: an entry id, or `trace_id:step`.
    pub row: String,
    /// `changed` (does not match its commitment), `missing` (committed, not found) or
    /// `uncommitted` (found, never committed).
    pub kind: &'static str,
}

/// How the two streams compare with their commitments in the audit chain.
#[derive(Clone, Debug, Default, Serialize)]
pub struct StreamsReport {
    pub intelligence_rows: u64,
    pub trace_rows: u64,
    pub problems: Vec<StreamProblem>,
}

/// Compares every intelligence-log and kernel-trace row of the transaction's environment with
/// the commitments in its audit log. Trust in the commitments comes from verifying the audit
/// chain against signed, anchored checkpoints, which the caller does too.
pub async fn check(tx: &mut TenantTx) -> Result<StreamsReport, StoreError> {
    let env = tx.environment_id().as_uuid();
    let mut report = StreamsReport::default();
    let committed = commitments(tx, env, "intelligence.recorded").await?;
    let rows: Vec<StoredIntelligence> = sqlx::query_as(SELECT_INTELLIGENCE)
        .bind(env)
        .bind(None::<i64>)
        .fetch_all(tx.conn())
        .await?;
    report.intelligence_rows = rows.len() as u64;
    compare(
        "intelligence_log",
        rows.iter()
            .map(|r| (r.entry_id.to_string(), intelligence_digest(r))),
        committed,
        &mut report.problems,
    );

    let committed = commitments(tx, env, "trace.step_recorded").await?;
    let rows: Vec<StoredStep> = sqlx::query_as(
        "SELECT trace_id, step, occurred_at, workflow_id, intelligence_entry_id, kind, tool, tool_use_id,
                arguments, result, rationale
           FROM kernel_trace WHERE environment_id = $1 ORDER BY trace_id, step",
    )
    .bind(env)
    .fetch_all(tx.conn())
    .await?;
    report.trace_rows = rows.len() as u64;
    compare(
        "kernel_trace",
        rows.iter()
            .map(|r| (format!("{}:{}", r.trace_id, r.step), trace_digest(r))),
        committed,
        &mut report.problems,
    );
    Ok(report)
}

/// Row key -> committed digest, from the audit entries of `action`.
async fn commitments(
    tx: &mut TenantTx,
    env: Uuid,
    action: &str,
) -> Result<std::collections::HashMap<String, String>, StoreError> {
    let rows: Vec<(Option<String>, Option<Value>)> = sqlx::query_as(
        "SELECT target_id, after FROM audit_log WHERE environment_id = $1 AND action = $2",
    )
    .bind(env)
    .bind(action)
    .fetch_all(tx.conn())
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(target, after)| {
            let digest = after.as_ref()?["sha256"].as_str()?.to_owned();
            Some((target?, digest))
        })
        .collect())
}

fn compare(
    stream: &'static str,
    rows: impl Iterator<Item = (String, String)>,
    mut committed: std::collections::HashMap<String, String>,
    problems: &mut Vec<StreamProblem>,
) {
    for (row, digest) in rows {
        match committed.remove(&row) {
            Some(d) if d == digest => {}
            Some(_) => problems.push(StreamProblem {
                stream,
                row,
                kind: "changed",
            }),
            None => problems.push(StreamProblem {
                stream,
                row,
                kind: "uncommitted",
            }),
        }
    }
    let mut missing: Vec<String> = committed.into_keys().collect();
    missing.sort();
    problems.extend(missing.into_iter().map(|row| StreamProblem {
        stream,
        row,
        kind: "missing",
    }));
}
