//! An attacker with the superuser's connection: edits of the append-only audit tables (their
//! no-update/delete trigger switched off first, as someone who got past control L2 would), and
//! the hash chain rebuilt consistently after such an edit. The audit benchmark builds its
//! bulk-loaded chain with the same `Chain` (it includes this file by path).

use portcullis_audit::entry::{entry_hash, merkle_leaf, EntryHashInput, GENESIS_PREV_HASH};
use portcullis_audit::merkle::MerkleTree;
use portcullis_store::audit_writer::entry_body;
use portcullis_store::queries::audit_log::StoredEntry;
use portcullis_store::testing::TestDb;
use sqlx::PgConnection;
use uuid::Uuid;

/// An audit table that refuses UPDATE, DELETE and TRUNCATE by trigger, even for the superuser.
#[derive(Clone, Copy, Debug)]
pub enum AuditTable {
    Log,
    Subtrees,
    Checkpoints,
}

/// The statements that switch `$table`'s guard trigger off and on again.
macro_rules! guard {
    ($table:literal) => {
        (
            concat!(
                "ALTER TABLE ",
                $table,
                " DISABLE TRIGGER ",
                $table,
                "_no_update_delete"
            ),
            concat!(
                "ALTER TABLE ",
                $table,
                " ENABLE TRIGGER ",
                $table,
                "_no_update_delete"
            ),
        )
    };
}

impl AuditTable {
    fn guard(self) -> (&'static str, &'static str) {
        match self {
            AuditTable::Log => guard!("audit_log"),
            AuditTable::Subtrees => guard!("audit_subtrees"),
            AuditTable::Checkpoints => guard!("audit_checkpoints"),
        }
    }
}

/// Runs `sql` as the superuser with `table`'s guard off: statements separated by `;`, each
/// with `env` bound to `$1`. The guard is switched on again afterwards. What is pending is
/// sequenced first, so the edit reaches every entry written so far.
pub async fn tamper(db: &TestDb, table: AuditTable, env: Uuid, sql: &str) {
    db.sequence(env).await;
    let mut admin = db.admin_conn().await;
    let (off, on) = table.guard();
    sqlx::query(off).execute(&mut admin).await.unwrap();
    for statement in sql.split(';') {
        sqlx::query(statement)
            .bind(env)
            .execute(&mut admin)
            .await
            .unwrap();
    }
    sqlx::query(on).execute(&mut admin).await.unwrap();
}

/// Recomputes every entry hash of `env`'s chain and its head (hash and Merkle frontier) from
/// the stored rows: after an edit the chain is clean again, but no longer the tree that
/// earlier checkpoints signed.
pub async fn rehash(db: &TestDb, env: Uuid) {
    db.sequence(env).await;
    let mut admin = db.admin_conn().await;
    let (off, on) = AuditTable::Log.guard();
    sqlx::query(off).execute(&mut admin).await.unwrap();
    let mut rows: Vec<StoredEntry> =
        sqlx::query_as("SELECT * FROM audit_log WHERE environment_id = $1 ORDER BY seq")
            .bind(env)
            .fetch_all(&mut admin)
            .await
            .unwrap();
    let mut chain = Chain::new(env);
    for row in &mut rows {
        chain.link(row);
        sqlx::query(
            "UPDATE audit_log SET prev_hash = $3, entry_hash = $4 WHERE environment_id = $1 AND seq = $2",
        )
        .bind(env)
        .bind(row.seq)
        .bind(&row.prev_hash)
        .bind(&row.entry_hash)
        .execute(&mut admin)
        .await
        .unwrap();
    }
    chain.store_head(&mut admin).await;
    sqlx::query(on).execute(&mut admin).await.unwrap();
    // The stored Merkle subtree nodes too, so that proofs built from them match the rewrite.
    let (off, on) = AuditTable::Subtrees.guard();
    sqlx::query(off).execute(&mut admin).await.unwrap();
    sqlx::query("DELETE FROM audit_subtrees WHERE environment_id = $1")
        .bind(env)
        .execute(&mut admin)
        .await
        .unwrap();
    for (level, index, hash) in &chain.nodes {
        sqlx::query(
            "INSERT INTO audit_subtrees (environment_id, level, node_index, hash) VALUES ($1, $2, $3, $4)",
        )
        .bind(env)
        .bind(*level as i16)
        .bind(*index as i64)
        .bind(hash.as_slice())
        .execute(&mut admin)
        .await
        .unwrap();
    }
    sqlx::query(on).execute(&mut admin).await.unwrap();
}

/// One scope's hash chain and Merkle tree, extended entry by entry exactly as
/// `portcullis_store::audit_writer::insert` extends them.
pub struct Chain {
    env: Uuid,
    seq: i64,
    prev: [u8; 32],
    tree: MerkleTree,
    /// Stored subtree nodes (level >= 8) completed so far: (level, index, hash).
    pub nodes: Vec<(u32, u64, [u8; 32])>,
}

impl Chain {
    pub fn new(env: Uuid) -> Chain {
        Chain {
            env,
            seq: 0,
            prev: GENESIS_PREV_HASH,
            tree: MerkleTree::new(),
            nodes: vec![],
        }
    }

    /// Appends `row`, the next entry: sets its `prev_hash` and `entry_hash`.
    pub fn link(&mut self, row: &mut StoredEntry) {
        let hash = entry_hash(&EntryHashInput {
            environment_id: self.env,
            seq: row.seq as u64,
            prev_hash: self.prev,
            body: &entry_body(row),
        });
        row.prev_hash = self.prev.to_vec();
        row.entry_hash = hash.to_vec();
        let nodes = &mut self.nodes;
        self.tree
            .push_reporting(merkle_leaf(&hash), |level, index, node| {
                if level >= portcullis_audit::merkle::stored::STORED_LEVEL {
                    nodes.push((level, index, *node));
                }
            });
        self.seq = row.seq;
        self.prev = hash;
    }

    /// Writes the chain's head (last sequence number, hash and Merkle frontier), as the
    /// writer does under the head's lock.
    pub async fn store_head(&self, admin: &mut PgConnection) {
        let frontier: Vec<Vec<u8>> = self.tree.frontier().iter().map(|h| h.to_vec()).collect();
        sqlx::query(
            "INSERT INTO audit_heads (environment_id, seq, head_hash, frontier) VALUES ($1, $2, $3, $4)
             ON CONFLICT (environment_id) DO UPDATE SET seq = $2, head_hash = $3, frontier = $4",
        )
        .bind(self.env)
        .bind(self.seq)
        .bind(self.prev.as_slice())
        .bind(frontier)
        .execute(admin)
        .await
        .unwrap();
    }
}

/// An attacker's checkpoint row for `size`, inserted as the superuser: signed by `key` (a key
/// of the attacker's own, or a leaked one), of a tree that does not exist (root and head all 9s).
pub async fn forge_checkpoint(
    db: &TestDb,
    env: Uuid,
    key: &portcullis_audit::checkpoint::SigningKey,
    size: i64,
) -> String {
    let signed = key
        .sign(&portcullis_audit::checkpoint::Checkpoint {
            environment_id: env,
            tree_size: size as u64,
            root_hash: [9; 32],
            last_entry_hash: [9; 32],
            issued_at: time::OffsetDateTime::now_utc().unix_timestamp(),
        })
        .to_string();
    let mut admin = db.admin_conn().await;
    sqlx::query(
        "INSERT INTO audit_checkpoints (environment_id, tree_size, root_hash, head_hash, issued_at, key_id, signed)
         VALUES ($1, $2, $3, $3, now(), $4, $5)",
    )
    .bind(env)
    .bind(size)
    .bind([9u8; 32].as_slice())
    .bind(key.key_id().to_string())
    .bind(&signed)
    .execute(&mut admin)
    .await
    .unwrap();
    signed
}
