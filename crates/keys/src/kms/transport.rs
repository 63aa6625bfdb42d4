//! The HTTP boundary of the KMS client: an endpoint that was checked once at configuration,
//! the request and response as plain values, and the `Transport` trait that sends one. Keeping
//! the wire behind a trait is what lets tests answer exactly as AWS does (a disabled key, a key
//! pending deletion) where a local KMS emulator would not.
//!
//! Protects against: credentials or a data key sent in clear text to anything but this machine
//! (plain `http://` is refused unless the host is a loopback address), a hung or slow endpoint
//! blocking a caller forever (connect and whole-request timeouts), and an oversized response
//! exhausting memory (bodies are capped).
//!
//! Must never: log or format a request or response body or the `Authorization` and
//! `X-Amz-Security-Token` headers (their `Debug` output is redacted), or follow a redirect.

use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use zeroize::Zeroizing;

use crate::KeyError;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// KMS answers for one 32-byte key are a few hundred bytes; anything near this is not KMS.
const MAX_RESPONSE_BYTES: usize = 256 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scheme {
    Http,
    Https,
}

/// A KMS endpoint: `https://host[:port]`, or `http://` on a loopback host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    scheme: Scheme,
    /// Without IPv6 brackets, for connecting and for TLS server-name checks.
    host: String,
    port: u16,
    /// `host[:port]` as written, for the `Host` header (and so for the signature).
    authority: String,
}

impl Endpoint {
    pub fn parse(url: &str) -> Result<Endpoint, KeyError> {
        let bad = |why: &str| KeyError::Config(format!("KMS endpoint `{url}`: {why}"));
        let uri: hyper::Uri = url.parse().map_err(|_| bad("not a URL"))?;
        let scheme = match uri.scheme_str() {
            Some("https") => Scheme::Https,
            Some("http") => Scheme::Http,
            _ => {
                return Err(bad(
                    "the scheme must be https:// (or http:// for a loopback host)",
                ))
            }
        };
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        if authority.as_str().contains('@') {
            return Err(bad("credentials do not belong in the URL"));
        }
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(bad("KMS is reached at the root: no path or query"));
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        if host.is_empty() {
            return Err(bad("no host"));
        }
        if scheme == Scheme::Http && !is_loopback(host) {
            // A data key travels in the request body and KMS's answer: over plain HTTP to
            // another machine, anyone on the path would read it.
            return Err(bad(
                "plain http:// is only allowed for a loopback host; use https://",
            ));
        }
        let port = authority.port_u16().unwrap_or(match scheme {
            Scheme::Http => 80,
            Scheme::Https => 443,
        });
        Ok(Endpoint {
            scheme,
            host: host.to_owned(),
            port,
            authority: authority.as_str().to_owned(),
        })
    }

    pub fn is_tls(&self) -> bool {
        self.scheme == Scheme::Https
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The `Host` header value.
    pub fn authority(&self) -> &str {
        &self.authority
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
        };
        write!(f, "{scheme}://{}", self.authority)
    }
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// One signed `POST /` to KMS.
pub struct HttpRequest {
    pub endpoint: Endpoint,
    /// Every header to send, `Host` and `Authorization` included.
    pub headers: Vec<(String, String)>,
    /// The JSON request; for `Encrypt` it holds the data key, so it is zeroed when dropped.
    pub body: Zeroizing<Vec<u8>>,
}

impl HttpRequest {
    /// The first header of that name, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The KMS operation, from `X-Amz-Target` (`TrentService.Decrypt` gives `Decrypt`).
    pub fn operation(&self) -> Option<&str> {
        self.header("x-amz-target")
            .map(|t| t.strip_prefix("TrentService.").unwrap_or(t))
    }
}

impl fmt::Debug for HttpRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(n, v)| {
                let secret = n.eq_ignore_ascii_case("authorization")
                    || n.eq_ignore_ascii_case("x-amz-security-token");
                (n.as_str(), if secret { "[redacted]" } else { v.as_str() })
            })
            .collect();
        f.debug_struct("HttpRequest")
            .field("endpoint", &self.endpoint)
            .field("headers", &headers)
            .field(
                "body",
                &format_args!("[{} bytes redacted]", self.body.len()),
            )
            .finish()
    }
}

/// KMS's answer. For `Decrypt` the body holds the data key, so it is zeroed when dropped.
pub struct HttpResponse {
    pub status: u16,
    pub body: Zeroizing<Vec<u8>>,
}

impl HttpResponse {
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> HttpResponse {
        HttpResponse {
            status,
            body: Zeroizing::new(body.into()),
        }
    }
}

impl fmt::Debug for HttpResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpResponse")
            .field("status", &self.status)
            .field(
                "body",
                &format_args!("[{} bytes redacted]", self.body.len()),
            )
            .finish()
    }
}

/// The request never got an HTTP answer (connection, TLS, timeout, protocol). Retryable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportError(String);

impl TransportError {
    pub fn new(message: impl Into<String>) -> TransportError {
        TransportError(message.into())
    }
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Sends one request and returns KMS's answer, whatever its status. Implementations must not
/// retry (the provider decides) nor interpret the body.
pub trait Transport: Send + Sync {
    fn send<'a>(
        &'a self,
        request: &'a HttpRequest,
    ) -> BoxFuture<'a, Result<HttpResponse, TransportError>>;
}

/// The real transport: one HTTP/1.1 connection per request, TLS through rustls with the
/// Mozilla root set (`webpki-roots`), so the system trust store plays no part.
///
/// A connection per request costs a TLS handshake per KMS call. That is deliberate: calls are
/// rare (a data key is unwrapped once and then cached by its caller), and no pool means no
/// half-closed pooled connection to retry around.
#[derive(Clone)]
pub struct HttpTransport {
    tls: tokio_rustls::TlsConnector,
}

impl fmt::Debug for HttpTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpTransport").finish_non_exhaustive()
    }
}

impl HttpTransport {
    /// Trusts the Mozilla root set, as AWS's public endpoints require.
    pub fn new() -> Result<HttpTransport, KeyError> {
        HttpTransport::with_root_certificates(rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        })
    }

    /// Trusts only `roots`: for a KMS endpoint behind a private CA, and for tests.
    pub fn with_root_certificates(roots: rustls::RootCertStore) -> Result<HttpTransport, KeyError> {
        // The crypto provider is named rather than taken from the process default so that
        // another crate installing a different default cannot change this client's TLS.
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| KeyError::Config(format!("TLS for KMS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(HttpTransport {
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
        })
    }

    async fn exchange(&self, request: &HttpRequest) -> Result<HttpResponse, TransportError> {
        let endpoint = &request.endpoint;
        let tcp = tokio::time::timeout(
            CONNECT_TIMEOUT,
            TcpStream::connect((endpoint.host.as_str(), endpoint.port)),
        )
        .await
        .map_err(|_| TransportError::new(format!("connecting to {endpoint} timed out")))?
        .map_err(|e| TransportError::new(format!("connecting to {endpoint}: {e}")))?;
        // Small request, small answer: Nagle would only add latency.
        let _ = tcp.set_nodelay(true);

        let mut builder = hyper::Request::builder()
            .method(hyper::Method::POST)
            .uri("/");
        for (name, value) in &request.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        // hyper's buffers are not zeroed; the copy here is the price of using it. Our own
        // copies (request.body, the response body below) are.
        let http_request = builder
            .body(Full::new(Bytes::copy_from_slice(&request.body)))
            .map_err(|e| TransportError::new(format!("building the request: {e}")))?;

        if endpoint.is_tls() {
            let name =
                rustls::pki_types::ServerName::try_from(endpoint.host.clone()).map_err(|e| {
                    TransportError::new(format!("TLS server name `{}`: {e}", endpoint.host))
                })?;
            let tls = self
                .tls
                .connect(name, tcp)
                .await
                .map_err(|e| TransportError::new(format!("TLS with {endpoint}: {e}")))?;
            round_trip(TokioIo::new(tls), http_request).await
        } else {
            round_trip(TokioIo::new(tcp), http_request).await
        }
    }
}

async fn round_trip<I>(
    io: I,
    request: hyper::Request<Full<Bytes>>,
) -> Result<HttpResponse, TransportError>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| TransportError::new(format!("HTTP handshake: {e}")))?;
    // The connection future does the actual I/O; it ends by itself once the response is read
    // and `sender` is dropped. Aborting on the way out covers the error paths.
    let driver = tokio::spawn(connection);
    let result = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| TransportError::new(format!("HTTP request: {e}")))?;
        let status = response.status().as_u16();
        let collected = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| TransportError::new(format!("reading the response: {e}")))?;
        Ok(HttpResponse::new(status, collected.to_bytes().to_vec()))
    }
    .await;
    driver.abort();
    result
}

impl Transport for HttpTransport {
    fn send<'a>(
        &'a self,
        request: &'a HttpRequest,
    ) -> BoxFuture<'a, Result<HttpResponse, TransportError>> {
        Box::pin(async move {
            tokio::time::timeout(REQUEST_TIMEOUT, self.exchange(request))
                .await
                .map_err(|_| {
                    TransportError::new(format!("KMS request to {} timed out", request.endpoint))
                })?
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn endpoints() {
        let e = Endpoint::parse("https://kms.eu-west-1.amazonaws.com").unwrap();
        assert!(e.is_tls());
        assert_eq!(
            (e.host(), e.port(), e.authority()),
            (
                "kms.eu-west-1.amazonaws.com",
                443,
                "kms.eu-west-1.amazonaws.com"
            )
        );

        let e = Endpoint::parse("http://127.0.0.1:5000/").unwrap();
        assert!(!e.is_tls());
        assert_eq!(
            (e.host(), e.port(), e.authority()),
            ("127.0.0.1", 5000, "127.0.0.1:5000")
        );

        let e = Endpoint::parse("http://[::1]:4566").unwrap();
        assert_eq!(
            (e.host(), e.port(), e.authority()),
            ("::1", 4566, "[::1]:4566")
        );

        assert!(Endpoint::parse("http://localhost:4566").is_ok());
        assert!(Endpoint::parse("http://127.8.9.10").is_ok());

        for bad in [
            "http://10.0.0.5:5000",
            "http://kms.example.com",
            "http://localhost.example.com",
            "ftp://127.0.0.1",
            "https://user:pw@kms.example.com",
            "https://kms.example.com/path",
            "https://kms.example.com/?a=b",
            "kms.example.com",
            "",
        ] {
            assert!(
                matches!(Endpoint::parse(bad), Err(KeyError::Config(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn debug_redacts_secrets() {
        let request = HttpRequest {
            endpoint: Endpoint::parse("http://127.0.0.1:1").unwrap(),
            headers: vec![
                (
                    "Authorization".to_owned(),
                    "AWS4-HMAC-SHA256 Signature=abcdef".to_owned(),
                ),
                ("X-Amz-Security-Token".to_owned(), "tok-secret".to_owned()),
                ("X-Amz-Target".to_owned(), "TrentService.Encrypt".to_owned()),
            ],
            body: Zeroizing::new(b"{\"Plaintext\":\"c2VjcmV0\"}".to_vec()),
        };
        let shown = format!("{request:?}");
        assert!(
            !shown.contains("abcdef")
                && !shown.contains("tok-secret")
                && !shown.contains("c2VjcmV0"),
            "{shown}"
        );
        assert!(shown.contains("TrentService.Encrypt"));
        assert_eq!(request.operation(), Some("Encrypt"));

        let response = HttpResponse::new(200, b"{\"Plaintext\":\"c2VjcmV0\"}".to_vec());
        assert!(!format!("{response:?}").contains("c2VjcmV0"));
    }
}
