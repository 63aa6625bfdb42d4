//! The tamper-evident audit trail, attacked (controls L1-L5, L7).

use axum::http::StatusCode;
use portcullis_audit::checkpoint::PublicKey;
use portcullis_audit::verify::ProblemKind;
use portcullis_service::anchor::{Anchors, LocalAnchors};
use portcullis_service::trail::{self, Signer};
use serde_json::json;
use uuid::Uuid;

use crate::support::chain::{self, AuditTable};
use crate::support::{self, hash32, hashes, TestApp};

struct Trail {
    app: TestApp,
    owner: support::User,
    env: String,
    env_id: Uuid,
    signer: Signer,
    anchors: Anchors,
}

async fn trail_with_entries(projects: usize) -> Trail {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@example.com").await;
    let env = app.create_environment(&owner, "Acme").await;
    for i in 0..projects {
        app.create_project(&owner, &env, &format!("p{i}")).await;
    }
    let signer = support::trail::signer(&app.db, &app.vault).await;
    // The app's own anchor store: its exports carry what is anchored there.
    let anchors = app.anchors.clone();
    let env_id = Uuid::parse_str(&env).unwrap();
    Trail {
        app,
        owner,
        env,
        env_id,
        signer,
        anchors,
    }
}

impl Trail {
    async fn checkpoint(&self) {
        let store = self.app.db.store().await;
        support::trail::checkpoint(&store, &self.signer, &self.anchors, self.env_id).await;
    }

    async fn verify(&self, anchors: &Anchors) -> portcullis_audit::verify::Report {
        let store = self.app.db.store().await;
        support::trail::verify(&store, &self.signer, anchors, self.env_id).await
    }

    /// `GET /audit/checkpoints/latest` as the owner.
    async fn latest_checkpoint(&self) -> support::Reply {
        self.audit_get("checkpoints/latest").await
    }

    /// `GET /v1/environments/{env}/audit/{tail}` as the owner.
    async fn audit_get(&self, tail: &str) -> support::Reply {
        self.app
            .get(
                &format!("/v1/environments/{}/audit/{tail}", self.env),
                &self.owner.token,
            )
            .await
    }

    /// The same, the body as raw bytes (exports).
    async fn audit_raw(&self, tail: &str) -> (StatusCode, Vec<u8>) {
        self.app
            .get_raw(
                &format!("/v1/environments/{}/audit/{tail}", self.env),
                &self.owner.token,
            )
            .await
    }

    async fn superuser(&self, table: AuditTable, sql: &str) {
        chain::tamper(&self.app.db, table, self.env_id, sql).await;
    }
}

/// Control L3: concurrent writers in one environment (and across environments) produce a
/// gapless, unforked, verifiable sequence.
#[tokio::test]
async fn l3_concurrent_writers_keep_the_sequence_gapless() {
    let t = trail_with_entries(0).await;
    let other = t.app.create_environment(&t.owner, "Other").await;
    let mut tasks = vec![];
    for w in 0..8 {
        for (i, env) in [&t.env, &other].iter().enumerate() {
            let app = &t.app;
            let token = t.owner.token.clone();
            let env = env.to_string();
            tasks.push(async move {
                for n in 0..5 {
                    let r = app
                        .post(
                            &format!("/v1/environments/{env}/projects"),
                            &token,
                            json!({ "name": format!("w{w}-{i}-{n}") }),
                        )
                        .await;
                    assert_eq!(r.status, StatusCode::CREATED);
                }
            });
        }
    }
    futures_util::future::join_all(tasks).await;
    let mut admin = t.app.db.admin_conn().await;
    for env in [&t.env, &other] {
        t.app.db.sequence(env.parse().unwrap()).await;
        let (n, min, max): (i64, i64, i64) = sqlx::query_as(
            "SELECT count(*), min(seq), max(seq) FROM audit_log WHERE environment_id = $1::uuid",
        )
        .bind(env)
        .fetch_one(&mut admin)
        .await
        .unwrap();
        assert_eq!((min, max), (1, n), "sequence of {env} has gaps");
        assert!(n >= 41);
    }
    t.checkpoint().await;
    let report = t.verify(&t.anchors).await;
    assert!(report.is_clean(), "{:?}", report.first_problem);
    assert_eq!(
        report.checkpoints_checked, 2,
        "database and anchored checkpoint"
    );
}

/// Control L3: an entry whose values PostgreSQL would normalise (a float, a NUL) still verifies.
#[tokio::test]
async fn l3_awkward_values_still_verify() {
    let t = trail_with_entries(1).await;
    let store = t.app.db.store().await;
    let env = portcullis_core::EnvironmentId::parse(&t.env).unwrap();
    let mut tx = store
        .tenant_as_system(
            env,
            portcullis_core::PermissionSet::all(),
            Default::default(),
        )
        .await
        .unwrap();
    tx.audit(
        portcullis_store::AuditEvent::success("note.recorded", "note", "n1")
            .after(json!({ "ratio": 1e16, "half": 0.5, "text": "a\u{0}b" })),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    t.checkpoint().await;
    let report = t.verify(&t.anchors).await;
    assert!(report.is_clean(), "{:?}", report.first_problem);
}

/// Control L3: a superuser's edit, deletion or reordering is detected and pinpointed.
#[tokio::test]
async fn l3_edits_deletions_and_reorderings_are_detected_and_localized() {
    // Rows are read in seq order, so a swap of two seq labels is two entries trading places
    // with their seqs in order: Reordered at the first (FORMAT.md §6; issue 11, item 6).
    let cases: &[(&str, &[ProblemKind], u64)] = &[
        ("UPDATE audit_log SET after = '{\"name\":\"forged\"}' WHERE environment_id = $1 AND seq = 3", &[ProblemKind::Changed], 3),
        ("DELETE FROM audit_log WHERE environment_id = $1 AND seq = 4", &[ProblemKind::Missing], 4),
        (
            "UPDATE audit_log SET seq = 1000000 WHERE environment_id = $1 AND seq = 3;\
             UPDATE audit_log SET seq = 3 WHERE environment_id = $1 AND seq = 4;\
             UPDATE audit_log SET seq = 4 WHERE environment_id = $1 AND seq = 1000000",
            &[ProblemKind::Reordered],
            3,
        ),
    ];
    for (sql, kind, seq) in cases {
        let t = trail_with_entries(5).await;
        t.checkpoint().await;
        assert!(t.verify(&t.anchors).await.is_clean());
        t.superuser(AuditTable::Log, sql).await;
        let report = t.verify(&t.anchors).await;
        let problem = report
            .first_problem
            .unwrap_or_else(|| panic!("{sql}: not detected"));
        assert!(kind.contains(&problem.kind), "{sql}: {problem}");
        assert_eq!(problem.seq, Some(*seq), "{sql}: {problem}");
    }
}

/// Control L4: a superuser who rewrites the chain consistently inside the database (all hashes,
/// the head, the database checkpoints) defeats a database-only check, but not the anchors.
#[tokio::test]
async fn l4_consistent_rewrite_is_caught_by_the_anchors() {
    let t = trail_with_entries(6).await;
    t.checkpoint().await;
    t.superuser(
        AuditTable::Log,
        "UPDATE audit_log SET after = '{\"name\":\"history rewritten\"}' WHERE environment_id = $1 AND seq = 2",
    )
    .await;
    // Recompute every hash from entry 2 on, and the head, as an informed attacker would.
    chain::rehash(&t.app.db, t.env_id).await;
    t.superuser(
        AuditTable::Checkpoints,
        "DELETE FROM audit_checkpoints WHERE environment_id = $1",
    )
    .await;

    // The database alone now looks perfect ...
    let no_anchors = support::trail::local_anchors("pc-empty");
    assert!(
        t.verify(&no_anchors).await.is_clean(),
        "the rewrite should be internally consistent"
    );
    // ... the anchored checkpoint says otherwise.
    let report = t.verify(&t.anchors).await;
    let problem = report
        .first_problem
        .expect("the anchors must catch the rewrite");
    assert_eq!(
        problem.kind,
        ProblemKind::InconsistentWithCheckpoint,
        "{problem}"
    );
}

/// Controls L5, L3: an exported bundle verifies offline against the published keys; editing
/// one byte of it is detected; exports are audited.
#[tokio::test]
async fn l5_exported_bundle_verifies_offline_and_detects_edits() {
    let t = trail_with_entries(4).await;
    t.checkpoint().await;
    let keys = t
        .app
        .call(
            axum::http::Method::GET,
            "/.well-known/portcullis/audit-keys.json",
            None,
            None,
        )
        .await;
    assert_eq!(keys.status, StatusCode::OK);
    let pinned: Vec<PublicKey> = keys.body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| PublicKey::from_hex(k["public_key"].as_str().unwrap()).unwrap())
        .collect();
    assert_eq!(pinned.len(), 1);
    let bundle = t.audit_raw("export?format=bundle").await;
    assert_eq!(bundle.0, StatusCode::OK);
    let text = String::from_utf8(bundle.1).unwrap();
    let report = portcullis_audit::bundle::verify_bundle(
        text.as_bytes(),
        portcullis_audit::bundle::VerifyOptions::pinned(&pinned),
    )
    .unwrap();
    assert!(report.is_clean(), "{:?}", report.first_problem);
    assert!(report.entries >= 6);
    assert_eq!(report.checkpoints_checked, 1);
    // Change one character of one entry's body.
    let forged = text.replacen("\"p2\"", "\"p9\"", 1);
    assert_ne!(forged, text);
    let report = portcullis_audit::bundle::verify_bundle(
        forged.as_bytes(),
        portcullis_audit::bundle::VerifyOptions::pinned(&pinned),
    )
    .unwrap();
    assert_eq!(report.first_problem.unwrap().kind, ProblemKind::Changed);
    // Another key: the checkpoint no longer verifies.
    let stranger = portcullis_audit::checkpoint::SigningKey::generate()
        .unwrap()
        .public_key();
    let report = portcullis_audit::bundle::verify_bundle(
        text.as_bytes(),
        portcullis_audit::bundle::VerifyOptions::pinned(&[stranger]),
    )
    .unwrap();
    assert!(matches!(
        report.first_problem.unwrap().kind,
        ProblemKind::UnknownKey | ProblemKind::BadSignature
    ));

    // CSV and JSONL exports, windowing, and the export itself is audited.
    let csv = t.audit_raw("export?format=csv").await;
    let csv = String::from_utf8(csv.1).unwrap();
    assert!(csv.starts_with("seq,occurred_at,actor_type"));
    assert!(csv.lines().count() >= 7);
    let future = t
        .audit_raw("export?format=jsonl&from=2999-01-01T00:00:00Z")
        .await;
    assert!(future.1.is_empty());
    let r = t
        .audit_get("export?format=bundle&from=2020-01-01T00:00:00Z")
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let actions: Vec<_> = t
        .app
        .audit_actions(&t.env)
        .await
        .into_iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect();
    assert!(actions.iter().filter(|a| *a == "audit.exported").count() >= 3);
}

/// Control L3: inclusion and consistency proofs from the API verify against signed
/// checkpoints with nothing but the audit crate (as an auditor's own tool would).
#[tokio::test]
async fn l3_api_proofs_verify_against_signed_checkpoints() {
    use portcullis_audit::merkle::{verify_consistency, verify_inclusion};
    let t = trail_with_entries(3).await;
    t.checkpoint().await;
    let first: portcullis_audit::checkpoint::SignedCheckpoint = t.latest_checkpoint().await.body
        ["signed"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    for i in 0..4 {
        t.app
            .create_project(&t.owner, &t.env, &format!("more{i}"))
            .await;
    }
    t.checkpoint().await;
    let latest = t.latest_checkpoint().await;
    let second: portcullis_audit::checkpoint::SignedCheckpoint =
        latest.body["signed"].as_str().unwrap().parse().unwrap();
    second.verify(t.signer.public_keys()).unwrap();
    let size = second.checkpoint.tree_size;
    for seq in [1, 2, size / 2, size] {
        let p = t.audit_get(&format!("proofs/inclusion?seq={seq}")).await;
        assert_eq!(p.status, StatusCode::OK, "{:?}", p.body);
        let proof: Vec<[u8; 32]> = hashes(&p.body["proof"]);
        let leaf =
            portcullis_audit::entry::merkle_leaf(&hash32(p.body["entry_hash"].as_str().unwrap()));
        assert!(
            verify_inclusion(&leaf, seq - 1, size, &proof, &second.checkpoint.root_hash),
            "seq {seq}"
        );
        // The same proof does not prove another position.
        assert!(
            !verify_inclusion(
                &leaf,
                seq % size,
                size,
                &proof,
                &second.checkpoint.root_hash
            ) || size == 1
        );
    }
    let c = t
        .audit_get(&format!(
            "proofs/consistency?from={}&to={size}",
            first.checkpoint.tree_size
        ))
        .await;
    let proof: Vec<[u8; 32]> = hashes(&c.body["proof"]);
    assert!(verify_consistency(
        first.checkpoint.tree_size,
        size,
        &first.checkpoint.root_hash,
        &second.checkpoint.root_hash,
        &proof
    ));
    assert!(!verify_consistency(
        first.checkpoint.tree_size,
        size,
        &second.checkpoint.root_hash,
        &first.checkpoint.root_hash,
        &proof
    ));
    let bad = t.audit_get("proofs/inclusion?seq=0").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

/// Control L4: two processes checkpointing the same size at once (two nodes, or the CLI next
/// to a server) anchor the same text, so no false fork is reported.
#[tokio::test]
async fn l4_racing_checkpointers_agree_on_the_anchor() {
    let t = trail_with_entries(2).await;
    let store = t.app.db.store().await;
    let other_signer = support::trail::signer(&t.app.db, &t.app.vault).await;
    let first = trail::checkpoint(&store, &t.signer, &t.anchors, t.env_id)
        .await
        .unwrap()
        .unwrap();
    // Same size again, signed a moment later: must not conflict with the anchor.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let second = trail::checkpoint(&store, &other_signer, &t.anchors, t.env_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first, second);
    assert!(t.verify(&t.anchors).await.is_clean());
}

/// Control L4: a checkpoint whose anchoring failed (anchor store down) is stored anyway and
/// anchored by a later pass once the store is back; anchoring is then recorded and not redone.
#[tokio::test]
async fn l4_unanchored_checkpoints_are_retried_by_later_passes() {
    let t = trail_with_entries(3).await;
    let store = t.app.db.store().await;
    let pool = t.app.db.checkpointer_pool().await;
    let zero = std::time::Duration::ZERO;
    // An anchor store that cannot be read (a path below a regular file): the tree cannot be
    // checked against the anchors, so nothing is signed; each due scope counts as a failure.
    let blocker = std::env::temp_dir().join(format!("pc-anchor-blocker-{}", Uuid::now_v7()));
    std::fs::write(&blocker, b"not a directory").unwrap();
    let unreadable = Anchors::Local(LocalAnchors::new(blocker.join("anchors")));
    let pass = trail::checkpoint_pass(&store, &pool, &t.signer, &unreadable, 1, zero)
        .await
        .unwrap();
    assert_eq!(pass.cut, 0, "{pass:?}");
    assert!(pass.anchor_failures >= 1, "{pass:?}");
    assert_eq!(t.latest_checkpoint().await.status, StatusCode::NOT_FOUND);
    // An anchor store that reads as empty but refuses writes (its directory a dangling
    // symlink, as a write-once mount that went away): checkpoints are cut and stored, their
    // anchoring fails.
    let gone = std::env::temp_dir().join(format!("pc-anchor-gone-{}", Uuid::now_v7()));
    std::os::unix::fs::symlink(gone.with_extension("unmounted"), &gone).unwrap();
    let down = Anchors::Local(LocalAnchors::new(&gone));
    let pass = trail::checkpoint_pass(&store, &pool, &t.signer, &down, 1, zero)
        .await
        .unwrap();
    // The environment and the platform scope (the sign-up) each get a checkpoint.
    let scopes = pass.cut;
    assert!(scopes >= 1);
    assert_eq!((pass.reanchored, pass.anchor_failures), (0, scopes));
    // Still down, nothing new: the stored checkpoint is retried (and fails again).
    let pass = trail::checkpoint_pass(&store, &pool, &t.signer, &down, 1, zero)
        .await
        .unwrap();
    assert_eq!(
        (pass.cut, pass.reanchored, pass.anchor_failures),
        (0, 0, scopes)
    );
    assert!(t.anchors.list(t.env_id).await.unwrap().is_empty());
    // Back up: the earlier checkpoint is anchored, exactly as the database holds it.
    let pass = trail::checkpoint_pass(&store, &pool, &t.signer, &t.anchors, 1, zero)
        .await
        .unwrap();
    assert_eq!(
        (pass.cut, pass.reanchored, pass.anchor_failures),
        (0, scopes, 0)
    );
    let anchored = t.anchors.list(t.env_id).await.unwrap();
    assert_eq!(anchored.len(), 1);
    let latest = t.latest_checkpoint().await;
    assert_eq!(anchored[0].1, latest.body["signed"].as_str().unwrap());
    // Recorded: the next pass has nothing to re-anchor, only the new entries to checkpoint.
    let pass = trail::checkpoint_pass(&store, &pool, &t.signer, &t.anchors, 1, zero)
        .await
        .unwrap();
    assert_eq!((pass.reanchored, pass.anchor_failures), (0, 0));
    assert_eq!(pass.cut, 1, "the audit.read entry of the GET above is new");
    assert_eq!(t.anchors.list(t.env_id).await.unwrap().len(), 2);
    assert!(t.verify(&t.anchors).await.is_clean());
    std::fs::remove_file(blocker).unwrap();
    std::fs::remove_file(gone).unwrap();
}

/// Control L4: with several nodes only one checkpoints at a time. While another node holds the
/// checkpointer's advisory lock a pass does nothing and says so; once released, it works.
#[tokio::test]
async fn l4_checkpointer_pass_is_skipped_while_another_node_holds_the_lock() {
    use portcullis_store::leader::{PassLock, AUDIT_CHECKPOINTER_LOCK};
    let t = trail_with_entries(2).await;
    let store = t.app.db.store().await;
    let node_a = t.app.db.checkpointer_pool().await;
    let node_b = t.app.db.checkpointer_pool().await;
    let zero = std::time::Duration::ZERO;
    let held = PassLock::try_acquire(&node_b, AUDIT_CHECKPOINTER_LOCK)
        .await
        .unwrap()
        .expect("free at first");
    assert!(PassLock::try_acquire(&node_a, AUDIT_CHECKPOINTER_LOCK)
        .await
        .unwrap()
        .is_none());
    let pass = trail::checkpoint_pass(&store, &node_a, &t.signer, &t.anchors, 1, zero)
        .await
        .unwrap();
    assert!(pass.skipped);
    assert_eq!(pass.cut, 0);
    let none = t.latest_checkpoint().await;
    assert_eq!(none.status, StatusCode::NOT_FOUND);
    held.release().await.unwrap();
    let pass = trail::checkpoint_pass(&store, &node_a, &t.signer, &t.anchors, 1, zero)
        .await
        .unwrap();
    assert!(!pass.skipped);
    assert!(pass.cut >= 1);
    // Two passes at once: exactly one does the work.
    t.app.create_project(&t.owner, &t.env, "racing").await;
    let (a, b) = tokio::join!(
        trail::checkpoint_pass(&store, &node_a, &t.signer, &t.anchors, 1, zero),
        trail::checkpoint_pass(&store, &node_b, &t.signer, &t.anchors, 1, zero),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert!(a.cut + b.cut >= 1);
    assert!(
        a.skipped || b.skipped || a.cut + b.cut == 1,
        "both ran and both cut: {a:?} {b:?}"
    );
    assert!(t.verify(&t.anchors).await.is_clean());
}

/// Large logs: API proofs are built from stored subtree nodes (O(log n)) and verify against
/// the signed checkpoint, also for a log whose nodes had to be backfilled.
#[tokio::test]
async fn l3_api_proofs_at_a_large_size_verify() {
    use portcullis_audit::merkle::{verify_consistency, verify_inclusion};
    use portcullis_core::{EnvironmentId, PermissionSet};
    let t = trail_with_entries(0).await;
    let store = t.app.db.store().await;
    // 3,000 entries straight through the writer (the API would take minutes on this machine).
    for _ in 0..15 {
        let mut tx = store
            .tenant_as_system(
                EnvironmentId::from_uuid(t.env_id),
                PermissionSet::all(),
                Default::default(),
            )
            .await
            .unwrap();
        for i in 0..200 {
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
    t.checkpoint().await;
    let latest = t.latest_checkpoint().await;
    let cp: portcullis_audit::checkpoint::SignedCheckpoint =
        latest.body["signed"].as_str().unwrap().parse().unwrap();
    let size = cp.checkpoint.tree_size;
    assert!(size > 3000);
    for seq in [1, 256, 257, 1500, 2048, size - 1, size] {
        let p = t
            .audit_get(&format!("proofs/inclusion?seq={seq}&tree_size={size}"))
            .await;
        assert_eq!(p.status, StatusCode::OK, "{:?}", p.body);
        assert_eq!(
            hash32(p.body["root_hash"].as_str().unwrap()),
            cp.checkpoint.root_hash
        );
        let leaf =
            portcullis_audit::entry::merkle_leaf(&hash32(p.body["entry_hash"].as_str().unwrap()));
        assert!(
            verify_inclusion(
                &leaf,
                seq - 1,
                size,
                &hashes(&p.body["proof"]),
                &cp.checkpoint.root_hash
            ),
            "seq {seq}"
        );
    }
    // Forget every stored node (a log from before they were stored): the proofs backfill and
    // still verify.
    t.superuser(
        AuditTable::Subtrees,
        "DELETE FROM audit_subtrees WHERE environment_id = $1",
    )
    .await;
    let c = t
        .audit_get(&format!("proofs/consistency?from=1000&to={size}"))
        .await;
    assert_eq!(c.status, StatusCode::OK, "{:?}", c.body);
    let mut tx = store
        .tenant_as_system(
            EnvironmentId::from_uuid(t.env_id),
            PermissionSet::all(),
            Default::default(),
        )
        .await
        .unwrap();
    let first_1000 = portcullis_store::queries::audit_log::entry_hashes(&mut tx, 1000)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let leaves: Vec<[u8; 32]> = first_1000
        .iter()
        .map(portcullis_audit::entry::merkle_leaf)
        .collect();
    assert!(verify_consistency(
        1000,
        size,
        &portcullis_audit::merkle::root(&leaves),
        &cp.checkpoint.root_hash,
        &hashes(&c.body["proof"])
    ));
    let p = t
        .audit_get(&format!("proofs/inclusion?seq=700&tree_size={size}"))
        .await;
    assert_eq!(p.status, StatusCode::OK, "{:?}", p.body);
    let leaf =
        portcullis_audit::entry::merkle_leaf(&hash32(p.body["entry_hash"].as_str().unwrap()));
    assert!(verify_inclusion(
        &leaf,
        699,
        size,
        &hashes(&p.body["proof"]),
        &cp.checkpoint.root_hash
    ));
    let too_big = t
        .audit_get(&format!(
            "proofs/inclusion?seq=1&tree_size={}",
            size + 100_000
        ))
        .await;
    assert_eq!(too_big.status, StatusCode::BAD_REQUEST);
}

/// Every hash of `$1`'s head frontier replaced by `$2`.
const EDIT_FRONTIER: &str =
    "UPDATE audit_heads SET frontier = array(SELECT $2::bytea FROM unnest(frontier))
  WHERE environment_id = $1";

/// Runs `sql` as the superuser with every trigger off (`session_replication_role = replica`,
/// which only a superuser may set), `$1` bound to the environment and `$2` to `bytes`.
async fn as_replica(t: &Trail, sql: &str, bytes: &[u8]) {
    // The edit reaches every entry written so far.
    t.app.db.sequence(t.env_id).await;
    let mut admin = t.app.db.admin_conn().await;
    sqlx::query("SET session_replication_role = replica")
        .execute(&mut admin)
        .await
        .unwrap();
    sqlx::query(sql)
        .bind(t.env_id)
        .bind(bytes)
        .execute(&mut admin)
        .await
        .unwrap();
    sqlx::query("SET session_replication_role = origin")
        .execute(&mut admin)
        .await
        .unwrap();
}

/// One entry in `env`'s chain, straight through the writer.
async fn append_one(store: &portcullis_store::Store, env: Uuid) {
    let mut tx = store
        .tenant_as_system(
            portcullis_core::EnvironmentId::from_uuid(env),
            portcullis_core::PermissionSet::all(),
            Default::default(),
        )
        .await
        .unwrap();
    tx.audit(portcullis_store::AuditEvent::success(
        "note.recorded",
        "note",
        "n",
    ))
    .await
    .unwrap();
    tx.commit().await.unwrap();
}

async fn head_seq(t: &Trail) -> i64 {
    t.app.db.sequence(t.env_id).await;
    let mut admin = t.app.db.admin_conn().await;
    sqlx::query_scalar("SELECT seq FROM audit_heads WHERE environment_id = $1")
        .bind(t.env_id)
        .fetch_one(&mut admin)
        .await
        .unwrap()
}

/// Control L4 (issue 11, anchor poisoning): with database access only, an attacker publishes a
/// key of their own and inserts checkpoints signed by it, one for a size the log has not
/// reached yet and one for a size it has. The checkpointer refuses both (they are not signed
/// by a key it holds, nor the tree it computes), anchors neither, and once the log reaches the
/// forged size it anchors its own checkpoint of that size.
#[tokio::test]
async fn l4_forged_checkpoints_are_never_anchored_and_the_real_one_is() {
    let t = trail_with_entries(2).await;
    let store = t.app.db.store().await;
    let pool = t.app.db.checkpointer_pool().await;
    let zero = std::time::Duration::ZERO;
    let evil = portcullis_audit::checkpoint::SigningKey::generate().unwrap();
    let mut admin = t.app.db.admin_conn().await;
    // The attacker's key, published under its own (correct) id.
    sqlx::query(
        "INSERT INTO audit_signing_keys (key_id, public_key, wrapped_seed, kek, created_at, retired_at)
         VALUES ($1, $2, '\\x00', '{}', now(), now())",
    )
    .bind(evil.key_id().to_string())
    .bind(evil.public_key_bytes().as_slice())
    .execute(&mut admin)
    .await
    .unwrap();
    let seq = head_seq(&t).await;
    let past = chain::forge_checkpoint(&t.app.db, t.env_id, &evil, 1).await;
    let future = chain::forge_checkpoint(&t.app.db, t.env_id, &evil, seq + 1).await;
    append_one(&store, t.env_id).await;
    assert_eq!(
        head_seq(&t).await,
        seq + 1,
        "the log reached the forged size"
    );

    let pass = trail::checkpoint_pass(&store, &pool, &t.signer, &t.anchors, 1, zero)
        .await
        .unwrap();
    assert_eq!(pass.refused, 2, "{pass:?}");
    assert_eq!(pass.anchor_failures, 0, "{pass:?}");
    let anchored = t.anchors.list(t.env_id).await.unwrap();
    assert_eq!(anchored.len(), 1, "{anchored:?}");
    let (size, text) = &anchored[0];
    assert_eq!(*size, (seq + 1) as u64);
    assert_ne!(text, &future);
    assert_ne!(text, &past);
    let real: portcullis_audit::checkpoint::SignedCheckpoint = text.parse().unwrap();
    real.verify(t.signer.public_keys()).unwrap();
    // The attacker's key is not one the node trusts, published or not.
    assert!(!t.signer.public_keys().contains(&evil.public_key()));

    // Later passes keep refusing the past forgery and keep checkpointing real entries.
    append_one(&store, t.env_id).await;
    let pass = trail::checkpoint_pass(&store, &pool, &t.signer, &t.anchors, 1, zero)
        .await
        .unwrap();
    assert_eq!((pass.refused, pass.anchor_failures), (1, 0), "{pass:?}");
    let anchored = t.anchors.list(t.env_id).await.unwrap();
    assert_eq!(anchored.len(), 2, "{anchored:?}");
    assert!(anchored.iter().all(|(_, s)| s != &past && s != &future));
    // Verification reports the forged rows still in the database, not the anchors.
    let report = t.verify(&t.anchors).await;
    assert!(!report.is_clean());
}

/// Control L4: a checkpoint the node itself signed from a tampered head row (the frontier
/// edited by a superuser with triggers off) is not the tree the stored entries make, and is
/// not anchored.
#[tokio::test]
async fn l4_checkpoint_of_a_tampered_head_is_not_anchored() {
    let t = trail_with_entries(3).await;
    let store = t.app.db.store().await;
    as_replica(&t, EDIT_FRONTIER, &[9; 32]).await;
    let err = trail::checkpoint(&store, &t.signer, &t.anchors, t.env_id)
        .await
        .unwrap_err();
    assert!(matches!(err, trail::TrailError::Refused { .. }), "{err:?}");
    assert!(t.anchors.list(t.env_id).await.unwrap().is_empty());
}

/// Controls L2, L4: the signing-key table is append-only even for the superuser (a key can
/// only be retired), a new row's key id must be its key's, and a row written with the
/// triggers off under a wrong id is neither published at /.well-known nor trusted.
#[tokio::test]
async fn l4_signing_keys_are_append_only_and_published_only_under_their_own_id() {
    let t = trail_with_entries(0).await;
    let mut admin = t.app.db.admin_conn().await;
    let evil = portcullis_audit::checkpoint::SigningKey::generate().unwrap();
    let real = t.signer.key_id();
    for (sql, refusal) in [
        (
            "UPDATE audit_signing_keys SET public_key = $2 WHERE key_id = $1",
            "append-only",
        ),
        (
            "UPDATE audit_signing_keys SET created_at = now(), retired_at = now()
              WHERE key_id = $1 AND $2::bytea IS NOT NULL",
            "append-only",
        ),
        (
            "DELETE FROM audit_signing_keys WHERE key_id = $1 AND $2::bytea IS NOT NULL",
            "append-only",
        ),
        (
            "INSERT INTO audit_signing_keys (key_id, public_key, wrapped_seed, kek, created_at)
             VALUES ($1, $2, '\\x00', '{}', now())",
            "is not the id of its public key",
        ),
    ] {
        let err = sqlx::query(sql)
            .bind(&real)
            .bind(evil.public_key_bytes().as_slice())
            .execute(&mut admin)
            .await
            .expect_err(sql);
        assert!(err.to_string().contains(refusal), "{sql}: {err}");
    }
    let err = sqlx::query("TRUNCATE audit_signing_keys")
        .execute(&mut admin)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");
    // With triggers off: the attacker's key under another key's id.
    as_replica(
        &t,
        "INSERT INTO audit_signing_keys (key_id, public_key, wrapped_seed, kek, created_at)
         SELECT '0000000000000000', $2, '\\x00', '{}', now() WHERE $1::uuid IS NOT NULL",
        &evil.public_key_bytes(),
    )
    .await;
    let keys = t
        .app
        .call(
            axum::http::Method::GET,
            "/.well-known/portcullis/audit-keys.json",
            None,
            None,
        )
        .await;
    assert_eq!(keys.status, StatusCode::OK);
    let published: Vec<&str> = keys.body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["key_id"].as_str().unwrap())
        .collect();
    assert_eq!(published, [real.as_str()]);
    let store = t.app.db.store().await;
    let trusted = trail::published_keys(&store).await.unwrap();
    assert!(!trusted.contains(&evil.public_key()));
    // Rotation still retires the old key (the one change the table accepts).
    let owner = support::trail::owner_pool(&t.app.db).await;
    let rotated = Signer::create(&owner, &t.app.vault, t.app.vault.default_kek())
        .await
        .unwrap();
    assert_eq!(rotated.public_keys().len(), 2);
    let retired: bool = sqlx::query_scalar(
        "SELECT retired_at IS NOT NULL FROM audit_signing_keys WHERE key_id = $1",
    )
    .bind(&real)
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert!(retired);
    // ... and once retired, a key stays retired.
    let err = sqlx::query("UPDATE audit_signing_keys SET retired_at = NULL WHERE key_id = $1")
        .bind(&real)
        .execute(&mut admin)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");
}

/// Control L3 (issue 11, item 4): deleting the newest entries, after the last checkpoint,
/// leaves no gap and no checkpoint covers them, but the head row still records their number,
/// hash and frontier: verification reports them missing. An edited head row is reported too.
#[tokio::test]
async fn l3_deleting_the_newest_entries_is_caught_by_the_head_row() {
    let t = trail_with_entries(3).await;
    let store = t.app.db.store().await;
    t.checkpoint().await;
    let checkpointed = head_seq(&t).await;
    append_one(&store, t.env_id).await;
    append_one(&store, t.env_id).await;
    assert!(t.verify(&t.anchors).await.is_clean());
    t.superuser(
        AuditTable::Log,
        "DELETE FROM audit_log WHERE environment_id = $1
            AND seq > (SELECT max(tree_size) FROM audit_checkpoints WHERE environment_id = $1)",
    )
    .await;
    let report = t.verify(&t.anchors).await;
    let problem = report.first_problem.expect("the deletion must be reported");
    assert_eq!(problem.kind, ProblemKind::Missing, "{problem}");
    assert_eq!(problem.seq, Some(checkpointed as u64 + 1), "{problem}");
    assert_eq!(report.entries, checkpointed as u64);

    // A head row whose frontier was edited (its size and hash left alone).
    let t = trail_with_entries(2).await;
    as_replica(&t, EDIT_FRONTIER, &[7; 32]).await;
    let report = t.verify(&t.anchors).await;
    let problem = report
        .first_problem
        .expect("the edited head must be reported");
    assert_eq!(
        problem.kind,
        ProblemKind::InconsistentWithCheckpoint,
        "{problem}"
    );
}

/// Control L4 (issue 11, item 6): an anchor file that is not a signed checkpoint (garbage,
/// or bytes that are not UTF-8) is reported as a finding; the other anchors and the chain are
/// still verified.
#[tokio::test]
async fn l4_a_malformed_anchor_file_is_a_finding_and_verification_goes_on() {
    let t = trail_with_entries(3).await;
    t.checkpoint().await;
    let Anchors::Local(local) = &t.anchors else {
        panic!("local anchors")
    };
    let dir = local.dir().join(t.env_id.to_string());
    std::fs::write(
        dir.join(format!("{:020}.checkpoint", 2)),
        b"not a checkpoint",
    )
    .unwrap();
    std::fs::write(
        dir.join(format!("{:020}.checkpoint", 3)),
        [0xff, 0xfe, 0x00],
    )
    .unwrap();
    let report = t.verify(&t.anchors).await;
    assert_eq!(report.findings.len(), 2, "{:?}", report.findings);
    assert!(report
        .findings
        .iter()
        .all(|f| f.kind == ProblemKind::Malformed));
    let problem = report.first_problem.expect("a finding");
    assert_eq!(problem.kind, ProblemKind::Malformed, "{problem}");
    assert!(problem.detail.contains("size 2"), "{problem}");
    assert_eq!(
        report.checkpoints_checked, 2,
        "database and good anchored checkpoint"
    );
    assert_eq!(report.entries, head_seq(&t).await as u64);
}
