use portcullis_core::{IdentityId, SessionId};
use portcullis_crypto::TokenHash;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::subjects;
use crate::{AuthTx, RequestMeta, StoreError, PLATFORM_SCOPE};

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Session {
    pub session_id: Uuid,
    pub identity_id: Uuid,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub last_seen_at: OffsetDateTime,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
}

// A macro rather than a const so that `concat!` can splice it into static SQL.
macro_rules! columns {
    () => {
        "session_id, identity_id, created_at, expires_at, last_seen_at, user_agent, ip"
    };
}

/// Where a session's IP and user agent live: sealed under the account's platform-scope subject
/// key (D3), so erasing the account's key also makes its session history unreadable.
fn session_fields(row: &str) -> subjects::RequestMetaFields<'_> {
    subjects::RequestMetaFields {
        scope: PLATFORM_SCOPE,
        table: "sessions",
        row,
    }
}

pub async fn create(
    tx: &mut AuthTx,
    id: SessionId,
    identity: IdentityId,
    hash: &TokenHash,
    now: OffsetDateTime,
    expires_at: OffsetDateTime,
) -> Result<(), StoreError> {
    let meta = tx.meta().clone();
    let row = id.as_uuid().to_string();
    let user_agent: Option<String> = meta.user_agent.map(|u| u.chars().take(300).collect());
    let (conn, keys) = tx.conn_and_keys();
    let (ip, user_agent) = session_fields(&row)
        .seal(
            conn,
            keys,
            identity.as_uuid(),
            meta.ip.as_deref(),
            user_agent.as_deref(),
        )
        .await?;
    sqlx::query(
        "INSERT INTO sessions (session_id, identity_id, token_hash, created_at, expires_at, last_seen_at, user_agent, ip)
         VALUES ($1, $2, $3, $4, $5, $4, $6, $7)",
    )
    .bind(id.as_uuid())
    .bind(identity.as_uuid())
    .bind(hash.as_bytes().as_slice())
    .bind(now)
    .bind(expires_at)
    .bind(user_agent)
    .bind(ip)
    .execute(tx.conn())
    .await?;
    Ok(())
}

/// The live session a token names, if any (unknown, revoked and expired are all `None`).
/// Refreshes `last_seen_at` at most once a minute.
pub async fn authenticate(
    tx: &mut AuthTx,
    hash: &TokenHash,
    now: OffsetDateTime,
) -> Result<Option<Session>, StoreError> {
    #[derive(sqlx::FromRow)]
    struct Row {
        #[sqlx(flatten)]
        session: Session,
        token_hash: Vec<u8>,
        revoked_at: Option<OffsetDateTime>,
    }
    tx.update(|c| {
        *c = crate::context::Context {
            purpose: crate::context::Purpose::SessionLookup,
            token_hash: Some(*hash),
            ..Default::default()
        }
    })
    .await?;
    let row: Option<Row> = sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        ", token_hash, revoked_at FROM sessions WHERE token_hash = $1"
    ))
    .bind(hash.as_bytes().as_slice())
    .fetch_optional(tx.conn())
    .await?;
    let Some(row) = row else { return Ok(None) };
    let stored_matches = TokenHash::from_bytes(&row.token_hash).is_some_and(|h| h == *hash);
    if !stored_matches || row.revoked_at.is_some() || row.session.expires_at <= now {
        return Ok(None);
    }
    // The context stays the lookup (which finds only this row) unless the session's last use
    // must be recorded: then the transaction acts as its identity. Callers that go on to act
    // as the identity call `act_as` themselves.
    if now - row.session.last_seen_at > time::Duration::minutes(1) {
        tx.act_as(IdentityId::from_uuid(row.session.identity_id))
            .await?;
        sqlx::query("UPDATE sessions SET last_seen_at = $2 WHERE session_id = $1")
            .bind(row.session.session_id)
            .bind(now)
            .execute(tx.conn())
            .await?;
    }
    Ok(Some(row.session))
}

pub async fn list_active(
    tx: &mut AuthTx,
    identity: IdentityId,
    now: OffsetDateTime,
) -> Result<Vec<Session>, StoreError> {
    let mut rows: Vec<Session> = sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM sessions
          WHERE identity_id = $1 AND revoked_at IS NULL AND expires_at > $2
          ORDER BY session_id"
    ))
    .bind(identity.as_uuid())
    .bind(now)
    .fetch_all(tx.conn())
    .await?;
    let (conn, keys) = tx.conn_and_keys();
    for s in &mut rows {
        let row = s.session_id.to_string();
        session_fields(&row)
            .reveal(&mut *conn, keys, &mut s.ip, &mut s.user_agent)
            .await?;
    }
    Ok(rows)
}

/// Revokes one of the identity's sessions; false if it has no such live session.
pub async fn revoke(
    tx: &mut AuthTx,
    identity: IdentityId,
    session: SessionId,
    now: OffsetDateTime,
) -> Result<bool, StoreError> {
    tx.invalidate(crate::auth_cache::Scope::Identity(identity.as_uuid()));
    let done = sqlx::query(
        "UPDATE sessions SET revoked_at = $3 WHERE identity_id = $1 AND session_id = $2 AND revoked_at IS NULL",
    )
    .bind(identity.as_uuid())
    .bind(session.as_uuid())
    .bind(now)
    .execute(tx.conn())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Revokes every live session of the identity; returns how many.
pub async fn revoke_all(
    tx: &mut AuthTx,
    identity: IdentityId,
    now: OffsetDateTime,
) -> Result<u64, StoreError> {
    tx.invalidate(crate::auth_cache::Scope::Identity(identity.as_uuid()));
    let done = sqlx::query(
        "UPDATE sessions SET revoked_at = $2 WHERE identity_id = $1 AND revoked_at IS NULL",
    )
    .bind(identity.as_uuid())
    .bind(now)
    .execute(tx.conn())
    .await?;
    Ok(done.rows_affected())
}

impl crate::Store {
    /// The live session a presented session token names, if any: from the cache, or looked
    /// up (and its last use recorded when older than a minute) in a transaction of its own.
    pub async fn session(
        &self,
        hash: &TokenHash,
        meta: RequestMeta,
    ) -> Result<Option<crate::auth_cache::CachedSession>, StoreError> {
        let now = OffsetDateTime::now_utc();
        if let Some(s) = self.auth_cache().session(hash) {
            if s.expires_at > now && now - s.last_seen_at <= crate::tx::LAST_USE_GRANULARITY {
                return Ok(Some(s));
            }
        }
        let ticket = self.auth_cache().ticket();
        let mut tx = self.auth(meta).await?;
        let found = authenticate(&mut tx, hash, now).await?;
        tx.commit().await?;
        let Some(session) = found else {
            return Ok(None);
        };
        let cached = crate::auth_cache::CachedSession {
            identity: IdentityId::from_uuid(session.identity_id),
            session_id: session.session_id,
            expires_at: session.expires_at,
            // `authenticate` records the use when the stored one is older than a minute.
            last_seen_at: if now - session.last_seen_at > crate::tx::LAST_USE_GRANULARITY {
                now
            } else {
                session.last_seen_at
            },
        };
        self.auth_cache().store_session(ticket, hash, cached);
        Ok(Some(cached))
    }
}
