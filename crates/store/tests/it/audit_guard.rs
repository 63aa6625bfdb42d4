//! The database guards the audit chain (issue 9, controls L2 and L3; migrations
//! 20261202000008_audit_append_guard.sql and 20261202000014_audit_sequencer.sql). SQL run as
//! the runtime role inside a real request transaction holds no privilege on the chain at all
//! (it submits to `audit_pending`); SQL run as the sequencer's own role cannot insert an entry
//! that is not a pending one or does not lie under the head, move the head but forward over
//! linked entries with the right Merkle frontier, create a non-empty head, or store a subtree
//! node ahead of the log or with a wrong hash. After every refused forgery the scope keeps
//! working and its chain still verifies.

use std::time::Instant;

use portcullis_audit::entry::{merkle_leaf, GENESIS_PREV_HASH};
use portcullis_audit::merkle::stored::Plan;
use portcullis_audit::merkle::{self, MerkleTree};
use portcullis_audit::verify::{self, Body};
use portcullis_audit::Hash;
use portcullis_core::{EnvironmentId, IdentityId, Permission, PermissionSet};
use portcullis_store::audit_writer::entry_body;
use portcullis_store::queries::{audit_log, environments, identities};
use portcullis_store::testing::TestDb;
use portcullis_store::{AuditEvent, RequestMeta, Store, StoreError, TenantTx};
use sqlx::postgres::PgQueryResult;
use sqlx::PgConnection;
use time::OffsetDateTime;

fn vault() -> &'static portcullis_store::vault::Vault {
    static VAULT: std::sync::OnceLock<portcullis_store::vault::Vault> = std::sync::OnceLock::new();
    VAULT.get_or_init(portcullis_store::testing::test_vault)
}

/// An environment and its owner.
#[derive(Clone, Copy)]
struct Scope {
    env: EnvironmentId,
    owner: IdentityId,
}

async fn scope(store: &Store, name: &str) -> Scope {
    let owner = IdentityId::new();
    let mut tx = store.auth(RequestMeta::default()).await.unwrap();
    identities::create(
        &mut tx,
        vault(),
        owner,
        &format!("owner@{name}.test"),
        "Test",
        "$argon2id$fake",
        OffsetDateTime::now_utc(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let env = EnvironmentId::new();
    let mut tx = store
        .new_environment(env, owner, RequestMeta::default())
        .await
        .unwrap();
    environments::create(
        &mut tx,
        name,
        "eu-central",
        owner,
        OffsetDateTime::now_utc(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    Scope { env, owner }
}

/// A request transaction of the scope's owner: the attacker's foothold.
async fn request(store: &Store, s: Scope) -> TenantTx {
    store
        .tenant_as_identity(s.env, s.owner, None, RequestMeta::default())
        .await
        .unwrap()
}

/// `n` audited writes as the owner, through the real writer and the runtime role.
async fn audited_writes(store: &Store, s: Scope, n: usize) {
    let mut left = n;
    while left > 0 {
        let batch = left.min(100);
        let mut tx = request(store, s).await;
        for i in 0..batch {
            tx.audit(
                AuditEvent::success("project.created", "project", i)
                    .after(serde_json::json!({ "i": i })),
            )
            .await
            .unwrap();
        }
        tx.commit().await.unwrap();
        left -= batch;
    }
    store.sequence(s.env.as_uuid()).await.unwrap();
}

/// The head as the runtime role sees it (it may: every audited write reads it).
async fn head(conn: &mut PgConnection, s: Scope) -> (i64, Hash, Vec<Hash>) {
    let (seq, hash, frontier): (i64, Vec<u8>, Vec<Vec<u8>>) = sqlx::query_as(
        "SELECT seq, head_hash, frontier FROM audit_heads WHERE environment_id = $1",
    )
    .bind(s.env.as_uuid())
    .fetch_one(conn)
    .await
    .unwrap();
    (
        seq,
        hash.try_into().unwrap(),
        frontier
            .into_iter()
            .map(|h| h.try_into().unwrap())
            .collect(),
    )
}

/// The frontier after appending `entry_hash` to `(seq, frontier)`, as the writer computes it.
fn pushed(seq: i64, frontier: &[Hash], entry_hash: &Hash) -> Vec<Vec<u8>> {
    let mut tree = MerkleTree::from_frontier(seq as u64, frontier.to_vec()).unwrap();
    tree.push(merkle_leaf(entry_hash));
    tree.frontier().iter().map(|h| h.to_vec()).collect()
}

/// The statement must have been refused for lack of privilege or by a policy (the runtime
/// role on the chain), and surface as a policy violation.
fn denied(result: Result<PgQueryResult, sqlx::Error>, what: &str) {
    let err = result.expect_err(what);
    let db = err
        .as_database_error()
        .unwrap_or_else(|| panic!("{what}: {err}"));
    assert_eq!(db.code().as_deref(), Some("42501"), "{what}: {err}");
    assert!(
        matches!(StoreError::from(err), StoreError::PolicyViolation),
        "{what}"
    );
}

/// The statement must have been refused by the guard, and surface as a policy violation.
fn refused(result: Result<PgQueryResult, sqlx::Error>, what: &str) {
    let err = result.expect_err(what);
    let db = err
        .as_database_error()
        .unwrap_or_else(|| panic!("{what}: {err}"));
    assert_eq!(db.code().as_deref(), Some("42501"), "{what}: {err}");
    assert!(db.message().starts_with("audit guard:"), "{what}: {err}");
    assert!(
        matches!(StoreError::from(err), StoreError::PolicyViolation),
        "{what}"
    );
}

const ENTRY: &str =
    "INSERT INTO audit_log (environment_id, seq, audit_id, occurred_at, actor_type, actor_id, action,
                            target_type, outcome, prev_hash, entry_hash)
     VALUES ($1, $2, gen_random_uuid(), now(), 'identity', $3, 'project.created', 'project', 'success', $4, $5)";

const ENTRY_AND_HEAD: &str =
    "WITH e AS (
         INSERT INTO audit_log (environment_id, seq, audit_id, occurred_at, actor_type, actor_id, action,
                                target_type, outcome, prev_hash, entry_hash)
         VALUES ($1, $2, gen_random_uuid(), now(), 'identity', $3, 'project.created', 'project', 'success', $4, $5)
     )
     UPDATE audit_heads SET seq = $2, head_hash = $5, frontier = $6 WHERE environment_id = $1";

async fn entry(
    conn: &mut PgConnection,
    s: Scope,
    seq: i64,
    prev: &Hash,
    hash: &Hash,
) -> Result<PgQueryResult, sqlx::Error> {
    sqlx::query(ENTRY)
        .bind(s.env.as_uuid())
        .bind(seq)
        .bind(s.owner.as_uuid())
        .bind(prev.as_slice())
        .bind(hash.as_slice())
        .execute(conn)
        .await
}

async fn entry_and_head(
    conn: &mut PgConnection,
    s: Scope,
    seq: i64,
    prev: &Hash,
    hash: &Hash,
    frontier: Vec<Vec<u8>>,
) -> Result<PgQueryResult, sqlx::Error> {
    sqlx::query(ENTRY_AND_HEAD)
        .bind(s.env.as_uuid())
        .bind(seq)
        .bind(s.owner.as_uuid())
        .bind(prev.as_slice())
        .bind(hash.as_slice())
        .bind(frontier)
        .execute(conn)
        .await
}

/// Everything a verifier checks, from the database: every entry re-hashes and links, the
/// head's frontier gives the root of all entries, the sequence is 1..=head, and every stored
/// subtree node is the root of its leaves. Returns the number of entries.
async fn verify_scope(store: &Store, db: &TestDb, s: Scope) -> u64 {
    store.sequence(s.env.as_uuid()).await.unwrap();
    let mut tx = store
        .tenant_as_system(
            s.env,
            PermissionSet::of(&[Permission::AuditRead]),
            RequestMeta::default(),
        )
        .await
        .unwrap();
    let rows = audit_log::stored_range(&mut tx, 0, i64::MAX).await.unwrap();
    let (seq, head_hash, frontier) =
        audit_log::head(&mut tx)
            .await
            .unwrap()
            .unwrap_or((0, GENESIS_PREV_HASH.to_vec(), vec![]));
    tx.commit().await.unwrap();
    let bodies: Vec<serde_json::Value> = rows.iter().map(entry_body).collect();
    let entries = rows.iter().zip(&bodies).map(|(r, b)| verify::StoredEntry {
        seq: r.seq as u64,
        prev_hash: r.prev_hash.clone().try_into().unwrap(),
        entry_hash: r.entry_hash.clone().try_into().unwrap(),
        body: Body::Json(b),
    });
    let report = verify::verify_entries(s.env.as_uuid(), &[], &[], entries);
    assert!(report.is_clean(), "{:?}", report.first_problem);
    assert_eq!(report.entries, rows.len() as u64);
    assert_eq!(seq, rows.len() as i64, "the head is the last entry");
    assert!(rows.iter().enumerate().all(|(i, r)| r.seq == i as i64 + 1));
    assert_eq!(
        head_hash,
        rows.last()
            .map_or(GENESIS_PREV_HASH.to_vec(), |r| r.entry_hash.clone())
    );
    let frontier: Vec<Hash> = frontier
        .into_iter()
        .map(|h| h.try_into().unwrap())
        .collect();
    let leaves: Vec<Hash> = rows
        .iter()
        .map(|r| merkle_leaf(&r.entry_hash.clone().try_into().unwrap()))
        .collect();
    assert_eq!(
        MerkleTree::from_frontier(seq as u64, frontier)
            .unwrap()
            .root(),
        merkle::root(&leaves)
    );
    assert_eq!(report.root_hash, merkle::root(&leaves));
    for (level, index, hash) in stored_nodes(db, s).await {
        let (start, end) = ((index << level) as usize, ((index + 1) << level) as usize);
        assert!(
            end <= leaves.len(),
            "node ({level}, {index}) beyond the log"
        );
        assert_eq!(
            hash,
            merkle::root(&leaves[start..end]),
            "node ({level}, {index})"
        );
    }
    rows.len() as u64
}

async fn stored_nodes(db: &TestDb, s: Scope) -> Vec<(u32, u64, Hash)> {
    let mut admin = db.admin_conn().await;
    let rows: Vec<(i16, i64, Vec<u8>)> = sqlx::query_as(
        "SELECT level, node_index, hash FROM audit_subtrees WHERE environment_id = $1 ORDER BY 1, 2",
    )
    .bind(s.env.as_uuid())
    .fetch_all(&mut admin)
    .await
    .unwrap();
    rows.into_iter()
        .map(|(l, i, h)| (l as u32, i as u64, h.try_into().unwrap()))
        .collect()
}

/// Controls L2, L3: each forged append, head move or head creation is refused, run as the
/// runtime role in a real request transaction (no privilege) and as the sequencer's own role
/// (the guards); afterwards the scope's audited writes succeed and its chain verifies.
#[tokio::test]
async fn l2_l3_forged_appends_and_head_moves_are_refused() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let sequencer_role = portcullis_store::bootstrap::background_pool(
        &db.sequencer,
        portcullis_store::bootstrap::SEQUENCER_ROLE,
        2,
    )
    .await
    .unwrap();
    let s = scope(&store, "alpha").await;
    audited_writes(&store, s, 5).await;
    let junk: Hash = [7; 32];
    let zero = GENESIS_PREV_HASH;

    // Each forgery in its own transaction (a refused statement aborts it): in a request as the
    // runtime role, then as the sequencer's role.
    macro_rules! attempt {
        ($what:literal, |$conn:ident, $seq:ident, $hash:ident, $frontier:ident| $body:expr) => {{
            {
                let mut tx = request(&store, s).await;
                let $conn = tx.conn_for_tests();
                let ($seq, $hash, $frontier) = head($conn, s).await;
                let result = $body;
                denied(result, $what);
            }
            {
                let mut tx = sequencer_role.begin().await.unwrap();
                let $conn = &mut *tx;
                let ($seq, $hash, $frontier) = head($conn, s).await;
                let result = $body;
                refused(result, $what);
            }
            // The scope still works: an audited write right after.
            audited_writes(&store, s, 1).await;
        }};
    }

    attempt!(
        "a stray entry at the next seq, head not advanced",
        |c, seq, hash, _f| { entry(c, s, seq + 1, &hash, &junk).await }
    );
    attempt!(
        "an entry and a head with a wrong frontier",
        |c, seq, hash, _f| {
            entry_and_head(c, s, seq + 1, &hash, &junk, vec![junk.to_vec()]).await
        }
    );
    attempt!(
        "an entry and a head with the old frontier",
        |c, seq, hash, f| {
            entry_and_head(
                c,
                s,
                seq + 1,
                &hash,
                &junk,
                f.iter().map(|h| h.to_vec()).collect(),
            )
            .await
        }
    );
    attempt!(
        "an entry that does not link to the head",
        |c, seq, _hash, f| {
            entry_and_head(c, s, seq + 1, &zero, &junk, pushed(seq, &f, &junk)).await
        }
    );
    attempt!(
        "an entry that skips a sequence number",
        |c, seq, hash, f| {
            entry_and_head(
                c,
                s,
                seq + 2,
                &hash,
                &junk,
                pushed(
                    seq + 1,
                    &{
                        let mut t = MerkleTree::from_frontier(seq as u64, f.clone()).unwrap();
                        t.push(merkle_leaf(&hash));
                        t.frontier().to_vec()
                    },
                    &junk,
                ),
            )
            .await
        }
    );
    attempt!("the head advanced without an entry", |c, seq, _hash, f| {
        sqlx::query("UPDATE audit_heads SET seq = $2, head_hash = $3, frontier = $4 WHERE environment_id = $1")
            .bind(s.env.as_uuid())
            .bind(seq + 1)
            .bind(junk.as_slice())
            .bind(pushed(seq, &f, &junk))
            .execute(c)
            .await
    });
    attempt!("the head hash rewritten", |c, _seq, _hash, _f| {
        sqlx::query("UPDATE audit_heads SET head_hash = $2 WHERE environment_id = $1")
            .bind(s.env.as_uuid())
            .bind(junk.as_slice())
            .execute(c)
            .await
    });
    attempt!("the frontier rewritten", |c, _seq, _hash, _f| {
        sqlx::query("UPDATE audit_heads SET frontier = ARRAY[$2::bytea] WHERE environment_id = $1")
            .bind(s.env.as_uuid())
            .bind(junk.as_slice())
            .execute(c)
            .await
    });
    attempt!("the head reset to empty", |c, _seq, _hash, _f| {
        sqlx::query("UPDATE audit_heads SET seq = 0, head_hash = $2, frontier = '{}' WHERE environment_id = $1")
            .bind(s.env.as_uuid())
            .bind(zero.as_slice())
            .execute(c)
            .await
    });
    attempt!("the head moved forward by ten", |c, _seq, _hash, _f| {
        sqlx::query("UPDATE audit_heads SET seq = seq + 10 WHERE environment_id = $1")
            .bind(s.env.as_uuid())
            .execute(c)
            .await
    });
    attempt!("two entries in one statement", |c, seq, hash, f| {
        let second: Hash = [8; 32];
        let mut t = MerkleTree::from_frontier(seq as u64, f.clone()).unwrap();
        t.push(merkle_leaf(&junk));
        t.push(merkle_leaf(&second));
        sqlx::query(
            "WITH e AS (
                 INSERT INTO audit_log (environment_id, seq, audit_id, occurred_at, actor_type, actor_id, action,
                                        target_type, outcome, prev_hash, entry_hash)
                 VALUES ($1, $2, gen_random_uuid(), now(), 'identity', $3, 'project.created', 'project', 'success', $4, $5),
                        ($1, $2 + 1, gen_random_uuid(), now(), 'identity', $3, 'project.created', 'project', 'success', $5, $6)
             )
             UPDATE audit_heads SET seq = $2 + 1, head_hash = $6, frontier = $7 WHERE environment_id = $1",
        )
        .bind(s.env.as_uuid())
        .bind(seq + 1)
        .bind(s.owner.as_uuid())
        .bind(hash.as_slice())
        .bind(junk.as_slice())
        .bind(second.as_slice())
        .bind(t.frontier().iter().map(|h| h.to_vec()).collect::<Vec<_>>())
        .execute(c)
        .await
    });
    attempt!("a non-empty head created", |c, _seq, _hash, _f| {
        sqlx::query(
            "INSERT INTO audit_heads (environment_id, seq, head_hash, frontier) VALUES ($1, 100, $2, ARRAY[$2])
             ON CONFLICT DO NOTHING",
        )
        .bind(s.env.as_uuid())
        .bind(junk.as_slice())
        .execute(c)
        .await
    });
    attempt!("the head reset through an upsert", |c, _seq, _hash, _f| {
        sqlx::query(
            "INSERT INTO audit_heads (environment_id, seq, head_hash, frontier) VALUES ($1, 0, $2, '{}')
             ON CONFLICT (environment_id) DO UPDATE SET seq = 0, head_hash = $2, frontier = '{}'",
        )
        .bind(s.env.as_uuid())
        .bind(zero.as_slice())
        .execute(c)
        .await
    });
    attempt!("a subtree node ahead of the log", |c, _seq, _hash, _f| {
        sqlx::query("INSERT INTO audit_subtrees (environment_id, level, node_index, hash) VALUES ($1, 8, 0, $2)")
            .bind(s.env.as_uuid())
            .bind(junk.as_slice())
            .execute(c)
            .await
    });
    attempt!(
        "a high subtree node ahead of the log",
        |c, _seq, _hash, _f| {
            sqlx::query("INSERT INTO audit_subtrees (environment_id, level, node_index, hash) VALUES ($1, 20, 3, $2)")
            .bind(s.env.as_uuid())
            .bind(junk.as_slice())
            .execute(c)
            .await
        }
    );

    // An entry submitted in someone else's name is refused by the audit_pending_submit policy
    // (the signed actor, as audit_log_append was), and so is one for another scope.
    for (actor_type, env) in [
        ("system", s.env.as_uuid()),
        ("identity", uuid::Uuid::now_v7()),
    ] {
        let mut tx = request(&store, s).await;
        let c = tx.conn_for_tests();
        denied(
            sqlx::query(
                "INSERT INTO audit_pending (environment_id, audit_id, occurred_at, actor_type, actor_id, action,
                                            target_type, outcome)
                 VALUES ($1, gen_random_uuid(), now(), $2, CASE WHEN $2 = 'identity' THEN $3 END,
                         'project.created', 'project', 'success')",
            )
            .bind(env)
            .bind(actor_type)
            .bind(s.owner.as_uuid())
            .execute(c)
            .await,
            "a pending entry in another actor's name or scope",
        );
    }
    audited_writes(&store, s, 1).await;

    // The scope took every refused forgery without a trace: 5 + one write per attempt, plus
    // what creating the environment recorded.
    let n = verify_scope(&store, &db, s).await;
    audited_writes(&store, s, 3).await;
    assert_eq!(verify_scope(&store, &db, s).await, n + 3);
}

/// Control L3, what the database cannot check: a pending entry sequenced with a hash that is
/// not the hash of its columns, but that links to the head with the right frontier, is
/// accepted from the sequencer's role (the database does not canonicalise JSON). Later writers
/// are not affected, and verification names the entry.
#[tokio::test]
async fn l3_a_linked_forgery_is_accepted_and_caught_by_verification() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let s = scope(&store, "alpha").await;
    audited_writes(&store, s, 3).await;
    let mut tx = request(&store, s).await;
    tx.audit(AuditEvent::success("project.created", "project", "forged"))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let sequencer_role = portcullis_store::bootstrap::background_pool(
        &db.sequencer,
        portcullis_store::bootstrap::SEQUENCER_ROLE,
        2,
    )
    .await
    .unwrap();
    let mut tx = sequencer_role.begin().await.unwrap();
    let (seq, hash, f) = head(&mut tx, s).await;
    let junk: Hash = [7; 32];
    sqlx::query(
        "WITH e AS (
             INSERT INTO audit_log (environment_id, seq, audit_id, occurred_at, actor_type, actor_id, action,
                                    action_version, target_type, target_id, outcome, before, after, request_id,
                                    ip, user_agent, prev_hash, entry_hash)
             SELECT environment_id, $2, audit_id, occurred_at, actor_type, actor_id, action, action_version,
                    target_type, target_id, outcome, before, after, request_id, ip, user_agent, $3, $4
               FROM audit_pending WHERE environment_id = $1
         )
         UPDATE audit_heads SET seq = $2, head_hash = $4, frontier = $5 WHERE environment_id = $1",
    )
    .bind(s.env.as_uuid())
    .bind(seq + 1)
    .bind(hash.as_slice())
    .bind(junk.as_slice())
    .bind(pushed(seq, &f, &junk))
    .execute(&mut *tx)
    .await
    .unwrap();
    sqlx::query("DELETE FROM audit_pending WHERE environment_id = $1")
        .bind(s.env.as_uuid())
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    audited_writes(&store, s, 3).await;
    let mut tx = store
        .tenant_as_system(
            s.env,
            PermissionSet::of(&[Permission::AuditRead]),
            RequestMeta::default(),
        )
        .await
        .unwrap();
    let rows = audit_log::stored_range(&mut tx, 0, i64::MAX).await.unwrap();
    let bodies: Vec<serde_json::Value> = rows.iter().map(entry_body).collect();
    let report = verify::verify_entries(
        s.env.as_uuid(),
        &[],
        &[],
        rows.iter().zip(&bodies).map(|(r, b)| verify::StoredEntry {
            seq: r.seq as u64,
            prev_hash: r.prev_hash.clone().try_into().unwrap(),
            entry_hash: r.entry_hash.clone().try_into().unwrap(),
            body: Body::Json(b),
        }),
    );
    assert_eq!(
        report.first_problem.map(|p| p.seq),
        Some(Some(seq as u64 + 1))
    );
    assert_eq!(rows.len() as i64, seq + 4, "later writers kept appending");
}

/// Control L3: many request transactions appending to one scope at once, through the guard,
/// keep the sequence gapless and the chain valid.
#[tokio::test]
async fn l3_concurrent_audited_writes_pass_the_guard_gaplessly() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let s = scope(&store, "alpha").await;
    let before = verify_scope(&store, &db, s).await;
    let mut tasks = vec![];
    for _ in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..20 {
                let mut tx = request(&store, s).await;
                tx.audit(AuditEvent::success("project.updated", "project", i))
                    .await
                    .unwrap();
                tx.commit().await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(verify_scope(&store, &db, s).await, before + 160);
}

/// Control L3: appends of the runtime role across 256 and 512 entries store the right subtree
/// nodes through the guard; missing nodes (a log older than stored nodes) are backfilled by
/// the proof builder as the runtime role, but a node with a wrong hash or ahead of the log is
/// refused.
#[tokio::test]
async fn l3_subtree_nodes_are_checked_by_the_database() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let s = scope(&store, "alpha").await;
    let start = verify_scope(&store, &db, s).await;
    audited_writes(&store, s, 520 - start as usize).await;
    assert_eq!(verify_scope(&store, &db, s).await, 520);
    let nodes: Vec<(u32, u64)> = stored_nodes(&db, s)
        .await
        .iter()
        .map(|(l, i, _)| (*l, *i))
        .collect();
    assert_eq!(nodes, [(8, 0), (8, 1), (9, 0)]);

    // The nodes of an old log are missing.
    let mut admin = db.admin_conn().await;
    for sql in [
        "ALTER TABLE audit_subtrees DISABLE TRIGGER audit_subtrees_no_update_delete",
        "DELETE FROM audit_subtrees WHERE environment_id = $1",
        "ALTER TABLE audit_subtrees ENABLE TRIGGER audit_subtrees_no_update_delete",
    ] {
        sqlx::query(sql)
            .bind(s.env.as_uuid())
            .execute(&mut admin)
            .await
            .unwrap();
    }
    let junk: Hash = [7; 32];
    for (level, index, what) in [
        (8, 0, "a wrong level-8 node"),
        (9, 0, "a wrong level-9 node"),
        (8, 2, "a node of entries 513..768"),
        (10, 0, "a node of entries 1..1024"),
    ] {
        let mut tx = request(&store, s).await;
        let result = sqlx::query(
            "INSERT INTO audit_subtrees (environment_id, level, node_index, hash) VALUES ($1, $2, $3, $4)",
        )
        .bind(s.env.as_uuid())
        .bind(level as i16)
        .bind(index as i64)
        .bind(junk.as_slice())
        .execute(tx.conn_for_tests())
        .await;
        refused(result, what);
    }

    // The proof builder backfills them as the runtime role; appends go on storing new ones.
    let mut tx = store
        .tenant_as_system(
            s.env,
            PermissionSet::of(&[Permission::AuditRead]),
            RequestMeta::default(),
        )
        .await
        .unwrap();
    audit_log::proof_source(&mut tx, &Plan::inclusion(3, 520).unwrap())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let nodes: Vec<(u32, u64)> = stored_nodes(&db, s)
        .await
        .iter()
        .map(|(l, i, _)| (*l, *i))
        .collect();
    assert_eq!(
        nodes,
        [(8, 0), (8, 1), (9, 0)],
        "the proof's node and those under it"
    );
    // Without (9, 0) the guard checks the writer's (10, 0) at 1024 from the stored (9, 1) and
    // (9, 0) computed from its stored children.
    for sql in [
        "ALTER TABLE audit_subtrees DISABLE TRIGGER audit_subtrees_no_update_delete",
        "DELETE FROM audit_subtrees WHERE environment_id = $1 AND level = 9",
        "ALTER TABLE audit_subtrees ENABLE TRIGGER audit_subtrees_no_update_delete",
    ] {
        sqlx::query(sql)
            .bind(s.env.as_uuid())
            .execute(&mut admin)
            .await
            .unwrap();
    }
    audited_writes(&store, s, 1024 - 520).await;
    assert_eq!(verify_scope(&store, &db, s).await, 1024);
    let nodes: Vec<(u32, u64)> = stored_nodes(&db, s)
        .await
        .iter()
        .map(|(l, i, _)| (*l, *i))
        .collect();
    assert_eq!(nodes, [(8, 0), (8, 1), (8, 2), (8, 3), (9, 1), (10, 0)]);
}

/// What the guard costs (not a control): `N` audited writes of one scope, one per request
/// transaction, with the guard triggers switched off and on, in one run.
/// `AUDIT_GUARD_N=2000 cargo test -p portcullis-store --test it audit_guard_cost -- --ignored --nocapture`
#[tokio::test]
#[ignore]
async fn audit_guard_cost() {
    let n: usize = std::env::var("AUDIT_GUARD_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let db = TestDb::new().await;
    let mut admin = db.admin_conn().await;
    // Time spent in the guard functions themselves (for sessions opened after this).
    sqlx::raw_sql(
        "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET track_functions = ''pl''', current_database()); END $$",
    )
    .execute(&mut admin)
    .await
    .unwrap();
    let store = db.store().await;
    let (off, on) = (
        "ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_guard;
         ALTER TABLE audit_heads DISABLE TRIGGER audit_heads_advance_guard;
         ALTER TABLE audit_heads DISABLE TRIGGER audit_heads_create_guard;
         ALTER TABLE audit_subtrees DISABLE TRIGGER audit_subtrees_append_guard",
        "ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_guard;
         ALTER TABLE audit_heads ENABLE TRIGGER audit_heads_advance_guard;
         ALTER TABLE audit_heads ENABLE TRIGGER audit_heads_create_guard;
         ALTER TABLE audit_subtrees ENABLE TRIGGER audit_subtrees_append_guard",
    );
    for round in 0..3 {
        for guarded in [false, true] {
            sqlx::raw_sql(if guarded { on } else { off })
                .execute(&mut admin)
                .await
                .unwrap();
            let s = scope(&store, &format!("cost{round}{guarded}")).await;
            // One request transaction per write: what the application does.
            let t = Instant::now();
            for i in 0..n {
                let mut tx = request(&store, s).await;
                tx.audit(AuditEvent::success("project.updated", "project", i))
                    .await
                    .unwrap();
                tx.commit().await.unwrap();
            }
            let one_each = t.elapsed().as_secs_f64();
            // All writes in one transaction: the append itself, less noise.
            let t = Instant::now();
            let mut tx = request(&store, s).await;
            for i in 0..n {
                tx.audit(AuditEvent::success("project.updated", "project", i))
                    .await
                    .unwrap();
            }
            tx.commit().await.unwrap();
            let batched = t.elapsed().as_secs_f64();
            println!(
                "round {round} guard {}: {n} audited writes, one transaction each {one_each:.2} s ({:.0} us each); in one transaction {batched:.2} s ({:.0} us each)",
                if guarded { "on " } else { "off" },
                one_each * 1e6 / n as f64,
                batched * 1e6 / n as f64,
            );
        }
    }
    sqlx::raw_sql(on).execute(&mut admin).await.unwrap();
    drop(store);
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let stats: Vec<(String, i64, f64, f64)> = sqlx::query_as(
        "SELECT funcname::text, calls, total_time, self_time FROM pg_stat_user_functions
          WHERE schemaname = 'portcullis' AND funcname LIKE 'audit%' ORDER BY 1",
    )
    .fetch_all(&mut admin)
    .await
    .unwrap();
    for (name, calls, total, own) in stats {
        println!(
            "{name}: {calls} calls, {total:.1} ms in all ({:.1} us a call), {own:.1} ms own",
            total * 1000.0 / calls.max(1) as f64
        );
    }
}
