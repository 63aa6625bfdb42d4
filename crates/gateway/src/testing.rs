//! A faithful fake of Anthropic's Messages API (feature `testing`), for the test suites of the
//! gateway and the server: plain HTTP on a loopback port, as `portcullis-outbound` allows.
//!
//! It checks the `x-api-key` it receives (any key, or only those it was given), records every
//! request (method, path, query, headers, body) so that tests can assert what left the
//! building, and answers as the real API does: a JSON message, or the real event sequence
//! (`message_start`, `content_block_start`, `ping`, `content_block_delta` with `text_delta` or
//! `input_json_delta`, `content_block_stop`, `message_delta` with cumulative usage,
//! `message_stop`), `count_tokens`, the models list, and Anthropic's error bodies. Scripted
//! failures: an error status for the next requests, an `error` event mid-stream, a stream held
//! after its first delta until the test releases it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::{Request, Response};
use serde_json::{json, Value};
use tokio::sync::{mpsc, Notify};

/// One request as the fake received it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// Lower-cased names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// What the next `/v1/messages` request gets instead of a normal answer.
#[derive(Clone, Debug)]
pub enum Script {
    /// This status with Anthropic's error body for it (401, 403, 429, 500, 529, ...).
    Status(u16),
    /// A stream that breaks off with an `error` event after its first delta.
    MidStreamError,
    /// A stream that pauses after its first delta until the `Notify` is notified.
    Hold(Arc<Notify>),
    /// A JSON message whose usage reports these prompt-cache counts, as Anthropic does for a
    /// request with `cache_control` blocks (cache written, cache read).
    Cached { write: u64, read: u64 },
}

#[derive(Debug, Default)]
struct State {
    /// `None`: any key is accepted.
    keys: Option<Vec<String>>,
    requests: Vec<Recorded>,
    script: VecDeque<Script>,
    streams_finished: u64,
}

/// The fake, serving until dropped.
#[derive(Debug)]
pub struct FakeAnthropic {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeAnthropic {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub const TEXT: &str = "Hello from the fake upstream.";

impl FakeAnthropic {
    /// Accepts any `x-api-key`.
    pub async fn start() -> FakeAnthropic {
        Self::serve(None).await
    }

    /// Accepts only these keys; any other is 401 `authentication_error`.
    pub async fn with_keys(keys: &[&str]) -> FakeAnthropic {
        Self::serve(Some(keys.iter().map(|k| (*k).to_owned()).collect())).await
    }

    async fn serve(keys: Option<Vec<String>>) -> FakeAnthropic {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State {
            keys,
            ..State::default()
        }));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let state = shared.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(answer(state, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        FakeAnthropic { addr, state, task }
    }

    /// What `gateway.anthropic_base_url` is set to.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().requests.clone()
    }

    /// Requests to `/v1/messages` (streamed or not).
    pub fn message_requests(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == "/v1/messages")
            .collect()
    }

    /// Streams sent to their end (after a hold, a mid-stream error or normally).
    pub fn streams_finished(&self) -> u64 {
        self.state.lock().unwrap().streams_finished
    }

    /// The next `/v1/messages` request gets `script` instead of its normal answer.
    pub fn then(&self, script: Script) {
        self.state.lock().unwrap().script.push_back(script);
    }

    /// Every byte of every request, for "this value never left" assertions.
    pub fn everything_received(&self) -> String {
        self.requests()
            .iter()
            .map(|r| {
                let headers: Vec<String> =
                    r.headers.iter().map(|(n, v)| format!("{n}: {v}")).collect();
                format!(
                    "{} {}?{}\n{}\n{}\n",
                    r.method,
                    r.path,
                    r.query.as_deref().unwrap_or(""),
                    headers.join("\n"),
                    String::from_utf8_lossy(&r.body)
                )
            })
            .collect()
    }
}

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

fn request_id() -> String {
    format!("req_fake_{}", uuid::Uuid::now_v7().simple())
}

fn json_response(status: u16, body: Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("request-id", request_id())
        .body(Full::new(Bytes::from(body.to_string())).boxed())
        .unwrap()
}

/// Anthropic's error body for `status`, with the headers it sends alongside.
pub fn error_response(status: u16) -> Response<Body> {
    let (kind, message) = match status {
        400 => ("invalid_request_error", "invalid request"),
        401 => ("authentication_error", "invalid x-api-key"),
        403 => (
            "permission_error",
            "Your API key does not have permission to use the specified resource.",
        ),
        404 => ("not_found_error", "Not found"),
        429 => (
            "rate_limit_error",
            "Number of request tokens has exceeded your per-minute rate limit",
        ),
        529 => ("overloaded_error", "Overloaded"),
        _ => ("api_error", "Internal server error"),
    };
    let mut r = json_response(
        status,
        json!({ "type": "error", "error": { "type": kind, "message": message }, "request_id": request_id() }),
    );
    if status == 429 || status >= 500 {
        // The SDKs honour retry-after-ms: a short wait keeps retried tests quick.
        r.headers_mut()
            .insert("retry-after-ms", "10".parse().unwrap());
        r.headers_mut().insert("retry-after", "0".parse().unwrap());
    }
    r
}

async fn answer(state: Arc<Mutex<State>>, req: Request<Incoming>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let recorded = Recorded {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
            .collect(),
        body: body.to_vec(),
    };
    let key = recorded.header("x-api-key").map(str::to_owned);
    let (accepted, script) = {
        let mut s = state.lock().unwrap();
        s.requests.push(recorded.clone());
        let accepted = match (&s.keys, &key) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(keys), Some(k)) => keys.contains(k),
        };
        let script = if accepted && recorded.path == "/v1/messages" {
            s.script.pop_front()
        } else {
            None
        };
        (accepted, script)
    };
    if !accepted {
        return error_response(401);
    }
    if recorded.header("anthropic-version").is_none() {
        return json_response(
            400,
            json!({ "type": "error", "error": { "type": "invalid_request_error", "message": "anthropic-version: header is required" } }),
        );
    }
    match (parts.method.as_str(), recorded.path.as_str()) {
        ("GET", "/v1/models") => json_response(
            200,
            json!({
                "data": [
                    { "type": "model", "id": "claude-haiku-4-5", "display_name": "Claude Haiku 4.5", "created_at": "2025-10-01T00:00:00Z" },
                    { "type": "model", "id": "claude-sonnet-4-5", "display_name": "Claude Sonnet 4.5", "created_at": "2025-09-29T00:00:00Z" }
                ],
                "has_more": false,
                "first_id": "claude-haiku-4-5",
                "last_id": "claude-sonnet-4-5"
            }),
        ),
        ("POST", "/v1/messages/count_tokens") => {
            json_response(200, json!({ "input_tokens": input_tokens(&recorded.body) }))
        }
        ("POST", "/v1/messages") => {
            let request = recorded.json();
            if !request["model"].is_string() || !request["max_tokens"].is_u64() {
                return error_response(400);
            }
            match script {
                Some(Script::Status(s)) => error_response(s),
                Some(Script::Cached { write, read }) => {
                    let mut m = message(&request, input_tokens(&recorded.body));
                    m["usage"]["cache_creation_input_tokens"] = write.into();
                    m["usage"]["cache_read_input_tokens"] = read.into();
                    json_response(200, m)
                }
                other => {
                    if request["stream"] == json!(true) {
                        stream(state, &request, input_tokens(&recorded.body), other)
                    } else {
                        json_response(200, message(&request, input_tokens(&recorded.body)))
                    }
                }
            }
        }
        _ => error_response(404),
    }
}

fn input_tokens(body: &[u8]) -> u64 {
    (body.len() as u64 / 4).max(1)
}

/// The tool the model "calls": the first of the request's tools, if any.
fn tool(request: &Value) -> Option<String> {
    request["tools"][0]["name"].as_str().map(str::to_owned)
}

const TOOL_INPUT: &str = r#"{"city": "Paris", "unit": "celsius"}"#;

fn message(request: &Value, input: u64) -> Value {
    let (content, stop, output) = match tool(request) {
        Some(name) => (
            json!([{ "type": "tool_use", "id": "toolu_fake_1", "name": name, "input": serde_json::from_str::<Value>(TOOL_INPUT).unwrap() }]),
            "tool_use",
            12,
        ),
        None => (json!([{ "type": "text", "text": TEXT }]), "end_turn", 7),
    };
    json!({
        "id": "msg_fake_1",
        "type": "message",
        "role": "assistant",
        "model": request["model"],
        "content": content,
        "stop_reason": stop,
        "stop_sequence": null,
        "usage": { "input_tokens": input, "output_tokens": output, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0 }
    })
}

fn event(kind: &str, data: Value) -> Bytes {
    Bytes::from(format!("event: {kind}\ndata: {data}\n\n"))
}

fn stream(
    state: Arc<Mutex<State>>,
    request: &Value,
    input: u64,
    script: Option<Script>,
) -> Response<Body> {
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    let model = request["model"].clone();
    let tool = tool(request);
    tokio::spawn(async move {
        let send = |b: Bytes| {
            let tx = tx.clone();
            async move { tx.send(b).await.is_ok() }
        };
        let mut events = vec![event(
            "message_start",
            json!({ "type": "message_start", "message": {
                "id": "msg_fake_1", "type": "message", "role": "assistant", "model": model, "content": [],
                "stop_reason": null, "stop_sequence": null,
                "usage": { "input_tokens": input, "output_tokens": 1, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0 } } }),
        )];
        let (first_delta, rest, stop, output): (Bytes, Vec<Bytes>, &str, u64) = match &tool {
            Some(name) => {
                events.push(event("content_block_start", json!({ "type": "content_block_start", "index": 0,
                    "content_block": { "type": "tool_use", "id": "toolu_fake_1", "name": name, "input": {} } })));
                let (a, b) = TOOL_INPUT.split_at(9);
                let delta = |p: &str| {
                    event(
                        "content_block_delta",
                        json!({ "type": "content_block_delta", "index": 0,
                    "delta": { "type": "input_json_delta", "partial_json": p } }),
                    )
                };
                (delta(a), vec![delta(b)], "tool_use", 12)
            }
            None => {
                events.push(event(
                    "content_block_start",
                    json!({ "type": "content_block_start", "index": 0,
                    "content_block": { "type": "text", "text": "" } }),
                ));
                let delta = |t: &str| {
                    event(
                        "content_block_delta",
                        json!({ "type": "content_block_delta", "index": 0,
                    "delta": { "type": "text_delta", "text": t } }),
                    )
                };
                (
                    delta("Hello from "),
                    vec![delta("the fake "), delta("upstream.")],
                    "end_turn",
                    7,
                )
            }
        };
        events.push(event("ping", json!({ "type": "ping" })));
        events.push(first_delta);
        for e in events {
            if !send(e).await {
                return;
            }
        }
        match script {
            Some(Script::MidStreamError) => {
                let _ = send(event("error", json!({ "type": "error", "error": { "type": "overloaded_error", "message": "Overloaded" } }))).await;
                state.lock().unwrap().streams_finished += 1;
                return;
            }
            Some(Script::Hold(release)) => release.notified().await,
            _ => {}
        }
        let mut tail = rest;
        tail.push(event(
            "content_block_stop",
            json!({ "type": "content_block_stop", "index": 0 }),
        ));
        tail.push(event("message_delta", json!({ "type": "message_delta",
            "delta": { "stop_reason": stop, "stop_sequence": null }, "usage": { "output_tokens": output } })));
        tail.push(event("message_stop", json!({ "type": "message_stop" })));
        for e in tail {
            // A client that went away is the gateway's problem: the fake finishes regardless,
            // as the real API does once it has started.
            let _ = send(e).await;
            tokio::task::yield_now().await;
        }
        state.lock().unwrap().streams_finished += 1;
    });
    let frames = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    });
    Response::builder()
        .status(200)
        .header("content-type", "text/event-stream; charset=utf-8")
        .header("cache-control", "no-cache")
        .header("request-id", request_id())
        .body(StreamBody::new(frames).boxed())
        .unwrap()
}
