use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::error::ApiError;
use crate::state::AppState;
use crate::{headers, middleware, routes, spec};

/// Limits applied to every request.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
    /// How long the whole request body may take to arrive (408 after that).
    pub body_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 2 * 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            body_timeout: Duration::from_secs(10),
        }
    }
}

/// The OpenAPI 3.1 document for the API.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api().1
}

/// The routes and their document, completed with the answers every operation can give.
fn api() -> (axum::Router<AppState>, utoipa::openapi::OpenApi) {
    let (api, mut spec) = routes::api().split_for_parts();
    spec::complete(&mut spec);
    (api, spec)
}

/// The whole application: API, health probes and the OpenAPI document, with hardening
/// middleware on every response.
pub fn router(state: AppState, limits: Limits) -> Router {
    let (api, spec) = api();
    let spec = std::sync::Arc::new(spec);
    let timeout = limits.request_timeout;
    let max_body = limits.max_body_bytes;
    let body_timeout = limits.body_timeout;
    let services = state.clone();
    Router::new()
        .merge(api)
        .merge(routes::gateway::router())
        .route(
            "/v1/openapi.json",
            get(move || {
                let spec = spec.clone();
                async move { axum::Json(spec.as_ref().clone()) }
            }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .fallback(middleware::not_found)
        .with_state(state)
        .layer(axum::middleware::from_fn(move |req, next| {
            middleware::record_denials(services.clone(), req, next)
        }))
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(axum::middleware::from_fn(move |req, next| {
            middleware::body_timeout(body_timeout, max_body, req, next)
        }))
        .layer(axum::middleware::from_fn(move |req, next| {
            middleware::timeout(timeout, req, next)
        }))
        .layer(axum::middleware::from_fn(move |req, next| {
            middleware::declared_length(max_body, req, next)
        }))
        .layer(axum::middleware::from_fn(headers::security_headers))
        .layer(axum::middleware::from_fn(middleware::request_id))
}

/// Ready only when the database answers.
async fn readyz(State(state): State<AppState>) -> axum::response::Response {
    match state.store().ping().await {
        Ok(()) => (StatusCode::OK, "ready").into_response(),
        Err(e) => ApiError::Unavailable(e.to_string()).into_response(),
    }
}
