//! The audit trail's checkpoints, proofs and signing keys as the API shows them: hashes and
//! keys in lower-case hex.

use portcullis_audit::hex::encode as hex;
use portcullis_service::audit_access as service;
use portcullis_store::queries::audit_log as store;
use serde::Serialize;
use time::OffsetDateTime;

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct CheckpointRow {
    pub tree_size: i64,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub issued_at: OffsetDateTime,
    pub key_id: String,
    /// The signed checkpoint text (format in crates/audit/FORMAT.md).
    pub signed: String,
}

impl From<store::CheckpointRow> for CheckpointRow {
    fn from(c: store::CheckpointRow) -> Self {
        CheckpointRow {
            tree_size: c.tree_size,
            issued_at: c.issued_at,
            key_id: c.key_id,
            signed: c.signed,
        }
    }
}

/// A checkpoint of the feed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FeedCheckpoint {
    pub tree_size: u64,
    /// The signed checkpoint text (format in crates/audit/FORMAT.md §4): keep it as it is.
    pub signed: String,
}

/// A page of the checkpoint feed, oldest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CheckpointFeed {
    pub checkpoints: Vec<FeedCheckpoint>,
    /// Pass as `after` for the next page; `null` when this page reached the newest checkpoint.
    pub next_after: Option<u64>,
}

impl From<service::CheckpointFeed> for CheckpointFeed {
    fn from(f: service::CheckpointFeed) -> Self {
        CheckpointFeed {
            checkpoints: f
                .checkpoints
                .into_iter()
                .map(|c| FeedCheckpoint {
                    tree_size: c.tree_size,
                    signed: c.signed,
                })
                .collect(),
            next_after: f.next_after,
        }
    }
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

impl From<service::InclusionProof> for InclusionProof {
    fn from(p: service::InclusionProof) -> Self {
        InclusionProof {
            seq: p.seq,
            tree_size: p.tree_size,
            entry_hash: hex(&p.entry_hash),
            proof: p.proof.iter().map(|h| hex(h)).collect(),
            root_hash: hex(&p.root_hash),
            checkpoint: p.checkpoint,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ConsistencyProof {
    pub from: u64,
    pub to: u64,
    pub proof: Vec<String>,
    pub from_checkpoint: Option<String>,
    pub to_checkpoint: Option<String>,
}

impl From<service::ConsistencyProof> for ConsistencyProof {
    fn from(p: service::ConsistencyProof) -> Self {
        ConsistencyProof {
            from: p.from,
            to: p.to,
            proof: p.proof.iter().map(|h| hex(h)).collect(),
            from_checkpoint: p.from_checkpoint,
            to_checkpoint: p.to_checkpoint,
        }
    }
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

impl From<store::PublicKeyRow> for AuditKey {
    fn from(k: store::PublicKeyRow) -> Self {
        AuditKey {
            key_id: k.key_id,
            public_key: hex(&k.public_key),
            created_at: k.created_at,
            retired_at: k.retired_at,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditKeys {
    pub keys: Vec<AuditKey>,
}

impl From<Vec<store::PublicKeyRow>> for AuditKeys {
    fn from(keys: Vec<store::PublicKeyRow>) -> Self {
        AuditKeys {
            keys: keys.into_iter().map(Into::into).collect(),
        }
    }
}
