//! The attacker suite (issue 9): an attacker runs arbitrary SQL as the runtime role inside a
//! real request's transaction (one injectable query). Each test opens the transaction the way
//! the application does (`Store::tenant_as_identity`, `tenant_as_api_token`, `auth` +
//! `sessions::authenticate`), runs the attack on its raw connection, commits whatever survived,
//! and then checks through the superuser that nothing changed and nothing was seen.
//!
//! Every statement of an attack runs in a savepoint, so a refusal (an error) does not abort the
//! transaction and the next statement is still tried; the transaction is then committed, so a
//! statement that was *not* refused would really take effect. A refusal is either an error or
//! zero rows affected / visible, whichever the design gives; what decides is the state the
//! superuser sees afterwards.
//!
//! Controls: T1, T2 (tenant isolation), T7 (schema invariants: no TEMP, fixed search_path),
//! R1/R2/R8 (roles and permissions at the database layer), E3 (credentials), L3 (audit chain).

// `args![..]` is a Vec so statements of any arity fit one list; borrowed at call sites.
#![allow(clippy::useless_vec)]

use std::collections::BTreeMap;

use portcullis_audit::entry::{entry_hash, EntryHashInput};
use portcullis_core::{
    ApiTokenId, BuiltinRole, DocumentId, EnvironmentId, IdentityId, IntegrationId, InvitationId,
    Permission, PermissionSet, ProjectId, RoleId, RoleRef, SessionId,
};
use portcullis_crypto::TokenHash;
use portcullis_store::queries::audit_log::{StoredEntry, STORED_CHAIN};
use portcullis_store::queries::{integrations, invitations, roles, sessions, tokens};
use portcullis_store::testing::TestDb;
use portcullis_store::{
    audit_writer, bootstrap, Actor, AuditEvent, AuthTx, RequestMeta, Store, StoreError, TenantTx,
};
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::{Connection, PgConnection, Postgres, Row};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::support::{identity, tenant, vault, Tenant};

/// The platform audit scope (logins, sign-ups).
const NIL: Uuid = Uuid::nil();

// ------------------------------------------------------------------------------------------
// Statements as data: SQL and its bind parameters (no SQL is ever built by formatting).

#[derive(Clone, Debug)]
enum Arg {
    Uuid(Uuid),
    Text(String),
    Bytes(Vec<u8>),
    Int(i64),
}

impl From<Uuid> for Arg {
    fn from(v: Uuid) -> Arg {
        Arg::Uuid(v)
    }
}
impl From<EnvironmentId> for Arg {
    fn from(v: EnvironmentId) -> Arg {
        Arg::Uuid(v.as_uuid())
    }
}
impl From<IdentityId> for Arg {
    fn from(v: IdentityId) -> Arg {
        Arg::Uuid(v.as_uuid())
    }
}
impl From<ProjectId> for Arg {
    fn from(v: ProjectId) -> Arg {
        Arg::Uuid(v.as_uuid())
    }
}
impl From<&str> for Arg {
    fn from(v: &str) -> Arg {
        Arg::Text(v.to_owned())
    }
}
impl From<String> for Arg {
    fn from(v: String) -> Arg {
        Arg::Text(v)
    }
}
impl From<Vec<u8>> for Arg {
    fn from(v: Vec<u8>) -> Arg {
        Arg::Bytes(v)
    }
}
impl From<&TokenHash> for Arg {
    fn from(v: &TokenHash) -> Arg {
        Arg::Bytes(v.as_bytes().to_vec())
    }
}
impl From<i64> for Arg {
    fn from(v: i64) -> Arg {
        Arg::Int(v)
    }
}

macro_rules! args {
    ($($a:expr),* $(,)?) => { vec![$(Arg::from($a)),*] };
}

fn bound<'q>(sql: &'q str, args: &'q [Arg]) -> sqlx::query::Query<'q, Postgres, PgArguments> {
    let mut q = sqlx::query(sql);
    for a in args {
        q = match a {
            Arg::Uuid(u) => q.bind(*u),
            Arg::Text(t) => q.bind(t.as_str()),
            Arg::Bytes(b) => q.bind(b.as_slice()),
            Arg::Int(i) => q.bind(*i),
        };
    }
    q
}

/// SQLSTATE and message of a refusal.
fn describe(e: &sqlx::Error) -> String {
    match e.as_database_error() {
        Some(d) => format!("{}: {}", d.code().unwrap_or_default(), d.message()),
        None => e.to_string(),
    }
}

async fn savepoint(conn: &mut PgConnection) {
    sqlx::query("SAVEPOINT attack")
        .execute(&mut *conn)
        .await
        .expect("savepoint");
}

async fn settle<T>(conn: &mut PgConnection, r: Result<T, sqlx::Error>) -> Result<T, String> {
    match r {
        Ok(v) => {
            sqlx::query("RELEASE SAVEPOINT attack")
                .execute(&mut *conn)
                .await
                .expect("release savepoint");
            Ok(v)
        }
        Err(e) => {
            sqlx::query("ROLLBACK TO SAVEPOINT attack")
                .execute(&mut *conn)
                .await
                .expect("rollback to savepoint");
            Err(describe(&e))
        }
    }
}

/// One attack statement in a savepoint: rows affected (or returned), or the refusal.
async fn attempt(conn: &mut PgConnection, sql: &str, args: &[Arg]) -> Result<u64, String> {
    savepoint(conn).await;
    let r = bound(sql, args).execute(&mut *conn).await;
    settle(conn, r.map(|d| d.rows_affected())).await
}

/// One attack query in a savepoint: the rows it returned, or the refusal.
async fn attempt_rows(
    conn: &mut PgConnection,
    sql: &str,
    args: &[Arg],
) -> Result<Vec<PgRow>, String> {
    savepoint(conn).await;
    let r = bound(sql, args).fetch_all(&mut *conn).await;
    settle(conn, r).await
}

/// The uuids in the first column of what an attack query returned; a refusal shows nothing.
async fn seen_ids(conn: &mut PgConnection, sql: &str, args: &[Arg]) -> Vec<Uuid> {
    match attempt_rows(conn, sql, args).await {
        Ok(rows) => rows.iter().map(|r| r.get::<Uuid, _>(0)).collect(),
        Err(_) => vec![],
    }
}

/// What got through, collected so one run names every attack that succeeded rather than the
/// first; `finish` fails the test with the list.
#[derive(Default)]
struct Findings(Vec<String>);

impl Findings {
    /// A write the attack must not get through: refused with an error, or no row touched.
    fn no_effect(&mut self, what: impl AsRef<str>, r: &Result<u64, String>) {
        if !matches!(r, Err(_) | Ok(0)) {
            self.0
                .push(format!("{}: not refused ({r:?})", what.as_ref()));
        }
    }

    /// An INSERT of a forged row: with row-level security a refused insert is an error.
    fn refused(&mut self, what: impl AsRef<str>, r: &Result<u64, String>) {
        if r.is_ok() {
            self.0
                .push(format!("{}: not refused ({r:?})", what.as_ref()));
        }
    }

    fn check(&mut self, ok: bool, what: String) {
        if !ok {
            self.0.push(what);
        }
    }

    #[track_caller]
    fn finish(self) {
        assert!(
            self.0.is_empty(),
            "{} attack(s) got through:\n- {}",
            self.0.len(),
            self.0.join("\n- ")
        );
    }
}

/// A savepoint of its own around a probe, so settings forged for it are undone afterwards.
async fn probe_point(conn: &mut PgConnection) {
    sqlx::query("SAVEPOINT probe")
        .execute(&mut *conn)
        .await
        .expect("savepoint");
}

async fn undo_probe(conn: &mut PgConnection) {
    sqlx::query("ROLLBACK TO SAVEPOINT probe")
        .execute(&mut *conn)
        .await
        .expect("rollback to savepoint");
}

/// Sets context settings by hand, as the attacker would (each in its own savepoint: whether
/// set_config itself is allowed does not matter, only what it achieves).
async fn forge(conn: &mut PgConnection, settings: &[(&str, String)]) {
    for (name, value) in settings {
        let _ = attempt(
            conn,
            "SELECT set_config($1, $2, true)",
            &args![*name, value.clone()],
        )
        .await;
    }
}

fn all_permissions() -> String {
    PermissionSet::all().to_setting()
}

/// Settings that, on today's schema, make the transaction an all-powerful member of `env`.
fn context_of(env: EnvironmentId, identity: IdentityId) -> Vec<(&'static str, String)> {
    vec![
        ("portcullis.environment_id", env.to_string()),
        ("portcullis.identity_id", identity.to_string()),
        ("portcullis.permissions", all_permissions()),
        ("portcullis.project_id", String::new()),
    ]
}

/// Only the permissions, widened to all.
fn all_permissions_setting() -> Vec<(&'static str, String)> {
    vec![("portcullis.permissions", all_permissions())]
}

/// 32 unpredictable-enough bytes (unique per call): a hash that matches nothing stored.
fn random_bytes() -> Vec<u8> {
    new_token_hash().as_bytes().to_vec()
}

fn new_token_hash() -> TokenHash {
    TokenHash::of(&format!("pcs_attacker_{}", Uuid::now_v7().simple()))
}

fn meta() -> RequestMeta {
    RequestMeta {
        request_id: Some(format!("req-{}", Uuid::now_v7())),
        ip: Some("203.0.113.7".into()),
        user_agent: Some("attacker/1.0".into()),
    }
}

// ------------------------------------------------------------------------------------------
// The world: two tenants with every kind of row, and an attacker who is a viewer of A.

/// A real request's transaction, as the application opens it.
enum Request {
    Tenant(TenantTx),
    Account(AuthTx),
}

impl Request {
    fn conn(&mut self) -> &mut PgConnection {
        match self {
            Request::Tenant(t) => t.conn_for_tests(),
            Request::Account(a) => a.conn_for_tests(),
        }
    }

    /// Commits what the attack left; a refusal may also come at commit (deferred checks).
    async fn commit(self) -> Result<(), StoreError> {
        match self {
            Request::Tenant(t) => t.commit().await,
            Request::Account(a) => a.commit().await,
        }
    }
}

struct World {
    db: TestDb,
    store: Store,
    /// The attacker's environment.
    a: Tenant,
    /// The victim environment.
    b: Tenant,
    /// A viewer of A: the usual attacker (documents.read and little else).
    viewer: IdentityId,
    /// An admin of A (everything but environment.delete and ownership.transfer).
    admin: IdentityId,
    /// An account the attacker controls that belongs to no environment.
    sock: IdentityId,
    /// A live session of each person above (and of both owners).
    sessions: BTreeMap<Uuid, TokenHash>,
    /// A viewer-role API token of A, created by A's owner.
    a_token: (ApiTokenId, TokenHash),
    /// An admin-role API token of B.
    b_token: (ApiTokenId, TokenHash),
    a_role: RoleId,
    b_invitation: (InvitationId, TokenHash),
    /// Every table with an environment_id column.
    env_tables: Vec<String>,
}

async fn world() -> World {
    let db = TestDb::new().await;
    let store = db.store().await.with_subject_keys(vault().subject_keys());
    world_on(db, store).await
}

async fn world_on(db: TestDb, store: Store) -> World {
    let a = tenant(&store, "alpha").await;
    let b = tenant(&store, "beta").await;
    let viewer = identity(&store, "viewer@alpha.test").await;
    let admin = identity(&store, "admin@alpha.test").await;
    let sock = identity(&store, "sock@evil.test").await;
    let now = OffsetDateTime::now_utc();

    let a_role = RoleId::new();
    let a_token = (ApiTokenId::new(), new_token_hash());
    // Members are set up directly: through the runtime role a membership is only ever created by
    // accepting an invitation.
    let mut su = db.admin_conn().await;
    for (who, role) in [(viewer, "viewer"), (admin, "admin")] {
        sqlx::query(
            "INSERT INTO memberships (environment_id, identity_id, role, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $4)",
        )
        .bind(a.env.as_uuid())
        .bind(who.as_uuid())
        .bind(role)
        .bind(now)
        .execute(&mut su)
        .await
        .unwrap();
    }
    drop(su);
    let mut tx = store
        .tenant_as_identity(a.env, a.owner, None, meta())
        .await
        .unwrap();
    roles::create(
        &mut tx,
        a_role,
        "readers",
        "",
        PermissionSet::of(&[Permission::DocumentsRead]),
        now,
    )
    .await
    .unwrap();
    tokens::create(
        &mut tx,
        a_token.0,
        "ci",
        &a_token.1,
        "abcd",
        RoleRef::Builtin(BuiltinRole::Viewer),
        a.owner.as_uuid(),
        now,
        Some(now + Duration::days(30)),
    )
    .await
    .unwrap();
    tx.audit(AuditEvent::success("member.added", "identity", viewer))
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let b_token = (ApiTokenId::new(), new_token_hash());
    let b_invitation = (InvitationId::new(), new_token_hash());
    let b_integration = IntegrationId::new();
    let mut tx = store
        .tenant_as_identity(b.env, b.owner, None, meta())
        .await
        .unwrap();
    roles::create(
        &mut tx,
        RoleId::new(),
        "writers",
        "",
        PermissionSet::of(&[Permission::DocumentsWrite]),
        now,
    )
    .await
    .unwrap();
    tokens::create(
        &mut tx,
        b_token.0,
        "deploy",
        &b_token.1,
        "wxyz",
        RoleRef::Builtin(BuiltinRole::Admin),
        b.owner.as_uuid(),
        now,
        None,
    )
    .await
    .unwrap();
    invitations::create(
        &mut tx,
        vault(),
        b_invitation.0,
        "invitee@beta.test",
        RoleRef::Builtin(BuiltinRole::Viewer),
        &b_invitation.1,
        b.owner.as_uuid(),
        now,
        now + Duration::days(7),
    )
    .await
    .unwrap();
    integrations::create(
        &mut tx,
        b_integration,
        "slack",
        "chat",
        (&[1, 2, 3], 1),
        "abcd",
        b.owner.as_uuid(),
        now,
    )
    .await
    .unwrap();
    integrations::set_model_key(
        &mut tx,
        "anthropic",
        (&[4, 5, 6], 1),
        "wxyz",
        b.owner.as_uuid(),
        now,
    )
    .await
    .unwrap();
    // A person's audited action with request metadata: also creates B's subject key (D3).
    tx.audit(AuditEvent::success(
        "integration.created",
        "integration",
        b_integration,
    ))
    .await
    .unwrap();
    tx.commit().await.unwrap();

    // A session for each person, and its platform-scope audit entry (as a login writes it).
    let mut sessions = BTreeMap::new();
    for who in [a.owner, b.owner, viewer, admin] {
        let hash = new_token_hash();
        let mut auth = store.auth(meta()).await.unwrap();
        auth.signed_in(who).await.unwrap();
        let sid = SessionId::new();
        sessions::create(&mut auth, sid, who, &hash, now, now + Duration::days(1))
            .await
            .unwrap();
        auth.audit(
            Actor::Identity(who),
            AuditEvent::success("auth.login", "identity", who),
        )
        .await
        .unwrap();
        auth.commit().await.unwrap();
        sessions.insert(who.as_uuid(), hash);
    }
    // Use each token once, so a later request through it changes nothing (last_used_at is
    // refreshed at most once a minute).
    for hash in [&a_token.1, &b_token.1] {
        store
            .tenant_as_api_token(hash, None, RequestMeta::default())
            .await
            .unwrap()
            .commit()
            .await
            .unwrap();
    }

    // The fixture's audit entries chained, as after any reader of the log.
    store
        .sequencer()
        .expect("the test store has a sequencer")
        .sweep()
        .await
        .unwrap();
    let mut admin_conn = db.admin_conn().await;
    let env_tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.columns
          WHERE table_schema = 'public' AND column_name = 'environment_id' ORDER BY 1",
    )
    .fetch_all(&mut admin_conn)
    .await
    .unwrap();
    World {
        db,
        store,
        a,
        b,
        viewer,
        admin,
        sock,
        sessions,
        a_token,
        b_token,
        a_role,
        b_invitation,
        env_tables,
    }
}

impl World {
    /// A request inside `env` as `who`, exactly as the application opens it.
    async fn member(&self, env: EnvironmentId, who: IdentityId) -> Request {
        Request::Tenant(
            self.store
                .tenant_as_identity(env, who, None, meta())
                .await
                .unwrap(),
        )
    }

    /// A request through an API token.
    async fn token(&self, hash: &TokenHash) -> Request {
        Request::Tenant(
            self.store
                .tenant_as_api_token(hash, None, meta())
                .await
                .unwrap(),
        )
    }

    /// An account-level request (no environment): the session cookie of `who` verified.
    async fn account(&self, who: IdentityId) -> Request {
        let mut auth = self.store.auth(meta()).await.unwrap();
        sessions::authenticate(
            &mut auth,
            &self.sessions[&who.as_uuid()],
            OffsetDateTime::now_utc(),
        )
        .await
        .unwrap()
        .expect("a live session");
        auth.act_as(who).await.unwrap();
        Request::Account(auth)
    }

    /// The attacker's two usual footholds: a request inside A, and an account request.
    async fn footholds(&self, who: IdentityId) -> Vec<(&'static str, Request)> {
        vec![
            ("tenant request", self.member(self.a.env, who).await),
            ("account request", self.account(who).await),
        ]
    }

    async fn admin(&self) -> PgConnection {
        self.db.admin_conn().await
    }

    /// Everything the attacker's connection can see of `env`, and of `people`'s identity rows,
    /// sessions and memberships: a list of "table: n rows", empty when nothing leaks.
    async fn leaks(
        &self,
        conn: &mut PgConnection,
        env: EnvironmentId,
        people: &[IdentityId],
    ) -> Vec<String> {
        let mut seen = vec![];
        for table in &self.env_tables {
            let r = attempt_rows(
                conn,
                ROWS_OF_ENVIRONMENT,
                &args![table.clone(), env.to_string()],
            )
            .await;
            if let Ok(rows) = r {
                let n: i64 = rows
                    .first()
                    .map_or(0, |r| r.get::<Option<i64>, _>(0).unwrap_or(0));
                if n > 0 {
                    seen.push(format!("{table}: {n} rows of {env}"));
                }
            }
        }
        for who in people {
            for (what, sql) in [
                (
                    "identities",
                    "SELECT identity_id FROM identities WHERE identity_id = $1",
                ),
                (
                    "sessions",
                    "SELECT identity_id FROM sessions WHERE identity_id = $1",
                ),
                (
                    "memberships",
                    "SELECT identity_id FROM memberships WHERE identity_id = $1",
                ),
            ] {
                let n = seen_ids(conn, sql, &args![*who]).await.len();
                if n > 0 {
                    seen.push(format!("{what}: {n} rows of {who}"));
                }
            }
        }
        seen
    }

    /// A digest of every table, as the superuser sees it.
    /// Chains every scope's pending audit entries, as any reader of the log does first.
    async fn sequenced(&self) {
        let sequencer = self
            .store
            .sequencer()
            .expect("the test store has a sequencer");
        sequencer.sweep().await.unwrap();
    }

    async fn snapshot(&self) -> BTreeMap<String, String> {
        self.sequenced().await;
        let mut admin = self.admin().await;
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT tablename::text FROM pg_tables
              WHERE schemaname = 'public' AND tablename <> '_sqlx_migrations' ORDER BY 1",
        )
        .fetch_all(&mut admin)
        .await
        .unwrap();
        let mut out = BTreeMap::new();
        for t in tables {
            let digest: String = sqlx::query_scalar(TABLE_DIGEST)
                .bind(&t)
                .fetch_one(&mut admin)
                .await
                .unwrap();
            out.insert(t, digest);
        }
        out
    }

    /// Fails listing every table whose contents differ from `before`.
    async fn assert_unchanged(&self, f: &mut Findings, before: &BTreeMap<String, String>) {
        let after = self.snapshot().await;
        let changed: Vec<&String> = after
            .iter()
            .filter(|(t, d)| before.get(*t) != Some(d))
            .map(|(t, _)| t)
            .collect();
        f.check(
            changed.is_empty(),
            format!("the attack changed {changed:?}"),
        );
    }

    async fn exists(&self, sql: &str, args: &[Arg]) -> bool {
        let mut admin = self.admin().await;
        !bound(sql, args)
            .fetch_all(&mut admin)
            .await
            .unwrap()
            .is_empty()
    }

    /// (seq, head hash) of a scope's chain.
    async fn head(&self, env: Uuid) -> (i64, Vec<u8>) {
        self.sequenced().await;
        let mut admin = self.admin().await;
        sqlx::query_as("SELECT seq, head_hash FROM audit_heads WHERE environment_id = $1")
            .bind(env)
            .fetch_one(&mut admin)
            .await
            .unwrap()
    }

    /// What is wrong with a scope's chain: gaps, broken links, entries whose hash is not theirs,
    /// a head that is not the last entry. Empty when it verifies.
    async fn chain_problems(&self, env: Uuid) -> Vec<String> {
        self.sequenced().await;
        let mut admin = self.admin().await;
        let rows: Vec<StoredEntry> = sqlx::query_as(STORED_CHAIN)
            .bind(env)
            .fetch_all(&mut admin)
            .await
            .unwrap();
        let mut problems = vec![];
        let mut prev = vec![0u8; 32];
        for (i, row) in rows.iter().enumerate() {
            if row.seq != i as i64 + 1 {
                problems.push(format!("entry {} has seq {}", i + 1, row.seq));
            }
            if row.prev_hash != prev {
                problems.push(format!(
                    "entry {} does not link to its predecessor",
                    row.seq
                ));
            }
            let link: [u8; 32] = row.prev_hash.as_slice().try_into().unwrap_or([0; 32]);
            let body = audit_writer::entry_body(row);
            let hash = entry_hash(&EntryHashInput {
                environment_id: env,
                seq: row.seq as u64,
                prev_hash: link,
                body: &body,
            });
            if hash.as_slice() != row.entry_hash.as_slice() {
                problems.push(format!("entry {} does not hash to its entry_hash", row.seq));
            }
            prev = row.entry_hash.clone();
        }
        let head = self.head(env).await;
        if head != (rows.len() as i64, prev) {
            problems.push(format!(
                "head is at {} for {} entries, or its hash is not the last entry's",
                head.0,
                rows.len()
            ));
        }
        problems
    }

    /// An audited write of `env` through the store, as its owner: must still work after any attack.
    async fn audited_write(&self, env: EnvironmentId, owner: IdentityId) -> Result<(), StoreError> {
        let mut tx = self
            .store
            .tenant_as_identity(env, owner, None, meta())
            .await?;
        tx.audit(AuditEvent::success(
            "project.updated",
            "project",
            Uuid::now_v7(),
        ))
        .await?;
        tx.commit().await
    }
}

/// Rows of one environment in one table, counted by the calling role under its policies (the
/// table name is quoted by format('%I') inside the database).
const ROWS_OF_ENVIRONMENT: &str = "SELECT (xpath('/row/n/text()', query_to_xml(format('SELECT count(*) AS n FROM public.%I WHERE environment_id = %L', $1::text, $2::text), false, true, '')))[1]::text::bigint";

/// A digest of one table's rows (superuser: no policy applies).
const TABLE_DIGEST: &str = "SELECT COALESCE((xpath('/row/d/text()', query_to_xml(format('SELECT md5(COALESCE(string_agg(to_jsonb(t)::text, '','' ORDER BY to_jsonb(t)::text), '''')) AS d FROM public.%I t', $1::text), false, true, '')))[1]::text, '')";

const INSERT_AUDIT_ROW: &str = "INSERT INTO audit_log (environment_id, seq, audit_id, occurred_at, actor_type, actor_id, action, target_type, target_id, outcome, prev_hash, entry_hash)
     VALUES ($1, $2, $3, now(), 'identity', $4, 'document.deleted', 'document', 'forged', 'success', $5, $6)";

const INSERT_SESSION: &str = "INSERT INTO sessions (session_id, identity_id, token_hash, created_at, expires_at, last_seen_at)
     VALUES ($1, $2, $3, now(), now() + interval '30 days', now())";

const INSERT_MEMBERSHIP: &str =
    "INSERT INTO memberships (environment_id, identity_id, role, created_at, updated_at)
     VALUES ($1, $2, $3, now(), now())";

// ------------------------------------------------------------------------------------------
// 1. Forged context settings.

/// Controls T2, R8: setting the context by hand (environment, identity, permissions, project,
/// token hash, login email index) to another tenant's values shows nothing of that tenant:
/// no titles, names, token hints, memberships, invitations, integrations, audit rows, subject
/// keys or environment keys, and none of its owner's identity, sessions or memberships.
#[tokio::test]
async fn t2_attacker_setting_context_reads_nothing_of_another_tenant() {
    let mut f = Findings::default();
    let w = world().await;
    let mut admin = w.admin().await;
    let b_email_index: String = sqlx::query_scalar(
        "SELECT encode(email_index, 'hex') FROM identities WHERE identity_id = $1",
    )
    .bind(w.b.owner.as_uuid())
    .fetch_one(&mut admin)
    .await
    .unwrap();
    // The victim tenant really has all of this (so "nothing seen" means something).
    for table in [
        "documents",
        "projects",
        "api_tokens",
        "memberships",
        "invitations",
        "integrations",
        "model_keys",
        "audit_log",
        "subject_keys",
        "environment_keys",
        "data_keys",
        "custom_roles",
    ] {
        let n: i64 = sqlx::query_scalar(ROWS_OF_ENVIRONMENT)
            .bind(table)
            .bind(w.b.env.to_string())
            .fetch_one(&mut admin)
            .await
            .unwrap();
        assert!(n > 0, "fixture: B has no {table}");
    }
    let forged: Vec<(&str, String)> = context_of(w.b.env, w.b.owner)
        .into_iter()
        .chain([
            ("portcullis.token_hash", w.b_token.1.to_hex()),
            ("portcullis.login_email_index", b_email_index),
            ("portcullis.login_email", "owner@beta.test".to_owned()),
        ])
        .collect();
    let mut footholds = w.footholds(w.a.owner).await;
    footholds.push(("api token request", w.token(&w.a_token.1).await));
    for (how, mut req) in footholds {
        let c = req.conn();
        // One setting at a time (each undone before the next), then all together.
        for one in &forged {
            probe_point(c).await;
            forge(c, std::slice::from_ref(one)).await;
            let seen = w.leaks(c, w.b.env, &[w.b.owner]).await;
            f.check(
                seen.is_empty(),
                format!("{how}, only {} forged: {seen:#?}", one.0),
            );
            undo_probe(c).await;
        }
        forge(c, &forged).await;
        let seen = w.leaks(c, w.b.env, &[w.b.owner]).await;
        f.check(
            seen.is_empty(),
            format!("{how}, whole context forged: {seen:#?}"),
        );
        req.commit().await.unwrap();
    }
    f.finish();
}

/// The setting names a context may live in: today's, and any `portcullis.*` literal the
/// schema's functions mention (the signed context's), as an attacker reading pg_proc finds them.
const CONTEXT_SETTING_NAMES: &str = "SELECT DISTINCT m[1] FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace,
         regexp_matches(p.prosrc, '''(portcullis\\.[a-z_]+)''', 'g') AS m
   WHERE n.nspname LIKE 'portcullis%'
  UNION SELECT unnest(ARRAY['portcullis.environment_id','portcullis.identity_id','portcullis.permissions',
                            'portcullis.project_id','portcullis.token_hash','portcullis.login_email',
                            'portcullis.login_email_index','portcullis.context','portcullis.context_seal',
                            'portcullis.context_signature','portcullis.signature'])";

/// Every context setting that has a value in this transaction.
async fn context_values(conn: &mut PgConnection) -> Vec<(String, String)> {
    let names: Vec<String> = sqlx::query_scalar(CONTEXT_SETTING_NAMES)
        .fetch_all(&mut *conn)
        .await
        .unwrap();
    let mut out = vec![];
    for name in names {
        let v: Option<String> = sqlx::query_scalar("SELECT current_setting($1, true)")
            .bind(&name)
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            out.push((name, v));
        }
    }
    out
}

/// Replays a copied context: sets every value, and offers every pair of them to the guard.
async fn replay(conn: &mut PgConnection, values: &[(String, String)]) {
    for (name, value) in values {
        let _ = attempt(
            conn,
            "SELECT set_config($1, $2, true)",
            &args![name.clone(), value.clone()],
        )
        .await;
    }
    for (_, payload) in values {
        for (_, seal) in values {
            let _ = attempt(
                conn,
                "SELECT portcullis_guard.enter($1::text, $2::text)",
                &args![payload.clone(), seal.clone()],
            )
            .await;
        }
    }
}

/// Control T2: a context value copied from another transaction (the victim's) is worthless in
/// a later transaction, on another connection or on the same backend: nothing of the victim's
/// tenant is seen.
#[tokio::test]
async fn t2_attacker_replaying_a_context_from_another_transaction_reads_nothing() {
    let mut f = Findings::default();
    let db = TestDb::new().await;
    // One connection: the replay runs on the very backend the victim's transaction ran on.
    let pool = bootstrap::runtime_pool(&db.runtime, 1).await.unwrap();
    let store = Store::new(pool, db.context_key().await)
        .with_subject_keys(vault().subject_keys())
        .with_sequencer(db.sequencer().await);
    let w = world_on(db, store).await;

    let mut victim = w.member(w.b.env, w.b.owner).await;
    let values = context_values(victim.conn()).await;
    assert!(
        !values.is_empty(),
        "the victim's transaction has no context setting"
    );
    let victim_pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(victim.conn())
        .await
        .unwrap();
    // The victim itself sees its own tenant (the copy is of a working context).
    assert!(!w.leaks(victim.conn(), w.b.env, &[]).await.is_empty());
    victim.commit().await.unwrap();

    // In the attacker's own request, on the same backend.
    let mut req = w.member(w.a.env, w.a.owner).await;
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(req.conn())
        .await
        .unwrap();
    assert_eq!(
        pid, victim_pid,
        "the replay should run on the victim's backend"
    );
    replay(req.conn(), &values).await;
    let seen = w.leaks(req.conn(), w.b.env, &[w.b.owner]).await;
    f.check(
        seen.is_empty(),
        format!("replayed in a later request: {seen:#?}"),
    );
    req.commit().await.unwrap();

    // On a connection of its own, with no request context at all.
    let mut conn = w.db.runtime_conn().await;
    let mut tx = conn.begin().await.unwrap();
    replay(&mut tx, &values).await;
    let seen = w.leaks(&mut tx, w.b.env, &[w.b.owner]).await;
    f.check(
        seen.is_empty(),
        format!("replayed on another connection: {seen:#?}"),
    );
    tx.rollback().await.unwrap();
    f.finish();
}

// ------------------------------------------------------------------------------------------
// 2. Sessions.

/// Control E3: no session can be minted for another identity (here the other tenant's owner,
/// with the hash of a token the attacker holds), nor can the attacker's own session be
/// re-pointed at that identity, with or without forging the identity setting.
#[tokio::test]
async fn e3_attacker_cannot_insert_a_session_for_another_identity() {
    let mut f = Findings::default();
    let w = world().await;
    let before = w.snapshot().await;
    let own = w.sessions[&w.viewer.as_uuid()];
    let mut minted = vec![];
    for (how, mut req) in w.footholds(w.viewer).await {
        let c = req.conn();
        let h = new_token_hash();
        let r = attempt(c, INSERT_SESSION, &args![Uuid::now_v7(), w.b.owner, &h]).await;
        f.refused(format!("{how}: session for B's owner"), &r);
        minted.push(h);
        forge(c, &[("portcullis.identity_id", w.b.owner.to_string())]).await;
        let h = new_token_hash();
        let r = attempt(c, INSERT_SESSION, &args![Uuid::now_v7(), w.b.owner, &h]).await;
        f.refused(format!("{how}: session for B's owner, identity forged"), &r);
        minted.push(h);
        forge(c, &[("portcullis.token_hash", own.to_hex())]).await;
        let r = attempt(
            c,
            "UPDATE sessions SET identity_id = $1 WHERE token_hash = $2",
            &args![w.b.owner, &own],
        )
        .await;
        f.no_effect(format!("{how}: own session re-pointed at B's owner"), &r);
        req.commit().await.unwrap();
    }
    for h in &minted {
        f.check(
            !w.exists("SELECT 1 FROM sessions WHERE token_hash = $1", &args![h])
                .await,
            "a minted session exists".to_owned(),
        );
    }
    w.assert_unchanged(&mut f, &before).await;
    f.finish();
}

/// Control E3: a session is created only right after a password or SSO check; inside an
/// ordinary request (tenant or account) the attacker cannot even create one for itself.
#[tokio::test]
async fn e3_attacker_cannot_insert_a_session_for_itself_from_a_request() {
    let mut f = Findings::default();
    let w = world().await;
    let before = w.snapshot().await;
    let mut minted = vec![];
    let mut footholds = w.footholds(w.viewer).await;
    footholds.push(("api token request", w.token(&w.a_token.1).await));
    for (how, mut req) in footholds {
        let h = new_token_hash();
        let r = attempt(
            req.conn(),
            INSERT_SESSION,
            &args![Uuid::now_v7(), w.viewer, &h],
        )
        .await;
        f.refused(format!("{how}: session for itself"), &r);
        minted.push(h);
        req.commit().await.unwrap();
    }
    for h in &minted {
        f.check(
            !w.exists("SELECT 1 FROM sessions WHERE token_hash = $1", &args![h])
                .await,
            "a session minted for itself exists".to_owned(),
        );
    }
    w.assert_unchanged(&mut f, &before).await;
    f.finish();
}

// ------------------------------------------------------------------------------------------
// 3. Memberships.

/// Controls R1, R2, R8: a viewer cannot make itself (or an account it controls) a member of
/// another environment or an admin of its own, nor raise its own role, nor take ownership by
/// demoting the owner, with or without forged settings.
#[tokio::test]
async fn r1_attacker_cannot_grant_itself_a_membership_or_a_higher_role() {
    let mut f = Findings::default();
    let w = world().await;
    let before = w.snapshot().await;
    for (how, mut req) in w.footholds(w.viewer).await {
        let c = req.conn();
        let r = attempt(c, INSERT_MEMBERSHIP, &args![w.b.env, w.viewer, "admin"]).await;
        f.refused(format!("{how}: admin of B"), &r);
        let r = attempt(c, INSERT_MEMBERSHIP, &args![w.a.env, w.sock, "admin"]).await;
        f.refused(format!("{how}: sock puppet admin of A"), &r);
        let r = attempt(
            c,
            "INSERT INTO memberships (environment_id, identity_id, role, created_at, updated_at)
             VALUES ($1, $2, 'admin', now(), now())
             ON CONFLICT (environment_id, identity_id) DO UPDATE SET role = 'admin'",
            &args![w.a.env, w.viewer],
        )
        .await;
        f.no_effect(format!("{how}: upsert of its own membership"), &r);
        let r = attempt(
            c,
            "UPDATE memberships SET role = 'admin' WHERE environment_id = $1 AND identity_id = $2",
            &args![w.a.env, w.viewer],
        )
        .await;
        f.no_effect(format!("{how}: own role raised to admin"), &r);

        forge(c, &all_permissions_setting()).await;
        let r = attempt(
            c,
            "UPDATE memberships SET role = 'admin' WHERE environment_id = $1 AND identity_id = $2",
            &args![w.a.env, w.viewer],
        )
        .await;
        f.no_effect(format!("{how}: own role raised, permissions forged"), &r);
        let r = attempt(c, INSERT_MEMBERSHIP, &args![w.a.env, w.sock, "admin"]).await;
        f.refused(
            format!("{how}: sock puppet admin of A, permissions forged"),
            &r,
        );

        forge(c, &context_of(w.b.env, w.viewer)).await;
        let r = attempt(c, INSERT_MEMBERSHIP, &args![w.b.env, w.viewer, "admin"]).await;
        f.refused(format!("{how}: admin of B, context forged"), &r);
        req.commit().await.unwrap();
    }
    // The takeover: demote the owner and promote oneself in one transaction (the one-owner
    // trigger is satisfied at commit).
    let mut req = w.member(w.a.env, w.viewer).await;
    let c = req.conn();
    forge(c, &all_permissions_setting()).await;
    let r = attempt(
        c,
        "UPDATE memberships SET role = 'admin' WHERE environment_id = $1 AND identity_id = $2",
        &args![w.a.env, w.a.owner],
    )
    .await;
    f.no_effect("owner demoted", &r);
    let r = attempt(
        c,
        "UPDATE memberships SET role = 'owner' WHERE environment_id = $1 AND identity_id = $2",
        &args![w.a.env, w.viewer],
    )
    .await;
    f.no_effect("viewer promoted to owner", &r);
    let _ = req.commit().await;
    f.check(!w.exists(
            "SELECT 1 FROM memberships WHERE identity_id IN ($1, $2) AND role IN ('owner', 'admin')",
            &args![w.viewer, w.sock],
        )
        .await, "the viewer or its sock puppet holds owner or admin".to_owned());
    w.assert_unchanged(&mut f, &before).await;
    f.finish();
}

/// Controls R1, R8: an admin (members.manage, no ownership.transfer) cannot take the
/// environment's ownership by rewriting memberships; only the owner can transfer it.
#[tokio::test]
async fn r1_admin_attacker_cannot_take_ownership_without_ownership_transfer() {
    let mut f = Findings::default();
    let w = world().await;
    let before = w.snapshot().await;
    let mut req = w.member(w.a.env, w.admin).await;
    let c = req.conn();
    let r = attempt(
        c,
        "UPDATE memberships SET role = 'admin' WHERE environment_id = $1 AND identity_id = $2",
        &args![w.a.env, w.a.owner],
    )
    .await;
    f.no_effect("owner demoted by an admin", &r);
    let r = attempt(
        c,
        "UPDATE memberships SET role = 'owner' WHERE environment_id = $1 AND identity_id = $2",
        &args![w.a.env, w.admin],
    )
    .await;
    f.no_effect("admin promoted itself to owner", &r);
    let _ = req.commit().await;
    f.check(w.exists(
            "SELECT 1 FROM memberships WHERE environment_id = $1 AND identity_id = $2 AND role = 'owner'",
            &args![w.a.env, w.a.owner],
        )
        .await, "A's owner is no longer its owner".to_owned());
    w.assert_unchanged(&mut f, &before).await;
    f.finish();
}

// ------------------------------------------------------------------------------------------
// 4. Permissions.

/// Control R8 (database layer): granting one's own context documents.write (and delete) by
/// setting `portcullis.permissions` does not let a viewer, or a viewer-role API token, insert,
/// update or delete a document.
#[tokio::test]
async fn r8_attacker_granting_itself_documents_write_cannot_write_documents() {
    let mut f = Findings::default();
    let w = world().await;
    let before = w.snapshot().await;
    let mut footholds = w.footholds(w.viewer).await;
    footholds.truncate(1);
    footholds.push(("api token request", w.token(&w.a_token.1).await));
    for (how, mut req) in footholds {
        let c = req.conn();
        forge(
            c,
            &[
                (
                    "portcullis.permissions",
                    "documents.read,documents.write,documents.delete".into(),
                ),
                ("portcullis.project_id", String::new()),
            ],
        )
        .await;
        let r = attempt(
            c,
            "INSERT INTO documents (environment_id, document_id, project_id, title, body, created_by, created_at, updated_at)
             VALUES ($1, $2, $3, 'planted', 'x', $4, now(), now())",
            &args![w.a.env, DocumentId::new().as_uuid(), w.a.project, w.viewer],
        )
        .await;
        f.refused(format!("{how}: document inserted"), &r);
        let r = attempt(
            c,
            "UPDATE documents SET title = 'defaced' WHERE environment_id = $1",
            &args![w.a.env],
        )
        .await;
        f.no_effect(format!("{how}: documents updated"), &r);
        let r = attempt(
            c,
            "DELETE FROM documents WHERE environment_id = $1",
            &args![w.a.env],
        )
        .await;
        f.no_effect(format!("{how}: documents deleted"), &r);
        forge(c, &all_permissions_setting()).await;
        let r = attempt(
            c,
            "DELETE FROM documents WHERE environment_id = $1",
            &args![w.a.env],
        )
        .await;
        f.no_effect(
            format!("{how}: documents deleted, all permissions forged"),
            &r,
        );
        req.commit().await.unwrap();
    }
    w.assert_unchanged(&mut f, &before).await;
    f.finish();
}

// ------------------------------------------------------------------------------------------
// 5. Platform scope and enumeration.

/// Control T2: the platform audit scope (nil environment id: every login and sign-up) is not
/// readable from a request, and no identity, environment or membership beyond the caller's
/// own can be enumerated, whatever the attacker sets.
#[tokio::test]
async fn t2_attacker_cannot_read_the_platform_audit_scope_or_enumerate_identities() {
    let mut f = Findings::default();
    let w = world().await;
    let mut admin = w.admin().await;
    let platform_entries: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE environment_id = $1")
            .bind(NIL)
            .fetch_one(&mut admin)
            .await
            .unwrap();
    assert!(
        platform_entries >= 4,
        "fixture: the platform scope has entries"
    );
    let a_members: Vec<Uuid> =
        sqlx::query_scalar("SELECT identity_id FROM memberships WHERE environment_id = $1")
            .bind(w.a.env.as_uuid())
            .fetch_all(&mut admin)
            .await
            .unwrap();
    let everyone: Vec<Uuid> = sqlx::query_scalar("SELECT identity_id FROM identities")
        .fetch_all(&mut admin)
        .await
        .unwrap();

    let variants: Vec<(&str, Vec<(&str, String)>)> = vec![
        ("nothing forged", vec![]),
        (
            "platform scope forged",
            vec![
                ("portcullis.environment_id", NIL.to_string()),
                ("portcullis.permissions", all_permissions()),
            ],
        ),
        (
            "no environment",
            vec![
                ("portcullis.environment_id", String::new()),
                ("portcullis.permissions", all_permissions()),
            ],
        ),
        (
            "B's owner, no environment",
            vec![
                ("portcullis.environment_id", String::new()),
                ("portcullis.identity_id", w.b.owner.to_string()),
            ],
        ),
    ];
    for (how, mut req) in w.footholds(w.viewer).await {
        // What the caller may legitimately see: the members of A inside A; itself outside.
        let (people, envs): (Vec<Uuid>, Vec<Uuid>) = if how == "tenant request" {
            (a_members.clone(), vec![w.a.env.as_uuid()])
        } else {
            (vec![w.viewer.as_uuid()], vec![w.a.env.as_uuid()])
        };
        // An account request appends to the platform chain (logins, password changes) and
        // seals its own metadata there: it may reach the platform head and its own subject
        // key. Nothing else of the platform scope is any request's.
        let account = how == "account request";
        let c = req.conn();
        for (variant, settings) in &variants {
            probe_point(c).await;
            forge(c, settings).await;
            // An account request reads its own identity's platform entries (its sign-in
            // history, policy audit_log_own_platform), whatever it forges; nobody else's.
            let seen = seen_ids(
                c,
                "SELECT audit_id FROM audit_log WHERE environment_id = $1
                    AND NOT (actor_type = 'identity' AND actor_id IS NOT DISTINCT FROM $2)",
                &args![NIL, if account { w.viewer.as_uuid() } else { NIL }],
            )
            .await;
            f.check(
                seen.is_empty(),
                format!("{how}, {variant}: {} platform audit entries", seen.len()),
            );
            let seen = seen_ids(
                c,
                "SELECT subject_id FROM subject_keys WHERE environment_id = $1",
                &args![NIL],
            )
            .await;
            let others: Vec<&Uuid> = seen
                .iter()
                .filter(|s| !(account && **s == w.viewer.as_uuid()))
                .collect();
            f.check(
                others.is_empty(),
                format!(
                    "{how}, {variant}: platform subject keys of {} other identities (enumeration)",
                    others.len()
                ),
            );
            let seen = seen_ids(
                c,
                "SELECT environment_id FROM audit_heads WHERE environment_id = $1",
                &args![NIL],
            )
            .await;
            f.check(
                account || seen.is_empty(),
                format!("{how}, {variant}: the platform audit head"),
            );
            let ids = seen_ids(c, "SELECT identity_id FROM identities", &[]).await;
            let extra: Vec<&Uuid> = ids.iter().filter(|i| !people.contains(i)).collect();
            f.check(
                extra.is_empty(),
                format!(
                    "{how}, {variant}: enumerated {} of {} identities",
                    extra.len(),
                    everyone.len()
                ),
            );
            let ids = seen_ids(c, "SELECT environment_id FROM environments", &[]).await;
            let extra: Vec<&Uuid> = ids.iter().filter(|i| !envs.contains(i)).collect();
            f.check(
                extra.is_empty(),
                format!("{how}, {variant}: enumerated environments {extra:?}"),
            );
            let ids = seen_ids(c, "SELECT identity_id FROM memberships", &[]).await;
            let extra: Vec<&Uuid> = ids.iter().filter(|i| !people.contains(i)).collect();
            f.check(
                extra.is_empty(),
                format!("{how}, {variant}: enumerated memberships of {extra:?}"),
            );
            let ids = seen_ids(c, "SELECT environment_id FROM memberships", &[]).await;
            f.check(
                ids.iter().all(|e| envs.contains(e)),
                format!("{how}, {variant}: memberships of other environments"),
            );
            undo_probe(c).await;
        }
        req.commit().await.unwrap();
    }
    f.finish();
}

// ------------------------------------------------------------------------------------------
// 6. Other people's sessions.

/// Control E3: other people's sessions (a colleague's in the same environment, another
/// tenant's owner's) can be neither revoked, extended nor deleted, even with the victim's
/// identity or session hash forged into the context.
#[tokio::test]
async fn e3_attacker_cannot_revoke_or_delete_other_peoples_sessions() {
    let mut f = Findings::default();
    let w = world().await;
    let before = w.snapshot().await;
    for (how, mut req) in w.footholds(w.viewer).await {
        let c = req.conn();
        for victim in [w.a.owner, w.b.owner] {
            let hash = w.sessions[&victim.as_uuid()];
            let forgeries: Vec<Vec<(&str, String)>> = vec![
                vec![],
                vec![("portcullis.identity_id", victim.to_string())],
                vec![("portcullis.token_hash", hash.to_hex())],
            ];
            for settings in forgeries {
                forge(c, &settings).await;
                let forged = settings.first().map_or("nothing", |s| s.0);
                for sql in [
                    "UPDATE sessions SET revoked_at = now() WHERE identity_id = $1",
                    "UPDATE sessions SET expires_at = now() + interval '10 years' WHERE identity_id = $1",
                    "DELETE FROM sessions WHERE identity_id = $1",
                ] {
                    let r = attempt(c, sql, &args![victim]).await;
                    f.no_effect(format!("{how}, {forged} forged: {sql}"), &r);
                }
            }
        }
        req.commit().await.unwrap();
    }
    w.assert_unchanged(&mut f, &before).await;
    f.finish();
}

// ------------------------------------------------------------------------------------------
// 7. Audit chains.

/// Control L3: no entry can be slipped into another tenant's chain at its next sequence
/// number (which would make every later write of that tenant fail), nor can its head be moved;
/// that tenant still writes and its chain still verifies.
#[tokio::test]
async fn l3_attacker_cannot_append_to_another_tenants_audit_chain() {
    let mut f = Findings::default();
    let w = world().await;
    let before = w.snapshot().await;
    let (seq, head_hash) = w.head(w.b.env.as_uuid()).await;
    let mut forged_ids = vec![];
    for forged in [false, true] {
        let mut req = w.member(w.a.env, w.a.owner).await;
        let c = req.conn();
        if forged {
            forge(c, &context_of(w.b.env, w.b.owner)).await;
        }
        let id = Uuid::now_v7();
        forged_ids.push(id);
        let stmt = attempt(
            c,
            INSERT_AUDIT_ROW,
            &args![
                w.b.env,
                seq + 1,
                id,
                w.b.owner,
                head_hash.clone(),
                random_bytes()
            ],
        )
        .await;
        let head = attempt(
            c,
            "UPDATE audit_heads SET seq = seq + 1, head_hash = $2 WHERE environment_id = $1",
            &args![w.b.env, random_bytes()],
        )
        .await;
        f.no_effect(format!("B's head moved (context forged: {forged})"), &head);
        // The other append-only rows of B's scope: a planted Merkle node (kept by the writer's
        // ON CONFLICT DO NOTHING, so B's later proofs would fail), a forged checkpoint, and
        // entries of the two other streams (L1), which B's chain does not commit to.
        for (what, sql, args) in [
            (
                "subtree node",
                "INSERT INTO audit_subtrees (environment_id, level, node_index, hash) VALUES ($1, 8, 0, $2)",
                args![w.b.env, random_bytes()],
            ),
            (
                "checkpoint",
                "INSERT INTO audit_checkpoints (environment_id, tree_size, root_hash, head_hash, issued_at, key_id, signed)
                 VALUES ($1, $2, $3, $3, now(), 'forged', 'forged')",
                args![w.b.env, seq + 1, random_bytes()],
            ),
            (
                "intelligence log entry",
                "INSERT INTO intelligence_log (environment_id, entry_id, occurred_at, actor_type, model, key_source, provider,
                                               input_ciphertext, content_key_version, input_tokens, output_tokens, cost_micros, success)
                 VALUES ($1, $2, now(), 'system', 'forged', 'platform', 'anthropic', '\\x00', 1, 0, 0, 0, true)",
                args![w.b.env, Uuid::now_v7()],
            ),
            (
                "kernel trace step",
                "INSERT INTO kernel_trace (environment_id, trace_id, step, occurred_at, kind) VALUES ($1, $2, 1, now(), 'note')",
                args![w.b.env, Uuid::now_v7()],
            ),
        ] {
            let r = attempt(c, sql, &args).await;
            f.refused(format!("B's {what} (context forged: {forged})"), &r);
        }
        let commit = req.commit().await;
        f.check(
            stmt.is_err() || commit.is_err(),
            format!("entry at B's next seq accepted (context forged: {forged}): {stmt:?}"),
        );
    }
    for id in forged_ids {
        f.check(
            !w.exists("SELECT 1 FROM audit_log WHERE audit_id = $1", &args![id])
                .await,
            "a forged entry of B's chain exists".to_owned(),
        );
    }
    w.assert_unchanged(&mut f, &before).await;
    let next = w.audited_write(w.b.env, w.b.owner).await;
    f.check(
        next.is_ok(),
        format!("B cannot write after the attack: {next:?}"),
    );
    let problems = w.chain_problems(w.b.env.as_uuid()).await;
    f.check(problems.is_empty(), format!("{problems:#?}"));
    f.finish();
}

/// Control L3: inside its own scope the attacker cannot leave the chain broken for later
/// writers: an entry at head+1 without advancing the head, a head moved to an arbitrary
/// sequence number or hash, and an entry that impersonates another actor are refused; a
/// well-formed append as itself either is refused or is flagged by verification, and the
/// environment's next audited write succeeds in every case.
#[tokio::test]
async fn l3_attacker_cannot_break_its_own_scopes_audit_chain() {
    let mut f = Findings::default();
    for attack in OwnChainAttack::ALL {
        // A world per attack: one that gets through must not spoil the next.
        let w = world().await;
        let env = w.a.env;
        let before = w.snapshot().await;
        let (seq, head_hash) = w.head(env.as_uuid()).await;
        let mut req = w.member(env, w.viewer).await;
        let c = req.conn();
        forge(c, &all_permissions_setting()).await;
        let id = Uuid::now_v7();
        let entry = random_bytes();
        let actor = match attack {
            OwnChainAttack::Impersonating => w.a.owner,
            _ => w.viewer,
        };
        let insert = args![env, seq + 1, id, actor, head_hash.clone(), entry.clone()];
        // The head as a well-formed append leaves it: next sequence number, the entry's hash,
        // a frontier of the right length (one node per set bit of the size).
        let advance = args![env, seq + 1, entry.clone()];
        let results = match attack {
            OwnChainAttack::EntryOnly => vec![attempt(c, INSERT_AUDIT_ROW, &insert).await],
            OwnChainAttack::HeadSeq => vec![
                attempt(
                    c,
                    "UPDATE audit_heads SET seq = seq + 5 WHERE environment_id = $1",
                    &args![env],
                )
                .await,
            ],
            OwnChainAttack::HeadHash => vec![
                attempt(
                    c,
                    "UPDATE audit_heads SET head_hash = $2 WHERE environment_id = $1",
                    &args![env, random_bytes()],
                )
                .await,
            ],
            OwnChainAttack::Impersonating | OwnChainAttack::TwoStatements => vec![
                attempt(c, INSERT_AUDIT_ROW, &insert).await,
                attempt(c, ADVANCE_HEAD, &advance).await,
            ],
            OwnChainAttack::OneStatement => vec![
                attempt(
                    c,
                    APPEND_IN_ONE_STATEMENT,
                    &args![env, seq + 1, id, actor, head_hash.clone(), entry.clone()],
                )
                .await,
            ],
        };
        let commit = req.commit().await;
        let landed = results.iter().all(|r| matches!(r, Ok(n) if *n > 0)) && commit.is_ok();
        let name = attack.name();
        if attack.may_land_as_evidence() && landed {
            // Allowed by the design only as evidence: verification names the forged entry.
            let problems = w.chain_problems(env.as_uuid()).await;
            f.check(
                problems
                    .iter()
                    .any(|p| p.contains(&format!("entry {}", seq + 1))),
                format!("{name}: accepted and not flagged: {problems:#?}"),
            );
        } else {
            f.check(
                !landed,
                format!("{name}: accepted ({results:?}, commit {commit:?})"),
            );
            f.check(
                !w.exists("SELECT 1 FROM audit_log WHERE audit_id = $1", &args![id])
                    .await,
                format!("{name}: the forged entry exists"),
            );
            w.assert_unchanged(&mut f, &before).await;
        }
        let next = w.audited_write(env, w.a.owner).await;
        f.check(
            next.is_ok(),
            format!("{name}: the next audited write of A fails: {next:?}"),
        );
    }
    f.finish();
}

#[derive(Clone, Copy)]
enum OwnChainAttack {
    EntryOnly,
    HeadSeq,
    HeadHash,
    Impersonating,
    TwoStatements,
    OneStatement,
}

impl OwnChainAttack {
    const ALL: [OwnChainAttack; 6] = [
        OwnChainAttack::EntryOnly,
        OwnChainAttack::HeadSeq,
        OwnChainAttack::HeadHash,
        OwnChainAttack::Impersonating,
        OwnChainAttack::TwoStatements,
        OwnChainAttack::OneStatement,
    ];

    fn name(self) -> &'static str {
        match self {
            OwnChainAttack::EntryOnly => "entry at head+1, head not advanced",
            OwnChainAttack::HeadSeq => "head seq advanced by 5",
            OwnChainAttack::HeadHash => "head hash replaced",
            OwnChainAttack::Impersonating => "entry in the owner's name, head advanced",
            OwnChainAttack::TwoStatements => "append as itself in two statements (bad entry hash)",
            OwnChainAttack::OneStatement => "append as itself in one statement (bad entry hash)",
        }
    }

    /// An append in the caller's own name that follows the head: the database cannot check the
    /// entry hash, so the design may accept it; verification must then flag it.
    fn may_land_as_evidence(self) -> bool {
        matches!(
            self,
            OwnChainAttack::TwoStatements | OwnChainAttack::OneStatement
        )
    }
}

const ADVANCE_HEAD: &str = "UPDATE audit_heads SET seq = $2, head_hash = $3,
            frontier = array_fill($3::bytea, ARRAY[bit_count($2::bigint::bit(64))::int])
      WHERE environment_id = $1";

/// The writer's own shape: the entry and the head in one statement.
const APPEND_IN_ONE_STATEMENT: &str = "WITH entry AS (
         INSERT INTO audit_log (environment_id, seq, audit_id, occurred_at, actor_type, actor_id, action, target_type,
                                target_id, outcome, prev_hash, entry_hash)
         VALUES ($1, $2, $3, now(), 'identity', $4, 'document.deleted', 'document', 'forged', 'success', $5, $6)
     )
     UPDATE audit_heads SET seq = $2, head_hash = $6,
            frontier = array_fill($6::bytea, ARRAY[bit_count($2::bigint::bit(64))::int])
      WHERE environment_id = $1 AND seq = $2 - 1";

// ------------------------------------------------------------------------------------------
// 8. Temporary objects and search_path.

/// Control T7: the runtime role has no TEMP privilege and can create nothing in the schemas,
/// so it can neither shadow `memberships` with a temporary table (which the deferred one-owner
/// trigger would read: an environment committed without an owner) nor plant functions or
/// tables on a search_path it chose.
#[tokio::test]
async fn t7_attacker_cannot_shadow_tables_or_plant_objects_on_the_search_path() {
    let mut f = Findings::default();
    let w = world().await;
    let before = w.snapshot().await;
    let mut req = w.member(w.a.env, w.a.owner).await;
    let c = req.conn();
    let r = attempt(
        c,
        "CREATE TEMP TABLE memberships ON COMMIT DROP AS SELECT * FROM public.memberships",
        &[],
    )
    .await;
    f.refused("temporary memberships table", &r);
    // Whatever happened above: removing the owner must still be refused (at commit at the
    // latest).
    let _ = attempt(
        c,
        "DELETE FROM public.memberships WHERE environment_id = $1 AND role = 'owner'",
        &args![w.a.env],
    )
    .await;
    let _ = req.commit().await;
    f.check(w.exists(
            "SELECT 1 FROM memberships WHERE environment_id = $1 AND identity_id = $2 AND role = 'owner'",
            &args![w.a.env, w.a.owner],
        )
        .await, "environment A lost its owner".to_owned());

    let mut req = w.member(w.a.env, w.viewer).await;
    let c = req.conn();
    let _ = attempt(
        c,
        "SET LOCAL search_path = pg_temp, portcullis, public",
        &[],
    )
    .await;
    for sql in [
        "CREATE TEMP TABLE identities (identity_id uuid)",
        "CREATE TABLE public.memberships_shadow (environment_id uuid)",
        "CREATE TABLE portcullis.memberships (environment_id uuid)",
        "CREATE FUNCTION public.has_permission(text) RETURNS boolean LANGUAGE sql AS 'SELECT true'",
        "CREATE OR REPLACE FUNCTION portcullis.has_permission(wanted text) RETURNS boolean LANGUAGE sql STABLE AS 'SELECT true'",
        "CREATE FUNCTION pg_temp.has_permission(text) RETURNS boolean LANGUAGE sql AS 'SELECT true'",
        "CREATE SCHEMA evil",
        "CREATE VIEW public.all_documents AS SELECT * FROM documents",
        "ALTER FUNCTION portcullis.require_owner() SET search_path = pg_temp",
        "ALTER TABLE memberships DISABLE TRIGGER memberships_exactly_one_owner",
        "ALTER TABLE documents NO FORCE ROW LEVEL SECURITY",
        "DROP POLICY documents_read_permission ON documents",
    ] {
        let r = attempt(c, sql, &[]).await;
        f.refused(sql, &r);
    }
    req.commit().await.unwrap();
    w.assert_unchanged(&mut f, &before).await;
    f.finish();
}

/// Controls T1, T7: a temporary table lives as long as the pooled connection, so without the
/// TEMP revocation an attacker's `memberships` shadow would answer the membership check of
/// later requests on that connection; here it must not let the attacker enter another tenant.
#[tokio::test]
async fn t1_attacker_temp_table_cannot_fake_a_membership_for_later_requests() {
    let mut f = Findings::default();
    let db = TestDb::new().await;
    let pool = bootstrap::runtime_pool(&db.runtime, 1).await.unwrap();
    let store = Store::new(pool, db.context_key().await)
        .with_subject_keys(vault().subject_keys())
        .with_sequencer(db.sequencer().await);
    let w = world_on(db, store).await;
    let mut req = w.member(w.a.env, w.viewer).await;
    let c = req.conn();
    let r = attempt(
        c,
        "CREATE TEMP TABLE memberships (environment_id uuid, identity_id uuid, role text, custom_role_id uuid,
                                        created_at timestamptz, updated_at timestamptz)",
        &[],
    )
    .await;
    f.refused("temporary memberships table", &r);
    let _ = attempt(
        c,
        "INSERT INTO pg_temp.memberships VALUES ($1, $2, 'owner', NULL, now(), now())",
        &args![w.b.env, w.viewer],
    )
    .await;
    req.commit().await.unwrap();
    // The next request on the same (only) connection.
    let entered = w
        .store
        .tenant_as_identity(w.b.env, w.viewer, None, RequestMeta::default())
        .await;
    match entered {
        Err(StoreError::NotFound) => {}
        Err(e) => f.check(false, format!("unexpected error {e:?}")),
        Ok(mut tx) => {
            let seen = w.leaks(tx.conn_for_tests(), w.b.env, &[]).await;
            f.check(
                false,
                format!("the attacker entered B as its owner and sees {seen:#?}"),
            );
        }
    }
    f.finish();
}

// ------------------------------------------------------------------------------------------
// 9. API tokens.

/// Control E3: a member without tokens.manage can mint no API token (for its environment or
/// another), and cannot extend or widen an existing one, even with forged permissions.
#[tokio::test]
async fn e3_attacker_cannot_mint_or_extend_api_tokens() {
    let mut f = Findings::default();
    let w = world().await;
    let before = w.snapshot().await;
    let mut minted = vec![];
    let insert = "INSERT INTO api_tokens (environment_id, token_id, name, token_hash, hint, role, created_by, created_at)
                  VALUES ($1, $2, 'backdoor', $3, 'xxxx', 'admin', $4, now())";
    let mut footholds = w.footholds(w.viewer).await;
    footholds.truncate(1);
    footholds.push(("api token request", w.token(&w.a_token.1).await));
    for (how, mut req) in footholds {
        let c = req.conn();
        for (forged, settings) in [
            ("nothing", vec![]),
            (
                "tokens.manage",
                vec![("portcullis.permissions", all_permissions())],
            ),
        ] {
            forge(c, &settings).await;
            let h = new_token_hash();
            minted.push(h);
            let r = attempt(c, insert, &args![w.a.env, Uuid::now_v7(), &h, w.viewer]).await;
            f.refused(format!("{how}, {forged} forged: token for A"), &r);
            let h = new_token_hash();
            minted.push(h);
            let r = attempt(c, insert, &args![w.a.env, Uuid::now_v7(), &h, w.a.owner]).await;
            f.refused(
                format!("{how}, {forged} forged: token for A in the owner's name"),
                &r,
            );
            let r = attempt(
                c,
                "UPDATE api_tokens SET expires_at = NULL, role = 'admin', revoked_at = NULL WHERE environment_id = $1",
                &args![w.a.env],
            )
            .await;
            f.no_effect(format!("{how}, {forged} forged: A's tokens extended"), &r);
        }
        forge(c, &context_of(w.b.env, w.b.owner)).await;
        let h = new_token_hash();
        minted.push(h);
        let r = attempt(c, insert, &args![w.b.env, Uuid::now_v7(), &h, w.b.owner]).await;
        f.refused(format!("{how}, context forged: token for B"), &r);
        let r = attempt(
            c,
            "UPDATE api_tokens SET expires_at = NULL WHERE environment_id = $1",
            &args![w.b.env],
        )
        .await;
        f.no_effect(format!("{how}, context forged: B's tokens extended"), &r);
        req.commit().await.unwrap();
    }
    for h in &minted {
        f.check(
            !w.exists("SELECT 1 FROM api_tokens WHERE token_hash = $1", &args![h])
                .await,
            "a minted API token exists".to_owned(),
        );
    }
    w.assert_unchanged(&mut f, &before).await;
    f.finish();
}

// ------------------------------------------------------------------------------------------
// 10. Invitations.

/// Controls R2, E3: a member without members.manage can create no invitation, and nobody can
/// accept someone else's invitation by writing `accepted_at`, from a tenant request or an
/// account request holding the invitation's hash.
#[tokio::test]
async fn r2_attacker_cannot_create_or_accept_invitations() {
    let mut f = Findings::default();
    let w = world().await;
    let before = w.snapshot().await;
    let insert = "INSERT INTO invitations (environment_id, invitation_id, email, role, token_hash, invited_by, created_at, expires_at)
                  VALUES ($1, $2, 'sock@evil.test', 'admin', $3, $4, now(), now() + interval '7 days')";
    let accept =
        "UPDATE invitations SET accepted_at = now(), accepted_by = $2 WHERE invitation_id = $1";
    let mut minted = vec![];
    for (how, mut req) in w.footholds(w.viewer).await {
        let c = req.conn();
        for (forged, settings) in [
            ("nothing", vec![]),
            ("members.manage", all_permissions_setting()),
        ] {
            forge(c, &settings).await;
            let h = new_token_hash();
            minted.push(h);
            let r = attempt(c, insert, &args![w.a.env, Uuid::now_v7(), &h, w.viewer]).await;
            f.refused(format!("{how}, {forged} forged: invitation to A"), &r);
        }
        forge(c, &[("portcullis.token_hash", w.b_invitation.1.to_hex())]).await;
        let r = attempt(c, accept, &args![w.b_invitation.0.as_uuid(), w.viewer]).await;
        f.no_effect(
            format!("{how}, invitation hash forged: B's invitation accepted"),
            &r,
        );
        forge(c, &context_of(w.b.env, w.viewer)).await;
        let r = attempt(c, accept, &args![w.b_invitation.0.as_uuid(), w.viewer]).await;
        f.no_effect(
            format!("{how}, context forged: B's invitation accepted"),
            &r,
        );
        let h = new_token_hash();
        minted.push(h);
        let r = attempt(c, insert, &args![w.b.env, Uuid::now_v7(), &h, w.b.owner]).await;
        f.refused(format!("{how}, context forged: invitation to B"), &r);
        req.commit().await.unwrap();
    }
    for h in &minted {
        f.check(
            !w.exists("SELECT 1 FROM invitations WHERE token_hash = $1", &args![h])
                .await,
            "a forged invitation exists".to_owned(),
        );
    }
    w.assert_unchanged(&mut f, &before).await;
    f.finish();
}

// ------------------------------------------------------------------------------------------
// 11. Roles, grants, projects, integrations, keys, environments.

/// Control R8 (database layer): without the permission the application checks (roles.manage,
/// projects.manage, integrations.manage, keys.manage, members.manage, environment.manage,
/// environment.delete), a viewer writes none of these, even with all permissions forged.
#[tokio::test]
async fn r8_attacker_cannot_write_roles_grants_projects_integrations_or_keys_without_the_permission(
) {
    let mut f = Findings::default();
    // A world per pass: a write that gets through in the first must not hide the second's.
    for (forged, settings) in [
        ("nothing", vec![]),
        ("all permissions", all_permissions_setting()),
    ] {
        let w = world().await;
        let before = w.snapshot().await;
        let a = w.a.env;
        let writes: Vec<(&str, &str, Vec<Arg>)> = vec![
            (
                "roles.manage",
                "INSERT INTO custom_roles (environment_id, role_id, name, permissions, created_at, updated_at)
                 VALUES ($1, $2, 'escalate', ARRAY['documents.write','members.manage'], now(), now())",
                args![a, Uuid::now_v7()],
            ),
            (
                "roles.manage",
                "UPDATE custom_roles SET permissions = portcullis.known_permissions() WHERE environment_id = $1",
                args![a],
            ),
            (
                "members.manage",
                "UPDATE memberships SET role = 'custom', custom_role_id = $2 WHERE environment_id = $1 AND identity_id = $3",
                args![a, w.a_role.as_uuid(), w.viewer],
            ),
            (
                "projects.manage",
                "INSERT INTO project_grants (environment_id, project_id, identity_id, role, created_at, updated_at)
                 VALUES ($1, $2, $3, 'contributor', now(), now())",
                args![a, w.a.project, w.viewer],
            ),
            (
                "projects.manage",
                "INSERT INTO projects (environment_id, project_id, name, created_by, created_at) VALUES ($1, $2, 'planted', $3, now())",
                args![a, Uuid::now_v7(), w.viewer],
            ),
            ("projects.manage", "UPDATE projects SET name = name || ' (defaced)' WHERE environment_id = $1", args![a]),
            (
                "integrations.manage",
                "INSERT INTO integrations (environment_id, integration_id, kind, name, credentials_ciphertext, credentials_key_version,
                                           credentials_hint, created_by, created_at, updated_at)
                 VALUES ($1, $2, 'webhook', 'exfiltrate', '\\x00', 1, 'xxxx', $3, now(), now())",
                args![a, Uuid::now_v7(), w.viewer],
            ),
            (
                "keys.manage",
                "INSERT INTO model_keys (environment_id, provider, key_ciphertext, key_key_version, key_hint, updated_by, updated_at)
                 VALUES ($1, 'evil', '\\x00', 1, 'xxxx', $2, now())",
                args![a, w.viewer],
            ),
            (
                "keys.manage",
                "UPDATE environment_keys SET kek = '{\"local\":{\"name\":\"attacker\"}}', rotate_after_days = 3650 WHERE environment_id = $1",
                args![a],
            ),
            ("keys.manage", "UPDATE data_keys SET retired_at = now() WHERE environment_id = $1", args![a]),
            (
                "keys.manage",
                "INSERT INTO key_rotation_jobs (environment_id, job_id, target_version, started_at) VALUES ($1, $2, 99, now())",
                args![a, Uuid::now_v7()],
            ),
            ("environment.manage", "UPDATE environments SET name = 'defaced' WHERE environment_id = $1", args![a]),
            ("members.manage", "DELETE FROM subject_keys WHERE environment_id = $1", args![a]),
            ("keys.manage", "DELETE FROM data_keys WHERE environment_id = $1", args![a]),
            ("projects.manage", "DELETE FROM projects WHERE environment_id = $1", args![a]),
            ("roles.manage", "DELETE FROM custom_roles WHERE environment_id = $1", args![a]),
            ("members.manage", "DELETE FROM memberships WHERE environment_id = $1 AND role <> 'owner'", args![a]),
            ("environment.delete", "DELETE FROM environments WHERE environment_id = $1", args![a]),
        ];
        // Destructive writes come last, so each earlier one meets the rows it targets.
        let mut req = w.member(a, w.viewer).await;
        let c = req.conn();
        forge(c, &settings).await;
        for (permission, sql, args) in &writes {
            let r = attempt(c, sql, args).await;
            f.no_effect(format!("{forged} forged, needs {permission}: {sql}"), &r);
        }
        let _ = req.commit().await;
        w.assert_unchanged(&mut f, &before).await;
    }
    f.finish();
}

// ------------------------------------------------------------------------------------------
// 12. The guard.

/// Control T2: the signed context cannot be forged or reached around: entering a forged or
/// edited payload fails (or leaves the context empty), the guard's key is unreadable, the
/// guard's and owner's roles cannot be assumed, and every SECURITY DEFINER function the runtime
/// may call has a fixed search_path and survives hostile input without leaking or changing
/// anything.
#[tokio::test]
async fn t2_attacker_cannot_forge_or_read_the_guard() {
    let mut f = Findings::default();
    let w = world().await;
    let before = w.snapshot().await;
    let mut admin = w.admin().await;
    let guard_tables: Vec<String> = sqlx::query_scalar(
        "SELECT tablename::text FROM pg_tables WHERE schemaname = 'portcullis_guard' ORDER BY 1",
    )
    .fetch_all(&mut admin)
    .await
    .unwrap();
    let has_enter: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                         WHERE n.nspname = 'portcullis_guard' AND p.proname = 'enter')",
    )
    .fetch_one(&mut admin)
    .await
    .unwrap();
    f.check(has_enter && !guard_tables.is_empty(), "no portcullis_guard.enter and key table: the context is not signed at all (plain settings)".to_owned());
    // SECURITY DEFINER functions the runtime may execute, with a NULL-argument call for each.
    let definers: Vec<(String, Option<Vec<String>>, String)> = sqlx::query_as(
        "SELECT p.oid::regprocedure::text, p.proconfig::text[],
                format('SELECT %s(%s)', p.oid::regproc,
                       COALESCE((SELECT string_agg('NULL::' || format_type(t, NULL), ', ')
                                   FROM unnest(p.proargtypes) AS t), ''))
           FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
          WHERE p.prosecdef AND n.nspname NOT IN ('pg_catalog', 'information_schema')
            AND has_function_privilege('portcullis_app', p.oid, 'EXECUTE')",
    )
    .fetch_all(&mut admin)
    .await
    .unwrap();
    for (func, config, _) in &definers {
        let fixed = config
            .as_ref()
            .is_some_and(|c| c.iter().any(|s| s.starts_with("search_path=")));
        f.check(
            fixed,
            format!("{func} is SECURITY DEFINER without a fixed search_path"),
        );
    }

    let mut req = w.member(w.a.env, w.viewer).await;
    let c = req.conn();
    let own = context_values(c).await;
    let hostile_payloads: Vec<String> = [
        serde_json::json!({
            "environment_id": w.b.env, "identity_id": w.b.owner, "permissions": all_permissions(),
            "purpose": "request", "expires_at": "2099-01-01T00:00:00Z"
        })
        .to_string(),
        "'; SELECT set_config('portcullis.permissions', 'documents.write', false); --".to_owned(),
        String::new(),
        "\\x00".to_owned(),
    ]
    .into_iter()
    .chain(own.iter().map(|(_, v)| {
        // The caller's own payload with its environment swapped for B's.
        v.replace(&w.a.env.to_string(), &w.b.env.to_string())
    }))
    .collect();
    let signatures: Vec<String> = vec![
        portcullis_audit::hex::encode(&random_bytes()),
        String::new(),
    ]
    .into_iter()
    .chain(own.iter().map(|(_, v)| v.clone()))
    .collect();
    for payload in &hostile_payloads {
        for sig in &signatures {
            let r = attempt(
                c,
                "SELECT portcullis_guard.enter($1::text, $2::text)",
                &args![payload.clone(), sig.clone()],
            )
            .await;
            if r.is_ok() {
                let seen = w.leaks(c, w.b.env, &[w.b.owner]).await;
                f.check(
                    seen.is_empty(),
                    format!("enter({payload:?}, {sig:?}) accepted: {seen:#?}"),
                );
            }
        }
    }
    for table in &guard_tables {
        let r = attempt_rows(
            c,
            "SELECT query_to_xml(format('SELECT * FROM portcullis_guard.%I', $1::text), false, true, '')",
            &args![table.clone()],
        )
        .await;
        f.check(
            matches!(&r, Err(e) if e.starts_with("42501")),
            format!("the guard's table {table} is not refused for lack of privilege: {r:?}"),
        );
    }
    for role in ["portcullis_guard", "portcullis_owner", "postgres"] {
        let r = attempt_rows(c, "SELECT set_config('role', $1, true)", &args![role]).await;
        f.check(r.is_err(), format!("the role {role} could be assumed"));
    }
    for (func, _, call) in &definers {
        let r = attempt_rows(
            c,
            "SELECT query_to_xml($1, false, true, '')",
            &args![call.clone()],
        )
        .await;
        let seen = w.leaks(c, w.b.env, &[w.b.owner]).await;
        f.check(
            seen.is_empty(),
            format!("{func} with NULL arguments ({r:?}): {seen:#?}"),
        );
    }
    req.commit().await.unwrap();
    w.assert_unchanged(&mut f, &before).await;
    f.finish();
}

// ------------------------------------------------------------------------------------------
// 13. Installation and environments.

/// Controls T2, E3: from a request, the installation's setup token and completion mark cannot
/// be written (before setup that would hand the first owner to the attacker; after, reopen
/// setup), and no environment can be created outside the environment-creation flow.
#[tokio::test]
async fn t2_attacker_cannot_touch_the_installation_or_create_environments() {
    let mut f = Findings::default();
    let w = world().await;
    let own_setup_token = TokenHash::of("pcs_setup_attacker");
    for setup_done in [false, true] {
        if setup_done {
            let mut admin = w.admin().await;
            sqlx::query(
                "UPDATE installation SET setup_completed_at = now(), setup_token_hash = NULL",
            )
            .execute(&mut admin)
            .await
            .unwrap();
        }
        let before = w.snapshot().await;
        let new_env = EnvironmentId::new();
        for (how, mut req) in w.footholds(w.viewer).await {
            let c = req.conn();
            for sql in [
                "UPDATE installation SET setup_token_hash = $1",
                "UPDATE installation SET setup_completed_at = NULL, setup_token_hash = $1",
            ] {
                let r = attempt(c, sql, &args![&own_setup_token]).await;
                f.no_effect(format!("{how}, setup done: {setup_done}: {sql}"), &r);
            }
            let r = attempt(c, "UPDATE installation SET setup_completed_at = now()", &[]).await;
            f.no_effect(
                format!("{how}, setup done: {setup_done}: setup marked complete"),
                &r,
            );
            for settings in [vec![], context_of(new_env, w.viewer)] {
                forge(c, &settings).await;
                let r = attempt(
                    c,
                    "INSERT INTO environments (environment_id, name, region, created_by, created_at) VALUES ($1, 'shadow', 'eu-central', $2, now())",
                    &args![new_env, w.viewer],
                )
                .await;
                f.refused(format!("{how}: environment created"), &r);
                let _ = attempt(c, INSERT_MEMBERSHIP, &args![new_env, w.viewer, "owner"]).await;
            }
            let _ = req.commit().await;
        }
        f.check(
            !w.exists(
                "SELECT 1 FROM environments WHERE environment_id = $1",
                &args![new_env],
            )
            .await,
            "the environment was created".to_owned(),
        );
        w.assert_unchanged(&mut f, &before).await;
    }
    f.finish();
}

// ------------------------------------------------------------------------------------------
// Beyond the brief: what a request leaves on its pooled connection.

/// Controls T2, L3, E5: session-level state outlives the transaction on a pooled connection.
/// Settings the attacker makes with `set_config(..., false)` (a 1 ms statement timeout,
/// read-only transactions, row security off, a search_path without `public`, a forged
/// context) must not reach the next request served on that connection, here another tenant's
/// owner, who must still read and write its own environment normally.
#[tokio::test]
async fn t2_attacker_session_settings_do_not_outlive_its_request() {
    let mut f = Findings::default();
    let db = TestDb::new().await;
    let pool = bootstrap::runtime_pool(&db.runtime, 1).await.unwrap();
    let store = Store::new(pool, db.context_key().await)
        .with_subject_keys(vault().subject_keys())
        .with_sequencer(db.sequencer().await);
    let w = world_on(db, store).await;
    let mut req = w.member(w.a.env, w.viewer).await;
    let c = req.conn();
    for (name, value) in [
        ("portcullis.environment_id", w.a.env.to_string()),
        ("portcullis.permissions", all_permissions()),
        ("search_path", "pg_catalog".to_owned()),
        ("row_security", "off".to_owned()),
        ("default_transaction_read_only", "on".to_owned()),
        ("statement_timeout", "1".to_owned()),
    ] {
        let _ = attempt(
            c,
            "SELECT set_config($1, $2, false)",
            &args![name, value.clone()],
        )
        .await;
    }
    let _ = req.commit().await;
    // The next request on the same (only) connection.
    let victim = async {
        let mut tx = w
            .store
            .tenant_as_identity(w.b.env, w.b.owner, None, meta())
            .await?;
        let titles: Vec<String> = sqlx::query_scalar("SELECT title FROM documents")
            .fetch_all(tx.conn_for_tests())
            .await
            .map_err(StoreError::from)?;
        tx.audit(AuditEvent::success(
            "project.updated",
            "project",
            w.b.project,
        ))
        .await?;
        tx.commit().await?;
        Ok::<_, StoreError>(titles)
    }
    .await;
    f.check(
        matches!(&victim, Ok(t) if t == &vec!["beta secret".to_owned()]),
        format!("the next request on the attacker's connection: {victim:?}"),
    );
    f.finish();
}

/// Controls L3, L4, E5, R1: advisory locks are open to every role, and a session-level one
/// stays on the pooled connection after the request. The attacker must not be able to hold
/// the cluster-wide pass locks (the checkpointer and the key-rotation scheduler would skip
/// every pass: no checkpoints, anchors or rotations for any tenant) nor another tenant's
/// ownership-transfer lock (its transfers would hang).
#[tokio::test]
async fn l3_attacker_cannot_hold_the_background_pass_or_ownership_locks() {
    use portcullis_store::leader::{
        PassLock, AUDIT_CHECKPOINTER_LOCK, KEY_ROTATION_SCHEDULER_LOCK,
    };
    let mut f = Findings::default();
    let w = world().await;
    let mut req = w.member(w.a.env, w.viewer).await;
    let c = req.conn();
    for key in [AUDIT_CHECKPOINTER_LOCK, KEY_ROTATION_SCHEDULER_LOCK] {
        let _ = attempt(c, "SELECT pg_advisory_lock($1)", &args![key]).await;
    }
    let _ = attempt(
        c,
        "SELECT pg_advisory_lock(1885564019, hashtext($1::text))",
        &args![w.b.env.to_string()],
    )
    .await;
    let _ = req.commit().await;
    // The background passes run on a pool of their own.
    let owner = bootstrap::runtime_pool(&w.db.owner, 2).await.unwrap();
    for (name, key) in [
        ("audit checkpointer", AUDIT_CHECKPOINTER_LOCK),
        ("key-rotation scheduler", KEY_ROTATION_SCHEDULER_LOCK),
    ] {
        let lock = PassLock::try_acquire(&owner, key).await.unwrap();
        f.check(
            lock.is_some(),
            format!("the {name} pass lock is held by the attacker's pooled connection"),
        );
    }
    let mut admin = w.admin().await;
    let mut tx = admin.begin().await.unwrap();
    let free: bool =
        sqlx::query_scalar("SELECT pg_try_advisory_xact_lock(1885564019, hashtext($1::text))")
            .bind(w.b.env.to_string())
            .fetch_one(&mut *tx)
            .await
            .unwrap();
    f.check(
        free,
        "B's ownership-transfer lock is held by the attacker's pooled connection".to_owned(),
    );
    tx.rollback().await.unwrap();
    f.finish();
}

// ------------------------------------------------------------------------------------------
// Operator tokens (migration 0016): minted and revoked by the owner alone; the platform scope
// readable under an operator context only while its token is live.

/// An operator token created as the CLI creates it, over the owner's connection.
async fn operator_token(db: &TestDb, name: &str) -> (portcullis_core::OperatorTokenId, TokenHash) {
    let owner = bootstrap::runtime_pool(&db.owner, 1).await.unwrap();
    let id = portcullis_core::OperatorTokenId::new();
    let hash = new_token_hash();
    portcullis_store::operator_tokens::create(
        &owner,
        portcullis_store::operator_tokens::NewOperatorToken {
            id,
            name,
            hash: &hash,
            hint: "pcs_op_abcd…",
            created_at: OffsetDateTime::now_utc(),
            expires_at: None,
        },
        &meta(),
        AuditEvent::success("operator_token.created", "operator_token", id),
    )
    .await
    .unwrap();
    owner.close().await;
    (id, hash)
}

async fn revoke_operator_token(db: &TestDb, id: portcullis_core::OperatorTokenId) {
    let owner = bootstrap::runtime_pool(&db.owner, 1).await.unwrap();
    let (_, changed) = portcullis_store::operator_tokens::revoke(
        &owner,
        id,
        OffsetDateTime::now_utc(),
        &meta(),
        AuditEvent::success("operator_token.revoked", "operator_token", id),
    )
    .await
    .unwrap();
    assert!(changed);
    owner.close().await;
}

/// Every operator token row as the superuser sees it: (id, revoked, last used).
async fn operator_rows(db: &TestDb) -> Vec<(Uuid, bool, bool)> {
    let mut su = db.admin_conn().await;
    sqlx::query_as(
        "SELECT token_id, revoked_at IS NOT NULL, last_used_at IS NOT NULL
           FROM operator_tokens ORDER BY token_id",
    )
    .fetch_all(&mut su)
    .await
    .unwrap()
}

/// Control T2 (issue 12, item 4): from inside a member's request, an account request or an
/// API token's request, SQL run as the runtime role can neither read an operator token, mint
/// one, revive a revoked one, nor record a use, whatever context it forges; and it reads no
/// platform entry but its own.
#[tokio::test]
async fn t2_attacker_cannot_mint_revive_or_read_operator_tokens() {
    let mut f = Findings::default();
    let w = world().await;
    let (live, live_hash) = operator_token(&w.db, "live").await;
    let (dead, _) = operator_token(&w.db, "dead").await;
    revoke_operator_token(&w.db, dead).await;
    let before = operator_rows(&w.db).await;
    let mut footholds = w.footholds(w.viewer).await;
    footholds.push(("API token request", w.token(&w.a_token.1).await));
    for (how, mut req) in footholds {
        let c = req.conn();
        for forged in [
            vec![],
            vec![
                ("portcullis.purpose", "operator_read".to_owned()),
                ("portcullis.token_hash", live_hash.to_hex()),
                ("portcullis.environment_id", NIL.to_string()),
            ],
        ] {
            probe_point(c).await;
            forge(c, &forged).await;
            let seen = seen_ids(c, "SELECT token_id FROM operator_tokens", &[]).await;
            f.check(
                seen.is_empty(),
                format!("{how}: read {} operator tokens", seen.len()),
            );
            let r = attempt(
                c,
                "INSERT INTO operator_tokens (token_id, name, token_hash, hint, created_at)
                 VALUES ($1, 'mine', $2, 'x', now())",
                &args![Uuid::now_v7(), random_bytes()],
            )
            .await;
            f.refused(format!("{how}: minted an operator token"), &r);
            let r = attempt(
                c,
                "UPDATE operator_tokens SET revoked_at = NULL WHERE token_id = $1",
                &args![dead.as_uuid()],
            )
            .await;
            f.no_effect(format!("{how}: revived a revoked operator token"), &r);
            let r = attempt(
                c,
                "UPDATE operator_tokens SET expires_at = NULL, last_used_at = now() WHERE token_id = $1",
                &args![live.as_uuid()],
            )
            .await;
            f.no_effect(format!("{how}: changed a live operator token"), &r);
            let r = attempt(c, "DELETE FROM operator_tokens", &[]).await;
            f.no_effect(format!("{how}: deleted operator tokens"), &r);
            let seen = seen_ids(
                c,
                "SELECT audit_id FROM audit_log WHERE environment_id = $1 AND actor_type <> 'identity'",
                &args![NIL],
            )
            .await;
            f.check(
                seen.is_empty(),
                format!("{how}: read {} platform entries of others", seen.len()),
            );
            undo_probe(c).await;
        }
        req.commit().await.unwrap();
    }
    assert_eq!(operator_rows(&w.db).await, before);
    f.finish();
}

/// `sql` (one bind: the platform scope) counted on `c`.
async fn count(c: &mut PgConnection, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .bind(NIL)
        .fetch_one(c)
        .await
        .unwrap()
}

/// Control T2 (issue 12, item 4): an operator context reads the platform scope and the subject
/// keys that open it, and nothing of any environment; once its token is revoked (or expires)
/// the database refuses it at the next statement, even inside a transaction the application
/// had already accepted; afterwards the token opens no transaction at all.
#[tokio::test]
async fn t2_the_database_reads_the_platform_scope_only_for_a_live_operator_token() {
    let w = world().await;
    let (id, hash) = operator_token(&w.db, "reader").await;
    // The first use is recorded (and commits); the request below then holds no lock on the
    // token's row, so the operator can revoke it while that request is under way.
    w.store
        .platform_as_operator(&hash, meta())
        .await
        .unwrap()
        .commit()
        .await
        .unwrap();
    let mut tx = w.store.platform_as_operator(&hash, meta()).await.unwrap();
    let c = tx.conn_for_tests();
    assert!(
        count(
            c,
            "SELECT count(*) FROM audit_log WHERE environment_id = $1"
        )
        .await
            >= 4,
        "the operator reads the platform scope"
    );
    assert!(
        count(
            c,
            "SELECT count(*) FROM subject_keys WHERE environment_id = $1"
        )
        .await
            > 0,
        "and the subject keys that open its metadata"
    );
    assert_eq!(
        count(
            c,
            "SELECT count(*) FROM audit_log WHERE environment_id <> $1"
        )
        .await,
        0,
        "no environment's entries"
    );
    assert!(w.leaks(c, w.a.env, &[w.viewer, w.a.owner]).await.is_empty());
    assert!(w.leaks(c, w.b.env, &[w.b.owner]).await.is_empty());

    // Revoked by the operator while the request is under way: the next statement sees nothing.
    revoke_operator_token(&w.db, id).await;
    let c = tx.conn_for_tests();
    assert_eq!(
        count(
            c,
            "SELECT count(*) FROM audit_log WHERE environment_id = $1"
        )
        .await,
        0
    );
    assert_eq!(
        count(
            c,
            "SELECT count(*) FROM subject_keys WHERE environment_id = $1"
        )
        .await,
        0
    );
    drop(tx);
    assert!(matches!(
        w.store.platform_as_operator(&hash, meta()).await,
        Err(StoreError::NotFound)
    ));

    // Expired: the same, from the moment it expires.
    let (id, hash) = operator_token(&w.db, "short-lived").await;
    w.store
        .platform_as_operator(&hash, meta())
        .await
        .unwrap()
        .commit()
        .await
        .unwrap();
    let mut tx = w.store.platform_as_operator(&hash, meta()).await.unwrap();
    let mut su = w.admin().await;
    sqlx::query(
        "UPDATE operator_tokens SET created_at = now() - interval '2 hours',
                expires_at = now() - interval '1 second' WHERE token_id = $1",
    )
    .bind(id.as_uuid())
    .execute(&mut su)
    .await
    .unwrap();
    let c = tx.conn_for_tests();
    assert_eq!(
        count(
            c,
            "SELECT count(*) FROM audit_log WHERE environment_id = $1"
        )
        .await,
        0
    );
    drop(tx);
    assert!(matches!(
        w.store.platform_as_operator(&hash, meta()).await,
        Err(StoreError::NotFound)
    ));
    // A hash no token has opens nothing either.
    assert!(matches!(
        w.store
            .platform_as_operator(&new_token_hash(), meta())
            .await,
        Err(StoreError::NotFound)
    ));
}
