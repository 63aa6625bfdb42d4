//! Security headers on every response (control E1).
//!
//! This module owns the browser-facing hardening headers: HSTS, the Content-Security-Policy,
//! framing, sniffing, referrer, permissions and cross-origin isolation policies, and a
//! `no-store` cache default. They are applied by one middleware on the way out, so they cover
//! success, error and fallback (404/405) responses alike. It must never weaken the policy
//! per route (handlers cannot opt out; only Cache-Control is theirs to choose), and the CSP
//! must never allow `'unsafe-eval'` or `'unsafe-inline'` scripts.

use axum::extract::Request;
use axum::http::header::{self, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;

/// The API serves JSON, not pages: nothing should load from elsewhere, frame it, or post
/// forms to elsewhere. One constant so tests and audits check the exact string that is sent.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; frame-ancestors 'none'; \
     base-uri 'none'; form-action 'self'; object-src 'none'";

/// Two years, with subdomains and preload, which is what the HSTS preload list requires.
pub const STRICT_TRANSPORT_SECURITY: &str = "max-age=63072000; includeSubDomains; preload";

pub const PERMISSIONS_POLICY: &str =
    "camera=(), microphone=(), geolocation=(), payment=(), usb=(), interest-cohort=()";

/// Responses carry tenant data; no shared or browser cache should keep them unless a handler
/// explicitly says its response is safe to cache.
pub const DEFAULT_CACHE_CONTROL: &str = "no-store";

/// Headers whose value is forced, overriding anything a handler set.
const ENFORCED: [(HeaderName, &str); 8] = [
    (header::STRICT_TRANSPORT_SECURITY, STRICT_TRANSPORT_SECURITY),
    (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::REFERRER_POLICY, "no-referrer"),
    (header::X_FRAME_OPTIONS, "DENY"),
    (
        HeaderName::from_static("permissions-policy"),
        PERMISSIONS_POLICY,
    ),
    (
        HeaderName::from_static("cross-origin-opener-policy"),
        "same-origin",
    ),
    (
        HeaderName::from_static("cross-origin-resource-policy"),
        "same-origin",
    ),
];

/// axum middleware (`axum::middleware::from_fn(security_headers)`) that sets the security
/// headers on every response, including errors and 404s. `Cache-Control: no-store` is only
/// added when the handler did not set a Cache-Control of its own.
pub async fn security_headers(req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let headers = response.headers_mut();
    for (name, value) in ENFORCED {
        headers.insert(name, HeaderValue::from_static(value));
    }
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static(DEFAULT_CACHE_CONTROL),
        );
    }
    response
}
