//! Certificates and the HTTPS listener (control E1).
//!
//! This module owns everything between the TCP socket and the axum `Router`: choosing the
//! server certificate (operator-configured PEM files, or a self-signed one generated once into
//! the data directory for local use), the rustls policy (TLS 1.3 and 1.2 only, ring provider,
//! no client certificates, ALPN h2 + http/1.1), the accept loop with its slowloris limits,
//! and graceful shutdown. It must never serve a protocol older than TLS 1.2, never fall back
//! to plain HTTP on its own (plain HTTP exists only through the explicit `serve_plain`), never
//! depend on a process-global rustls crypto provider, and never let one failed or stalled
//! client connection stop or block the listener.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tower::ServiceExt;

/// A client that has not finished the TLS handshake by then is dropped, so a slowloris client
/// cannot pin a connection slot (and its task) indefinitely.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Same reasoning one layer up: an HTTP/1 client must send its complete request head this fast.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// hyper's HTTP/2 default (~16 MiB) is far beyond anything this API needs and is memory a
/// single client could make the server hold per stream.
const H2_MAX_HEADER_LIST_SIZE: u32 = 64 * 1024;

/// Names the self-signed certificate covers: only loopback, because it is for local use only.
const SELF_SIGNED_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// Long enough that a dev or demo install never hits expiry (the reused file is not re-checked),
/// yet not rcgen's default of "until 4096".
const SELF_SIGNED_VALIDITY_DAYS: i64 = 3650;

/// Operator-supplied certificate and key, as they appear in the configuration.
#[derive(Debug, Clone, Default)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first.
    pub cert_file: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1/RSA or SEC1).
    pub key_file: Option<PathBuf>,
}

/// Where the certificate in use came from, so startup can tell the operator.
#[derive(Debug)]
pub enum CertificateSource {
    /// The operator's `cert_file`/`key_file`.
    Configured { cert_file: PathBuf },
    /// No certificate was configured and none existed yet: one was generated on this start.
    GeneratedSelfSigned { cert_file: PathBuf },
    /// No certificate was configured: the one generated on an earlier start was reused.
    ReusedSelfSigned { cert_file: PathBuf },
}

impl CertificateSource {
    /// The certificate file in use, whatever its origin.
    pub fn cert_file(&self) -> &Path {
        match self {
            Self::Configured { cert_file }
            | Self::GeneratedSelfSigned { cert_file }
            | Self::ReusedSelfSigned { cert_file } => cert_file,
        }
    }

    /// True when clients need to be told to trust the certificate explicitly.
    pub fn is_self_signed(&self) -> bool {
        !matches!(self, Self::Configured { .. })
    }
}

/// Why no usable TLS configuration could be built. Every variant names the file involved.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("TLS cert_file {cert_file} is configured without a key_file; set both or neither")]
    CertWithoutKey { cert_file: PathBuf },
    #[error("TLS key_file {key_file} is configured without a cert_file; set both or neither")]
    KeyWithoutCert { key_file: PathBuf },
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{path} is not valid PEM: {reason}")]
    InvalidPem { path: PathBuf, reason: String },
    #[error("{path} contains no PEM CERTIFICATE block")]
    NoCertificate { path: PathBuf },
    #[error("{path} contains no PEM private key (expected PKCS#8, RSA or EC PRIVATE KEY)")]
    NoPrivateKey { path: PathBuf },
    #[error("certificate {cert_file} and key {key_file} cannot be used together: {source}")]
    Unusable {
        cert_file: PathBuf,
        key_file: PathBuf,
        source: rustls::Error,
    },
    #[error("cannot generate a self-signed certificate for {cert_file}: {source}")]
    Generate {
        cert_file: PathBuf,
        source: rcgen::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

/// Build the rustls server configuration.
///
/// Configured cert+key (PEM; cert chain, PKCS#8/RSA/SEC1 key) if given (both or neither, else
/// error); otherwise a self-signed certificate for localhost/127.0.0.1/::1 generated with rcgen
/// into `<data_dir>/tls/{cert.pem,key.pem}` (key file mode 0600, dir 0700), reused on later
/// starts.
pub fn server_config(
    files: &TlsFiles,
    data_dir: &Path,
) -> Result<(Arc<rustls::ServerConfig>, CertificateSource), TlsError> {
    let (cert_file, key_file, source) = match (&files.cert_file, &files.key_file) {
        (Some(cert), Some(key)) => {
            warn_if_key_readable_by_others(key);
            let source = CertificateSource::Configured {
                cert_file: cert.clone(),
            };
            (cert.clone(), key.clone(), source)
        }
        (Some(cert), None) => {
            return Err(TlsError::CertWithoutKey {
                cert_file: cert.clone(),
            })
        }
        (None, Some(key)) => {
            return Err(TlsError::KeyWithoutCert {
                key_file: key.clone(),
            })
        }
        (None, None) => self_signed(data_dir)?,
    };

    let chain = load_cert_chain(&cert_file)?;
    let key = load_private_key(&key_file)?;
    let unusable = |source| TlsError::Unusable {
        cert_file: cert_file.clone(),
        key_file: key_file.clone(),
        source,
    };
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
    .map_err(unusable)?
    .with_no_client_auth()
    // Also verifies that the key belongs to the leaf certificate.
    .with_single_cert(chain, key)
    .map_err(unusable)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];

    Ok((Arc::new(config), source))
}

fn self_signed(data_dir: &Path) -> Result<(PathBuf, PathBuf, CertificateSource), TlsError> {
    let dir = data_dir.join("tls");
    let cert_file = dir.join("cert.pem");
    let key_file = dir.join("key.pem");

    create_private_dir(&dir)?;

    // Both must exist to reuse: a lone file is what an interrupted first start leaves behind.
    if cert_file.is_file() && key_file.is_file() {
        restrict_key_permissions(&key_file)?;
        tracing::info!(
            cert_file = %cert_file.display(),
            "reusing self-signed TLS certificate; clients must trust it explicitly"
        );
        let source = CertificateSource::ReusedSelfSigned {
            cert_file: cert_file.clone(),
        };
        return Ok((cert_file, key_file, source));
    }

    let (cert_pem, key_pem) = generate_self_signed().map_err(|source| TlsError::Generate {
        cert_file: cert_file.clone(),
        source,
    })?;
    // Key first: a cert.pem on disk then always has its key next to it.
    write_atomically(&key_file, key_pem.as_bytes(), 0o600)?;
    write_atomically(&cert_file, cert_pem.as_bytes(), 0o644)?;

    tracing::warn!(
        cert_file = %cert_file.display(),
        "no TLS certificate configured: generated a self-signed certificate for \
         localhost, 127.0.0.1 and ::1 at {path}. Browsers will warn about it and curl needs \
         `-k` or `curl --cacert {path}`; configure cert_file and key_file for any real deployment",
        path = cert_file.display(),
    );
    let source = CertificateSource::GeneratedSelfSigned {
        cert_file: cert_file.clone(),
    };
    Ok((cert_file, key_file, source))
}

fn generate_self_signed() -> Result<(String, String), rcgen::Error> {
    let names: Vec<String> = SELF_SIGNED_NAMES.iter().map(|n| (*n).to_owned()).collect();
    // rcgen turns the IP literals into iPAddress SANs, which is what clients match 127.0.0.1 against.
    let mut params = rcgen::CertificateParams::new(names)?;
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(
        rcgen::DnType::CommonName,
        "Portcullis self-signed (localhost)",
    );
    params.distinguished_name = dn;
    let now = time::OffsetDateTime::now_utc();
    // A day of slack tolerates clients whose clock is a little behind.
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(SELF_SIGNED_VALIDITY_DAYS);
    // Not a CA: webpki refuses a CA certificate presented as the server's own.
    params.is_ca = rcgen::IsCa::ExplicitNoCa;
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];

    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn read_file(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

fn load_cert_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read_file(path)?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::InvalidPem {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(chain)
}

fn load_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read_file(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoPrivateKey {
            path: path.to_owned(),
        },
        // Deliberately not echoing any of the file's content: it is key material.
        other => TlsError::InvalidPem {
            path: path.to_owned(),
            reason: other.to_string(),
        },
    })
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> Result<(), TlsError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let write_err = |source| TlsError::Write {
        path: dir.to_owned(),
        source,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(write_err)?;
    // `mode` only applies to directories created just now; an older one may be wider.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(write_err)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> Result<(), TlsError> {
    std::fs::create_dir_all(dir).map_err(|source| TlsError::Write {
        path: dir.to_owned(),
        source,
    })
}

/// Write via a temporary file and rename, so a crash never leaves a truncated key or cert
/// that a later start would then try to reuse.
fn write_atomically(path: &Path, contents: &[u8], mode: u32) -> Result<(), TlsError> {
    use std::io::Write;
    let tmp = path.with_extension("pem.tmp");
    let write_err = |source| TlsError::Write {
        path: path.to_owned(),
        source,
    };
    // A leftover from a crashed start could carry other permissions; `mode` below only
    // applies on creation.
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(write_err(e)),
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // Created with the final mode so the key is never readable by others, not even briefly.
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(&tmp).map_err(write_err)?;
    file.write_all(contents).map_err(write_err)?;
    file.sync_all().map_err(write_err)?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(write_err)
}

#[cfg(unix)]
fn restrict_key_permissions(key_file: &Path) -> Result<(), TlsError> {
    use std::os::unix::fs::PermissionsExt;
    let write_err = |source| TlsError::Write {
        path: key_file.to_owned(),
        source,
    };
    let mode = std::fs::metadata(key_file)
        .map_err(write_err)?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        // This file is ours (we generated it), so fixing it beats refusing to start.
        tracing::warn!(
            key_file = %key_file.display(),
            mode = format_args!("{:o}", mode & 0o777),
            "self-signed TLS key was readable by other users; restricting it to 0600"
        );
        std::fs::set_permissions(key_file, std::fs::Permissions::from_mode(0o600))
            .map_err(write_err)?;
    }
    Ok(())
}

#[cfg(not(unix))]
fn restrict_key_permissions(_key_file: &Path) -> Result<(), TlsError> {
    Ok(())
}

/// An operator's key file is theirs to manage, so only say so; refusing to start would turn a
/// hygiene problem into an outage.
fn warn_if_key_readable_by_others(key_file: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(key_file) {
            let mode = meta.permissions().mode();
            if mode & 0o077 != 0 {
                tracing::warn!(
                    key_file = %key_file.display(),
                    mode = format_args!("{:o}", mode & 0o777),
                    "TLS private key file is accessible to other users; chmod 600 it"
                );
            }
        }
    }
    #[cfg(not(unix))]
    let _ = key_file;
}

/// Serve `app` over TLS on `listener` until `shutdown` resolves, then stop accepting and let
/// in-flight connections finish (up to `drain` time, then drop them).
///
/// ALPN h2 + http/1.1 (hyper-util auto builder). Each request gets the peer address as
/// `axum::extract::ConnectInfo<SocketAddr>` in its extensions. TLS handshakes time out after
/// [`TLS_HANDSHAKE_TIMEOUT`]; a failed handshake is logged at debug and never stops the server.
pub async fn serve_tls(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    drain: Duration,
) -> io::Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    serve_connections(listener, app, shutdown, drain, move |tcp, peer| {
        let acceptor = acceptor.clone();
        async move {
            let handshake = async move {
                if starts_with_plain_http(&tcp).await {
                    answer_plain_http(tcp).await;
                    tracing::debug!(%peer, "plain HTTP on the HTTPS port; answered 400 https_required");
                    return Ok(None);
                }
                acceptor.accept(tcp).await.map(Some)
            };
            match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, handshake).await {
                Ok(Ok(stream)) => stream,
                // Scanners and clients that distrust our cert land here; none of that is the
                // server's problem, so debug, not warn.
                Ok(Err(error)) => {
                    tracing::debug!(%peer, %error, "TLS handshake failed");
                    None
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    None
                }
            }
        }
    })
    .await
}

/// Whether the client's first byte starts a plain-text request line (an upper-case method
/// letter) rather than a TLS record (content type 20-24, a handshake is 22): someone typed
/// `http://` for this port. Only peeks, so the TLS handshake still sees every byte.
async fn starts_with_plain_http(tcp: &TcpStream) -> bool {
    let mut first = [0u8; 1];
    matches!(tcp.peek(&mut first).await, Ok(1) if first[0].is_ascii_uppercase())
}

/// The most of a plain-text request head read before answering it.
const PLAIN_HTTP_HEAD_LIMIT: usize = 16 * 1024;

/// Answers a plain-text HTTP request on the HTTPS port with a short 400 in the API's error
/// shape that says to use `https://` (with the request's host when it is a plain host name),
/// then closes. Nothing of the request reaches the application. The request head is read
/// first, so that closing does not reset the connection before the client has read the answer.
async fn answer_plain_http(mut tcp: TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut head = Vec::new();
    let mut chunk = [0u8; 2048];
    while head.len() < PLAIN_HTTP_HEAD_LIMIT && !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match tcp.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&chunk[..n]),
        }
    }
    let body = plain_http_answer_body(&head);
    let answer = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\nx-content-type-options: nosniff\r\n\r\n{body}",
        body.len()
    );
    let _ = tcp.write_all(answer.as_bytes()).await;
    let _ = tcp.shutdown().await;
}

/// The JSON body of the answer to plain HTTP on the HTTPS port.
fn plain_http_answer_body(head: &[u8]) -> String {
    let host = String::from_utf8_lossy(head)
        .split("\r\n")
        .skip(1)
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("host")
                .then(|| value.trim().to_owned())
        })
        // Echoed only when it is plainly a host (and port): nothing to escape, nothing to inject.
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 255
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
        });
    let target = match host {
        Some(h) => format!("https://{h}/"),
        None => "https://".to_owned(),
    };
    format!(
        "{{\"error\":{{\"code\":\"https_required\",\"message\":\"this port serves HTTPS only; use {target} instead of http://\"}}}}\n"
    )
}

/// Same as [`serve_tls`] but plain HTTP, for deployments behind a TLS-terminating proxy
/// (explicit opt-in in config only).
pub async fn serve_plain(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    drain: Duration,
) -> io::Result<()> {
    serve_connections(listener, app, shutdown, drain, |tcp, _peer| async move {
        Some(tcp)
    })
    .await
}

async fn serve_connections<H, F, S>(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    drain: Duration,
    handshake: H,
) -> io::Result<()>
where
    H: Fn(TcpStream, SocketAddr) -> F,
    F: Future<Output = Option<S>> + Send + 'static,
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let builder = Arc::new(http_builder());
    let (stop_tx, stop_rx) = watch::channel(false);
    // Dropping the set (e.g. if this future is cancelled) aborts every connection task.
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);

    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            // Reap finished connections so the set does not grow with every connection served.
            Some(joined) = connections.join_next(), if !connections.is_empty() => {
                log_join_error(joined);
            }
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    // Small request/response exchanges; Nagle would only add latency.
                    let _ = tcp.set_nodelay(true);
                    let handshake = handshake(tcp, peer);
                    let app = app.clone();
                    let builder = Arc::clone(&builder);
                    let stop = stop_rx.clone();
                    connections.spawn(serve_connection(handshake, peer, app, builder, stop));
                }
                Err(error) if is_per_connection_error(&error) => {
                    tracing::debug!(%error, "accept failed for one connection");
                }
                Err(error) => {
                    // E.g. EMFILE: retrying at once would spin; giving up would take the API down
                    // over a transient resource shortage.
                    tracing::error!(%error, "accept failed; retrying in 1s");
                    tokio::select! {
                        () = &mut shutdown => break,
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            },
        }
    }

    // Closing the socket now makes new connection attempts fail fast instead of queueing
    // in the backlog of a server that will never accept them.
    drop(listener);
    let _ = stop_tx.send(true);
    let in_flight = connections.len();
    tracing::info!(
        in_flight,
        ?drain,
        "shutting down: no longer accepting connections"
    );

    let drained = tokio::time::timeout(drain, async {
        while let Some(joined) = connections.join_next().await {
            log_join_error(joined);
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            remaining = connections.len(),
            "drain time elapsed; dropping connections still open"
        );
        connections.shutdown().await;
    }
    Ok(())
}

fn http_builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(H2_MAX_HEADER_LIST_SIZE);
    builder
}

async fn serve_connection<F, S>(
    handshake: F,
    peer: SocketAddr,
    app: Router,
    builder: Arc<auto::Builder<TokioExecutor>>,
    mut stop: watch::Receiver<bool>,
) where
    F: Future<Output = Option<S>>,
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let stream = tokio::select! {
        stream = handshake => stream,
        // Nothing has been asked of us yet, so there is nothing to drain.
        () = stopping(&mut stop) => None,
    };
    let Some(stream) = stream else {
        return;
    };

    let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        app.clone().oneshot(req)
    });
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);

    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = stopping(&mut stop) => {
            // Finishes the request in flight (HTTP/1) or sends GOAWAY (HTTP/2), then closes.
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(error) = result {
        tracing::debug!(%peer, %error, "connection ended with an error");
    }
}

async fn stopping(stop: &mut watch::Receiver<bool>) {
    // An error means the sender is gone, which also means the server is going away.
    let _ = stop.wait_for(|stopping| *stopping).await;
}

fn is_per_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    )
}

fn log_join_error(joined: Result<(), tokio::task::JoinError>) {
    if let Err(error) = joined {
        if error.is_panic() {
            tracing::error!(%error, "connection task panicked");
        }
    }
}
