//! Security headers on every response, whatever the handler says (control E1).

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use portcullis_server::headers::{security_headers, CONTENT_SECURITY_POLICY};
use tower::ServiceExt;

/// Written out literally rather than taken from the module, so an accidental change to the
/// module's values fails here.
const EXPECTED: [(&str, &str); 9] = [
    (
        "strict-transport-security",
        "max-age=63072000; includeSubDomains; preload",
    ),
    (
        "content-security-policy",
        "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("x-frame-options", "DENY"),
    (
        "permissions-policy",
        "camera=(), microphone=(), geolocation=(), payment=(), usb=(), interest-cohort=()",
    ),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
    ("cache-control", "no-store"),
];

fn app() -> Router {
    Router::new()
        .route("/ok", get(|| async { "ok" }))
        .route(
            "/boom",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response() }),
        )
        .route(
            "/cacheable",
            get(|| async { ([(header::CACHE_CONTROL, "public, max-age=60")], "cacheable") }),
        )
        .route(
            // A handler trying to loosen the policy must not win.
            "/framable",
            get(|| async {
                (
                    [
                        (header::X_FRAME_OPTIONS, "ALLOWALL"),
                        (header::CONTENT_SECURITY_POLICY, "default-src *"),
                    ],
                    "framable",
                )
            }),
        )
        .layer(axum::middleware::from_fn(security_headers))
}

async fn call(method: &str, uri: &str) -> axum::response::Response {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::empty())
        .unwrap();
    app().oneshot(req).await.unwrap()
}

fn assert_all_security_headers(resp: &axum::response::Response, what: &str) {
    for (name, value) in EXPECTED {
        let got: Vec<_> = resp.headers().get_all(name).iter().collect();
        assert_eq!(
            got.len(),
            1,
            "{what}: exactly one {name} header, got {got:?}"
        );
        assert_eq!(got[0], value, "{what}: header {name}");
    }
}

#[tokio::test]
async fn every_header_on_success_error_and_fallback() {
    for (method, uri, status) in [
        ("GET", "/ok", StatusCode::OK),
        ("GET", "/boom", StatusCode::INTERNAL_SERVER_ERROR),
        ("GET", "/no/such/route", StatusCode::NOT_FOUND),
        ("POST", "/ok", StatusCode::METHOD_NOT_ALLOWED),
    ] {
        let resp = call(method, uri).await;
        assert_eq!(resp.status(), status, "{method} {uri}");
        assert_all_security_headers(&resp, &format!("{method} {uri}"));
    }
}

#[test]
fn csp_forbids_framing_and_eval() {
    assert!(CONTENT_SECURITY_POLICY.contains("frame-ancestors 'none'"));
    assert!(!CONTENT_SECURITY_POLICY.contains("unsafe-eval"));
    assert!(!CONTENT_SECURITY_POLICY.contains("unsafe-inline"));
    assert_eq!(CONTENT_SECURITY_POLICY, EXPECTED[1].1);
}

#[tokio::test]
async fn handler_cache_control_is_kept() {
    let resp = call("GET", "/cacheable").await;
    assert_eq!(resp.status(), StatusCode::OK);
    let cache: Vec<_> = resp
        .headers()
        .get_all(header::CACHE_CONTROL)
        .iter()
        .collect();
    assert_eq!(cache, ["public, max-age=60"]);
}

#[tokio::test]
async fn handler_cannot_loosen_security_headers() {
    let resp = call("GET", "/framable").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_all_security_headers(&resp, "GET /framable");
}
