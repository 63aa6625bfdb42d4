//! O(log n) audit proofs from stored subtree nodes (control L3): the proofs the database gives
//! equal the proofs computed from every leaf, for logs written with stored nodes and for logs
//! written before them (backfilled), and a tampered node is caught by verification.

use portcullis_audit::merkle::stored::{NodeId, Plan};
use portcullis_audit::merkle::{self, leaf_hash};
use portcullis_audit::Hash;
use portcullis_core::{EnvironmentId, PermissionSet};
use portcullis_store::queries::audit_log;
use portcullis_store::testing::TestDb;
use portcullis_store::{AuditEvent, RequestMeta, Store};

async fn append(store: &Store, env: EnvironmentId, n: usize) {
    let mut left = n;
    while left > 0 {
        let batch = left.min(200);
        let mut tx = store
            .tenant_as_system(env, PermissionSet::all(), RequestMeta::default())
            .await
            .unwrap();
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
    store.sequence(env.as_uuid()).await.unwrap();
}

/// Every leaf hash of the log (the O(n) way), to compare with.
async fn all_leaves(store: &Store, env: EnvironmentId) -> Vec<Hash> {
    let mut tx = store
        .tenant_as_system(env, PermissionSet::all(), RequestMeta::default())
        .await
        .unwrap();
    let hashes = audit_log::entry_hashes(&mut tx, i64::MAX).await.unwrap();
    tx.commit().await.unwrap();
    hashes.iter().map(|h| leaf_hash(h)).collect()
}

/// (proof, root, entry hash) as the API builds them.
async fn db_inclusion(
    store: &Store,
    env: EnvironmentId,
    index: u64,
    size: u64,
) -> (Vec<Hash>, Hash, Hash) {
    let mut tx = store
        .tenant_as_system(env, PermissionSet::all(), RequestMeta::default())
        .await
        .unwrap();
    let plan = Plan::inclusion(index, size).unwrap();
    let mut src = audit_log::proof_source(&mut tx, &plan).await.unwrap();
    tx.commit().await.unwrap();
    let proof = merkle::inclusion_proof_from(&mut src, index, size).unwrap();
    (
        proof,
        src.hash(0, size).unwrap(),
        *src.leaf_data(index).unwrap(),
    )
}

async fn db_consistency(store: &Store, env: EnvironmentId, old: u64, new: u64) -> Vec<Hash> {
    let mut tx = store
        .tenant_as_system(env, PermissionSet::all(), RequestMeta::default())
        .await
        .unwrap();
    let plan = Plan::consistency(old, new).unwrap();
    let mut src = audit_log::proof_source(&mut tx, &plan).await.unwrap();
    tx.commit().await.unwrap();
    merkle::consistency_proof_from(&mut src, old, new).unwrap()
}

async fn stored_nodes(db: &TestDb, env: EnvironmentId) -> i64 {
    db.sequence(env.as_uuid()).await;
    let mut admin = db.admin_conn().await;
    sqlx::query_scalar("SELECT count(*) FROM audit_subtrees WHERE environment_id = $1")
        .bind(env.as_uuid())
        .fetch_one(&mut admin)
        .await
        .unwrap()
}

/// Nodes of 256 leaves or more in a log of `n` entries.
fn expected_nodes(n: u64) -> i64 {
    (8..40).map(|l| (n >> l) as i64).sum()
}

async fn check_all(store: &Store, env: EnvironmentId, leaves: &[Hash]) {
    let n = leaves.len() as u64;
    let mut sizes: Vec<u64> = vec![1, 2, 3, 100];
    for m in 1..=n / 256 {
        sizes.extend([m * 256 - 1, m * 256, m * 256 + 1]);
    }
    sizes.push(n);
    sizes.retain(|s| *s >= 1 && *s <= n);
    sizes.dedup();
    for size in sizes {
        let s = size as usize;
        for index in [0, 1, size / 2, size.saturating_sub(257), size - 1] {
            if index >= size {
                continue;
            }
            let (proof, root, entry) = db_inclusion(store, env, index, size).await;
            assert_eq!(
                proof,
                merkle::inclusion_proof(&leaves[..s], index).unwrap(),
                "inclusion {index} of {size}"
            );
            assert_eq!(root, merkle::root(&leaves[..s]), "root of {size}");
            assert_eq!(leaf_hash(&entry), leaves[index as usize]);
        }
        for old in [1, size / 2, size.saturating_sub(256), size - 1] {
            if old == 0 || old > size {
                continue;
            }
            assert_eq!(
                db_consistency(store, env, old, size).await,
                merkle::consistency_proof(leaves, old, size).unwrap(),
                "consistency {old} -> {size}"
            );
        }
    }
}

/// Control L3: the writer stores one node per completed subtree of 256+ entries, and proofs
/// built from them (two queries) equal the proofs built from every entry hash, for sizes
/// around multiples of 256.
#[tokio::test]
async fn l3_db_proofs_equal_full_leaf_proofs() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let env = EnvironmentId::new();
    append(&store, env, 255).await;
    assert_eq!(stored_nodes(&db, env).await, 0);
    append(&store, env, 1).await;
    assert_eq!(stored_nodes(&db, env).await, 1);
    append(&store, env, 1100 - 256).await;
    assert_eq!(stored_nodes(&db, env).await, expected_nodes(1100));
    let leaves = all_leaves(&store, env).await;
    assert_eq!(leaves.len(), 1100);
    check_all(&store, env, &leaves).await;
    // Nothing had to be backfilled.
    assert_eq!(stored_nodes(&db, env).await, expected_nodes(1100));
}

/// Control L3: a log written before subtree nodes were stored (none in the table) gets correct
/// proofs; the missing nodes are computed from the entries once and stored, and appends after
/// that keep the table complete.
#[tokio::test]
async fn l3_old_chain_is_backfilled_and_proofs_stay_correct() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let env = EnvironmentId::new();
    append(&store, env, 700).await;
    let mut admin = db.admin_conn().await;
    for sql in [
        "ALTER TABLE audit_subtrees DISABLE TRIGGER audit_subtrees_no_update_delete",
        "DELETE FROM audit_subtrees WHERE environment_id = $1",
        "ALTER TABLE audit_subtrees ENABLE TRIGGER audit_subtrees_no_update_delete",
    ] {
        sqlx::query(sql)
            .bind(env.as_uuid())
            .execute(&mut admin)
            .await
            .unwrap();
    }
    assert_eq!(stored_nodes(&db, env).await, 0);
    let leaves = all_leaves(&store, env).await;
    let (proof, root, _) = db_inclusion(&store, env, 3, 700).await;
    assert_eq!(proof, merkle::inclusion_proof(&leaves, 3).unwrap());
    assert_eq!(root, merkle::root(&leaves));
    assert_eq!(stored_nodes(&db, env).await, expected_nodes(700));
    append(&store, env, 400).await;
    assert_eq!(stored_nodes(&db, env).await, expected_nodes(1100));
    let leaves = all_leaves(&store, env).await;
    check_all(&store, env, &leaves).await;
}

/// Control L3: stored nodes are not trusted. A node changed in the database (by someone who
/// can bypass the append-only triggers) gives a proof that fails verification against the true
/// root, never a wrong "valid".
#[tokio::test]
async fn l3_tampered_subtree_row_fails_verification() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let env = EnvironmentId::new();
    append(&store, env, 1030).await;
    let leaves = all_leaves(&store, env).await;
    let true_root = merkle::root(&leaves);
    // Leaf 5's path in the tree of 1030 uses nodes (8, 1) and (9, 1).
    let plan = Plan::inclusion(5, 1030).unwrap();
    assert!(plan.nodes.contains(&NodeId { level: 9, index: 1 }));
    let mut admin = db.admin_conn().await;
    for sql in [
        "ALTER TABLE audit_subtrees DISABLE TRIGGER audit_subtrees_no_update_delete",
        "UPDATE audit_subtrees SET hash = sha256(hash) WHERE environment_id = $1 AND level = 9 AND node_index = 1",
        "ALTER TABLE audit_subtrees ENABLE TRIGGER audit_subtrees_no_update_delete",
    ] {
        sqlx::query(sql)
            .bind(env.as_uuid())
            .execute(&mut admin)
            .await
            .unwrap();
    }
    let (proof, _, entry) = db_inclusion(&store, env, 5, 1030).await;
    assert_eq!(leaf_hash(&entry), leaves[5]);
    assert!(!merkle::verify_inclusion(
        &leaves[5], 5, 1030, &proof, &true_root
    ));
    // A proof whose path avoids the node is unaffected and still verifies.
    let (proof, _, _) = db_inclusion(&store, env, 1029, 1030).await;
    assert!(merkle::verify_inclusion(
        &leaves[1029],
        1029,
        1030,
        &proof,
        &true_root
    ));
    // The consistency proof from 300 uses the node: it fails against the true roots too.
    let c = db_consistency(&store, env, 300, 1030).await;
    assert!(!merkle::verify_consistency(
        300,
        1030,
        &merkle::root(&leaves[..300]),
        &true_root,
        &c
    ));
}

/// Control L3: every appender stores the nodes its entries complete, also a caller without
/// `audit.read` and the platform scope (no environment context), so no scope is left to the
/// slow backfill.
#[tokio::test]
async fn l3_nodes_are_written_by_every_appender() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let env = EnvironmentId::new();
    let mut tx = store
        .tenant_as_system(env, PermissionSet::of(&[]), RequestMeta::default())
        .await
        .unwrap();
    for i in 0..256 {
        tx.audit(AuditEvent::success("project.created", "project", i))
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    assert_eq!(stored_nodes(&db, env).await, 1);
    let mut tx = store.auth(RequestMeta::default()).await.unwrap();
    tx.as_system(Default::default()).await.unwrap();
    for i in 0..512 {
        tx.audit(
            portcullis_store::Actor::System,
            AuditEvent::success("auth.login", "identity", i),
        )
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    db.sequence(portcullis_store::PLATFORM_SCOPE).await;
    let mut admin = db.admin_conn().await;
    let platform: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_subtrees WHERE environment_id = '00000000-0000-0000-0000-000000000000'",
    )
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert!(platform >= 3, "{platform}");
}
