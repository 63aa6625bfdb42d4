//! AWS KMS key provider (E2, E4): data keys are wrapped with KMS `Encrypt` and unwrapped with
//! `Decrypt` under a symmetric KMS key, through the KMS JSON API signed with SigV4 (no AWS SDK).
//!
//! Protects against: a wrapped key being replayed for another environment, purpose or version
//! (each call carries the `WrapContext` as the KMS encryption context, which KMS authenticates),
//! unwrapping under a key other than the one recorded (the `KeyId` is always sent with
//! `Decrypt`), and a revoked KEK silently degrading into a generic failure: a disabled, pending
//! deletion, missing or access-denied key is always `KeyError::Unavailable`, so callers report
//! `key_unavailable` and recover once the key is restored.
//!
//! Must never: put a data key, a secret access key or a session token in an error, a log line
//! or `Debug` output; send them over plain HTTP to another machine (`portcullis_outbound`'s
//! endpoint rule); or retry anything but transient failures (throttling, 5xx, network), and
//! those once.
//!
//! The wire is behind `portcullis_outbound::Transport`, which is what lets tests answer exactly
//! as AWS does (a disabled key, a key pending deletion) where a local KMS emulator would not.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use portcullis_crypto::envelope::DataKey;
use portcullis_outbound::{
    AwsCredentials, Client, Endpoint, Error as OutboundError, Limits, Method, Request, Response,
    Transport,
};
use rand::Rng;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::{KeyError, WrapContext};

/// Encryption-context keys. Part of the stored format: a key wrapped under these names can only
/// be unwrapped by sending the same names, so they never change.
pub const CONTEXT_ENVIRONMENT: &str = "portcullis:environment";
pub const CONTEXT_PURPOSE: &str = "portcullis:purpose";
pub const CONTEXT_VERSION: &str = "portcullis:version";

const CONTENT_TYPE: &str = "application/x-amz-json-1.1";
const SERVICE: &str = "kms";
/// The client's limits for KMS: answers for one 32-byte key are a few hundred bytes, anything
/// near the cap is not KMS.
pub const LIMITS: Limits = Limits {
    connect_timeout: Duration::from_secs(5),
    request_timeout: Duration::from_secs(15),
    max_response_bytes: 256 * 1024,
};
/// Error messages from KMS go into `KeyError`s and logs, bounded (`sanitize_remote_message`).
use portcullis_outbound::sanitize_remote_message as sanitize;

/// How to reach KMS and as whom. `Debug` is redacted by `AwsCredentials`.
#[derive(Clone, Debug)]
pub struct KmsConfig {
    /// e.g. `eu-west-1`; part of every signature's credential scope.
    pub region: String,
    /// Default `https://kms.<region>.amazonaws.com`. `http://` only for a loopback host, such
    /// as a local KMS-compatible test server (`http://127.0.0.1:5000`).
    pub endpoint: Option<String>,
    pub credentials: AwsCredentials,
}

/// A KMS key's `KeyState`, from `DescribeKey`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyState {
    Enabled,
    Disabled,
    PendingDeletion,
    PendingImport,
    PendingReplicaDeletion,
    Unavailable,
    Creating,
    Updating,
    /// A state this client does not know yet, verbatim.
    Other(String),
}

impl KeyState {
    fn parse(state: &str) -> KeyState {
        match state {
            "Enabled" => KeyState::Enabled,
            "Disabled" => KeyState::Disabled,
            "PendingDeletion" => KeyState::PendingDeletion,
            "PendingImport" => KeyState::PendingImport,
            "PendingReplicaDeletion" => KeyState::PendingReplicaDeletion,
            "Unavailable" => KeyState::Unavailable,
            "Creating" => KeyState::Creating,
            "Updating" => KeyState::Updating,
            other => KeyState::Other(other.to_owned()),
        }
    }
}

/// The AWS KMS provider. Cheap to clone; clones share the transport.
#[derive(Clone)]
pub struct KmsProvider {
    inner: Arc<Inner>,
}

struct Inner {
    region: String,
    endpoint: Endpoint,
    credentials: AwsCredentials,
    transport: Arc<dyn Transport>,
}

impl fmt::Debug for KmsProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KmsProvider")
            .field("region", &self.inner.region)
            .field("endpoint", &self.inner.endpoint.to_string())
            .field("access_key_id", &self.inner.credentials.access_key_id)
            .finish_non_exhaustive()
    }
}

/// The KMS operation of a request, from `X-Amz-Target` (`TrentService.Decrypt` gives
/// `Decrypt`): for transports that answer per operation.
pub fn operation(request: &Request) -> Option<&str> {
    request
        .header("x-amz-target")
        .map(|t| t.strip_prefix("TrentService.").unwrap_or(t))
}

#[derive(Serialize)]
struct EncryptionContext<'a> {
    #[serde(rename = "portcullis:environment")]
    environment: &'a str,
    #[serde(rename = "portcullis:purpose")]
    purpose: &'a str,
    #[serde(rename = "portcullis:version")]
    version: String,
}

impl<'a> EncryptionContext<'a> {
    fn of(ctx: &WrapContext<'a>) -> EncryptionContext<'a> {
        EncryptionContext {
            environment: ctx.environment_id,
            purpose: ctx.purpose,
            version: ctx.version.to_string(),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct EncryptRequest<'a> {
    key_id: &'a str,
    plaintext: &'a str,
    encryption_context: EncryptionContext<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct DecryptRequest<'a> {
    ciphertext_blob: &'a str,
    key_id: &'a str,
    encryption_context: EncryptionContext<'a>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EncryptResponse {
    ciphertext_blob: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DecryptResponse {
    plaintext: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct KeyMetadataResponse {
    key_metadata: KeyMetadata,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct KeyMetadata {
    key_id: String,
    #[serde(default)]
    key_state: Option<String>,
}

/// The JSON protocol's error body: `{"__type": "...", "message": "..."}` (some services and
/// emulators spell it `Message`).
#[derive(Deserialize)]
struct ErrorBody {
    #[serde(rename = "__type")]
    kind: Option<String>,
    #[serde(alias = "Message")]
    message: Option<String>,
}

/// What one failed attempt means.
enum Failure {
    /// Worth one more try: throttling, 5xx, or no HTTP answer at all.
    Transient(KeyError),
    Final(KeyError),
}

impl KmsProvider {
    /// A provider that talks to KMS over HTTPS (or loopback HTTP).
    pub fn new(config: KmsConfig) -> Result<KmsProvider, KeyError> {
        let client = Client::new(LIMITS).map_err(|e| match e {
            OutboundError::Tls(m) => KeyError::Config(format!("TLS for KMS: {m}")),
            other => KeyError::Config(format!("KMS client: {other}")),
        })?;
        KmsProvider::with_transport(config, Arc::new(client))
    }

    /// A provider whose requests go through `transport`: for tests that must answer as AWS
    /// does where an emulator does not (revoked keys), and for wrapping the real transport.
    pub fn with_transport(
        config: KmsConfig,
        transport: Arc<dyn Transport>,
    ) -> Result<KmsProvider, KeyError> {
        let region = config.region.trim();
        // The region becomes part of a hostname and of every signature scope.
        if region.is_empty()
            || !region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(KeyError::Config(format!(
                "KMS region `{region}` is not a region name"
            )));
        }
        let parse =
            |url: &str| Endpoint::parse(url).map_err(|e| KeyError::Config(format!("KMS {e}")));
        let endpoint = match config.endpoint.as_deref().map(str::trim) {
            Some(url) if !url.is_empty() => parse(url)?,
            _ => parse(&format!("https://kms.{region}.amazonaws.com"))?,
        };
        let AwsCredentials {
            access_key_id,
            secret_access_key,
            session_token,
        } = config.credentials;
        let access_key_id = access_key_id.trim();
        if access_key_id.is_empty() || !access_key_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(KeyError::Config(
                "KMS access key id is empty or malformed".to_owned(),
            ));
        }
        let secret = secret_access_key.expose();
        // A stray space or newline from a secrets file would otherwise surface much later as
        // a signature mismatch on every call.
        if secret.is_empty() || secret.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(KeyError::Config(
                "KMS secret access key is empty or contains whitespace".to_owned(),
            ));
        }
        if let Some(token) = &session_token {
            if token.expose().is_empty()
                || token.expose().bytes().any(|b| !(0x21..0x7f).contains(&b))
            {
                return Err(KeyError::Config(
                    "KMS session token is empty or malformed".to_owned(),
                ));
            }
        }
        Ok(KmsProvider {
            inner: Arc::new(Inner {
                region: region.to_owned(),
                endpoint,
                credentials: AwsCredentials {
                    access_key_id: access_key_id.to_owned(),
                    secret_access_key,
                    session_token,
                },
                transport,
            }),
        })
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.inner.endpoint
    }

    /// KMS `Encrypt` of the data key under `kek`, bound to `ctx` as encryption context. Returns
    /// the `CiphertextBlob`.
    pub async fn wrap(
        &self,
        kek: &str,
        key: &DataKey,
        ctx: &WrapContext<'_>,
    ) -> Result<Vec<u8>, KeyError> {
        let plaintext = Zeroizing::new(BASE64.encode(key.expose()));
        let body = to_json(&EncryptRequest {
            key_id: kek,
            plaintext: &plaintext,
            encryption_context: EncryptionContext::of(ctx),
        })?;
        let response = self.call("Encrypt", kek, body).await?;
        let parsed: EncryptResponse = from_json("Encrypt", &response)?;
        let blob = BASE64
            .decode(parsed.ciphertext_blob.as_bytes())
            .map_err(|_| {
                KeyError::Provider(
                    "KMS Encrypt returned a CiphertextBlob that is not base64".to_owned(),
                )
            })?;
        if blob.is_empty() {
            return Err(KeyError::Provider(
                "KMS Encrypt returned an empty CiphertextBlob".to_owned(),
            ));
        }
        Ok(blob)
    }

    /// KMS `Decrypt` of `wrapped` under `kek` and `ctx`. A blob from another key or context,
    /// or an altered one, is `Invalid`; a revoked key is `Unavailable`.
    pub async fn unwrap(
        &self,
        kek: &str,
        wrapped: &[u8],
        ctx: &WrapContext<'_>,
    ) -> Result<DataKey, KeyError> {
        if wrapped.is_empty() {
            return Err(KeyError::Invalid);
        }
        let blob = BASE64.encode(wrapped);
        let body = to_json(&DecryptRequest {
            ciphertext_blob: &blob,
            key_id: kek,
            encryption_context: EncryptionContext::of(ctx),
        })?;
        let response = self.call("Decrypt", kek, body).await?;
        let parsed: DecryptResponse = from_json("Decrypt", &response)?;
        let encoded = Zeroizing::new(parsed.plaintext);
        let plaintext = Zeroizing::new(BASE64.decode(encoded.as_bytes()).map_err(|_| {
            KeyError::Provider("KMS Decrypt returned a Plaintext that is not base64".to_owned())
        })?);
        // Anything but 32 bytes was not wrapped by us: the blob belongs to something else.
        DataKey::from_bytes(&plaintext).ok_or(KeyError::Invalid)
    }

    /// Creates a symmetric encrypt/decrypt key; returns its `KeyId`. For operators and tests.
    pub async fn create_key(&self, description: &str) -> Result<String, KeyError> {
        let body = to_json(&serde_json::json!({
            "Description": description,
            "KeyUsage": "ENCRYPT_DECRYPT",
            "KeySpec": "SYMMETRIC_DEFAULT",
        }))?;
        let response = self.call("CreateKey", "(new key)", body).await?;
        let parsed: KeyMetadataResponse = from_json("CreateKey", &response)?;
        Ok(parsed.key_metadata.key_id)
    }

    pub async fn describe_key(&self, kek: &str) -> Result<KeyState, KeyError> {
        let body = to_json(&serde_json::json!({ "KeyId": kek }))?;
        let response = self.call("DescribeKey", kek, body).await?;
        let parsed: KeyMetadataResponse = from_json("DescribeKey", &response)?;
        let state = parsed
            .key_metadata
            .key_state
            .ok_or_else(|| KeyError::Provider("KMS DescribeKey returned no KeyState".to_owned()))?;
        Ok(KeyState::parse(&state))
    }

    pub async fn disable_key(&self, kek: &str) -> Result<(), KeyError> {
        let body = to_json(&serde_json::json!({ "KeyId": kek }))?;
        self.call("DisableKey", kek, body).await.map(drop)
    }

    pub async fn enable_key(&self, kek: &str) -> Result<(), KeyError> {
        let body = to_json(&serde_json::json!({ "KeyId": kek }))?;
        self.call("EnableKey", kek, body).await.map(drop)
    }

    /// `pending_window_days` must be 7..=30 (KMS's rule).
    pub async fn schedule_key_deletion(
        &self,
        kek: &str,
        pending_window_days: u32,
    ) -> Result<(), KeyError> {
        let body = to_json(
            &serde_json::json!({ "KeyId": kek, "PendingWindowInDays": pending_window_days }),
        )?;
        self.call("ScheduleKeyDeletion", kek, body).await.map(drop)
    }

    /// Leaves the key `Disabled`, as KMS does; `enable_key` brings it back into use.
    pub async fn cancel_key_deletion(&self, kek: &str) -> Result<(), KeyError> {
        let body = to_json(&serde_json::json!({ "KeyId": kek }))?;
        self.call("CancelKeyDeletion", kek, body).await.map(drop)
    }

    /// One KMS operation with at most one retry of a transient failure. Returns the body of a
    /// 2xx answer.
    async fn call(
        &self,
        operation: &str,
        kek: &str,
        body: Zeroizing<Vec<u8>>,
    ) -> Result<Response, KeyError> {
        match self.attempt(operation, kek, &body).await {
            Ok(response) => return Ok(response),
            Err(Failure::Final(e)) => return Err(e),
            Err(Failure::Transient(e)) => {
                // Jitter keeps a fleet of instances that were throttled together from
                // retrying together.
                let delay = Duration::from_millis(100 + rand::thread_rng().gen_range(0..150));
                let retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
                tracing::warn!(
                    operation,
                    kek,
                    error = %e,
                    retry_in_ms,
                    "KMS call failed; retrying once"
                );
                tokio::time::sleep(delay).await;
            }
        }
        match self.attempt(operation, kek, &body).await {
            Ok(response) => Ok(response),
            Err(Failure::Final(e) | Failure::Transient(e)) => Err(e),
        }
    }

    async fn attempt(
        &self,
        operation: &str,
        kek: &str,
        body: &Zeroizing<Vec<u8>>,
    ) -> Result<Response, Failure> {
        // Signed per attempt: the date is part of the signature.
        let request = self
            .signed_request(operation, body)
            .map_err(Failure::Final)?;
        let response = match self.inner.transport.send(&request).await {
            Ok(response) => response,
            Err(e) => {
                return Err(Failure::Transient(KeyError::Provider(format!(
                    "KMS {operation}: {e}"
                ))));
            }
        };
        if response.is_success() {
            tracing::debug!(
                operation,
                kek,
                status = response.status,
                "KMS call succeeded"
            );
            return Ok(response);
        }
        let failure = classify(operation, kek, response.status, &response.body);
        tracing::debug!(operation, kek, status = response.status, "KMS call failed");
        Err(failure)
    }

    fn signed_request(
        &self,
        operation: &str,
        body: &Zeroizing<Vec<u8>>,
    ) -> Result<Request, KeyError> {
        let inner = &self.inner;
        let mut request = Request::new(Method::POST, inner.endpoint.clone(), "/")
            .with_header("Content-Type", CONTENT_TYPE)
            .with_header("X-Amz-Target", format!("TrentService.{operation}"));
        request.body = body.clone();
        // No x-amz-content-sha256: that header is S3's. The body hash is part of the canonical
        // request anyway, so the body is signed without it.
        inner
            .credentials
            .sign(
                &mut request,
                &inner.region,
                SERVICE,
                time::OffsetDateTime::now_utc(),
            )
            .map_err(|e| KeyError::Provider(e.to_string()))?;
        Ok(request)
    }
}

fn to_json<T: Serialize>(value: &T) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    serde_json::to_vec(value)
        .map(Zeroizing::new)
        .map_err(|e| KeyError::Provider(format!("encoding a KMS request: {e}")))
}

fn from_json<T: for<'de> Deserialize<'de>>(
    operation: &str,
    response: &Response,
) -> Result<T, KeyError> {
    // serde_json's error names a line and column, never the content.
    response.json().map_err(|e| {
        KeyError::Provider(format!(
            "KMS {operation} returned an unexpected answer: {e}"
        ))
    })
}

/// `<Code>X</Code>` from an XML error body, if it is a plain identifier.
fn xml_code(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let start = text.find("<Code>")? + "<Code>".len();
    let len = text[start..].find("</Code>")?;
    let code = &text[start..start + len];
    (!code.is_empty()
        && code.len() <= 64
        && code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.'))
    .then(|| code.to_owned())
}

/// Maps a non-2xx KMS answer to a `KeyError`.
fn classify(operation: &str, kek: &str, status: u16, body: &[u8]) -> Failure {
    let parsed: Option<ErrorBody> = serde_json::from_slice(body).ok();
    let (kind, message) = match parsed {
        Some(ErrorBody { kind, message }) => (
            // The JSON protocol allows a namespace before `#` and some servers append `:...`.
            kind.map(|k| {
                let k = k.rsplit('#').next().unwrap_or(&k).to_owned();
                k.split(':').next().unwrap_or(&k).to_owned()
            })
            .unwrap_or_default(),
            message.map(|m| sanitize(&m)).unwrap_or_default(),
        ),
        // Not JSON: the query-protocol XML some emulators (and AWS's front door) answer with.
        None => (xml_code(body).unwrap_or_default(), String::new()),
    };
    let detail = match (kind.is_empty(), message.is_empty()) {
        (true, _) => format!("HTTP {status}"),
        (false, true) => format!("HTTP {status} {kind}"),
        (false, false) => format!("HTTP {status} {kind}: {message}"),
    };
    match kind.as_str() {
        "DisabledException"
        | "KMSInvalidStateException"
        | "NotFoundException"
        | "AccessDeniedException"
        | "KeyUnavailableException" => Failure::Final(KeyError::Unavailable {
            kek: format!("aws_kms:{kek}"),
            reason: if message.is_empty() { kind } else { message },
        }),
        "InvalidCiphertextException" | "IncorrectKeyException" => Failure::Final(KeyError::Invalid),
        "ThrottlingException" | "KMSInternalException" | "DependencyTimeoutException" => {
            Failure::Transient(KeyError::Provider(format!("KMS {operation}: {detail}")))
        }
        _ if status >= 500 || status == 429 => {
            Failure::Transient(KeyError::Provider(format!("KMS {operation}: {detail}")))
        }
        // Bad signature, unknown access key, expired token, malformed request, wrong key
        // usage: retrying cannot help and the key itself is not the problem.
        _ => Failure::Final(KeyError::Provider(format!("KMS {operation}: {detail}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn final_error(f: Failure) -> Option<KeyError> {
        match f {
            Failure::Final(e) => Some(e),
            Failure::Transient(_) => None,
        }
    }

    #[test]
    fn error_types_map_to_key_errors() {
        let disabled = br#"{"__type":"DisabledException","message":"arn:aws:kms:us-east-1:111122223333:key/k is disabled."}"#;
        match final_error(classify("Decrypt", "k", 400, disabled)) {
            Some(KeyError::Unavailable { kek, reason }) => {
                assert_eq!(kek, "aws_kms:k");
                assert_eq!(
                    reason,
                    "arn:aws:kms:us-east-1:111122223333:key/k is disabled."
                );
            }
            other => panic!("DisabledException must be Unavailable, got {other:?}"),
        }
        let namespaced = br#"{"__type":"com.amazonaws.kms#KMSInvalidStateException","Message":"pending deletion"}"#;
        assert!(matches!(
            final_error(classify("Decrypt", "k", 400, namespaced)),
            Some(KeyError::Unavailable { .. })
        ));
        let bare = br#"{"__type":"AccessDeniedException"}"#;
        match final_error(classify("Decrypt", "k", 400, bare)) {
            Some(KeyError::Unavailable { reason, .. }) => {
                assert_eq!(reason, "AccessDeniedException")
            }
            other => panic!("AccessDeniedException must be Unavailable, got {other:?}"),
        }
        for invalid in ["InvalidCiphertextException", "IncorrectKeyException"] {
            let body = format!(r#"{{"__type":"{invalid}"}}"#);
            assert!(matches!(
                final_error(classify("Decrypt", "k", 400, body.as_bytes())),
                Some(KeyError::Invalid)
            ));
        }
        assert!(matches!(
            classify(
                "Decrypt",
                "k",
                400,
                br#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#
            ),
            Failure::Transient(KeyError::Provider(_))
        ));
        assert!(matches!(
            classify("Decrypt", "k", 503, b"<html>busy</html>"),
            Failure::Transient(_)
        ));
        assert!(matches!(
            final_error(classify(
                "Decrypt",
                "k",
                403,
                b"<ErrorResponse>SignatureDoesNotMatch</ErrorResponse>"
            )),
            Some(KeyError::Provider(_))
        ));
        let xml = b"<ErrorResponse><Error><Code>SignatureDoesNotMatch</Code><Message>m</Message></Error></ErrorResponse>";
        match final_error(classify("Decrypt", "k", 403, xml)) {
            Some(KeyError::Provider(m)) => assert!(m.contains("SignatureDoesNotMatch"), "{m}"),
            other => panic!("a bad signature must be a provider error, got {other:?}"),
        }
    }

    #[test]
    fn messages_are_bounded_and_single_line() {
        let long = format!("line1\nline2{}", "x".repeat(1000));
        let s = sanitize(&long);
        assert!(!s.contains('\n'));
        assert!(s.chars().count() <= portcullis_outbound::MAX_REMOTE_MESSAGE_CHARS + 1);
    }

    #[test]
    fn the_operation_comes_from_the_target_header() {
        let request = Request::new(
            Method::POST,
            Endpoint::parse("http://127.0.0.1:1").unwrap_or_else(|e| panic!("{e}")),
            "/",
        )
        .with_header("X-Amz-Target", "TrentService.Encrypt");
        assert_eq!(operation(&request), Some("Encrypt"));
    }

    #[test]
    fn encryption_context_names_are_fixed() {
        let ctx = WrapContext {
            environment_id: "env-1",
            purpose: "data-key",
            version: 7,
        };
        let json = serde_json::to_string(&EncryptionContext::of(&ctx)).unwrap_or_default();
        assert_eq!(
            json,
            r#"{"portcullis:environment":"env-1","portcullis:purpose":"data-key","portcullis:version":"7"}"#
        );
    }
}
