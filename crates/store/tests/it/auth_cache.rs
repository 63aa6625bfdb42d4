//! The credential cache on several nodes (issue: a lean request path; controls T2 and R8).
//! Each "node" is a `Store` with its own pool, cache and listener on one database, as two
//! `portcullis serve` processes would be. A change made on one node is refused on that node at
//! once and on the other within 100 ms; a change whose notification is lost is refused once the
//! time to live has passed; a node whose listener is gone answers nothing from memory.

use std::time::{Duration, Instant};

use portcullis_core::{
    ApiTokenId, BuiltinRole, EnvironmentId, IdentityId, Permission, RoleRef, SessionId,
};
use portcullis_crypto::token::{self, TokenKind};
use portcullis_crypto::TokenHash;
use portcullis_store::auth_cache::{AuthCache, CacheConfig};
use portcullis_store::queries::{members, sessions, tokens};
use portcullis_store::testing::TestDb;
use portcullis_store::{RequestMeta, Store, StoreError};
use sqlx::Connection;
use time::OffsetDateTime;

use crate::support;

/// How long a change may take to reach another node (issue 10).
const OTHER_NODE_BOUND: Duration = Duration::from_millis(100);

async fn node_with(db: &TestDb, ttl: Duration) -> Store {
    let store = db
        .store()
        .await
        .with_auth_cache(AuthCache::new(CacheConfig {
            ttl,
            max_entries: 1000,
        }));
    tokio::spawn(store.listen_for_changes());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !store.auth_cache().is_active() {
        assert!(Instant::now() < deadline, "the listener never subscribed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    store
}

async fn node(db: &TestDb) -> Store {
    node_with(db, Duration::from_secs(5)).await
}

async fn new_session(store: &Store, identity: IdentityId) -> (SessionId, TokenHash) {
    let (_, hash) = token::generate(TokenKind::Session);
    let id = SessionId::new();
    let now = OffsetDateTime::now_utc();
    let mut tx = store.auth(RequestMeta::default()).await.unwrap();
    tx.signed_in(identity).await.unwrap();
    sessions::create(
        &mut tx,
        id,
        identity,
        &hash,
        now,
        now + time::Duration::hours(1),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    (id, hash)
}

/// A new member of `env` with `role`, inserted as the superuser (through the runtime role a
/// membership is only ever created by accepting an invitation).
async fn add_member(
    db: &TestDb,
    store: &Store,
    env: EnvironmentId,
    role: BuiltinRole,
) -> IdentityId {
    let who = support::identity(store, &format!("{}@member.test", uuid::Uuid::now_v7())).await;
    let mut su = db.admin_conn().await;
    sqlx::query(
        "INSERT INTO memberships (environment_id, identity_id, role, created_at, updated_at)
         VALUES ($1, $2, $3, now(), now())",
    )
    .bind(env.as_uuid())
    .bind(who.as_uuid())
    .bind(role.name())
    .execute(&mut su)
    .await
    .unwrap();
    su.close().await.unwrap();
    who
}

/// Polls `refused` until it says yes; returns how long that took. Panics after `bound`.
async fn refused_within<F, Fut>(bound: Duration, what: &str, mut refused: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if refused().await {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < bound,
            "{what}: still accepted {:?} after the change committed",
            start.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test]
async fn t2_a_revoked_session_is_refused_at_once_here_and_within_100ms_on_another_node() {
    let db = TestDb::new().await;
    let (a, b) = (node(&db).await, node(&db).await);
    let identity = support::identity(&a, "revoked@session.test").await;
    let (session, hash) = new_session(&a, identity).await;
    for n in [&a, &b] {
        assert!(n
            .session(&hash, RequestMeta::default())
            .await
            .unwrap()
            .is_some());
    }
    assert!(
        b.auth_cache().session(&hash).is_some(),
        "node b answers the session from memory"
    );

    let mut tx = a.auth(RequestMeta::default()).await.unwrap();
    tx.act_as(identity).await.unwrap();
    assert!(
        sessions::revoke(&mut tx, identity, session, OffsetDateTime::now_utc())
            .await
            .unwrap()
    );
    tx.commit().await.unwrap();

    assert!(
        a.auth_cache().session(&hash).is_none(),
        "the node that revoked forgets at commit"
    );
    assert!(a
        .session(&hash, RequestMeta::default())
        .await
        .unwrap()
        .is_none());
    let took = refused_within(OTHER_NODE_BOUND, "revoked session on node b", || async {
        b.session(&hash, RequestMeta::default())
            .await
            .unwrap()
            .is_none()
    })
    .await;
    eprintln!("node b refused the revoked session after {took:?}");
}

#[tokio::test]
async fn r8_a_demoted_member_loses_the_role_at_once_here_and_within_100ms_on_another_node() {
    let db = TestDb::new().await;
    let (a, b) = (node(&db).await, node(&db).await);
    let t = support::tenant(&a, "demote").await;
    let admin = add_member(&db, &a, t.env, BuiltinRole::Admin).await;
    let perms = |s: &Store| {
        let s = s.clone();
        async move {
            let tx = s
                .tenant_as_identity(t.env, admin, Some(t.project), RequestMeta::default())
                .await;
            tx.map(|tx| tx.permissions())
        }
    };
    for n in [&a, &b] {
        assert!(perms(n).await.unwrap().contains(Permission::MembersManage));
    }
    assert!(b.auth_cache().member(t.env, admin).is_some());

    let mut tx = a
        .tenant_as_identity(t.env, t.owner, None, RequestMeta::default())
        .await
        .unwrap();
    members::set_role(
        &mut tx,
        admin,
        RoleRef::Builtin(BuiltinRole::Viewer),
        OffsetDateTime::now_utc(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();

    assert!(
        !perms(&a).await.unwrap().contains(Permission::MembersManage),
        "the node that demoted sees the new role at once"
    );
    let took = refused_within(OTHER_NODE_BOUND, "demoted member on node b", || async {
        !perms(&b).await.unwrap().contains(Permission::MembersManage)
    })
    .await;
    eprintln!("node b saw the demotion after {took:?}");

    // Removed altogether: not found, on both.
    let mut tx = a
        .tenant_as_identity(t.env, t.owner, None, RequestMeta::default())
        .await
        .unwrap();
    members::remove(&mut tx, admin).await.unwrap();
    tx.commit().await.unwrap();
    assert!(matches!(perms(&a).await, Err(StoreError::NotFound)));
    refused_within(OTHER_NODE_BOUND, "removed member on node b", || async {
        matches!(perms(&b).await, Err(StoreError::NotFound))
    })
    .await;
}

#[tokio::test]
async fn t2_a_revoked_api_token_is_refused_at_once_here_and_within_100ms_on_another_node() {
    let db = TestDb::new().await;
    let (a, b) = (node(&db).await, node(&db).await);
    let t = support::tenant(&a, "tokens").await;
    let (_, hash) = token::generate(TokenKind::ApiToken);
    let id = ApiTokenId::new();
    let mut tx = a
        .tenant_as_identity(t.env, t.owner, None, RequestMeta::default())
        .await
        .unwrap();
    tokens::create(
        &mut tx,
        id,
        "ci",
        &hash,
        "hint",
        RoleRef::Builtin(BuiltinRole::Viewer),
        t.owner.as_uuid(),
        OffsetDateTime::now_utc(),
        None,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    for n in [&a, &b] {
        n.tenant_as_api_token(&hash, None, RequestMeta::default())
            .await
            .unwrap();
    }
    assert!(b.auth_cache().token(&hash).is_some());

    let mut tx = a
        .tenant_as_identity(t.env, t.owner, None, RequestMeta::default())
        .await
        .unwrap();
    tokens::revoke(&mut tx, id, OffsetDateTime::now_utc())
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let refused = |s: &Store| {
        let s = s.clone();
        async move {
            matches!(
                s.tenant_as_api_token(&hash, None, RequestMeta::default())
                    .await,
                Err(StoreError::NotFound)
            )
        }
    };
    assert!(refused(&a).await, "the node that revoked refuses at once");
    refused_within(OTHER_NODE_BOUND, "revoked token on node b", || refused(&b)).await;
}

/// A change whose notification never comes (here: made with triggers disabled, as a
/// superuser could) is still refused once the time to live has passed.
#[tokio::test]
async fn t2_without_its_notification_a_change_is_seen_after_the_time_to_live() {
    let db = TestDb::new().await;
    let ttl = Duration::from_millis(1500);
    let b = node_with(&db, ttl).await;
    let identity = support::identity(&b, "silent@session.test").await;
    let (_, hash) = new_session(&b, identity).await;
    assert!(b
        .session(&hash, RequestMeta::default())
        .await
        .unwrap()
        .is_some());
    let filled = Instant::now();

    let mut admin = db.admin_conn().await;
    sqlx::raw_sql(
        "SET session_replication_role = replica; UPDATE sessions SET revoked_at = now(); RESET session_replication_role",
    )
    .execute(&mut admin)
    .await
    .unwrap();
    admin.close().await.unwrap();

    let took = refused_within(
        ttl + Duration::from_secs(2),
        "silently revoked session",
        || async {
            b.session(&hash, RequestMeta::default())
                .await
                .unwrap()
                .is_none()
        },
    )
    .await;
    assert!(
        filled.elapsed() <= ttl + Duration::from_secs(2),
        "refused after {took:?}"
    );
}

/// Without its listener a node answers nothing from memory: entries are dropped when the
/// connection is lost, and the cache comes back empty once the listener has reconnected.
#[tokio::test]
async fn t2_a_node_whose_listener_is_gone_answers_nothing_from_memory() {
    let db = TestDb::new().await;
    let b = node(&db).await;
    let identity = support::identity(&b, "listener@session.test").await;
    let (_, hash) = new_session(&b, identity).await;
    b.session(&hash, RequestMeta::default()).await.unwrap();
    assert!(b.auth_cache().session(&hash).is_some());

    let mut admin = db.admin_conn().await;
    let killed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
          WHERE datname = current_database() AND query ILIKE 'LISTEN%') t",
    )
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert_eq!(killed, 1, "one listener connection");

    // The listener notices at once or, at the latest, when it next reads; either way the
    // entry is gone before the cache answers again.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if b.auth_cache().session(&hash).is_none() {
            break;
        }
        assert!(Instant::now() < deadline, "the entry outlived the listener");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while !b.auth_cache().is_active() {
        assert!(Instant::now() < deadline, "the listener never came back");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(b
        .session(&hash, RequestMeta::default())
        .await
        .unwrap()
        .is_some());
}

/// SQL run as the runtime role can send the change notification itself; the most it achieves
/// is that nodes forget and look up again.
#[tokio::test]
async fn t2_a_forged_notification_only_makes_a_node_forget() {
    let db = TestDb::new().await;
    let b = node(&db).await;
    let identity = support::identity(&b, "forged@session.test").await;
    let (_, hash) = new_session(&b, identity).await;
    b.session(&hash, RequestMeta::default()).await.unwrap();
    let before = b.auth_cache().invalidations();
    let mut attacker = db.runtime_conn().await;
    sqlx::raw_sql("NOTIFY portcullis_auth, 'anything at all'")
        .execute(&mut attacker)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while b.auth_cache().invalidations() == before {
        assert!(Instant::now() < deadline, "the notification never arrived");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(b.auth_cache().session(&hash).is_none());
    // Looked up again, the session is still the same live session.
    let again = b
        .session(&hash, RequestMeta::default())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.identity, identity);
}

/// Control T2, in the boot self-check: a node refuses to start when a credential table no
/// longer announces its changes (a dropped or disabled trigger would leave other nodes'
/// caches stale until their entries expire).
#[tokio::test]
async fn t2_the_self_check_fails_when_a_credential_table_stops_announcing() {
    for (sql, expected) in [
        (
            "DROP TRIGGER sessions_announce ON sessions",
            "sessions: no enabled sessions_announce trigger",
        ),
        (
            "ALTER TABLE memberships DISABLE TRIGGER memberships_announce",
            "memberships: no enabled memberships_announce trigger",
        ),
    ] {
        let details = crate::support::catalog_findings_after(sql, None).await;
        assert!(
            details.iter().any(|d| d.contains(expected)),
            "{sql}: expected {expected:?} in {details:#?}"
        );
    }
}

/// Control E3 (key rotation) with T2's freshness: the keyring row that every sealed read needs
/// is cached like a credential, so a rotation made on one node seals with the new version on
/// that node at once and on the other within 100 ms; a transaction that rotated reads its own
/// change, and a rotation rolled back leaves nothing behind.
#[tokio::test]
async fn e3_t2_a_rotated_keyring_is_seen_at_once_here_and_within_100ms_on_another_node() {
    let db = TestDb::new().await;
    let (a, b) = (node(&db).await, node(&db).await);
    let t = support::tenant(&a, "rotated").await;
    let vault = support::vault();
    let active = |s: &Store| {
        let s = s.clone();
        async move {
            let mut tx = s
                .tenant_as_identity(t.env, t.owner, None, RequestMeta::default())
                .await
                .unwrap();
            let v = vault.ring(&mut tx).await.unwrap().active_version;
            tx.commit().await.unwrap();
            v
        }
    };
    assert_eq!((active(&a).await, active(&b).await), (1, 1));
    assert!(
        b.auth_cache().ring(t.env).is_some(),
        "node b answers the keyring from memory"
    );

    // Rolled back: nobody sees version 2, and the transaction's own reads saw it.
    let mut tx = a
        .tenant_as_system(
            t.env,
            portcullis_core::PermissionSet::all(),
            RequestMeta::default(),
        )
        .await
        .unwrap();
    let rotation = vault
        .rotate(&mut tx, OffsetDateTime::now_utc())
        .await
        .unwrap();
    assert_eq!(rotation.version, 2);
    assert_eq!(
        vault.ring(&mut tx).await.unwrap().active_version,
        2,
        "a rotation reads its own change"
    );
    drop(tx); // rolled back
    assert_eq!((active(&a).await, active(&b).await), (1, 1));

    let mut tx = a
        .tenant_as_system(
            t.env,
            portcullis_core::PermissionSet::all(),
            RequestMeta::default(),
        )
        .await
        .unwrap();
    vault
        .rotate(&mut tx, OffsetDateTime::now_utc())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert!(
        a.auth_cache().ring(t.env).is_none(),
        "the node that rotated forgets at commit"
    );
    assert_eq!(active(&a).await, 2);
    let took = refused_within(OTHER_NODE_BOUND, "old keyring on node b", || async {
        active(&b).await == 2
    })
    .await;
    eprintln!("node b saw the rotation after {took:?}");
}
