//! The model gateway (issue 14): controls M1 (the environment's own key, checked at connect
//! time, never another tenant's), M2 (the platform key only in the trial, `connect_your_key`
//! before any upstream call, no fallback) and L1 (every call in the intelligence log, sealed).
//! The upstream is `portcullis_gateway::testing::FakeAnthropic`, which records everything it
//! receives: what left the building is asserted, not assumed.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, StatusCode};
use http_body_util::BodyExt;
use portcullis_core::{Permission, PermissionSet};
use portcullis_gateway::testing::{FakeAnthropic, Script, TEXT};
use portcullis_gateway::LoggedCall;
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::support::{request, GatewaySetup, Reply, TestApp, User};

const MESSAGES: &str = "/gateway/v1/messages";

pub(crate) async fn api_token(app: &TestApp, owner: &User, env: &str, role: &str) -> String {
    let r = app
        .post(
            &format!("/v1/environments/{env}/tokens"),
            &owner.token,
            json!({ "name": format!("gw-{role}"), "role": role }),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    r.body["token"].as_str().unwrap().to_owned()
}

pub(crate) async fn connect_key(app: &TestApp, owner: &User, env: &str, key: &str) -> Reply {
    app.put(
        &format!("/v1/environments/{env}/model-key"),
        &owner.token,
        json!({ "provider": "anthropic", "api_key": key }),
    )
    .await
}

fn hello(stream: bool) -> Value {
    json!({
        "model": "claude-haiku-4-5",
        "max_tokens": 64,
        "messages": [{ "role": "user", "content": "MARKER-prompt-4471: say hello" }],
        "stream": stream,
    })
}

/// A gateway call with the token in `x-api-key`, as the 1.x SDKs send it.
async fn call(app: &TestApp, token: &str, body: Value) -> Reply {
    let req = request(Method::POST, MESSAGES, None)
        .header("x-api-key", token)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    app.send(req).await
}

/// Raw answer of a streamed call: status, headers, body text.
async fn call_raw(
    app: &TestApp,
    token: &str,
    body: Value,
) -> (StatusCode, axum::http::HeaderMap, String) {
    let req = request(Method::POST, MESSAGES, Some(token))
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let res = app.router.clone().oneshot(req).await.unwrap();
    let (status, headers) = (res.status(), res.headers().clone());
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

/// The environment's intelligence log with its content opened, as the log routes will show it.
pub(crate) async fn logged(app: &TestApp, env: &str) -> Vec<LoggedCall> {
    let mut tx = app
        .state
        .store()
        .tenant_as_system(
            env.parse().unwrap(),
            PermissionSet::of(&[Permission::AuditRead]),
            Default::default(),
        )
        .await
        .unwrap();
    let rows = portcullis_gateway::open_logged(&app.state, &mut tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    rows
}

fn assert_refusal(r: &Reply, status: StatusCode, kind: &str) {
    assert_eq!(r.status, status, "{:?}", r.body);
    assert_eq!(r.body["type"], "error", "{:?}", r.body);
    assert_eq!(r.body["error"]["type"], kind, "{:?}", r.body);
    assert!(r.headers.contains_key("request-id"), "{:?}", r.headers);
}

/// Control M1: the upstream sees the environment's own key and never the caller's token; two
/// environments with their own keys each pay for their own calls; only allow-listed headers
/// and the request as sent (unknown fields, `?beta=true`) reach the provider.
#[tokio::test]
async fn m1_each_environment_pays_with_its_own_key_and_the_token_never_leaves() {
    let upstream =
        FakeAnthropic::with_keys(&["sk-ant-alpha-key-0001", "sk-ant-beta-key-00002"]).await;
    let app = TestApp::spawn_gateway(GatewaySetup::with(upstream)).await;
    let owner = app.signup("owner@example.com").await;
    let alpha = app.create_environment(&owner, "Alpha").await;
    let beta = app.create_environment(&owner, "Beta").await;
    assert_eq!(
        connect_key(&app, &owner, &alpha, "sk-ant-alpha-key-0001")
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        connect_key(&app, &owner, &beta, "sk-ant-beta-key-00002")
            .await
            .status,
        StatusCode::OK
    );
    let ta = api_token(&app, &owner, &alpha, "contributor").await;
    let tb = api_token(&app, &owner, &beta, "contributor").await;
    let before = app.upstream.message_requests().len();

    let mut body = hello(false);
    body["metadata"] = json!({ "user_id": "u-1" });
    body["future_field"] = json!({ "kept": true });
    let req = request(Method::POST, "/gateway/v1/messages?beta=true", None)
        .header("x-api-key", &ta)
        .header("content-type", "application/json")
        .header("anthropic-version", "2023-06-01")
        .header("anthropic-beta", "tools-2024-04-04")
        .header("cookie", "portcullis_session=pcs_sess_stolen")
        .header("x-forwarded-for", "203.0.113.9")
        .header("x-custom-tracking", "secret-tracking-value")
        .body(Body::from(body.to_string()))
        .unwrap();
    let r = app.send(req).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["content"][0]["text"], TEXT);
    let r = call(&app, &tb, hello(false)).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);

    let sent = app.upstream.message_requests();
    let (a, b) = (&sent[before], &sent[before + 1]);
    assert_eq!(a.header("x-api-key"), Some("sk-ant-alpha-key-0001"));
    assert_eq!(b.header("x-api-key"), Some("sk-ant-beta-key-00002"));
    assert_eq!(a.query.as_deref(), Some("beta=true"));
    assert_eq!(a.header("anthropic-beta"), Some("tools-2024-04-04"));
    assert_eq!(a.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(
        a.json(),
        body,
        "the body is forwarded as sent, unknown fields included"
    );
    for forbidden in [
        "cookie",
        "authorization",
        "x-forwarded-for",
        "x-custom-tracking",
    ] {
        assert!(a.header(forbidden).is_none(), "{forbidden} was forwarded");
    }
    let everything = app.upstream.everything_received();
    for secret in [
        ta.as_str(),
        tb.as_str(),
        "pcs_sess_stolen",
        "secret-tracking-value",
        "203.0.113.9",
    ] {
        assert!(
            !everything.contains(secret),
            "{secret} reached the provider"
        );
    }
    // Each call is recorded in its own environment only, paid by its own key.
    for env in [&alpha, &beta] {
        let rows = logged(&app, env).await;
        assert_eq!(rows.len(), 1);
        assert_eq!(
            (rows[0].key_source.as_str(), rows[0].success),
            ("byok", true)
        );
    }
}

/// Control M1 at connect time: a key the provider refuses is not stored and the answer names
/// the provider's reason; an accepted key was checked by listing the models and a 1-token
/// request to the configured cheapest model. A member who may not manage keys cannot make
/// Portcullis send a key anywhere.
#[tokio::test]
async fn m1_model_keys_are_checked_with_the_provider_before_they_are_stored() {
    let upstream = FakeAnthropic::with_keys(&["sk-ant-good-key-000001"]).await;
    let app = TestApp::spawn_gateway(GatewaySetup::with(upstream)).await;
    let owner = app.signup("owner@example.com").await;
    let env = app.create_environment(&owner, "Acme").await;

    let r = connect_key(&app, &owner, &env, "sk-ant-wrong-key-00001").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r.body);
    assert_eq!(r.code(), "model_key_invalid");
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("invalid x-api-key"),
        "{:?}",
        r.body
    );
    let got = app
        .get(&format!("/v1/environments/{env}/model-key"), &owner.token)
        .await;
    assert_eq!(
        got.status,
        StatusCode::NOT_FOUND,
        "a refused key is not stored"
    );

    let viewer = app.signup("viewer@example.com").await;
    app.add_member(&owner, &env, &viewer, "viewer").await;
    let sent_before = app.upstream.requests().len();
    let r = connect_key(&app, &viewer, &env, "sk-ant-probe-key-00001").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);
    assert_eq!(
        app.upstream.requests().len(),
        sent_before,
        "a refused caller's key went out"
    );

    let r = connect_key(&app, &owner, &env, "sk-ant-good-key-000001").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["key_hint"], "…0001");
    let checks: Vec<_> = app.upstream.requests()[sent_before..].to_vec();
    assert_eq!(checks.len(), 2, "{checks:?}");
    assert_eq!(
        (checks[0].method.as_str(), checks[0].path.as_str()),
        ("GET", "/v1/models")
    );
    assert_eq!(
        (checks[1].method.as_str(), checks[1].path.as_str()),
        ("POST", "/v1/messages")
    );
    assert_eq!(checks[1].json()["max_tokens"], 1);
    assert_eq!(checks[1].json()["model"], "claude-haiku-4-5");
}

/// Control M2: the platform key pays only during the trial; past it (or with no platform key)
/// the preflight answers `connect_your_key` with the console URL and `x-should-retry: false`,
/// before any upstream call; the refusal is on the record too.
#[tokio::test]
async fn m2_platform_key_pays_only_during_the_trial_then_connect_your_key() {
    let upstream = FakeAnthropic::with_keys(&["sk-ant-platform-0000001"]).await;
    let mut setup = GatewaySetup::with(upstream);
    setup.platform_key = Some("sk-ant-platform-0000001".into());
    let app = TestApp::spawn_gateway(setup).await;
    let owner = app.signup("owner@example.com").await;
    let env = app.create_environment(&owner, "Trial").await;
    let token = api_token(&app, &owner, &env, "contributor").await;
    let r = call(&app, &token, hello(false)).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(
        app.upstream.message_requests()[0].header("x-api-key"),
        Some("sk-ant-platform-0000001")
    );
    assert_eq!(logged(&app, &env).await[0].key_source, "platform");

    for (trial_days, platform) in [(0, Some("sk-ant-platform-0000001")), (14, None)] {
        let mut setup = GatewaySetup::accepting_any_key().await;
        setup.config.trial_days = trial_days;
        setup.platform_key = platform.map(str::to_owned);
        let app = TestApp::spawn_gateway(setup).await;
        let owner = app.signup("owner@example.com").await;
        let env = app.create_environment(&owner, "Expired").await;
        let token = api_token(&app, &owner, &env, "contributor").await;
        for body in [hello(false), hello(true)] {
            let r = call(&app, &token, body).await;
            assert_refusal(&r, StatusCode::FORBIDDEN, "permission_error");
            assert_eq!(r.body["error"]["code"], "connect_your_key", "{:?}", r.body);
            assert_eq!(
                r.body["error"]["console_url"],
                "https://console.example.com/model-key"
            );
            assert_eq!(r.headers["x-should-retry"], "false");
        }
        let r = app
            .send(
                request(Method::GET, "/gateway/v1/models", Some(&token))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(r.body["error"]["code"], "connect_your_key", "{:?}", r.body);
        assert!(
            app.upstream.requests().is_empty(),
            "a refused call reached the provider"
        );
        let rows = logged(&app, &env).await;
        assert_eq!(rows.len(), 2, "each refused model call is on the record");
        assert!(rows.iter().all(|r| !r.success
            && r.error.as_deref().unwrap().contains("connect your own")
            && r.key_source == "platform"));
    }
}

/// Controls M1 and M2: an environment's own key refused by the provider (401 or 403) is the
/// call's answer: it is never retried on the platform key, and the SDK is told not to retry.
#[tokio::test]
async fn m2_a_refused_own_key_is_never_retried_on_the_platform_key() {
    let upstream =
        FakeAnthropic::with_keys(&["sk-ant-own-key-0000001", "sk-ant-platform-0000001"]).await;
    let mut setup = GatewaySetup::with(upstream);
    setup.platform_key = Some("sk-ant-platform-0000001".into());
    let app = TestApp::spawn_gateway(setup).await;
    let owner = app.signup("owner@example.com").await;
    let env = app.create_environment(&owner, "Acme").await;
    assert_eq!(
        connect_key(&app, &owner, &env, "sk-ant-own-key-0000001")
            .await
            .status,
        StatusCode::OK
    );
    let token = api_token(&app, &owner, &env, "contributor").await;
    let before = app.upstream.message_requests().len();
    for (status, body) in [(401, hello(false)), (403, hello(true))] {
        app.upstream.then(Script::Status(status));
        let r = call(&app, &token, body).await;
        assert_refusal(&r, StatusCode::FORBIDDEN, "permission_error");
        assert_eq!(r.body["error"]["code"], "model_key_rejected");
        assert!(
            r.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("own model key"),
            "{:?}",
            r.body
        );
        assert_eq!(r.headers["x-should-retry"], "false");
    }
    let sent = &app.upstream.message_requests()[before..];
    assert_eq!(sent.len(), 2, "one upstream attempt per call");
    assert!(sent
        .iter()
        .all(|r| r.header("x-api-key") == Some("sk-ant-own-key-0000001")));
    assert!(!app
        .upstream
        .everything_received()
        .contains("sk-ant-platform-0000001"));
    let rows = logged(&app, &env).await;
    assert!(rows.iter().all(|r| r.key_source == "byok" && !r.success));
}

/// Control M1, who may call: no token, an unknown or revoked token, a session or a token
/// whose role lacks `models.invoke` are refused in Anthropic's shape, and nothing reaches the
/// provider. A token of one environment never reaches another's key.
#[tokio::test]
async fn m1_only_live_api_tokens_with_models_invoke_call_models() {
    let upstream = FakeAnthropic::with_keys(&["sk-ant-alpha-key-0001"]).await;
    let app = TestApp::spawn_gateway(GatewaySetup::with(upstream)).await;
    let owner = app.signup("owner@example.com").await;
    let alpha = app.create_environment(&owner, "Alpha").await;
    let beta = app.create_environment(&owner, "Beta").await;
    assert_eq!(
        connect_key(&app, &owner, &alpha, "sk-ant-alpha-key-0001")
            .await
            .status,
        StatusCode::OK
    );
    let viewer = api_token(&app, &owner, &alpha, "viewer").await;
    let revoked = app
        .post(
            &format!("/v1/environments/{alpha}/tokens"),
            &owner.token,
            json!({ "name": "old", "role": "admin" }),
        )
        .await;
    let revoked_id = revoked.body["api_token"]["token_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let revoked = revoked.body["token"].as_str().unwrap().to_owned();
    assert_eq!(
        app.delete(
            &format!("/v1/environments/{alpha}/tokens/{revoked_id}"),
            &owner.token
        )
        .await
        .status,
        StatusCode::OK
    );
    let beta_token = api_token(&app, &owner, &beta, "admin").await;
    let sent_before = app.upstream.requests().len();

    let r = app
        .send(
            request(Method::POST, MESSAGES, None)
                .header("content-type", "application/json")
                .body(Body::from(hello(false).to_string()))
                .unwrap(),
        )
        .await;
    assert_refusal(&r, StatusCode::UNAUTHORIZED, "authentication_error");
    for bad in [
        "pcs_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "sk-ant-alpha-key-0001",
        revoked.as_str(),
    ] {
        let r = call(&app, bad, hello(false)).await;
        assert_refusal(&r, StatusCode::UNAUTHORIZED, "authentication_error");
        assert_eq!(r.headers["x-should-retry"], "false");
    }
    let r = call(&app, &owner.token, hello(false)).await;
    assert_refusal(&r, StatusCode::FORBIDDEN, "permission_error");
    let r = call(&app, &viewer, hello(false)).await;
    assert_refusal(&r, StatusCode::FORBIDDEN, "permission_error");
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("models.invoke"),
        "{:?}",
        r.body
    );
    // Beta has no key of its own and no platform key: Alpha's key is not an option.
    let r = call(&app, &beta_token, hello(false)).await;
    assert_eq!(r.body["error"]["code"], "connect_your_key", "{:?}", r.body);
    assert_eq!(
        app.upstream.requests().len(),
        sent_before,
        "a refused call reached the provider"
    );
}

/// Bad input is refused before anything leaves, in Anthropic's shape.
#[tokio::test]
async fn m1_a_body_that_is_not_a_messages_request_is_refused_before_the_upstream() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@example.com").await;
    let env = app.create_environment(&owner, "Acme").await;
    assert_eq!(
        connect_key(&app, &owner, &env, "sk-ant-any-key-00000001")
            .await
            .status,
        StatusCode::OK
    );
    let token = api_token(&app, &owner, &env, "contributor").await;
    let before = app.upstream.requests().len();
    for body in [
        json!([1, 2]),
        json!({ "max_tokens": 5 }),
        json!({ "model": "m", "stream": "yes" }),
    ] {
        let r = call(&app, &token, body).await;
        assert_refusal(&r, StatusCode::BAD_REQUEST, "invalid_request_error");
        assert_eq!(r.headers["x-should-retry"], "false");
    }
    let req = request(Method::POST, MESSAGES, Some(&token))
        .body(Body::from("{not json"))
        .unwrap();
    assert_refusal(
        &app.send(req).await,
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
    );
    assert_eq!(app.upstream.requests().len(), before);
}

fn events(sse: &str) -> Vec<String> {
    sse.split("\n\n")
        .filter(|f| !f.trim().is_empty())
        .map(|f| {
            f.lines()
                .find_map(|l| l.strip_prefix("event: "))
                .unwrap_or_else(|| panic!("a frame without its event line: {f:?}"))
                .to_owned()
        })
        .collect()
}

/// Control L1: every call, success or failure (JSON, streamed, a provider error, a
/// mid-stream error), is one intelligence-log row with its tokens, key source, request ids and
/// outcome; prompt and output are sealed (not in the database in clear) and open to the
/// environment's readers; the rows stay committed in the audit chain.
#[tokio::test]
async fn l1_every_call_is_logged_with_sealed_content() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@example.com").await;
    let env = app.create_environment(&owner, "Acme").await;
    assert_eq!(
        connect_key(&app, &owner, &env, "sk-ant-any-key-00000001")
            .await
            .status,
        StatusCode::OK
    );
    let token = api_token(&app, &owner, &env, "contributor").await;

    let ok = call(&app, &token, hello(false)).await;
    assert_eq!(ok.status, StatusCode::OK);
    let (status, headers, sse) = call_raw(&app, &token, hello(true)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    assert_eq!(
        events(&sse),
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    app.upstream.then(Script::Status(529));
    let overloaded = call(&app, &token, hello(false)).await;
    assert_eq!(overloaded.status.as_u16(), 529, "{:?}", overloaded.body);
    assert_eq!(overloaded.body["error"]["type"], "overloaded_error");
    assert!(
        overloaded.headers.contains_key("retry-after-ms"),
        "retry advice is relayed"
    );
    app.upstream.then(Script::MidStreamError);
    let (_, _, broken) = call_raw(&app, &token, hello(true)).await;
    assert_eq!(events(&broken).last().map(String::as_str), Some("error"));

    let rows = logged(&app, &env).await;
    assert_eq!(rows.len(), 4, "{rows:?}");
    let (json_call, streamed, failed, mid) = (&rows[0], &rows[1], &rows[2], &rows[3]);
    assert_eq!(
        json_call.request_id.as_deref(),
        ok.headers["request-id"].to_str().ok()
    );
    assert!(json_call
        .upstream_request_id
        .as_deref()
        .unwrap()
        .starts_with("req_fake_"));
    assert_eq!(
        (json_call.model.as_str(), json_call.provider.as_deref()),
        ("claude-haiku-4-5", Some("anthropic"))
    );
    assert_eq!(
        json_call.input.as_ref().unwrap()["messages"][0]["content"],
        "MARKER-prompt-4471: say hello"
    );
    assert_eq!(
        json_call.output.as_ref().unwrap()["content"][0]["text"],
        TEXT
    );
    assert_eq!(json_call.usage.output_tokens, 7);
    assert!(
        streamed.success && streamed.usage.output_tokens == 7 && streamed.usage.input_tokens > 0
    );
    assert_eq!(
        streamed.output.as_ref().unwrap()["content"][0]["text"],
        TEXT,
        "the streamed text is on the record"
    );
    assert!(
        !failed.success && failed.error.as_deref() == Some("Overloaded"),
        "{failed:?}"
    );
    assert!(
        !mid.success && mid.error.as_deref() == Some("Overloaded"),
        "{mid:?}"
    );
    assert!(rows
        .iter()
        .all(|r| r.key_source == "byok" && r.actor_type == "api_token"));

    let dump = app.pg_dump();
    assert!(
        !dump.contains("MARKER-prompt-4471"),
        "a prompt is in the database in clear"
    );
    assert!(
        !dump.contains("Hello from the fake"),
        "an output is in the database in clear"
    );
    let mut tx = app
        .state
        .store()
        .tenant_as_system(
            env.parse().unwrap(),
            PermissionSet::of(&[Permission::AuditRead]),
            Default::default(),
        )
        .await
        .unwrap();
    app.db.sequence(env.parse().unwrap()).await;
    let report = portcullis_store::streams::check(&mut tx).await.unwrap();
    assert_eq!(report.intelligence_rows, 4);
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

/// Control L1 with a client that goes away mid-stream: the gateway keeps reading the
/// upstream to its end and records the final usage and the whole output.
#[tokio::test]
async fn l1_a_stream_the_client_abandons_is_read_to_its_end_and_logged() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@example.com").await;
    let env = app.create_environment(&owner, "Acme").await;
    assert_eq!(
        connect_key(&app, &owner, &env, "sk-ant-any-key-00000001")
            .await
            .status,
        StatusCode::OK
    );
    let token = api_token(&app, &owner, &env, "contributor").await;
    let release = Arc::new(tokio::sync::Notify::new());
    app.upstream.then(Script::Hold(release.clone()));
    let req = request(Method::POST, MESSAGES, Some(&token))
        .body(Body::from(hello(true).to_string()))
        .unwrap();
    let res = app.router.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let mut body = res.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("message_start"));
    drop(body);
    // The client is gone; the upstream now sends the rest.
    release.notify_one();
    let mut rows = vec![];
    for _ in 0..300 {
        rows = logged(&app, &env).await;
        if !rows.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(rows.len(), 1, "the abandoned call is not on the record");
    let row = &rows[0];
    assert_eq!(
        row.usage.output_tokens, 7,
        "the final usage was read: {row:?}"
    );
    assert_eq!(row.output.as_ref().unwrap()["content"][0]["text"], TEXT);
    assert!(
        row.error.as_deref().unwrap().contains("client went away"),
        "{row:?}"
    );
    assert_eq!(app.upstream.streams_finished(), 1);
}

/// Streamed tool use: `input_json_delta` pieces are relayed as they come and the tool input
/// is assembled on the record; count_tokens and the models list pass through.
#[tokio::test]
async fn l1_tool_use_streams_count_tokens_and_models_pass_through() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@example.com").await;
    let env = app.create_environment(&owner, "Acme").await;
    assert_eq!(
        connect_key(&app, &owner, &env, "sk-ant-any-key-00000001")
            .await
            .status,
        StatusCode::OK
    );
    let token = api_token(&app, &owner, &env, "contributor").await;
    let mut body = hello(true);
    body["tools"] = json!([{ "name": "get_weather", "description": "weather", "input_schema": { "type": "object" } }]);
    let (status, _, sse) = call_raw(&app, &token, body).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(sse.matches("input_json_delta").count(), 2, "{sse}");
    let rows = logged(&app, &env).await;
    assert_eq!(
        rows[0].output.as_ref().unwrap()["content"][0]["input"],
        json!({ "city": "Paris", "unit": "celsius" })
    );

    let r = app
        .send(
            request(Method::POST, "/gateway/v1/messages/count_tokens", Some(&token))
                .body(Body::from(json!({ "model": "claude-haiku-4-5", "messages": [{ "role": "user", "content": "hi" }] }).to_string()))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert!(r.body["input_tokens"].as_u64().unwrap() > 0);
    let r = app
        .send(
            request(Method::GET, "/gateway/v1/models?beta=true", Some(&token))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["data"][0]["id"], "tier:fast", "the tiers first (M3)");
    assert_eq!(r.body["data"][3]["id"], "claude-haiku-4-5");
    assert_eq!(
        logged(&app, &env).await.len(),
        2,
        "count_tokens is logged; the models list is not a model call"
    );
}
