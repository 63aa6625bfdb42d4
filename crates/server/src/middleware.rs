//! Request ids, error logging, timeouts.

use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::{ApiError, LoggedError, Refused};

/// The server's own id for a request: what the audit trail records and the response's
/// `X-Request-Id` carries. A client's `X-Request-Id` is never taken as it, since the trail would
/// then record whatever the client chose; it is only logged beside it (`client_request_id`),
/// when short and printable, so a client can still correlate.
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

pub const REQUEST_ID_HEADER: &str = "x-request-id";

pub async fn request_id(mut req: Request, next: Next) -> Response {
    let id = uuid::Uuid::now_v7().to_string();
    let client_id = req
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .unwrap_or("")
        .to_owned();
    req.extensions_mut().insert(RequestId(id.clone()));
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let started = Instant::now();
    let mut response = next.run(req).await;
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    let status = response.status().as_u16();
    match response.extensions().get::<LoggedError>() {
        Some(LoggedError(detail, s)) if s.is_server_error() => {
            tracing::error!(request_id = %id, client_request_id = %client_id, %method, %path, status, elapsed_ms, error = %detail, "request failed");
        }
        Some(LoggedError(detail, _)) => {
            tracing::info!(request_id = %id, client_request_id = %client_id, %method, %path, status, elapsed_ms, error = %detail, "request refused");
        }
        None => {
            tracing::debug!(request_id = %id, client_request_id = %client_id, %method, %path, status, elapsed_ms, "request")
        }
    }
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    response
}

/// Where the authenticating extractor leaves the caller, for [`record_denials`].
#[derive(Clone, Debug, Default)]
pub struct CallerSlot(pub std::sync::Arc<std::sync::OnceLock<Seen>>);

/// What the authenticating extractor saw.
#[derive(Debug)]
pub enum Seen {
    /// The authenticated caller.
    Caller(portcullis_service::caller::Principal),
    /// A presented credential that is not valid (answered 401): the kind its prefix claims
    /// (`denials::credential_kind`) and the request's metadata.
    RefusedCredential {
        kind: &'static str,
        meta: portcullis_store::RequestMeta,
    },
}

/// Records a 403 of an authenticated caller in the audit trail before answering
/// (`portcullis_service::denials`, rate-limited per caller): on an environment's route in that
/// environment's log, on any other route (account, platform) in the platform scope. A 401 for
/// a presented credential that is not valid is recorded anonymously in the platform scope
/// (`record_refused_credential`, rate-limited per client address).
pub async fn record_denials(
    state: crate::state::AppState,
    mut req: Request,
    next: Next,
) -> Response {
    let slot = CallerSlot::default();
    req.extensions_mut().insert(slot.clone());
    let method = req.method().as_str().to_owned();
    let path = req.uri().path().to_owned();
    let response = next.run(req).await;
    let Some(Refused(code)) = response.extensions().get::<Refused>().copied() else {
        return response;
    };
    let caller = match slot.0.get() {
        Some(Seen::Caller(caller)) => caller,
        // A 401 for a credential that is not valid (none presented: nothing to say).
        Some(Seen::RefusedCredential { kind, meta }) => {
            if response.status() == StatusCode::UNAUTHORIZED {
                if let Err(e) = portcullis_service::denials::record_refused_credential(
                    &state,
                    meta.clone(),
                    kind,
                    &method,
                    &path,
                )
                .await
                {
                    tracing::warn!(error = %e, %path, "could not record a refused credential in the audit trail");
                }
            }
            return response;
        }
        None => return response,
    };
    let env = path
        .strip_prefix("/v1/environments/")
        .and_then(|rest| rest.split('/').next())
        .and_then(|id| portcullis_core::EnvironmentId::parse(id).ok());
    if let Err(e) =
        portcullis_service::denials::record_denial(&state, caller, env, &method, &path, code).await
    {
        tracing::warn!(error = %e, %path, "could not record a refused request in the audit trail");
    }
    response
}

/// Answers 503 when a request runs longer than `limit`. Not on the model gateway's routes: a
/// model may take minutes to answer, and the gateway bounds its upstream waits itself
/// (`gateway.upstream_timeout_seconds`).
pub async fn timeout(limit: Duration, req: Request, next: Next) -> Response {
    if req.uri().path().starts_with(crate::routes::gateway::PREFIX) {
        return next.run(req).await;
    }
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(r) => r,
        Err(_) => ApiError::Timeout.into_response(),
    }
}

/// Reads the whole request body within `limit` (`server.body_timeout_seconds`), before the
/// handler runs, and answers 408 `body_timeout` when it has not arrived by then: a client that
/// sends the headers and then trickles the body holds a connection and a task only that long,
/// not for the whole-request timeout. A body larger than `max_bytes` is refused with 413 as it
/// is read. Every request body is JSON of at most `max_bytes`, so holding it in memory costs no
/// more than the handler's own read would.
pub async fn body_timeout(limit: Duration, max_bytes: usize, req: Request, next: Next) -> Response {
    use http_body_util::BodyExt;
    let (parts, body) = req.into_parts();
    let read = http_body_util::Limited::new(body, max_bytes).collect();
    let bytes = match tokio::time::timeout(limit, read).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            return ApiError::PayloadTooLarge.into_response()
        }
        Ok(Err(e)) => {
            return ApiError::bad_request("unreadable_body", format!("cannot read the body: {e}"))
                .into_response()
        }
        Err(_) => {
            // The rest of the body is never read: the connection is not reused.
            let mut r = ApiError::BodyTimeout.into_response();
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return r;
        }
    };
    next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
        .await
}

/// Answers 413 at once when the declared `Content-Length` exceeds `limit`, before any of the
/// body is read (otherwise the server would wait for a body it will refuse anyway). Bodies
/// without a declared length are capped as they are read ([`body_timeout`]).
pub async fn declared_length(limit: usize, req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match declared {
        Some(n) if n > limit as u64 => ApiError::PayloadTooLarge.into_response(),
        _ => next.run(req).await,
    }
}

/// 404 in the project's error shape for unknown routes.
pub async fn not_found() -> Response {
    ApiError::NotFound.into_response()
}
