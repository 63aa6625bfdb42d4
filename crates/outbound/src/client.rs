//! The wire: one HTTP/1.1 connection per [`Client::send`], or one kept across the requests of a
//! [`Session`]; TLS through rustls with a named crypto provider and root set.
//!
//! No pool: calls are rare (a data key is unwrapped once and cached by its caller, a checkpoint
//! is anchored once a minute), and without a pool there is no half-closed pooled connection to
//! retry around behind the caller's back.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::{Endpoint, Error, Request, Response};

/// How long and how much, per client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// For the TCP connection, and again for the TLS handshake.
    pub connect_timeout: Duration,
    /// For the whole exchange, connecting included.
    pub request_timeout: Duration,
    /// A longer answer is a transport error, not a truncated body.
    pub max_response_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            max_response_bytes: 1024 * 1024,
        }
    }
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Sends one request and returns the answer, whatever its status. Implementations must not
/// retry nor interpret the body. [`Client`] is the real one; tests answer as the remote service
/// does where its emulator does not.
pub trait Transport: Send + Sync {
    fn send<'a>(&'a self, request: &'a Request) -> BoxFuture<'a, Result<Response, Error>>;
}

/// The outbound HTTPS client. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    tls: tokio_rustls::TlsConnector,
    limits: Limits,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Trusts the Mozilla root set (`webpki-roots`), as public cloud endpoints require.
    pub fn new(limits: Limits) -> Result<Client, Error> {
        Client::with_root_certificates(crate::mozilla_roots(), limits)
    }

    /// Trusts only `roots`: for an endpoint behind a private CA, and for tests.
    pub fn with_root_certificates(
        roots: rustls::RootCertStore,
        limits: Limits,
    ) -> Result<Client, Error> {
        // The crypto provider is named rather than taken from the process default so that
        // another crate installing a different default cannot change this client's TLS.
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Client {
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
            limits,
        })
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// One request over a connection of its own, closed afterwards.
    pub async fn send(&self, request: &Request) -> Result<Response, Error> {
        let endpoint = &request.endpoint;
        tokio::time::timeout(self.limits.request_timeout, async {
            let mut connection = self.connect(endpoint).await?;
            connection.send(self.wire(request)?, self.limits).await
        })
        .await
        .map_err(|_| Error::transport(endpoint, "request timed out"))?
    }

    /// Requests over one connection while the server keeps it open.
    pub fn session(&self) -> Session<'_> {
        Session {
            client: self,
            connection: None,
        }
    }

    fn wire(&self, request: &Request) -> Result<hyper::Request<Full<Bytes>>, Error> {
        let mut builder = hyper::Request::builder()
            .method(request.method.clone())
            .uri(request.target.as_str());
        if request.header("host").is_none() {
            builder = builder.header("host", request.endpoint.authority());
        }
        for (name, value) in &request.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        // hyper's buffers are not zeroed; the copy here is the price of using it. Our own
        // copies (the request's body, the response's) are.
        builder
            .body(Full::new(Bytes::copy_from_slice(&request.body)))
            // The builder's message names the offending part, never a header value.
            .map_err(|e| Error::Request(e.to_string()))
    }

    async fn connect(&self, endpoint: &Endpoint) -> Result<Connection, Error> {
        let fail = |message: String| Error::transport(endpoint, message);
        let timeout = self.limits.connect_timeout;
        let tcp = tokio::time::timeout(
            timeout,
            TcpStream::connect((endpoint.host(), endpoint.port())),
        )
        .await
        .map_err(|_| fail("connecting timed out".to_owned()))?
        .map_err(|e| fail(format!("connecting: {e}")))?;
        // Small requests, small answers: Nagle would only add latency.
        let _ = tcp.set_nodelay(true);
        let connection = if endpoint.is_tls() {
            let name = rustls::pki_types::ServerName::try_from(endpoint.host().to_owned())
                .map_err(|e| fail(format!("TLS server name: {e}")))?;
            let tls = tokio::time::timeout(timeout, self.tls.connect(name, tcp))
                .await
                .map_err(|_| fail("TLS handshake timed out".to_owned()))?
                .map_err(|e| fail(format!("TLS: {e}")))?;
            Connection::handshake(endpoint, TokioIo::new(tls)).await
        } else {
            Connection::handshake(endpoint, TokioIo::new(tcp)).await
        };
        connection.map_err(fail)
    }
}

impl Transport for Client {
    fn send<'a>(&'a self, request: &'a Request) -> BoxFuture<'a, Result<Response, Error>> {
        Box::pin(Client::send(self, request))
    }
}

/// One HTTP/1.1 connection. Its driver task is aborted when it is dropped.
struct Connection {
    endpoint: Endpoint,
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    driver: tokio::task::JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl Connection {
    async fn handshake<I>(endpoint: &Endpoint, io: I) -> Result<Connection, String>
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let (sender, connection) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| format!("HTTP handshake: {e}"))?;
        // The connection future does the actual I/O; errors surface through `send_request`.
        let driver = tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Connection {
            endpoint: endpoint.clone(),
            sender,
            driver,
        })
    }

    async fn send(
        &mut self,
        request: hyper::Request<Full<Bytes>>,
        limits: Limits,
    ) -> Result<Response, Error> {
        let (status, headers, body) = self.send_head(request).await?;
        let body = Limited::new(body, limits.max_response_bytes)
            .collect()
            .await
            .map_err(|e| Error::transport(&self.endpoint, format!("reading the response: {e}")))?
            .to_bytes();
        let mut response = Response::new(status, body.to_vec());
        response.headers = headers;
        Ok(response)
    }

    /// Sends `request` and waits for the answer's head; the body is left to the caller.
    async fn send_head(
        &mut self,
        request: hyper::Request<Full<Bytes>>,
    ) -> Result<(u16, Vec<(String, String)>, hyper::body::Incoming), Error> {
        let fail = |message: String| Error::transport(&self.endpoint, message);
        self.sender
            .ready()
            .await
            .map_err(|e| fail(format!("connection closed: {e}")))?;
        let response = self
            .sender
            .send_request(request)
            .await
            .map_err(|e| fail(format!("HTTP request: {e}")))?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect();
        Ok((status, headers, response.into_body()))
    }
}

/// How a streamed answer's body is read ([`Client::open`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamLimits {
    /// The longest wait for the next piece of the body.
    pub idle_timeout: Duration,
    /// The whole body's cap; more is a transport error.
    pub max_bytes: usize,
}

/// An answer whose body is read as it arrives (server-sent events, long downloads). Holds
/// its connection: dropping it closes the connection, which is how a caller abandons the rest.
pub struct StreamingResponse {
    pub status: u16,
    /// Lower-cased names; values that are not visible ASCII are left out.
    pub headers: Vec<(String, String)>,
    body: hyper::body::Incoming,
    limits: StreamLimits,
    read: usize,
    connection: Connection,
}

impl fmt::Debug for StreamingResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamingResponse")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .field("read", &self.read)
            .finish_non_exhaustive()
    }
}

impl StreamingResponse {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The first header of that name, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The next piece of the body as it arrived; `None` at its end. Waiting longer than the
    /// idle timeout, or going over the cap, is a transport error.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, Error> {
        let endpoint = &self.connection.endpoint;
        loop {
            let frame = tokio::time::timeout(self.limits.idle_timeout, self.body.frame())
                .await
                .map_err(|_| Error::transport(endpoint, "the response stalled"))?;
            let Some(frame) = frame else {
                return Ok(None);
            };
            let frame = frame
                .map_err(|e| Error::transport(endpoint, format!("reading the response: {e}")))?;
            // Trailers carry nothing a caller reads.
            let Ok(data) = frame.into_data() else {
                continue;
            };
            self.read += data.len();
            if self.read > self.limits.max_bytes {
                return Err(Error::transport(
                    endpoint,
                    "the response is over the size cap",
                ));
            }
            return Ok(Some(data));
        }
    }

    /// The rest of the body, in memory (an error answer, usually).
    pub async fn collect(mut self) -> Result<Response, Error> {
        let mut body = Vec::new();
        while let Some(chunk) = self.chunk().await? {
            body.extend_from_slice(&chunk);
        }
        let mut response = Response::new(self.status, body);
        response.headers = std::mem::take(&mut self.headers);
        Ok(response)
    }
}

impl Client {
    /// One request over a connection of its own, answered as soon as the head arrives (within
    /// the request timeout); the body is then read piece by piece under `stream`'s limits.
    pub async fn open(
        &self,
        request: &Request,
        stream: StreamLimits,
    ) -> Result<StreamingResponse, Error> {
        let endpoint = &request.endpoint;
        tokio::time::timeout(self.limits.request_timeout, async {
            let mut connection = self.connect(endpoint).await?;
            let (status, headers, body) = connection.send_head(self.wire(request)?).await?;
            Ok(StreamingResponse {
                status,
                headers,
                body,
                limits: stream,
                read: 0,
                connection,
            })
        })
        .await
        .map_err(|_| Error::transport(endpoint, "request timed out"))?
    }
}

/// The requests of one operation (a listing and the objects it names), over one connection
/// while the server keeps it open.
pub struct Session<'c> {
    client: &'c Client,
    connection: Option<Connection>,
}

impl fmt::Debug for Session<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("connected", &self.connection.is_some())
            .finish_non_exhaustive()
    }
}

impl Session<'_> {
    /// Sends `request`, on the open connection if there is one to its endpoint. Only for
    /// requests that are safe to repeat: a reused connection that turns out closed is replaced
    /// once, and the request sent again. A fresh connection's failure is the answer.
    pub async fn send(&mut self, request: &Request) -> Result<Response, Error> {
        let client = self.client;
        let limits = client.limits;
        let endpoint = &request.endpoint;
        let timed_out = || Error::transport(endpoint, "request timed out");
        if let Some(connection) = self.connection.as_mut().filter(|c| c.endpoint == *endpoint) {
            let wire = client.wire(request)?;
            match tokio::time::timeout(limits.request_timeout, connection.send(wire, limits)).await
            {
                Ok(Ok(response)) => return Ok(response),
                Ok(Err(_)) => self.connection = None,
                Err(_) => {
                    self.connection = None;
                    return Err(timed_out());
                }
            }
        }
        let wire = client.wire(request)?;
        let attempt = async {
            let mut connection = client.connect(endpoint).await?;
            let response = connection.send(wire, limits).await?;
            Ok::<_, Error>((connection, response))
        };
        let (connection, response) = tokio::time::timeout(limits.request_timeout, attempt)
            .await
            .map_err(|_| timed_out())??;
        let keep_alive = !response
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        self.connection = keep_alive.then_some(connection);
        Ok(response)
    }
}
