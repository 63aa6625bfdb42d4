//! Authentication: who is calling. A bearer token (`Authorization: Bearer ...`) or the
//! session cookie. Session tokens are resolved here; API tokens are resolved when entering
//! their environment, which is the only place they are valid.

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use portcullis_core::{EnvironmentId, IdentityId, SessionId};
use portcullis_crypto::{TokenHash, TokenKind};
use portcullis_store::queries::sessions;
use portcullis_store::{RequestMeta, StoreError, TenantTx};
use std::net::SocketAddr;
use time::OffsetDateTime;

use crate::error::ApiError;
use crate::middleware::RequestId;
use crate::state::AppState;

pub const SESSION_COOKIE: &str = "portcullis_session";

#[derive(Clone, Debug)]
pub enum Credential {
    Session {
        identity: IdentityId,
        session_id: SessionId,
    },
    ApiToken(TokenHash),
}

/// An authenticated caller plus request metadata for the audit trail.
#[derive(Clone, Debug)]
pub struct Auth {
    pub credential: Credential,
    pub meta: RequestMeta,
}

/// Request metadata for handlers that do not need authentication.
#[derive(Clone, Debug)]
pub struct Meta(pub RequestMeta);

pub fn request_meta(parts: &Parts) -> RequestMeta {
    RequestMeta {
        request_id: parts.extensions.get::<RequestId>().map(|r| r.0.clone()),
        ip: parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip().to_string()),
        user_agent: parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(300).collect()),
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Meta {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Meta(request_meta(parts)))
    }
}

/// The presented token: bearer header first, then the session cookie.
pub fn presented_token(headers: &HeaderMap) -> Option<String> {
    if let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let (scheme, token) = value.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim().to_owned());
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.to_owned())
}

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let meta = request_meta(parts);
        let token = presented_token(&parts.headers).ok_or(ApiError::Unauthenticated)?;
        let hash = TokenHash::of(&token);
        match TokenKind::of(&token) {
            Some(TokenKind::Session) => {
                let mut tx = state.store().auth(meta.clone()).await?;
                let session = sessions::authenticate(&mut tx, &hash, OffsetDateTime::now_utc())
                    .await?
                    .ok_or(ApiError::Unauthenticated)?;
                tx.commit().await?;
                Ok(Auth {
                    credential: Credential::Session {
                        identity: IdentityId::from_uuid(session.identity_id),
                        session_id: SessionId::from_uuid(session.session_id),
                    },
                    meta,
                })
            }
            Some(TokenKind::ApiToken) => Ok(Auth {
                credential: Credential::ApiToken(hash),
                meta,
            }),
            _ => Err(ApiError::Unauthenticated),
        }
    }
}

impl Auth {
    /// The signed-in identity; API tokens act only inside their environment.
    pub fn identity(&self) -> Result<IdentityId, ApiError> {
        match self.credential {
            Credential::Session { identity, .. } => Ok(identity),
            Credential::ApiToken(_) => Err(ApiError::ForbiddenReason(
                "API tokens can only be used on their environment's routes".into(),
            )),
        }
    }

    /// Opens a transaction inside `environment` as this caller. Someone who is not a member,
    /// or a token of another environment, gets 404: the environment's existence is not revealed.
    pub async fn enter(
        &self,
        state: &AppState,
        environment: EnvironmentId,
    ) -> Result<TenantTx, ApiError> {
        match &self.credential {
            Credential::Session { identity, .. } => Ok(state
                .store()
                .tenant_as_identity(environment, *identity, self.meta.clone())
                .await?),
            Credential::ApiToken(hash) => {
                let tx = match state
                    .store()
                    .tenant_as_api_token(hash, self.meta.clone())
                    .await
                {
                    Ok(tx) => tx,
                    Err(StoreError::NotFound) => return Err(ApiError::Unauthenticated),
                    Err(e) => return Err(e.into()),
                };
                if tx.environment_id() != environment {
                    return Err(ApiError::NotFound);
                }
                Ok(tx)
            }
        }
    }
}

/// `Set-Cookie` for a new session.
pub fn session_cookie(token: &str, max_age_seconds: i64) -> String {
    format!("{SESSION_COOKIE}={token}; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age={max_age_seconds}")
}

/// `Set-Cookie` that removes the session cookie.
pub fn clear_cookie() -> String {
    format!("{SESSION_COOKIE}=; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age=0")
}
