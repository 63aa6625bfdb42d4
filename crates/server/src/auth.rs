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
    presented(headers).map(|(token, _)| token)
}

/// Where the presented token came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Bearer,
    Cookie,
}

/// The presented token and its source: bearer header first, then the session cookie.
pub fn presented(headers: &HeaderMap) -> Option<(String, Source)> {
    if let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let (scheme, token) = value.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| (token.trim().to_owned(), Source::Bearer));
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| (value.to_owned(), Source::Cookie))
}

/// The origins the server is reached at (`server.public_origins`), normalized.
#[derive(Clone, Debug)]
pub struct PublicOrigins(Vec<String>);

impl PublicOrigins {
    pub fn new<I: IntoIterator<Item = S>, S: AsRef<str>>(origins: I) -> Self {
        PublicOrigins(
            origins
                .into_iter()
                .map(|o| normalize_origin(o.as_ref()))
                .collect(),
        )
    }

    pub fn contains(&self, origin: &str) -> bool {
        let origin = normalize_origin(origin);
        self.0.contains(&origin)
    }
}

impl Default for PublicOrigins {
    fn default() -> Self {
        PublicOrigins::new(portcullis_service::config::ServerConfig::default().public_origins())
    }
}

/// `scheme://host[:port]`, lower case, without a trailing slash or the scheme's default port.
fn normalize_origin(origin: &str) -> String {
    let o = origin.trim().trim_end_matches('/').to_ascii_lowercase();
    for (scheme, port) in [("https://", ":443"), ("http://", ":80")] {
        if o.starts_with(scheme) {
            if let Some(bare) = o.strip_suffix(port) {
                return bare.to_owned();
            }
        }
    }
    o
}

/// Control E1, cross-site request forgery: a state-changing request (any method but GET,
/// HEAD, OPTIONS and TRACE) authenticated by the session cookie must say it comes from one of
/// the public origins. `Origin` decides when present (`null` and any other origin are
/// refused); without it, `Sec-Fetch-Site` must be `same-origin` or `none` (typed by the user).
/// With neither header the request is refused: a browser always sends `Origin` on a
/// cross-site POST, and a client that is not a browser sends the bearer header, which is never
/// checked here (a page on another site cannot make a browser send it).
pub fn check_origin(parts: &Parts, origins: &PublicOrigins) -> Result<(), ApiError> {
    if parts.method.is_safe() {
        return Ok(());
    }
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let allowed = match (header("origin"), header("sec-fetch-site")) {
        (Some(origin), _) => origins.contains(origin),
        (None, Some(site)) => {
            site.eq_ignore_ascii_case("same-origin") || site.eq_ignore_ascii_case("none")
        }
        (None, None) => false,
    };
    if allowed {
        Ok(())
    } else {
        Err(ApiError::OriginRefused)
    }
}

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let meta = request_meta(parts);
        let (token, source) = presented(&parts.headers).ok_or(ApiError::Unauthenticated)?;
        if source == Source::Cookie {
            check_origin(parts, state.public_origins())?;
        }
        use crate::middleware::{CallerSlot, Seen};
        let slot = parts.extensions.get::<CallerSlot>();
        match portcullis_service::caller::authenticate(state, &token, meta).await {
            Ok(principal) => {
                if let Some(slot) = slot {
                    let _ = slot.0.set(Seen::Caller(principal.clone()));
                }
                Ok(Auth(principal))
            }
            Err(e) => {
                let e = ApiError::from(e);
                if let (ApiError::Unauthenticated, Some(slot)) = (&e, slot) {
                    let _ = slot.0.set(Seen::RefusedCredential {
                        kind: portcullis_service::denials::credential_kind(&token),
                        meta: request_meta(parts),
                    });
                }
                Err(e)
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
