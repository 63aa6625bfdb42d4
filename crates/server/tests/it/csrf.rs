//! Control E1 (issue 13, items 4 and 8): a state-changing request authenticated by the
//! session cookie must come from one of the server's public origins; bearer calls are not
//! affected. A declared body larger than the limit is refused before it is read.

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use portcullis_server::app::Limits;
use portcullis_service::config::AuthConfig;

use crate::support::app::TestApp;

const RIGHT: &str = "https://127.0.0.1:8443";
const EVIL: &str = "https://evil.example";

/// A form POST carrying the session cookie, as a page on another site could send it.
fn cookie_post(
    path: &str,
    token: &str,
    origin: Option<&str>,
    fetch_site: Option<&str>,
) -> Request<Body> {
    let mut b = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header(header::COOKIE, format!("portcullis_session={token}"))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(o) = origin {
        b = b.header(header::ORIGIN, o);
    }
    if let Some(s) = fetch_site {
        b = b.header("sec-fetch-site", s);
    }
    b.body(Body::from("a=1")).unwrap()
}

#[tokio::test]
async fn e1_cookie_requests_from_another_origin_are_refused() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@example.com").await;
    let bob = app.signup("bob@example.com").await;
    let env = app.create_environment(&owner, "Acme").await;
    app.add_member(&owner, &env, &bob, "viewer").await;
    let rotate = format!("/v1/environments/{env}/keys/rotate");
    let erasure = format!("/v1/environments/{env}/members/{}/erasure", bob.id);
    let paths = [rotate.as_str(), erasure.as_str(), "/v1/auth/logout"];

    let fingerprint = app.fingerprint().await;
    let audit = app.audit_actions(&env).await;
    for path in paths {
        for (origin, site) in [
            (Some(EVIL), None),
            (Some("null"), None),
            (Some(EVIL), Some("same-origin")),
            (None, Some("cross-site")),
            (None, Some("same-site")),
            // Neither header: refused (a browser always sends Origin on a cross-site POST;
            // other clients use the bearer header).
            (None, None),
        ] {
            let r = app
                .send(cookie_post(path, &owner.token, origin, site))
                .await;
            assert_eq!(
                r.status,
                StatusCode::FORBIDDEN,
                "{path} {origin:?} {site:?}: {:?}",
                r.body
            );
            assert_eq!(r.code(), "origin_refused", "{path}");
        }
    }
    assert_eq!(app.fingerprint().await, fingerprint, "nothing changed");
    assert_eq!(app.audit_actions(&env).await, audit, "nothing audited");
    assert_eq!(
        app.get("/v1/me", &owner.token).await.status,
        StatusCode::OK,
        "session still valid"
    );

    // Safe methods are not affected.
    let req = Request::builder()
        .uri("/v1/me")
        .header(
            header::COOKIE,
            format!("portcullis_session={}", owner.token),
        )
        .header(header::ORIGIN, EVIL)
        .body(Body::empty())
        .unwrap();
    assert_eq!(app.send(req).await.status, StatusCode::OK);

    // Bearer calls with an evil Origin are not affected.
    let env2 = app.create_environment(&owner, "Other").await;
    let req = Request::builder()
        .method(Method::POST)
        .uri(format!("/v1/environments/{env2}/keys/rotate"))
        .header(header::AUTHORIZATION, format!("Bearer {}", owner.token))
        .header(header::ORIGIN, EVIL)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from("a=1"))
        .unwrap();
    let r = app.send(req).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);

    // From the public origin (or same-origin per Sec-Fetch-Site), the cookie works.
    let r = app
        .send(cookie_post(&rotate, &owner.token, Some(RIGHT), None))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    let r = app
        .send(cookie_post(
            &erasure,
            &owner.token,
            None,
            Some("same-origin"),
        ))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let r = app
        .send(cookie_post(
            "/v1/auth/logout",
            &owner.token,
            Some("https://LOCALHOST:8443/"),
            None,
        ))
        .await;
    assert!(r.status.is_success(), "{:?}", r.body);
    assert_eq!(
        app.get("/v1/me", &owner.token).await.status,
        StatusCode::UNAUTHORIZED,
        "logged out"
    );
}

/// A body that sends a few bytes and then never ends: a client that declared far more.
fn stalled_body() -> Body {
    let first = futures_util::stream::iter([Ok::<_, std::io::Error>(bytes_of("{\"a\":"))]);
    Body::from_stream(futures_util::StreamExt::chain(
        first,
        futures_util::stream::pending(),
    ))
}

fn bytes_of(s: &'static str) -> axum::body::Bytes {
    axum::body::Bytes::from_static(s.as_bytes())
}

#[tokio::test]
async fn e1_declared_oversized_bodies_are_refused_at_once() {
    let app = TestApp::spawn_with(
        AuthConfig::default(),
        Limits {
            max_body_bytes: 4096,
            request_timeout: Duration::from_secs(5),
            ..Limits::default()
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
            .header(header::CONTENT_LENGTH, "999999999")
            .body(stalled_body())
            .unwrap();
        let started = std::time::Instant::now();
        let r = app.send(req).await;
        assert_eq!(
            r.status,
            StatusCode::PAYLOAD_TOO_LARGE,
            "{path}: {:?}",
            r.body
        );
        assert_eq!(r.code(), "payload_too_large");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{path}: refused at once"
        );
    }
}
