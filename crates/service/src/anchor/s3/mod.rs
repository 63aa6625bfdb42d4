//! Anchoring signed checkpoints in S3 under Object Lock (L4), through the S3 REST API signed
//! with SigV4, over the project's one outbound HTTPS client (`portcullis_outbound`; no AWS SDK).
//!
//! Each checkpoint becomes one object, `<prefix><environment>/<tree size, 20 digits>.checkpoint`,
//! written with `If-None-Match: *` (S3 refuses to replace an existing object) and a COMPLIANCE
//! retention of `retention_days`: until it expires, nobody, the bucket owner and AWS root
//! included, can delete or overwrite that object version. Writing the same checkpoint again is a
//! no-op; writing a different one for the same size is `AnchorError::Conflict` (a forked log).
//!
//! Protects against: a database (or a backup) rewritten consistently from end to end, as long as
//! the attacker cannot also shorten a COMPLIANCE retention, which S3 does not allow; a checkpoint
//! hidden behind a delete marker or shadowed by a newer version of its key (`list` reads every
//! version, not only the current one, and reports each distinct content); credentials sent in
//! clear text to another machine (plain `http://` only on loopback); a hung endpoint (connect and
//! request timeouts) and an oversized answer (bodies are capped): `portcullis_outbound`'s rules.
//!
//! Must never: put the secret access key, the session token or a request signature in an error,
//! a log line or `Debug` output. S3's own error bodies can echo the string to sign and the
//! canonical request: only their `Code` and `Message` are kept.
//!
//! Requests are path-style (`https://s3.<region>.amazonaws.com/<bucket>/<key>`), which keeps TLS
//! names valid for any bucket name and works with S3-compatible stores. The IAM permissions
//! needed are `s3:PutObject`, `s3:PutObjectRetention`, `s3:GetObject`, `s3:GetObjectVersion`,
//! `s3:ListBucket` and `s3:ListBucketVersions` on the prefix, plus `s3:CreateBucket`,
//! `s3:PutBucketObjectLockConfiguration`, `s3:PutBucketVersioning` and
//! `s3:GetBucketObjectLockConfiguration` for `ensure_bucket`. Do not grant
//! `s3:BypassGovernanceRetention` or `s3:PutObjectLegalHold`: they do not weaken COMPLIANCE mode,
//!
//! Files: `config` (the configuration and its checks), `objects` (the S3 calls: bucket, write
//! once, list every version), `retention` (Object Lock), `xml` (parsing S3's answers); the
//! signing and sending of one call are here.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use portcullis_outbound::sigv4::{self, canonical_query, uri_encode};
use portcullis_outbound::{
    mozilla_roots, Client, Endpoint, Error as OutboundError, Limits, Method, Request,
    RootCertStore, Session,
};
use time::OffsetDateTime;
use uuid::Uuid;

use self::config::validate;
use self::xml::{first_element, sanitize, unescape};
use super::AnchorError;

mod config;
mod objects;
mod retention;
mod xml;

pub use config::{S3AnchorConfig, DEFAULT_PREFIX, DEFAULT_RETENTION_DAYS};
pub use retention::ObjectRetention;

const SERVICE: &str = "s3";
/// A checkpoint is well under a kilobyte and a 1000-entry listing well under a megabyte.
const LIMITS: Limits = Limits {
    connect_timeout: Duration::from_secs(5),
    request_timeout: Duration::from_secs(30),
    max_response_bytes: 4 * 1024 * 1024,
};
const DEFAULT_PAGE_SIZE: u32 = 1000;
/// Connections `list` reads objects over: one GET per checkpoint version, so a year of
/// per-minute checkpoints is half a million requests; a few at once keep that bearable
/// without hammering the endpoint.
const LIST_CONNECTIONS: usize = 4;

/// One S3 answer, whatever its status.
#[derive(Clone, Debug)]
pub struct S3Response {
    pub status: u16,
    /// Lower-cased names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl S3Response {
    /// The first header of that name, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// S3's error code (`<Code>` of the XML error body), or empty.
    pub fn error_code(&self) -> String {
        let body = String::from_utf8_lossy(&self.body);
        first_element(&body, "Code")
            .map(|c| sanitize(&unescape(c)))
            .unwrap_or_default()
    }
}

/// Anchors checkpoints in an S3 bucket with Object Lock. Cheap to clone.
#[derive(Clone)]
pub struct S3Anchors {
    inner: Arc<Inner>,
    page_size: u32,
}

struct Inner {
    config: S3AnchorConfig,
    endpoint: Endpoint,
    client: Client,
}

impl fmt::Debug for S3Anchors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Anchors")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// One request before signing. `key: None` addresses the bucket itself.
struct Call<'a> {
    operation: &'static str,
    method: Method,
    key: Option<&'a str>,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    body: &'a [u8],
}

impl S3Anchors {
    /// Trusts the Mozilla root set (`webpki-roots`), as AWS's public endpoints require.
    pub fn new(config: S3AnchorConfig) -> Result<S3Anchors, AnchorError> {
        S3Anchors::with_root_certificates(config, mozilla_roots())
    }

    /// Trusts only `roots`: for an S3-compatible store behind a private CA, and for tests.
    pub fn with_root_certificates(
        config: S3AnchorConfig,
        roots: RootCertStore,
    ) -> Result<S3Anchors, AnchorError> {
        let endpoint = Endpoint::parse(&config.endpoint)
            .map_err(|e| AnchorError::Config(format!("S3 {e}")))?;
        validate(&config)?;
        let client = Client::with_root_certificates(roots, LIMITS).map_err(|e| match e {
            OutboundError::Tls(m) => AnchorError::Config(format!("TLS for S3: {m}")),
            other => AnchorError::Config(format!("S3 client: {other}")),
        })?;
        Ok(S3Anchors {
            inner: Arc::new(Inner {
                config,
                endpoint,
                client,
            }),
            page_size: DEFAULT_PAGE_SIZE,
        })
    }

    /// Entries per listing page (1..=1000, default 1000); smaller pages are for tests.
    pub fn with_page_size(mut self, page_size: u32) -> S3Anchors {
        self.page_size = page_size.clamp(1, 1000);
        self
    }

    pub fn config(&self) -> &S3AnchorConfig {
        &self.inner.config
    }

    /// `<prefix><environment>/<tree size, 20 digits>.checkpoint`.
    pub fn object_key(&self, environment: Uuid, tree_size: u64) -> String {
        format!(
            "{}{environment}/{tree_size:020}.checkpoint",
            self.inner.config.prefix
        )
    }

    /// `s3://<bucket>/<key>`, for messages.
    pub fn location(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.inner.config.bucket)
    }

    /// One signed request against the bucket (`key: None`) or one of its objects, answered
    /// whatever its status: for operator tooling and tests. `query` values are raw (this
    /// encodes them); every header given is signed.
    pub async fn raw(
        &self,
        method: &str,
        key: Option<&str>,
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<S3Response, AnchorError> {
        let method = Method::from_bytes(method.as_bytes())
            .map_err(|_| AnchorError::Config(format!("`{method}` is not an HTTP method")))?;
        self.send(
            &mut self.session(),
            &Call {
                operation: "request",
                method,
                key,
                query: query
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
                headers: headers
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
                body,
            },
        )
        .await
    }

    fn session(&self) -> Session<'_> {
        self.inner.client.session()
    }

    /// Signs and sends one call on `session`. Every call made is safe to repeat (reads, and a
    /// conditional PUT whose repeat meets its own object and compares equal), as the session
    /// requires.
    async fn send(
        &self,
        session: &mut Session<'_>,
        call: &Call<'_>,
    ) -> Result<S3Response, AnchorError> {
        let request = self.signed_request(call)?;
        let response = session.send(&request).await.map_err(|e| match e {
            OutboundError::Transport { endpoint, message } => {
                AnchorError::Transport { endpoint, message }
            }
            // The builder's message names the offending part, never a header value.
            other => AnchorError::Config(format!(
                "building the S3 {} request: {other}",
                call.operation
            )),
        })?;
        Ok(S3Response {
            status: response.status,
            headers: response.headers.clone(),
            body: response.body.to_vec(),
        })
    }

    fn signed_request(&self, call: &Call<'_>) -> Result<Request, AnchorError> {
        let inner = &self.inner;
        let path = object_path(&inner.config.bucket, call.key);
        let query = canonical_query(&call.query);
        let target = if query.is_empty() {
            path
        } else {
            format!("{path}?{query}")
        };
        let mut request = Request::new(call.method.clone(), inner.endpoint.clone(), target)
            .with_header("x-amz-content-sha256", sigv4::sha256_hex(call.body))
            .with_body(call.body);
        request.headers.extend(call.headers.iter().cloned());
        inner
            .config
            .credentials
            .sign(
                &mut request,
                &inner.config.region,
                SERVICE,
                OffsetDateTime::now_utc(),
            )
            // The signer's errors name the malformed input (the date), never the key.
            .map_err(|e| AnchorError::Config(format!("signing an S3 request: {e}")))?;
        Ok(request)
    }
}

/// `/<bucket>` or `/<bucket>/<key>`, encoded; also the canonical URI.
fn object_path(bucket: &str, key: Option<&str>) -> String {
    match key {
        None => format!("/{}", uri_encode(bucket, false)),
        Some(key) => format!("/{}/{}", uri_encode(bucket, false), uri_encode(key, true)),
    }
}

fn remote(operation: &'static str, location: String, response: &S3Response) -> AnchorError {
    let body = String::from_utf8_lossy(&response.body);
    let code = first_element(&body, "Code")
        .map(|c| sanitize(&unescape(c)))
        .unwrap_or_default();
    let message = first_element(&body, "Message")
        .map(|m| sanitize(&unescape(m)))
        .unwrap_or_default();
    AnchorError::Remote {
        operation,
        location,
        status: response.status,
        code,
        message,
    }
}

#[cfg(test)]
mod tests;
