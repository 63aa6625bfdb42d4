//! Outbound HTTPS: the one client through which Portcullis calls other services (AWS KMS, S3
//! today; object storage, OIDC discovery and model providers next). HTTP/1.1 over hyper's
//! client connection API and rustls (ring, the Mozilla root set), with connect and request
//! timeouts and a cap on every response body, read whole or as it arrives
//! ([`Client::open`], for server-sent events); AWS Signature Version 4 and AWS credentials.
//!
//! Protects against: credentials or keys sent in clear text to another machine (an
//! [`Endpoint`] is `https://`, or plain `http://` only on a loopback host, where test servers
//! such as moto run), a hung or slow endpoint blocking a caller forever (timeouts), an
//! oversized answer exhausting memory (bodies are capped), and secrets in logs (the `Debug`
//! output of requests, responses and credentials is redacted).
//!
//! Must never: follow a redirect, retry on its own (callers know which calls are safe to
//! repeat), interpret a response body, or read the process's TLS defaults (the crypto provider
//! and the roots are named here, so another crate cannot change them).

mod client;
mod endpoint;
mod message;

pub mod aws;
pub mod sigv4;
#[cfg(feature = "testing")]
pub mod testing;

pub use aws::AwsCredentials;
pub use client::{BoxFuture, Client, Limits, Session, StreamLimits, StreamingResponse, Transport};
pub use endpoint::Endpoint;
pub use hyper::body::Bytes;
pub use hyper::Method;
pub use message::{sanitize_remote_message, Request, Response, MAX_REMOTE_MESSAGE_CHARS};
/// The trust anchors a [`Client`] is built with (rustls's type).
pub use rustls::RootCertStore;

/// The Mozilla root set (`webpki-roots`), as public cloud endpoints require.
/// The certificates of a PEM file as the only roots to trust (a private CA, a self-signed
/// server's certificate).
pub fn roots_from_pem(pem: &[u8]) -> Result<RootCertStore, Error> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| Error::Tls(format!("PEM: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| Error::Tls(format!("certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(Error::Tls("no certificate in the PEM file".into()));
    }
    Ok(roots)
}

pub fn mozilla_roots() -> RootCertStore {
    RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    }
}

/// What went wrong with one outbound call. Messages name the endpoint and the step, never a
/// header value or a body.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The endpoint URL is not one this client talks to.
    #[error("endpoint `{url}`: {reason}")]
    Endpoint { url: String, reason: &'static str },
    #[error("TLS configuration: {0}")]
    Tls(String),
    /// The request could not be put on the wire (an invalid header name or target).
    #[error("building the request: {0}")]
    Request(String),
    /// The request could not be signed (a malformed date); never names a key.
    #[error("{0}")]
    Signing(&'static str),
    /// No HTTP answer: connection, TLS, timeout, protocol, or an answer over the size cap.
    #[error("{endpoint}: {message}")]
    Transport { endpoint: String, message: String },
}

impl Error {
    pub fn transport(endpoint: &Endpoint, message: impl Into<String>) -> Error {
        Error::Transport {
            endpoint: endpoint.to_string(),
            message: message.into(),
        }
    }
}
