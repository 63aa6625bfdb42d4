//! The audit sequencer (issue 10, section 2; controls L2, L3, L7; migration
//! 20261202000014_audit_sequencer.sql): an entry is submitted with its mutation and chained
//! later, by one sequencer per scope at a time. These tests race sequencers of two nodes
//! against writers, kill a node holding a scope's sequencer lock, and try, as the runtime role
//! and as the sequencer's own role, to drop, alter or invent entries on the way.

use portcullis_audit::entry::GENESIS_PREV_HASH;
use portcullis_audit::merkle::{self, MerkleTree};
use portcullis_audit::verify::{self, Body};
use portcullis_audit::Hash;
use portcullis_core::{EnvironmentId, Permission, PermissionSet};
use portcullis_store::audit_writer::entry_body;
use portcullis_store::bootstrap::{self, SEQUENCER_ROLE};
use portcullis_store::queries::audit_log;
use portcullis_store::sequencer;
use portcullis_store::testing::TestDb;
use portcullis_store::{AuditEvent, RequestMeta, Store};
use sqlx::{Connection, PgPool};

use crate::support::{tenant, Tenant};

async fn sequencer_role(db: &TestDb) -> PgPool {
    bootstrap::background_pool(&db.sequencer, SEQUENCER_ROLE, 2)
        .await
        .unwrap()
}

/// One audited request transaction of the owner.
async fn audited_write(store: &Store, t: &Tenant, i: usize) {
    let mut tx = store
        .tenant_as_identity(t.env, t.owner, None, RequestMeta::default())
        .await
        .unwrap();
    tx.audit(AuditEvent::success("project.updated", "project", i))
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

async fn count(db: &TestDb, table: &str, env: EnvironmentId) -> i64 {
    let mut admin = db.admin_conn().await;
    let sql = match table {
        "audit_pending" => "SELECT count(*) FROM audit_pending WHERE environment_id = $1",
        _ => "SELECT count(*) FROM audit_log WHERE environment_id = $1",
    };
    sqlx::query_scalar(sql)
        .bind(env.as_uuid())
        .fetch_one(&mut admin)
        .await
        .unwrap()
}

/// The scope's chain verifies from the database: entries 1..=n, each re-hashing and linking,
/// the head naming the last one, its frontier giving the root of all leaves. Returns n.
async fn verified(store: &Store, env: EnvironmentId) -> u64 {
    let mut tx = store
        .tenant_as_system(
            env,
            PermissionSet::of(&[Permission::AuditRead]),
            RequestMeta::default(),
        )
        .await
        .unwrap();
    let rows = audit_log::stored_range(&mut tx, 0, i64::MAX).await.unwrap();
    let (seq, head, frontier) =
        audit_log::head(&mut tx)
            .await
            .unwrap()
            .unwrap_or((0, GENESIS_PREV_HASH.to_vec(), vec![]));
    tx.commit().await.unwrap();
    let bodies: Vec<serde_json::Value> = rows.iter().map(entry_body).collect();
    let report = verify::verify_entries(
        env.as_uuid(),
        &[],
        &[],
        rows.iter().zip(&bodies).map(|(r, b)| verify::StoredEntry {
            seq: r.seq as u64,
            prev_hash: r.prev_hash.clone().try_into().unwrap(),
            entry_hash: r.entry_hash.clone().try_into().unwrap(),
            body: Body::Json(b),
        }),
    );
    assert!(report.is_clean(), "{:?}", report.first_problem);
    assert!(rows.iter().enumerate().all(|(i, r)| r.seq == i as i64 + 1));
    assert_eq!(seq, rows.len() as i64, "the head is the last entry");
    assert_eq!(
        head,
        rows.last()
            .map_or(GENESIS_PREV_HASH.to_vec(), |r| r.entry_hash.clone())
    );
    let leaves: Vec<Hash> = rows
        .iter()
        .map(|r| portcullis_audit::entry::merkle_leaf(&r.entry_hash.clone().try_into().unwrap()))
        .collect();
    let frontier: Vec<Hash> = frontier
        .into_iter()
        .map(|h| h.try_into().unwrap())
        .collect();
    assert_eq!(
        MerkleTree::from_frontier(seq as u64, frontier)
            .unwrap()
            .root(),
        merkle::root(&leaves)
    );
    rows.len() as u64
}

fn code(err: &sqlx::Error) -> Option<String> {
    err.as_database_error()
        .and_then(|d| d.code())
        .map(|c| c.into_owned())
}

/// Control L7: the entry is submitted in the mutation's transaction: rolled back with it, or
/// committed with it and pending until a sequencer chains it; then it is in the log, once.
#[tokio::test]
async fn l7_an_entry_commits_and_rolls_back_with_its_mutation_and_is_chained_once() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let t = tenant(&store, "alpha").await;
    store.sequence(t.env.as_uuid()).await.unwrap();
    let before = count(&db, "audit_log", t.env).await;

    let mut tx = store
        .tenant_as_identity(t.env, t.owner, None, RequestMeta::default())
        .await
        .unwrap();
    tx.audit(AuditEvent::success("project.updated", "project", "gone"))
        .await
        .unwrap();
    drop(tx);
    assert_eq!(count(&db, "audit_pending", t.env).await, 0);

    audited_write(&store, &t, 1).await;
    assert_eq!(count(&db, "audit_pending", t.env).await, 1);
    assert_eq!(count(&db, "audit_log", t.env).await, before);
    assert_eq!(store.sequence(t.env.as_uuid()).await.unwrap(), 1);
    assert_eq!(store.sequence(t.env.as_uuid()).await.unwrap(), 0);
    assert_eq!(count(&db, "audit_pending", t.env).await, 0);
    assert_eq!(count(&db, "audit_log", t.env).await, before + 1);
    assert_eq!(verified(&store, t.env).await, before as u64 + 1);
}

/// Control L3: writers of one scope and the sequencers of two nodes, all at once: every
/// committed entry is chained exactly once, gapless, and the chain verifies. Batches larger
/// than one transaction's worth ([`sequencer::BATCH`]) are cut and chained in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn l3_two_nodes_racing_to_sequence_keep_one_gapless_chain() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let t = tenant(&store, "alpha").await;
    // A backlog bigger than a batch, chained by whichever node gets the lock first.
    let mut tx = store
        .tenant_as_identity(t.env, t.owner, None, RequestMeta::default())
        .await
        .unwrap();
    for i in 0..(sequencer::BATCH as usize + 100) {
        tx.audit(AuditEvent::success("project.updated", "project", i))
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();

    let nodes = [db.sequencer().await, db.sequencer().await];
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut racers = vec![];
    for node in nodes.clone() {
        let (stop, env) = (stop.clone(), t.env.as_uuid());
        racers.push(tokio::spawn(async move {
            let mut chained = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                chained += node.sequence(env).await.unwrap();
                tokio::task::yield_now().await;
            }
            chained
        }));
    }
    let mut writers = vec![];
    for w in 0..6 {
        let store = store.clone();
        let t = Tenant { ..t };
        writers.push(tokio::spawn(async move {
            for i in 0..40 {
                audited_write(&store, &t, w * 100 + i).await;
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut by_racers = 0;
    for r in racers {
        by_racers += r.await.unwrap();
    }
    let last = nodes[0].sequence(t.env.as_uuid()).await.unwrap();
    let total = count(&db, "audit_log", t.env).await as u64;
    assert_eq!(count(&db, "audit_pending", t.env).await, 0);
    assert!(by_racers + last <= total, "an entry was chained twice");
    assert!(total >= sequencer::BATCH as u64 + 100 + 240);
    assert_eq!(verified(&store, t.env).await, total);
}

/// Controls L3, L7: a node that dies while it holds a scope's sequencer lock (its head row,
/// mid-batch: its transaction is rolled back) blocks nobody for longer than its connection
/// lives and loses nothing: another node waits for the lock, then chains everything pending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l7_a_node_killed_mid_batch_loses_nothing() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let t = tenant(&store, "alpha").await;
    for i in 0..20 {
        audited_write(&store, &t, i).await;
    }
    let pending = count(&db, "audit_pending", t.env).await;
    assert!(pending >= 20);

    // The dying node: the scope's head created and locked, as the sequencer does before it
    // writes a batch.
    let mut dying = sqlx::PgConnection::connect_with(&db.sequencer)
        .await
        .unwrap();
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut dying)
        .await
        .unwrap();
    sqlx::query("BEGIN").execute(&mut dying).await.unwrap();
    sqlx::query(
        "INSERT INTO audit_heads (environment_id, seq, head_hash, frontier) VALUES ($1, 0, $2, '{}')
         ON CONFLICT DO NOTHING",
    )
    .bind(t.env.as_uuid())
    .bind(GENESIS_PREV_HASH.as_slice())
    .execute(&mut dying)
    .await
    .unwrap();
    sqlx::query("SELECT seq FROM audit_heads WHERE environment_id = $1 FOR UPDATE")
        .bind(t.env.as_uuid())
        .execute(&mut dying)
        .await
        .unwrap();

    // The other node waits on the lock...
    let other = db.sequencer().await;
    let env = t.env.as_uuid();
    let waiting = tokio::spawn(async move { other.sequence(env).await });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        !waiting.is_finished(),
        "the lock did not hold the other node"
    );
    assert_eq!(count(&db, "audit_pending", t.env).await, pending);
    // ...until the first one dies (kill -9 of its process ends its session the same way).
    let mut admin = db.admin_conn().await;
    let killed: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .fetch_one(&mut admin)
        .await
        .unwrap();
    assert!(killed);
    let chained = tokio::time::timeout(std::time::Duration::from_secs(10), waiting)
        .await
        .expect("the other node took over")
        .unwrap()
        .unwrap();
    assert_eq!(chained, pending as u64);
    assert_eq!(count(&db, "audit_pending", t.env).await, 0);
    assert_eq!(verified(&store, t.env).await, pending as u64);
}

/// Control L2 (availability): SQL run as the runtime role cannot take a scope's sequencer lock
/// (the head row), its own scope's or the platform scope's, so it cannot stall sequencing.
#[tokio::test]
async fn l2_the_runtime_role_cannot_hold_a_scopes_sequencer_lock() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let t = tenant(&store, "alpha").await;
    audited_write(&store, &t, 1).await;
    store.sequence(t.env.as_uuid()).await.unwrap();
    for scope in [t.env.as_uuid(), portcullis_store::PLATFORM_SCOPE] {
        for lock in [
            "FOR UPDATE",
            "FOR NO KEY UPDATE",
            "FOR SHARE",
            "FOR KEY SHARE",
        ] {
            let mut tx = store
                .tenant_as_identity(t.env, t.owner, None, RequestMeta::default())
                .await
                .unwrap();
            let sql = [
                "SELECT seq FROM audit_heads WHERE environment_id = $1 ",
                lock,
            ]
            .concat();
            let err = sqlx::query(&sql)
                .bind(scope)
                .execute(tx.conn_for_tests())
                .await
                .expect_err(&sql);
            assert_eq!(code(&err).as_deref(), Some("42501"), "{sql}: {err}");
        }
        let mut tx = store
            .tenant_as_identity(t.env, t.owner, None, RequestMeta::default())
            .await
            .unwrap();
        let err = sqlx::query("LOCK TABLE audit_heads IN ROW SHARE MODE")
            .execute(tx.conn_for_tests())
            .await
            .unwrap_err();
        assert_eq!(code(&err).as_deref(), Some("42501"), "{err}");
    }
}

/// Control L2: a submitted entry cannot be dropped, edited or emptied before it is chained:
/// not by the runtime role (no privilege but INSERT), not by the sequencer's own role (the
/// guard: only a sequenced entry may leave), and it stays readable to nobody but the sequencer.
#[tokio::test]
async fn l2_a_pending_entry_cannot_be_dropped_or_edited_before_it_is_chained() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let t = tenant(&store, "alpha").await;
    audited_write(&store, &t, 1).await;
    let pending = count(&db, "audit_pending", t.env).await;
    assert!(pending >= 1);

    for sql in [
        "DELETE FROM audit_pending WHERE environment_id = $1",
        "UPDATE audit_pending SET action = 'project.deleted' WHERE environment_id = $1",
        "SELECT count(*) FROM audit_pending WHERE environment_id = $1",
    ] {
        let mut tx = store
            .tenant_as_identity(t.env, t.owner, None, RequestMeta::default())
            .await
            .unwrap();
        let err = sqlx::query(sql)
            .bind(t.env.as_uuid())
            .execute(tx.conn_for_tests())
            .await
            .expect_err(sql);
        assert_eq!(
            code(&err).as_deref(),
            Some("42501"),
            "runtime: {sql}: {err}"
        );
    }
    let mut tx = store
        .tenant_as_identity(t.env, t.owner, None, RequestMeta::default())
        .await
        .unwrap();
    let err = sqlx::query("TRUNCATE audit_pending")
        .execute(tx.conn_for_tests())
        .await
        .unwrap_err();
    assert_eq!(
        code(&err).as_deref(),
        Some("42501"),
        "runtime: TRUNCATE: {err}"
    );
    drop(tx);

    let role = sequencer_role(&db).await;
    let mut tx = role.begin().await.unwrap();
    let err = sqlx::query("DELETE FROM audit_pending WHERE environment_id = $1")
        .bind(t.env.as_uuid())
        .execute(&mut *tx)
        .await
        .unwrap_err();
    assert_eq!(code(&err).as_deref(), Some("42501"), "{err}");
    assert!(
        err.to_string()
            .contains("may only be removed once sequenced"),
        "{err}"
    );
    drop(tx);
    for sql in [
        "UPDATE audit_pending SET action = 'project.deleted' WHERE environment_id = $1",
        "TRUNCATE audit_pending",
    ] {
        let err = sqlx::query(sql)
            .bind(t.env.as_uuid())
            .execute(&role)
            .await
            .expect_err(sql);
        assert_eq!(
            code(&err).as_deref(),
            Some("42501"),
            "sequencer: {sql}: {err}"
        );
    }
    assert_eq!(count(&db, "audit_pending", t.env).await, pending);
    assert_eq!(
        store.sequence(t.env.as_uuid()).await.unwrap(),
        pending as u64
    );
}

/// Control L2: the sequencer's own role can chain only what was submitted, as it was
/// submitted: an entry with no pending original, or one whose content differs from it, is
/// refused by the guard, and the scope is chained correctly afterwards.
#[tokio::test]
async fn l2_the_sequencer_role_cannot_invent_or_rewrite_entries() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let t = tenant(&store, "alpha").await;
    // A chain with a head, and one entry submitted after it.
    audited_write(&store, &t, 0).await;
    store.sequence(t.env.as_uuid()).await.unwrap();
    audited_write(&store, &t, 1).await;
    let role = sequencer_role(&db).await;
    let env = t.env.as_uuid();

    for (what, select) in [
        (
            "an entry rewritten on the way",
            "SELECT p.environment_id, $2::bigint, p.audit_id, p.occurred_at, p.actor_type, p.actor_id,
                    'project.deleted', p.action_version, p.target_type, p.target_id, p.outcome, p.before,
                    p.after, p.request_id, p.ip, p.user_agent, h.head_hash, $3::bytea
               FROM audit_pending p, audit_heads h WHERE p.environment_id = $1 AND h.environment_id = $1",
        ),
        (
            "an entry nobody submitted",
            "SELECT $1::uuid, $2::bigint, gen_random_uuid(), now(), 'system', NULL::uuid, 'project.deleted',
                    1::smallint, 'project', 'x', 'success', NULL::jsonb, NULL::jsonb, NULL, NULL, NULL,
                    h.head_hash, $3::bytea
               FROM audit_heads h WHERE h.environment_id = $1",
        ),
    ] {
        let mut tx = role.begin().await.unwrap();
        let (seq, frontier): (i64, Vec<Vec<u8>>) =
            sqlx::query_as("SELECT seq, frontier FROM audit_heads WHERE environment_id = $1")
                .bind(env)
                .fetch_one(&mut *tx)
                .await
                .unwrap();
        let junk: Hash = [7; 32];
        let mut tree = MerkleTree::from_frontier(
            seq as u64,
            frontier.into_iter().map(|h| h.try_into().unwrap()).collect(),
        )
        .unwrap();
        tree.push(portcullis_audit::entry::merkle_leaf(&junk));
        let sql = [
            "WITH e AS (INSERT INTO audit_log (environment_id, seq, audit_id, occurred_at, actor_type, actor_id, action,
                                    action_version, target_type, target_id, outcome, before, after, request_id,
                                    ip, user_agent, prev_hash, entry_hash) ",
            select,
            ") UPDATE audit_heads SET seq = $2, head_hash = $3, frontier = $4 WHERE environment_id = $1",
        ]
        .concat();
        let err = sqlx::query(&sql)
            .bind(env)
            .bind(seq + 1)
            .bind(junk.as_slice())
            .bind(
                tree.frontier()
                    .iter()
                    .map(|h| h.to_vec())
                    .collect::<Vec<_>>(),
            )
            .execute(&mut *tx)
            .await
            .expect_err(what);
        assert_eq!(code(&err).as_deref(), Some("42501"), "{what}: {err}");
        assert!(
            err.to_string().contains("not a faithful copy of a pending entry"),
            "{what}: {err}"
        );
    }
    let n = count(&db, "audit_log", t.env).await as u64;
    assert_eq!(store.sequence(env).await.unwrap(), 1);
    assert_eq!(verified(&store, t.env).await, n + 1);
}

/// Control L3: a reader of the sequenced view never takes "not chained yet" for "not there":
/// a store without a sequencer refuses to sequence rather than answer from a partial log, and
/// the pending report names each scope with its oldest entry.
#[tokio::test]
async fn l3_pending_entries_are_reported_and_a_store_without_a_sequencer_refuses_to_read() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let t = tenant(&store, "alpha").await;
    audited_write(&store, &t, 1).await;
    let node = db.sequencer().await;
    let report = node.pending().await.unwrap();
    let mine = report
        .iter()
        .find(|p| p.scope == t.env.as_uuid())
        .expect("the scope is reported");
    assert!(mine.entries >= 1);
    assert!(mine.oldest <= time::OffsetDateTime::now_utc());

    let bare = Store::new(
        bootstrap::runtime_pool(&db.runtime, 2).await.unwrap(),
        db.context_key().await,
    );
    assert!(bare.sequence(t.env.as_uuid()).await.is_err());
    assert!(node.sweep().await.unwrap() >= 1);
    assert!(node.pending().await.unwrap().is_empty());
}

/// Control L3: one batch chains many scopes (the background sequencer's sweep), each into its
/// own gapless chain, while two nodes sweep the same scopes at once, named in opposite orders
/// (heads are locked in one order, so they cannot deadlock), and writers keep submitting.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn l3_batches_over_many_scopes_keep_each_chain_gapless() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let mut tenants = vec![];
    for name in ["alpha", "beta", "gamma", "delta"] {
        tenants.push(tenant(&store, name).await);
    }
    let scopes: Vec<uuid::Uuid> = tenants.iter().map(|t| t.env.as_uuid()).collect();
    let nodes = [db.sequencer().await, db.sequencer().await];
    let mut tasks = vec![];
    for (i, node) in nodes.iter().cloned().enumerate() {
        let mut mine = scopes.clone();
        if i == 1 {
            mine.reverse();
        }
        tasks.push(tokio::spawn(async move {
            for _ in 0..20 {
                node.sequence_many(&mine).await.unwrap();
            }
        }));
    }
    for (w, t) in tenants.iter().enumerate() {
        let store = store.clone();
        let t = Tenant { ..*t };
        tasks.push(tokio::spawn(async move {
            for i in 0..30 {
                audited_write(&store, &t, w * 100 + i).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    nodes[0].sweep().await.unwrap();
    for t in &tenants {
        assert_eq!(count(&db, "audit_pending", t.env).await, 0);
        assert!(verified(&store, t.env).await >= 30);
    }
}
