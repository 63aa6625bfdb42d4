#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The AWS KMS provider (E2, E4), three ways:
//! - against moto's KMS server (`pip install 'moto[server]'`), a real HTTP endpoint that checks
//!   our JSON and, with auth turned on, our SigV4 signatures with botocore's own signer;
//! - through an injected transport that answers exactly as AWS KMS does where moto does not:
//!   moto keeps decrypting with a disabled or pending-deletion key, so revocation (E4) is proven
//!   with the real KMS error bodies at the client boundary;
//! - the signer alone, against the published aws-sig-v4-test-suite vectors.

use std::collections::HashMap;
use std::io::Read as _;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use portcullis_crypto::envelope::DataKey;
use portcullis_crypto::Secret;
use portcullis_keys::kms::sigv4::{self, SigningInput};
use portcullis_keys::kms::{
    BoxFuture, Endpoint, HttpRequest, HttpResponse, HttpTransport, KeyState, KmsConfig,
    KmsProvider, Transport, TransportError,
};
use portcullis_keys::{KekRef, KeyError, Providers, WrapContext};
use serde_json::{json, Value};
use zeroize::Zeroizing;

const ENV_A: &str = "0190f3a2-7c1e-7d4b-9a55-3f1c2b8e4d01";
const ENV_B: &str = "0190f3a2-7c1e-7d4b-9a55-3f1c2b8e4d02";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

fn ctx<'a>(environment_id: &'a str, purpose: &'a str, version: u32) -> WrapContext<'a> {
    WrapContext {
        environment_id,
        purpose,
        version,
    }
}

fn config(endpoint: &str, access_key_id: &str, secret: &str) -> KmsConfig {
    KmsConfig {
        region: "us-east-1".to_owned(),
        endpoint: Some(endpoint.to_owned()),
        access_key_id: access_key_id.to_owned(),
        secret_access_key: Secret::new(secret),
        session_token: None,
    }
}

// ---------------------------------------------------------------------------------------------
// moto
// ---------------------------------------------------------------------------------------------

/// A `moto_server` child process on a free loopback port, killed when dropped (also when a test
/// panics).
struct Moto {
    child: Child,
    endpoint: String,
    log: PathBuf,
}

impl Moto {
    /// `None` (after saying so on stderr) when moto is not installed.
    fn start(name: &str, env: &[(&str, &str)]) -> Option<Moto> {
        // The console script, or the module itself when the script is not on PATH (a pyenv
        // shim appears only after `pyenv rehash`).
        let candidates: [&[&str]; 2] = [&["moto_server"], &["python3", "-m", "moto.server"]];
        let Some(program) = candidates.into_iter().find(|argv| {
            Command::new(argv[0])
                .args(&argv[1..])
                .arg("--help")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        }) else {
            eprintln!("SKIPPED: moto not installed (pip install 'moto[server]')");
            return None;
        };
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // A file, not a pipe: werkzeug logs every request, and a pipe nobody reads would
        // eventually block the server.
        let log = std::env::temp_dir().join(format!(
            "portcullis-moto-{name}-{}-{port}.log",
            std::process::id()
        ));
        let log_file = std::fs::File::create(&log).unwrap();
        let mut command = Command::new(program[0]);
        command
            .args(&program[1..])
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file);
        for (k, v) in env {
            command.env(k, v);
        }
        let child = command.spawn().unwrap();
        let mut moto = Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(moto);
            }
            if let Some(status) = moto.child.try_wait().unwrap() {
                panic!(
                    "moto_server exited with {status} before answering:\n{}",
                    moto.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "moto_server did not answer within 60 s:\n{}",
                moto.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log_text(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut text);
        }
        text
    }

    fn provider(&self) -> KmsProvider {
        KmsProvider::new(config(&self.endpoint, "AKIDEXAMPLE", SECRET)).unwrap()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

#[tokio::test]
async fn moto_round_trip_context_binding_tampering_and_unknown_keys() {
    let Some(moto) = Moto::start("main", &[]) else {
        return;
    };
    let kms = moto.provider();

    let kek = kms.create_key("portcullis test KEK").await.unwrap();
    assert_eq!(kms.describe_key(&kek).await.unwrap(), KeyState::Enabled);

    let key = DataKey::generate();
    let wrapped = kms
        .wrap(&kek, &key, &ctx(ENV_A, "data-key", 1))
        .await
        .unwrap();
    assert!(!wrapped.is_empty());
    assert!(
        !wrapped.windows(32).any(|w| w == key.expose()),
        "the wrapped key must not contain the key"
    );
    let back = kms
        .unwrap(&kek, &wrapped, &ctx(ENV_A, "data-key", 1))
        .await
        .unwrap();
    assert_eq!(back.expose(), key.expose());

    // Through the dispatcher, as the rest of the system calls it.
    let providers = Providers {
        kms: Some(kms.clone()),
        ..Providers::default()
    };
    let kek_ref = KekRef::AwsKms {
        key_id: kek.clone(),
    };
    let again = providers
        .wrap(&kek_ref, &key, &ctx(ENV_A, "data-key", 2))
        .await
        .unwrap();
    assert_ne!(again, wrapped, "KMS ciphertexts are randomised");
    let back = providers
        .unwrap(&kek_ref, &again, &ctx(ENV_A, "data-key", 2))
        .await
        .unwrap();
    assert_eq!(back.expose(), key.expose());

    // moto authenticates the encryption context (AES-GCM associated data over the sorted
    // context), like KMS: every field of the WrapContext is bound.
    for other in [
        ctx(ENV_B, "data-key", 1),
        ctx(ENV_A, "other-purpose", 1),
        ctx(ENV_A, "data-key", 2),
    ] {
        let err = kms.unwrap(&kek, &wrapped, &other).await.unwrap_err();
        assert!(matches!(err, KeyError::Invalid), "{other:?}: {err:?}");
    }

    // One flipped bit in the ciphertext or tag. (moto's blob starts with the key id in clear:
    // flipping a bit there makes it name a key that does not exist, which moto reports as
    // AccessDeniedException; real KMS says InvalidCiphertextException for any alteration.)
    let mut tampered = wrapped.clone();
    *tampered.last_mut().unwrap() ^= 0x01;
    let err = kms
        .unwrap(&kek, &tampered, &ctx(ENV_A, "data-key", 1))
        .await
        .unwrap_err();
    assert!(matches!(err, KeyError::Invalid), "{err:?}");
    let err = kms
        .unwrap(
            &kek,
            &wrapped[..wrapped.len() / 2],
            &ctx(ENV_A, "data-key", 1),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, KeyError::Invalid), "truncated: {err:?}");
    let err = kms
        .unwrap(&kek, &[], &ctx(ENV_A, "data-key", 1))
        .await
        .unwrap_err();
    assert!(matches!(err, KeyError::Invalid), "empty: {err:?}");

    // A key id that does not exist: NotFoundException, a KEK that is not there.
    let missing = "11111111-2222-3333-4444-555555555555";
    match kms
        .wrap(missing, &key, &ctx(ENV_A, "data-key", 1))
        .await
        .unwrap_err()
    {
        KeyError::Unavailable { kek, reason } => {
            assert_eq!(kek, format!("aws_kms:{missing}"));
            assert!(reason.contains("does not exist"), "{reason}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    let err = kms
        .unwrap(missing, &wrapped, &ctx(ENV_A, "data-key", 1))
        .await
        .unwrap_err();
    assert!(matches!(err, KeyError::Unavailable { .. }), "{err:?}");
    assert!(matches!(
        kms.describe_key(missing).await.unwrap_err(),
        KeyError::Unavailable { .. }
    ));

    // Another existing key's id with this blob: real KMS answers IncorrectKeyException (Invalid,
    // see e4_incorrect_key_is_invalid); moto answers AccessDeniedException, so Unavailable here.
    // Either way the key does not come out.
    let other_kek = kms.create_key("another KEK").await.unwrap();
    let err = kms
        .unwrap(&other_kek, &wrapped, &ctx(ENV_A, "data-key", 1))
        .await
        .unwrap_err();
    assert!(
        matches!(err, KeyError::Unavailable { .. }),
        "moto's answer changed: {err:?}"
    );

    // moto does not verify signatures unless auth is turned on (see
    // moto_verifies_signatures_when_auth_is_on): a wrong secret key still works here.
    let wrong_secret =
        KmsProvider::new(config(&moto.endpoint, "AKIDEXAMPLE", "not-the-secret")).unwrap();
    let back = wrong_secret
        .unwrap(&kek, &wrapped, &ctx(ENV_A, "data-key", 1))
        .await
        .unwrap();
    assert_eq!(back.expose(), key.expose());
}

/// What moto does NOT do, recorded so that the injected-transport tests below are not testing
/// a fiction: after DisableKey or ScheduleKeyDeletion, moto reports the state but still
/// decrypts, where AWS KMS answers DisabledException / KMSInvalidStateException.
#[tokio::test]
async fn moto_reports_revoked_states_but_keeps_decrypting() {
    let Some(moto) = Moto::start("states", &[]) else {
        return;
    };
    let kms = moto.provider();
    let kek = kms.create_key("state KEK").await.unwrap();
    let key = DataKey::generate();
    let c = ctx(ENV_A, "data-key", 1);
    let wrapped = kms.wrap(&kek, &key, &c).await.unwrap();

    kms.disable_key(&kek).await.unwrap();
    assert_eq!(kms.describe_key(&kek).await.unwrap(), KeyState::Disabled);
    assert_eq!(
        kms.unwrap(&kek, &wrapped, &c).await.unwrap().expose(),
        key.expose()
    );

    kms.schedule_key_deletion(&kek, 7).await.unwrap();
    assert_eq!(
        kms.describe_key(&kek).await.unwrap(),
        KeyState::PendingDeletion
    );
    assert_eq!(
        kms.unwrap(&kek, &wrapped, &c).await.unwrap().expose(),
        key.expose()
    );

    kms.cancel_key_deletion(&kek).await.unwrap();
    assert_eq!(kms.describe_key(&kek).await.unwrap(), KeyState::Disabled);
    kms.enable_key(&kek).await.unwrap();
    assert_eq!(kms.describe_key(&kek).await.unwrap(), KeyState::Enabled);
}

/// Percent-encoding for an IAM query-protocol form body.
fn form(pairs: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    char::from(b).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn xml_field(xml: &str, tag: &str) -> String {
    let open = format!("<{tag}>");
    let start = xml
        .find(&open)
        .unwrap_or_else(|| panic!("no <{tag}> in {xml}"))
        + open.len();
    let end = xml[start..].find(&format!("</{tag}>")).unwrap() + start;
    xml[start..end].to_owned()
}

/// An IAM call while moto still lets requests through unauthenticated (its first
/// INITIAL_NO_AUTH_ACTION_COUNT actions): only the credential scope matters, for routing.
async fn iam(endpoint: &str, pairs: &[(&str, &str)]) -> String {
    let endpoint = Endpoint::parse(endpoint).unwrap();
    let body = form(pairs);
    let amz_date = sigv4::amz_date(time::OffsetDateTime::now_utc());
    let mut headers = vec![
        (
            "Content-Type".to_owned(),
            "application/x-www-form-urlencoded; charset=utf-8".to_owned(),
        ),
        ("Host".to_owned(), endpoint.authority().to_owned()),
        ("X-Amz-Date".to_owned(), amz_date.clone()),
    ];
    let signed: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let authorization = sigv4::authorization(&SigningInput {
        method: "POST",
        path: "/",
        query: "",
        headers: &signed,
        payload: body.as_bytes(),
        region: "us-east-1",
        service: "iam",
        amz_date: &amz_date,
        access_key_id: "AKIDEXAMPLE",
        secret_access_key: SECRET,
    })
    .unwrap();
    headers.push(("Authorization".to_owned(), authorization));
    let request = HttpRequest {
        endpoint,
        headers,
        body: Zeroizing::new(body.into_bytes()),
    };
    let response = HttpTransport::new().unwrap().send(&request).await.unwrap();
    let text = String::from_utf8(response.body.to_vec()).unwrap();
    assert_eq!(response.status, 200, "IAM {pairs:?}: {text}");
    text
}

/// With INITIAL_NO_AUTH_ACTION_COUNT set, moto checks every request's SigV4 signature by
/// recomputing it with botocore against an IAM access key. That proves our signer on real KMS
/// requests (headers, JSON body, scope), and shows a wrong secret fails as a provider error,
/// not as `Invalid` (the wrapped key is fine, the credentials are not).
#[tokio::test]
async fn moto_verifies_signatures_when_auth_is_on() {
    // Three unauthenticated actions: just enough to create a user with a KMS policy and an
    // access key. Everything after that must be signed with that key.
    let Some(moto) = Moto::start("auth", &[("INITIAL_NO_AUTH_ACTION_COUNT", "3")]) else {
        return;
    };
    let version = ("Version", "2010-05-08");
    iam(
        &moto.endpoint,
        &[
            ("Action", "CreateUser"),
            ("UserName", "portcullis"),
            version,
        ],
    )
    .await;
    let policy = json!({
        "Version": "2012-10-17",
        "Statement": [{ "Effect": "Allow", "Action": "kms:*", "Resource": "*" }],
    })
    .to_string();
    iam(
        &moto.endpoint,
        &[
            ("Action", "PutUserPolicy"),
            ("UserName", "portcullis"),
            ("PolicyName", "kms"),
            ("PolicyDocument", &policy),
            version,
        ],
    )
    .await;
    let created = iam(
        &moto.endpoint,
        &[
            ("Action", "CreateAccessKey"),
            ("UserName", "portcullis"),
            version,
        ],
    )
    .await;
    let access_key_id = xml_field(&created, "AccessKeyId");
    let secret = xml_field(&created, "SecretAccessKey");

    let kms = KmsProvider::new(config(&moto.endpoint, &access_key_id, &secret)).unwrap();
    let kek = kms.create_key("signed").await.unwrap();
    let key = DataKey::generate();
    let c = ctx(ENV_A, "data-key", 3);
    let wrapped = kms.wrap(&kek, &key, &c).await.unwrap();
    assert_eq!(
        kms.unwrap(&kek, &wrapped, &c).await.unwrap().expose(),
        key.expose()
    );

    // Same access key, wrong secret: the signature does not match.
    let forged_secret = "0123456789abcdefghijklmnopqrstuvwxyzABCD";
    let forged = KmsProvider::new(config(&moto.endpoint, &access_key_id, forged_secret)).unwrap();
    match forged.unwrap(&kek, &wrapped, &c).await.unwrap_err() {
        KeyError::Provider(message) => {
            assert!(message.contains("SignatureDoesNotMatch"), "{message}");
            assert!(
                !message.contains(forged_secret) && !message.contains(&secret),
                "{message}"
            );
        }
        other => panic!("a bad signature must be a provider error, got {other:?}"),
    }
    // An access key moto has never issued.
    let stranger =
        KmsProvider::new(config(&moto.endpoint, "AKIAIOSFODNN7EXAMPLE", SECRET)).unwrap();
    match stranger.wrap(&kek, &key, &c).await.unwrap_err() {
        KeyError::Provider(message) => {
            assert!(message.contains("InvalidClientTokenId"), "{message}")
        }
        other => panic!("an unknown access key must be a provider error, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Injected transport: answers as AWS KMS does
// ---------------------------------------------------------------------------------------------

const ACCOUNT_ARN: &str = "arn:aws:kms:us-east-1:111122223333:key";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Enabled,
    Disabled,
    PendingDeletion,
}

/// (operation, JSON body, headers) of a request the fake received.
type Seen = (String, Value, Vec<(String, String)>);

#[derive(Default)]
struct FakeState {
    keys: HashMap<String, State>,
    /// blob -> (key id, plaintext, encryption context)
    blobs: HashMap<Vec<u8>, (String, Vec<u8>, Value)>,
    /// Answers to give before any real processing, in order.
    scripted: Vec<HttpResponse>,
    requests: Vec<Seen>,
}

/// An in-memory KMS speaking the real wire format, including its revocation errors.
#[derive(Default)]
struct FakeKms {
    state: Mutex<FakeState>,
    calls: AtomicUsize,
}

fn error(status: u16, kind: &str, message: &str) -> HttpResponse {
    HttpResponse::new(
        status,
        json!({ "__type": kind, "message": message }).to_string(),
    )
}

fn ok(body: Value) -> HttpResponse {
    HttpResponse::new(200, body.to_string())
}

impl FakeKms {
    fn add_key(&self, id: &str) {
        self.state
            .lock()
            .unwrap()
            .keys
            .insert(id.to_owned(), State::Enabled);
    }

    fn set(&self, id: &str, state: State) {
        self.state.lock().unwrap().keys.insert(id.to_owned(), state);
    }

    fn script(&self, responses: Vec<HttpResponse>) {
        self.state.lock().unwrap().scripted = responses;
    }

    fn revoked(state: State, id: &str) -> Option<HttpResponse> {
        // The bodies AWS KMS sends, verbatim in shape.
        match state {
            State::Enabled => None,
            State::Disabled => Some(error(
                400,
                "DisabledException",
                &format!("{ACCOUNT_ARN}/{id} is disabled."),
            )),
            State::PendingDeletion => Some(error(
                400,
                "KMSInvalidStateException",
                &format!("{ACCOUNT_ARN}/{id} is pending deletion."),
            )),
        }
    }

    fn handle(&self, request: &HttpRequest) -> HttpResponse {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        let operation = request.operation().unwrap().to_owned();
        let mut st = self.state.lock().unwrap();
        st.requests
            .push((operation.clone(), body.clone(), request.headers.clone()));
        if !st.scripted.is_empty() {
            return st.scripted.remove(0);
        }
        assert_eq!(
            request.header("content-type"),
            Some("application/x-amz-json-1.1")
        );
        let auth = request.header("authorization").unwrap();
        assert!(
            auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"),
            "{auth}"
        );
        assert!(auth.contains("/us-east-1/kms/aws4_request, "), "{auth}");

        let key_id = body["KeyId"].as_str().unwrap_or_default().to_owned();
        let Some(&state) = st.keys.get(&key_id) else {
            return error(
                400,
                "NotFoundException",
                &format!("Key '{ACCOUNT_ARN}/{key_id}' does not exist"),
            );
        };
        if let Some(refusal) = Self::revoked(state, &key_id) {
            return refusal;
        }
        match operation.as_str() {
            "Encrypt" => {
                let plaintext = B64.decode(body["Plaintext"].as_str().unwrap()).unwrap();
                let blob: Vec<u8> = (0..48).map(|_| rand::random::<u8>()).collect();
                st.blobs.insert(
                    blob.clone(),
                    (key_id.clone(), plaintext, body["EncryptionContext"].clone()),
                );
                ok(
                    json!({ "CiphertextBlob": B64.encode(&blob), "KeyId": format!("{ACCOUNT_ARN}/{key_id}") }),
                )
            }
            "Decrypt" => {
                let blob = B64
                    .decode(body["CiphertextBlob"].as_str().unwrap())
                    .unwrap();
                match st.blobs.get(&blob) {
                    None => error(400, "InvalidCiphertextException", ""),
                    Some((owner, _, _)) if *owner != key_id => error(
                        400,
                        "IncorrectKeyException",
                        "The key ID in the request does not identify a CMK that can perform this operation.",
                    ),
                    Some((_, _, context)) if *context != body["EncryptionContext"] => {
                        error(400, "InvalidCiphertextException", "")
                    }
                    Some((_, plaintext, _)) => ok(json!({
                        "Plaintext": B64.encode(plaintext),
                        "KeyId": format!("{ACCOUNT_ARN}/{key_id}"),
                    })),
                }
            }
            other => error(400, "UnsupportedOperationException", other),
        }
    }
}

impl Transport for FakeKms {
    fn send<'a>(
        &'a self,
        request: &'a HttpRequest,
    ) -> BoxFuture<'a, Result<HttpResponse, TransportError>> {
        Box::pin(async move { Ok(self.handle(request)) })
    }
}

const KEK: &str = "1234abcd-12ab-34cd-56ef-1234567890ab";

fn fake() -> (Arc<FakeKms>, KmsProvider) {
    let fake = Arc::new(FakeKms::default());
    fake.add_key(KEK);
    let kms = KmsProvider::with_transport(
        config("https://kms.us-east-1.amazonaws.com", "AKIDEXAMPLE", SECRET),
        fake.clone(),
    )
    .unwrap();
    (fake, kms)
}

fn expect_unavailable(err: KeyError, what: &str) -> String {
    match err {
        KeyError::Unavailable { kek, reason } => {
            assert_eq!(kek, format!("aws_kms:{KEK}"));
            assert!(reason.contains(what), "{reason}");
            reason
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[tokio::test]
async fn e4_disabled_key_is_unavailable_until_enabled_again() {
    let (fake, kms) = fake();
    let key = DataKey::generate();
    let c = ctx(ENV_A, "data-key", 1);
    let wrapped = kms.wrap(KEK, &key, &c).await.unwrap();

    fake.set(KEK, State::Disabled);
    let reason = expect_unavailable(
        kms.unwrap(KEK, &wrapped, &c).await.unwrap_err(),
        "is disabled",
    );
    assert_eq!(reason, format!("{ACCOUNT_ARN}/{KEK} is disabled."));
    expect_unavailable(kms.wrap(KEK, &key, &c).await.unwrap_err(), "is disabled");
    // Through the dispatcher too: that is what callers turn into key_unavailable.
    let providers = Providers {
        kms: Some(kms.clone()),
        ..Providers::default()
    };
    let kek_ref = KekRef::AwsKms {
        key_id: KEK.to_owned(),
    };
    let err = providers.unwrap(&kek_ref, &wrapped, &c).await.unwrap_err();
    assert!(err.to_string().contains(&kek_ref.to_string()), "{err}");
    expect_unavailable(err, "is disabled");

    // Revocation is not retried: it will not heal in 100 ms, and retrying would only add load.
    let calls = fake.calls.load(Ordering::SeqCst);
    let _ = kms.unwrap(KEK, &wrapped, &c).await;
    assert_eq!(fake.calls.load(Ordering::SeqCst), calls + 1);

    fake.set(KEK, State::Enabled);
    let back = kms.unwrap(KEK, &wrapped, &c).await.unwrap();
    assert_eq!(back.expose(), key.expose());
}

#[tokio::test]
async fn e4_pending_deletion_is_unavailable_until_deletion_is_cancelled() {
    let (fake, kms) = fake();
    let key = DataKey::generate();
    let c = ctx(ENV_B, "data-key", 4);
    let wrapped = kms.wrap(KEK, &key, &c).await.unwrap();

    fake.set(KEK, State::PendingDeletion);
    let reason = expect_unavailable(
        kms.unwrap(KEK, &wrapped, &c).await.unwrap_err(),
        "pending deletion",
    );
    assert_eq!(reason, format!("{ACCOUNT_ARN}/{KEK} is pending deletion."));

    // CancelKeyDeletion leaves the key Disabled: still unavailable until it is enabled.
    fake.set(KEK, State::Disabled);
    expect_unavailable(
        kms.unwrap(KEK, &wrapped, &c).await.unwrap_err(),
        "is disabled",
    );
    fake.set(KEK, State::Enabled);
    assert_eq!(
        kms.unwrap(KEK, &wrapped, &c).await.unwrap().expose(),
        key.expose()
    );
}

/// The same revocation on a real moto key: moto is told to disable the key (and reports it
/// Disabled), and a transport wrapped around the real one gives the answer AWS would, since moto
/// itself keeps decrypting. Restoring the key restores the same moto-wrapped bytes.
#[tokio::test]
async fn e4_moto_key_disabled_then_enabled_with_kms_answers_injected() {
    struct KmsFaithful {
        real: HttpTransport,
        /// The refusal AWS would give while the key is disabled.
        refusal: Mutex<Option<(u16, String)>>,
    }
    impl Transport for KmsFaithful {
        fn send<'a>(
            &'a self,
            request: &'a HttpRequest,
        ) -> BoxFuture<'a, Result<HttpResponse, TransportError>> {
            Box::pin(async move {
                let refusal = self.refusal.lock().unwrap().clone();
                match (request.operation(), refusal) {
                    (Some("Encrypt" | "Decrypt"), Some((status, body))) => {
                        Ok(HttpResponse::new(status, body))
                    }
                    _ => self.real.send(request).await,
                }
            })
        }
    }

    let Some(moto) = Moto::start("e4", &[]) else {
        return;
    };
    let transport = Arc::new(KmsFaithful {
        real: HttpTransport::new().unwrap(),
        refusal: Mutex::new(None),
    });
    let kms = KmsProvider::with_transport(
        config(&moto.endpoint, "AKIDEXAMPLE", SECRET),
        transport.clone(),
    )
    .unwrap();
    let kek = kms.create_key("e4").await.unwrap();
    let key = DataKey::generate();
    let c = ctx(ENV_A, "data-key", 9);
    let wrapped = kms.wrap(&kek, &key, &c).await.unwrap();

    kms.disable_key(&kek).await.unwrap();
    assert_eq!(kms.describe_key(&kek).await.unwrap(), KeyState::Disabled);
    let arn = format!("arn:aws:kms:us-east-1:123456789012:key/{kek}");
    *transport.refusal.lock().unwrap() = Some((
        400,
        json!({ "__type": "DisabledException", "message": format!("{arn} is disabled.") })
            .to_string(),
    ));
    match kms.unwrap(&kek, &wrapped, &c).await.unwrap_err() {
        KeyError::Unavailable { kek: k, reason } => {
            assert_eq!(k, format!("aws_kms:{kek}"));
            assert_eq!(reason, format!("{arn} is disabled."));
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }

    kms.schedule_key_deletion(&kek, 7).await.unwrap();
    assert_eq!(
        kms.describe_key(&kek).await.unwrap(),
        KeyState::PendingDeletion
    );
    *transport.refusal.lock().unwrap() = Some((
        400,
        json!({ "__type": "KMSInvalidStateException", "message": format!("{arn} is pending deletion.") }).to_string(),
    ));
    let err = kms.unwrap(&kek, &wrapped, &c).await.unwrap_err();
    assert!(
        matches!(err, KeyError::Unavailable { ref reason, .. } if reason.contains("pending deletion")),
        "{err:?}"
    );

    kms.cancel_key_deletion(&kek).await.unwrap();
    kms.enable_key(&kek).await.unwrap();
    assert_eq!(kms.describe_key(&kek).await.unwrap(), KeyState::Enabled);
    *transport.refusal.lock().unwrap() = None;
    assert_eq!(
        kms.unwrap(&kek, &wrapped, &c).await.unwrap().expose(),
        key.expose()
    );
}

#[tokio::test]
async fn e4_access_denied_and_key_unavailable_are_unavailable() {
    let (fake, kms) = fake();
    let key = DataKey::generate();
    let c = ctx(ENV_A, "data-key", 1);
    let wrapped = kms.wrap(KEK, &key, &c).await.unwrap();
    fake.script(vec![
        error(
            400,
            "AccessDeniedException",
            "User: arn:aws:iam::111122223333:user/portcullis is not authorized to perform: kms:Decrypt",
        ),
        error(500, "KeyUnavailableException", "The request was rejected because the specified CMK was not available."),
    ]);
    expect_unavailable(
        kms.unwrap(KEK, &wrapped, &c).await.unwrap_err(),
        "not authorized",
    );
    // 500, but a key state, not a transient fault: not retried, Unavailable.
    expect_unavailable(
        kms.unwrap(KEK, &wrapped, &c).await.unwrap_err(),
        "not available",
    );
    assert_eq!(
        kms.unwrap(KEK, &wrapped, &c).await.unwrap().expose(),
        key.expose()
    );
}

#[tokio::test]
async fn e4_incorrect_key_and_other_context_are_invalid() {
    let (fake, kms) = fake();
    fake.add_key("other-key");
    let key = DataKey::generate();
    let c = ctx(ENV_A, "data-key", 1);
    let wrapped = kms.wrap(KEK, &key, &c).await.unwrap();
    assert!(matches!(
        kms.unwrap("other-key", &wrapped, &c).await.unwrap_err(),
        KeyError::Invalid
    ));
    for other in [
        ctx(ENV_B, "data-key", 1),
        ctx(ENV_A, "x", 1),
        ctx(ENV_A, "data-key", 2),
    ] {
        assert!(matches!(
            kms.unwrap(KEK, &wrapped, &other).await.unwrap_err(),
            KeyError::Invalid
        ));
    }
    assert!(matches!(
        kms.unwrap(KEK, b"garbage", &c).await.unwrap_err(),
        KeyError::Invalid
    ));
}

#[tokio::test]
async fn requests_carry_the_key_the_context_and_a_signature() {
    let fake = Arc::new(FakeKms::default());
    fake.add_key(KEK);
    let mut cfg = config("https://kms.us-east-1.amazonaws.com", "AKIDEXAMPLE", SECRET);
    cfg.session_token = Some(Secret::new("FQoGZXIvYXdzEXAMPLETOKEN"));
    // The fake checks the access key id without the token too; it only asserts the scope.
    let kms = KmsProvider::with_transport(cfg, fake.clone()).unwrap();
    let key = DataKey::generate();
    let c = ctx(ENV_A, "data-key", 12);
    let wrapped = kms.wrap(KEK, &key, &c).await.unwrap();
    kms.unwrap(KEK, &wrapped, &c).await.unwrap();

    let st = fake.state.lock().unwrap();
    let expected_context = json!({
        "portcullis:environment": ENV_A,
        "portcullis:purpose": "data-key",
        "portcullis:version": "12",
    });
    let (op, body, headers) = &st.requests[0];
    assert_eq!(op, "Encrypt");
    assert_eq!(body["KeyId"], KEK);
    assert_eq!(body["Plaintext"], B64.encode(key.expose()));
    assert_eq!(body["EncryptionContext"], expected_context);
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    assert_eq!(
        header("x-amz-target").as_deref(),
        Some("TrentService.Encrypt")
    );
    assert_eq!(
        header("host").as_deref(),
        Some("kms.us-east-1.amazonaws.com")
    );
    assert_eq!(
        header("x-amz-security-token").as_deref(),
        Some("FQoGZXIvYXdzEXAMPLETOKEN")
    );
    let auth = header("authorization").unwrap();
    assert!(
        auth.contains("SignedHeaders=content-type;host;x-amz-date;x-amz-security-token;x-amz-target, Signature="),
        "{auth}"
    );

    let (op, body, _) = &st.requests[1];
    assert_eq!(op, "Decrypt");
    assert_eq!(body["KeyId"], KEK);
    assert_eq!(body["CiphertextBlob"], B64.encode(&wrapped));
    assert_eq!(body["EncryptionContext"], expected_context);
}

#[tokio::test]
async fn transient_failures_are_retried_once() {
    let (fake, kms) = fake();
    let key = DataKey::generate();
    let c = ctx(ENV_A, "data-key", 1);

    // Throttled once, then fine.
    fake.script(vec![error(400, "ThrottlingException", "Rate exceeded")]);
    let before = fake.calls.load(Ordering::SeqCst);
    let wrapped = kms.wrap(KEK, &key, &c).await.unwrap();
    assert_eq!(fake.calls.load(Ordering::SeqCst), before + 2);

    // 5xx twice: one retry, then a provider error naming the status, never the key.
    fake.script(vec![
        HttpResponse::new(502, "<html>Bad Gateway</html>"),
        error(500, "KMSInternalException", "oops"),
    ]);
    let before = fake.calls.load(Ordering::SeqCst);
    let err = kms.unwrap(KEK, &wrapped, &c).await.unwrap_err();
    assert_eq!(fake.calls.load(Ordering::SeqCst), before + 2);
    match &err {
        KeyError::Provider(m) => assert!(m.contains("KMSInternalException"), "{m}"),
        other => panic!("expected Provider, got {other:?}"),
    }

    // A validation error is not retried.
    fake.script(vec![error(
        400,
        "ValidationException",
        "1 validation error detected",
    )]);
    let before = fake.calls.load(Ordering::SeqCst);
    assert!(matches!(
        kms.unwrap(KEK, &wrapped, &c).await.unwrap_err(),
        KeyError::Provider(_)
    ));
    assert_eq!(fake.calls.load(Ordering::SeqCst), before + 1);
}

#[tokio::test]
async fn network_failures_are_provider_errors_after_one_retry() {
    struct Down(AtomicUsize);
    impl Transport for Down {
        fn send<'a>(
            &'a self,
            _: &'a HttpRequest,
        ) -> BoxFuture<'a, Result<HttpResponse, TransportError>> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Box::pin(async { Err(TransportError::new("connection refused")) })
        }
    }
    let down = Arc::new(Down(AtomicUsize::new(0)));
    let kms = KmsProvider::with_transport(
        config("https://kms.us-east-1.amazonaws.com", "AKIDEXAMPLE", SECRET),
        down.clone(),
    )
    .unwrap();
    let err = kms
        .wrap(KEK, &DataKey::generate(), &ctx(ENV_A, "data-key", 1))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, KeyError::Provider(m) if m.contains("connection refused")),
        "{err:?}"
    );
    assert_eq!(down.0.load(Ordering::SeqCst), 2);

    // And for real: nothing listens on this port.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let kms = KmsProvider::new(config(
        &format!("http://127.0.0.1:{port}"),
        "AKIDEXAMPLE",
        SECRET,
    ))
    .unwrap();
    let err = kms
        .unwrap(KEK, b"blob", &ctx(ENV_A, "data-key", 1))
        .await
        .unwrap_err();
    assert!(matches!(err, KeyError::Provider(_)), "{err:?}");
}

/// A one-trick HTTPS server on localhost: for each of `connections` connections, a TLS
/// handshake with a fresh self-signed certificate, then one canned KMS answer. Returns the port,
/// the certificate, and the request heads it received.
async fn https_kms(
    connections: usize,
    answer: String,
) -> (
    u16,
    rustls::pki_types::CertificateDer<'static>,
    tokio::task::JoinHandle<Vec<String>>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = certified.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.key_pair.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert.clone()], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let mut heads = Vec::new();
        for _ in 0..connections {
            let (tcp, _) = listener.accept().await.unwrap();
            let Ok(mut tls) = acceptor.accept(tcp).await else {
                continue;
            };
            let mut seen = Vec::new();
            let mut buf = [0u8; 4096];
            // Headers, then as much body as Content-Length says.
            loop {
                let n = tls.read(&mut buf).await.unwrap();
                seen.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&seen).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let length: usize = text[..end]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    if seen.len() >= end + 4 + length {
                        heads.push(text[..end].to_owned());
                        break;
                    }
                }
                assert!(n > 0, "connection closed mid-request");
            }
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                answer.len()
            );
            tls.write_all(response.as_bytes()).await.unwrap();
            let _ = tls.shutdown().await;
        }
        heads
    });
    (port, cert, server)
}

#[tokio::test]
async fn https_round_trip_with_a_trusted_certificate() {
    let key = DataKey::generate();
    let answer = json!({ "Plaintext": B64.encode(key.expose()), "KeyId": KEK }).to_string();
    let (port, cert, server) = https_kms(1, answer).await;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    let transport = Arc::new(HttpTransport::with_root_certificates(roots).unwrap());
    let endpoint = format!("https://localhost:{port}");
    let kms =
        KmsProvider::with_transport(config(&endpoint, "AKIDEXAMPLE", SECRET), transport).unwrap();
    let back = kms
        .unwrap(KEK, b"blob", &ctx(ENV_A, "data-key", 1))
        .await
        .unwrap();
    assert_eq!(back.expose(), key.expose());

    let heads = tokio::time::timeout(Duration::from_secs(30), server)
        .await
        .unwrap()
        .unwrap();
    let head = heads[0].to_ascii_lowercase();
    assert!(head.starts_with("post / http/1.1\r\n"), "{head}");
    assert!(
        head.contains(&format!("\r\nhost: localhost:{port}\r\n")),
        "{head}"
    );
    assert!(
        head.contains("\r\nx-amz-target: trentservice.decrypt\r\n"),
        "{head}"
    );
    assert!(
        head.contains("\r\nauthorization: aws4-hmac-sha256 credential=akidexample/"),
        "{head}"
    );
}

#[tokio::test]
async fn https_refuses_a_certificate_outside_the_trusted_roots() {
    // The default transport trusts the public web PKI only; this server's certificate is
    // self-signed. Two connections: the failure is a network one, retried once.
    let (port, _, server) = https_kms(2, "{}".to_owned()).await;
    let kms = KmsProvider::new(config(
        &format!("https://localhost:{port}"),
        "AKIDEXAMPLE",
        SECRET,
    ))
    .unwrap();
    let err = kms
        .wrap(KEK, &DataKey::generate(), &ctx(ENV_A, "data-key", 1))
        .await
        .unwrap_err();
    match err {
        KeyError::Provider(m) => assert!(m.contains("certificate"), "{m}"),
        other => panic!("expected a provider error, got {other:?}"),
    }
    assert!(
        tokio::time::timeout(Duration::from_secs(30), server)
            .await
            .unwrap()
            .unwrap()
            .is_empty(),
        "no request may be sent over an untrusted channel"
    );
}

#[tokio::test]
async fn a_plaintext_that_is_not_32_bytes_is_invalid_and_malformed_answers_are_provider_errors() {
    let (fake, kms) = fake();
    let c = ctx(ENV_A, "data-key", 1);
    fake.script(vec![
        ok(json!({ "Plaintext": B64.encode([7u8; 16]), "KeyId": KEK })),
        ok(json!({ "Plaintext": "***not base64***", "KeyId": KEK })),
        HttpResponse::new(200, "{}"),
        ok(json!({ "CiphertextBlob": "", "KeyId": KEK })),
    ]);
    assert!(matches!(
        kms.unwrap(KEK, b"blob", &c).await.unwrap_err(),
        KeyError::Invalid
    ));
    assert!(matches!(
        kms.unwrap(KEK, b"blob", &c).await.unwrap_err(),
        KeyError::Provider(_)
    ));
    assert!(matches!(
        kms.unwrap(KEK, b"blob", &c).await.unwrap_err(),
        KeyError::Provider(_)
    ));
    assert!(matches!(
        kms.wrap(KEK, &DataKey::generate(), &c).await.unwrap_err(),
        KeyError::Provider(_)
    ));
}

#[tokio::test]
async fn errors_and_debug_output_never_show_secrets_or_keys() {
    let (fake, _) = fake();
    let mut cfg = config("https://kms.us-east-1.amazonaws.com", "AKIDEXAMPLE", SECRET);
    cfg.session_token = Some(Secret::new("SESSIONTOKENSECRET"));
    let shown = format!("{cfg:?}");
    assert!(
        !shown.contains(SECRET) && !shown.contains("SESSIONTOKENSECRET"),
        "{shown}"
    );
    let kms = KmsProvider::with_transport(cfg, fake.clone()).unwrap();
    let shown = format!("{kms:?}");
    assert!(
        !shown.contains(SECRET) && !shown.contains("SESSIONTOKENSECRET"),
        "{shown}"
    );

    let key = DataKey::generate();
    let encoded = B64.encode(key.expose());
    let c = ctx(ENV_A, "data-key", 1);
    let wrapped = kms.wrap(KEK, &key, &c).await.unwrap();
    let mut errors = Vec::new();
    for scripted in [
        error(400, "ValidationException", "echo"),
        error(400, "DisabledException", "disabled"),
        HttpResponse::new(502, "bad gateway"),
    ] {
        fake.script(vec![scripted, HttpResponse::new(502, "again")]);
        errors.push(kms.wrap(KEK, &key, &c).await.unwrap_err());
    }
    fake.set(KEK, State::Disabled);
    errors.push(kms.unwrap(KEK, &wrapped, &c).await.unwrap_err());
    for err in &errors {
        for text in [err.to_string(), format!("{err:?}")] {
            for secret in [SECRET, "SESSIONTOKENSECRET", encoded.as_str()] {
                assert!(!text.contains(secret), "{text}");
            }
        }
    }
    let st = fake.state.lock().unwrap();
    let (_, _, headers) = &st.requests[0];
    let request = HttpRequest {
        endpoint: Endpoint::parse("https://kms.us-east-1.amazonaws.com").unwrap(),
        headers: headers.clone(),
        body: Zeroizing::new(format!("{{\"Plaintext\":\"{encoded}\"}}").into_bytes()),
    };
    let shown = format!("{request:?}");
    assert!(
        !shown.contains(&encoded)
            && !shown.contains("SESSIONTOKENSECRET")
            && !shown.contains("Signature="),
        "{shown}"
    );
}

#[test]
fn configuration_is_checked() {
    let base = || config("http://127.0.0.1:5000", "AKIDEXAMPLE", SECRET);
    assert_eq!(
        KmsProvider::new(base()).unwrap().endpoint().to_string(),
        "http://127.0.0.1:5000"
    );

    let mut default = base();
    default.region = "eu-west-1".to_owned();
    default.endpoint = None;
    let kms = KmsProvider::new(default).unwrap();
    assert_eq!(
        kms.endpoint().to_string(),
        "https://kms.eu-west-1.amazonaws.com"
    );
    assert!(kms.endpoint().is_tls());

    let refused = |cfg: KmsConfig| matches!(KmsProvider::new(cfg), Err(KeyError::Config(_)));
    for endpoint in [
        "http://10.1.2.3:5000",
        "http://kms.internal",
        "http://192.168.0.10",
        "ftp://127.0.0.1",
    ] {
        let mut cfg = base();
        cfg.endpoint = Some(endpoint.to_owned());
        assert!(refused(cfg), "{endpoint}");
    }
    let mut cfg = base();
    cfg.region = "us-east-1.evil.com/".to_owned();
    assert!(refused(cfg));
    let mut cfg = base();
    cfg.access_key_id = String::new();
    assert!(refused(cfg));
    let mut cfg = base();
    cfg.secret_access_key = Secret::new("");
    assert!(refused(cfg));
    let mut cfg = base();
    cfg.secret_access_key = Secret::new(format!("{SECRET} "));
    assert!(refused(cfg));
    let mut cfg = base();
    cfg.session_token = Some(Secret::new("bad\ntoken"));
    assert!(refused(cfg));
}

// ---------------------------------------------------------------------------------------------
// SigV4: the published aws-sig-v4-test-suite (AKIDEXAMPLE, us-east-1, service "service",
// 20150830T123600Z)
// ---------------------------------------------------------------------------------------------

fn suite<'a>(
    method: &'a str,
    headers: &'a [(&'a str, &'a str)],
    payload: &'a [u8],
) -> SigningInput<'a> {
    SigningInput {
        method,
        path: "/",
        query: "",
        headers,
        payload,
        region: "us-east-1",
        service: "service",
        amz_date: "20150830T123600Z",
        access_key_id: "AKIDEXAMPLE",
        secret_access_key: SECRET,
    }
}

const SUITE_HEADERS: &[(&str, &str)] = &[
    ("Host", "example.amazonaws.com"),
    ("X-Amz-Date", "20150830T123600Z"),
];
const SCOPE: &str =
    "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request";

#[test]
fn sigv4_get_vanilla() {
    let input = suite("GET", SUITE_HEADERS, b"");
    assert_eq!(
        sigv4::canonical_request(&input),
        "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n\
         e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(
        sigv4::string_to_sign(&input).unwrap(),
        "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n\
         bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63"
    );
    assert_eq!(
        sigv4::authorization(&input).unwrap(),
        format!(
            "{SCOPE}, SignedHeaders=host;x-amz-date, \
             Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        )
    );
}

#[test]
fn sigv4_post_vanilla() {
    let input = suite("POST", SUITE_HEADERS, b"");
    assert!(sigv4::string_to_sign(&input)
        .unwrap()
        .ends_with("\n553f88c9e4d10fc9e109e2aeb65f030801b70c2f6468faca261d401ae622fc87"));
    assert_eq!(
        sigv4::authorization(&input).unwrap(),
        format!(
            "{SCOPE}, SignedHeaders=host;x-amz-date, \
             Signature=5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"
        )
    );
}

#[test]
fn sigv4_post_x_www_form_urlencoded() {
    // A body and a content type, as every KMS request has.
    let headers = [
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("Host", "example.amazonaws.com"),
        ("X-Amz-Date", "20150830T123600Z"),
    ];
    let input = suite("POST", &headers, b"Param1=value1");
    assert!(sigv4::canonical_request(&input)
        .ends_with("\n9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e"));
    assert!(sigv4::string_to_sign(&input)
        .unwrap()
        .ends_with("\n42a5e5bb34198acb3e84da4f085bb7927f2bc277ca766e6d19c73c2154021281"));
    assert_eq!(
        sigv4::authorization(&input).unwrap(),
        format!(
            "{SCOPE}, SignedHeaders=content-type;host;x-amz-date, \
             Signature=ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a"
        )
    );
}

#[test]
fn sigv4_post_sts_header_before() {
    // A session token, signed.
    let token = "AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfIeoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA==";
    let headers = [
        ("Host", "example.amazonaws.com"),
        ("X-Amz-Date", "20150830T123600Z"),
        ("X-Amz-Security-Token", token),
    ];
    let input = suite("POST", &headers, b"");
    assert!(sigv4::string_to_sign(&input)
        .unwrap()
        .ends_with("\nc237e1b440d4c63c32ca95b5b99481081cb7b13c7e40434868e71567c1a882f6"));
    assert_eq!(
        sigv4::authorization(&input).unwrap(),
        format!(
            "{SCOPE}, SignedHeaders=host;x-amz-date;x-amz-security-token, \
             Signature=85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead"
        )
    );
}

#[test]
fn sigv4_signing_key_derivation() {
    // The AWS documentation's worked example (service iam).
    let key = sigv4::signing_key(SECRET, "20150830", "us-east-1", "iam").unwrap();
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        hex,
        "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9"
    );
}
