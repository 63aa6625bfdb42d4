//! Request ids, error logging, timeouts.

use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::{ApiError, LoggedError};

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

/// Answers 503 when a request runs longer than `limit`.
pub async fn timeout(limit: Duration, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(r) => r,
        Err(_) => ApiError::Timeout.into_response(),
    }
}

/// Answers 413 at once when the declared `Content-Length` exceeds `limit`, before any of the
/// body is read (otherwise the server would wait for a body it will refuse anyway, until the
/// request timeout). Bodies without a declared length are still capped by `DefaultBodyLimit`
/// as they are read.
///
/// Not done: a separate, shorter timeout for slow bodies. A body that trickles in is bounded
/// by the whole-request timeout (`server.request_timeout_seconds`) and the size cap.
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
