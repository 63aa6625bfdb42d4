//! Transaction types. [`TenantTx`] is the one way into tenant data: it exists only after the
//! caller's membership (or API token) in the environment has been verified inside the same
//! transaction, and it enters the signed database context that row-level security reads
//! (T1, T2, R8; see [`crate::context`]).

use portcullis_core::{
    ApiTokenId, BuiltinRole, EnvironmentId, IdentityId, Permission, PermissionSet, ProjectId,
    RoleId, RoleRef,
};
use portcullis_crypto::TokenHash;
use sqlx::{PgConnection, PgPool, Postgres, Transaction};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::auth_cache::{AuthCache, CachedMember, CachedToken, Scope};
pub use crate::context::Actor;
use crate::context::{Context, ContextSigner, Purpose};
use crate::custody::SubjectKeys;
use crate::sequencer::Sequencer;
use crate::StoreError;

/// Request metadata copied onto audit entries.
#[derive(Clone, Debug, Default)]
pub struct RequestMeta {
    pub request_id: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

impl RequestMeta {
    /// Metadata of work the server does by itself: user agent `portcullis-<component>`, a fresh
    /// request id `<prefix>-<uuid>`, no address.
    pub fn system(component: &str, prefix: &str) -> RequestMeta {
        RequestMeta {
            request_id: Some(format!("{prefix}-{}", Uuid::now_v7())),
            ip: None,
            user_agent: Some(format!("portcullis-{component}")),
        }
    }
}

/// The verified caller inside one environment.
#[derive(Clone, Debug)]
pub struct Caller {
    pub environment_id: EnvironmentId,
    pub actor: Actor,
    pub role: RoleRef,
    /// Environment-wide permissions from the membership role (or the token's role).
    pub permissions: PermissionSet,
}

impl Caller {
    /// This caller's database context inside its environment, for `purpose`.
    fn context(&self, purpose: Purpose) -> Context {
        Context::acting(
            purpose,
            Some(self.environment_id),
            self.actor,
            self.permissions,
        )
    }
}

/// Handle on the runtime pool. Cloning is cheap.
#[derive(Clone, Debug)]
pub struct Store {
    pool: PgPool,
    /// Signs each transaction's database context.
    signer: ContextSigner,
    /// Seals personal data in audit entries (D3). Without them, an entry that carries personal
    /// data is refused rather than stored in clear.
    keys: Option<SubjectKeys>,
    /// Sessions, tokens, memberships and project grants read recently (see
    /// [`crate::auth_cache`]); off unless a listener runs.
    cache: AuthCache,
    /// Chains what this store's transactions submit to the audit log (see
    /// [`crate::sequencer`]); without one, entries stay pending until a node's sequencer runs.
    sequencer: Option<Sequencer>,
}

/// How often the last use of a session or an API token is recorded: a credential whose
/// recorded use is older than this is looked up in the database (which records it) even when
/// cached.
pub(crate) const LAST_USE_GRANULARITY: time::Duration = time::Duration::minutes(1);

#[derive(sqlx::FromRow)]
struct RoleRow {
    role: String,
    custom_role_id: Option<Uuid>,
    custom_permissions: Option<Vec<String>>,
}

impl RoleRow {
    fn resolve(&self) -> Result<(RoleRef, PermissionSet), StoreError> {
        decode_role(
            &self.role,
            self.custom_role_id,
            self.custom_permissions.as_deref(),
        )
    }
}

/// Turns the stored (role, custom_role_id, custom permissions) triple into a role and its
/// permissions. Unknown stored values are a database error, never a silent empty set.
pub(crate) fn decode_role(
    role: &str,
    custom_role_id: Option<Uuid>,
    custom_permissions: Option<&[String]>,
) -> Result<(RoleRef, PermissionSet), StoreError> {
    if role == "custom" {
        let id =
            custom_role_id.ok_or_else(|| StoreError::Bootstrap("custom role without id".into()))?;
        let perms = PermissionSet::parse_names(custom_permissions.unwrap_or_default())
            .map_err(|p| StoreError::Bootstrap(format!("unknown stored permission {p}")))?;
        return Ok((RoleRef::Custom(RoleId::from_uuid(id)), perms));
    }
    let builtin = BuiltinRole::parse(role)
        .ok_or_else(|| StoreError::Bootstrap(format!("unknown stored role {role}")))?;
    Ok((RoleRef::Builtin(builtin), builtin.permissions()))
}

/// The (role, custom_role_id) columns for a role.
pub(crate) fn encode_role(role: RoleRef) -> (&'static str, Option<Uuid>) {
    match role {
        RoleRef::Builtin(b) => (b.name(), None),
        RoleRef::Custom(id) => ("custom", Some(id.as_uuid())),
    }
}

impl Store {
    /// A store over the runtime pool, signing contexts with `key` (the one the database holds:
    /// [`crate::context::load_or_install`]).
    pub fn new(pool: PgPool, key: portcullis_crypto::context::ContextKey) -> Self {
        Store {
            pool,
            signer: ContextSigner::new(key),
            keys: None,
            cache: AuthCache::disabled(),
            sequencer: None,
        }
    }

    /// This store with the audit sequencer its transactions hand their entries to, and its
    /// readers of the sequenced view wait for ([`Store::sequence`]).
    pub fn with_sequencer(mut self, sequencer: Sequencer) -> Self {
        self.sequencer = Some(sequencer);
        self
    }

    pub fn sequencer(&self) -> Option<&Sequencer> {
        self.sequencer.as_ref()
    }

    /// Chains everything pending in `scope` (an environment, or the platform scope): call it
    /// before reading the sequenced view (list, export, proofs, checkpoints, verification),
    /// so that no committed entry is missing from it. Refused without a sequencer: a reader
    /// must never take "not yet sequenced" for "not there".
    pub async fn sequence(&self, scope: Uuid) -> Result<u64, StoreError> {
        match &self.sequencer {
            Some(s) => s.sequence(scope).await,
            None => Err(StoreError::Bootstrap(
                "this store has no audit sequencer; the audit log cannot be read consistently"
                    .into(),
            )),
        }
    }

    /// This store with a credential cache. It answers only while [`Store::listen_for_changes`]
    /// runs (one listener per cache).
    pub fn with_auth_cache(mut self, cache: AuthCache) -> Self {
        self.cache = cache;
        self
    }

    pub fn auth_cache(&self) -> &AuthCache {
        &self.cache
    }

    /// Listens for credential changes made anywhere (this node, other nodes, the CLI) and
    /// applies them to the cache, for as long as the process runs. Spawn it once.
    pub fn listen_for_changes(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        crate::auth_cache::listen(self.pool.clone(), self.cache.clone())
    }

    /// This store with the subject keys its transactions use to seal personal data in audit
    /// entries (`Store::with_vault` takes them from a vault).
    pub fn with_subject_keys(mut self, keys: SubjectKeys) -> Self {
        self.keys = Some(keys);
        self
    }

    /// Whether the server vacuums on its own (`autovacuum`, PostgreSQL's default). The audit
    /// queue (`audit_pending`) turns over its rows within milliseconds and relies on it.
    pub async fn autovacuum(&self) -> Result<bool, StoreError> {
        let v: String = sqlx::query_scalar("SELECT current_setting('autovacuum')")
            .fetch_one(&self.pool)
            .await?;
        Ok(v == "on")
    }

    /// Whether the database answers (readiness).
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn begin(&self) -> Result<Transaction<'static, Postgres>, StoreError> {
        Ok(self.pool.begin().await?)
    }

    /// A transaction already inside `context` ([`ContextSigner::begin`]).
    async fn begin_in(
        &self,
        context: &Context,
    ) -> Result<Transaction<'static, Postgres>, StoreError> {
        self.signer.begin(&self.pool, context).await
    }

    /// A transaction with no tenant context, for authentication flows.
    pub async fn auth(&self, meta: RequestMeta) -> Result<AuthTx, StoreError> {
        Ok(AuthTx {
            tx: self.begin().await?,
            meta,
            keys: self.keys.clone(),
            signer: self.signer.clone(),
            context: Context::default(),
            cache: self.cache.clone(),
            invalidated: Vec::new(),
            sequencer: self.sequencer.clone(),
            submitted: false,
        })
    }

    /// Enter `environment` as `identity`. Fails with `NotFound` when the identity is not a
    /// member, so a non-member cannot tell an environment exists.
    ///
    /// With `project`, the transaction is narrowed to that project as
    /// [`TenantTx::enter_project`] does (`NotFound` if it does not exist). When the membership
    /// and grant are cached, the transaction begins inside its final context: one round trip
    /// before the request's own statements.
    pub async fn tenant_as_identity(
        &self,
        environment: EnvironmentId,
        identity: IdentityId,
        project: Option<ProjectId>,
        meta: RequestMeta,
    ) -> Result<TenantTx, StoreError> {
        let actor = Actor::Identity(identity);
        if let Some(member) = self.cache.member(environment, identity) {
            let caller = Caller {
                environment_id: environment,
                actor,
                role: member.role,
                permissions: member.permissions,
            };
            if let Some(tx) = self.start_cached(caller, project, &meta).await? {
                return Ok(tx);
            }
        }
        let ticket = self.cache.ticket();
        // Enough context to read the membership, and nothing else.
        let mut tx = self
            .begin_in(&Context::acting(
                Purpose::Request,
                Some(environment),
                actor,
                PermissionSet::EMPTY,
            ))
            .await?;
        let row = membership_role(&mut tx, environment, identity)
            .await?
            .ok_or(StoreError::NotFound)?;
        let (role, permissions) = row.resolve()?;
        self.cache.store_member(
            ticket,
            environment,
            identity,
            CachedMember { role, permissions },
        );
        let caller = Caller {
            environment_id: environment,
            actor,
            role,
            permissions,
        };
        let mut tx = self.start(tx, caller, meta).await?;
        if let Some(project) = project {
            tx.enter_project(project).await?;
        }
        Ok(tx)
    }

    /// Begins `caller`'s transaction inside its final context when everything it needs is
    /// cached (the project's existence and the caller's grant on it, when `project` is
    /// given); `None` when something is not.
    async fn start_cached(
        &self,
        caller: Caller,
        project: Option<ProjectId>,
        meta: &RequestMeta,
    ) -> Result<Option<TenantTx>, StoreError> {
        let mut context = caller.context(Purpose::Request);
        if let Some(p) = project {
            let identity = caller.actor.identity();
            let Some(granted) = self.cache.project(caller.environment_id, p, identity) else {
                return Ok(None);
            };
            context.permissions = caller.permissions.union(granted.project_scoped());
            context.project = Some(p);
        }
        let tx = self.begin_in(&context).await?;
        Ok(Some(TenantTx::entered(
            tx,
            self.signer.clone(),
            context,
            caller,
            meta.clone(),
            self.keys.clone(),
            (self.cache.clone(), self.sequencer.clone()),
        )))
    }

    /// Enter the environment an API token belongs to. `NotFound` for unknown, revoked or
    /// expired tokens. With `project` (and `environment` naming the token's environment), the
    /// transaction is narrowed to that project as [`TenantTx::enter_project`] does; for a
    /// token of another environment it is not, and the caller sees the environment differ.
    pub async fn tenant_as_api_token(
        &self,
        hash: &TokenHash,
        project: Option<(EnvironmentId, ProjectId)>,
        meta: RequestMeta,
    ) -> Result<TenantTx, StoreError> {
        let now = OffsetDateTime::now_utc();
        if let Some(token) = self.cache.token(hash) {
            let live = token.expires_at.is_none_or(|e| e > now)
                && token
                    .last_used_at
                    .is_some_and(|t| now - t <= LAST_USE_GRANULARITY);
            let creator = self.cache.member(token.environment, token.created_by);
            if let (true, Some(creator)) = (live, creator) {
                let caller = token_caller(&token, creator.permissions);
                let project = project_in(project, token.environment);
                if let Some(tx) = self.start_cached(caller, project, &meta).await? {
                    return Ok(tx);
                }
            }
        }
        let ticket = self.cache.ticket();
        let (tx, token, creator) = self.look_up_token(hash, now).await?;
        self.cache.store_token(ticket, hash, token);
        self.cache
            .store_member(ticket, token.environment, token.created_by, creator);
        let caller = token_caller(&token, creator.permissions);
        let mut tx = self.start(tx, caller, meta).await?;
        if let Some(p) = project_in(project, token.environment) {
            tx.enter_project(p).await?;
        }
        Ok(tx)
    }

    /// Finds a live API token by its hash, its role and its creator's membership, recording
    /// its use when the recorded one is older than a minute. Leaves the transaction inside the
    /// token's environment with no permission.
    async fn look_up_token(
        &self,
        hash: &TokenHash,
        now: OffsetDateTime,
    ) -> Result<(Transaction<'static, Postgres>, CachedToken, CachedMember), StoreError> {
        #[derive(sqlx::FromRow)]
        struct Row {
            environment_id: Uuid,
            token_id: Uuid,
            token_hash: Vec<u8>,
            created_by: Uuid,
            role: String,
            custom_role_id: Option<Uuid>,
            expires_at: Option<OffsetDateTime>,
            revoked_at: Option<OffsetDateTime>,
            last_used_at: Option<OffsetDateTime>,
        }
        let lookup = Context {
            purpose: Purpose::TokenLookup,
            token_hash: Some(*hash),
            ..Context::default()
        };
        let mut tx = self.begin_in(&lookup).await?;
        let row: Option<Row> = sqlx::query_as(
            "SELECT environment_id, token_id, token_hash, created_by, role, custom_role_id,
                    expires_at, revoked_at, last_used_at
               FROM api_tokens WHERE token_hash = $1",
        )
        .bind(hash.as_bytes().as_slice())
        .fetch_optional(&mut *tx)
        .await?;
        let row = row.ok_or(StoreError::NotFound)?;
        live_token(&row.token_hash, hash, row.revoked_at, row.expires_at, now)?;
        let environment = EnvironmentId::from_uuid(row.environment_id);
        let creator = IdentityId::from_uuid(row.created_by);
        let actor = Actor::ApiToken {
            token_id: ApiTokenId::from_uuid(row.token_id),
            created_by: creator,
        };
        // The token is verified: enter its environment (the hash is no longer in the context, so
        // nothing else can be found by it) with no permission yet, to resolve its role.
        self.signer
            .enter(
                &mut tx,
                &Context::acting(
                    Purpose::Request,
                    Some(environment),
                    actor,
                    PermissionSet::EMPTY,
                ),
            )
            .await?;
        let custom: Option<Vec<String>> = match row.custom_role_id {
            Some(id) => Some(
                sqlx::query_scalar("SELECT permissions FROM custom_roles WHERE environment_id = $1 AND role_id = $2")
                    .bind(row.environment_id)
                    .bind(id)
                    .fetch_one(&mut *tx)
                    .await?,
            ),
            None => None,
        };
        let (role, permissions) = decode_role(&row.role, row.custom_role_id, custom.as_deref())?;
        // A token cannot do more than its creator can today: if the creator lost access, so does the token.
        let creator_row = membership_role(&mut tx, environment, creator).await?;
        let Some(creator_row) = creator_row else {
            return Err(StoreError::NotFound);
        };
        let (creator_role, creator_perms) = creator_row.resolve()?;
        let mut last_used_at = row.last_used_at;
        if row
            .last_used_at
            .is_none_or(|t| now - t > LAST_USE_GRANULARITY)
        {
            sqlx::query("UPDATE api_tokens SET last_used_at = $3 WHERE environment_id = $1 AND token_id = $2")
                .bind(row.environment_id)
                .bind(row.token_id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            last_used_at = Some(now);
        }
        let token = CachedToken {
            environment,
            token_id: ApiTokenId::from_uuid(row.token_id),
            created_by: creator,
            role,
            permissions,
            expires_at: row.expires_at,
            last_used_at,
        };
        let member = CachedMember {
            role: creator_role,
            permissions: creator_perms,
        };
        Ok((tx, token, member))
    }

    /// Context for creating a new environment: the creator becomes its owner in this
    /// transaction (the schema refuses to commit an environment without one).
    pub async fn new_environment(
        &self,
        environment: EnvironmentId,
        creator: IdentityId,
        meta: RequestMeta,
    ) -> Result<TenantTx, StoreError> {
        let tx = self.begin().await?;
        let caller = Caller {
            environment_id: environment,
            actor: Actor::Identity(creator),
            role: RoleRef::Builtin(BuiltinRole::Owner),
            permissions: BuiltinRole::Owner.permissions(),
        };
        self.start_as(tx, Purpose::EnvironmentCreate, caller, meta)
            .await
    }

    /// The operator, by an operator token, in the platform audit scope: `NotFound` for a token
    /// that is unknown, revoked or expired. The transaction may read the platform scope's
    /// entries (`audit.read`, nothing else) and records the token's use; its context keeps the
    /// token's hash, so the database checks the token again on every read (purpose
    /// `operator_read`, migration 0016). Never cached: revoking a token takes effect at once on
    /// every node (a revocation waits for a transaction that is recording the token's use).
    pub async fn platform_as_operator(
        &self,
        hash: &TokenHash,
        meta: RequestMeta,
    ) -> Result<TenantTx, StoreError> {
        #[derive(sqlx::FromRow)]
        struct Row {
            token_id: Uuid,
            token_hash: Vec<u8>,
            expires_at: Option<OffsetDateTime>,
            revoked_at: Option<OffsetDateTime>,
            last_used_at: Option<OffsetDateTime>,
        }
        let now = OffsetDateTime::now_utc();
        let lookup = Context {
            purpose: Purpose::OperatorRead,
            token_hash: Some(*hash),
            ..Context::default()
        };
        let mut tx = self.begin_in(&lookup).await?;
        let row: Option<Row> = sqlx::query_as(
            "SELECT token_id, token_hash, expires_at, revoked_at, last_used_at
               FROM operator_tokens WHERE token_hash = $1",
        )
        .bind(hash.as_bytes().as_slice())
        .fetch_optional(&mut *tx)
        .await?;
        let row = row.ok_or(StoreError::NotFound)?;
        live_token(&row.token_hash, hash, row.revoked_at, row.expires_at, now)?;
        let actor = Actor::OperatorToken(portcullis_core::OperatorTokenId::from_uuid(row.token_id));
        let permissions = PermissionSet::of(&[Permission::AuditRead]);
        let caller = Caller {
            environment_id: EnvironmentId::from_uuid(crate::PLATFORM_SCOPE),
            actor,
            role: RoleRef::Builtin(BuiltinRole::Auditor),
            permissions,
        };
        let context = Context {
            token_hash: Some(*hash),
            ..caller.context(Purpose::OperatorRead)
        };
        let mut tx = self.start_in(tx, context, caller, meta).await?;
        // Recorded at most once a minute, as for API tokens: the update locks the token's row
        // until this transaction ends, and revoking the token waits for that.
        if row
            .last_used_at
            .is_none_or(|t| now - t > LAST_USE_GRANULARITY)
        {
            sqlx::query("UPDATE operator_tokens SET last_used_at = $2 WHERE token_id = $1")
                .bind(row.token_id)
                .bind(now)
                .execute(tx.conn())
                .await?;
        }
        Ok(tx)
    }

    /// Background and operator work inside one environment (CLI, jobs): acts as `System`
    /// with the given permissions.
    pub async fn tenant_as_system(
        &self,
        environment: EnvironmentId,
        permissions: PermissionSet,
        meta: RequestMeta,
    ) -> Result<TenantTx, StoreError> {
        let tx = self.begin().await?;
        let caller = Caller {
            environment_id: environment,
            actor: Actor::System,
            role: RoleRef::Builtin(BuiltinRole::Admin),
            permissions,
        };
        self.start_as(tx, Purpose::System, caller, meta).await
    }

    async fn start(
        &self,
        tx: Transaction<'static, Postgres>,
        caller: Caller,
        meta: RequestMeta,
    ) -> Result<TenantTx, StoreError> {
        self.start_as(tx, Purpose::Request, caller, meta).await
    }

    async fn start_as(
        &self,
        tx: Transaction<'static, Postgres>,
        purpose: Purpose,
        caller: Caller,
        meta: RequestMeta,
    ) -> Result<TenantTx, StoreError> {
        let context = caller.context(purpose);
        self.start_in(tx, context, caller, meta).await
    }

    /// Enters `context` (the caller's, or one derived from it) and hands back the transaction.
    async fn start_in(
        &self,
        tx: Transaction<'static, Postgres>,
        context: Context,
        caller: Caller,
        meta: RequestMeta,
    ) -> Result<TenantTx, StoreError> {
        TenantTx::start(
            tx,
            self.signer.clone(),
            context,
            caller,
            meta,
            self.keys.clone(),
            (self.cache.clone(), self.sequencer.clone()),
        )
        .await
    }
}

/// A stored token row is live for `hash`: the stored hash is this one (compared in constant
/// time by `TokenHash`), it is not revoked and not expired. `NotFound` otherwise, the same
/// answer as for an unknown token.
fn live_token(
    stored: &[u8],
    hash: &TokenHash,
    revoked_at: Option<OffsetDateTime>,
    expires_at: Option<OffsetDateTime>,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    let stored = TokenHash::from_bytes(stored).ok_or(StoreError::NotFound)?;
    if stored != *hash || revoked_at.is_some() || expires_at.is_some_and(|e| e <= now) {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

/// The role (and custom permissions) of `identity`'s membership in `environment`, read in a
/// transaction whose context is already that environment.
async fn membership_role(
    tx: &mut PgConnection,
    environment: EnvironmentId,
    identity: IdentityId,
) -> Result<Option<RoleRow>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT m.role, m.custom_role_id, r.permissions AS custom_permissions
           FROM memberships m
           LEFT JOIN custom_roles r
             ON r.environment_id = m.environment_id AND r.role_id = m.custom_role_id
          WHERE m.environment_id = $1 AND m.identity_id = $2",
    )
    .bind(environment.as_uuid())
    .bind(identity.as_uuid())
    .fetch_optional(tx)
    .await?)
}

/// The project of `project` when it is in the token's `environment`: a token is never
/// narrowed to a project of another environment.
fn project_in(
    project: Option<(EnvironmentId, ProjectId)>,
    environment: EnvironmentId,
) -> Option<ProjectId> {
    project
        .filter(|(env, _)| *env == environment)
        .map(|(_, p)| p)
}

/// The caller an API token is: its role's permissions, capped by what its creator may do.
fn token_caller(token: &CachedToken, creator_permissions: PermissionSet) -> Caller {
    Caller {
        environment_id: token.environment,
        actor: Actor::ApiToken {
            token_id: token.token_id,
            created_by: token.created_by,
        },
        role: token.role,
        permissions: token.permissions.intersection(creator_permissions),
    }
}

/// A transaction bound to one environment and one verified caller.
#[derive(Debug)]
pub struct TenantTx {
    tx: Transaction<'static, Postgres>,
    signer: ContextSigner,
    /// The context entered last (the caller's, narrowed to a project after `enter_project`).
    context: Context,
    caller: Caller,
    meta: RequestMeta,
    /// Only what the audit writer needs: the subject keys, not the tenant keyrings.
    keys: Option<SubjectKeys>,
    project: Option<(ProjectId, PermissionSet)>,
    cache: AuthCache,
    /// What this transaction changed in the credential cache's scope, dropped from it at
    /// commit.
    invalidated: Vec<Scope>,
    sequencer: Option<Sequencer>,
    /// The scopes this transaction submitted audit entries in (handed to the sequencer at
    /// commit).
    submitted: Vec<Uuid>,
}

impl TenantTx {
    /// Enters `context` (the caller's, see [`Caller::context`]) and wraps the transaction.
    async fn start(
        mut tx: Transaction<'static, Postgres>,
        signer: ContextSigner,
        context: Context,
        caller: Caller,
        meta: RequestMeta,
        keys: Option<SubjectKeys>,
        hooks: (AuthCache, Option<Sequencer>),
    ) -> Result<TenantTx, StoreError> {
        signer.enter(&mut tx, &context).await?;
        Ok(TenantTx::entered(
            tx, signer, context, caller, meta, keys, hooks,
        ))
    }

    /// Wraps a transaction already inside `context` (the caller's, narrowed to a project when
    /// `context.project` is set, with the permissions in force).
    fn entered(
        tx: Transaction<'static, Postgres>,
        signer: ContextSigner,
        context: Context,
        caller: Caller,
        meta: RequestMeta,
        keys: Option<SubjectKeys>,
        (cache, sequencer): (AuthCache, Option<Sequencer>),
    ) -> TenantTx {
        let project = context.project.map(|p| (p, context.permissions));
        TenantTx {
            tx,
            signer,
            context,
            caller,
            meta,
            keys,
            project,
            cache,
            invalidated: Vec::new(),
            sequencer,
            submitted: Vec::new(),
        }
    }

    pub fn caller(&self) -> &Caller {
        &self.caller
    }

    pub fn environment_id(&self) -> EnvironmentId {
        self.caller.environment_id
    }

    pub fn meta(&self) -> &RequestMeta {
        &self.meta
    }

    /// Permissions in force: the project's effective set inside a project, else the
    /// environment role's.
    pub fn permissions(&self) -> PermissionSet {
        self.project.map_or(self.caller.permissions, |(_, p)| p)
    }

    /// Service-layer permission check (R8, second layer).
    pub fn require(&self, permission: Permission) -> Result<(), StoreError> {
        if self.permissions().contains(permission) {
            Ok(())
        } else {
            Err(StoreError::Forbidden(permission))
        }
    }

    /// Narrows the transaction to one project: effective permissions become the environment
    /// role's plus the caller's project grant (R3), and the database policies see only that
    /// project. `NotFound` if the project does not exist in this environment.
    pub async fn enter_project(&mut self, project: ProjectId) -> Result<PermissionSet, StoreError> {
        #[derive(sqlx::FromRow)]
        struct Row {
            role: Option<String>,
            custom_role_id: Option<Uuid>,
            custom_permissions: Option<Vec<String>>,
        }
        let env = self.caller.environment_id;
        let who = self.caller.actor.identity();
        if let Some(granted) = self.cache.project(env, project, who) {
            return self.narrow_to(project, granted).await;
        }
        let ticket = self.cache.ticket();
        let identity = who.map(|i| i.as_uuid());
        let row: Option<Row> = sqlx::query_as(
            "SELECT g.role, g.custom_role_id, r.permissions AS custom_permissions
               FROM projects p
               LEFT JOIN project_grants g
                 ON g.environment_id = p.environment_id AND g.project_id = p.project_id AND g.identity_id = $3
               LEFT JOIN custom_roles r
                 ON r.environment_id = g.environment_id AND r.role_id = g.custom_role_id
              WHERE p.environment_id = $1 AND p.project_id = $2",
        )
        .bind(self.caller.environment_id.as_uuid())
        .bind(project.as_uuid())
        .bind(identity)
        .fetch_optional(&mut *self.tx)
        .await?;
        let row = row.ok_or(StoreError::NotFound)?;
        let granted = match &row.role {
            Some(role) => {
                decode_role(role, row.custom_role_id, row.custom_permissions.as_deref())?.1
            }
            None => PermissionSet::EMPTY,
        };
        self.cache.store_project(ticket, env, project, who, granted);
        self.narrow_to(project, granted).await
    }

    /// Enters the project context with the caller's `granted` project role.
    async fn narrow_to(
        &mut self,
        project: ProjectId,
        granted: PermissionSet,
    ) -> Result<PermissionSet, StoreError> {
        let effective = self.caller.permissions.union(granted.project_scoped());
        let mut context = self.context.clone();
        context.permissions = effective;
        context.project = Some(project);
        self.signer.enter(&mut self.tx, &context).await?;
        self.context = context;
        self.project = Some((project, effective));
        Ok(effective)
    }

    pub(crate) fn conn(&mut self) -> &mut PgConnection {
        &mut self.tx
    }

    /// The transaction's connection and its subject keys, for the audit writer.
    pub(crate) fn conn_and_keys(&mut self) -> (&mut PgConnection, Option<&SubjectKeys>) {
        (&mut self.tx, self.keys.as_ref())
    }

    /// The raw connection, for tests that attack the database layer directly.
    #[cfg(feature = "testing")]
    pub fn conn_for_tests(&mut self) -> &mut PgConnection {
        &mut self.tx
    }

    /// Queues `scope` to be dropped from the credential cache when this transaction commits
    /// (the change triggers tell the other nodes).
    pub(crate) fn invalidate(&mut self, scope: Scope) {
        self.invalidated.push(scope);
    }

    /// This transaction changes its environment's keyring row: cached copies are dropped at
    /// commit, and this transaction reads the row itself from now on.
    pub(crate) fn keyring_changed(&mut self) {
        self.invalidate(Scope::Environment(self.caller.environment_id.as_uuid()));
    }

    /// The node's cache of credentials and keyring rows, for reads of this environment's
    /// keyring: `None` once this transaction changed something the environment's scope
    /// covers, so it neither reads the row as it was before its own change nor leaves the
    /// uncommitted row behind for others (dropped at commit; a rollback never stored it).
    pub(crate) fn ring_cache(&self) -> Option<&AuthCache> {
        let own = Scope::Environment(self.caller.environment_id.as_uuid());
        (!self
            .invalidated
            .iter()
            .any(|s| *s == own || *s == Scope::All))
        .then_some(&self.cache)
    }

    /// This transaction submitted an audit entry in its environment.
    pub(crate) fn submitted(&mut self) {
        let scope = self.caller.environment_id.as_uuid();
        if !self.submitted.contains(&scope) {
            self.submitted.push(scope);
        }
    }

    pub async fn commit(self) -> Result<(), StoreError> {
        self.tx.commit().await?;
        for scope in self.invalidated {
            self.cache.invalidate(scope);
        }
        if let Some(s) = &self.sequencer {
            for scope in self.submitted {
                s.submitted(scope);
            }
        }
        Ok(())
    }
}

/// A transaction without tenant context: sign-up, login, sessions, invitation acceptance,
/// and listing an identity's own environments.
#[derive(Debug)]
pub struct AuthTx {
    tx: Transaction<'static, Postgres>,
    meta: RequestMeta,
    keys: Option<SubjectKeys>,
    signer: ContextSigner,
    /// The context entered last; none until a step needs one.
    context: Context,
    cache: AuthCache,
    /// See [`TenantTx::invalidate`].
    invalidated: Vec<Scope>,
    sequencer: Option<Sequencer>,
    /// Whether this transaction submitted platform audit entries.
    submitted: bool,
}

impl AuthTx {
    pub(crate) fn conn(&mut self) -> &mut PgConnection {
        &mut self.tx
    }

    pub fn meta(&self) -> &RequestMeta {
        &self.meta
    }

    /// The transaction's connection and its subject keys, for the audit writer.
    pub(crate) fn conn_and_keys(&mut self) -> (&mut PgConnection, Option<&SubjectKeys>) {
        (&mut self.tx, self.keys.as_ref())
    }

    /// Changes this transaction's context and enters it.
    pub(crate) async fn update(
        &mut self,
        change: impl FnOnce(&mut Context),
    ) -> Result<(), StoreError> {
        change(&mut self.context);
        self.signer.enter(&mut self.tx, &self.context).await
    }

    /// The actor this transaction's context is signed for (anonymous when none is).
    pub(crate) fn actor(&self) -> Actor {
        self.context.actor.unwrap_or(Actor::Anonymous)
    }

    /// Act as `identity` (signed in by a session the caller verified, or the account a login
    /// attempt names): its own account, sessions and memberships.
    pub async fn act_as(&mut self, identity: IdentityId) -> Result<(), StoreError> {
        self.update(|c| {
            *c = Context::acting(
                Purpose::Account,
                None,
                Actor::Identity(identity),
                PermissionSet::EMPTY,
            )
        })
        .await
    }

    /// `identity`'s password (or setup token) was just verified: the transaction may issue it
    /// a session.
    pub async fn signed_in(&mut self, identity: IdentityId) -> Result<(), StoreError> {
        self.update(|c| {
            *c = Context::acting(
                Purpose::SessionCreate,
                None,
                Actor::Identity(identity),
                PermissionSet::EMPTY,
            )
        })
        .await
    }

    /// Set or spend the one-time setup token.
    pub async fn setup(&mut self) -> Result<(), StoreError> {
        self.update(|c| {
            *c = Context {
                purpose: Purpose::Setup,
                ..Context::default()
            }
        })
        .await
    }

    /// Platform-level work of the node itself or an operator command, as `System`, with
    /// `permissions` in the platform scope.
    pub async fn as_system(&mut self, permissions: PermissionSet) -> Result<(), StoreError> {
        self.update(|c| *c = Context::acting(Purpose::System, None, Actor::System, permissions))
            .await
    }

    /// The raw connection, for tests that attack the database layer directly.
    #[cfg(feature = "testing")]
    pub fn conn_for_tests(&mut self) -> &mut PgConnection {
        &mut self.tx
    }

    /// See [`TenantTx::invalidate`].
    pub(crate) fn invalidate(&mut self, scope: Scope) {
        self.invalidated.push(scope);
    }

    /// This transaction submitted a platform audit entry.
    pub(crate) fn submitted(&mut self) {
        self.submitted = true;
    }

    pub async fn commit(self) -> Result<(), StoreError> {
        self.tx.commit().await?;
        for scope in self.invalidated {
            self.cache.invalidate(scope);
        }
        if let (true, Some(s)) = (self.submitted, &self.sequencer) {
            s.submitted(crate::PLATFORM_SCOPE);
        }
        Ok(())
    }

    /// Turns this transaction into a tenant transaction for `environment`, for flows that
    /// verify membership themselves in the same transaction (invitation acceptance).
    /// The context is signed for accepting `invitation` only: the database lets it create the
    /// membership that invitation grants, for the caller's identity, and nothing else.
    pub(crate) async fn into_tenant_accepting(
        self,
        caller: Caller,
        invitation: Uuid,
    ) -> Result<TenantTx, StoreError> {
        let context = Context {
            invitation: Some(invitation),
            ..caller.context(Purpose::InvitationAccept)
        };
        let mut tx = TenantTx::start(
            self.tx,
            self.signer,
            context,
            caller,
            self.meta,
            self.keys,
            (self.cache, self.sequencer.clone()),
        )
        .await?;
        tx.invalidated = self.invalidated;
        // Platform entries submitted before are chained at its commit, with the tenant's.
        if self.submitted {
            tx.submitted.push(crate::PLATFORM_SCOPE);
        }
        Ok(tx)
    }
}
