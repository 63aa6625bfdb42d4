//! Tenant isolation at the database layer, attacked directly (controls T1, T2, T3, T7, L2, R1, R8).

use portcullis_core::{BuiltinRole, DocumentId, Permission, PermissionSet, ProjectId, RoleRef};
use portcullis_store::queries::{documents, members, projects};
use portcullis_store::testing::TestDb;
use portcullis_store::{catalog, RequestMeta, StoreError};
use sqlx::Row;
use time::OffsetDateTime;

use crate::support::{identity, tenant};

/// Control T7: the freshly migrated schema passes every boot check.
#[tokio::test]
async fn t7_catalog_checks_pass_on_a_fresh_schema() {
    let _roles = crate::support::role_attributes_lock().await;
    let db = TestDb::new().await;
    let mut conn = db.runtime_conn().await;
    let checks = catalog::run(&mut conn).await.unwrap();
    assert!(checks.len() >= 10);
    let failed = catalog::failures(&checks);
    assert!(failed.is_empty(), "{failed:#?}");
}

/// Control T7: dropping a policy, disabling FORCE, adding a permissive policy, a definer
/// function or an owner-rights view are each reported.
#[tokio::test]
async fn t7_catalog_check_reports_a_weakened_schema() {
    let cases: &[(&str, &str)] = &[
        (
            "DROP POLICY documents_read_permission ON documents",
            "documents_read_permission is missing",
        ),
        (
            "ALTER TABLE projects NO FORCE ROW LEVEL SECURITY",
            "projects (enabled: true, forced: false)",
        ),
        (
            "CREATE POLICY leak ON documents FOR SELECT TO portcullis_app USING (true)",
            "unexpected policy leak",
        ),
        (
            "CREATE FUNCTION public.peek() RETURNS int LANGUAGE sql SECURITY DEFINER AS 'SELECT 1'",
            "public.peek is SECURITY DEFINER",
        ),
        (
            "CREATE VIEW doc_titles AS SELECT title FROM documents",
            "view doc_titles runs as its owner",
        ),
        (
            "CREATE TABLE notes (id uuid PRIMARY KEY)",
            "notes is neither a tenant nor a global table",
        ),
        ("ALTER ROLE portcullis_app BYPASSRLS", "has BYPASSRLS"),
        (
            "GRANT UPDATE ON audit_log TO portcullis_app",
            "runtime role may UPDATE audit_log",
        ),
        (
            "ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_truncate",
            "1 of 2 append-only triggers",
        ),
        // The signed context's invariants (T2): nothing to shadow tables with, nothing that
        // resolves names through the caller's search_path, the key out of reach, the checks
        // run as the guard role.
        (
            "DO $$ BEGIN EXECUTE format('GRANT TEMPORARY ON DATABASE %I TO portcullis_app', current_database()); END $$",
            "may create temporary tables",
        ),
        (
            "GRANT CREATE ON SCHEMA portcullis TO portcullis_app",
            "may create objects in portcullis",
        ),
        (
            "CREATE FUNCTION portcullis.loose() RETURNS int LANGUAGE sql AS 'SELECT 1'",
            "portcullis.loose resolves names through the caller's search_path",
        ),
        (
            "GRANT SELECT (secret) ON portcullis_guard.context_key TO portcullis_app",
            "may read the context key",
        ),
        (
            "ALTER FUNCTION portcullis_guard.context() OWNER TO portcullis_owner",
            "portcullis_guard.context runs as portcullis_owner",
        ),
    ];
    for (sql, expected) in cases {
        // Roles are cluster-wide: undone before asserting so other tests are unaffected.
        let details = crate::support::catalog_findings_after(
            sql,
            Some("ALTER ROLE portcullis_app NOBYPASSRLS"),
        )
        .await;
        assert!(
            details.iter().any(|d| d.contains(expected)),
            "{sql}: expected {expected:?} in {details:#?}"
        );
    }
}

/// Control T2: an application query that forgets its tenant filter still only sees the
/// current tenant's rows, because row-level security adds it.
#[tokio::test]
async fn t2_query_without_tenant_filter_sees_only_current_tenant() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let a = tenant(&store, "alpha").await;
    let b = tenant(&store, "beta").await;

    let mut t = store
        .tenant_as_system(
            a.env,
            PermissionSet::of(&[Permission::DocumentsRead]),
            RequestMeta::default(),
        )
        .await
        .unwrap();
    let tx = t.conn_for_tests();
    // The "bug": no WHERE environment_id = ... at all.
    let titles: Vec<String> = sqlx::query_scalar("SELECT title FROM documents")
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    assert_eq!(titles, vec!["alpha secret".to_owned()]);
    let envs: i64 = sqlx::query_scalar("SELECT count(*) FROM environments")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(envs, 1);
    // Asking for B's row by id finds nothing.
    let found: Option<String> =
        sqlx::query_scalar("SELECT title FROM documents WHERE document_id = $1")
            .bind(b.document.as_uuid())
            .fetch_optional(&mut *tx)
            .await
            .unwrap();
    assert_eq!(found, None);
    // Writing into B fails.
    let err = sqlx::query("INSERT INTO projects (environment_id, project_id, name, created_by, created_at) VALUES ($1, $2, 'x', $3, now())")
        .bind(b.env.as_uuid())
        .bind(ProjectId::new().as_uuid())
        .bind(b.owner.as_uuid())
        .execute(&mut *tx)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("row-level security"), "{err}");
}

const COUNT_ROWS_OF: &str = "SELECT (xpath('/row/n/text()', query_to_xml(format('SELECT count(*) AS n FROM %I', $1::text), false, true, '')))[1]::text::bigint";

/// Control T2: with no context at all the runtime role sees nothing and cannot write.
#[tokio::test]
async fn t2_no_context_fails_closed() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let a = tenant(&store, "alpha").await;
    let mut conn = db.runtime_conn().await;
    for table in catalog::TENANT_TABLES.iter().chain(catalog::GLOBAL_TABLES) {
        // Deliberately readable: whether setup happened; the platform keys, only wrapped by
        // the KEK (whether a test database has them depends on which test warmed the shared
        // vault's cache first); the public halves of the audit signing keys.
        if ["installation", "platform_keys", "audit_signing_keys"].contains(table) {
            continue;
        }
        // Submitted audit entries: the runtime role may not read them at all, in any context.
        if *table == "audit_pending" {
            let err = sqlx::query("SELECT 1 FROM audit_pending")
                .execute(&mut conn)
                .await
                .unwrap_err();
            assert_eq!(
                err.as_database_error().and_then(|e| e.code()).as_deref(),
                Some("42501"),
                "{err}"
            );
            continue;
        }
        // The table is a bind parameter, quoted by format('%I') inside the database; the
        // count runs as this connection's role, under its policies.
        let n: i64 = sqlx::query_scalar(COUNT_ROWS_OF)
            .bind(table)
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(n, 0, "{table} leaked rows without context");
    }
    let err = sqlx::query("INSERT INTO projects (environment_id, project_id, name, created_by, created_at) VALUES ($1, $2, 'x', $3, now())")
        .bind(a.env.as_uuid())
        .bind(ProjectId::new().as_uuid())
        .bind(a.owner.as_uuid())
        .execute(&mut conn)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("row-level security"), "{err}");
    // The role cannot switch RLS off for itself.
    let err = sqlx::query("SET row_security = off; SELECT count(*) FROM documents")
        .execute(&mut conn)
        .await;
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM documents")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert!(err.is_err() || n == 0);
}

/// Control T3: a row can never reference another tenant's row, even written by the
/// superuser, which bypasses RLS.
#[tokio::test]
async fn t3_composite_foreign_keys_refuse_cross_tenant_references() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let a = tenant(&store, "alpha").await;
    let b = tenant(&store, "beta").await;
    let mut admin = db.admin_conn().await;
    let err = sqlx::query(
        "INSERT INTO documents (environment_id, document_id, project_id, title, body, created_by, created_at, updated_at)
         VALUES ($1, $2, $3, 't', 'b', $4, now(), now())",
    )
    .bind(a.env.as_uuid())
    .bind(DocumentId::new().as_uuid())
    .bind(b.project.as_uuid())
    .bind(a.owner.as_uuid())
    .execute(&mut admin)
    .await
    .unwrap_err();
    assert!(err.to_string().contains("foreign key"), "{err}");
    // A grant for a member of A on a project of B.
    let err = sqlx::query(
        "INSERT INTO project_grants (environment_id, project_id, identity_id, role, created_at, updated_at)
         VALUES ($1, $2, $3, 'viewer', now(), now())",
    )
    .bind(b.env.as_uuid())
    .bind(b.project.as_uuid())
    .bind(a.owner.as_uuid())
    .execute(&mut admin)
    .await
    .unwrap_err();
    assert!(err.to_string().contains("foreign key"), "{err}");
}

/// Control L2: the audit log refuses UPDATE, DELETE and TRUNCATE, even from the superuser.
#[tokio::test]
async fn l2_audit_log_is_append_only() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let a = tenant(&store, "alpha").await;
    let mut tx = store
        .tenant_as_identity(a.env, a.owner, None, RequestMeta::default())
        .await
        .unwrap();
    tx.audit(portcullis_store::AuditEvent::success(
        "project.created",
        "project",
        a.project,
    ))
    .await
    .unwrap();
    tx.commit().await.unwrap();
    db.sequence(a.env.as_uuid()).await;
    let mut admin = db.admin_conn().await;
    for sql in [
        "UPDATE audit_log SET action = 'x.y'",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
    ] {
        let err = sqlx::query(sql).execute(&mut admin).await.unwrap_err();
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    let mut rt = db.runtime_conn().await;
    let err = sqlx::query("DELETE FROM audit_log")
        .execute(&mut rt)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("permission denied"), "{err}");
}

/// Control R1: exactly one owner per environment, enforced by the database.
#[tokio::test]
async fn r1_exactly_one_owner_is_enforced_by_the_database() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let a = tenant(&store, "alpha").await;
    let second = identity(&store, "second@alpha.test").await;
    let now = OffsetDateTime::now_utc();

    // A second owner.
    let mut tx = store
        .tenant_as_identity(a.env, a.owner, None, RequestMeta::default())
        .await
        .unwrap();
    // Through the runtime role a membership is only ever created by accepting an invitation
    // (or creating an environment), so the database refuses this before the owner index does.
    let err = members::add(&mut tx, second, RoleRef::Builtin(BuiltinRole::Owner), now)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::PolicyViolation), "{err:?}");
    drop(tx);
    // And even where no policy applies (the superuser), the index keeps the seat single.
    let mut admin = db.admin_conn().await;
    let err = sqlx::query(
        "INSERT INTO memberships (environment_id, identity_id, role, created_at, updated_at)
         VALUES ($1, $2, 'owner', now(), now())",
    )
    .bind(a.env.as_uuid())
    .bind(second.as_uuid())
    .execute(&mut admin)
    .await
    .unwrap_err();
    assert!(err.to_string().contains("memberships_one_owner"), "{err}");

    // No owner at all (demotion without transfer): refused at commit.
    let mut tx = store
        .tenant_as_identity(a.env, a.owner, None, RequestMeta::default())
        .await
        .unwrap();
    members::set_role(&mut tx, a.owner, RoleRef::Builtin(BuiltinRole::Admin), now)
        .await
        .unwrap();
    let err = tx.commit().await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");

    // Transfer: demote then promote in one transaction commits. (The second member is set up
    // directly: the runtime role creates memberships only through invitations.)
    sqlx::query(
        "INSERT INTO memberships (environment_id, identity_id, role, created_at, updated_at)
         VALUES ($1, $2, 'viewer', now(), now())",
    )
    .bind(a.env.as_uuid())
    .bind(second.as_uuid())
    .execute(&mut admin)
    .await
    .unwrap();
    let mut tx = store
        .tenant_as_identity(a.env, a.owner, None, RequestMeta::default())
        .await
        .unwrap();
    members::set_role(&mut tx, a.owner, RoleRef::Builtin(BuiltinRole::Admin), now)
        .await
        .unwrap();
    members::set_role(&mut tx, second, RoleRef::Builtin(BuiltinRole::Owner), now)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let owners: Vec<uuid::Uuid> = sqlx::query(
        "SELECT identity_id FROM memberships WHERE environment_id = $1 AND role = 'owner'",
    )
    .bind(a.env.as_uuid())
    .fetch_all(&mut admin)
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect();
    assert_eq!(owners, vec![second.as_uuid()]);
}

/// Control R8 (database layer): even inside the right tenant, a transaction whose caller
/// lacks documents.write cannot insert, and a project-scoped one cannot touch other projects.
#[tokio::test]
async fn r8_document_policies_check_permissions() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let a = tenant(&store, "alpha").await;
    let insert = "INSERT INTO documents (environment_id, document_id, project_id, title, body, created_by, created_at, updated_at)
                  VALUES ($1, $2, $3, 't', 'b', $4, now(), now())";
    let mut t = store
        .tenant_as_system(
            a.env,
            PermissionSet::of(&[Permission::DocumentsRead]),
            RequestMeta::default(),
        )
        .await
        .unwrap();
    let tx = t.conn_for_tests();
    let err = sqlx::query(insert)
        .bind(a.env.as_uuid())
        .bind(DocumentId::new().as_uuid())
        .bind(a.project.as_uuid())
        .bind(a.owner.as_uuid())
        .execute(&mut *tx)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("row-level security"), "{err}");
    drop(t);

    // Narrowed to another project: the document in `a.project` is invisible and untouchable.
    let other_project = ProjectId::new();
    let mut t = store
        .tenant_as_identity(a.env, a.owner, None, RequestMeta::default())
        .await
        .unwrap();
    projects::create(
        &mut t,
        other_project,
        "other",
        a.owner.as_uuid(),
        OffsetDateTime::now_utc(),
    )
    .await
    .unwrap();
    t.commit().await.unwrap();
    let mut t = store
        .tenant_as_system(
            a.env,
            PermissionSet::of(&[
                Permission::DocumentsRead,
                Permission::DocumentsWrite,
                Permission::DocumentsDelete,
            ]),
            RequestMeta::default(),
        )
        .await
        .unwrap();
    t.enter_project(other_project).await.unwrap();
    let tx = t.conn_for_tests();
    let deleted = sqlx::query("DELETE FROM documents")
        .execute(&mut *tx)
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(deleted, 0);
    let seen: i64 = sqlx::query_scalar("SELECT count(*) FROM documents")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(seen, 0);
}

/// Control T1: entering an environment requires a membership; a non-member gets NotFound.
#[tokio::test]
async fn t1_tenant_tx_requires_membership() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let a = tenant(&store, "alpha").await;
    let b = tenant(&store, "beta").await;
    let err = store
        .tenant_as_identity(b.env, a.owner, None, RequestMeta::default())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    // And inside A, B's project is not found.
    let mut tx = store
        .tenant_as_identity(a.env, a.owner, None, RequestMeta::default())
        .await
        .unwrap();
    let err = tx.enter_project(b.project).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    let err = documents::get(&mut tx, a.project, b.document)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
}

/// Control L1 (with L2, T2): the intelligence log and kernel trace are written through the
/// tenant transaction, visible only with audit.read inside their environment, and append-only.
#[tokio::test]
async fn l1_intelligence_log_and_kernel_trace() {
    use portcullis_store::streams::{IntelligenceEntry, KeySource, SealedContent, TraceStep};
    let db = TestDb::new().await;
    let store = db.store().await;
    let a = tenant(&store, "alpha").await;
    let b = tenant(&store, "beta").await;
    let mut tx = store
        .tenant_as_identity(a.env, a.owner, None, RequestMeta::default())
        .await
        .unwrap();
    let call = tx
        .log_intelligence(IntelligenceEntry {
            entry_id: uuid::Uuid::now_v7(),
            workflow_id: Some("inbox-triage".into()),
            model: "claude-fast".into(),
            provider: "anthropic".into(),
            key_source: KeySource::Byok,
            content: SealedContent {
                input: b"sealed prompt".to_vec(),
                output: Some(b"sealed output".to_vec()),
                key_version: 1,
            },
            input_tokens: 12,
            output_tokens: 3,
            cache_creation_tokens: 0,
            cache_read_tokens: 0,
            cost_micros: 42,
            tier: None,
            pricing_version: None,
            success: true,
            error: None,
            upstream_request_id: Some("req_upstream".into()),
        })
        .await
        .unwrap();
    let trace = uuid::Uuid::now_v7();
    for step in 1..=2 {
        tx.trace_step(TraceStep {
            trace_id: trace,
            step,
            workflow_id: Some("inbox-triage".into()),
            intelligence_entry_id: Some(call),
            kind: if step == 1 {
                "tool_call"
            } else {
                "tool_result"
            },
            tool: Some("send_email".into()),
            tool_use_id: Some("toolu_01".into()),
            arguments: Some(serde_json::json!({ "to": "x" })),
            result: None,
            rationale: Some("the user asked".into()),
        })
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    let mut admin = db.admin_conn().await;
    // Content in clear is refused by the database itself (migration 0018), whoever writes it.
    for (what, sql) in [
        ("a plaintext prompt", "INSERT INTO intelligence_log (environment_id, entry_id, occurred_at, actor_type, model, key_source, input,
                                input_tokens, output_tokens, cost_micros, success, provider, input_ciphertext, content_key_version)
            VALUES ($1, $2, now(), 'system', 'm', 'platform', '{\"prompt\":\"hi\"}', 0, 0, 0, true, 'anthropic', '\\x00', 1)"),
        ("a plaintext excerpt", "INSERT INTO intelligence_log (environment_id, entry_id, occurred_at, actor_type, model, key_source,
                                reasoning_excerpt, input_tokens, output_tokens, cost_micros, success, provider, input_ciphertext, content_key_version)
            VALUES ($1, $2, now(), 'system', 'm', 'platform', 'why', 0, 0, 0, true, 'anthropic', '\\x00', 1)"),
        ("no sealed prompt", "INSERT INTO intelligence_log (environment_id, entry_id, occurred_at, actor_type, model, key_source,
                                input_tokens, output_tokens, cost_micros, success, provider)
            VALUES ($1, $2, now(), 'system', 'm', 'platform', 0, 0, 0, true, 'anthropic')"),
    ] {
        let err = sqlx::query(sql)
            .bind(a.env.as_uuid())
            .bind(uuid::Uuid::now_v7())
            .execute(&mut admin)
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("intelligence_log_content_sealed"),
            "{what}: {err}"
        );
    }
    for sql in [
        "UPDATE intelligence_log SET success = false",
        "DELETE FROM kernel_trace",
        "TRUNCATE intelligence_log",
    ] {
        let err = sqlx::query(sql).execute(&mut admin).await.unwrap_err();
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    // Another tenant, and a member without audit.read, see nothing.
    let mut other = store
        .tenant_as_identity(b.env, b.owner, None, RequestMeta::default())
        .await
        .unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM intelligence_log")
        .fetch_one(other.conn_for_tests())
        .await
        .unwrap();
    assert_eq!(n, 0);
    drop(other);
    let mut t = store
        .tenant_as_system(
            a.env,
            PermissionSet::of(&[Permission::DocumentsRead]),
            RequestMeta::default(),
        )
        .await
        .unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM kernel_trace")
        .fetch_one(t.conn_for_tests())
        .await
        .unwrap();
    assert_eq!(n, 0, "kernel trace needs audit.read");
}

/// Control L3 for the other two streams: every intelligence-log and kernel-trace row is
/// committed to by a chained audit entry, so an edited row, a deleted one and one slipped in
/// are each found, even when a superuser bypasses the append-only triggers.
#[tokio::test]
async fn l3_stream_rows_are_committed_in_the_audit_chain() {
    // Also M3/I2: the tier and pricing version of a row are under its commitment.
    use portcullis_store::streams::{self, IntelligenceEntry, KeySource, SealedContent, TraceStep};
    let db = TestDb::new().await;
    let store = db.store().await;
    let a = tenant(&store, "alpha").await;
    let mut tx = store
        .tenant_as_identity(a.env, a.owner, None, RequestMeta::default())
        .await
        .unwrap();
    let mut calls = vec![];
    for i in 0..3 {
        calls.push(
            tx.log_intelligence(IntelligenceEntry {
                entry_id: uuid::Uuid::now_v7(),
                workflow_id: Some("triage".into()),
                model: "claude-fast".into(),
                provider: "anthropic".into(),
                key_source: KeySource::Platform,
                content: SealedContent {
                    input: format!("p{i}").into_bytes(),
                    output: Some(b"ok\0".to_vec()),
                    key_version: 1,
                },
                input_tokens: 10,
                output_tokens: 2,
                cache_creation_tokens: 3,
                cache_read_tokens: 4,
                cost_micros: 7,
                // Migration 0022: row 0 names a tier and a pricing version, the others not.
                tier: (i == 0).then_some("fast"),
                pricing_version: (i == 0).then(|| "anthropic-2025-11-24".to_owned()),
                success: true,
                error: Some("upstream\u{0} said".into()),
                upstream_request_id: Some("req_1".into()),
            })
            .await
            .unwrap(),
        );
    }
    let trace = uuid::Uuid::now_v7();
    for step in 1..=3 {
        tx.trace_step(TraceStep {
            trace_id: trace,
            step,
            workflow_id: None,
            intelligence_entry_id: Some(calls[0]),
            kind: "decision",
            tool: None,
            tool_use_id: None,
            arguments: None,
            result: Some(serde_json::json!({ "n": step })),
            rationale: Some("because".into()),
        })
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    // The commitments are audit entries: checked once sequenced, as `audit verify` does.
    store.sequence(a.env.as_uuid()).await.unwrap();
    let mut tx = store
        .tenant_as_identity(a.env, a.owner, None, RequestMeta::default())
        .await
        .unwrap();
    let report = streams::check(&mut tx).await.unwrap();
    assert_eq!((report.intelligence_rows, report.trace_rows), (3, 3));
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    tx.commit().await.unwrap();

    let mut admin = db.admin_conn().await;
    for sql in [
        "ALTER TABLE intelligence_log DISABLE TRIGGER USER",
        "ALTER TABLE kernel_trace DISABLE TRIGGER USER",
    ] {
        sqlx::query(sql).execute(&mut admin).await.unwrap();
    }
    sqlx::query("UPDATE intelligence_log SET output_ciphertext = '\\x00' WHERE entry_id = $1")
        .bind(calls[1])
        .execute(&mut admin)
        .await
        .unwrap();
    // M3, I2: a row's tier and pricing version are committed too, when set and when not.
    sqlx::query("UPDATE intelligence_log SET pricing_version = 'cheaper-1' WHERE entry_id = $1")
        .bind(calls[0])
        .execute(&mut admin)
        .await
        .unwrap();
    sqlx::query("UPDATE intelligence_log SET tier = 'deep' WHERE entry_id = $1")
        .bind(calls[2])
        .execute(&mut admin)
        .await
        .unwrap();
    sqlx::query("DELETE FROM kernel_trace WHERE step = 2")
        .execute(&mut admin)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO kernel_trace (environment_id, trace_id, step, occurred_at, kind)
         SELECT environment_id, trace_id, 9, occurred_at, 'note' FROM kernel_trace WHERE step = 1",
    )
    .execute(&mut admin)
    .await
    .unwrap();
    let mut tx = store
        .tenant_as_identity(a.env, a.owner, None, RequestMeta::default())
        .await
        .unwrap();
    let report = streams::check(&mut tx).await.unwrap();
    let found: Vec<(&str, String, &str)> = report
        .problems
        .iter()
        .map(|p| (p.stream, p.row.clone(), p.kind))
        .collect();
    assert_eq!(
        found,
        vec![
            ("intelligence_log", calls[0].to_string(), "changed"),
            ("intelligence_log", calls[1].to_string(), "changed"),
            ("intelligence_log", calls[2].to_string(), "changed"),
            ("kernel_trace", format!("{trace}:9"), "uncommitted"),
            ("kernel_trace", format!("{trace}:2"), "missing"),
        ]
    );
}
