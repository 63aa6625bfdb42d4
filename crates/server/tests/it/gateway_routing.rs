//! Tier routing (control M3) and the price registry (control I2, registry only): a request
//! names a tier or an allowed model; the upstream receives the concrete model and every other
//! byte of the body as sent; a tier, disallowed or unpriced model is refused with a 400 before
//! any upstream call; each logged call carries its tier, concrete model, cost and pricing
//! version. What reached the fake upstream is asserted, not assumed.

use axum::body::Body;
use axum::http::{Method, StatusCode};
use portcullis_gateway::testing::{FakeAnthropic, Script};
use portcullis_service::config::{Config, GatewayConfig};
use serde_json::json;

use crate::gateway::{api_token, connect_key, logged};
use crate::support::{request, GatewaySetup, Reply, TestApp};

const MESSAGES: &str = "/gateway/v1/messages";

/// An app whose environment has its own key, and a contributor's API token.
async fn app_with(config: Option<GatewayConfig>) -> (TestApp, String, String) {
    let mut setup = GatewaySetup::with(FakeAnthropic::start().await);
    if let Some(mut c) = config {
        c.anthropic_base_url = setup.config.anthropic_base_url.clone();
        c.console_url = setup.config.console_url.clone();
        setup.config = c;
    }
    let app = TestApp::spawn_gateway(setup).await;
    let owner = app.signup("owner@example.com").await;
    let env = app.create_environment(&owner, "Acme").await;
    let r = connect_key(&app, &owner, &env, "sk-ant-any-key-00000001").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let token = api_token(&app, &owner, &env, "contributor").await;
    (app, env, token)
}

async fn send_raw(app: &TestApp, path: &str, token: &str, body: &str) -> Reply {
    app.send(
        request(Method::POST, path, Some(token))
            .header("content-type", "application/json")
            .body(Body::from(body.to_owned()))
            .unwrap(),
    )
    .await
}

/// The `[gateway]` section of a configuration file, loaded as `serve` loads it.
fn gateway_config(toml: &str) -> GatewayConfig {
    let path = std::env::temp_dir().join(format!("pc-gw-{}.toml", uuid::Uuid::now_v7()));
    std::fs::write(&path, toml).unwrap();
    let c = Config::load(Some(&path), Vec::new()).unwrap();
    std::fs::remove_file(&path).unwrap();
    c.gateway
}

fn assert_invalid(r: &Reply, needles: &[&str]) {
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r.body);
    assert_eq!(r.body["type"], "error");
    assert_eq!(
        r.body["error"]["type"], "invalid_request_error",
        "{:?}",
        r.body
    );
    assert_eq!(r.headers["x-should-retry"], "false");
    assert!(r.headers.contains_key("request-id"));
    let message = r.body["error"]["message"].as_str().unwrap();
    for n in needles {
        assert!(message.contains(n), "{n:?} not in {message}");
    }
}

/// M3: `tier:fast` goes to the fast tier's model; the upstream receives exactly the body the
/// caller sent (spacing, key order, number spelling, unknown fields) with only the model's
/// value replaced; the log records the tier and the concrete model.
#[tokio::test]
async fn m3_a_tier_is_routed_and_the_upstream_gets_the_rest_of_the_body_unchanged() {
    let (app, env, token) = app_with(None).await;
    let connect = app.upstream.message_requests().len();
    let sent = r#"{"zzz_unknown": {"model": "not-this-one", "n": 1.50e0},
  "max_tokens":64 , "model" : "tier:fast", "messages":[{"role":"user","content":"hi \u00e9"}], "metadata":{"user_id":"u-1"}}"#;
    let r = send_raw(&app, MESSAGES, &token, sent).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let upstream = app.upstream.message_requests();
    assert_eq!(upstream.len(), connect + 1);
    assert_eq!(
        String::from_utf8(upstream[connect].body.clone()).unwrap(),
        sent.replace(
            r#""model" : "tier:fast""#,
            r#""model" : "claude-haiku-4-5""#
        )
    );
    for (tier, model) in [
        ("tier:balanced", "claude-sonnet-4-5"),
        ("tier:deep", "claude-opus-4-5"),
    ] {
        let body = json!({ "model": tier, "max_tokens": 8, "messages": [{ "role": "user", "content": "x" }] });
        let r = send_raw(&app, MESSAGES, &token, &body.to_string()).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        assert_eq!(
            app.upstream.message_requests().last().unwrap().json()["model"],
            model
        );
    }
    // A concrete model the policy allows goes as named, with no tier.
    let body = json!({ "model": "claude-sonnet-4-5-20250929", "max_tokens": 8, "messages": [{ "role": "user", "content": "x" }] });
    assert_eq!(
        send_raw(&app, MESSAGES, &token, &body.to_string())
            .await
            .status,
        StatusCode::OK
    );
    // count_tokens routes too (and costs nothing).
    let body = json!({ "model": "tier:deep", "messages": [{ "role": "user", "content": "x" }] });
    let r = send_raw(
        &app,
        "/gateway/v1/messages/count_tokens",
        &token,
        &body.to_string(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(
        app.upstream.requests().last().unwrap().json()["model"],
        "claude-opus-4-5"
    );

    let rows = logged(&app, &env).await;
    let seen: Vec<(Option<&str>, &str)> = rows
        .iter()
        .map(|r| (r.tier.as_deref(), r.model.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            (Some("fast"), "claude-haiku-4-5"),
            (Some("balanced"), "claude-sonnet-4-5"),
            (Some("deep"), "claude-opus-4-5"),
            (None, "claude-sonnet-4-5-20250929"),
            (Some("deep"), "claude-opus-4-5"),
        ]
    );
    assert_eq!(
        (rows[4].cost_micros, rows[4].pricing_version.as_deref()),
        (0, None),
        "count_tokens is free"
    );
}

/// M3: an unknown tier, a model the operator did not allow, and a body naming `model` twice
/// (Portcullis would check one, the provider might run the other) are refused with a 400 that
/// names what is allowed, `x-should-retry: false`, before any upstream call, and are on the
/// record as refusals.
#[tokio::test]
async fn m3_unknown_tiers_disallowed_and_repeated_models_are_refused_before_the_upstream() {
    let config = GatewayConfig {
        allowed_models: Some(vec!["claude-haiku-4-5".into()]),
        ..GatewayConfig::default()
    };
    let (app, env, token) = app_with(Some(config)).await;
    let before = app.upstream.requests().len();
    let ask = |model: &str| {
        json!({ "model": model, "max_tokens": 8, "messages": [{ "role": "user", "content": "x" }] })
            .to_string()
    };
    for tier in ["tier:cheap", "tier:", "tier:Fast"] {
        let r = send_raw(&app, MESSAGES, &token, &ask(tier)).await;
        assert_invalid(&r, &["unknown tier", "tier:fast, tier:balanced, tier:deep"]);
    }
    for model in ["claude-opus-4-5", "gpt-5", "claude-haiku-4-5 "] {
        let r = send_raw(&app, MESSAGES, &token, &ask(model)).await;
        assert_invalid(&r, &["is not allowed", "claude-haiku-4-5", "tier:fast"]);
        let r = send_raw(
            &app,
            "/gateway/v1/messages/count_tokens",
            &token,
            &ask(model),
        )
        .await;
        assert_invalid(&r, &["is not allowed"]);
    }
    for twice in [
        r#"{"model":"claude-haiku-4-5","max_tokens":8,"messages":[],"model":"claude-opus-4-1"}"#,
        r#"{"model":"claude-haiku-4-5","max_tokens":8,"messages":[],"mod\u0065l":"claude-opus-4-1"}"#,
    ] {
        let r = send_raw(&app, MESSAGES, &token, twice).await;
        assert_invalid(&r, &["more than once"]);
    }
    assert_eq!(
        app.upstream.requests().len(),
        before,
        "nothing reached the provider"
    );
    let rows = logged(&app, &env).await;
    assert_eq!(rows.len(), 9, "each routing refusal is on the record");
    assert!(rows
        .iter()
        .all(|r| !r.success && r.tier.is_none() && r.cost_micros == 0));
    assert_eq!(
        rows[0].model, "tier:cheap",
        "a refusal records the model as requested"
    );
    // A tier is the operator's own choice: allowed whatever the allow-list says.
    let r = send_raw(&app, MESSAGES, &token, &ask("tier:deep")).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
}

/// M3: the tier registry is configuration. Two gateways built from two files that differ by
/// one line route `tier:fast` to different models, over the same database, with no code
/// change; the models list shows each tier and the model it maps to.
#[tokio::test]
async fn m3_changing_one_line_of_config_changes_where_a_tier_goes() {
    let base = |fast: &str| {
        format!(
            "[gateway]\nanthropic_base_url = \"http://127.0.0.1:9\"\n[gateway.tiers.anthropic]\nfast = \"{fast}\"\nbalanced = \"claude-sonnet-4-5\"\ndeep = \"claude-opus-4-5\"\n"
        )
    };
    let one = gateway_config(&base("claude-haiku-4-5"));
    let two = gateway_config(&base("claude-3-5-haiku-20241022"));
    assert_eq!(one.tiers.anthropic.balanced, two.tiers.anthropic.balanced);
    let (app, env, token) = app_with(Some(one)).await;
    let connect = app.upstream.message_requests().len();
    let mut two = two;
    two.anthropic_base_url = app.upstream.base_url();
    let client = portcullis_outbound::Client::new(portcullis_outbound::Limits::default()).unwrap();
    let gw2 = portcullis_gateway::Gateway::new(&two, client, None).unwrap();
    let router2 = portcullis_server::app::router(
        app.state.clone().with_gateway(gw2),
        portcullis_server::app::Limits::default(),
    );
    let body = json!({ "model": "tier:fast", "max_tokens": 8, "messages": [{ "role": "user", "content": "x" }] }).to_string();
    assert_eq!(
        send_raw(&app, MESSAGES, &token, &body).await.status,
        StatusCode::OK
    );
    let req = request(Method::POST, MESSAGES, Some(&token))
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap();
    let res = tower::ServiceExt::oneshot(router2.clone(), req)
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let models: Vec<String> = app
        .upstream
        .message_requests()
        .iter()
        .skip(connect)
        .map(|r| r.json()["model"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(models, ["claude-haiku-4-5", "claude-3-5-haiku-20241022"]);
    let rows = logged(&app, &env).await;
    assert_eq!(rows[1].model, "claude-3-5-haiku-20241022");
    assert_eq!(rows[1].tier.as_deref(), Some("fast"));

    // The models list: the tiers first, each naming its model, then the upstream's list.
    let r = app
        .send(
            request(Method::GET, "/gateway/v1/models", Some(&token))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let data = r.body["data"].as_array().unwrap();
    assert_eq!(data[0]["id"], "tier:fast");
    assert_eq!(data[0]["type"], "model");
    assert!(data[0]["display_name"]
        .as_str()
        .unwrap()
        .contains("claude-haiku-4-5"));
    assert_eq!(data[1]["id"], "tier:balanced");
    assert_eq!(data[2]["id"], "tier:deep");
    assert!(data[2]["display_name"]
        .as_str()
        .unwrap()
        .contains("claude-opus-4-5"));
    assert_eq!(
        data[3]["id"], "claude-haiku-4-5",
        "then the upstream's own list"
    );
}

/// I2: a call's cost is computed from its usage, cache tokens included, at the registry's
/// prices, in integer micro-dollars rounded up once; the row records the pricing version. An
/// operator's registry (one new version in the configuration) replaces the shipped one.
#[tokio::test]
async fn i2_the_logged_row_carries_its_exact_cost_and_pricing_version() {
    let (app, env, token) = app_with(None).await;
    app.upstream.then(Script::Cached {
        write: 2000,
        read: 30_000,
    });
    let body = json!({ "model": "tier:fast", "max_tokens": 64, "messages": [{ "role": "user", "content": "cached" }] }).to_string();
    let r = send_raw(&app, MESSAGES, &token, &body).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let rows = logged(&app, &env).await;
    let row = &rows[0];
    let u = row.usage;
    assert_eq!(
        (
            u.cache_creation_input_tokens,
            u.cache_read_input_tokens,
            u.output_tokens
        ),
        (2000, 30_000, 7)
    );
    // Haiku 4.5: $1 input, $5 output, $1.25 cache write, $0.10 cache read per million tokens.
    // 2000 x 1.25 + 30000 x 0.10 = 5500 micro-dollars, plus the input and 7 x 5 output.
    assert_eq!(row.cost_micros, u.input_tokens + 35 + 5500);
    assert_eq!(
        row.pricing_version.as_deref(),
        Some(portcullis_gateway::pricing::SHIPPED_VERSION)
    );

    let own = gateway_config(
        "[gateway]\n[gateway.pricing]\nversion = \"acme-2026-12-01\"\n\
         [gateway.pricing.models.claude-haiku-4-5]\ninput = 3\noutput = 1000000\ncache_write = 0\ncache_read = 0\n\
         [gateway.pricing.models.claude-sonnet-4-5]\ninput = 1\noutput = 1\ncache_write = 1\ncache_read = 1\n\
         [gateway.pricing.models.claude-opus-4-5]\ninput = 1\noutput = 1\ncache_write = 1\ncache_read = 1\n",
    );
    let (app, env, token) = app_with(Some(own)).await;
    let r = send_raw(&app, MESSAGES, &token, &body).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let rows = logged(&app, &env).await;
    // 3 micro-dollars per million input tokens round up to 1; 7 output tokens at $1: 7.
    assert_eq!(rows[0].cost_micros, 8);
    assert_eq!(rows[0].pricing_version.as_deref(), Some("acme-2026-12-01"));
    // The operator's registry replaced the shipped one as a whole: Haiku 3 is no longer priced,
    // so no longer allowed by default.
    let old =
        json!({ "model": "claude-3-haiku-20240307", "max_tokens": 8, "messages": [] }).to_string();
    assert_invalid(
        &send_raw(&app, MESSAGES, &token, &old).await,
        &["is not allowed"],
    );
}

/// I2: a call that cannot be costed cannot be budgeted: a model the operator allows but the
/// registry does not price is refused before the upstream; with `allow_unpriced_models` it
/// goes through, costed 0 with no pricing version.
#[tokio::test]
async fn i2_an_unpriced_model_is_refused_before_the_upstream_unless_allowed() {
    let strict = GatewayConfig {
        allowed_models: Some(vec!["claude-haiku-4-5".into(), "claude-next-1".into()]),
        ..GatewayConfig::default()
    };
    let lax = GatewayConfig {
        allow_unpriced_models: true,
        ..strict.clone()
    };
    let body = json!({ "model": "claude-next-1", "max_tokens": 8, "messages": [{ "role": "user", "content": "x" }] }).to_string();
    let (app, env, token) = app_with(Some(strict)).await;
    let before = app.upstream.requests().len();
    let r = send_raw(&app, MESSAGES, &token, &body).await;
    assert_invalid(
        &r,
        &[
            "\"claude-next-1\" has no price in pricing version",
            "cannot be costed",
        ],
    );
    assert_eq!(app.upstream.requests().len(), before);
    let rows = logged(&app, &env).await;
    assert!(!rows[0].success && rows[0].pricing_version.is_none());

    let (app, env, token) = app_with(Some(lax)).await;
    let r = send_raw(&app, MESSAGES, &token, &body).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let rows = logged(&app, &env).await;
    assert!(rows[0].success);
    assert_eq!(
        (rows[0].cost_micros, rows[0].pricing_version.as_deref()),
        (0, None)
    );
    assert!(rows[0].usage.input_tokens > 0);
}
