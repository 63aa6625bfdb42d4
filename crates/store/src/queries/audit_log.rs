use portcullis_audit::merkle::stored::{self, NodeId, Plan, StoredSource};
use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Page, Paged};
use crate::{StoreError, TenantTx};

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct AuditEntry {
    pub audit_id: Uuid,
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

pub use crate::chain::StoredEntry;

// A macro rather than a const so that `concat!` can splice it into static SQL.
macro_rules! stored_columns {
    () => {
        "environment_id, seq, audit_id, occurred_at, actor_type, actor_id, action, action_version,
    target_type, target_id, outcome, before, after, request_id, ip, user_agent, prev_hash, entry_hash"
    };
}
pub const STORED_COLUMNS: &str = stored_columns!();
/// Every entry of environment `$1` as stored, in chain order (tests and benchmarks that
/// rewrite or replay a chain).
pub const STORED_CHAIN: &str = concat!(
    "SELECT ",
    stored_columns!(),
    " FROM audit_log WHERE environment_id = $1 ORDER BY seq"
);
/// `COPY ... FROM STDIN` of entries in the stored column order (bulk loads for benchmarks).
pub const COPY_IN_STORED: &str = concat!("COPY audit_log (", stored_columns!(), ") FROM STDIN");

#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub action: Option<String>,
    pub actor_id: Option<Uuid>,
    pub target_id: Option<String>,
    pub from: Option<OffsetDateTime>,
    pub to: Option<OffsetDateTime>,
}

pub async fn list(
    tx: &mut TenantTx,
    page: Page,
    filter: &Filter,
) -> Result<Paged<AuditEntry>, StoreError> {
    let env = tx.environment_id().as_uuid();
    let rows: Vec<AuditEntry> = sqlx::query_as(
        "SELECT audit_id, occurred_at, actor_type, actor_id, action, target_type, target_id, outcome,
                before, after, request_id, ip, user_agent
           FROM audit_log
          WHERE environment_id = $1 AND ($2::uuid IS NULL OR audit_id > $2)
            AND ($4::text IS NULL OR action = $4)
            AND ($5::uuid IS NULL OR actor_id = $5)
            AND ($6::text IS NULL OR target_id = $6)
            AND ($7::timestamptz IS NULL OR occurred_at >= $7)
            AND ($8::timestamptz IS NULL OR occurred_at < $8)
          ORDER BY audit_id LIMIT $3",
    )
    .bind(env)
    .bind(page.after)
    .bind(page.fetch_limit())
    .bind(filter.action.as_deref())
    .bind(filter.actor_id)
    .bind(filter.target_id.as_deref())
    .bind(filter.from)
    .bind(filter.to)
    .fetch_all(tx.conn())
    .await?;
    let mut rows = rows;
    let (conn, keys) = tx.conn_and_keys();
    reveal_metadata(conn, keys, env, &mut rows).await?;
    Ok(Paged::from_rows(rows, page, |e| e.audit_id))
}

/// The entries the transaction's own identity made in the platform scope (sign-ins, failed
/// sign-ins against the account, password changes, ...), newest first, at most `limit`, with
/// their request metadata opened (the person's own subject key). Needs an account context
/// ([`crate::AuthTx::act_as`]); the caller sequences the platform scope first.
pub async fn own_platform_entries(
    tx: &mut crate::AuthTx,
    identity: portcullis_core::IdentityId,
    limit: i64,
) -> Result<Vec<AuditEntry>, StoreError> {
    let mut rows: Vec<AuditEntry> = sqlx::query_as(
        "SELECT audit_id, occurred_at, actor_type, actor_id, action, target_type, target_id, outcome,
                before, after, request_id, ip, user_agent
           FROM audit_log
          WHERE environment_id = $1 AND actor_type = 'identity' AND actor_id = $2
          ORDER BY seq DESC LIMIT $3",
    )
    .bind(crate::PLATFORM_SCOPE)
    .bind(identity.as_uuid())
    .bind(limit)
    .fetch_all(tx.conn())
    .await?;
    let (conn, keys) = tx.conn_and_keys();
    reveal_metadata(conn, keys, crate::PLATFORM_SCOPE, &mut rows).await?;
    Ok(rows)
}

/// The newest `limit` entries of the transaction's scope (with `action` only, when given),
/// newest first, request metadata opened: the operator's `portcullis audit list`.
pub async fn newest(
    tx: &mut TenantTx,
    action: Option<&str>,
    limit: i64,
) -> Result<Vec<AuditEntry>, StoreError> {
    let env = tx.environment_id().as_uuid();
    let mut rows: Vec<AuditEntry> = sqlx::query_as(
        "SELECT audit_id, occurred_at, actor_type, actor_id, action, target_type, target_id, outcome,
                before, after, request_id, ip, user_agent
           FROM audit_log
          WHERE environment_id = $1 AND ($2::text IS NULL OR action = $2)
          ORDER BY seq DESC LIMIT $3",
    )
    .bind(env)
    .bind(action)
    .bind(limit)
    .fetch_all(tx.conn())
    .await?;
    let (conn, keys) = tx.conn_and_keys();
    reveal_metadata(conn, keys, env, &mut rows).await?;
    Ok(rows)
}

/// Opens, in place, the sealed request metadata (IP, user agent) of entries of `scope`.
async fn reveal_metadata(
    conn: &mut sqlx::PgConnection,
    keys: Option<&crate::custody::SubjectKeys>,
    scope: Uuid,
    rows: &mut [AuditEntry],
) -> Result<(), StoreError> {
    for row in rows {
        let audit_id = row.audit_id.to_string();
        let fields = crate::subjects::RequestMetaFields {
            scope,
            table: "audit_log",
            row: &audit_id,
        };
        fields
            .reveal(&mut *conn, keys, &mut row.ip, &mut row.user_agent)
            .await?;
    }
    Ok(())
}

/// Entries with `seq > after`, in order, at most `limit`: for verification and export.
pub async fn stored_range(
    tx: &mut TenantTx,
    after: i64,
    limit: i64,
) -> Result<Vec<StoredEntry>, StoreError> {
    let env = tx.environment_id().as_uuid();
    Ok(sqlx::query_as(concat!(
        "SELECT ",
        stored_columns!(),
        " FROM audit_log WHERE environment_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"
    ))
    .bind(env)
    .bind(after)
    .bind(limit)
    .fetch_all(tx.conn())
    .await?)
}

/// Entries in a time window, in order (for exports and reports).
pub async fn stored_window(
    tx: &mut TenantTx,
    after_seq: i64,
    from: Option<OffsetDateTime>,
    to: Option<OffsetDateTime>,
    limit: i64,
) -> Result<Vec<StoredEntry>, StoreError> {
    let env = tx.environment_id().as_uuid();
    Ok(sqlx::query_as(concat!("SELECT ", stored_columns!(), " FROM audit_log
          WHERE environment_id = $1 AND seq > $2
            AND ($3::timestamptz IS NULL OR occurred_at >= $3) AND ($4::timestamptz IS NULL OR occurred_at < $4)
          ORDER BY seq LIMIT $5"))
    .bind(env)
    .bind(after_seq)
    .bind(from)
    .bind(to)
    .bind(limit)
    .fetch_all(tx.conn())
    .await?)
}

/// Entry hashes (Merkle leaves' data) for `seq` in `1..=size`, in order. O(n): proofs use
/// [`proof_source`] instead; kept for benchmarks and tests that compare against all leaves.
pub async fn entry_hashes(tx: &mut TenantTx, size: i64) -> Result<Vec<[u8; 32]>, StoreError> {
    let env = tx.environment_id().as_uuid();
    let rows: Vec<Vec<u8>> = sqlx::query_scalar(
        "SELECT entry_hash FROM audit_log WHERE environment_id = $1 AND seq <= $2 ORDER BY seq",
    )
    .bind(env)
    .bind(size)
    .fetch_all(tx.conn())
    .await?;
    rows.iter()
        .map(|h| {
            <[u8; 32]>::try_from(h.as_slice())
                .map_err(|_| StoreError::Integrity("bad entry hash".into()))
        })
        .collect()
}

fn hash32(bytes: &[u8], what: &str) -> Result<[u8; 32], StoreError> {
    <[u8; 32]>::try_from(bytes).map_err(|_| StoreError::Integrity(format!("bad {what}")))
}

/// The stored subtree nodes among `wanted` (one query; absent ones are simply not returned).
pub async fn subtree_nodes(
    tx: &mut TenantTx,
    wanted: &[NodeId],
) -> Result<Vec<(NodeId, [u8; 32])>, StoreError> {
    if wanted.is_empty() {
        return Ok(vec![]);
    }
    let env = tx.environment_id().as_uuid();
    // `= ANY` on both key columns is a primary-key index probe per (level, index) pair; it
    // reads a few pairs that were not asked for, dropped below. (A join with `unnest` lets the
    // planner scan every node of the environment instead.)
    let mut levels: Vec<i16> = wanted.iter().map(|n| n.level as i16).collect();
    let mut indexes: Vec<i64> = wanted.iter().map(|n| n.index as i64).collect();
    levels.sort_unstable();
    levels.dedup();
    indexes.sort_unstable();
    indexes.dedup();
    let rows: Vec<(i16, i64, Vec<u8>)> = sqlx::query_as(
        "SELECT level, node_index, hash FROM audit_subtrees
          WHERE environment_id = $1 AND level = ANY($2) AND node_index = ANY($3)",
    )
    .bind(env)
    .bind(levels)
    .bind(indexes)
    .fetch_all(tx.conn())
    .await?;
    let mut out = Vec::with_capacity(wanted.len());
    for (level, index, hash) in rows {
        let node = NodeId {
            level: u32::try_from(level)
                .map_err(|_| StoreError::Integrity("bad subtree level".into()))?,
            index: u64::try_from(index)
                .map_err(|_| StoreError::Integrity("bad subtree index".into()))?,
        };
        if wanted.contains(&node) {
            out.push((node, hash32(&hash, "subtree hash")?));
        }
    }
    Ok(out)
}

/// Above this many leaves, [`leaf_ranges`] reads range by range instead of by a list of seqs.
const LEAF_LIST_MAX: u64 = 4096;

/// Entry hashes (leaf data) of the leaf index ranges `[start, end)`, i.e. seq `start + 1`
/// through `end`: (leaf index, entry hash). A proof's few hundred leaves are one query by an
/// explicit list of seqs (a primary-key probe each, whatever the planner guesses about the
/// ranges); a backfill's long ranges are one range scan each.
pub async fn leaf_ranges(
    tx: &mut TenantTx,
    ranges: &[(u64, u64)],
) -> Result<Vec<(u64, [u8; 32])>, StoreError> {
    if ranges.is_empty() {
        return Ok(vec![]);
    }
    let env = tx.environment_id().as_uuid();
    let total: u64 = ranges.iter().map(|(s, e)| e.saturating_sub(*s)).sum();
    let mut rows: Vec<(i64, Vec<u8>)> = vec![];
    if total <= LEAF_LIST_MAX {
        let seqs: Vec<i64> = ranges
            .iter()
            .flat_map(|(s, e)| (*s + 1..=*e).map(|q| q as i64))
            .collect();
        rows = sqlx::query_as(
            "SELECT seq, entry_hash FROM audit_log WHERE environment_id = $1 AND seq = ANY($2)",
        )
        .bind(env)
        .bind(seqs)
        .fetch_all(tx.conn())
        .await?;
    } else {
        for (start, end) in ranges {
            rows.extend(
                sqlx::query_as::<_, (i64, Vec<u8>)>(
                    "SELECT seq, entry_hash FROM audit_log
                      WHERE environment_id = $1 AND seq > $2 AND seq <= $3 ORDER BY seq",
                )
                .bind(env)
                .bind(*start as i64)
                .bind(*end as i64)
                .fetch_all(tx.conn())
                .await?,
            );
        }
    }
    rows.into_iter()
        .map(|(seq, hash)| Ok(((seq - 1) as u64, hash32(&hash, "entry hash")?)))
        .collect()
}

/// Stores subtree nodes computed from entry hashes (logs older than stored nodes). A node
/// already stored is left as it is.
pub async fn insert_subtree_nodes(
    tx: &mut TenantTx,
    nodes: &[(NodeId, [u8; 32])],
) -> Result<(), StoreError> {
    if nodes.is_empty() {
        return Ok(());
    }
    let env = tx.environment_id().as_uuid();
    let levels: Vec<i16> = nodes.iter().map(|(n, _)| n.level as i16).collect();
    let indexes: Vec<i64> = nodes.iter().map(|(n, _)| n.index as i64).collect();
    let hashes: Vec<Vec<u8>> = nodes.iter().map(|(_, h)| h.to_vec()).collect();
    sqlx::query(
        "INSERT INTO audit_subtrees (environment_id, level, node_index, hash)
         SELECT $1, n.level, n.node_index, n.hash
           FROM unnest($2::smallint[], $3::bigint[], $4::bytea[]) AS n(level, node_index, hash)
         ON CONFLICT DO NOTHING",
    )
    .bind(env)
    .bind(levels)
    .bind(indexes)
    .bind(hashes)
    .execute(tx.conn())
    .await?;
    Ok(())
}

/// Fetches what `plan` needs into a proof source: its stored nodes and leaf runs, two queries
/// whatever the log's size. Nodes that are not stored (entries written before subtree nodes
/// were) are computed from their entry hashes once and stored for the next proof. The caller
/// must have checked that the plan stays within the log (`head`).
///
/// The nodes are not trusted: a proof built from a wrong one fails verification against the
/// signed checkpoint.
pub async fn proof_source(tx: &mut TenantTx, plan: &Plan) -> Result<StoredSource, StoreError> {
    let mut source = StoredSource::new();
    for (node, hash) in subtree_nodes(tx, &plan.nodes).await? {
        source.add_node(node, hash);
    }
    let missing: Vec<NodeId> = plan
        .nodes
        .iter()
        .filter(|n| !source.has_node(n))
        .copied()
        .collect();
    let backfill = stored::outermost(&missing);
    let mut ranges: Vec<(u64, u64)> = plan.leaves.clone();
    ranges.extend(backfill.iter().map(|n| (n.start(), n.end())));
    let mut leaves = leaf_ranges(tx, &ranges).await?;
    leaves.sort_unstable_by_key(|(i, _)| *i);
    leaves.dedup_by_key(|(i, _)| *i);
    let mut computed = vec![];
    for node in &backfill {
        let from = leaves.partition_point(|(i, _)| *i < node.start());
        let to = leaves.partition_point(|(i, _)| *i < node.end());
        let data: Vec<[u8; 32]> = leaves[from..to].iter().map(|(_, h)| *h).collect();
        let nodes = stored::nodes_from_leaves(*node, &data).ok_or_else(|| {
            StoreError::Integrity(format!(
                "audit log has {} of the {} entries under subtree ({}, {})",
                data.len(),
                node.end() - node.start(),
                node.level,
                node.index
            ))
        })?;
        computed.extend(nodes);
    }
    if !computed.is_empty() {
        tracing::debug!(nodes = computed.len(), "backfilling audit subtree nodes");
        insert_subtree_nodes(tx, &computed).await?;
    }
    for (node, hash) in computed {
        source.add_node(node, hash);
    }
    for (index, hash) in leaves {
        source.add_leaf(index, hash);
    }
    Ok(source)
}

/// The head of the environment's chain: (seq, head hash, Merkle frontier).
pub async fn head(tx: &mut TenantTx) -> Result<Option<(i64, Vec<u8>, Vec<Vec<u8>>)>, StoreError> {
    let env = tx.environment_id().as_uuid();
    Ok(
        sqlx::query_as(
            "SELECT seq, head_hash, frontier FROM audit_heads WHERE environment_id = $1",
        )
        .bind(env)
        .fetch_optional(tx.conn())
        .await?,
    )
}

#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct CheckpointRow {
    pub tree_size: i64,
    #[serde(skip)]
    pub root_hash: Vec<u8>,
    #[serde(skip)]
    pub head_hash: Vec<u8>,
    #[serde(with = "time::serde::rfc3339")]
    pub issued_at: OffsetDateTime,
    pub key_id: String,
    /// The signed checkpoint text (format in crates/audit/FORMAT.md).
    pub signed: String,
}

pub async fn insert_checkpoint(
    tx: &mut TenantTx,
    tree_size: i64,
    root_hash: &[u8; 32],
    head_hash: &[u8; 32],
    issued_at: OffsetDateTime,
    key_id: &str,
    signed: &str,
) -> Result<(), StoreError> {
    let env = tx.environment_id().as_uuid();
    sqlx::query(
        "INSERT INTO audit_checkpoints (environment_id, tree_size, root_hash, head_hash, issued_at, key_id, signed)
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (environment_id, tree_size) DO NOTHING",
    )
    .bind(env)
    .bind(tree_size)
    .bind(root_hash.as_slice())
    .bind(head_hash.as_slice())
    .bind(issued_at)
    .bind(key_id)
    .bind(signed)
    .execute(tx.conn())
    .await?;
    Ok(())
}

/// Records that the checkpoint of `tree_size` is in the anchor store (idempotent).
pub async fn record_anchored(
    tx: &mut TenantTx,
    tree_size: i64,
    at: OffsetDateTime,
) -> Result<(), StoreError> {
    let env = tx.environment_id().as_uuid();
    sqlx::query(
        "INSERT INTO audit_checkpoint_anchors (environment_id, tree_size, anchored_at)
         VALUES ($1, $2, $3) ON CONFLICT (environment_id, tree_size) DO NOTHING",
    )
    .bind(env)
    .bind(tree_size)
    .bind(at)
    .execute(tx.conn())
    .await?;
    Ok(())
}

pub async fn checkpoints(tx: &mut TenantTx) -> Result<Vec<CheckpointRow>, StoreError> {
    let env = tx.environment_id().as_uuid();
    Ok(sqlx::query_as(
        "SELECT tree_size, root_hash, head_hash, issued_at, key_id, signed FROM audit_checkpoints
          WHERE environment_id = $1 ORDER BY tree_size",
    )
    .bind(env)
    .fetch_all(tx.conn())
    .await?)
}

/// Up to `limit` checkpoints with a size above `after`, by size (the checkpoint feed's page).
pub async fn checkpoints_after(
    tx: &mut TenantTx,
    after: i64,
    limit: i64,
) -> Result<Vec<CheckpointRow>, StoreError> {
    let env = tx.environment_id().as_uuid();
    Ok(sqlx::query_as(
        "SELECT tree_size, root_hash, head_hash, issued_at, key_id, signed FROM audit_checkpoints
          WHERE environment_id = $1 AND tree_size > $2 ORDER BY tree_size LIMIT $3",
    )
    .bind(env)
    .bind(after)
    .bind(limit)
    .fetch_all(tx.conn())
    .await?)
}

pub async fn checkpoint_at(tx: &mut TenantTx, tree_size: i64) -> Result<CheckpointRow, StoreError> {
    let env = tx.environment_id().as_uuid();
    Ok(sqlx::query_as(
        "SELECT tree_size, root_hash, head_hash, issued_at, key_id, signed FROM audit_checkpoints
          WHERE environment_id = $1 AND tree_size = $2",
    )
    .bind(env)
    .bind(tree_size)
    .fetch_one(tx.conn())
    .await?)
}

/// Public checkpoint-signing keys (no context needed: they are public).
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct PublicKeyRow {
    pub key_id: String,
    #[serde(skip)]
    pub public_key: Vec<u8>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub retired_at: Option<OffsetDateTime>,
}

pub async fn public_keys(tx: &mut crate::AuthTx) -> Result<Vec<PublicKeyRow>, StoreError> {
    Ok(sqlx::query_as("SELECT key_id, public_key, created_at, retired_at FROM audit_signing_keys ORDER BY created_at")
        .fetch_all(tx.conn())
        .await?)
}

/// Cross-environment queries of the checkpointer and its signer: run as
/// `portcullis_checkpointer` while serving (its grants are exactly these queries' columns,
/// migration `20261202000009_background_roles`) or as the schema owner from the CLI.
pub mod operator {
    use sqlx::PgPool;
    use time::OffsetDateTime;
    use uuid::Uuid;

    use crate::StoreError;

    /// Scopes with entries beyond their last checkpoint: (scope, head seq, last checkpoint
    /// size, last checkpoint time). Only checkpoints within the log count: a row for a size
    /// the log has not reached (inserted by someone else) does not stop the checkpointer.
    pub async fn uncheckpointed(
        pool: &PgPool,
    ) -> Result<Vec<(Uuid, i64, i64, Option<OffsetDateTime>)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT h.environment_id, h.seq, COALESCE(c.size, 0), c.at
               FROM audit_heads h
               LEFT JOIN LATERAL (SELECT max(tree_size) AS size, max(issued_at) AS at
                                    FROM audit_checkpoints
                                   WHERE environment_id = h.environment_id AND tree_size <= h.seq) c
                 ON true
              WHERE h.seq > COALESCE(c.size, 0)
              ORDER BY h.environment_id",
        )
        .fetch_all(pool)
        .await?)
    }

    /// Checkpoints never recorded as anchored (the anchor store failed when they were cut, or
    /// they predate the record, or the checkpointer refused them), by scope and size, after
    /// `after` (scope, size) when given: (scope, tree size, signed text).
    pub async fn unanchored_checkpoints(
        pool: &PgPool,
        after: Option<(Uuid, i64)>,
        limit: i64,
    ) -> Result<Vec<(Uuid, i64, String)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT c.environment_id, c.tree_size, c.signed
               FROM audit_checkpoints c
              WHERE NOT EXISTS (SELECT 1 FROM audit_checkpoint_anchors a
                                 WHERE a.environment_id = c.environment_id AND a.tree_size = c.tree_size)
                AND ($2::uuid IS NULL OR (c.environment_id, c.tree_size) > ($2, $3::bigint))
              ORDER BY c.environment_id, c.tree_size
              LIMIT $1",
        )
        .bind(limit)
        .bind(after.map(|a| a.0))
        .bind(after.map(|a| a.1))
        .fetch_all(pool)
        .await?)
    }

    #[derive(Clone, Debug, sqlx::FromRow)]
    pub struct SigningKeyRow {
        pub key_id: String,
        pub public_key: Vec<u8>,
        pub wrapped_seed: Vec<u8>,
        pub kek: serde_json::Value,
        pub created_at: OffsetDateTime,
        pub retired_at: Option<OffsetDateTime>,
    }

    pub async fn signing_keys(pool: &PgPool) -> Result<Vec<SigningKeyRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT key_id, public_key, wrapped_seed, kek, created_at, retired_at FROM audit_signing_keys ORDER BY created_at",
        )
        .fetch_all(pool)
        .await?)
    }

    pub async fn add_signing_key(pool: &PgPool, row: &SigningKeyRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO audit_signing_keys (key_id, public_key, wrapped_seed, kek, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&row.key_id)
        .bind(&row.public_key)
        .bind(&row.wrapped_seed)
        .bind(&row.kek)
        .bind(row.created_at)
        .execute(pool)
        .await?;
        Ok(())
    }

    /// Marks every key except `keep` retired (they stay published for verification).
    pub async fn retire_other_keys(
        pool: &PgPool,
        keep: &str,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE audit_signing_keys SET retired_at = $2 WHERE key_id <> $1 AND retired_at IS NULL")
            .bind(keep)
            .bind(now)
            .execute(pool)
            .await?;
        Ok(())
    }
}
