//! Audit trail access for owners, admins and auditors (L3, L5): streamed exports, signed
//! checkpoints, inclusion and consistency proofs, and the public signing keys. Every read is
//! itself audited.

use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use portcullis_audit::merkle;
use portcullis_core::{EnvironmentId, Permission, PermissionSet};
use portcullis_store::queries::audit_log::{self, CheckpointRow, PublicKeyRow};
use portcullis_store::{AuditEvent, Store};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::auth::{Auth, Meta};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{Path, Query};
use crate::routes::environments::parse_time;
use crate::state::AppState;
use portcullis_audit::hex::encode as hex;
use portcullis_service::trail::{self, ExportWriter};

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
    pub from: Option<String>,
    /// RFC 3339; entries before this time (not for bundles).
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
pub struct ConsistencyQuery {
    pub from: u64,
    pub to: u64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct InclusionProof {
    pub seq: u64,
    pub tree_size: u64,
    /// Hex SHA-256 of the entry (the Merkle leaf data).
    pub entry_hash: String,
    /// Audit path, hex, leaf to root (RFC 9162 §2.1.3).
    pub proof: Vec<String>,
    /// The root these hashes lead to; compare it with the signed checkpoint of `tree_size`.
    pub root_hash: String,
    pub checkpoint: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ConsistencyProof {
    pub from: u64,
    pub to: u64,
    pub proof: Vec<String>,
    pub from_checkpoint: Option<String>,
    pub to_checkpoint: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditKey {
    pub key_id: String,
    /// Ed25519 public key, hex.
    pub public_key: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub retired_at: Option<OffsetDateTime>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditKeys {
    pub keys: Vec<AuditKey>,
}

/// Published checkpoint-signing keys: what an auditor pins to verify checkpoints.
pub async fn public_keys(
    store: &Store,
    meta: portcullis_store::RequestMeta,
) -> ApiResult<Vec<PublicKeyRow>> {
    let mut tx = store.auth(meta).await?;
    let keys = audit_log::public_keys(&mut tx).await?;
    tx.commit().await?;
    Ok(keys)
}

/// Streams the environment's audit log in constant memory.
#[utoipa::path(get, path = "/v1/environments/{environment_id}/audit/export", tag = "audit", params(("environment_id" = Uuid, Path), ExportQuery),
    responses((status = 200, description = "text/csv, application/x-ndjson or a bundle", content_type = "application/x-ndjson"), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn export(
    State(state): State<AppState>,
    auth: Auth,
    Path(env): Path<EnvironmentId>,
    Query(q): Query<ExportQuery>,
) -> ApiResult<Response> {
    let from = parse_time(q.from.as_deref(), "from")?;
    let to = parse_time(q.to.as_deref(), "to")?;
    if q.format == ExportFormat::Bundle && (from.is_some() || to.is_some()) {
        return Err(ApiError::bad_request(
            "invalid_query",
            "bundles cover the whole log so they verify from the first entry; omit from and to",
        ));
    }
    let mut tx = auth.enter(&state, env).await?;
    tx.require(Permission::AuditRead)?;
    let checkpoints = audit_log::checkpoints(&mut tx).await?;
    tx.audit(AuditEvent::success("audit.exported", "audit_log", env).after(serde_json::json!({ "format": format!("{:?}", q.format).to_lowercase(), "from": q.from, "to": q.to }))).await?;
    tx.commit().await?;
    let keys = trail::published_keys(state.store())
        .await
        .map_err(|e| match e {
            trail::TrailError::Store(e) => ApiError::from(e),
            other => ApiError::Internal(other.to_string()),
        })?;

    let (tx_chunks, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let store = state.store().clone();
    let format = q.format;
    tokio::spawn(async move {
        let result: Result<(), String> = async {
            let mut read = store
                .tenant_as_system(
                    env,
                    PermissionSet::of(&[Permission::AuditRead]),
                    Default::default(),
                )
                .await
                .map_err(|e| e.to_string())?;
            let mut writer = ExportWriter::new(format.into(), env.as_uuid(), &keys, &checkpoints)
                .map_err(|e| e.to_string())?;
            let mut after = 0i64;
            loop {
                let rows = audit_log::stored_window(&mut read, after, from, to, 2000)
                    .await
                    .map_err(|e| e.to_string())?;
                let Some(last) = rows.last() else { break };
                after = last.seq;
                let chunk = writer.write_rows(&rows).map_err(|e| e.to_string())?;
                if tx_chunks.send(Ok(chunk)).await.is_err() {
                    return Ok(()); // the client went away
                }
            }
            let rest = writer.finish().map_err(|e| e.to_string())?;
            if !rest.is_empty() {
                let _ = tx_chunks.send(Ok(rest)).await;
            }
            read.commit().await.map_err(|e| e.to_string())?;
            Ok(())
        }
        .await;
        if let Err(e) = result {
            tracing::error!(error = %e, environment = %env, "audit export failed midway");
            // Abort the body so the client sees a broken transfer, not a short file.
            let _ = tx_chunks
                .send(Err(std::io::Error::other("export failed")))
                .await;
        }
    });
    let stream =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) });
    let (content_type, ext) = match q.format {
        ExportFormat::Csv => ("text/csv; charset=utf-8", "csv"),
        ExportFormat::Jsonl => ("application/x-ndjson", "jsonl"),
        ExportFormat::Bundle => ("application/x-ndjson", "bundle.jsonl"),
    };
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"audit-{env}.{ext}\""),
            ),
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
    let mut tx = auth.enter(&state, env).await?;
    tx.require(Permission::AuditRead)?;
    let latest = audit_log::checkpoints(&mut tx)
        .await?
        .pop()
        .ok_or(ApiError::NotFound)?;
    tx.audit(AuditEvent::success(
        "audit.read",
        "audit_checkpoint",
        latest.tree_size,
    ))
    .await?;
    tx.commit().await?;
    Ok(axum::Json(latest))
}

/// The log's current size, as seen by this transaction.
async fn log_size(tx: &mut portcullis_store::TenantTx) -> ApiResult<u64> {
    Ok(audit_log::head(tx)
        .await?
        .map(|(seq, _, _)| u64::try_from(seq).unwrap_or(0))
        .unwrap_or(0))
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
    let mut tx = auth.enter(&state, env).await?;
    tx.require(Permission::AuditRead)?;
    let checkpoints = audit_log::checkpoints(&mut tx).await?;
    let size = match q.tree_size {
        Some(s) => s,
        None => checkpoints
            .last()
            .map(|c| c.tree_size as u64)
            .ok_or(ApiError::NotFound)?,
    };
    if q.seq == 0 || q.seq > size {
        return Err(ApiError::bad_request(
            "invalid_query",
            "seq must be between 1 and tree_size",
        ));
    }
    if log_size(&mut tx).await? < size {
        return Err(ApiError::bad_request(
            "invalid_query",
            "tree_size is larger than the log",
        ));
    }
    // O(log n): stored subtree nodes plus at most two blocks of 256 entry hashes.
    let index = q.seq - 1;
    let plan = merkle::stored::Plan::inclusion(index, size)
        .ok_or_else(|| ApiError::Internal("inclusion proof plan".into()))?;
    let mut source = audit_log::proof_source(&mut tx, &plan).await?;
    let proof = merkle::inclusion_proof_from(&mut source, index, size)
        .map_err(|e| ApiError::Integrity(format!("inclusion proof: {e:?}")))?;
    let root = source
        .hash(0, size)
        .map_err(|e| ApiError::Integrity(format!("root: {e}")))?;
    let entry_hash = *source
        .leaf_data(index)
        .ok_or_else(|| ApiError::Integrity(format!("entry {} is missing", q.seq)))?;
    let checkpoint = checkpoints
        .iter()
        .find(|c| c.tree_size as u64 == size)
        .map(|c| c.signed.clone());
    tx.audit(
        AuditEvent::success("audit.read", "audit_proof", q.seq)
            .after(serde_json::json!({ "kind": "inclusion", "tree_size": size })),
    )
    .await?;
    tx.commit().await?;
    Ok(axum::Json(InclusionProof {
        seq: q.seq,
        tree_size: size,
        entry_hash: hex(&entry_hash),
        proof: proof.iter().map(|h| hex(h)).collect(),
        root_hash: hex(&root),
        checkpoint,
    }))
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
    let mut tx = auth.enter(&state, env).await?;
    tx.require(Permission::AuditRead)?;
    if q.from == 0 || q.from > q.to {
        return Err(ApiError::bad_request(
            "invalid_query",
            "need 1 <= from <= to",
        ));
    }
    if log_size(&mut tx).await? < q.to {
        return Err(ApiError::bad_request(
            "invalid_query",
            "`to` is larger than the log",
        ));
    }
    let plan = merkle::stored::Plan::consistency(q.from, q.to)
        .ok_or_else(|| ApiError::Internal("consistency proof plan".into()))?;
    let mut source = audit_log::proof_source(&mut tx, &plan).await?;
    let proof = merkle::consistency_proof_from(&mut source, q.from, q.to)
        .map_err(|e| ApiError::Integrity(format!("consistency proof: {e:?}")))?;
    let checkpoints = audit_log::checkpoints(&mut tx).await?;
    let find = |s: u64| {
        checkpoints
            .iter()
            .find(|c| c.tree_size as u64 == s)
            .map(|c| c.signed.clone())
    };
    tx.audit(
        AuditEvent::success("audit.read", "audit_proof", q.to)
            .after(serde_json::json!({ "kind": "consistency", "from": q.from })),
    )
    .await?;
    tx.commit().await?;
    Ok(axum::Json(ConsistencyProof {
        from: q.from,
        to: q.to,
        proof: proof.iter().map(|h| hex(h)).collect(),
        from_checkpoint: find(q.from),
        to_checkpoint: find(q.to),
    }))
}

/// The checkpoint-signing public keys, current and retired (no authentication needed).
#[utoipa::path(get, path = "/.well-known/portcullis/audit-keys.json", tag = "audit", security(()),
    responses((status = 200, body = AuditKeys), (status = 503, body = ErrorBody)))]
pub async fn well_known_keys(
    State(state): State<AppState>,
    Meta(meta): Meta,
) -> ApiResult<axum::Json<AuditKeys>> {
    let keys = public_keys(state.store(), meta).await?;
    Ok(axum::Json(AuditKeys {
        keys: keys
            .into_iter()
            .map(|k| AuditKey {
                key_id: k.key_id,
                public_key: hex(&k.public_key),
                created_at: k.created_at,
                retired_at: k.retired_at,
            })
            .collect(),
    }))
}
