//! Audit trail access for owners, admins and auditors (L3, L5): streamed exports, signed
//! checkpoints, inclusion and consistency proofs, and the public signing keys. Every read is
//! itself audited.

use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use portcullis_core::EnvironmentId;
use portcullis_service::audit_access::{self, ExportRequest};
use portcullis_service::trail;
use serde::Deserialize;

use crate::auth::{Auth, Meta};
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{Path, Query};
use crate::state::AppState;
use crate::views::audit_access::{
    AuditKeys, CheckpointFeed, CheckpointRow, ConsistencyProof, InclusionProof,
};

/// Export formats of the audit log.
#[derive(Debug, Clone, Copy, Deserialize, utoipa::ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    Jsonl,
    Csv,
    /// JSONL with public keys and signed checkpoints, verifiable offline with
    /// `portcullis audit verify --bundle`.
    Bundle,
}

impl From<ExportFormat> for trail::ExportFormat {
    fn from(f: ExportFormat) -> Self {
        match f {
            ExportFormat::Jsonl => trail::ExportFormat::Jsonl,
            ExportFormat::Csv => trail::ExportFormat::Csv,
            ExportFormat::Bundle => trail::ExportFormat::Bundle,
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    pub format: ExportFormat,
    /// RFC 3339; entries at or after this time (not for bundles).
    #[param(schema_with = super::input::time)]
    pub from: Option<String>,
    /// RFC 3339; entries before this time (not for bundles).
    #[param(schema_with = super::input::time)]
    pub to: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct InclusionQuery {
    /// The entry's sequence number.
    pub seq: u64,
    /// The tree size to prove against (a checkpoint's size); default: the latest checkpoint.
    pub tree_size: Option<u64>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FeedQuery {
    /// Checkpoints with a larger tree size than this (default 0: from the first); pass the
    /// page's `next_after`, or the largest size already kept.
    #[param(minimum = 0, maximum = 9223372036854775807_i64)]
    pub after: Option<u64>,
    /// Checkpoints per page, 1-100 (default 100).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ConsistencyQuery {
    pub from: u64,
    pub to: u64,
}

/// Streams the environment's audit log in constant memory.
#[utoipa::path(get, path = "/v1/environments/{environment_id}/audit/export", tag = "audit", params(("environment_id" = Uuid, Path), ExportQuery),
    responses((status = 200, description = "CSV (`csv`), JSON lines (`jsonl`) or JSON lines with keys and checkpoints (`bundle`)", content((String = "text/csv"), (String = "application/x-ndjson"))), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn export(
    State(state): State<AppState>,
    auth: Auth,
    Path(env): Path<EnvironmentId>,
    Query(q): Query<ExportQuery>,
) -> ApiResult<Response> {
    let request = ExportRequest {
        format: q.format.into(),
        from: q.from,
        to: q.to,
    };
    let export = audit_access::export(&state, &auth, env, request).await?;
    let stream = futures_util::stream::unfold(export.chunks, |mut rx| async move {
        rx.recv().await.map(|c| (c, rx))
    });
    let disposition = format!("attachment; filename=\"{}\"", export.file_name);
    Ok((
        [
            (header::CONTENT_TYPE, export.media_type.to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

/// The latest signed checkpoint.
#[utoipa::path(get, path = "/v1/environments/{environment_id}/audit/checkpoints/latest", tag = "audit", params(("environment_id" = Uuid, Path)),
    responses((status = 200, body = CheckpointRow), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn latest_checkpoint(
    State(state): State<AppState>,
    auth: Auth,
    Path(env): Path<EnvironmentId>,
) -> ApiResult<axum::Json<CheckpointRow>> {
    let latest = audit_access::latest_checkpoint(&state, &auth, env).await?;
    Ok(axum::Json(latest.into()))
}

/// The checkpoint feed (L4): the environment's signed checkpoints after `after`, oldest
/// first, to keep outside the operator's reach (`portcullis audit fetch-checkpoints`). Needs
/// `audit.read`; serves only checkpoints this node verifies (its own keys, the tree at that
/// size). The read is audited.
#[utoipa::path(get, path = "/v1/environments/{environment_id}/audit/checkpoints", tag = "audit", params(("environment_id" = Uuid, Path), FeedQuery),
    responses((status = 200, body = CheckpointFeed), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn checkpoint_feed(
    State(state): State<AppState>,
    auth: Auth,
    Path(env): Path<EnvironmentId>,
    Query(q): Query<FeedQuery>,
) -> ApiResult<axum::Json<CheckpointFeed>> {
    let feed =
        audit_access::checkpoint_feed(&state, &auth, env, q.after.unwrap_or(0), q.limit).await?;
    Ok(axum::Json(feed.into()))
}

/// Proof that entry `seq` is in the tree of `tree_size` entries.
#[utoipa::path(get, path = "/v1/environments/{environment_id}/audit/proofs/inclusion", tag = "audit", params(("environment_id" = Uuid, Path), InclusionQuery),
    responses((status = 200, body = InclusionProof), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn inclusion_proof(
    State(state): State<AppState>,
    auth: Auth,
    Path(env): Path<EnvironmentId>,
    Query(q): Query<InclusionQuery>,
) -> ApiResult<axum::Json<InclusionProof>> {
    let proof = audit_access::inclusion_proof(&state, &auth, env, q.seq, q.tree_size).await?;
    Ok(axum::Json(proof.into()))
}

/// Proof that the tree of `to` entries extends the tree of `from` entries.
#[utoipa::path(get, path = "/v1/environments/{environment_id}/audit/proofs/consistency", tag = "audit", params(("environment_id" = Uuid, Path), ConsistencyQuery),
    responses((status = 200, body = ConsistencyProof), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn consistency_proof(
    State(state): State<AppState>,
    auth: Auth,
    Path(env): Path<EnvironmentId>,
    Query(q): Query<ConsistencyQuery>,
) -> ApiResult<axum::Json<ConsistencyProof>> {
    let proof = audit_access::consistency_proof(&state, &auth, env, q.from, q.to).await?;
    Ok(axum::Json(proof.into()))
}

/// The checkpoint-signing public keys, current and retired (no authentication needed).
#[utoipa::path(get, path = "/.well-known/portcullis/audit-keys.json", tag = "audit", security(()),
    responses((status = 200, body = AuditKeys), (status = 503, body = ErrorBody)))]
pub async fn well_known_keys(
    State(state): State<AppState>,
    Meta(meta): Meta,
) -> ApiResult<axum::Json<AuditKeys>> {
    let keys = audit_access::published_keys(&state, meta).await?;
    Ok(axum::Json(keys.into()))
}
