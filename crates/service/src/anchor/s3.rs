//! Anchoring signed checkpoints in S3 under Object Lock (L4), through the S3 REST API signed
//! with SigV4 (the signer of the KMS client, `portcullis_keys::kms::sigv4`; no AWS SDK).
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
//! clear text to another machine (plain `http://` only on loopback, as for KMS); a hung endpoint
//! (connect and request timeouts) and an oversized answer (bodies are capped).
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
//! but the anchor writer has no use for them.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use md5::{Digest, Md5};
use portcullis_crypto::Secret;
use portcullis_keys::kms::{sigv4, Endpoint};
use portcullis_keys::KeyError;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::net::TcpStream;
use uuid::Uuid;

use super::AnchorError;

/// Default key prefix inside the bucket.
pub const DEFAULT_PREFIX: &str = "portcullis-anchors/";
/// Default COMPLIANCE retention: 7 years (7 × 365 + 2 leap days).
pub const DEFAULT_RETENTION_DAYS: u32 = 2557;

const SERVICE: &str = "s3";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// A checkpoint is well under a kilobyte and a 1000-entry listing well under a megabyte.
const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;
/// Error messages from S3 end up in errors and logs; a hostile endpoint must not flood them.
const MAX_MESSAGE_CHARS: usize = 300;
const DEFAULT_PAGE_SIZE: u32 = 1000;
/// Connections `list` reads objects over: one GET per checkpoint version, so a year of
/// per-minute checkpoints is half a million requests; a few at once keep that bearable
/// without hammering the endpoint.
const LIST_CONNECTIONS: usize = 4;

/// How to reach the anchor bucket and as whom.
#[derive(Clone)]
pub struct S3AnchorConfig {
    /// `https://s3.<region>.amazonaws.com`, or `http://` on a loopback host (a local
    /// S3-compatible test server). No path: the bucket goes into each request's path.
    pub endpoint: String,
    /// e.g. `eu-west-1`; part of every signature's credential scope.
    pub region: String,
    pub bucket: String,
    /// Prepended to every object key; default [`DEFAULT_PREFIX`]. Empty, or ends with `/`.
    pub prefix: String,
    pub access_key_id: String,
    pub secret_access_key: Secret,
    /// For temporary credentials (STS, instance roles).
    pub session_token: Option<Secret>,
    /// COMPLIANCE retention of each new checkpoint, in days; default [`DEFAULT_RETENTION_DAYS`].
    pub retention_days: u32,
}

impl S3AnchorConfig {
    /// A configuration for AWS S3 in `region` with the default endpoint, prefix and retention.
    pub fn new(
        region: impl Into<String>,
        bucket: impl Into<String>,
        access_key_id: impl Into<String>,
        secret_access_key: Secret,
    ) -> S3AnchorConfig {
        let region = region.into();
        S3AnchorConfig {
            endpoint: S3AnchorConfig::aws_endpoint(&region),
            region,
            bucket: bucket.into(),
            prefix: DEFAULT_PREFIX.to_owned(),
            access_key_id: access_key_id.into(),
            secret_access_key,
            session_token: None,
            retention_days: DEFAULT_RETENTION_DAYS,
        }
    }

    /// `https://s3.<region>.amazonaws.com`.
    pub fn aws_endpoint(region: &str) -> String {
        format!("https://s3.{region}.amazonaws.com")
    }
}

impl fmt::Debug for S3AnchorConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The access key id is shown: it names the credentials in use and grants nothing alone.
        f.debug_struct("S3AnchorConfig")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"[redacted]")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "[redacted]"),
            )
            .field("retention_days", &self.retention_days)
            .finish()
    }
}

/// The Object Lock state of one stored checkpoint, from `HeadObject`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectRetention {
    pub version_id: Option<String>,
    /// `COMPLIANCE` or `GOVERNANCE`; `None` for an unlocked object.
    pub mode: Option<String>,
    pub retain_until: Option<OffsetDateTime>,
}

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
    tls: tokio_rustls::TlsConnector,
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
    method: hyper::Method,
    key: Option<&'a str>,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    body: &'a [u8],
}

impl S3Anchors {
    /// Trusts the Mozilla root set (`webpki-roots`), as AWS's public endpoints require.
    pub fn new(config: S3AnchorConfig) -> Result<S3Anchors, AnchorError> {
        S3Anchors::with_root_certificates(
            config,
            rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            },
        )
    }

    /// Trusts only `roots`: for an S3-compatible store behind a private CA, and for tests.
    pub fn with_root_certificates(
        config: S3AnchorConfig,
        roots: rustls::RootCertStore,
    ) -> Result<S3Anchors, AnchorError> {
        let endpoint = Endpoint::parse(&config.endpoint).map_err(|e| match e {
            // The endpoint policy is the KMS client's; only its wording names KMS.
            KeyError::Config(m) => AnchorError::Config(m.replace("KMS", "S3")),
            other => AnchorError::Config(format!("S3 endpoint: {other}")),
        })?;
        validate(&config)?;
        // Named provider, not the process default: another crate installing a different
        // default must not change this client's TLS.
        let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| AnchorError::Config(format!("TLS for S3: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(S3Anchors {
            inner: Arc::new(Inner {
                config,
                endpoint,
                tls: tokio_rustls::TlsConnector::from(Arc::new(tls)),
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

    /// Creates the bucket with Object Lock enabled (idempotent when it already exists and is
    /// ours), then checks that Object Lock is on: a bucket created without it cannot hold
    /// locked objects, and S3 would refuse every `put`.
    pub async fn ensure_bucket(&self) -> Result<(), AnchorError> {
        let config = &self.inner.config;
        // us-east-1 is the default location; naming it in the body is an error there.
        let body = if config.region == "us-east-1" {
            String::new()
        } else {
            format!(
                "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
                 <LocationConstraint>{}</LocationConstraint></CreateBucketConfiguration>",
                escape(&config.region)
            )
        };
        let mut session = Session::new(self);
        let created = session
            .send(&Call {
                operation: "CreateBucket",
                method: hyper::Method::PUT,
                key: None,
                query: vec![],
                headers: vec![(
                    "x-amz-bucket-object-lock-enabled".to_owned(),
                    "true".to_owned(),
                )],
                body: body.as_bytes(),
            })
            .await?;
        let location = format!("s3://{}", config.bucket);
        match created.status {
            200 => {}
            409 if created.error_code() == "BucketAlreadyOwnedByYou" => {}
            _ => return Err(remote("CreateBucket", location, &created)),
        }
        let lock = session
            .send(&Call {
                operation: "GetObjectLockConfiguration",
                method: hyper::Method::GET,
                key: None,
                query: vec![("object-lock".to_owned(), String::new())],
                headers: vec![],
                body: b"",
            })
            .await?;
        match lock.status {
            200 => {
                let text = String::from_utf8_lossy(&lock.body);
                if first_element(&text, "ObjectLockEnabled") == Some("Enabled") {
                    Ok(())
                } else {
                    Err(AnchorError::Config(format!(
                        "{location} exists without Object Lock; enable it \
                         (PutObjectLockConfiguration, on a versioned bucket) or use a new bucket"
                    )))
                }
            }
            404 => Err(AnchorError::Config(format!(
                "{location} exists without Object Lock; enable it \
                 (PutObjectLockConfiguration, on a versioned bucket) or use a new bucket"
            ))),
            _ => Err(remote("GetObjectLockConfiguration", location, &lock)),
        }
    }

    /// Stores a signed checkpoint under COMPLIANCE retention. Idempotent for identical
    /// content; `AnchorError::Conflict` when the key already holds something else. Returns the
    /// object's `s3://` location.
    pub async fn put(
        &self,
        environment: Uuid,
        tree_size: u64,
        signed: &str,
    ) -> Result<String, AnchorError> {
        let key = self.object_key(environment, tree_size);
        let location = self.location(&key);
        let body = signed.as_bytes();
        let retain_until = retain_until(OffsetDateTime::now_utc(), self.config().retention_days)?;
        let put = Call {
            operation: "PutObject",
            method: hyper::Method::PUT,
            key: Some(&key),
            query: vec![],
            headers: vec![
                // S3 requires an integrity header on every PUT that sets a retention.
                ("content-md5".to_owned(), BASE64.encode(Md5::digest(body))),
                (
                    "content-type".to_owned(),
                    "text/plain; charset=utf-8".to_owned(),
                ),
                // Refuse to replace an existing object: 412 when the key exists.
                ("if-none-match".to_owned(), "*".to_owned()),
                ("x-amz-object-lock-mode".to_owned(), "COMPLIANCE".to_owned()),
                (
                    "x-amz-object-lock-retain-until-date".to_owned(),
                    retain_until,
                ),
            ],
            body,
        };
        let mut session = Session::new(self);
        let mut answer = session.send(&put).await?;
        if answer.status == 409 && answer.error_code() == "ConditionalRequestConflict" {
            // Another conditional write on the same key was in flight; once it settles, this
            // one either succeeds or meets the object with 412.
            tokio::time::sleep(Duration::from_millis(200)).await;
            answer = session.send(&put).await?;
        }
        match answer.status {
            200 => Ok(location),
            412 => {
                let existing = session
                    .send(&Call {
                        operation: "GetObject",
                        method: hyper::Method::GET,
                        key: Some(&key),
                        query: vec![],
                        headers: vec![],
                        body: b"",
                    })
                    .await?;
                match existing.status {
                    200 if existing.body == body => Ok(location),
                    200 => Err(AnchorError::Conflict {
                        path: location.into(),
                    }),
                    _ => Err(remote("GetObject", location, &existing)),
                }
            }
            _ => Err(remote("PutObject", location, &answer)),
        }
    }

    /// Every anchored checkpoint of an environment, by tree size. Reads every version of every
    /// key, so a checkpoint hidden behind a delete marker or shadowed by a later version is still
    /// returned: two different texts for one size is a fork, and the verifier will reject
    /// whichever does not match the chain. Identical versions are returned once.
    pub async fn list(&self, environment: Uuid) -> Result<Vec<(u64, String)>, AnchorError> {
        let prefix = format!("{}{environment}/", self.config().prefix);
        let mut session = Session::new(self);
        let mut versions: Vec<(u64, String, String)> = vec![];
        let mut delete_markers = 0usize;
        let mut marker: Option<(String, String)> = None;
        loop {
            let mut query = vec![
                ("versions".to_owned(), String::new()),
                ("prefix".to_owned(), prefix.clone()),
                ("max-keys".to_owned(), self.page_size.to_string()),
            ];
            if let Some((key, version)) = &marker {
                query.push(("key-marker".to_owned(), key.clone()));
                query.push(("version-id-marker".to_owned(), version.clone()));
            }
            let page = session
                .send(&Call {
                    operation: "ListObjectVersions",
                    method: hyper::Method::GET,
                    key: None,
                    query,
                    headers: vec![],
                    body: b"",
                })
                .await?;
            if page.status != 200 {
                return Err(remote("ListObjectVersions", self.location(&prefix), &page));
            }
            let text = std::str::from_utf8(&page.body).map_err(|_| {
                AnchorError::Malformed("ListObjectVersions answer is not UTF-8".to_owned())
            })?;
            let listing = parse_versions(text)?;
            delete_markers += listing.delete_markers;
            for (key, version_id) in listing.versions {
                if let Some(size) = tree_size_of(&key, &prefix) {
                    versions.push((size, key, version_id));
                }
            }
            match listing.next {
                Some(next) if listing.truncated => {
                    if marker.as_ref() == Some(&next) {
                        return Err(AnchorError::Malformed(
                            "ListObjectVersions pagination does not advance".to_owned(),
                        ));
                    }
                    marker = Some(next);
                }
                None if listing.truncated => {
                    return Err(AnchorError::Malformed(
                        "ListObjectVersions is truncated without a next marker".to_owned(),
                    ))
                }
                _ => break,
            }
        }
        if delete_markers > 0 {
            // Deleting a locked checkpoint only hides it; someone tried.
            tracing::warn!(
                %environment,
                delete_markers,
                "anchored checkpoints have delete markers: someone tried to delete them"
            );
        }
        // By size, and oldest version first within a size: S3 lists each key's versions newest
        // first, so reverse, then sort stably.
        versions.reverse();
        versions.sort_by_key(|(size, _, _)| *size);
        // A few connections read the objects at once (interleaved, so each reads about the
        // same number); the order is restored afterwards from each version's index.
        let workers = (0..LIST_CONNECTIONS.min(versions.len())).map(|worker| {
            let versions = &versions;
            async move {
                let mut session = Session::new(self);
                let mut texts = vec![];
                for index in (worker..versions.len()).step_by(LIST_CONNECTIONS) {
                    let (_, key, version_id) = &versions[index];
                    texts.push((
                        index,
                        self.get_version(&mut session, key, version_id).await?,
                    ));
                }
                Ok::<_, AnchorError>(texts)
            }
        });
        let mut texts: Vec<(usize, String)> = futures_util::future::try_join_all(workers)
            .await?
            .into_iter()
            .flatten()
            .collect();
        texts.sort_by_key(|(index, _)| *index);
        let mut out: Vec<(u64, String)> = Vec::with_capacity(texts.len());
        for (index, text) in texts {
            let size = versions[index].0;
            let seen = out
                .iter()
                .rev()
                .take_while(|(s, _)| *s == size)
                .any(|(_, t)| *t == text);
            if !seen {
                out.push((size, text));
            }
        }
        Ok(out)
    }

    async fn get_version(
        &self,
        session: &mut Session<'_>,
        key: &str,
        version_id: &str,
    ) -> Result<String, AnchorError> {
        let object = session
            .send(&Call {
                operation: "GetObject",
                method: hyper::Method::GET,
                key: Some(key),
                query: vec![("versionId".to_owned(), version_id.to_owned())],
                headers: vec![],
                body: b"",
            })
            .await?;
        if object.status != 200 {
            return Err(remote("GetObject", self.location(key), &object));
        }
        String::from_utf8(object.body)
            .map_err(|_| AnchorError::Malformed(format!("{} is not UTF-8", self.location(key))))
    }

    /// The Object Lock state of a stored checkpoint's current version (`HeadObject`), or
    /// `None` when there is none.
    pub async fn retention(
        &self,
        environment: Uuid,
        tree_size: u64,
    ) -> Result<Option<ObjectRetention>, AnchorError> {
        let key = self.object_key(environment, tree_size);
        let head = Session::new(self)
            .send(&Call {
                operation: "HeadObject",
                method: hyper::Method::HEAD,
                key: Some(&key),
                query: vec![],
                headers: vec![],
                body: b"",
            })
            .await?;
        match head.status {
            200 => {
                let retain_until = match head.header("x-amz-object-lock-retain-until-date") {
                    Some(v) => Some(OffsetDateTime::parse(v, &Rfc3339).map_err(|_| {
                        AnchorError::Malformed(format!(
                            "retain-until date of {} is not RFC 3339",
                            self.location(&key)
                        ))
                    })?),
                    None => None,
                };
                Ok(Some(ObjectRetention {
                    version_id: head.header("x-amz-version-id").map(str::to_owned),
                    mode: head.header("x-amz-object-lock-mode").map(sanitize),
                    retain_until,
                }))
            }
            404 => Ok(None),
            _ => Err(remote("HeadObject", self.location(&key), &head)),
        }
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
        let method = hyper::Method::from_bytes(method.as_bytes())
            .map_err(|_| AnchorError::Config(format!("`{method}` is not an HTTP method")))?;
        Session::new(self)
            .send(&Call {
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
            })
            .await
    }

    fn signed_request(&self, call: &Call<'_>) -> Result<hyper::Request<Full<Bytes>>, AnchorError> {
        let inner = &self.inner;
        let path = object_path(&inner.config.bucket, call.key);
        let query = canonical_query(&call.query);
        let amz_date = sigv4::amz_date(OffsetDateTime::now_utc());
        let mut headers: Vec<(String, String)> = vec![
            ("host".to_owned(), inner.endpoint.authority().to_owned()),
            ("x-amz-date".to_owned(), amz_date.clone()),
            (
                "x-amz-content-sha256".to_owned(),
                sigv4::sha256_hex(call.body),
            ),
        ];
        if let Some(token) = &inner.config.session_token {
            headers.push(("x-amz-security-token".to_owned(), token.expose().to_owned()));
        }
        headers.extend(call.headers.iter().cloned());
        let authorization = authorization(
            &SignParts {
                method: call.method.as_str(),
                path: &path,
                query: &query,
                headers: &headers,
                body: call.body,
                amz_date: &amz_date,
            },
            &inner.config,
        )?;
        headers.push(("authorization".to_owned(), authorization));
        let uri = if query.is_empty() {
            path
        } else {
            format!("{path}?{query}")
        };
        let mut builder = hyper::Request::builder()
            .method(call.method.clone())
            .uri(uri);
        for (name, value) in &headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        builder
            .body(Full::new(Bytes::copy_from_slice(call.body)))
            .map_err(|e| {
                // The builder's message names the offending part, never a header value.
                AnchorError::Config(format!("building the S3 {} request: {e}", call.operation))
            })
    }

    async fn connect(&self) -> Result<Connection, AnchorError> {
        let endpoint = &self.inner.endpoint;
        let transport = |message: String| AnchorError::Transport {
            endpoint: endpoint.to_string(),
            message,
        };
        let tcp = tokio::time::timeout(
            CONNECT_TIMEOUT,
            TcpStream::connect((endpoint.host(), endpoint.port())),
        )
        .await
        .map_err(|_| transport("connecting timed out".to_owned()))?
        .map_err(|e| transport(format!("connecting: {e}")))?;
        let _ = tcp.set_nodelay(true);
        if endpoint.is_tls() {
            let name = rustls::pki_types::ServerName::try_from(endpoint.host().to_owned())
                .map_err(|e| transport(format!("TLS server name: {e}")))?;
            let tls = tokio::time::timeout(CONNECT_TIMEOUT, self.inner.tls.connect(name, tcp))
                .await
                .map_err(|_| transport("TLS handshake timed out".to_owned()))?
                .map_err(|e| transport(format!("TLS: {e}")))?;
            Connection::handshake(TokioIo::new(tls)).await
        } else {
            Connection::handshake(TokioIo::new(tcp)).await
        }
        .map_err(transport)
    }
}

/// One HTTP/1.1 connection, kept across the requests of one operation (a `list` reads every
/// object). Its driver task is aborted when it is dropped.
struct Connection {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    driver: tokio::task::JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl Connection {
    async fn handshake<I>(io: I) -> Result<Connection, String>
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let (sender, connection) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| format!("HTTP handshake: {e}"))?;
        let driver = tokio::spawn(async move {
            // Errors surface through `send_request`; nothing more to do with them here.
            let _ = connection.await;
        });
        Ok(Connection { sender, driver })
    }

    async fn send(&mut self, request: hyper::Request<Full<Bytes>>) -> Result<S3Response, String> {
        self.sender
            .ready()
            .await
            .map_err(|e| format!("connection closed: {e}"))?;
        let response = self
            .sender
            .send_request(request)
            .await
            .map_err(|e| format!("HTTP request: {e}"))?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect();
        let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| format!("reading the response: {e}"))?
            .to_bytes()
            .to_vec();
        Ok(S3Response {
            status,
            headers,
            body,
        })
    }
}

/// The requests of one operation, over one connection while the server keeps it open.
struct Session<'a> {
    anchors: &'a S3Anchors,
    connection: Option<Connection>,
}

impl<'a> Session<'a> {
    fn new(anchors: &'a S3Anchors) -> Session<'a> {
        Session {
            anchors,
            connection: None,
        }
    }

    /// Every request made here is safe to repeat (reads, and a conditional PUT whose repeat
    /// meets its own object and compares equal), so a reused connection that turns out closed
    /// is replaced once. A fresh connection's failure is the answer.
    async fn send(&mut self, call: &Call<'_>) -> Result<S3Response, AnchorError> {
        let endpoint = self.anchors.inner.endpoint.to_string();
        let timed_out = || AnchorError::Transport {
            endpoint: endpoint.clone(),
            message: format!("S3 {} timed out", call.operation),
        };
        if let Some(connection) = self.connection.as_mut() {
            let request = self.anchors.signed_request(call)?;
            match tokio::time::timeout(REQUEST_TIMEOUT, connection.send(request)).await {
                Ok(Ok(response)) => return Ok(response),
                Ok(Err(_)) => self.connection = None,
                Err(_) => {
                    self.connection = None;
                    return Err(timed_out());
                }
            }
        }
        let request = self.anchors.signed_request(call)?;
        let attempt = async {
            let mut connection = self.anchors.connect().await?;
            let response =
                connection
                    .send(request)
                    .await
                    .map_err(|message| AnchorError::Transport {
                        endpoint: endpoint.clone(),
                        message,
                    })?;
            Ok::<_, AnchorError>((connection, response))
        };
        let (connection, response) = tokio::time::timeout(REQUEST_TIMEOUT, attempt)
            .await
            .map_err(|_| timed_out())??;
        let keep_alive = !response
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        if keep_alive {
            self.connection = Some(connection);
        }
        Ok(response)
    }
}

fn validate(config: &S3AnchorConfig) -> Result<(), AnchorError> {
    let bad = |why: String| Err(AnchorError::Config(why));
    let bucket = &config.bucket;
    // The rules of S3 bucket names that matter here: a path segment, and a DNS label set.
    if !(3..=63).contains(&bucket.len())
        || !bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        || !bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
        || !bucket.ends_with(|c: char| c.is_ascii_alphanumeric())
    {
        return bad(format!(
            "S3 bucket `{bucket}`: 3 to 63 lower-case letters, digits, `-` and `.`, \
             starting and ending with a letter or digit"
        ));
    }
    if config.region.is_empty()
        || !config
            .region
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return bad(format!(
            "S3 region `{}` is not a region name",
            config.region
        ));
    }
    let prefix = &config.prefix;
    if !(prefix.is_empty() || prefix.ends_with('/'))
        || prefix.starts_with('/')
        || prefix.contains("//")
        || prefix.chars().any(char::is_control)
        || prefix.len() > 512
    {
        return bad(format!(
            "S3 prefix `{prefix}`: empty, or relative path segments ending with `/`"
        ));
    }
    // It goes into `Credential=<id>/<scope>, ...`: no separators or spaces.
    if config.access_key_id.is_empty()
        || config
            .access_key_id
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '/' | ','))
    {
        return bad("S3 access key id is empty or holds `/`, `,` or whitespace".to_owned());
    }
    if config.secret_access_key.expose().is_empty() {
        return bad("S3 secret access key is empty".to_owned());
    }
    if config.retention_days == 0 {
        return bad("S3 retention_days must be at least 1".to_owned());
    }
    retain_until(OffsetDateTime::now_utc(), config.retention_days).map(|_| ())
}

/// `now + days`, whole seconds, RFC 3339 in UTC (`2033-11-21T09:57:43Z`).
fn retain_until(now: OffsetDateTime, days: u32) -> Result<String, AnchorError> {
    let too_far = || AnchorError::Config(format!("S3 retention of {days} days is out of range"));
    let now = OffsetDateTime::from_unix_timestamp(now.unix_timestamp()).map_err(|_| too_far())?;
    now.checked_add(time::Duration::days(i64::from(days)))
        .filter(|t| t.year() <= 9999)
        .ok_or_else(too_far)?
        .format(&Rfc3339)
        .map_err(|_| too_far())
}

/// S3's URI encoding: unreserved characters stay, every other byte is `%XX` (upper case);
/// `/` too unless it separates path segments. Applied once: S3 does not double-encode.
fn uri_encode(value: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'.' | b'~')
            || (keep_slash && b == b'/')
        {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `/<bucket>` or `/<bucket>/<key>`, encoded; also the canonical URI.
fn object_path(bucket: &str, key: Option<&str>) -> String {
    match key {
        None => format!("/{}", uri_encode(bucket, false)),
        Some(key) => format!("/{}/{}", uri_encode(bucket, false), uri_encode(key, true)),
    }
}

/// Encoded pairs sorted by name then value, `name=` for empty values. Also sent as the URI's
/// query, so the server sees exactly what was signed.
fn canonical_query(pairs: &[(String, String)]) -> String {
    let mut encoded: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| (uri_encode(k, false), uri_encode(v, false)))
        .collect();
    encoded.sort();
    encoded
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

struct SignParts<'a> {
    method: &'a str,
    path: &'a str,
    query: &'a str,
    headers: &'a [(String, String)],
    body: &'a [u8],
    amz_date: &'a str,
}

fn authorization(parts: &SignParts<'_>, config: &S3AnchorConfig) -> Result<String, AnchorError> {
    let headers: Vec<(&str, &str)> = parts
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    sigv4::authorization(&sigv4::SigningInput {
        method: parts.method,
        path: parts.path,
        query: parts.query,
        headers: &headers,
        payload: parts.body,
        region: &config.region,
        service: SERVICE,
        amz_date: parts.amz_date,
        access_key_id: &config.access_key_id,
        secret_access_key: config.secret_access_key.expose(),
    })
    // The signer's errors name the malformed input (the date), never the key.
    .map_err(|e| AnchorError::Config(format!("signing an S3 request: {e}")))
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

/// Printable, bounded, single-line.
fn sanitize(message: &str) -> String {
    let mut out: String = message
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_MESSAGE_CHARS)
        .collect();
    if message.chars().count() > MAX_MESSAGE_CHARS {
        out.push('…');
    }
    out
}

/// The text of the first `<tag>…</tag>` in `xml`, as written (entities not decoded).
fn first_element<'x>(xml: &'x str, tag: &str) -> Option<&'x str> {
    elements(xml, tag).next()
}

/// The text of every `<tag>…</tag>` in `xml`, in order. Enough for S3's flat answers; not an
/// XML parser (no attributes on these elements, no CDATA, no nesting of a tag in itself).
fn elements<'x>(xml: &'x str, tag: &str) -> impl Iterator<Item = &'x str> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let mut rest = xml;
    std::iter::from_fn(move || {
        let start = rest.find(&open)? + open.len();
        let len = rest[start..].find(&close)?;
        let found = &rest[start..start + len];
        rest = &rest[start + len + close.len()..];
        Some(found)
    })
}

fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let Some(end) = rest.find(';') else { break };
        let entity = &rest[1..end];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

struct VersionPage {
    /// (key, version id) of every object version; delete markers are only counted.
    versions: Vec<(String, String)>,
    delete_markers: usize,
    truncated: bool,
    /// (`NextKeyMarker`, `NextVersionIdMarker`).
    next: Option<(String, String)>,
}

fn parse_versions(xml: &str) -> Result<VersionPage, AnchorError> {
    if !xml.contains("<ListVersionsResult") {
        return Err(AnchorError::Malformed(
            "ListObjectVersions answer is not a ListVersionsResult".to_owned(),
        ));
    }
    let mut versions = vec![];
    for block in elements(xml, "Version") {
        let (Some(key), Some(version_id)) = (
            first_element(block, "Key"),
            first_element(block, "VersionId"),
        ) else {
            return Err(AnchorError::Malformed(
                "ListObjectVersions entry without Key or VersionId".to_owned(),
            ));
        };
        versions.push((unescape(key), unescape(version_id)));
    }
    // The top-level elements follow the entries in moto's answers and precede them in S3's;
    // entries never contain these names, so searching the whole document is fine.
    let truncated = first_element(xml, "IsTruncated") == Some("true");
    let next = match (
        first_element(xml, "NextKeyMarker"),
        first_element(xml, "NextVersionIdMarker"),
    ) {
        (Some(k), Some(v)) => Some((unescape(k), unescape(v))),
        (Some(k), None) => Some((unescape(k), String::new())),
        _ => None,
    };
    Ok(VersionPage {
        versions,
        delete_markers: elements(xml, "DeleteMarker").count(),
        truncated,
        next,
    })
}

/// The tree size in `<prefix><tree size>.checkpoint`, if the key has that shape.
fn tree_size_of(key: &str, prefix: &str) -> Option<u64> {
    key.strip_prefix(prefix)?
        .strip_suffix(".checkpoint")
        .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn config() -> S3AnchorConfig {
        let mut c = S3AnchorConfig::new(
            "eu-west-1",
            "pc-anchors",
            "AKIDEXAMPLE",
            Secret::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
        );
        c.session_token = Some(Secret::new("session-token-secret"));
        c
    }

    /// The S3 examples of AWS's SigV4 documentation ("Examples: Signature calculations in AWS
    /// Signature Version 4", header-based authentication): the signer with S3's rules (a
    /// payload hash header, path encoded once) gives AWS's signatures.
    #[test]
    fn l4_s3_signing_matches_the_aws_examples() {
        let mut c = S3AnchorConfig::new(
            "us-east-1",
            "examplebucket",
            "AKIAIOSFODNN7EXAMPLE",
            Secret::new("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
        );
        c.endpoint = "https://examplebucket.s3.amazonaws.com".to_owned();
        let date = "20130524T000000Z";
        let host = "examplebucket.s3.amazonaws.com";
        let sign = |method: &str,
                    key: &str,
                    query: &[(&str, &str)],
                    extra: &[(&str, &str)],
                    body: &[u8]| {
            let mut headers: Vec<(String, String)> = vec![
                ("host".to_owned(), host.to_owned()),
                ("x-amz-date".to_owned(), date.to_owned()),
                ("x-amz-content-sha256".to_owned(), sigv4::sha256_hex(body)),
            ];
            headers.extend(
                extra
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
            );
            let query: Vec<(String, String)> = query
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            // Virtual-hosted style in the examples: the key is the whole path.
            let path = format!("/{}", uri_encode(key, true));
            authorization(
                &SignParts {
                    method,
                    path: &path,
                    query: &canonical_query(&query),
                    headers: &headers,
                    body,
                    amz_date: date,
                },
                &c,
            )
            .unwrap()
        };
        let signature = |auth: String| auth.rsplit_once("Signature=").unwrap().1.to_owned();

        assert_eq!(
            signature(sign("GET", "test.txt", &[], &[("range", "bytes=0-9")], b"")),
            "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
        let put = sign(
            "PUT",
            "test$file.text",
            &[],
            &[
                ("date", "Fri, 24 May 2013 00:00:00 GMT"),
                ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
            ],
            b"Welcome to Amazon S3.",
        );
        assert_eq!(
            signature(put),
            "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"
        );
        assert_eq!(
            signature(sign("GET", "", &[("lifecycle", "")], &[], b"")),
            "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543"
        );
        let list = sign("GET", "", &[("max-keys", "2"), ("prefix", "J")], &[], b"");
        assert!(list.starts_with(
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
             SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature="
        ));
        assert_eq!(
            signature(list),
            "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"
        );
    }

    #[test]
    fn l4_s3_paths_and_queries_are_encoded_once() {
        assert_eq!(uri_encode("a b/c+d~e_f.g-h", true), "a%20b/c%2Bd~e_f.g-h");
        assert_eq!(uri_encode("a/b", false), "a%2Fb");
        assert_eq!(uri_encode("é%", true), "%C3%A9%25");
        assert_eq!(
            object_path("pc-anchors", Some("p x/0001.checkpoint")),
            "/pc-anchors/p%20x/0001.checkpoint"
        );
        assert_eq!(object_path("pc-anchors", None), "/pc-anchors");
        let q = |pairs: &[(&str, &str)]| {
            canonical_query(
                &pairs
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect::<Vec<_>>(),
            )
        };
        assert_eq!(
            q(&[("versions", ""), ("prefix", "a/b c"), ("max-keys", "1000")]),
            "max-keys=1000&prefix=a%2Fb%20c&versions="
        );
        assert_eq!(q(&[]), "");
    }

    #[test]
    fn l4_s3_object_keys_and_retention_dates() {
        let a = S3Anchors::new(config()).unwrap();
        let env = Uuid::nil();
        assert_eq!(
            a.object_key(env, 42),
            "portcullis-anchors/00000000-0000-0000-0000-000000000000/00000000000000000042.checkpoint"
        );
        assert_eq!(
            tree_size_of(
                &a.object_key(env, u64::MAX),
                &format!("portcullis-anchors/{env}/")
            ),
            Some(u64::MAX)
        );
        assert_eq!(tree_size_of("p/e/x.checkpoint", "p/e/"), None);
        assert_eq!(tree_size_of("p/e/+1.checkpoint", "p/e/"), None);
        assert_eq!(tree_size_of("p/e/12.txt", "p/e/"), None);
        let now = OffsetDateTime::from_unix_timestamp(1_440_938_160).unwrap();
        assert_eq!(retain_until(now, 1).unwrap(), "2015-08-31T12:36:00Z");
        assert_eq!(
            retain_until(now, DEFAULT_RETENTION_DAYS).unwrap(),
            "2022-08-30T12:36:00Z"
        );
        assert!(retain_until(now, u32::MAX).is_err());
    }

    #[test]
    fn l4_s3_config_is_checked_and_never_shows_secrets() {
        let shown = format!("{:?}", S3Anchors::new(config()).unwrap());
        assert!(
            !shown.contains("wJalr") && !shown.contains("session-token-secret"),
            "{shown}"
        );
        assert!(shown.contains("AKIDEXAMPLE") && shown.contains("pc-anchors"));

        let with = |f: &dyn Fn(&mut S3AnchorConfig)| {
            let mut c = config();
            f(&mut c);
            S3Anchors::new(c)
        };
        assert!(with(&|c| c.endpoint = "http://127.0.0.1:9000".to_owned()).is_ok());
        assert!(with(&|c| c.prefix = String::new()).is_ok());
        for bad in [
            with(&|c| c.endpoint = "http://s3.example.com".to_owned()),
            with(&|c| c.endpoint = "https://s3.example.com/bucket".to_owned()),
            with(&|c| c.bucket = "Upper".to_owned()),
            with(&|c| c.bucket = "a/b".to_owned()),
            with(&|c| c.bucket = "ab".to_owned()),
            with(&|c| c.prefix = "no-slash".to_owned()),
            with(&|c| c.prefix = "/abs/".to_owned()),
            with(&|c| c.prefix = "a//b/".to_owned()),
            with(&|c| c.region = "eu west".to_owned()),
            with(&|c| c.retention_days = 0),
            with(&|c| c.retention_days = u32::MAX),
            with(&|c| c.secret_access_key = Secret::new("")),
        ] {
            match bad {
                Err(AnchorError::Config(m)) => {
                    assert!(!m.contains("wJalr") && !m.contains("KMS"), "{m}")
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn l4_s3_listings_and_errors_are_parsed() {
        let page = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListVersionsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><Prefix>p/</Prefix>
<KeyMarker></KeyMarker><VersionIdMarker></VersionIdMarker>
<NextKeyMarker>p/2.checkpoint</NextKeyMarker><NextVersionIdMarker>v&amp;2</NextVersionIdMarker>
<MaxKeys>2</MaxKeys><IsTruncated>true</IsTruncated>
<Version><Key>p/1.checkpoint</Key><VersionId>v1</VersionId><IsLatest>true</IsLatest></Version>
<DeleteMarker><Key>p/2.checkpoint</Key><VersionId>d2</VersionId><IsLatest>true</IsLatest></DeleteMarker>
<Version><Key>p/2&amp;.checkpoint</Key><VersionId>v2</VersionId><IsLatest>false</IsLatest></Version>
</ListVersionsResult>"#;
        let parsed = parse_versions(page).unwrap();
        assert_eq!(
            parsed.versions,
            vec![
                ("p/1.checkpoint".to_owned(), "v1".to_owned()),
                ("p/2&.checkpoint".to_owned(), "v2".to_owned())
            ]
        );
        assert_eq!(parsed.delete_markers, 1);
        assert!(parsed.truncated);
        assert_eq!(
            parsed.next,
            Some(("p/2.checkpoint".to_owned(), "v&2".to_owned()))
        );
        assert!(parse_versions("<Error><Code>NoSuchBucket</Code></Error>").is_err());

        let error = S3Response {
            status: 403,
            headers: vec![],
            body: b"<Error><Code>SignatureDoesNotMatch</Code><Message>The request signature \
                    we calculated does not match</Message><StringToSign>AWS4-HMAC-SHA256 \
                    secret-ish</StringToSign><CanonicalRequest>GET</CanonicalRequest></Error>"
                .to_vec(),
        };
        let e = remote("PutObject", "s3://b/k".to_owned(), &error);
        let shown = format!("{e} {e:?}");
        assert!(
            shown.contains("SignatureDoesNotMatch") && shown.contains("403"),
            "{shown}"
        );
        assert!(!shown.contains("secret-ish"), "{shown}");
        assert_eq!(unescape("a&lt;b&#x41;&#66;&bogus;&"), "a<bAB&bogus;&");
        assert_eq!(
            sanitize(&"x\n".repeat(400)).chars().count(),
            MAX_MESSAGE_CHARS + 1
        );
    }
}
