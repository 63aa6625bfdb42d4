//! Boot self-check (control T7): the live schema is compared with what this build expects,
//! and the server refuses to start on any finding. Runs as the runtime role, so it checks the
//! role requests really use.

use sqlx::PgConnection;

use crate::bootstrap::{
    CHECKPOINTER_ROLE, GUARD_ROLE, RUNTIME_ROLE, SCHEDULER_ROLE, SEQUENCER_ROLE,
};
use crate::StoreError;

/// Tables whose rows belong to one environment; primary keys start with `environment_id`.
pub const TENANT_TABLES: &[&str] = &[
    "environments",
    "custom_roles",
    "memberships",
    "projects",
    "project_grants",
    "documents",
    "api_tokens",
    "invitations",
    "audit_log",
    "audit_pending",
    "audit_heads",
    "audit_checkpoints",
    "audit_subtrees",
    "audit_checkpoint_anchors",
    "intelligence_log",
    "kernel_trace",
    "environment_keys",
    "data_keys",
    "integrations",
    "model_keys",
    "key_rotation_jobs",
    "subject_keys",
];

/// Tables that belong to no single environment. Still RLS-forced, with identity- or
/// token-scoped policies.
pub const GLOBAL_TABLES: &[&str] = &[
    "installation",
    "identities",
    "sessions",
    "audit_signing_keys",
    "platform_keys",
    "operator_tokens",
];

/// Tables the runtime role must never reach at all.
const INTERNAL_TABLES: &[&str] = &["_sqlx_migrations"];

/// Every policy the schema should have: (table, policy, command, permissive). Commands use
/// pg_policy.polcmd letters: r select, a insert, w update, d delete, * all. A policy that is
/// not listed is a finding too: an extra permissive policy widens access. Policies apply to
/// the runtime role only, except those in [`OWNER_POLICIES`]; the background roles' policies
/// are listed with each role in [`BACKGROUND_ROLES`], the guard's in [`GUARD_POLICIES`].
pub const EXPECTED_POLICIES: &[(&str, &str, char, bool)] = &[
    ("installation", "installation_read", 'r', true),
    ("installation", "installation_setup", 'w', true),
    ("identities", "identities_visible", 'r', true),
    ("identities", "identities_insert", 'a', true),
    ("identities", "identities_update", 'w', true),
    ("sessions", "sessions_read", 'r', true),
    ("sessions", "sessions_create", 'a', true),
    ("sessions", "sessions_update", 'w', true),
    ("environments", "environments_member", 'r', true),
    ("environments", "environments_insert", 'a', true),
    ("environments", "environments_update", 'w', true),
    ("environments", "environments_delete", 'd', true),
    ("memberships", "memberships_read", 'r', true),
    ("memberships", "memberships_create", 'a', true),
    ("memberships", "memberships_change", 'w', true),
    ("memberships", "memberships_remove", 'd', true),
    ("memberships", "memberships_own", 'r', true),
    ("custom_roles", "custom_roles_read", 'r', true),
    ("custom_roles", "custom_roles_create", 'a', true),
    ("custom_roles", "custom_roles_update", 'w', true),
    ("custom_roles", "custom_roles_delete", 'd', true),
    ("projects", "projects_read", 'r', true),
    ("projects", "projects_create", 'a', true),
    ("projects", "projects_update", 'w', true),
    ("projects", "projects_delete", 'd', true),
    ("project_grants", "project_grants_read", 'r', true),
    ("project_grants", "project_grants_create", 'a', true),
    ("project_grants", "project_grants_update", 'w', true),
    ("project_grants", "project_grants_delete", 'd', true),
    (
        "project_grants",
        "project_grants_environment_delete",
        'd',
        true,
    ),
    ("documents", "documents_tenant_read", 'r', true),
    ("documents", "documents_tenant_insert", 'a', true),
    ("documents", "documents_tenant_update", 'w', true),
    ("documents", "documents_tenant_delete", 'd', true),
    ("documents", "documents_read_permission", 'r', false),
    ("documents", "documents_insert_permission", 'a', false),
    ("documents", "documents_update_permission", 'w', false),
    ("documents", "documents_delete_permission", 'd', false),
    ("api_tokens", "api_tokens_read", 'r', true),
    ("api_tokens", "api_tokens_create", 'a', true),
    ("api_tokens", "api_tokens_update", 'w', true),
    ("api_tokens", "api_tokens_presented", 'r', true),
    ("invitations", "invitations_read", 'r', true),
    ("invitations", "invitations_create", 'a', true),
    ("invitations", "invitations_update", 'w', true),
    ("invitations", "invitations_presented", 'r', true),
    ("audit_pending", "audit_pending_submit", 'a', true),
    ("audit_pending", "audit_pending_guard", 'r', true),
    ("audit_log", "audit_log_read", 'r', true),
    ("audit_log", "audit_log_own_platform", 'r', true),
    ("audit_log", "audit_log_operator_read", 'r', true),
    ("operator_tokens", "operator_tokens_presented", 'r', true),
    ("operator_tokens", "operator_tokens_used", 'w', true),
    ("operator_tokens", "operator_tokens_operator", 'r', true),
    (
        "operator_tokens",
        "operator_tokens_operator_insert",
        'a',
        true,
    ),
    (
        "operator_tokens",
        "operator_tokens_operator_revoke",
        'w',
        true,
    ),
    ("audit_pending", "audit_pending_operator_submit", 'a', true),
    ("audit_heads", "audit_heads_read", 'r', true),
    ("audit_heads", "audit_heads_operator", 'r', true),
    ("audit_checkpoints", "audit_checkpoints_read", 'r', true),
    ("audit_checkpoints", "audit_checkpoints_cut", 'a', true),
    ("audit_checkpoints", "audit_checkpoints_operator", 'r', true),
    ("audit_subtrees", "audit_subtrees_append", 'a', true),
    ("audit_subtrees", "audit_subtrees_read", 'r', true),
    ("audit_log", "audit_log_guard", 'r', true),
    ("audit_heads", "audit_heads_guard", 'r', true),
    ("audit_subtrees", "audit_subtrees_guard", 'r', true),
    (
        "audit_checkpoint_anchors",
        "audit_checkpoint_anchors_read",
        'r',
        true,
    ),
    (
        "audit_checkpoint_anchors",
        "audit_checkpoint_anchors_record",
        'a',
        true,
    ),
    (
        "audit_checkpoint_anchors",
        "audit_checkpoint_anchors_operator",
        'r',
        true,
    ),
    ("audit_signing_keys", "audit_signing_keys_public", 'r', true),
    ("intelligence_log", "intelligence_log_append", 'a', true),
    ("intelligence_log", "intelligence_log_read", 'r', true),
    ("kernel_trace", "kernel_trace_append", 'a', true),
    ("kernel_trace", "kernel_trace_read", 'r', true),
    (
        "audit_signing_keys",
        "audit_signing_keys_operator",
        '*',
        true,
    ),
    (
        "environment_keys",
        "environment_keys_tenant_read",
        'r',
        true,
    ),
    (
        "environment_keys",
        "environment_keys_tenant_insert",
        'a',
        true,
    ),
    (
        "environment_keys",
        "environment_keys_tenant_update",
        'w',
        true,
    ),
    (
        "environment_keys",
        "environment_keys_tenant_delete",
        'd',
        true,
    ),
    ("environment_keys", "environment_keys_operator", 'r', true),
    ("environment_keys", "environment_keys_first", 'a', false),
    ("environment_keys", "environment_keys_manage", 'w', false),
    ("environment_keys", "environment_keys_remove", 'd', false),
    ("data_keys", "data_keys_tenant_read", 'r', true),
    ("data_keys", "data_keys_tenant_insert", 'a', true),
    ("data_keys", "data_keys_tenant_update", 'w', true),
    ("data_keys", "data_keys_tenant_delete", 'd', true),
    ("data_keys", "data_keys_first", 'a', false),
    ("data_keys", "data_keys_manage", 'w', false),
    ("data_keys", "data_keys_remove", 'd', false),
    ("integrations", "integrations_tenant_read", 'r', true),
    ("integrations", "integrations_tenant_insert", 'a', true),
    ("integrations", "integrations_tenant_update", 'w', true),
    ("integrations", "integrations_tenant_delete", 'd', true),
    ("integrations", "integrations_permission_read", 'r', false),
    ("integrations", "integrations_permission_insert", 'a', false),
    ("integrations", "integrations_permission_update", 'w', false),
    ("integrations", "integrations_permission_delete", 'd', false),
    ("model_keys", "model_keys_tenant_read", 'r', true),
    ("model_keys", "model_keys_tenant_insert", 'a', true),
    ("model_keys", "model_keys_tenant_update", 'w', true),
    ("model_keys", "model_keys_tenant_delete", 'd', true),
    ("model_keys", "model_keys_permission_read", 'r', false),
    ("model_keys", "model_keys_permission_insert", 'a', false),
    ("model_keys", "model_keys_permission_update", 'w', false),
    ("model_keys", "model_keys_permission_delete", 'd', false),
    (
        "key_rotation_jobs",
        "key_rotation_jobs_tenant_read",
        'r',
        true,
    ),
    (
        "key_rotation_jobs",
        "key_rotation_jobs_tenant_insert",
        'a',
        true,
    ),
    (
        "key_rotation_jobs",
        "key_rotation_jobs_tenant_update",
        'w',
        true,
    ),
    (
        "key_rotation_jobs",
        "key_rotation_jobs_tenant_delete",
        'd',
        true,
    ),
    ("key_rotation_jobs", "key_rotation_jobs_operator", 'r', true),
    (
        "key_rotation_jobs",
        "key_rotation_jobs_manage_read",
        'r',
        false,
    ),
    (
        "key_rotation_jobs",
        "key_rotation_jobs_manage_insert",
        'a',
        false,
    ),
    (
        "key_rotation_jobs",
        "key_rotation_jobs_manage_update",
        'w',
        false,
    ),
    (
        "key_rotation_jobs",
        "key_rotation_jobs_manage_delete",
        'd',
        false,
    ),
    ("subject_keys", "subject_keys_scope_read", 'r', true),
    ("subject_keys", "subject_keys_scope_insert", 'a', true),
    ("subject_keys", "subject_keys_scope_delete", 'd', true),
    ("subject_keys", "subject_keys_erase", 'd', false),
    ("subject_keys", "subject_keys_own_subject", 'a', false),
    ("subject_keys", "subject_keys_platform_own", 'r', false),
    ("subject_keys", "subject_keys_operator", 'r', true),
    ("subject_keys", "subject_keys_reseal", 'w', true),
    ("platform_keys", "platform_keys_read", 'r', true),
    ("platform_keys", "platform_keys_create", 'a', true),
    ("platform_keys", "platform_keys_operator", 'r', true),
    ("platform_keys", "platform_keys_operator_insert", 'a', true),
    ("platform_keys", "platform_keys_operator_update", 'w', true),
    ("platform_keys", "platform_keys_operator_delete", 'd', true),
    ("identities", "identities_operator", 'r', true),
    ("identities", "identities_seal_legacy", 'w', true),
    ("invitations", "invitations_operator", 'r', true),
    ("invitations", "invitations_seal_legacy", 'w', true),
    ("sessions", "sessions_operator", 'r', true),
];

/// Policies for the schema owner (operator CLI, boot-time steps): key metadata and wrapped keys,
/// never customer content; identities and invitations are readable (sealed) so that the
/// operator can seal rows an earlier version wrote in clear, and `*_seal_legacy` lets it
/// update only such rows, only to clear the plaintext; operator tokens are created, listed
/// and revoked only by the owner, which submits exactly their two platform audit entries in the
/// same transaction (migration 0016). They must name the table's owner and nobody else.
pub const OWNER_POLICIES: &[&str] = &[
    "environment_keys_operator",
    "key_rotation_jobs_operator",
    "audit_heads_operator",
    "audit_checkpoints_operator",
    "audit_checkpoint_anchors_operator",
    "audit_signing_keys_operator",
    "platform_keys_operator",
    "platform_keys_operator_insert",
    "platform_keys_operator_update",
    "platform_keys_operator_delete",
    "identities_operator",
    "identities_seal_legacy",
    "invitations_operator",
    "invitations_seal_legacy",
    "sessions_operator",
    "subject_keys_operator",
    "subject_keys_reseal",
    "operator_tokens_operator",
    "operator_tokens_operator_insert",
    "operator_tokens_operator_revoke",
    "audit_pending_operator_submit",
];

/// What a role of the serving process's background passes may do, exactly (T7).
#[derive(Clone, Copy, Debug)]
pub struct BackgroundRole {
    pub role: &'static str,
    /// Every privilege it holds on a table, view or sequence, in any schema: `PRIVILEGE
    /// schema.table` for the whole table, `PRIVILEGE schema.table(a, b)` for column grants
    /// (columns in byte order). Anything else it holds is a finding.
    pub privileges: &'static [&'static str],
    /// Its policies: (table, policy, command, permissive), each naming this role only.
    pub policies: &'static [(&'static str, &'static str, char, bool)],
}

/// The background roles and what each needs (migration `20261202000009_background_roles`).
/// They find work across environments; the work itself runs as the runtime role inside each
/// environment's transaction.
pub const BACKGROUND_ROLES: &[BackgroundRole] = &[
    BackgroundRole {
        role: CHECKPOINTER_ROLE,
        privileges: &[
            "SELECT public.audit_heads(environment_id, seq)",
            "SELECT public.audit_checkpoints(environment_id, issued_at, signed, tree_size)",
            "SELECT public.audit_checkpoint_anchors(environment_id, tree_size)",
            "SELECT public.audit_signing_keys(created_at, kek, key_id, public_key, retired_at, wrapped_seed)",
            "INSERT public.audit_signing_keys(created_at, kek, key_id, public_key, wrapped_seed)",
            "UPDATE public.audit_signing_keys(retired_at)",
        ],
        policies: &[
            ("audit_heads", "audit_heads_checkpointer", 'r', true),
            ("audit_checkpoints", "audit_checkpoints_checkpointer", 'r', true),
            (
                "audit_checkpoint_anchors",
                "audit_checkpoint_anchors_checkpointer",
                'r',
                true,
            ),
            (
                "audit_signing_keys",
                "audit_signing_keys_checkpointer_read",
                'r',
                true,
            ),
            (
                "audit_signing_keys",
                "audit_signing_keys_checkpointer_add",
                'a',
                true,
            ),
            (
                "audit_signing_keys",
                "audit_signing_keys_checkpointer_retire",
                'w',
                true,
            ),
        ],
    },
    BackgroundRole {
        role: SCHEDULER_ROLE,
        privileges: &[
            "SELECT public.key_rotation_jobs(environment_id, finished_at, job_id, started_at)",
            "SELECT public.environment_keys(environment_id, rotate_after_days, rotated_at)",
        ],
        policies: &[
            ("key_rotation_jobs", "key_rotation_jobs_scheduler", 'r', true),
            ("environment_keys", "environment_keys_scheduler", 'r', true),
        ],
    },
    // Migration 20261202000014_audit_sequencer: the only writer of the chain.
    BackgroundRole {
        role: SEQUENCER_ROLE,
        privileges: &[
            "DELETE public.audit_pending",
            "INSERT public.audit_heads",
            "INSERT public.audit_log",
            "INSERT public.audit_subtrees",
            "SELECT public.audit_heads",
            "SELECT public.audit_pending",
            "UPDATE public.audit_heads",
        ],
        policies: &[
            ("audit_pending", "audit_pending_sequencer_read", 'r', true),
            ("audit_pending", "audit_pending_sequencer_done", 'd', true),
            ("audit_log", "audit_log_sequencer", 'a', true),
            ("audit_heads", "audit_heads_sequencer_read", 'r', true),
            ("audit_heads", "audit_heads_sequencer_create", 'a', true),
            ("audit_heads", "audit_heads_sequencer_advance", 'w', true),
            ("audit_subtrees", "audit_subtrees_sequencer", 'a', true),
        ],
    },
];

fn background_policy(table: &str, name: &str) -> bool {
    BACKGROUND_ROLES
        .iter()
        .flat_map(|r| r.policies)
        .any(|(t, n, _, _)| *t == table && *n == name)
}

/// Policies for the guard role: what the audit append guards (SECURITY DEFINER trigger
/// functions owned by it) read, only from inside a trigger.
pub const GUARD_POLICIES: &[&str] = &[
    "audit_pending_guard",
    "audit_log_guard",
    "audit_heads_guard",
    "audit_subtrees_guard",
];

/// Tables the database itself keeps append-only (L2): refused UPDATE/DELETE/TRUNCATE by
/// trigger, and the runtime role holds no such privilege. `audit_signing_keys`' trigger lets
/// one change through, retiring a key, and checks a new key's id (migration 0010).
pub const APPEND_ONLY_TABLES: &[&str] = &[
    "audit_log",
    "audit_signing_keys",
    "audit_checkpoints",
    "audit_subtrees",
    "audit_checkpoint_anchors",
    "intelligence_log",
    "kernel_trace",
];

/// SECURITY DEFINER functions this build ships, all owned by the guard role: the two that check
/// the signed context, and the audit append guards (trigger functions, which cannot be called
/// directly; migration 20261202000008). Anything else is a finding.
pub const ALLOWED_SECURITY_DEFINER: &[&str] = &[
    "portcullis.audit_heads_guard_update",
    "portcullis.audit_log_guard",
    "portcullis.audit_pending_guard_delete",
    "portcullis.audit_subtrees_guard",
    "portcullis_guard.context",
    "portcullis_guard.enter",
];

/// The accessors of the signed context: plain SQL without a SET clause so that PostgreSQL
/// inlines them into the policies (a function with a fixed `search_path` is planned again in
/// every statement). Exempt from the `search_path` rule only while they stay inlinable SQL
/// over `portcullis_guard.context()` and run as their caller.
pub const INLINED_ACCESSORS: &[&str] = &[
    "portcullis.environment_id",
    "portcullis.identity_id",
    "portcullis.project_id",
    "portcullis.token_hash",
    "portcullis.login_email_index",
    "portcullis.login_email",
    "portcullis.has_permission",
    "portcullis.purpose",
    "portcullis.actor_type",
    "portcullis.actor_id",
    "portcullis.subject_id",
    "portcullis.invitation_id",
];

/// Schemas whose functions must all carry a fixed `search_path`.
macro_rules! function_schemas {
    () => {
        "('public', 'portcullis', 'portcullis_guard')"
    };
}

/// One line of the self-check.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Check {
    pub control: &'static str,
    pub name: String,
    pub passed: bool,
    /// What was found when it failed.
    pub detail: String,
}

fn check(control: &'static str, name: impl Into<String>, findings: Vec<String>) -> Check {
    Check {
        control,
        name: name.into(),
        passed: findings.is_empty(),
        detail: findings.join("; "),
    }
}

// A macro rather than a const so that `concat!` can splice it into static SQL.
macro_rules! schemas {
    () => {
        "('public', 'portcullis')"
    };
}

/// Runs every check on `conn`, which must be a runtime-role connection.
pub async fn run(conn: &mut PgConnection) -> Result<Vec<Check>, StoreError> {
    let mut out = Vec::new();

    let user: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&mut *conn)
        .await?;
    out.push(check(
        "T2",
        "requests run as the runtime role",
        if user == RUNTIME_ROLE {
            vec![]
        } else {
            vec![format!("connected as {user}, expected {RUNTIME_ROLE}")]
        },
    ));

    let (superuser, bypass, createrole, createdb): (bool, bool, bool, bool) = sqlx::query_as(
        "SELECT rolsuper, rolbypassrls, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = current_user",
    )
    .fetch_one(&mut *conn)
    .await?;
    let mut f = vec![];
    if superuser {
        f.push("is SUPERUSER".to_owned())
    }
    if bypass {
        f.push("has BYPASSRLS".to_owned())
    }
    if createrole {
        f.push("has CREATEROLE".to_owned())
    }
    if createdb {
        f.push("has CREATEDB".to_owned())
    }
    out.push(check(
        "T2",
        "runtime role is not superuser and cannot bypass RLS",
        f,
    ));

    let memberships: Vec<String> = sqlx::query_scalar(
        "SELECT r.rolname::text FROM pg_auth_members am JOIN pg_roles r ON r.oid = am.roleid
          WHERE am.member = (SELECT oid FROM pg_roles WHERE rolname = current_user) ORDER BY 1",
    )
    .fetch_all(&mut *conn)
    .await?;
    out.push(check(
        "T2",
        "runtime role inherits no other role",
        memberships
            .into_iter()
            .map(|r| format!("member of {r}"))
            .collect(),
    ));

    let owned: Vec<String> = sqlx::query_scalar(concat!(
        "SELECT 'table ' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE c.relowner = (SELECT oid FROM pg_roles WHERE rolname = current_user)
         UNION ALL
         SELECT 'function ' || p.proname FROM pg_proc p
          WHERE p.proowner = (SELECT oid FROM pg_roles WHERE rolname = current_user)
         UNION ALL
         SELECT 'schema ' || n.nspname FROM pg_namespace n
          WHERE n.nspowner = (SELECT oid FROM pg_roles WHERE rolname = current_user)
            AND n.nspname IN ",
        schemas!(),
        "
         ORDER BY 1"
    ))
    .fetch_all(&mut *conn)
    .await?;
    out.push(check(
        "T2",
        "runtime role owns no table, function or schema",
        owned.into_iter().map(|o| format!("owns {o}")).collect(),
    ));

    #[derive(sqlx::FromRow)]
    struct Table {
        name: String,
        rls: bool,
        forced: bool,
        first_key: Option<String>,
    }
    let tables: Vec<Table> = sqlx::query_as(concat!(
        "SELECT c.relname::text AS name, c.relrowsecurity AS rls, c.relforcerowsecurity AS forced,
                (SELECT a.attname::text FROM pg_index i JOIN pg_attribute a
                   ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
                  WHERE i.indrelid = c.oid AND i.indisprimary) AS first_key
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE c.relkind IN ('r', 'p') AND n.nspname IN ",
        schemas!(),
        "
          ORDER BY 1"
    ))
    .fetch_all(&mut *conn)
    .await?;

    let mut unclassified = vec![];
    let mut not_forced = vec![];
    let mut bad_key = vec![];
    for t in &tables {
        let tenant = TENANT_TABLES.contains(&t.name.as_str());
        let global = GLOBAL_TABLES.contains(&t.name.as_str());
        if INTERNAL_TABLES.contains(&t.name.as_str()) {
            continue;
        }
        if !tenant && !global {
            unclassified.push(format!("{} is neither a tenant nor a global table", t.name));
        }
        if !(t.rls && t.forced) {
            not_forced.push(format!(
                "{} (enabled: {}, forced: {})",
                t.name, t.rls, t.forced
            ));
        }
        if tenant && t.first_key.as_deref() != Some("environment_id") {
            bad_key.push(format!(
                "{} primary key starts with {:?}",
                t.name, t.first_key
            ));
        }
    }
    for expected in TENANT_TABLES.iter().chain(GLOBAL_TABLES) {
        if !tables.iter().any(|t| t.name == *expected) {
            unclassified.push(format!("{expected} is missing"));
        }
    }
    out.push(check(
        "T7",
        "every table is classified as tenant or global",
        unclassified,
    ));
    out.push(check(
        "T2",
        "row-level security is enabled and forced on every table",
        not_forced,
    ));
    out.push(check(
        "T1",
        "every tenant table's primary key starts with environment_id",
        bad_key,
    ));

    #[derive(sqlx::FromRow)]
    struct Policy {
        table: String,
        name: String,
        cmd: String,
        permissive: bool,
        roles: Vec<String>,
        owner: String,
    }
    let policies: Vec<Policy> = sqlx::query_as(concat!("SELECT c.relname::text AS table, p.polname::text AS name, p.polcmd::text AS cmd,
                p.polpermissive AS permissive,
                ARRAY(SELECT CASE WHEN r = 0 THEN 'public' ELSE pg_get_userbyid(r)::text END
                        FROM unnest(p.polroles) r ORDER BY 1) AS roles,
                pg_get_userbyid(c.relowner)::text AS owner
           FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname IN ", schemas!(), " ORDER BY 1, 2"))
    .fetch_all(&mut *conn)
    .await?;
    let mut f = vec![];
    for (table, name, cmd, permissive) in EXPECTED_POLICIES {
        match policies
            .iter()
            .find(|p| p.table == *table && p.name == *name)
        {
            None => f.push(format!("{table}: policy {name} is missing")),
            Some(p) => {
                if p.cmd != cmd.to_string() || p.permissive != *permissive {
                    f.push(format!(
                        "{table}: policy {name} has command {} permissive {}",
                        p.cmd, p.permissive
                    ));
                }
                let expected = if OWNER_POLICIES.contains(name) {
                    p.owner.as_str()
                } else if GUARD_POLICIES.contains(name) {
                    GUARD_ROLE
                } else {
                    RUNTIME_ROLE
                };
                if p.roles != [expected] {
                    f.push(format!(
                        "{table}: policy {name} applies to {:?}, expected only {expected}",
                        p.roles
                    ));
                }
            }
        }
    }
    for p in &policies {
        if !EXPECTED_POLICIES
            .iter()
            .any(|(t, n, _, _)| *t == p.table && *n == p.name)
            && !background_policy(&p.table, &p.name)
        {
            f.push(format!("{}: unexpected policy {}", p.table, p.name));
        }
    }
    out.push(check(
        "T2",
        "tenant isolation policies are exactly the expected set",
        f,
    ));

    let views: Vec<String> = sqlx::query_scalar(concat!("SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE c.relkind IN ('v', 'm') AND n.nspname IN ", schemas!(), "
            AND NOT COALESCE(c.reloptions::text[] && ARRAY['security_invoker=true','security_invoker=on','security_invoker=1'], false)
          ORDER BY 1"))
    .fetch_all(&mut *conn)
    .await?;
    out.push(check(
        "T7",
        "every view is security_invoker",
        views
            .into_iter()
            .map(|v| format!("view {v} runs as its owner"))
            .collect(),
    ));

    let definers: Vec<(String, String)> = sqlx::query_as(
        "SELECT n.nspname || '.' || p.proname, pg_get_userbyid(p.proowner)::text
           FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
          WHERE p.prosecdef AND n.nspname NOT IN ('pg_catalog', 'information_schema')
            AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
          ORDER BY 1",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut f = vec![];
    for (name, owner) in &definers {
        if !ALLOWED_SECURITY_DEFINER.contains(&name.as_str()) {
            f.push(format!("{name} is SECURITY DEFINER"));
        } else if owner != GUARD_ROLE {
            f.push(format!("{name} runs as {owner}, expected {GUARD_ROLE}"));
        }
    }
    for expected in ALLOWED_SECURITY_DEFINER {
        if !definers.iter().any(|(n, _)| n == expected) {
            f.push(format!("{expected} is missing"));
        }
    }
    out.push(check(
        "T7",
        "no unexpected SECURITY DEFINER function; the context checks run as the guard role",
        f,
    ));

    let unpinned: Vec<(String, bool)> = sqlx::query_as(concat!(
        "SELECT n.nspname || '.' || p.proname,
                p.prolang = (SELECT oid FROM pg_language WHERE lanname = 'sql') AND NOT p.prosecdef
                AND p.prosrc LIKE '%portcullis\\_guard.context()%' AND p.proconfig IS NULL
           FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
          WHERE n.nspname IN ",
        function_schemas!(),
        "
            AND NOT EXISTS (SELECT 1 FROM unnest(p.proconfig) c WHERE c LIKE 'search\\_path=%')
          ORDER BY 1"
    ))
    .fetch_all(&mut *conn)
    .await?;
    out.push(check(
        "T7",
        "every function has a fixed search_path (or is an inlined context accessor)",
        unpinned
            .into_iter()
            .filter(|(p, accessor)| !(*accessor && INLINED_ACCESSORS.contains(&p.as_str())))
            .map(|(p, _)| format!("{p} resolves names through the caller's search_path"))
            .collect(),
    ));

    let (temp, create_public, create_portcullis, create_guard, key_readable): (
        bool,
        bool,
        bool,
        bool,
        bool,
    ) = sqlx::query_as(
        "SELECT has_database_privilege(current_user, current_database(), 'TEMPORARY'),
                has_schema_privilege(current_user, 'public', 'CREATE'),
                has_schema_privilege(current_user, 'portcullis', 'CREATE'),
                has_schema_privilege(current_user, 'portcullis_guard', 'CREATE'),
                has_any_column_privilege(current_user, 'portcullis_guard.context_key', 'SELECT')",
    )
    .fetch_one(&mut *conn)
    .await?;
    let mut f = vec![];
    if temp {
        f.push("runtime role may create temporary tables (they can shadow real ones)".to_owned());
    }
    for (schema, can) in [
        ("public", create_public),
        ("portcullis", create_portcullis),
        ("portcullis_guard", create_guard),
    ] {
        if can {
            f.push(format!("runtime role may create objects in {schema}"));
        }
    }
    if key_readable {
        f.push("runtime role may read the context key".to_owned());
    }
    out.push(check(
        "T2",
        "runtime role can neither create objects nor read the context key",
        f,
    ));

    let guard: Option<(bool, bool, bool, bool)> = sqlx::query_as(
        "SELECT rolcanlogin, rolsuper, rolbypassrls, rolcreaterole FROM pg_roles WHERE rolname = $1",
    )
    .bind(GUARD_ROLE)
    .fetch_optional(&mut *conn)
    .await?;
    out.push(check(
        "T2",
        "the guard role cannot log in and holds no power",
        match guard {
            None => vec![format!("{GUARD_ROLE} is missing")],
            Some((login, superuser, bypass, createrole)) => [
                (login, "can log in"),
                (superuser, "is SUPERUSER"),
                (bypass, "has BYPASSRLS"),
                (createrole, "has CREATEROLE"),
            ]
            .into_iter()
            .filter(|(bad, _)| *bad)
            .map(|(_, what)| format!("{GUARD_ROLE} {what}"))
            .collect(),
        },
    ));

    let mut f = vec![];
    for table in APPEND_ONLY_TABLES {
        let (can_update, can_delete, can_truncate, triggers): (bool, bool, bool, i64) =
            sqlx::query_as(
                "SELECT has_table_privilege(current_user, $1, 'UPDATE'),
                    has_table_privilege(current_user, $1, 'DELETE'),
                    has_table_privilege(current_user, $1, 'TRUNCATE'),
                    (SELECT count(*) FROM pg_trigger t WHERE t.tgrelid = $1::regclass
                        AND t.tgname IN ($2, $3) AND t.tgenabled IN ('O', 'A'))",
            )
            .bind(format!("public.{table}"))
            .bind(format!("{table}_no_update_delete"))
            .bind(format!("{table}_no_truncate"))
            .fetch_one(&mut *conn)
            .await?;
        if can_update {
            f.push(format!("runtime role may UPDATE {table}"))
        }
        if can_delete {
            f.push(format!("runtime role may DELETE from {table}"))
        }
        if can_truncate {
            f.push(format!("runtime role may TRUNCATE {table}"))
        }
        if triggers != 2 {
            f.push(format!(
                "{table}: {triggers} of 2 append-only triggers are enabled"
            ))
        }
    }
    out.push(check(
        "L2",
        "audit streams and checkpoints are append-only",
        f,
    ));

    // The context fails closed: a hand-written context (here one naming the platform scope
    // with every permission) and a malformed seal both read as no context at all.
    let forged = {
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        sqlx::query(
            "SELECT set_config('portcullis.context', $1, true),
                    set_config('portcullis.context_seal', repeat('0', 64), true)",
        )
        .bind(format!(
            "v1|request|{}||system|||audit.read|||||{}",
            uuid::Uuid::nil(),
            i64::MAX / 2
        ))
        .execute(&mut *tx)
        .await?;
        let seen: (Option<uuid::Uuid>, bool) = sqlx::query_as(
            "SELECT portcullis.environment_id(), portcullis.has_permission('audit.read')",
        )
        .fetch_one(&mut *tx)
        .await?;
        tx.rollback().await?;
        seen
    };
    out.push(check(
        "T2",
        "a context the application did not sign reads as no context",
        if forged == (None, false) {
            vec![]
        } else {
            vec![format!("a forged context was accepted: {forged:?}")]
        },
    ));

    let migrations_access: bool = sqlx::query_scalar(
        "SELECT has_table_privilege(current_user, 'public._sqlx_migrations', 'SELECT,INSERT,UPDATE,DELETE')",
    )
    .fetch_one(&mut *conn)
    .await?;
    out.push(check(
        "T7",
        "runtime role cannot read or change migration history",
        if migrations_access {
            vec!["runtime role has privileges on _sqlx_migrations".to_owned()]
        } else {
            vec![]
        },
    ));

    background_roles(conn, &mut out).await?;
    out.push(credential_announcements(conn).await?);

    Ok(out)
}

/// Tables whose changes decide who may do what: each must announce its changes to the nodes'
/// credential caches (migration 0013, `crate::auth_cache`).
pub const ANNOUNCED_TABLES: &[&str] = &[
    "sessions",
    "identities",
    "memberships",
    "custom_roles",
    "api_tokens",
    "project_grants",
    "projects",
    "environments",
    "environment_keys",
];

/// T2: every credential table still has its enabled announcing trigger. Without it, a change
/// made on one node would reach another node's cache only when the entry expires.
async fn credential_announcements(conn: &mut PgConnection) -> Result<Check, StoreError> {
    let present: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_trigger t
           JOIN pg_class c ON c.oid = t.tgrelid
           JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'
          WHERE t.tgname = c.relname || '_announce' AND t.tgenabled IN ('O', 'A')
            AND t.tgfoid = 'portcullis.announce_credential_change()'::regprocedure",
    )
    .fetch_all(&mut *conn)
    .await?;
    let missing = ANNOUNCED_TABLES
        .iter()
        .filter(|t| !present.iter().any(|p| p == *t))
        .map(|t| format!("{t}: no enabled {t}_announce trigger"))
        .collect();
    Ok(check(
        "T2",
        "credential changes are announced to every node's cache",
        missing,
    ))
}

// Relations `c` (schema `n`) in every schema but the system's: what a role could reach.
macro_rules! user_relations {
    () => {
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
            AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'"
    };
}

/// Everything `role` may do to tables, views and sequences, as [`BackgroundRole::privileges`]
/// spells it, plus schemas it may create objects in and the database if it may create schemas.
async fn held_privileges(conn: &mut PgConnection, role: &str) -> Result<Vec<String>, StoreError> {
    let rows: Vec<(String, String, bool, Vec<String>)> = sqlx::query_as(concat!(
        "SELECT rel, privilege, whole, columns FROM (
           SELECT r.rel, p.privilege,
                  has_table_privilege($1::name, r.oid, p.privilege) AS whole,
                  ARRAY(SELECT a.attname::text FROM pg_attribute a
                         WHERE a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped
                           AND p.privilege IN ('SELECT', 'INSERT', 'UPDATE', 'REFERENCES')
                           AND has_column_privilege($1::name, r.oid, a.attnum, p.privilege)) AS columns
             FROM (SELECT c.oid, n.nspname || '.' || c.relname AS rel ",
        user_relations!(),
        " AND c.relkind IN ('r', 'p', 'v', 'm', 'f')) r
            CROSS JOIN unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE',
                                    'REFERENCES', 'TRIGGER']) AS p(privilege)) t
          WHERE whole OR cardinality(columns) > 0
         UNION ALL
         SELECT n.nspname || '.' || c.relname, 'USAGE, SELECT or UPDATE', true, ARRAY[]::text[] ",
        user_relations!(),
        " AND c.relkind = 'S'
            AND CASE WHEN c.relkind = 'S'
                     THEN has_sequence_privilege($1::name, c.oid, 'USAGE, SELECT, UPDATE') END
         UNION ALL
         SELECT 'schema ' || nspname, 'CREATE', true, ARRAY[]::text[] FROM pg_namespace
          WHERE nspname NOT LIKE 'pg_temp%' AND nspname NOT LIKE 'pg_toast%'
            AND has_schema_privilege($1::name, oid, 'CREATE')
         UNION ALL
         SELECT 'database ' || current_database(), 'CREATE', true, ARRAY[]::text[]
          WHERE has_database_privilege($1::name, current_database(), 'CREATE')"
    ))
    .bind(role)
    .fetch_all(&mut *conn)
    .await?;
    let mut held: Vec<String> = rows
        .into_iter()
        .map(|(rel, privilege, whole, mut columns)| {
            if whole {
                format!("{privilege} {rel}")
            } else {
                columns.sort();
                format!("{privilege} {rel}({})", columns.join(", "))
            }
        })
        .collect();
    held.sort();
    Ok(held)
}

/// T7 for the background roles: each exists with no dangerous attribute, owns and inherits
/// nothing, is not inherited by the runtime role, holds exactly its expected privileges and
/// is named by exactly its expected policies.
async fn background_roles(conn: &mut PgConnection, out: &mut Vec<Check>) -> Result<(), StoreError> {
    let mut attributes = vec![];
    let mut links = vec![];
    let mut privileges = vec![];
    let mut policies = vec![];
    for expected in BACKGROUND_ROLES {
        let role = expected.role;
        let attrs: Option<(bool, bool, bool, bool, bool, bool)> = sqlx::query_as(
            "SELECT rolsuper, rolbypassrls, rolcreaterole, rolcreatedb, rolreplication, rolinherit
               FROM pg_roles WHERE rolname = $1",
        )
        .bind(role)
        .fetch_optional(&mut *conn)
        .await?;
        let Some((superuser, bypass, createrole, createdb, replication, inherit)) = attrs else {
            attributes.push(format!("{role} does not exist"));
            continue;
        };
        for (bad, what) in [
            (superuser, "is SUPERUSER"),
            (bypass, "has BYPASSRLS"),
            (createrole, "has CREATEROLE"),
            (createdb, "has CREATEDB"),
            (replication, "has REPLICATION"),
            (inherit, "has INHERIT"),
        ] {
            if bad {
                attributes.push(format!("{role} {what}"));
            }
        }

        let found: Vec<String> = sqlx::query_scalar(concat!(
            "SELECT 'is a member of ' || pg_get_userbyid(roleid) FROM pg_auth_members
              WHERE member = (SELECT oid FROM pg_roles WHERE rolname = $1)
             UNION ALL
             SELECT 'is granted to ' || pg_get_userbyid(member) FROM pg_auth_members
              WHERE roleid = (SELECT oid FROM pg_roles WHERE rolname = $1)
                AND member = (SELECT oid FROM pg_roles WHERE rolname = $2)
             UNION ALL
             SELECT 'owns ' || n.nspname || '.' || c.relname ",
            user_relations!(),
            " AND c.relowner = (SELECT oid FROM pg_roles WHERE rolname = $1)
             UNION ALL
             SELECT 'owns function ' || p.proname FROM pg_proc p
              WHERE p.proowner = (SELECT oid FROM pg_roles WHERE rolname = $1)
             UNION ALL
             SELECT 'owns schema ' || nspname FROM pg_namespace
              WHERE nspowner = (SELECT oid FROM pg_roles WHERE rolname = $1)
             ORDER BY 1"
        ))
        .bind(role)
        .bind(RUNTIME_ROLE)
        .fetch_all(&mut *conn)
        .await?;
        links.extend(found.into_iter().map(|f| format!("{role} {f}")));

        let held = held_privileges(conn, role).await?;
        for h in &held {
            if !expected.privileges.contains(&h.as_str()) {
                privileges.push(format!("{role} holds {h}"));
            }
        }
        for e in expected.privileges {
            if !held.iter().any(|h| h == e) {
                privileges.push(format!("{role} lacks {e}"));
            }
        }

        let rows: Vec<(String, String, String, bool, Vec<String>)> = sqlx::query_as(concat!(
            "SELECT c.relname::text, p.polname::text, p.polcmd::text, p.polpermissive,
                    ARRAY(SELECT CASE WHEN r = 0 THEN 'public' ELSE pg_get_userbyid(r)::text END
                            FROM unnest(p.polroles) r ORDER BY 1)
               FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid
               JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname IN ",
            schemas!(),
            " AND (p.polroles @> ARRAY[(SELECT oid FROM pg_roles WHERE rolname = $1)]
                   OR (c.relname::text, p.polname::text) IN (SELECT * FROM unnest($2::text[], $3::text[])))
              ORDER BY 1, 2"
        ))
        .bind(role)
        .bind(expected.policies.iter().map(|p| p.0).collect::<Vec<_>>())
        .bind(expected.policies.iter().map(|p| p.1).collect::<Vec<_>>())
        .fetch_all(&mut *conn)
        .await?;
        for (table, name, cmd, permissive) in expected.policies {
            match rows.iter().find(|r| r.0 == *table && r.1 == *name) {
                None => policies.push(format!("{table}: policy {name} is missing")),
                Some((_, _, c, p, roles)) => {
                    if *c != cmd.to_string() || p != permissive {
                        policies.push(format!(
                            "{table}: policy {name} has command {c} permissive {p}"
                        ));
                    }
                    if roles != &[role] {
                        policies.push(format!(
                            "{table}: policy {name} applies to {roles:?}, expected only {role}"
                        ));
                    }
                }
            }
        }
        for (table, name, ..) in &rows {
            if !expected
                .policies
                .iter()
                .any(|(t, n, _, _)| t == table && n == name)
            {
                policies.push(format!("{table}: policy {name} names {role} unexpectedly"));
            }
        }
    }
    out.push(check(
        "T7",
        "background roles exist, are not superuser and cannot bypass RLS or create roles",
        attributes,
    ));
    out.push(check(
        "T7",
        "background roles own and inherit nothing, and the runtime role inherits none of them",
        links,
    ));
    out.push(check(
        "T7",
        "background roles hold exactly their expected privileges",
        privileges,
    ));
    out.push(check(
        "T7",
        "background role policies are exactly the expected set",
        policies,
    ));
    Ok(())
}

/// The failed checks, if any.
pub fn failures(checks: &[Check]) -> Vec<&Check> {
    checks.iter().filter(|c| !c.passed).collect()
}
