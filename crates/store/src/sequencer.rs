//! The audit sequencer (L3, L7; migration `20261202000014_audit_sequencer`).
//!
//! A mutation's transaction writes its audit entry into `audit_pending` ([`crate::audit_writer`])
//! and commits without touching the chain, so the audited writes of one environment no longer
//! queue behind each other. The sequencer then integrates pending entries into the chain: for
//! one scope at a time (the row lock on the scope's head, so two nodes never sequence the same
//! scope at once), it reads up to [`BATCH`] pending entries in submission
//! order, gives them the next sequence numbers, hashes them onto the chain and the Merkle
//! frontier, inserts them into `audit_log` with the head advanced in one statement, and deletes
//! them from `audit_pending` in the same transaction. A crash at any point leaves either the
//! batch sequenced or the entries pending; the next pass (on any node) picks them up.
//!
//! Who sequences:
//! - readers of the sequenced view (audit list, export, proofs, checkpoints, reports,
//!   verification) call [`Sequencer::sequence`] first, which waits for a batch in progress, so
//!   nobody sees a committed entry as missing;
//! - [`Sequencer::run`], spawned by `serve`, sequences a scope shortly after a transaction
//!   that audited in it commits on this node ([`Sequencer::submitted`]), and sweeps every scope
//!   with pending entries periodically (entries written by other nodes or the CLI, and those a
//!   crash left behind).
//!
//! It connects as `portcullis_sequencer`, the only role that may insert into `audit_log` and
//! move heads; the database guards check every batch (the migration's header).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use portcullis_audit::merkle::stored::STORED_LEVEL;
use portcullis_audit::merkle::{leaf_hash, MerkleTree};
use sqlx::PgPool;
use time::OffsetDateTime;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::chain::{entry_body, StoredEntry};
use crate::StoreError;

/// How often `serve`'s sequencer looks for entries pending in any scope (submitted by other
/// nodes or the CLI, or left by a crash); this node's own are sequenced as they commit.
pub const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// An entry pending for longer than this is reported at every sweep (ERROR in the log): the
/// sequencer is failing for its scope, and the readers of that scope fail with it.
pub const PENDING_ALERT: Duration = Duration::from_secs(300);
/// How long the background sequencer waits after a commit before it chains: commits that
/// arrive meanwhile join the same batch. Readers never wait for it ([`Sequencer::sequence`]).
pub const COALESCE: Duration = Duration::from_millis(20);
/// Entries integrated per transaction.
pub const BATCH: i64 = 512;
/// Handle on the sequencer's pool and its queue of scopes due. Cloning is cheap.
#[derive(Clone, Debug)]
pub struct Sequencer {
    pool: PgPool,
    due: Arc<Due>,
}

#[derive(Debug, Default)]
struct Due {
    scopes: Mutex<HashSet<Uuid>>,
    wake: Notify,
}

/// What a sweep found pending: a scope, how many entries, the oldest one's time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingScope {
    pub scope: Uuid,
    pub entries: i64,
    pub oldest: OffsetDateTime,
}

#[derive(sqlx::FromRow)]
struct PendingRow {
    audit_id: Uuid,
    occurred_at: OffsetDateTime,
    actor_type: String,
    actor_id: Option<Uuid>,
    action: String,
    action_version: i16,
    target_type: String,
    target_id: Option<String>,
    outcome: String,
    before: Option<serde_json::Value>,
    after: Option<serde_json::Value>,
    request_id: Option<String>,
    ip: Option<String>,
    user_agent: Option<String>,
}

/// A locked head: scope, size, head hash, frontier.
type HeadRow = (Uuid, i64, Vec<u8>, Vec<Vec<u8>>);

/// A pending entry with its scope.
#[derive(sqlx::FromRow)]
struct ScopedPendingRow {
    environment_id: Uuid,
    #[sqlx(flatten)]
    row: PendingRow,
}

enum Batch {
    Done(u64),
    /// Pending entries of scopes that have no head yet.
    NeedHeads(Vec<Uuid>),
}

/// The extensions of every scope in a batch, as the parallel arrays one statement takes.
#[derive(Default)]
struct Flat {
    entry_scopes: Vec<Uuid>,
    audit_ids: Vec<Uuid>,
    seqs: Vec<i64>,
    prev_hashes: Vec<Vec<u8>>,
    entry_hashes: Vec<Vec<u8>>,
    node_scopes: Vec<Uuid>,
    node_levels: Vec<i16>,
    node_indexes: Vec<i64>,
    node_hashes: Vec<Vec<u8>>,
    head_scopes: Vec<Uuid>,
    old_seqs: Vec<i64>,
    new_seqs: Vec<i64>,
    new_heads: Vec<Vec<u8>>,
    /// Each scope's new frontier, its 32-byte hashes concatenated.
    frontiers: Vec<Vec<u8>>,
}

impl Flat {
    fn push(&mut self, scope: Uuid, ext: Extension) {
        self.entry_scopes
            .extend(std::iter::repeat_n(scope, ext.audit_ids.len()));
        self.node_scopes
            .extend(std::iter::repeat_n(scope, ext.node_levels.len()));
        self.head_scopes.push(scope);
        self.old_seqs.push(ext.old_seq);
        self.new_seqs.push(ext.new_seq);
        self.new_heads
            .push(ext.entry_hashes.last().cloned().unwrap_or_default());
        self.frontiers.push(ext.frontier.concat());
        self.audit_ids.extend(ext.audit_ids);
        self.seqs.extend(ext.seqs);
        self.prev_hashes.extend(ext.prev_hashes);
        self.entry_hashes.extend(ext.entry_hashes);
        self.node_levels.extend(ext.node_levels);
        self.node_indexes.extend(ext.node_indexes);
        self.node_hashes.extend(ext.node_hashes);
    }
}

/// A batch hashed onto a head: what one statement writes.
struct Extension {
    audit_ids: Vec<Uuid>,
    seqs: Vec<i64>,
    prev_hashes: Vec<Vec<u8>>,
    entry_hashes: Vec<Vec<u8>>,
    old_seq: i64,
    new_seq: i64,
    frontier: Vec<Vec<u8>>,
    node_levels: Vec<i16>,
    node_indexes: Vec<i64>,
    node_hashes: Vec<Vec<u8>>,
}

/// Hashes `rows` onto the chain of `scope` whose head is (`seq`, `head_hash`, `frontier`).
fn extend(
    scope: Uuid,
    seq: i64,
    head_hash: [u8; 32],
    frontier: Vec<[u8; 32]>,
    rows: Vec<PendingRow>,
) -> Result<Extension, StoreError> {
    let size = u64::try_from(seq).map_err(|_| StoreError::Integrity("bad sequence".into()))?;
    let mut tree = MerkleTree::from_frontier(size, frontier)
        .ok_or_else(|| StoreError::Integrity(format!("audit frontier of {scope} is corrupt")))?;
    let mut ext = Extension {
        audit_ids: Vec::with_capacity(rows.len()),
        seqs: Vec::with_capacity(rows.len()),
        prev_hashes: Vec::with_capacity(rows.len()),
        entry_hashes: Vec::with_capacity(rows.len()),
        old_seq: seq,
        new_seq: seq,
        frontier: Vec::new(),
        node_levels: Vec::new(),
        node_indexes: Vec::new(),
        node_hashes: Vec::new(),
    };
    let mut prev = head_hash;
    for row in rows {
        let next = ext.new_seq + 1;
        let entry = StoredEntry {
            environment_id: scope,
            seq: next,
            audit_id: row.audit_id,
            occurred_at: row.occurred_at,
            actor_type: row.actor_type,
            actor_id: row.actor_id,
            action: row.action,
            action_version: row.action_version,
            target_type: row.target_type,
            target_id: row.target_id,
            outcome: row.outcome,
            before: row.before,
            after: row.after,
            request_id: row.request_id,
            ip: row.ip,
            user_agent: row.user_agent,
            prev_hash: prev.to_vec(),
            entry_hash: Vec::new(),
        };
        let body = entry_body(&entry);
        let hash = portcullis_audit::entry::entry_hash(&portcullis_audit::entry::EntryHashInput {
            environment_id: scope,
            seq: next as u64,
            prev_hash: prev,
            body: &body,
        });
        // The perfect subtrees of 256 leaves or more this entry completes: stored so proofs
        // need O(log n) rows, not every entry hash.
        tree.push_reporting(leaf_hash(&hash), |level, index, node| {
            if level >= STORED_LEVEL {
                ext.node_levels.push(level as i16);
                ext.node_indexes.push(index as i64);
                ext.node_hashes.push(node.to_vec());
            }
        });
        ext.audit_ids.push(row.audit_id);
        ext.seqs.push(next);
        ext.prev_hashes.push(prev.to_vec());
        ext.entry_hashes.push(hash.to_vec());
        ext.new_seq = next;
        prev = hash;
    }
    ext.frontier = tree.frontier().iter().map(|h| h.to_vec()).collect();
    Ok(ext)
}

fn decode_head(
    head: Vec<u8>,
    frontier: Vec<Vec<u8>>,
) -> Result<([u8; 32], Vec<[u8; 32]>), StoreError> {
    let head = <[u8; 32]>::try_from(head.as_slice())
        .map_err(|_| StoreError::Integrity("bad chain head".into()))?;
    let frontier = frontier
        .iter()
        .map(|h| <[u8; 32]>::try_from(h.as_slice()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| StoreError::Integrity("bad audit frontier".into()))?;
    Ok((head, frontier))
}

impl Sequencer {
    /// A sequencer over a pool of the `portcullis_sequencer` role
    /// ([`crate::bootstrap::background_pool`]). Readers wait on it, so give it a few
    /// connections (4 by default in `serve`).
    pub fn new(pool: PgPool) -> Self {
        Sequencer {
            pool,
            due: Arc::default(),
        }
    }

    /// A transaction that audited in `scope` committed: sequence it soon.
    pub fn submitted(&self, scope: Uuid) {
        let fresh = self
            .due
            .scopes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(scope);
        if fresh {
            self.due.wake.notify_one();
        }
    }

    /// Sequences everything pending in `scope`, waiting for another sequencer of the scope
    /// (this node's or another's) to finish its batch first. Returns how many entries this call
    /// sequenced. Afterwards every entry committed before the call is in `audit_log`.
    pub async fn sequence(&self, scope: Uuid) -> Result<u64, StoreError> {
        self.sequence_many(&[scope]).await
    }

    /// Sequences everything pending in `scopes`, several scopes per batch (the background
    /// sequencer and sweeps: many environments with a few new entries each share one
    /// transaction). Returns how many entries were sequenced.
    pub async fn sequence_many(&self, scopes: &[Uuid]) -> Result<u64, StoreError> {
        let mut scopes = scopes.to_vec();
        scopes.sort_unstable();
        scopes.dedup();
        let mut total = 0u64;
        if scopes.is_empty() {
            return Ok(0);
        }
        loop {
            let n = self.batch(&scopes).await?;
            total += n;
            if n < BATCH as u64 {
                return Ok(total);
            }
        }
    }

    /// One batch over `scopes` (sorted, distinct), in one transaction: up to [`BATCH`] pending
    /// entries, oldest first within each scope.
    async fn batch(&self, scopes: &[Uuid]) -> Result<u64, StoreError> {
        // Each round creates the heads the last one found missing; entries of other scopes in
        // the list may arrive meanwhile, so at most one round per scope.
        for _ in 0..=scopes.len() {
            match self.try_batch(scopes).await? {
                Batch::Done(n) => return Ok(n),
                Batch::NeedHeads(missing) => {
                    // A scope's first entry: its head is created empty (the guard allows only
                    // that) in a transaction of its own, so that a batch only ever locks
                    // existing heads, in one order. A concurrent creator waits on the unique
                    // index and then finds it.
                    sqlx::query(
                        "INSERT INTO audit_heads (environment_id, seq, head_hash, frontier)
                         SELECT s, 0, $2, '{}' FROM unnest($1::uuid[]) AS s
                         ON CONFLICT (environment_id) DO NOTHING",
                    )
                    .bind(&missing)
                    .bind([0u8; 32].as_slice())
                    .execute(&self.pool)
                    .await?;
                }
            }
        }
        Err(StoreError::Integrity(format!(
            "audit heads of {} scopes could not be created",
            scopes.len()
        )))
    }

    async fn try_batch(&self, scopes: &[Uuid]) -> Result<Batch, StoreError> {
        let mut tx = self.pool.begin().await?;
        // Every statement of a batch looks rows up by key. `audit_pending` is a queue whose
        // statistics are stale more often than not (rows live for milliseconds; with autovacuum
        // off they are never refreshed), and a join planned as a nested loop over a scan of it
        // makes a batch quadratic: plan without sequential scans.
        sqlx::query("SET LOCAL enable_seqscan = off")
            .execute(&mut *tx)
            .await?;
        // Each scope's lock is its head row, taken FOR UPDATE in scope order (no deadlock
        // between batches): no other role can take it (row locks need UPDATE on the table,
        // which only this role holds), unlike an advisory lock, which any SQL of the runtime
        // role could hold to stall a scope.
        let heads: Vec<HeadRow> = sqlx::query_as(
            "SELECT environment_id, seq, head_hash, frontier FROM audit_heads
              WHERE environment_id = ANY($1) ORDER BY environment_id FOR UPDATE",
        )
        .bind(scopes)
        .fetch_all(&mut *tx)
        .await?;
        // Read after the locks: whatever a sequencer before us chained is gone from here.
        let rows: Vec<ScopedPendingRow> = sqlx::query_as(
            "SELECT environment_id, audit_id, occurred_at, actor_type, actor_id, action, action_version,
                    target_type, target_id, outcome, before, after, request_id, ip, user_agent
               FROM audit_pending WHERE environment_id = ANY($1)
              ORDER BY environment_id, pending_id LIMIT $2",
        )
        .bind(scopes)
        .bind(BATCH)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            tx.commit().await?;
            return Ok(Batch::Done(0));
        }
        let mut missing: Vec<Uuid> = rows
            .iter()
            .map(|r| r.environment_id)
            .filter(|e| !heads.iter().any(|h| h.0 == *e))
            .collect();
        if !missing.is_empty() {
            missing.dedup();
            tx.rollback().await?;
            return Ok(Batch::NeedHeads(missing));
        }
        let n = rows.len() as u64;
        // Entries, nodes and heads of every scope in the batch, as parallel arrays.
        let mut all = Flat::default();
        let mut rows = rows.into_iter().peekable();
        for (scope, seq, head, frontier) in heads {
            let mut mine = Vec::new();
            while let Some(r) = rows.next_if(|r| r.environment_id == scope) {
                mine.push(r.row);
            }
            if mine.is_empty() {
                continue;
            }
            let (head, frontier) = decode_head(head, frontier)?;
            all.push(scope, extend(scope, seq, head, frontier, mine)?);
        }
        // One statement: the entries (copied from their pending rows, with their chain fields),
        // the subtree nodes they complete and the new heads. The heads are locked, so
        // `seq = old` holds; checking it anyway turns a surprise into an error, not a fork.
        let advanced = sqlx::query(
            "WITH chained AS (
                 SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::bigint[], $4::bytea[], $5::bytea[])
                     AS c(environment_id, audit_id, seq, prev_hash, entry_hash)
             ), entries AS (
                 INSERT INTO audit_log (environment_id, seq, audit_id, occurred_at, actor_type, actor_id, action,
                                        action_version, target_type, target_id, outcome, before, after, request_id,
                                        ip, user_agent, prev_hash, entry_hash)
                 SELECT p.environment_id, c.seq, p.audit_id, p.occurred_at, p.actor_type, p.actor_id, p.action,
                        p.action_version, p.target_type, p.target_id, p.outcome, p.before, p.after, p.request_id,
                        p.ip, p.user_agent, c.prev_hash, c.entry_hash
                   FROM chained c
                   JOIN audit_pending p ON p.environment_id = c.environment_id AND p.audit_id = c.audit_id
                 RETURNING 1
             ), nodes AS (
                 INSERT INTO audit_subtrees (environment_id, level, node_index, hash)
                 SELECT * FROM unnest($6::uuid[], $7::smallint[], $8::bigint[], $9::bytea[])
                 ON CONFLICT DO NOTHING
             ), moved AS (
                 SELECT * FROM unnest($10::uuid[], $11::bigint[], $12::bigint[], $13::bytea[], $14::bytea[])
                     AS u(environment_id, old_seq, new_seq, head_hash, frontier)
             )
             UPDATE audit_heads h
                SET seq = u.new_seq, head_hash = u.head_hash,
                    frontier = ARRAY(SELECT substring(u.frontier FROM i * 32 + 1 FOR 32)
                                       FROM generate_series(0, length(u.frontier) / 32 - 1) AS i ORDER BY i)
               FROM moved u
              WHERE h.environment_id = u.environment_id AND h.seq = u.old_seq
                AND (SELECT count(*) FROM entries) = cardinality($2::uuid[])",
        )
        .bind(&all.entry_scopes)
        .bind(&all.audit_ids)
        .bind(&all.seqs)
        .bind(&all.prev_hashes)
        .bind(&all.entry_hashes)
        .bind(&all.node_scopes)
        .bind(&all.node_levels)
        .bind(&all.node_indexes)
        .bind(&all.node_hashes)
        .bind(&all.head_scopes)
        .bind(&all.old_seqs)
        .bind(&all.new_seqs)
        .bind(&all.new_heads)
        .bind(&all.frontiers)
        .execute(&mut *tx)
        .await?;
        if advanced.rows_affected() != all.head_scopes.len() as u64 {
            return Err(StoreError::Integrity(format!(
                "audit heads of {:?} did not advance over their pending entries",
                all.head_scopes
            )));
        }
        sqlx::query(
            "DELETE FROM audit_pending p USING unnest($1::uuid[], $2::uuid[]) AS d(environment_id, audit_id)
              WHERE p.environment_id = d.environment_id AND p.audit_id = d.audit_id",
        )
        .bind(&all.entry_scopes)
        .bind(&all.audit_ids)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Batch::Done(n))
    }

    /// Every scope with pending entries, the one pending longest first.
    pub async fn pending(&self) -> Result<Vec<PendingScope>, StoreError> {
        let rows: Vec<(Uuid, i64, OffsetDateTime)> = sqlx::query_as(
            "SELECT environment_id, count(*), min(occurred_at) FROM audit_pending
              GROUP BY environment_id ORDER BY min(occurred_at)",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(scope, entries, oldest)| PendingScope {
                scope,
                entries,
                oldest,
            })
            .collect())
    }

    /// Sequences what is pending in every scope; returns how many entries.
    pub async fn sweep(&self) -> Result<u64, StoreError> {
        let scopes: Vec<Uuid> = self.pending().await?.into_iter().map(|p| p.scope).collect();
        self.sequence_many(&scopes).await
    }

    /// Sequences scopes as they become due on this node, and sweeps all of them every
    /// `sweep_every`, for as long as the process runs. Errors are logged and retried on the
    /// next wake or sweep; nothing is dropped (the entries stay pending).
    pub async fn run(self, sweep_every: Duration) {
        let mut sweep = tokio::time::interval(sweep_every);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.due.wake.notified() => {
                    // Let more commits of the moment arrive, so that one batch chains them all:
                    // a batch's fixed cost (its transaction, the head's lock) is then shared.
                    tokio::time::sleep(COALESCE).await;
                }
                _ = sweep.tick() => {
                    match self.pending().await {
                        Ok(found) => {
                            let now = OffsetDateTime::now_utc();
                            for p in &found {
                                let age = now - p.oldest;
                                if age > PENDING_ALERT {
                                    tracing::error!(
                                        scope = %p.scope,
                                        entries = p.entries,
                                        pending_seconds = age.whole_seconds(),
                                        "audit entries are pending longer than they should: the sequencer cannot chain them"
                                    );
                                }
                            }
                            let mut due = self.due.scopes.lock().unwrap_or_else(|p| p.into_inner());
                            due.extend(found.into_iter().map(|p| p.scope));
                        }
                        Err(e) => tracing::warn!(error = %e, "audit sequencer: cannot list pending entries"),
                    }
                }
            }
            let scopes: Vec<Uuid> = self
                .due
                .scopes
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .drain()
                .collect();
            if let Err(e) = self.sequence_many(&scopes).await {
                tracing::error!(scopes = scopes.len(), error = %e, "audit sequencer: cannot sequence pending entries; retrying at the next sweep");
            }
        }
    }
}
