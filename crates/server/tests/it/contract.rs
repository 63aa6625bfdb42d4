//! Control E1 and the API contract (issue 13, items 8 and 10): what the server answers is what
//! its OpenAPI document says, for the answers Schemathesis (`.ci/schemathesis`) found missing
//! from it; and a body that trickles in is cut off with 408 long before the request timeout.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use portcullis_server::app::Limits;
use portcullis_service::config::AuthConfig;
use serde_json::{json, Value};

use crate::support::app::{request, with_body, TestApp};

/// Whether the document lists `status` for `method` on the path template `path`.
fn documented(spec: &Value, method: &str, path: &str, status: StatusCode) -> bool {
    spec["paths"][path][method]["responses"]
        .get(status.as_str())
        .is_some()
}

fn spec() -> Value {
    serde_json::to_value(portcullis_server::openapi()).unwrap()
}

/// Schemathesis: 415 and 400 from the JSON extractor, and the 400 of a malformed query string,
/// were answered by operations whose document did not list them.
#[tokio::test]
async fn e1_extractor_refusals_are_documented_where_they_are_given() {
    let app = TestApp::spawn().await;
    let spec = spec();
    let owner = app.signup("owner@example.com").await;
    let env = app.create_environment(&owner, "Acme").await;
    let bearer = format!("Bearer {}", owner.token);
    let cases = [
        // (method, template, concrete path, content type, body, expected)
        (
            "patch",
            "/v1/environments/{environment_id}",
            format!("/v1/environments/{env}"),
            "text/plain",
            "{}",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            "patch",
            "/v1/environments/{environment_id}",
            format!("/v1/environments/{env}"),
            "application/json",
            "{\"name\": 7}",
            StatusCode::BAD_REQUEST,
        ),
        (
            "post",
            "/v1/environments/{environment_id}/ownership-transfer",
            format!("/v1/environments/{env}/ownership-transfer"),
            "application/json",
            "{\"identity_id\": \"not an id\"}",
            StatusCode::BAD_REQUEST,
        ),
        (
            "post",
            "/v1/environments/{environment_id}/projects",
            format!("/v1/environments/{env}/projects"),
            "application/x-www-form-urlencoded",
            "name=x",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
    ];
    for (method, template, path, content_type, body, expected) in cases {
        let req = Request::builder()
            .method(Method::from_bytes(method.to_uppercase().as_bytes()).unwrap())
            .uri(&path)
            .header(header::AUTHORIZATION, &bearer)
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from(body))
            .unwrap();
        let r = app.send(req).await;
        assert_eq!(r.status, expected, "{method} {path}: {:?}", r.body);
        assert!(
            documented(&spec, method, template, expected),
            "{method} {template} answers {expected} undocumented"
        );
    }
    for template in [
        "/v1/environments/{environment_id}/members",
        "/v1/environments/{environment_id}/projects",
        "/v1/environments/{environment_id}/tokens",
        "/v1/environments/{environment_id}/audit",
    ] {
        let path = template.replace("{environment_id}", &env);
        let r = app.get(&format!("{path}?limit=many"), &owner.token).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(r.code(), "invalid_query");
        assert!(documented(&spec, "get", template, StatusCode::BAD_REQUEST));
    }
}

/// Schemathesis: renaming a custom role onto the name of another answers 409, which the
/// document did not list for `PATCH .../roles/{role_id}`.
#[tokio::test]
async fn r4_renaming_a_role_onto_a_name_in_use_is_a_documented_409() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@example.com").await;
    let env = app.create_environment(&owner, "Acme").await;
    let roles = format!("/v1/environments/{env}/roles");
    for name in ["Editors", "Readers"] {
        let r = app
            .post(
                &roles,
                &owner.token,
                json!({ "name": name, "permissions": ["documents.read"] }),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    }
    let list = app.get(&roles, &owner.token).await;
    let readers = list.body["custom"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "Readers")
        .unwrap()["role_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = app
        .patch(
            &format!("{roles}/{readers}"),
            &owner.token,
            json!({ "name": "Editors", "permissions": ["documents.read"] }),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{:?}", r.body);
    assert!(documented(
        &spec(),
        "patch",
        "/v1/environments/{environment_id}/roles/{role_id}",
        StatusCode::CONFLICT
    ));
}

/// Schemathesis: the export's 200 was documented as `application/x-ndjson` only, while CSV
/// exports are `text/csv`.
#[tokio::test]
async fn l3_audit_exports_answer_in_their_documented_media_types() {
    let app = TestApp::spawn().await;
    let spec = spec();
    let documented_types: Vec<String> = spec["paths"]
        ["/v1/environments/{environment_id}/audit/export"]["get"]["responses"]["200"]["content"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let owner = app.signup("owner@example.com").await;
    let env = app.create_environment(&owner, "Acme").await;
    for format in ["csv", "jsonl", "bundle"] {
        let r = app
            .send(with_body(
                request(
                    Method::GET,
                    &format!("/v1/environments/{env}/audit/export?format={format}"),
                    Some(&owner.token),
                ),
                None,
            ))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{format}");
        let media = r.headers[header::CONTENT_TYPE].to_str().unwrap();
        let essence = media.split(';').next().unwrap().trim();
        assert!(
            documented_types.iter().any(|t| t == essence),
            "{format}: {media} is not among {documented_types:?}"
        );
    }
}

/// A body that sends a few bytes and then nothing more, with no declared length (so the
/// up-front 413 cannot apply).
fn trickled_body() -> Body {
    let first = futures_util::stream::iter([Ok::<_, std::io::Error>(
        axum::body::Bytes::from_static(b"{\"name\":"),
    )]);
    Body::from_stream(futures_util::StreamExt::chain(
        first,
        futures_util::stream::pending(),
    ))
}

/// Issue 13, item 8: a client that sends the headers and then trickles the body is cut off
/// after the body timeout with 408 `body_timeout` (and `Connection: close`), not held until the
/// whole-request timeout; a body that arrives in time is read as before; a body larger than
/// the limit without a declared length is still 413.
#[tokio::test]
async fn e1_slow_bodies_are_cut_off_with_408_before_the_request_timeout() {
    let app = TestApp::spawn_with(
        AuthConfig::default(),
        Limits {
            max_body_bytes: 4096,
            request_timeout: Duration::from_secs(20),
            body_timeout: Duration::from_millis(500),
        },
    )
    .await;
    let owner = app.signup("owner@example.com").await;
    for path in ["/v1/environments", "/v1/auth/login"] {
        let req = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {}", owner.token))
            .header(header::CONTENT_TYPE, "application/json")
            .body(trickled_body())
            .unwrap();
        let started = Instant::now();
        let r = app.send(req).await;
        let elapsed = started.elapsed();
        assert_eq!(
            r.status,
            StatusCode::REQUEST_TIMEOUT,
            "{path}: {:?}",
            r.body
        );
        assert_eq!(r.code(), "body_timeout");
        assert_eq!(r.headers[header::CONNECTION], "close");
        assert!(
            elapsed >= Duration::from_millis(400) && elapsed < Duration::from_secs(5),
            "{path}: cut off after the body timeout, not the request timeout ({elapsed:?})"
        );
    }
    // In time: read as before.
    let r = app
        .post(
            "/v1/environments",
            &owner.token,
            json!({ "name": "Acme", "region": "eu-central" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    // Too large and undeclared: refused as it is read.
    let big = "x".repeat(10_000);
    let chunks = futures_util::stream::iter([
        Ok::<_, std::io::Error>(axum::body::Bytes::from(format!("{{\"name\":\"{big}"))),
        Ok(axum::body::Bytes::from_static(b"\",\"region\":\"eu\"}")),
    ]);
    let req = Request::builder()
        .method(Method::POST)
        .uri("/v1/environments")
        .header(header::AUTHORIZATION, format!("Bearer {}", owner.token))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(chunks))
        .unwrap();
    let r = app.send(req).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{:?}", r.body);
    // The body timeout is part of the configuration, shorter than the request timeout.
    let config = portcullis_service::config::ServerConfig::default();
    assert!(config.body_timeout_seconds < config.request_timeout_seconds);
}

/// Control E1 (issue 13, item 10): a request the document calls valid is accepted. JSON Schema
/// counts `30.0` as an integer, so a token lifetime written that way is taken; a real
/// fraction or a negative number is still refused.
#[tokio::test]
async fn e1_a_whole_number_written_with_a_fraction_is_an_integer() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@example.com").await;
    let env = app.create_environment(&owner, "Acme").await;
    let tokens = format!("/v1/environments/{env}/tokens");
    let r = app
        .post(
            &tokens,
            &owner.token,
            json!({ "name": "ci", "role": "viewer", "expires_in_days": 30.0 }),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    for bad in [json!(30.5), json!(-1), json!("30")] {
        let r = app
            .post(
                &tokens,
                &owner.token,
                json!({ "name": "ci2", "role": "viewer", "expires_in_days": bad }),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {:?}", r.body);
    }
}
