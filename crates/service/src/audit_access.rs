//! Reading the audit trail, for owners, admins and auditors (L3, L5): streamed exports, the
//! latest signed checkpoint, inclusion and consistency proofs, and the published signing keys.
//! Every read is itself audited. The machinery (export writers, signing, verification) is in
//! [`crate::trail`].

use portcullis_audit::merkle;
use portcullis_audit::Hash;
use portcullis_core::{EnvironmentId, Permission, PermissionSet};
use portcullis_store::queries::audit_log::{self, CheckpointRow, PublicKeyRow};
use portcullis_store::{AuditEvent, RequestMeta, TenantTx};
use tokio::sync::mpsc;

use crate::audit_log::parse_time;
use crate::trail::{self, ExportFormat, ExportWriter};
use crate::{Principal, ServiceError, ServiceResult, Services};

/// Entries read per batch of an export.
const EXPORT_BATCH: i64 = 2000;

/// What to export: `from` and `to` are RFC 3339 times as the caller gave them (recorded so in
/// the audit entry); bundles take neither.
#[derive(Clone, Debug)]
pub struct ExportRequest {
    pub format: ExportFormat,
    pub from: Option<String>,
    pub to: Option<String>,
}

/// A running export: chunks arrive in order; an `Err` chunk means it failed midway and the
/// transfer must be broken off, not ended as if complete.
#[derive(Debug)]
pub struct AuditExport {
    /// The media type of the whole export.
    pub media_type: &'static str,
    /// A file name for it, e.g. `audit-<environment>.csv`.
    pub file_name: String,
    pub chunks: mpsc::Receiver<Result<Vec<u8>, std::io::Error>>,
}

/// Proof that entry `seq` is in the tree of `tree_size` entries (RFC 9162 §2.1.3).
#[derive(Clone, Debug)]
pub struct InclusionProof {
    pub seq: u64,
    pub tree_size: u64,
    /// SHA-256 of the entry (the Merkle leaf data).
    pub entry_hash: Hash,
    /// Audit path, leaf to root.
    pub proof: Vec<Hash>,
    pub root_hash: Hash,
    /// The signed checkpoint of `tree_size`, if one was cut at that size.
    pub checkpoint: Option<String>,
}

/// Proof that the tree of `to` entries extends the tree of `from` entries.
#[derive(Clone, Debug)]
pub struct ConsistencyProof {
    pub from: u64,
    pub to: u64,
    pub proof: Vec<Hash>,
    pub from_checkpoint: Option<String>,
    pub to_checkpoint: Option<String>,
}

fn format_name(format: ExportFormat) -> &'static str {
    match format {
        ExportFormat::Jsonl => "jsonl",
        ExportFormat::Csv => "csv",
        ExportFormat::Bundle => "bundle",
    }
}

/// Starts streaming the environment's audit log in constant memory. The export is audited and
/// its checkpoints fixed before the first chunk; rows are read in a transaction of their own.
pub async fn export(
    services: &Services,
    caller: &Principal,
    env: EnvironmentId,
    request: ExportRequest,
) -> ServiceResult<AuditExport> {
    let from = parse_time(request.from.as_deref(), "from")?;
    let to = parse_time(request.to.as_deref(), "to")?;
    let format = request.format;
    if format == ExportFormat::Bundle && (from.is_some() || to.is_some()) {
        return Err(ServiceError::bad_request(
            "invalid_query",
            "bundles cover the whole log so they verify from the first entry; omit from and to",
        ));
    }
    let mut tx = caller.enter(services, env).await?;
    tx.require(Permission::AuditRead)?;
    let checkpoints = audit_log::checkpoints(&mut tx).await?;
    tx.audit(AuditEvent::success("audit.exported", "audit_log", env).after(serde_json::json!({ "format": format_name(format), "from": request.from, "to": request.to }))).await?;
    tx.commit().await?;
    // The export covers everything committed before it, its own entry included.
    services.store().sequence(env.as_uuid()).await?;
    let keys = trail::published_keys(services.store())
        .await
        .map_err(trail_error)?;
    // A bundle carries the anchored checkpoints too (issue 11, item 2), read once the export
    // is audited; an anchor store that cannot be read fails the export (503) rather than
    // giving a bundle that looks complete without them.
    let checkpoints = match format {
        ExportFormat::Bundle => {
            trail::bundle_checkpoints(&checkpoints, &services.trail().anchors, env.as_uuid())
                .await
                .map_err(trail_error)?
        }
        ExportFormat::Csv | ExportFormat::Jsonl => vec![],
    };

    let (tx_chunks, rx) = mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let store = services.store().clone();
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
            let mut writer = ExportWriter::new(format, env.as_uuid(), &keys, &checkpoints)
                .map_err(|e| e.to_string())?;
            let mut after = 0i64;
            loop {
                let rows = audit_log::stored_window(&mut read, after, from, to, EXPORT_BATCH)
                    .await
                    .map_err(|e| e.to_string())?;
                let Some(last) = rows.last() else { break };
                after = last.seq;
                let chunk = writer.write_rows(&rows).map_err(|e| e.to_string())?;
                if tx_chunks.send(Ok(chunk)).await.is_err() {
                    return Ok(()); // the reader went away
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
            // Break the stream so the reader sees a failed transfer, not a short file.
            let _ = tx_chunks
                .send(Err(std::io::Error::other("export failed")))
                .await;
        }
    });
    let (media_type, ext) = match format {
        ExportFormat::Csv => ("text/csv; charset=utf-8", "csv"),
        ExportFormat::Jsonl => ("application/x-ndjson", "jsonl"),
        ExportFormat::Bundle => ("application/x-ndjson", "bundle.jsonl"),
    };
    Ok(AuditExport {
        media_type,
        file_name: format!("audit-{env}.{ext}"),
        chunks: rx,
    })
}

fn trail_error(e: trail::TrailError) -> ServiceError {
    match e {
        trail::TrailError::Store(e) => ServiceError::from(e),
        trail::TrailError::Anchor(e) => ServiceError::Unavailable(format!("anchor store: {e}")),
        other => ServiceError::Internal(other.to_string()),
    }
}

/// Checkpoints per page of the checkpoint feed, at most (and by default): each is checked
/// against the tree at its size, a few stored nodes and at most two blocks of entry hashes.
pub const FEED_PAGE_MAX: u32 = 100;

/// One checkpoint of the feed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedCheckpoint {
    pub tree_size: u64,
    /// The signed text (FORMAT.md §4), exactly as a verifier parses it.
    pub signed: String,
}

/// A page of the checkpoint feed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointFeed {
    pub checkpoints: Vec<FeedCheckpoint>,
    /// The `after` of the next page; `None` when this page reached the newest checkpoint.
    pub next_after: Option<u64>,
}

/// The checkpoint feed (L4, issue 11 item 5): the environment's checkpoints with a size above
/// `after`, oldest first, for a customer or auditor to keep outside the operator's reach
/// (`portcullis audit fetch-checkpoints`, then `audit verify --checkpoints`). Needs
/// `audit.read`; another tenant's environment is `NotFound`, as an unknown one. Only what
/// this node would anchor is served: signed by a key it holds and the tree it computes at
/// that size ([`trail::check_for_anchor`]); a row a database attacker inserted (their own key,
/// a size ahead of the log, a tree that is not the log's) is skipped, logged with control L4,
/// and never served. Audited as `audit.read` of `audit_checkpoint_feed`.
pub async fn checkpoint_feed(
    services: &Services,
    caller: &Principal,
    env: EnvironmentId,
    after: u64,
    limit: Option<u32>,
) -> ServiceResult<CheckpointFeed> {
    let limit = limit.unwrap_or(FEED_PAGE_MAX);
    if limit == 0 || limit > FEED_PAGE_MAX {
        return Err(ServiceError::bad_request(
            "invalid_query",
            format!("limit must be between 1 and {FEED_PAGE_MAX}"),
        ));
    }
    let after_i64 = i64::try_from(after)
        .map_err(|_| ServiceError::bad_request("invalid_query", "after is too large"))?;
    let mut tx = caller.enter(services, env).await?;
    tx.require(Permission::AuditRead)?;
    let rows = audit_log::checkpoints_after(&mut tx, after_i64, i64::from(limit) + 1).await?;
    let more = rows.len() > limit as usize;
    let mut checkpoints = vec![];
    let mut last = after;
    for row in rows.into_iter().take(limit as usize) {
        let size = u64::try_from(row.tree_size).unwrap_or(0);
        last = size;
        let check = trail::check_for_anchor(
            &mut tx,
            &services.trail().held_keys,
            env.as_uuid(),
            row.tree_size,
            &row.signed,
        )
        .await
        .map_err(trail_error)?;
        match check {
            Ok(()) => checkpoints.push(FeedCheckpoint {
                tree_size: size,
                signed: row.signed,
            }),
            Err((reason, _)) => tracing::error!(control = "L4", environment = %env, size,
                reason = %reason, "checkpoint feed: a stored checkpoint this node cannot verify is not served"),
        }
    }
    tx.audit(
        AuditEvent::success("audit.read", "audit_checkpoint_feed", after)
            .after(serde_json::json!({ "after": after, "returned": checkpoints.len() })),
    )
    .await?;
    tx.commit().await?;
    Ok(CheckpointFeed {
        checkpoints,
        next_after: more.then_some(last),
    })
}

/// The latest signed checkpoint; `NotFound` before the first one is cut.
pub async fn latest_checkpoint(
    services: &Services,
    caller: &Principal,
    env: EnvironmentId,
) -> ServiceResult<CheckpointRow> {
    let mut tx = caller.enter(services, env).await?;
    tx.require(Permission::AuditRead)?;
    services.store().sequence(env.as_uuid()).await?;
    let latest = audit_log::checkpoints(&mut tx)
        .await?
        .pop()
        .ok_or(ServiceError::NotFound)?;
    tx.audit(AuditEvent::success(
        "audit.read",
        "audit_checkpoint",
        latest.tree_size,
    ))
    .await?;
    tx.commit().await?;
    Ok(latest)
}

/// The log's current size, as seen by this transaction.
async fn log_size(tx: &mut TenantTx) -> ServiceResult<u64> {
    Ok(audit_log::head(tx)
        .await?
        .map(|(seq, _, _)| u64::try_from(seq).unwrap_or(0))
        .unwrap_or(0))
}

/// Proof that entry `seq` is in the tree of `tree_size` entries (default: the latest
/// checkpoint's size).
pub async fn inclusion_proof(
    services: &Services,
    caller: &Principal,
    env: EnvironmentId,
    seq: u64,
    tree_size: Option<u64>,
) -> ServiceResult<InclusionProof> {
    let mut tx = caller.enter(services, env).await?;
    tx.require(Permission::AuditRead)?;
    services.store().sequence(env.as_uuid()).await?;
    let checkpoints = audit_log::checkpoints(&mut tx).await?;
    let size = match tree_size {
        Some(s) => s,
        None => checkpoints
            .last()
            .map(|c| c.tree_size as u64)
            .ok_or(ServiceError::NotFound)?,
    };
    if seq == 0 || seq > size {
        return Err(ServiceError::bad_request(
            "invalid_query",
            "seq must be between 1 and tree_size",
        ));
    }
    if log_size(&mut tx).await? < size {
        return Err(ServiceError::bad_request(
            "invalid_query",
            "tree_size is larger than the log",
        ));
    }
    // O(log n): stored subtree nodes plus at most two blocks of 256 entry hashes.
    let index = seq - 1;
    let plan = merkle::stored::Plan::inclusion(index, size)
        .ok_or_else(|| ServiceError::Internal("inclusion proof plan".into()))?;
    let mut source = audit_log::proof_source(&mut tx, &plan).await?;
    let proof = merkle::inclusion_proof_from(&mut source, index, size)
        .map_err(|e| ServiceError::Integrity(format!("inclusion proof: {e:?}")))?;
    let root_hash = source
        .hash(0, size)
        .map_err(|e| ServiceError::Integrity(format!("root: {e}")))?;
    let entry_hash = *source
        .leaf_data(index)
        .ok_or_else(|| ServiceError::Integrity(format!("entry {seq} is missing")))?;
    let checkpoint = checkpoints
        .iter()
        .find(|c| c.tree_size as u64 == size)
        .map(|c| c.signed.clone());
    tx.audit(
        AuditEvent::success("audit.read", "audit_proof", seq)
            .after(serde_json::json!({ "kind": "inclusion", "tree_size": size })),
    )
    .await?;
    tx.commit().await?;
    Ok(InclusionProof {
        seq,
        tree_size: size,
        entry_hash,
        proof,
        root_hash,
        checkpoint,
    })
}

/// Proof that the tree of `to` entries extends the tree of `from` entries.
pub async fn consistency_proof(
    services: &Services,
    caller: &Principal,
    env: EnvironmentId,
    from: u64,
    to: u64,
) -> ServiceResult<ConsistencyProof> {
    let mut tx = caller.enter(services, env).await?;
    tx.require(Permission::AuditRead)?;
    services.store().sequence(env.as_uuid()).await?;
    if from == 0 || from > to {
        return Err(ServiceError::bad_request(
            "invalid_query",
            "need 1 <= from <= to",
        ));
    }
    if log_size(&mut tx).await? < to {
        return Err(ServiceError::bad_request(
            "invalid_query",
            "`to` is larger than the log",
        ));
    }
    let plan = merkle::stored::Plan::consistency(from, to)
        .ok_or_else(|| ServiceError::Internal("consistency proof plan".into()))?;
    let mut source = audit_log::proof_source(&mut tx, &plan).await?;
    let proof = merkle::consistency_proof_from(&mut source, from, to)
        .map_err(|e| ServiceError::Integrity(format!("consistency proof: {e:?}")))?;
    let checkpoints = audit_log::checkpoints(&mut tx).await?;
    let find = |s: u64| {
        checkpoints
            .iter()
            .find(|c| c.tree_size as u64 == s)
            .map(|c| c.signed.clone())
    };
    tx.audit(
        AuditEvent::success("audit.read", "audit_proof", to)
            .after(serde_json::json!({ "kind": "consistency", "from": from })),
    )
    .await?;
    tx.commit().await?;
    Ok(ConsistencyProof {
        from,
        to,
        proof,
        from_checkpoint: find(from),
        to_checkpoint: find(to),
    })
}

/// The checkpoint-signing public keys, current and retired: what an auditor pins to verify
/// checkpoints. Public, so no caller is needed. A row whose key id is not its key's own is
/// not published (L4).
pub async fn published_keys(
    services: &Services,
    meta: RequestMeta,
) -> ServiceResult<Vec<PublicKeyRow>> {
    let mut tx = services.store().auth(meta).await?;
    let keys = audit_log::public_keys(&mut tx).await?;
    tx.commit().await?;
    Ok(trail::publishable(keys))
}
