//! The model gateway's HTTP face: Anthropic's Messages API under `/gateway`, so that the
//! official SDKs work unmodified with `base_url = "https://host:8443/gateway"` and a
//! Portcullis API token as their key. Each handler extracts and calls
//! `portcullis_gateway::call`; errors answer in Anthropic's shape
//! (`{"type":"error","error":{"type","message"}}`) with a `request-id` header, and
//! `x-should-retry: false` where sending the same request again cannot help.
//!
//! Not in the OpenAPI document: the bodies are Anthropic's, passed through with their unknown
//! fields, and describing them here would only restate (and soon contradict) Anthropic's own
//! reference. docs/GATEWAY.md documents the routes.

use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use portcullis_gateway::{Answer, ErrorKind, GatewayError, ModelCall, Operation};
use portcullis_service::Principal;

use crate::auth::request_meta;
use crate::error::LoggedError;
use crate::middleware::RequestId;
use crate::state::AppState;

/// Where the gateway's routes live; the SDKs add `/v1/...`.
pub const PREFIX: &str = "/gateway/";

pub fn router() -> axum::Router<AppState> {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/gateway/v1/messages", post(messages))
        .route("/gateway/v1/messages/count_tokens", post(count_tokens))
        .route("/gateway/v1/models", get(models))
}

/// The caller: a Portcullis token in `x-api-key` (SDK 0.x/1.x) or `Authorization: Bearer`
/// (2.x). Never the session cookie: a page on another site could make a browser send it.
#[derive(Debug)]
pub struct GatewayCaller(Principal);

impl FromRequestParts<AppState> for GatewayCaller {
    type Rejection = GatewayFailure;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let request_id = parts.extensions.get::<RequestId>().map(|r| r.0.clone());
        let fail = |e: GatewayError| GatewayFailure(e, request_id.clone());
        let token = presented(&parts.headers).ok_or_else(|| {
            fail(GatewayError::new(
                ErrorKind::Authentication,
                "send a Portcullis API token (pcs_live_...) in x-api-key or Authorization: Bearer",
            ))
        })?;
        let principal =
            portcullis_service::caller::authenticate(state, &token, request_meta(parts))
                .await
                .map_err(|e| fail(e.into()))?;
        Ok(GatewayCaller(principal))
    }
}

fn presented(headers: &HeaderMap) -> Option<String> {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(key) = text("x-api-key").filter(|k| !k.is_empty()) {
        return Some(key.to_owned());
    }
    let (scheme, token) = text("authorization")?.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
        .filter(|t| !t.is_empty())
}

/// A refusal in Anthropic's shape.
#[derive(Debug)]
pub struct GatewayFailure(GatewayError, Option<String>);

impl IntoResponse for GatewayFailure {
    fn into_response(self) -> Response {
        let GatewayFailure(e, request_id) = self;
        let status = match e.kind {
            ErrorKind::InvalidRequest => StatusCode::BAD_REQUEST,
            ErrorKind::Authentication => StatusCode::UNAUTHORIZED,
            ErrorKind::Permission | ErrorKind::ConnectYourKey | ErrorKind::KeyRejected => {
                StatusCode::FORBIDDEN
            }
            ErrorKind::Upstream => StatusCode::BAD_GATEWAY,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        };
        let body = e.body(request_id.as_deref());
        let mut response = (status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        set_request_id(headers, request_id.as_deref());
        if !e.retryable() {
            headers.insert("x-should-retry", HeaderValue::from_static("false"));
        }
        let detail = format!("{e:?}");
        response
            .extensions_mut()
            .insert(LoggedError(std::sync::Arc::new(detail), status));
        response
    }
}

/// Anthropic's SDKs read `request-id`; the rest of the API says `x-request-id` (both are set).
fn set_request_id(headers: &mut HeaderMap, id: Option<&str>) {
    if let Some(v) = id.and_then(|id| HeaderValue::from_str(id).ok()) {
        headers.insert("request-id", v);
    }
}

struct Call {
    request_id: Option<String>,
    headers: Vec<(String, String)>,
    query: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for Call {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Call {
            request_id: parts.extensions.get::<RequestId>().map(|r| r.0.clone()),
            headers: parts
                .headers
                .iter()
                .filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned())))
                .collect(),
            query: parts.uri.query().map(str::to_owned),
        })
    }
}

async fn run(
    state: AppState,
    caller: GatewayCaller,
    call: Call,
    operation: Operation,
    body: Bytes,
) -> Response {
    let Some(gateway) = state.gateway() else {
        let e = GatewayError::new(
            ErrorKind::Unavailable,
            "the model gateway is not configured on this node",
        );
        return GatewayFailure(e, call.request_id).into_response();
    };
    let model_call = ModelCall {
        operation,
        body: body.to_vec(),
        headers: call.headers,
        query: call.query,
    };
    match portcullis_gateway::call(gateway, &state, &caller.0, model_call).await {
        Ok(answer) => relay(answer, call.request_id.as_deref()),
        Err(e) => GatewayFailure(e, call.request_id).into_response(),
    }
}

fn relay(answer: Answer, request_id: Option<&str>) -> Response {
    let (status, headers, mut response) = match answer {
        Answer::Complete {
            status,
            headers,
            body,
        } => {
            let mut r = Response::new(Body::from(body));
            r.headers_mut()
                .insert("content-type", HeaderValue::from_static("application/json"));
            (status, headers, r)
        }
        Answer::Stream {
            status,
            headers,
            events,
        } => {
            let frames = futures_util::stream::unfold(events, |mut rx| async move {
                rx.recv()
                    .await
                    .map(|b| (Ok::<_, std::convert::Infallible>(b), rx))
            });
            let mut r = Response::new(Body::from_stream(frames));
            let h = r.headers_mut();
            h.insert(
                "content-type",
                HeaderValue::from_static("text/event-stream; charset=utf-8"),
            );
            h.insert("cache-control", HeaderValue::from_static("no-cache"));
            (status, headers, r)
        }
    };
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    for (name, value) in headers {
        if let (Ok(n), Ok(v)) = (
            axum::http::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            response.headers_mut().insert(n, v);
        }
    }
    set_request_id(response.headers_mut(), request_id);
    response
}

/// `POST /gateway/v1/messages`: a JSON message, or server-sent events with `"stream": true`.
async fn messages(
    State(state): State<AppState>,
    caller: GatewayCaller,
    call: Call,
    body: Bytes,
) -> Response {
    run(state, caller, call, Operation::Messages, body).await
}

/// `POST /gateway/v1/messages/count_tokens`.
async fn count_tokens(
    State(state): State<AppState>,
    caller: GatewayCaller,
    call: Call,
    body: Bytes,
) -> Response {
    run(state, caller, call, Operation::CountTokens, body).await
}

/// `GET /gateway/v1/models`.
async fn models(State(state): State<AppState>, caller: GatewayCaller, call: Call) -> Response {
    run(state, caller, call, Operation::Models, Bytes::new()).await
}
