//! A request and its answer as plain values, so that a caller can build, sign, inspect and fake
//! them without a socket. Bodies may hold keys (a KMS `Encrypt` request, a `Decrypt` answer):
//! they are zeroed when dropped and never shown by `Debug`.

use std::fmt;

use serde::de::DeserializeOwned;
use serde::Serialize;
use zeroize::Zeroizing;

use crate::{Endpoint, Method};

/// Header names whose values `Debug` never shows.
const SECRET_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "x-amz-security-token",
    "x-api-key",
];

/// One request. Every header in `headers` is sent as given; `Host` is added from the endpoint
/// when absent.
pub struct Request {
    pub method: Method,
    pub endpoint: Endpoint,
    /// Path and query, already encoded: `/`, `/bucket/key?versionId=3`.
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Zeroizing<Vec<u8>>,
}

impl Request {
    pub fn new(method: Method, endpoint: Endpoint, target: impl Into<String>) -> Request {
        Request {
            method,
            endpoint,
            target: target.into(),
            headers: vec![],
            body: Zeroizing::new(vec![]),
        }
    }

    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Request {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Request {
        self.body = Zeroizing::new(body.into());
        self
    }

    /// `value` as the JSON body. The content type is the caller's: JSON APIs disagree on it.
    pub fn with_json<T: Serialize>(mut self, value: &T) -> Result<Request, serde_json::Error> {
        self.body = Zeroizing::new(serde_json::to_vec(value)?);
        Ok(self)
    }

    /// The first header of that name, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        find(&self.headers, name)
    }

    /// The target without its query.
    pub fn path(&self) -> &str {
        self.target.split_once('?').map_or(&self.target, |(p, _)| p)
    }

    /// The query without `?`, or empty.
    pub fn query(&self) -> &str {
        self.target.split_once('?').map_or("", |(_, q)| q)
    }
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(n, v)| {
                let secret = SECRET_HEADERS.iter().any(|s| n.eq_ignore_ascii_case(s));
                (n.as_str(), if secret { "[redacted]" } else { v.as_str() })
            })
            .collect();
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("endpoint", &self.endpoint)
            .field("target", &self.target)
            .field("headers", &headers)
            .field(
                "body",
                &format_args!("[{} bytes redacted]", self.body.len()),
            )
            .finish()
    }
}

/// An answer, whatever its status.
pub struct Response {
    pub status: u16,
    /// Lower-cased names; values that are not visible ASCII are left out.
    pub headers: Vec<(String, String)>,
    pub body: Zeroizing<Vec<u8>>,
}

impl Response {
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            headers: vec![],
            body: Zeroizing::new(body.into()),
        }
    }

    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Response {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The first header of that name, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        find(&self.headers, name)
    }

    /// The body as JSON. serde_json's error names a line and column, never the content.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .field(
                "body",
                &format_args!("[{} bytes redacted]", self.body.len()),
            )
            .finish()
    }
}

fn find<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// How much of a remote service's own error message is kept.
pub const MAX_REMOTE_MESSAGE_CHARS: usize = 300;

/// A remote service's error message made printable, bounded and single-line: such messages end
/// up in errors and logs, and a hostile endpoint must not flood or forge lines there.
pub fn sanitize_remote_message(message: &str) -> String {
    let mut out: String = message
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_REMOTE_MESSAGE_CHARS)
        .collect();
    if message.chars().count() > MAX_REMOTE_MESSAGE_CHARS {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn debug_redacts_secrets() {
        let request = Request::new(
            Method::POST,
            Endpoint::parse("http://127.0.0.1:1").unwrap(),
            "/",
        )
        .with_header("Authorization", "AWS4-HMAC-SHA256 Signature=abcdef")
        .with_header("X-Amz-Security-Token", "tok-secret")
        .with_header("X-Amz-Target", "TrentService.Encrypt")
        .with_body(b"{\"Plaintext\":\"c2VjcmV0\"}".to_vec());
        let shown = format!("{request:?}");
        assert!(
            !shown.contains("abcdef")
                && !shown.contains("tok-secret")
                && !shown.contains("c2VjcmV0"),
            "{shown}"
        );
        assert!(shown.contains("TrentService.Encrypt"));
        assert_eq!(request.header("x-amz-target"), Some("TrentService.Encrypt"));

        let response = Response::new(200, b"{\"Plaintext\":\"c2VjcmV0\"}".to_vec());
        assert!(!format!("{response:?}").contains("c2VjcmV0"));
    }

    #[test]
    fn targets_split_into_path_and_query() {
        let endpoint = Endpoint::parse("https://s3.eu-west-1.amazonaws.com").unwrap();
        let r = Request::new(Method::GET, endpoint.clone(), "/b?versions=&prefix=p");
        assert_eq!((r.path(), r.query()), ("/b", "versions=&prefix=p"));
        let r = Request::new(Method::GET, endpoint, "/b/k");
        assert_eq!((r.path(), r.query()), ("/b/k", ""));
    }
}
