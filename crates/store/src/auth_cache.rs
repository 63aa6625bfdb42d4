//! A bounded, short-lived, in-memory cache of what authenticating a request reads: live
//! sessions, API tokens, memberships and project grants, and the environment's keyring row
//! (which data key seals, the lowest version that may open) that every read of a sealed value
//! needs (issue: a lean request path). It
//! saves the lookups a request would otherwise send before its real work, and never decides
//! anything the database would not: every request still runs under a signed context that
//! row-level security checks.
//!
//! Freshness is what makes a cache of credentials safe, and it is kept three ways:
//! - **On the node that made a change, at once.** A transaction that changes a session, an
//!   identity, a membership, a role, a token, a grant, a project or an environment queues the
//!   scope it touched ([`Scope`]); the scope is dropped from this node's cache when the
//!   transaction commits, before the call returns.
//! - **On every other node, within milliseconds.** Triggers on those tables (migration
//!   `20261202000013_auth_change_notify.sql`) send `NOTIFY portcullis_auth` with the scope, and
//!   every node listens ([`listen`]). While the listener is not connected, the cache neither
//!   answers nor fills, so a notification lost to a broken connection cannot leave an entry
//!   behind; on reconnecting, the cache starts empty.
//! - **Never longer than the time to live** (`auth.cache_ttl_seconds`, 5 s by default), even
//!   if all of the above failed.
//!
//! A lookup that read the database before an invalidation must not store what it read after
//! it: every fill carries the cache's generation from before its read, and is dropped if an
//! invalidation came in between.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use portcullis_core::{ApiTokenId, EnvironmentId, IdentityId, PermissionSet, ProjectId, RoleRef};
use portcullis_crypto::TokenHash;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::keyring_row::Keyring;

/// The channel the change triggers notify on.
pub const CHANNEL: &str = "portcullis_auth";

/// What a change touched, and so what cached entries it invalidates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Everything cached about one identity: its sessions, memberships, grants and the API
    /// tokens it created.
    Identity(Uuid),
    /// Everything cached inside one environment: memberships, tokens and grants.
    Environment(Uuid),
    /// Everything.
    All,
}

impl Scope {
    /// Parses a notification payload (`i:<uuid>`, `e:<uuid>`); anything else is `All`, so an
    /// unexpected payload can only make the cache forget more.
    pub fn parse(payload: &str) -> Scope {
        let parsed = match payload.split_once(':') {
            Some(("i", id)) => Uuid::parse_str(id).ok().map(Scope::Identity),
            Some(("e", id)) => Uuid::parse_str(id).ok().map(Scope::Environment),
            _ => None,
        };
        parsed.unwrap_or(Scope::All)
    }
}

/// A live session, as the cache keeps it.
#[derive(Clone, Copy, Debug)]
pub struct CachedSession {
    pub identity: IdentityId,
    pub session_id: Uuid,
    pub expires_at: OffsetDateTime,
    pub last_seen_at: OffsetDateTime,
}

/// A live API token and the role it carries (before the creator's cap).
#[derive(Clone, Copy, Debug)]
pub struct CachedToken {
    pub environment: EnvironmentId,
    pub token_id: ApiTokenId,
    pub created_by: IdentityId,
    pub role: RoleRef,
    pub permissions: PermissionSet,
    pub expires_at: Option<OffsetDateTime>,
    pub last_used_at: Option<OffsetDateTime>,
}

/// A membership's role and its permissions.
#[derive(Clone, Copy, Debug)]
pub struct CachedMember {
    pub role: RoleRef,
    pub permissions: PermissionSet,
}

type ProjectKey = (Uuid, Uuid, Option<Uuid>);

/// Sizes and lifetime.
#[derive(Clone, Copy, Debug)]
pub struct CacheConfig {
    /// How long an entry may be used at most; zero disables the cache.
    pub ttl: Duration,
    /// Entries per kind (sessions, tokens, memberships, grants).
    pub max_entries: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            ttl: Duration::from_secs(5),
            max_entries: 10_000,
        }
    }
}

/// The cache. Cheap to clone; clones share entries.
#[derive(Clone, Debug)]
pub struct AuthCache {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: CacheConfig,
    /// True while a listener is subscribed; nothing is answered or stored otherwise.
    listening: AtomicBool,
    /// Bumped by every invalidation.
    generation: AtomicU64,
    /// Invalidations applied (local and notified), for tests and diagnostics.
    invalidations: AtomicU64,
    sessions: Map<[u8; 32], CachedSession>,
    tokens: Map<[u8; 32], CachedToken>,
    members: Map<(Uuid, Uuid), CachedMember>,
    /// (environment, project, identity) -> the identity's project grant (empty when none):
    /// present only for projects that exist.
    projects: Map<ProjectKey, PermissionSet>,
    /// environment -> its keyring row (`environment_keys`, announced like the credentials).
    rings: Map<Uuid, Keyring>,
}

/// A fill ticket: the generation before a database read.
#[derive(Clone, Copy, Debug)]
pub struct Ticket(u64);

impl AuthCache {
    pub fn new(config: CacheConfig) -> AuthCache {
        AuthCache {
            inner: Arc::new(Inner {
                config,
                listening: AtomicBool::new(false),
                generation: AtomicU64::new(0),
                invalidations: AtomicU64::new(0),
                sessions: Map::default(),
                tokens: Map::default(),
                members: Map::default(),
                projects: Map::default(),
                rings: Map::default(),
            }),
        }
    }

    /// A cache that never answers (no listener is ever attached to it).
    pub fn disabled() -> AuthCache {
        AuthCache::new(CacheConfig {
            ttl: Duration::ZERO,
            max_entries: 0,
        })
    }

    fn active(&self) -> bool {
        !self.inner.config.ttl.is_zero()
            && self.inner.config.max_entries > 0
            && self.inner.listening.load(Ordering::Acquire)
    }

    /// Whether entries are being answered (a listener is subscribed and the cache is on).
    pub fn is_active(&self) -> bool {
        self.active()
    }

    /// Taken before a database read whose result may be stored.
    pub fn ticket(&self) -> Ticket {
        Ticket(self.inner.generation.load(Ordering::Acquire))
    }

    fn fresh(&self, ticket: Ticket) -> bool {
        self.active() && self.inner.generation.load(Ordering::Acquire) == ticket.0
    }

    pub fn session(&self, hash: &TokenHash) -> Option<CachedSession> {
        self.active()
            .then(|| {
                self.inner
                    .sessions
                    .get(hash.as_bytes(), self.inner.config.ttl)
            })
            .flatten()
    }

    pub fn token(&self, hash: &TokenHash) -> Option<CachedToken> {
        self.active()
            .then(|| {
                self.inner
                    .tokens
                    .get(hash.as_bytes(), self.inner.config.ttl)
            })
            .flatten()
    }

    pub fn member(&self, environment: EnvironmentId, identity: IdentityId) -> Option<CachedMember> {
        let key = (environment.as_uuid(), identity.as_uuid());
        self.active()
            .then(|| self.inner.members.get(&key, self.inner.config.ttl))
            .flatten()
    }

    pub fn project(
        &self,
        environment: EnvironmentId,
        project: ProjectId,
        identity: Option<IdentityId>,
    ) -> Option<PermissionSet> {
        let key = project_key(environment, project, identity);
        self.active()
            .then(|| self.inner.projects.get(&key, self.inner.config.ttl))
            .flatten()
    }

    pub fn ring(&self, environment: EnvironmentId) -> Option<Keyring> {
        self.active()
            .then(|| {
                self.inner
                    .rings
                    .get(&environment.as_uuid(), self.inner.config.ttl)
            })
            .flatten()
    }

    pub fn store_ring(&self, ticket: Ticket, environment: EnvironmentId, ring: &Keyring) {
        self.fill(ticket, |i, max| {
            i.rings.insert(environment.as_uuid(), ring.clone(), max)
        });
    }

    pub fn store_session(&self, ticket: Ticket, hash: &TokenHash, session: CachedSession) {
        self.fill(ticket, |i, max| {
            i.sessions.insert(*hash.as_bytes(), session, max)
        });
    }

    pub fn store_token(&self, ticket: Ticket, hash: &TokenHash, token: CachedToken) {
        self.fill(ticket, |i, max| {
            i.tokens.insert(*hash.as_bytes(), token, max)
        });
    }

    pub fn store_member(
        &self,
        ticket: Ticket,
        environment: EnvironmentId,
        identity: IdentityId,
        member: CachedMember,
    ) {
        let key = (environment.as_uuid(), identity.as_uuid());
        self.fill(ticket, |i, max| i.members.insert(key, member, max));
    }

    pub fn store_project(
        &self,
        ticket: Ticket,
        environment: EnvironmentId,
        project: ProjectId,
        identity: Option<IdentityId>,
        granted: PermissionSet,
    ) {
        let key = project_key(environment, project, identity);
        self.fill(ticket, |i, max| i.projects.insert(key, granted, max));
    }

    fn fill(&self, ticket: Ticket, put: impl FnOnce(&Inner, usize)) {
        if !self.fresh(ticket) {
            return;
        }
        put(&self.inner, self.inner.config.max_entries);
        // An invalidation that raced with the insert: drop what may now be stale.
        if self.inner.generation.load(Ordering::Acquire) != ticket.0 {
            self.clear();
        }
    }

    /// Drops every entry `scope` covers.
    pub fn invalidate(&self, scope: Scope) {
        self.inner.generation.fetch_add(1, Ordering::AcqRel);
        self.inner.invalidations.fetch_add(1, Ordering::Relaxed);
        let i = &self.inner;
        match scope {
            Scope::All => self.clear(),
            Scope::Identity(id) => {
                i.sessions.retain(|_, s| s.identity.as_uuid() != id);
                i.tokens.retain(|_, t| t.created_by.as_uuid() != id);
                i.members.retain(|(_, identity), _| *identity != id);
                i.projects
                    .retain(|(_, _, identity), _| *identity != Some(id));
            }
            Scope::Environment(env) => {
                i.tokens.retain(|_, t| t.environment.as_uuid() != env);
                i.members.retain(|(e, _), _| *e != env);
                i.projects.retain(|(e, _, _), _| *e != env);
                i.rings.retain(|e, _| *e != env);
            }
        }
    }

    fn clear(&self) {
        let i = &self.inner;
        i.generation.fetch_add(1, Ordering::AcqRel);
        i.sessions.clear();
        i.tokens.clear();
        i.members.clear();
        i.projects.clear();
        i.rings.clear();
    }

    /// How many invalidations this cache has applied.
    pub fn invalidations(&self) -> u64 {
        self.inner.invalidations.load(Ordering::Relaxed)
    }

    /// Marks the listener subscribed (entries may be answered from now on) or gone (nothing is
    /// answered, and everything is forgotten).
    fn set_listening(&self, on: bool) {
        if !on {
            self.inner.listening.store(false, Ordering::Release);
        }
        self.clear();
        if on {
            self.inner.listening.store(true, Ordering::Release);
        }
    }
}

fn project_key(
    environment: EnvironmentId,
    project: ProjectId,
    identity: Option<IdentityId>,
) -> ProjectKey {
    (
        environment.as_uuid(),
        project.as_uuid(),
        identity.map(|i| i.as_uuid()),
    )
}

/// One kind of entry: a map under a mutex, each entry stamped with when it was stored.
#[derive(Debug)]
struct Map<K, V>(Mutex<HashMap<K, (Instant, V)>>);

impl<K, V> Default for Map<K, V> {
    fn default() -> Self {
        Map(Mutex::new(HashMap::new()))
    }
}

impl<K: Eq + Hash, V: Clone> Map<K, V> {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, (Instant, V)>> {
        // A panic while holding the lock cannot leave an entry half-written (entries are
        // values inserted whole); forgetting everything is the safe recovery anyway.
        self.0.lock().unwrap_or_else(|poisoned| {
            let mut map = poisoned.into_inner();
            map.clear();
            map
        })
    }

    fn get(&self, key: &K, ttl: Duration) -> Option<V> {
        let mut map = self.lock();
        match map.get(key) {
            Some((at, v)) if at.elapsed() < ttl => Some(v.clone()),
            Some(_) => {
                map.remove(key);
                None
            }
            None => None,
        }
    }

    fn insert(&self, key: K, value: V, max: usize) {
        let mut map = self.lock();
        if map.len() >= max && !map.contains_key(&key) {
            // Full: forget the oldest eighth (at least one), so a flood of distinct keys costs
            // a sort now and then, never unbounded memory.
            let mut ages: Vec<Instant> = map.values().map(|(at, _)| *at).collect();
            ages.sort_unstable();
            let cut = ages[(ages.len() / 8).min(ages.len() - 1)];
            map.retain(|_, (at, _)| *at > cut);
        }
        map.insert(key, (Instant::now(), value));
    }

    fn retain(&self, mut keep: impl FnMut(&K, &V) -> bool) {
        self.lock().retain(|k, (_, v)| keep(k, v));
    }

    fn clear(&self) {
        self.lock().clear();
    }
}

/// Listens for change notifications on `pool`'s database for as long as the process runs,
/// applying each to `cache`; reconnects with a growing pause (up to 5 s) when the connection
/// breaks, and keeps the cache off while it is not subscribed.
pub async fn listen(pool: sqlx::PgPool, cache: AuthCache) {
    let mut pause = Duration::from_millis(100);
    loop {
        match subscribe(&pool).await {
            Ok(mut listener) => {
                cache.set_listening(true);
                tracing::debug!(channel = CHANNEL, "listening for credential changes");
                pause = Duration::from_millis(100);
                loop {
                    match listener.try_recv().await {
                        Ok(Some(n)) => cache.invalidate(Scope::parse(n.payload())),
                        // The connection broke: what was sent meanwhile is lost.
                        Ok(None) => {
                            cache.set_listening(false);
                            tracing::warn!("credential-change listener lost its connection; the cache is off until it is back");
                            break;
                        }
                        Err(e) => {
                            cache.set_listening(false);
                            tracing::warn!(error = %e, "credential-change listener failed; the cache is off until it is back");
                            break;
                        }
                    }
                }
            }
            Err(e) => {
                cache.set_listening(false);
                tracing::warn!(error = %e, "cannot listen for credential changes; the cache stays off");
            }
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}

async fn subscribe(pool: &sqlx::PgPool) -> Result<sqlx::postgres::PgListener, sqlx::Error> {
    let mut listener = sqlx::postgres::PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_core::BuiltinRole;

    fn member() -> CachedMember {
        CachedMember {
            role: RoleRef::Builtin(BuiltinRole::Viewer),
            permissions: BuiltinRole::Viewer.permissions(),
        }
    }

    fn live() -> AuthCache {
        let c = AuthCache::new(CacheConfig::default());
        c.set_listening(true);
        c
    }

    #[test]
    fn t2_nothing_is_answered_without_a_listener() {
        let c = AuthCache::new(CacheConfig::default());
        let (e, i) = (EnvironmentId::new(), IdentityId::new());
        c.store_member(c.ticket(), e, i, member());
        assert!(c.member(e, i).is_none());
        c.set_listening(true);
        c.store_member(c.ticket(), e, i, member());
        assert!(c.member(e, i).is_some());
        c.set_listening(false);
        assert!(c.member(e, i).is_none(), "losing the listener forgets");
    }

    #[test]
    fn t2_a_fill_that_read_before_an_invalidation_is_dropped() {
        let c = live();
        let (e, i) = (EnvironmentId::new(), IdentityId::new());
        let ticket = c.ticket();
        c.invalidate(Scope::Environment(e.as_uuid()));
        c.store_member(ticket, e, i, member());
        assert!(c.member(e, i).is_none());
    }

    #[test]
    fn t2_scopes_drop_what_they_cover_and_nothing_else() {
        let c = live();
        let (e1, e2, a, b) = (
            EnvironmentId::new(),
            EnvironmentId::new(),
            IdentityId::new(),
            IdentityId::new(),
        );
        for (e, i) in [(e1, a), (e1, b), (e2, a), (e2, b)] {
            c.store_member(c.ticket(), e, i, member());
        }
        c.invalidate(Scope::Environment(e1.as_uuid()));
        assert!(c.member(e1, a).is_none() && c.member(e1, b).is_none());
        assert!(c.member(e2, a).is_some() && c.member(e2, b).is_some());
        c.invalidate(Scope::Identity(a.as_uuid()));
        assert!(c.member(e2, a).is_none());
        assert!(c.member(e2, b).is_some());
        c.invalidate(Scope::parse("garbage"));
        assert!(
            c.member(e2, b).is_none(),
            "an unknown payload forgets everything"
        );
    }

    #[test]
    fn t2_entries_expire_and_the_cache_is_bounded() {
        let c = AuthCache::new(CacheConfig {
            ttl: Duration::from_millis(30),
            max_entries: 16,
        });
        c.set_listening(true);
        let e = EnvironmentId::new();
        let ids: Vec<IdentityId> = (0..100).map(|_| IdentityId::new()).collect();
        for i in &ids {
            c.store_member(c.ticket(), e, *i, member());
        }
        assert!(c.inner.members.lock().len() <= 16);
        let last = *ids.last().unwrap();
        assert!(c.member(e, last).is_some());
        std::thread::sleep(Duration::from_millis(40));
        assert!(
            c.member(e, last).is_none(),
            "an entry never outlives its time to live"
        );
    }

    #[test]
    fn payloads_parse() {
        let id = Uuid::now_v7();
        assert_eq!(Scope::parse(&format!("i:{id}")), Scope::Identity(id));
        assert_eq!(Scope::parse(&format!("e:{id}")), Scope::Environment(id));
        assert_eq!(Scope::parse("e:nope"), Scope::All);
    }
}
