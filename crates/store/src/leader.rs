//! One node at a time for cluster-wide background passes. Every node runs the key-rotation
//! scheduler and the audit checkpointer; each pass first takes a PostgreSQL advisory lock and
//! is skipped when another node holds it, so work is never done twice at once.
//!
//! The lock is transaction-scoped (`pg_try_advisory_xact_lock`) on a connection of its own,
//! held open for the pass: it is released when the pass ends, when the guard is dropped (the
//! transaction rolls back) and when the node dies (the session ends), never left behind on a
//! pooled connection. The keys live in PostgreSQL's single-bigint advisory lock space; they are
//! fixed and documented in docs/AUDIT.md ("Background passes") so operators can spot them in
//! `pg_locks` (`locktype = 'advisory'`, `classid` = high 32 bits, `objid` = low 32 bits).

use sqlx::{PgPool, Postgres, Transaction};

use crate::StoreError;

/// `jobs::scheduler_pass`: resuming re-encryption jobs and scheduled key rotations.
/// ASCII "pcls" in the high half, 1 in the low half.
pub const KEY_ROTATION_SCHEDULER_LOCK: i64 = 0x7063_6c73_0000_0001;
/// `trail::checkpoint_pass`: cutting, signing and anchoring audit checkpoints.
pub const AUDIT_CHECKPOINTER_LOCK: i64 = 0x7063_6c73_0000_0002;

/// A held pass lock. Dropping it releases the lock (the transaction rolls back).
#[derive(Debug)]
pub struct PassLock {
    tx: Transaction<'static, Postgres>,
    key: i64,
}

impl PassLock {
    /// Takes `key` for the length of a pass on a connection of its own from `pool`; `None`
    /// when another session holds it. Needs one free connection besides those the pass uses.
    pub async fn try_acquire(pool: &PgPool, key: i64) -> Result<Option<PassLock>, StoreError> {
        let mut tx = pool.begin().await?;
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
            .bind(key)
            .fetch_one(&mut *tx)
            .await?;
        if got {
            Ok(Some(PassLock { tx, key }))
        } else {
            tx.rollback().await?;
            Ok(None)
        }
    }

    pub fn key(&self) -> i64 {
        self.key
    }

    /// Releases the lock now.
    pub async fn release(self) -> Result<(), StoreError> {
        self.tx.rollback().await?;
        Ok(())
    }
}
