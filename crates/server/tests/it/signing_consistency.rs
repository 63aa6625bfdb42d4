//! Issue 11, item 1 follow-up (control L4): the checkpointer never lends its signature to a
//! history that contradicts an anchored checkpoint. A database-only attacker (the superuser)
//! rewrites the chain consistently (entry hashes, subtree nodes, head) or truncates it; the
//! node then signs and anchors nothing of that environment, says so in the pass and in the
//! logs, and goes on with the other environments.

use portcullis_core::{EnvironmentId, PermissionSet};
use portcullis_service::anchor::{Anchors, LocalAnchors};
use portcullis_service::trail::{self, CheckpointPass, Signer};
use portcullis_store::Store;
use uuid::Uuid;

use crate::support::chain::{self, AuditTable};
use crate::support::{self, TestApp};

struct Case {
    app: TestApp,
    store: Store,
    signer: Signer,
    env: Uuid,
    other: Uuid,
}

async fn case() -> Case {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@example.com").await;
    let env = app.create_environment(&owner, "Acme").await;
    let other = app.create_environment(&owner, "Other").await;
    let store = app.db.store().await;
    let signer = support::trail::signer(&app.db, &app.vault).await;
    let env = Uuid::parse_str(&env).unwrap();
    let other = Uuid::parse_str(&other).unwrap();
    let c = Case {
        app,
        store,
        signer,
        env,
        other,
    };
    // More than 256 entries, so that the tree has stored subtree nodes the attacker must
    // recompute too.
    c.write(env, 300).await;
    c.write(other, 3).await;
    c
}

impl Case {
    /// `n` entries in `env`, straight through the writer.
    async fn write(&self, env: Uuid, n: usize) {
        let mut tx = self
            .store
            .tenant_as_system(
                EnvironmentId::from_uuid(env),
                PermissionSet::all(),
                Default::default(),
            )
            .await
            .unwrap();
        for i in 0..n {
            tx.audit(portcullis_store::AuditEvent::success(
                "project.created",
                "project",
                i,
            ))
            .await
            .unwrap();
        }
        tx.commit().await.unwrap();
    }

    async fn pass(&self, signer: &Signer, anchors: &Anchors) -> CheckpointPass {
        let pool = self.app.db.checkpointer_pool().await;
        trail::checkpoint_pass(
            &self.store,
            &pool,
            signer,
            anchors,
            1,
            std::time::Duration::ZERO,
        )
        .await
        .unwrap()
    }

    /// The sizes of the database's checkpoints of `env`.
    async fn stored_sizes(&self, env: Uuid) -> Vec<i64> {
        let mut tx = self
            .store
            .tenant_as_system(
                EnvironmentId::from_uuid(env),
                PermissionSet::all(),
                Default::default(),
            )
            .await
            .unwrap();
        let rows = portcullis_store::queries::audit_log::checkpoints(&mut tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        rows.iter().map(|r| r.tree_size).collect()
    }

    async fn anchored_sizes(&self, anchors: &Anchors, env: Uuid) -> Vec<u64> {
        anchors
            .list(env)
            .await
            .unwrap()
            .into_iter()
            .map(|(s, _)| s)
            .collect()
    }

    /// As the superuser: entry 2 rewritten, then every hash, the subtree nodes and the head
    /// recomputed, so the database alone is consistent again.
    async fn rewrite(&self) {
        chain::tamper(
            &self.app.db,
            AuditTable::Log,
            self.env,
            "UPDATE audit_log SET after = '{\"name\":\"history rewritten\"}' WHERE environment_id = $1 AND seq = 2",
        )
        .await;
        chain::rehash(&self.app.db, self.env).await;
    }
}

/// Control L4: the normal case: no rewrite, several passes, each new checkpoint checked
/// against the one anchored before it and signed and anchored; nothing is contradicted.
#[tokio::test]
async fn l4_without_a_rewrite_the_checkpointer_keeps_signing_across_passes() {
    let c = case().await;
    let anchors = c.app.anchors.clone();
    for round in 0..4 {
        let pass = c.pass(&c.signer, &anchors).await;
        assert!(pass.contradicted.is_empty(), "round {round}: {pass:?}");
        assert_eq!((pass.refused, pass.anchor_failures), (0, 0), "{pass:?}");
        assert!(pass.cut >= 2, "round {round}: {pass:?}");
        c.write(c.env, 7 + round * 150).await;
        c.write(c.other, 1).await;
    }
    // A node started afresh (nothing cached) reads the anchors and goes on signing.
    let restarted = support::trail::signer(&c.app.db, &c.app.vault).await;
    let pass = c.pass(&restarted, &anchors).await;
    assert!(pass.contradicted.is_empty() && pass.cut >= 2, "{pass:?}");
    assert_eq!(c.anchored_sizes(&anchors, c.env).await.len(), 5);
    assert_eq!(c.anchored_sizes(&anchors, c.other).await.len(), 5);
    let report = support::trail::verify(&c.store, &c.signer, &anchors, c.env).await;
    assert!(report.is_clean(), "{:?}", report.first_problem);
}

/// Control L4, the attack: entries written, checkpointed and anchored; then the superuser
/// rewrites entry 2 and recomputes the chain, the subtree nodes and the head, and more entries
/// are written. The next passes sign nothing of that environment (no database checkpoint, no
/// anchor) and report it with the anchored size and root and the recomputed root; the other
/// environment is still signed in the same pass. (The L4 error line is checked on the CLI's
/// own stderr, `cli/tests/e2e/consistency.rs`: a process of its own, where no other test's
/// subscriber races for tracing's global callsite state.)
#[tokio::test]
async fn l4_a_consistently_rewritten_log_is_not_signed_and_other_environments_are() {
    let c = case().await;
    let anchors = c.app.anchors.clone();
    let pass = c.pass(&c.signer, &anchors).await;
    assert!(pass.contradicted.is_empty() && pass.cut >= 2, "{pass:?}");
    let anchored: portcullis_audit::checkpoint::SignedCheckpoint =
        anchors.list(c.env).await.unwrap()[0].1.parse().unwrap();
    let size = anchored.checkpoint.tree_size;
    assert!(size >= 300);

    c.rewrite().await;
    c.write(c.env, 5).await;
    c.write(c.other, 2).await;

    let pass = c.pass(&c.signer, &anchors).await;
    assert_eq!(pass.contradicted.len(), 1, "{pass:?}");
    let refused = &pass.contradicted[0];
    assert_eq!(refused.environment, c.env);
    assert_eq!(refused.anchored_size, size);
    assert_eq!(refused.anchored_root, anchored.checkpoint.root_hash);
    let recomputed = refused
        .recomputed_root
        .expect("the log still has that size");
    assert_ne!(recomputed, anchored.checkpoint.root_hash);
    assert!(refused.size > size);
    // Nothing of the environment was signed: no new database checkpoint, no new anchor.
    assert_eq!(c.stored_sizes(c.env).await, vec![size as i64]);
    assert_eq!(c.anchored_sizes(&anchors, c.env).await, vec![size]);
    // The other environment was signed and anchored in the same pass.
    assert_eq!(c.anchored_sizes(&anchors, c.other).await.len(), 2);
    assert!(pass.cut >= 1, "{pass:?}");
    // Every later pass refuses again, also after a restart (nothing cached), and the
    // single-environment cut (`trail::checkpoint`, as monthly reports use it) refuses too.
    let pass = c.pass(&c.signer, &anchors).await;
    assert_eq!(pass.contradicted.len(), 1, "{pass:?}");
    let restarted = support::trail::signer(&c.app.db, &c.app.vault).await;
    let pass = c.pass(&restarted, &anchors).await;
    assert_eq!(pass.contradicted.len(), 1, "{pass:?}");
    let err = trail::checkpoint(&c.store, &c.signer, &anchors, c.env)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, trail::TrailError::Contradicted(k) if k.environment == c.env),
        "{err:?}"
    );
    assert_eq!(c.stored_sizes(c.env).await, vec![size as i64]);
}

/// Control L4: a truncation (the entries after an earlier anchored size deleted, the head
/// rolled back, other entries written in their place) is refused both while the log is
/// shorter than the newest anchored checkpoint and once it has grown past it.
#[tokio::test]
async fn l4_a_truncated_and_rewritten_log_is_not_signed() {
    let c = case().await;
    let anchors = c.app.anchors.clone();
    c.pass(&c.signer, &anchors).await;
    let first = c.anchored_sizes(&anchors, c.env).await[0];
    c.write(c.env, 10).await;
    let pass = c.pass(&c.signer, &anchors).await;
    assert!(pass.contradicted.is_empty(), "{pass:?}");
    let anchored = c.anchored_sizes(&anchors, c.env).await;
    assert_eq!(anchored.len(), 2);
    let newest = anchored[1];

    // As the superuser: every entry after the first anchored size deleted (and the checkpoint
    // rows that covered them), the head rolled back to that size, then new entries written.
    assert_eq!(
        c.stored_sizes(c.env).await,
        vec![first as i64, newest as i64]
    );
    chain::tamper(
        &c.app.db,
        AuditTable::Log,
        c.env,
        "DELETE FROM audit_log WHERE environment_id = $1 AND seq > (SELECT min(tree_size) FROM audit_checkpoints WHERE environment_id = $1)",
    )
    .await;
    chain::tamper(
        &c.app.db,
        AuditTable::Checkpoints,
        c.env,
        "DELETE FROM audit_checkpoints WHERE environment_id = $1 AND tree_size > (SELECT min(tree_size) FROM audit_checkpoints WHERE environment_id = $1)",
    )
    .await;
    chain::rehash(&c.app.db, c.env).await;
    c.write(c.env, 3).await;
    assert!(first + 3 < newest);

    // Shorter than anchored: refused, nothing signed.
    let pass = c.pass(&c.signer, &anchors).await;
    assert_eq!(pass.contradicted.len(), 1, "{pass:?}");
    let refused = &pass.contradicted[0];
    assert_eq!(
        (
            refused.environment,
            refused.anchored_size,
            refused.recomputed_root
        ),
        (c.env, newest, None)
    );
    assert!(refused.reason.contains("truncated"), "{refused:?}");
    assert_eq!(c.stored_sizes(c.env).await, vec![first as i64]);

    // Grown past the anchored size: the tree at that size is not the anchored one.
    c.write(c.env, 20).await;
    let pass = c.pass(&c.signer, &anchors).await;
    assert_eq!(pass.contradicted.len(), 1, "{pass:?}");
    let refused = &pass.contradicted[0];
    assert_eq!(refused.anchored_size, newest);
    assert!(refused.recomputed_root.is_some());
    assert_eq!(c.stored_sizes(c.env).await, vec![first as i64]);
    assert_eq!(c.anchored_sizes(&anchors, c.env).await, anchored);
}

/// Control L4: the same check when a stored checkpoint is re-anchored. A node started while
/// the anchor mount was gone (reads find nothing, writes fail) signed the rewritten log
/// without seeing the anchors; once the mount is back, the next pass refuses to anchor that
/// checkpoint. An anchor store that cannot be read at all gets nothing signed.
#[tokio::test]
async fn l4_a_checkpoint_of_a_rewritten_log_is_not_reanchored() {
    let c = case().await;
    let root = std::env::temp_dir().join(format!("pc-consistency-{}", Uuid::now_v7()));
    let real = root.join("real");
    let mount = root.join("mount");
    std::fs::create_dir_all(&real).unwrap();
    std::os::unix::fs::symlink(&real, &mount).unwrap();
    let anchors = Anchors::Local(LocalAnchors::new(&mount));
    c.pass(&c.signer, &anchors).await;
    let first = c.anchored_sizes(&anchors, c.env).await;
    assert_eq!(first.len(), 1);

    c.rewrite().await;
    c.write(c.env, 4).await;

    // Unreadable (a path below a regular file): nothing is signed, counted as a failure.
    let blocker = root.join("blocker");
    std::fs::write(&blocker, b"not a directory").unwrap();
    let unreadable = Anchors::Local(LocalAnchors::new(blocker.join("anchors")));
    let restarted = support::trail::signer(&c.app.db, &c.app.vault).await;
    let pass = c.pass(&restarted, &unreadable).await;
    assert_eq!((pass.cut, pass.anchor_failures), (0, 1), "{pass:?}");
    assert_eq!(c.stored_sizes(c.env).await, vec![first[0] as i64]);

    // The mount is gone: the anchor directory lists nothing, so a node without a cache signs
    // the rewritten log; anchoring it fails.
    std::fs::remove_file(&mount).unwrap();
    std::os::unix::fs::symlink(root.join("gone"), &mount).unwrap();
    c.write(c.other, 1).await;
    let pass = c.pass(&restarted, &anchors).await;
    assert!(pass.contradicted.is_empty(), "{pass:?}");
    assert_eq!((pass.cut, pass.anchor_failures), (2, 2), "{pass:?}");
    let stored = c.stored_sizes(c.env).await;
    assert_eq!(stored.len(), 2, "{stored:?}");

    // Back: the stored checkpoint of the rewritten log is refused for anchoring.
    std::fs::remove_file(&mount).unwrap();
    std::os::unix::fs::symlink(&real, &mount).unwrap();
    let pass = c.pass(&restarted, &anchors).await;
    assert_eq!(pass.reanchored, 1, "the other environment's: {pass:?}");
    assert_eq!(c.anchored_sizes(&anchors, c.other).await.len(), 2);
    assert_eq!(pass.contradicted.len(), 1, "{pass:?}");
    assert_eq!(pass.contradicted[0].environment, c.env);
    assert_eq!(pass.contradicted[0].anchored_size, first[0]);
    assert_eq!(c.anchored_sizes(&anchors, c.env).await, first);
    std::fs::remove_dir_all(root).unwrap();
}
