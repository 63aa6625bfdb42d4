//! TLS (control E1): certificates generated, reused and refused, and the listener:
//! versions, ALPN, refused plain text, drain and shutdown.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::ConnectInfo;
use axum::routing::get;
use axum::Router;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use portcullis_server::tls::{
    serve_plain, serve_tls, server_config, CertificateSource, TlsError, TlsFiles,
    TLS_HANDSHAKE_TIMEOUT,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ProtocolVersion, RootCertStore, SupportedProtocolVersion};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// A directory removed on drop; enough for these tests without another dependency.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "portcullis-tls-test-{}-{tag}-{n}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn generated(dir: &TempDir) -> (Arc<rustls::ServerConfig>, CertificateSource) {
    server_config(&TlsFiles::default(), dir.path()).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Certificates

#[test]
fn self_signed_is_generated_then_reused() {
    let dir = TempDir::new("reuse");
    let (_, first) = generated(&dir);
    let cert_file = dir.path().join("tls").join("cert.pem");
    let key_file = dir.path().join("tls").join("key.pem");
    match &first {
        CertificateSource::GeneratedSelfSigned { cert_file: f } => assert_eq!(f, &cert_file),
        other => panic!("expected GeneratedSelfSigned, got {other:?}"),
    }
    let cert_before = std::fs::read(&cert_file).unwrap();
    let key_before = std::fs::read(&key_file).unwrap();

    let (_, second) = generated(&dir);
    match &second {
        CertificateSource::ReusedSelfSigned { cert_file: f } => assert_eq!(f, &cert_file),
        other => panic!("expected ReusedSelfSigned, got {other:?}"),
    }
    assert_eq!(std::fs::read(&cert_file).unwrap(), cert_before);
    assert_eq!(std::fs::read(&key_file).unwrap(), key_before);
    assert!(second.is_self_signed());
    assert_eq!(second.cert_file(), cert_file);
}

#[test]
fn generated_key_and_dir_are_private() {
    let dir = TempDir::new("modes");
    generated(&dir);
    assert_eq!(mode(&dir.path().join("tls").join("key.pem")), 0o600);
    assert_eq!(mode(&dir.path().join("tls")), 0o700);
}

#[test]
fn reuse_tightens_a_loosened_key() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("loosened");
    generated(&dir);
    let key_file = dir.path().join("tls").join("key.pem");
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::set_permissions(
        dir.path().join("tls"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    generated(&dir);
    assert_eq!(mode(&key_file), 0o600);
    assert_eq!(mode(&dir.path().join("tls")), 0o700);
}

#[test]
fn a_lone_leftover_file_is_regenerated() {
    let dir = TempDir::new("lone");
    generated(&dir);
    std::fs::remove_file(dir.path().join("tls").join("key.pem")).unwrap();
    let (_, source) = generated(&dir);
    assert!(matches!(
        source,
        CertificateSource::GeneratedSelfSigned { .. }
    ));
}

#[test]
fn configured_files_are_used() {
    let generated_dir = TempDir::new("configured-src");
    generated(&generated_dir);
    let files = TlsFiles {
        cert_file: Some(generated_dir.path().join("tls").join("cert.pem")),
        key_file: Some(generated_dir.path().join("tls").join("key.pem")),
    };
    let data_dir = TempDir::new("configured-data");
    let (config, source) = server_config(&files, data_dir.path()).unwrap();
    match source {
        CertificateSource::Configured { cert_file } => {
            assert_eq!(Some(cert_file), files.cert_file);
        }
        other => panic!("expected Configured, got {other:?}"),
    }
    assert!(!data_dir.path().join("tls").exists(), "nothing generated");
    assert_eq!(
        config.alpn_protocols,
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    );
}

#[test]
fn only_one_of_cert_and_key_is_an_error() {
    let dir = TempDir::new("half");
    let only_cert = TlsFiles {
        cert_file: Some(PathBuf::from("/etc/portcullis/only-cert.pem")),
        key_file: None,
    };
    let err = server_config(&only_cert, dir.path()).unwrap_err();
    assert!(matches!(err, TlsError::CertWithoutKey { .. }), "{err:?}");
    assert!(err.to_string().contains("only-cert.pem"), "{err}");

    let only_key = TlsFiles {
        cert_file: None,
        key_file: Some(PathBuf::from("/etc/portcullis/only-key.pem")),
    };
    let err = server_config(&only_key, dir.path()).unwrap_err();
    assert!(matches!(err, TlsError::KeyWithoutCert { .. }), "{err:?}");
    assert!(err.to_string().contains("only-key.pem"), "{err}");

    assert!(
        !dir.path().join("tls").exists(),
        "a half configuration must not fall back to a self-signed certificate"
    );
}

#[test]
fn garbage_pem_is_an_error_naming_the_file() {
    let good = TempDir::new("garbage-good");
    generated(&good);
    let good_cert = good.path().join("tls").join("cert.pem");
    let good_key = good.path().join("tls").join("key.pem");

    let dir = TempDir::new("garbage");
    let garbage = dir.path().join("garbage-file.pem");
    std::fs::write(&garbage, "this is not a certificate\n").unwrap();
    let broken = dir.path().join("broken-base64.pem");
    std::fs::write(
        &broken,
        "-----BEGIN CERTIFICATE-----\n!!!! not base64 !!!!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let missing = dir.path().join("does-not-exist.pem");

    for (cert, key, named) in [
        (&garbage, &good_key, &garbage),
        (&broken, &good_key, &broken),
        (&good_cert, &garbage, &garbage),
        // A certificate where the key should be: PEM, but no key in it.
        (&good_cert, &good_cert, &good_cert),
        (&missing, &good_key, &missing),
    ] {
        let files = TlsFiles {
            cert_file: Some(cert.clone()),
            key_file: Some(key.clone()),
        };
        let err = server_config(&files, dir.path()).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains(&named.display().to_string()),
            "error for cert={cert:?} key={key:?} should name {named:?}: {message}"
        );
    }
}

#[test]
fn mismatched_cert_and_key_is_an_error_naming_both() {
    let a = TempDir::new("mismatch-a");
    let b = TempDir::new("mismatch-b");
    generated(&a);
    generated(&b);
    let files = TlsFiles {
        cert_file: Some(a.path().join("tls").join("cert.pem")),
        key_file: Some(b.path().join("tls").join("key.pem")),
    };
    let err = server_config(&files, a.path()).unwrap_err();
    assert!(matches!(err, TlsError::Unusable { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains(&a.path().display().to_string()),
        "{message}"
    );
    assert!(
        message.contains(&b.path().display().to_string()),
        "{message}"
    );
}

// ---------------------------------------------------------------------------------------------
// The listener

fn test_app() -> Router {
    Router::new()
        .route("/", get(|| async { "hello over tls" }))
        .route(
            "/peer",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(1500)).await;
                "slow done"
            }),
        )
        .route(
            "/forever",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(120)).await;
                "never"
            }),
        )
}

struct Server {
    addr: SocketAddr,
    cert_file: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    handle: JoinHandle<std::io::Result<()>>,
    _dir: TempDir,
}

impl Server {
    async fn start_tls(drain: Duration) -> Self {
        let dir = TempDir::new("server");
        let (config, source) = generated(&dir);
        let cert_file = source.cert_file().to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
        };
        let handle = tokio::spawn(serve_tls(listener, config, test_app(), shutdown, drain));
        Self {
            addr,
            cert_file,
            stop: Some(stop),
            handle,
            _dir: dir,
        }
    }

    async fn start_plain(drain: Duration) -> Self {
        let dir = TempDir::new("plain");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
        };
        let handle = tokio::spawn(serve_plain(listener, test_app(), shutdown, drain));
        Self {
            addr,
            cert_file: PathBuf::new(),
            stop: Some(stop),
            handle,
            _dir: dir,
        }
    }

    fn trigger_shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    async fn stop_and_join(mut self, within: Duration) {
        self.trigger_shutdown();
        tokio::time::timeout(within, &mut self.handle)
            .await
            .expect("server stops in time")
            .expect("server task did not panic")
            .expect("server returns Ok");
    }
}

fn client_config(
    cert_file: &Path,
    versions: &[&'static SupportedProtocolVersion],
    alpn: &[&[u8]],
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(cert_file).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

async fn tls_connect(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    server_name: &str,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(server_name.to_owned()).unwrap();
    TlsConnector::from(config).connect(name, tcp).await
}

/// One HTTP/1.1 GET on an established stream.
async fn http1_get<S>(stream: S, path: &str) -> (hyper::StatusCode, String)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::get(path)
        .header(hyper::header::HOST, "localhost")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn tls13_and_tls12_handshakes_both_succeed() {
    let server = Server::start_tls(Duration::from_secs(5)).await;
    for (version, expected) in [
        (&rustls::version::TLS13, ProtocolVersion::TLSv1_3),
        (&rustls::version::TLS12, ProtocolVersion::TLSv1_2),
    ] {
        // Both the DNS name and the IP literal must be covered by the self-signed certificate.
        for server_name in ["localhost", "127.0.0.1"] {
            let config = client_config(&server.cert_file, &[version], &[b"http/1.1"]);
            let stream = tls_connect(server.addr, config, server_name).await.unwrap();
            let (_, conn) = stream.get_ref();
            assert_eq!(conn.protocol_version(), Some(expected));
            assert_eq!(conn.alpn_protocol(), Some(&b"http/1.1"[..]));
            let (status, body) = http1_get(stream, "/").await;
            assert_eq!(status, hyper::StatusCode::OK);
            assert_eq!(body, "hello over tls");
        }
    }
    server.stop_and_join(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn http2_is_negotiated_and_served() {
    let server = Server::start_tls(Duration::from_secs(5)).await;
    let config = client_config(
        &server.cert_file,
        &[&rustls::version::TLS13],
        &[b"h2", b"http/1.1"],
    );
    let stream = tls_connect(server.addr, config, "localhost").await.unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));

    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::get("https://localhost/")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.version(), hyper::Version::HTTP_2);
    assert_eq!(resp.status(), hyper::StatusCode::OK);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"hello over tls");
    server.stop_and_join(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn untrusting_client_fails_and_server_keeps_serving() {
    let server = Server::start_tls(Duration::from_secs(5)).await;
    let other = TempDir::new("other-ca");
    let (_, other_source) = generated(&other);
    let wrong = client_config(other_source.cert_file(), &[&rustls::version::TLS13], &[]);
    assert!(tls_connect(server.addr, wrong, "localhost").await.is_err());

    let right = client_config(&server.cert_file, &[&rustls::version::TLS13], &[]);
    let stream = tls_connect(server.addr, right, "localhost").await.unwrap();
    assert_eq!(http1_get(stream, "/").await.0, hyper::StatusCode::OK);
    server.stop_and_join(Duration::from_secs(5)).await;
}

/// Control E1 (issue 12, item 5): plain `http://` to the HTTPS port gets a short 400 in the
/// API's error shape saying to use https (never the application's answer), and the listener
/// keeps serving TLS.
#[tokio::test]
async fn e1_plain_http_to_the_tls_port_is_told_to_use_https() {
    let server = Server::start_tls(Duration::from_secs(5)).await;
    for (request, expected) in [
        (
            &b"GET / HTTP/1.1\r\nHost: localhost:8443\r\nConnection: close\r\n\r\n"[..],
            "use https://localhost:8443/ instead of http://",
        ),
        // A host that is not plainly a host name is not echoed.
        (
            &b"POST /v1/auth/login HTTP/1.1\r\nHost: <script>\r\nContent-Length: 0\r\n\r\n"[..],
            "use https:// instead of http://",
        ),
    ] {
        let mut tcp = TcpStream::connect(server.addr).await.unwrap();
        tcp.write_all(request).await.unwrap();
        let mut received = Vec::new();
        let read =
            tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut received)).await;
        assert!(read.is_ok(), "server should answer and close promptly");
        let text = String::from_utf8_lossy(&received);
        assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{text:?}");
        assert!(!text.contains("hello over tls"));
        let body = text.split_once("\r\n\r\n").unwrap().1;
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["error"]["code"], "https_required", "{body}");
        let message = json["error"]["message"].as_str().unwrap();
        assert!(message.contains(expected), "{message}");
        assert!(!message.contains("script"));
    }

    // The refused request must not have stopped the listener.
    let config = client_config(&server.cert_file, &[&rustls::version::TLS13], &[]);
    let stream = tls_connect(server.addr, config, "localhost").await.unwrap();
    assert_eq!(http1_get(stream, "/").await.0, hyper::StatusCode::OK);
    server.stop_and_join(Duration::from_secs(5)).await;
}

/// Runs `openssl s_client` with `args`; None when the CLI is not installed.
async fn s_client(addr: SocketAddr, args: &[&str]) -> Option<(bool, String)> {
    let mut command = tokio::process::Command::new("openssl");
    command
        .arg("s_client")
        .arg("-connect")
        .arg(addr.to_string())
        .args(["-servername", "localhost"])
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let output = match tokio::time::timeout(Duration::from_secs(20), command.output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Ok(Err(e)) => panic!("cannot run openssl: {e}"),
        Err(_) => panic!("openssl s_client {args:?} hung"),
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Some((output.status.success(), text))
}

#[tokio::test]
async fn openssl_tls11_is_refused() {
    let server = Server::start_tls(Duration::from_secs(5)).await;
    // Positive control first, so a failure below means "TLS 1.1 refused", not "openssl broken".
    let Some((ok, out)) = s_client(server.addr, &["-tls1_2"]).await else {
        println!("SKIPPED openssl_tls11_is_refused: the openssl CLI is not installed");
        server.stop_and_join(Duration::from_secs(5)).await;
        return;
    };
    assert!(ok, "openssl -tls1_2 should connect:\n{out}");
    assert!(out.contains("TLSv1.2"), "{out}");

    // SECLEVEL=0 keeps OpenSSL 3 from refusing TLS 1.1 on its own side before asking the server.
    let (ok, out) = s_client(server.addr, &["-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"])
        .await
        .unwrap();
    assert!(!ok, "TLS 1.1 handshake must fail:\n{out}");
    // The refusal must come from the server (a TLS alert), not from the local openssl build.
    assert!(
        out.contains("alert"),
        "expected a TLS alert from the server:\n{out}"
    );
    assert!(out.contains("Cipher is (NONE)"), "{out}");
    server.stop_and_join(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn connect_info_is_visible_to_handlers() {
    let server = Server::start_tls(Duration::from_secs(5)).await;
    let config = client_config(&server.cert_file, &[&rustls::version::TLS13], &[]);
    let stream = tls_connect(server.addr, config, "localhost").await.unwrap();
    let local = stream.get_ref().0.local_addr().unwrap();
    let (status, body) = http1_get(stream, "/peer").await;
    assert_eq!(status, hyper::StatusCode::OK);
    assert_eq!(body, local.to_string());
    server.stop_and_join(Duration::from_secs(5)).await;
}

/// Polls until a TCP connect to `addr` fails; false if it kept succeeding for `within`.
async fn refuses_connections(addr: SocketAddr, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if TcpStream::connect(addr).await.is_err() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_and_refuses_new() {
    let mut server = Server::start_tls(Duration::from_secs(10)).await;
    let config = client_config(&server.cert_file, &[&rustls::version::TLS13], &[]);
    let stream = tls_connect(server.addr, config, "localhost").await.unwrap();
    let in_flight = tokio::spawn(http1_get(stream, "/slow"));
    // Let the request reach the handler before shutting down.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!in_flight.is_finished());

    let triggered = Instant::now();
    server.trigger_shutdown();
    assert!(
        refuses_connections(server.addr, Duration::from_secs(1)).await,
        "new connections must be refused after shutdown"
    );
    assert!(
        !in_flight.is_finished(),
        "the slow request was still running when new connections were refused"
    );

    let (status, body) = in_flight.await.unwrap();
    assert_eq!(status, hyper::StatusCode::OK);
    assert_eq!(body, "slow done");
    server.stop_and_join(Duration::from_secs(5)).await;
    assert!(triggered.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn drain_timeout_drops_stuck_connections() {
    let mut server = Server::start_tls(Duration::from_millis(300)).await;
    let config = client_config(&server.cert_file, &[&rustls::version::TLS13], &[]);
    let stream = tls_connect(server.addr, config, "localhost").await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::get("/forever")
        .header(hyper::header::HOST, "localhost")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let stuck = tokio::spawn(async move { sender.send_request(req).await });
    tokio::time::sleep(Duration::from_millis(200)).await;

    let started = Instant::now();
    server.trigger_shutdown();
    (&mut server.handle)
        .await
        .expect("server task did not panic")
        .expect("server returns Ok");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "server took {:?} despite a 300ms drain",
        started.elapsed()
    );
    let outcome = tokio::time::timeout(Duration::from_secs(5), stuck)
        .await
        .expect("the stuck request is cut off")
        .unwrap();
    assert!(outcome.is_err(), "the stuck request cannot have completed");
}

#[tokio::test]
async fn stalled_handshake_is_dropped_after_timeout() {
    let server = Server::start_tls(Duration::from_secs(5)).await;
    let started = Instant::now();
    // A slowloris client: connects and never says anything.
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(
        TLS_HANDSHAKE_TIMEOUT + Duration::from_secs(5),
        tcp.read(&mut buf),
    )
    .await
    .expect("server must give up on a silent client");
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "expected the connection to be closed, got {read:?}"
    );
    let elapsed = started.elapsed();
    assert!(
        elapsed >= TLS_HANDSHAKE_TIMEOUT - Duration::from_millis(500),
        "closed after {elapsed:?}, before the handshake timeout"
    );
    server.stop_and_join(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn plain_listener_serves_and_shuts_down() {
    let mut server = Server::start_plain(Duration::from_secs(5)).await;
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let local = tcp.local_addr().unwrap();
    let (status, body) = http1_get(tcp, "/peer").await;
    assert_eq!(status, hyper::StatusCode::OK);
    assert_eq!(body, local.to_string());

    server.trigger_shutdown();
    assert!(refuses_connections(server.addr, Duration::from_secs(1)).await);
    server.stop_and_join(Duration::from_secs(5)).await;
}
