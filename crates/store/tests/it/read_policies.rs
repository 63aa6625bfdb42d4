//! Reads evaluate only read policies (controls T1, R8; migration 0011).
//!
//! Every policy subquery that reads the signed context is an InitPlan calling
//! `portcullis_guard.context()`, which re-verifies an HMAC. A `FOR ALL` write policy is also a
//! read policy, so its permission checks used to run in every SELECT of its table. These tests
//! pin that no policy applies to all commands and that the plan of a SELECT run as the runtime
//! role, inside a real request's context, verifies the context exactly as often as the SELECT
//! policies of the tables it reads ask for: a write policy evaluated by a read is a finding.

use std::collections::BTreeMap;

use portcullis_store::catalog::{GLOBAL_TABLES, TENANT_TABLES};
use portcullis_store::queries::{documents, Page};
use portcullis_store::testing::TestDb;
use portcullis_store::RequestMeta;
use sqlx::PgConnection;

use crate::support::tenant;

/// Still `FOR ALL`: the schema owner's policy on the signing keys (the operator CLI), which is
/// not on the path of a request. The audit sequencer's migration (0014) replaced the runtime
/// role's last one, `audit_heads_scope`.
const STILL_FOR_ALL: &[&str] = &["audit_signing_keys_operator"];

/// The accessors a policy calls without arguments; each one inlines exactly one
/// `portcullis_guard.context()` (so does `has_permission(...)`, counted apart).
const ACCESSORS: &[&str] = &[
    "environment_id",
    "identity_id",
    "project_id",
    "token_hash",
    "login_email_index",
    "login_email",
    "purpose",
    "actor_type",
    "actor_id",
    "subject_id",
    "invitation_id",
];

fn tables() -> Vec<&'static str> {
    TENANT_TABLES.iter().chain(GLOBAL_TABLES).copied().collect()
}

/// Context lookups written in a policy expression (as `pg_policies` prints it).
fn accessor_calls(expr: &str) -> usize {
    ACCESSORS
        .iter()
        .map(|a| expr.matches(&format!("portcullis.{a}()")).count())
        .sum::<usize>()
        + expr.matches("portcullis.has_permission('").count()
        + 2 * expr.matches("portcullis.in_project_scope(").count()
}

/// Tables a policy expression reads (its subqueries get their own policies applied).
fn tables_read(expr: &str) -> Vec<String> {
    expr.split("FROM ")
        .skip(1)
        .filter_map(|rest| {
            rest.split(|c: char| !c.is_alphanumeric() && c != '_')
                .next()
        })
        .map(str::to_owned)
        .collect()
}

/// The context lookups a SELECT of `table` needs: those of the runtime role's SELECT policies
/// on it, and of the tables those policies read.
fn expected_lookups(select_quals: &BTreeMap<String, Vec<String>>, table: &str) -> usize {
    select_quals
        .get(table)
        .map(|quals| {
            quals
                .iter()
                .map(|q| {
                    accessor_calls(q)
                        + tables_read(q)
                            .iter()
                            .map(|t| expected_lookups(select_quals, t))
                            .sum::<usize>()
                })
                .sum()
        })
        .unwrap_or(0)
}

/// The runtime role's SELECT policies' USING expressions, by table. A `FOR ALL` policy counts
/// only if it is one of those left for the audit migration, so any other read of a write
/// policy shows as more lookups in a plan than its table's SELECT policies need.
async fn select_quals(conn: &mut PgConnection) -> BTreeMap<String, Vec<String>> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT tablename::text, qual FROM pg_policies
          WHERE schemaname = 'public' AND 'portcullis_app' = ANY (roles)
            AND (cmd = 'SELECT' OR (cmd = 'ALL' AND policyname = ANY ($1)))",
    )
    .bind(STILL_FOR_ALL)
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    let mut quals: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (table, qual) in rows {
        quals.entry(table).or_default().push(qual);
    }
    quals
}

/// `portcullis_guard.context()` calls in the plan of `sql` (with `binds` as uuid parameters).
async fn plan_lookups(conn: &mut PgConnection, sql: &str, binds: &[uuid::Uuid]) -> (usize, String) {
    let explain = ["EXPLAIN (VERBOSE, COSTS OFF) ", sql].concat();
    let mut q = sqlx::query_scalar::<_, String>(&explain);
    for b in binds {
        q = q.bind(*b);
    }
    let plan = q.fetch_all(&mut *conn).await.unwrap().join("\n");
    (plan.matches("portcullis_guard.context()").count(), plan)
}

/// Control T1/R8: no policy on a tenant or global table applies to all commands, so no write
/// policy is ever ORed (or, restrictive, ANDed) into a read.
#[tokio::test]
async fn t1_r8_no_policy_applies_to_all_commands() {
    let db = TestDb::new().await;
    let mut admin = db.admin_conn().await;
    let all: Vec<(String, String)> = sqlx::query_as(
        "SELECT c.relname::text, p.polname::text FROM pg_policy p
           JOIN pg_class c ON c.oid = p.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = 'public' AND p.polcmd = '*' ORDER BY 1, 2",
    )
    .fetch_all(&mut admin)
    .await
    .unwrap();
    let tables = tables();
    let found: Vec<_> = all
        .iter()
        .filter(|(t, p)| tables.contains(&t.as_str()) && !STILL_FOR_ALL.contains(&p.as_str()))
        .collect();
    assert!(found.is_empty(), "FOR ALL policies: {found:?}");
}

/// Control T1/R8: inside a request's context (a member, entered into a project), a SELECT of
/// any tenant or global table verifies the context exactly as often as that table's SELECT
/// policies ask, and so do the statements of a document GET: the membership lookup, the
/// project entry, the document and the 50-item list. Prints the counts.
#[tokio::test]
async fn t1_r8_a_select_evaluates_only_select_policies() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let t = tenant(&store, "lean").await;
    let quals = select_quals(&mut db.admin_conn().await).await;

    let mut tx = store
        .tenant_as_identity(t.env, t.owner, None, RequestMeta::default())
        .await
        .unwrap();
    tx.enter_project(t.project).await.unwrap();
    let conn = tx.conn_for_tests();

    let mut wrong = vec![];
    // audit_pending: the runtime role may only insert (t2_no_context_fails_closed).
    for table in tables().into_iter().filter(|t| *t != "audit_pending") {
        // No column named: the runtime role holds only column privileges on some tables.
        let sql = ["SELECT 1 FROM ", table].concat();
        let (found, plan) = plan_lookups(conn, &sql, &[]).await;
        let expected = expected_lookups(&quals, table);
        eprintln!("SELECT FROM {table}: {found} context lookups (SELECT policies: {expected})");
        if found != expected {
            wrong.push(format!(
                "{table}: {found} lookups, its SELECT policies need {expected}\n{plan}"
            ));
        }
    }

    let (env, project, document) = (t.env.as_uuid(), t.project.as_uuid(), t.document.as_uuid());
    let owner = t.owner.as_uuid();
    // The read path's statements (crates/store/src/tx.rs, queries/documents.rs), with the
    // tables each reads.
    let statements: &[(&str, &str, &[&str], &[uuid::Uuid])] = &[
        (
            "membership lookup",
            "SELECT m.role, m.custom_role_id, r.permissions AS custom_permissions
               FROM memberships m
               LEFT JOIN custom_roles r ON r.environment_id = m.environment_id AND r.role_id = m.custom_role_id
              WHERE m.environment_id = $1 AND m.identity_id = $2",
            &["memberships", "custom_roles"],
            &[env, owner],
        ),
        (
            "project entry",
            "SELECT g.role, g.custom_role_id, r.permissions AS custom_permissions
               FROM projects p
               LEFT JOIN project_grants g
                 ON g.environment_id = p.environment_id AND g.project_id = p.project_id AND g.identity_id = $3
               LEFT JOIN custom_roles r ON r.environment_id = g.environment_id AND r.role_id = g.custom_role_id
              WHERE p.environment_id = $1 AND p.project_id = $2",
            &["projects", "project_grants", "custom_roles"],
            &[env, project, owner],
        ),
        (
            "document GET",
            "SELECT document_id, project_id, title, body, body_ciphertext, version, created_by, created_at, updated_at
               FROM documents WHERE environment_id = $1 AND project_id = $2 AND document_id = $3",
            &["documents"],
            &[env, project, document],
        ),
        (
            "50-item list",
            "SELECT document_id, project_id, title, body, body_ciphertext, version, created_by, created_at, updated_at
               FROM documents
              WHERE environment_id = $1 AND project_id = $2 AND ($3::uuid IS NULL OR document_id > $3)
              ORDER BY document_id LIMIT 51",
            &["documents"],
            &[env, project, uuid::Uuid::nil()],
        ),
    ];
    let mut total = 0;
    for (name, sql, read, binds) in statements {
        let (found, plan) = plan_lookups(conn, sql, binds).await;
        let expected: usize = read.iter().map(|t| expected_lookups(&quals, t)).sum();
        eprintln!("{name}: {found} context lookups (SELECT policies: {expected})");
        total += found;
        if found != expected {
            wrong.push(format!(
                "{name}: {found} lookups, its SELECT policies need {expected}\n{plan}"
            ));
        }
    }
    eprintln!("read path statements above: {total} context lookups");
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
}

/// Calls of the guard's functions so far in this transaction (`track_functions` is on).
async fn guard_calls(conn: &mut PgConnection) -> (i64, i64) {
    sqlx::query_as(
        "SELECT COALESCE(sum(calls) FILTER (WHERE funcname = 'context'), 0)::bigint,
                COALESCE(sum(calls) FILTER (WHERE funcname = 'enter'), 0)::bigint
           FROM pg_stat_xact_user_functions WHERE schemaname = 'portcullis_guard'",
    )
    .fetch_one(&mut *conn)
    .await
    .unwrap()
}

/// Control T1/R8, measured rather than planned: PostgreSQL runs an InitPlan only when its
/// value is first needed, so a request verifies the context at most as often as its plans
/// say. Counts (printed) the context verifications and entries a document GET's tenant
/// transaction executes: membership, project, document, then a 50-item list in the same
/// transaction. Each read returns what it should.
#[tokio::test]
async fn t1_r8_read_path_context_verifications_executed() {
    let db = TestDb::new().await;
    sqlx::raw_sql(
        "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET track_functions = ''pl''', current_database()); END $$",
    )
    .execute(&mut db.admin_conn().await)
    .await
    .unwrap();
    let store = db.store().await;
    let t = tenant(&store, "counted").await;

    let mut tx = store
        .tenant_as_identity(t.env, t.owner, None, RequestMeta::default())
        .await
        .unwrap();
    let member = guard_calls(tx.conn_for_tests()).await;
    tx.enter_project(t.project).await.unwrap();
    let project = guard_calls(tx.conn_for_tests()).await;
    let doc = documents::get(&mut tx, t.project, t.document)
        .await
        .unwrap();
    assert_eq!(doc.document_id, t.document.as_uuid());
    let got = guard_calls(tx.conn_for_tests()).await;
    let page = documents::list(&mut tx, t.project, Page::new(None, Some(50)))
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
    let listed = guard_calls(tx.conn_for_tests()).await;
    eprintln!(
        "executed (context checks, enters): membership {member:?}, project entry {:?}, document GET {:?}, 50-item list {:?}",
        (project.0 - member.0, project.1 - member.1),
        (got.0 - project.0, got.1 - project.1),
        (listed.0 - got.0, listed.1 - got.1),
    );
    // Nothing runs more often than planned (see t1_r8_a_select_evaluates_only_select_policies).
    assert!(
        got.0 - project.0 <= 3 && listed.0 - got.0 <= 3,
        "{got:?} {listed:?}"
    );
}
