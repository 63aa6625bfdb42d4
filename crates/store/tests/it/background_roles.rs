//! The background roles (issue 9): the audit checkpointer and the key-rotation scheduler connect
//! as `portcullis_checkpointer` and `portcullis_scheduler`, never as the schema owner. Each runs
//! its cross-environment queries (T4, L4, E5) and is refused everything else; the boot
//! self-check (T7) reports a grant or policy beyond the expected ones.

use portcullis_core::{EnvironmentId, IdentityId};
use portcullis_store::bootstrap::{CHECKPOINTER_ROLE, SCHEDULER_ROLE, SEQUENCER_ROLE};
use portcullis_store::queries::{audit_log, environments, identities};
use portcullis_store::testing::TestDb;
use portcullis_store::vault::operator as keys_operator;
use portcullis_store::{catalog, AuditEvent, RequestMeta};
use sqlx::{ConnectOptions, PgConnection};
use time::OffsetDateTime;

fn vault() -> &'static portcullis_store::vault::Vault {
    static VAULT: std::sync::OnceLock<portcullis_store::vault::Vault> = std::sync::OnceLock::new();
    VAULT.get_or_init(portcullis_store::testing::test_vault)
}

/// An environment with a keyring and one audit entry beyond its creation.
async fn environment(db: &TestDb, name: &str) -> EnvironmentId {
    let store = db.store().await;
    let owner = IdentityId::new();
    let now = OffsetDateTime::now_utc();
    let mut tx = store.auth(RequestMeta::default()).await.unwrap();
    identities::create(
        &mut tx,
        vault(),
        owner,
        &format!("owner@{name}.test"),
        "Owner",
        "$argon2id$fake",
        now,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let env = EnvironmentId::new();
    let mut tx = store
        .new_environment(env, owner, RequestMeta::default())
        .await
        .unwrap();
    environments::create(&mut tx, name, "eu-central", owner, now)
        .await
        .unwrap();
    vault().ring(&mut tx).await.unwrap();
    tx.audit(AuditEvent::success(
        "environment.created",
        "environment",
        env,
    ))
    .await
    .unwrap();
    tx.commit().await.unwrap();
    env
}

/// Asserts that `sql` (with the environment as `$1` when it names one) is refused with 42501:
/// insufficient privilege or an RLS violation.
async fn refused(conn: &mut PgConnection, sql: &str, env: uuid::Uuid) {
    let query = sqlx::query(sql);
    let query = if sql.contains("$1") {
        query.bind(env)
    } else {
        query
    };
    let err = query.execute(&mut *conn).await.expect_err(sql);
    let code = err
        .as_database_error()
        .and_then(|e| e.code().map(|c| c.into_owned()))
        .unwrap_or_default();
    assert_eq!(code, "42501", "{sql}: {err}");
}

/// Controls T4, L4, E5: the background passes' queries work as their own roles, and see every
/// environment that has work due.
#[tokio::test]
async fn t4_background_roles_run_their_cross_environment_queries() {
    let db = TestDb::new().await;
    let env = environment(&db, "alpha").await;
    db.sequence(env.as_uuid()).await;

    let checkpointer = db.checkpointer_pool().await;
    let due = audit_log::operator::uncheckpointed(&checkpointer)
        .await
        .unwrap();
    assert!(due
        .iter()
        .any(|(e, seq, last, _)| *e == env.as_uuid() && *seq >= 1 && *last == 0));
    assert!(
        audit_log::operator::unanchored_checkpoints(&checkpointer, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // The signer: add a key, add a second, retire the first.
    let now = OffsetDateTime::now_utc();
    // Key ids are the keys' own (migration 0010): SHA-256 of [7; 32] and [8; 32], 8 bytes.
    let (k1, k2) = ("4bb06f8e4e3a7715", "2578ccf8645b2d1d");
    for (key_id, byte, age) in [(k1, 7, 60), (k2, 8, 0)] {
        audit_log::operator::add_signing_key(
            &checkpointer,
            &audit_log::operator::SigningKeyRow {
                key_id: key_id.into(),
                public_key: vec![byte; 32],
                wrapped_seed: vec![1, 2, 3],
                kek: serde_json::json!({ "provider": "local", "name": "test" }),
                created_at: now - time::Duration::seconds(age),
                retired_at: None,
            },
        )
        .await
        .unwrap();
    }
    audit_log::operator::retire_other_keys(&checkpointer, k2, now)
        .await
        .unwrap();
    let keys = audit_log::operator::signing_keys(&checkpointer)
        .await
        .unwrap();
    let state: Vec<(&str, bool)> = keys
        .iter()
        .map(|k| (k.key_id.as_str(), k.retired_at.is_some()))
        .collect();
    assert_eq!(state, [(k1, true), (k2, false)]);

    let scheduler = db.scheduler_pool().await;
    assert!(keys_operator::unfinished_jobs(&scheduler)
        .await
        .unwrap()
        .is_empty());
    assert!(keys_operator::due_for_rotation(&scheduler)
        .await
        .unwrap()
        .is_empty());
    let mut admin = db.admin_conn().await;
    sqlx::query("UPDATE environment_keys SET rotated_at = now() - interval '10 years' WHERE environment_id = $1")
        .bind(env.as_uuid())
        .execute(&mut admin)
        .await
        .unwrap();
    assert_eq!(
        keys_operator::due_for_rotation(&scheduler).await.unwrap(),
        [env.as_uuid()]
    );
    // The KEK list is the operator CLI's (as the owner), not the scheduler's.
    let err = keys_operator::keyrings(&scheduler).await.unwrap_err();
    assert!(
        matches!(err, portcullis_store::StoreError::PolicyViolation),
        "{err:?}"
    );
}

/// Controls T7 and L4: the checkpointer's role reads heads' sizes, checkpoints, anchoring
/// records and the signing keys, and nothing else: no entries, no content, no writes to the
/// audit streams, no un-retiring or editing a key, no other role.
#[tokio::test]
async fn t7_l4_checkpointer_role_is_refused_outside_its_grants() {
    let db = TestDb::new().await;
    let env = environment(&db, "alpha").await;
    let mut conn = db.checkpointer.connect().await.unwrap();
    let e = env.as_uuid();
    for sql in [
        "SELECT title FROM documents",
        "SELECT name FROM environments",
        "SELECT email_index FROM identities",
        "SELECT token_hash FROM sessions",
        "SELECT * FROM audit_log",
        "SELECT head_hash FROM audit_heads",
        "SELECT frontier FROM audit_heads",
        "SELECT * FROM audit_subtrees",
        "SELECT kek FROM environment_keys",
        "SELECT * FROM data_keys",
        "SELECT * FROM platform_keys",
        "SELECT * FROM subject_keys",
        "INSERT INTO audit_log (environment_id, seq) VALUES ($1, 2)",
        "UPDATE audit_heads SET seq = 0 WHERE environment_id = $1",
        "INSERT INTO audit_checkpoints (environment_id, tree_size, root_hash, head_hash, issued_at, key_id, signed)
             VALUES ($1, 1, '\\x00', '\\x00', now(), 'k', 's')",
        "INSERT INTO audit_checkpoint_anchors (environment_id, tree_size, anchored_at) VALUES ($1, 1, now())",
        "INSERT INTO audit_signing_keys (key_id, public_key, wrapped_seed, kek, created_at, retired_at)
         VALUES ('k', '\\x00', '\\x00', '{}', now(), now())",
        "UPDATE audit_signing_keys SET public_key = '\\x00'",
        "DELETE FROM audit_signing_keys",
        "CREATE TABLE public.stash (x int)",
        "SET ROLE portcullis_owner",
        "SET ROLE portcullis_app",
        "SET ROLE portcullis_scheduler",
    ] {
        refused(&mut conn, sql, e).await;
    }
    // A retired key cannot be revived: the retiring policy sees only active keys. (The key id
    // is the all-zero key's own, as migration 0010 requires.)
    sqlx::raw_sql(
        "INSERT INTO audit_signing_keys (key_id, public_key, wrapped_seed, kek, created_at)
         VALUES ('66687aadf862bd77', '\\x0000000000000000000000000000000000000000000000000000000000000000', '\\x00', '{}', now());
         UPDATE audit_signing_keys SET retired_at = now() WHERE key_id = '66687aadf862bd77'",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let revived = sqlx::query(
        "UPDATE audit_signing_keys SET retired_at = NULL WHERE key_id = '66687aadf862bd77'",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    assert_eq!(revived.rows_affected(), 0);
    let retired: bool = sqlx::query_scalar(
        "SELECT retired_at IS NOT NULL FROM audit_signing_keys WHERE key_id = '66687aadf862bd77'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert!(retired);
}

/// Controls T7 and E5: the scheduler's role reads when keys were rotated and which jobs are
/// unfinished, and nothing else: no KEK reference, no wrapped key, no signing seed, no content,
/// no writes.
#[tokio::test]
async fn t7_e5_scheduler_role_is_refused_outside_its_grants() {
    let db = TestDb::new().await;
    let env = environment(&db, "alpha").await;
    let mut conn = db.scheduler.connect().await.unwrap();
    let e = env.as_uuid();
    for sql in [
        "SELECT kek FROM environment_keys",
        "SELECT keyring_id FROM environment_keys",
        "SELECT * FROM data_keys",
        "SELECT progress FROM key_rotation_jobs",
        "SELECT wrapped_seed FROM audit_signing_keys",
        "SELECT key_id FROM audit_signing_keys",
        "SELECT * FROM platform_keys",
        "SELECT * FROM subject_keys",
        "SELECT title FROM documents",
        "SELECT * FROM integrations",
        "SELECT * FROM model_keys",
        "SELECT * FROM audit_log",
        "SELECT seq FROM audit_heads",
        "UPDATE environment_keys SET rotated_at = now() WHERE environment_id = $1",
        "INSERT INTO key_rotation_jobs (environment_id, job_id, target_version, started_at)
             VALUES ($1, gen_random_uuid(), 2, now())",
        "DELETE FROM key_rotation_jobs",
        "CREATE TABLE public.stash (x int)",
        "SET ROLE portcullis_owner",
        "SET ROLE portcullis_checkpointer",
    ] {
        refused(&mut conn, sql, e).await;
    }
}

/// Control T7: a background role holding more than its grants (a table, a column, a schema),
/// less than them, or named by an unexpected policy, is reported by the boot self-check.
#[tokio::test]
async fn t7_catalog_check_reports_a_background_role_beyond_its_grants() {
    let cases: &[(&str, &str)] = &[
        (
            "GRANT SELECT ON documents TO portcullis_checkpointer",
            "portcullis_checkpointer holds SELECT public.documents",
        ),
        (
            "GRANT INSERT ON audit_log TO portcullis_checkpointer",
            "portcullis_checkpointer holds INSERT public.audit_log",
        ),
        (
            "GRANT SELECT (wrapped_seed) ON audit_signing_keys TO portcullis_scheduler",
            "portcullis_scheduler holds SELECT public.audit_signing_keys(wrapped_seed)",
        ),
        (
            "GRANT SELECT (kek) ON environment_keys TO portcullis_scheduler",
            "portcullis_scheduler holds SELECT public.environment_keys(environment_id, kek, rotate_after_days, rotated_at)",
        ),
        (
            "GRANT CREATE ON SCHEMA public TO portcullis_scheduler",
            "portcullis_scheduler holds CREATE schema public",
        ),
        (
            "CREATE SCHEMA side; CREATE TABLE side.notes (x int); GRANT SELECT ON side.notes TO portcullis_checkpointer",
            "portcullis_checkpointer holds SELECT side.notes",
        ),
        (
            "REVOKE SELECT (signed) ON audit_checkpoints FROM portcullis_checkpointer",
            "portcullis_checkpointer lacks SELECT public.audit_checkpoints(environment_id, issued_at, signed, tree_size)",
        ),
        (
            "CREATE POLICY peek ON documents FOR SELECT TO portcullis_scheduler USING (true)",
            "documents: policy peek names portcullis_scheduler unexpectedly",
        ),
        (
            "ALTER POLICY audit_heads_checkpointer ON audit_heads TO portcullis_checkpointer, portcullis_app",
            "policy audit_heads_checkpointer applies to",
        ),
        (
            "DROP POLICY key_rotation_jobs_scheduler ON key_rotation_jobs",
            "key_rotation_jobs: policy key_rotation_jobs_scheduler is missing",
        ),
    ];
    for (sql, expected) in cases {
        let details = crate::support::catalog_findings_after(sql, None).await;
        assert!(
            details.iter().any(|d| d.contains(expected)),
            "{sql}: expected {expected:?} in {details:#?}"
        );
    }
}

/// Control T7: the roles the catalog expects are the ones bootstrap creates.
#[test]
fn t7_background_roles_are_the_bootstrapped_ones() {
    let expected: Vec<&str> = catalog::BACKGROUND_ROLES.iter().map(|r| r.role).collect();
    assert_eq!(
        expected,
        [CHECKPOINTER_ROLE, SCHEDULER_ROLE, SEQUENCER_ROLE]
    );
    assert_eq!(
        portcullis_store::bootstrap::BACKGROUND_ROLES,
        [CHECKPOINTER_ROLE, SCHEDULER_ROLE, SEQUENCER_ROLE]
    );
}
