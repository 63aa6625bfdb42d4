//! Sessions of a signed-in identity: issuing one, listing, revoking, logging out.

use portcullis_core::{IdentityId, SessionId};
use portcullis_crypto::token::{self, TokenKind};
use portcullis_crypto::Secret;
use portcullis_store::queries::identities::Identity;
use portcullis_store::queries::sessions::{self, Session};
use portcullis_store::{Actor, AuditEvent, AuthTx};
use time::OffsetDateTime;

use crate::{Credential, Principal, ServiceError, ServiceResult, Services};

/// A new session. The token exists only here: the database keeps its hash.
#[derive(Debug)]
pub struct SessionIssued {
    pub token: Secret,
    pub issued_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub identity: Identity,
}

impl SessionIssued {
    /// How long the session lives, for a cookie's `Max-Age`.
    pub fn lifetime(&self) -> time::Duration {
        self.expires_at - self.issued_at
    }
}

/// A live session, and whether it is the one asking.
#[derive(Debug)]
pub struct ActiveSession {
    pub session: Session,
    pub current: bool,
}

/// Creates a session for `identity` in the caller's transaction, living `auth.session_ttl_hours`.
pub(crate) async fn issue_session(
    services: &Services,
    tx: &mut AuthTx,
    identity: Identity,
) -> ServiceResult<SessionIssued> {
    let now = OffsetDateTime::now_utc();
    let expires_at =
        now + time::Duration::hours(i64::from(services.auth_config().session_ttl_hours));
    let (token, hash) = token::generate(TokenKind::Session);
    let id = IdentityId::from_uuid(identity.identity_id);
    // Every caller has just verified this identity's password (or created it): only now may
    // the transaction insert a session, and only for it.
    tx.signed_in(id).await?;
    sessions::create(tx, SessionId::new(), id, &hash, now, expires_at).await?;
    Ok(SessionIssued {
        token,
        issued_at: now,
        expires_at,
        identity,
    })
}

/// Ends the session making the request. API tokens are revoked, not logged out.
pub async fn logout(services: &Services, caller: &Principal) -> ServiceResult<()> {
    let Credential::Session {
        identity,
        session_id,
    } = caller.credential
    else {
        return Err(match caller.identity(services).await {
            Err(ServiceError::Unauthenticated) => ServiceError::Unauthenticated,
            _ => ServiceError::ForbiddenReason(
                "API and operator tokens are revoked, not logged out".into(),
            ),
        });
    };
    let mut tx = services.store().auth(caller.meta.clone()).await?;
    tx.act_as(identity).await?;
    sessions::revoke(&mut tx, identity, session_id, OffsetDateTime::now_utc()).await?;
    tx.audit(
        Actor::Identity(identity),
        AuditEvent::success("auth.logout", "session", session_id),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Live sessions of the signed-in identity.
pub async fn list_sessions(
    services: &Services,
    caller: &Principal,
) -> ServiceResult<Vec<ActiveSession>> {
    let id = caller.identity(services).await?;
    let current = caller.session_id().map(|s| s.as_uuid());
    let mut tx = services.store().auth(caller.meta.clone()).await?;
    tx.act_as(id).await?;
    let list = sessions::list_active(&mut tx, id, OffsetDateTime::now_utc()).await?;
    tx.commit().await?;
    Ok(list
        .into_iter()
        .map(|session| ActiveSession {
            current: Some(session.session_id) == current,
            session,
        })
        .collect())
}

/// How many of their own platform entries a person sees at most.
pub const SIGN_IN_HISTORY: i64 = 200;

/// The caller's own history in the platform scope, newest first: sign-ins, failed sign-ins
/// against their account (with the address they came from), password changes, sign-ups.
pub async fn sign_in_history(
    services: &Services,
    caller: &Principal,
) -> ServiceResult<Vec<portcullis_store::queries::audit_log::AuditEntry>> {
    let id = caller.identity(services).await?;
    services
        .store()
        .sequence(portcullis_store::PLATFORM_SCOPE)
        .await?;
    let mut tx = services.store().auth(caller.meta.clone()).await?;
    tx.act_as(id).await?;
    let list =
        portcullis_store::queries::audit_log::own_platform_entries(&mut tx, id, SIGN_IN_HISTORY)
            .await?;
    tx.commit().await?;
    Ok(list)
}

/// Revokes one of the caller's own sessions; anyone else's is `NotFound`.
pub async fn revoke_session(
    services: &Services,
    caller: &Principal,
    session: SessionId,
) -> ServiceResult<()> {
    let id = caller.identity(services).await?;
    let mut tx = services.store().auth(caller.meta.clone()).await?;
    tx.act_as(id).await?;
    if !sessions::revoke(&mut tx, id, session, OffsetDateTime::now_utc()).await? {
        return Err(ServiceError::NotFound);
    }
    tx.audit(
        Actor::Identity(id),
        AuditEvent::success("session.revoked", "session", session),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}
