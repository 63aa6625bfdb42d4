//! Authentication: who is calling. A bearer token (`Authorization: Bearer ...`) or the
//! session cookie. Session tokens are resolved here; API tokens are resolved when entering
//! their environment, which is the only place they are valid.

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use portcullis_store::RequestMeta;
use std::net::SocketAddr;

use crate::error::ApiError;
use crate::middleware::RequestId;
use crate::state::AppState;

pub const SESSION_COOKIE: &str = "portcullis_session";

pub use portcullis_service::{Credential, Principal};

/// The authenticated caller of a request (see [`Principal`]).
#[derive(Clone, Debug)]
pub struct Auth(pub Principal);

impl std::ops::Deref for Auth {
    type Target = Principal;
    fn deref(&self) -> &Principal {
        &self.0
    }
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
        Ok(Auth(
            portcullis_service::caller::authenticate(state, &token, meta).await?,
        ))
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
