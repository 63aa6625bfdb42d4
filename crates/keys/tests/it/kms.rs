//! The AWS KMS provider (E2, E4), three ways:
//! - against moto's KMS server (`pip install 'moto[server]'`), a real HTTP endpoint that checks
//!   our JSON and, with auth turned on, our SigV4 signatures with botocore's own signer;
//! - through an injected transport that answers exactly as AWS KMS does where moto does not:
//!   moto keeps decrypting with a disabled or pending-deletion key, so revocation (E4) is proven
//!   with the real KMS error bodies at the client boundary;
//! - against a local HTTPS server, for the certificate checks.
//!
//! The signer's vectors are `portcullis_outbound::sigv4`'s; what every provider does is
//! `conformance` (run against moto, with AWS's revocation answers injected).

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use portcullis_crypto::envelope::DataKey;
use portcullis_crypto::Secret;
use portcullis_keys::kms::{self, KeyState, KmsConfig, KmsProvider};
use portcullis_keys::{KekRef, KeyError, Providers, WrapContext};
use portcullis_outbound::testing::Moto;
use portcullis_outbound::{
    AwsCredentials, BoxFuture, Client, Endpoint, Error, Method, Request, Response, Transport,
};
use serde_json::{json, Value};
use zeroize::Zeroizing;

use crate::conformance::{Reason, Refusal, Revoker, Subject};

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
        credentials: AwsCredentials::new(access_key_id, Secret::new(secret)),
    }
}

// ---------------------------------------------------------------------------------------------
// moto
// ---------------------------------------------------------------------------------------------

fn provider(moto: &Moto) -> KmsProvider {
    KmsProvider::new(config(&moto.endpoint(), "AKIDEXAMPLE", SECRET)).unwrap()
}

/// A transport around the real one that gives the answer AWS would for a disabled key, since
/// moto itself keeps decrypting.
pub struct Faithful {
    real: Client,
    /// The refusal AWS would give while the key is disabled.
    refusal: Mutex<Option<(u16, String)>>,
}

impl Faithful {
    fn new() -> Faithful {
        Faithful {
            real: Client::new(kms::LIMITS).unwrap(),
            refusal: Mutex::new(None),
        }
    }
}

impl Transport for Faithful {
    fn send<'a>(&'a self, request: &'a Request) -> BoxFuture<'a, Result<Response, Error>> {
        Box::pin(async move {
            let refusal = self.refusal.lock().unwrap().clone();
            match (kms::operation(request), refusal) {
                (Some("Encrypt" | "Decrypt"), Some((status, body))) => {
                    Ok(Response::new(status, body))
                }
                _ => self.real.send(request).await,
            }
        })
    }
}

fn arn(kek: &str) -> String {
    format!("arn:aws:kms:us-east-1:123456789012:key/{kek}")
}

/// DisableKey in moto (which reports it Disabled), and AWS's answer from then on.
pub async fn disable(kms: &KmsProvider, kek: &str, transport: &Faithful) {
    kms.disable_key(kek).await.unwrap();
    assert_eq!(kms.describe_key(kek).await.unwrap(), KeyState::Disabled);
    *transport.refusal.lock().unwrap() = Some((
        400,
        json!({ "__type": "DisabledException", "message": format!("{} is disabled.", arn(kek)) })
            .to_string(),
    ));
}

pub async fn enable(kms: &KmsProvider, kek: &str, transport: &Faithful) {
    kms.enable_key(kek).await.unwrap();
    assert_eq!(kms.describe_key(kek).await.unwrap(), KeyState::Enabled);
    *transport.refusal.lock().unwrap() = None;
}

/// Two fresh keys in a moto server of their own.
pub async fn subject() -> Option<Subject> {
    let moto = Moto::start()?;
    let transport = Arc::new(Faithful::new());
    let kms = KmsProvider::with_transport(
        config(&moto.endpoint(), "AKIDEXAMPLE", SECRET),
        transport.clone(),
    )
    .unwrap();
    let kek = kms.create_key("portcullis test KEK").await.unwrap();
    let other = kms.create_key("another KEK").await.unwrap();
    let aws_kms = |key_id: &str| KekRef::AwsKms {
        key_id: key_id.to_owned(),
    };
    Some(Subject {
        providers: Providers {
            kms: Some(kms.clone()),
            ..Providers::default()
        },
        kek: aws_kms(&kek),
        other_kek: aws_kms(&other),
        // Real KMS answers IncorrectKeyException (Invalid, see
        // e4_incorrect_key_and_other_context_are_invalid); moto answers AccessDeniedException.
        // Either way the key does not come out.
        other_kek_refusal: Refusal::Unavailable,
        missing: vec![aws_kms("11111111-2222-3333-4444-555555555555")],
        missing_reason: Reason::Contains("does not exist"),
        // moto's blob starts with the key id in clear: altering it names a key that does not
        // exist (AccessDeniedException); real KMS says InvalidCiphertextException for any
        // alteration.
        key_id_prefix: 36,
        aes_gcm_v1: false,
        revoker: Some(Revoker::Kms(kms, kek, transport)),
        revoked_reason: "is disabled.",
        _keep: Box::new(moto),
    })
}

/// What moto adds to `conformance` (round trip, context binding, tampering, unknown and other
/// keys, all run against moto): the provider's own API next to the dispatcher, key states, and
/// moto's lax default.
#[tokio::test]
async fn moto_round_trip_key_state_and_unchecked_signatures() {
    let Some(moto) = Moto::start() else {
        return;
    };
    let kms = provider(&moto);

    let kek = kms.create_key("portcullis test KEK").await.unwrap();
    assert_eq!(kms.describe_key(&kek).await.unwrap(), KeyState::Enabled);

    let key = DataKey::generate();
    let wrapped = kms
        .wrap(&kek, &key, &ctx(ENV_A, "data-key", 1))
        .await
        .unwrap();
    let back = kms
        .unwrap(&kek, &wrapped, &ctx(ENV_A, "data-key", 1))
        .await
        .unwrap();
    assert_eq!(back.expose(), key.expose());

    // A key id that does not exist: NotFoundException, a KEK that is not there.
    let missing = "11111111-2222-3333-4444-555555555555";
    assert!(matches!(
        kms.describe_key(missing).await.unwrap_err(),
        KeyError::Unavailable { .. }
    ));

    // moto does not verify signatures unless auth is turned on (see
    // moto_verifies_signatures_when_auth_is_on): a wrong secret key still works here.
    let wrong_secret =
        KmsProvider::new(config(&moto.endpoint(), "AKIDEXAMPLE", "not-the-secret")).unwrap();
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
    let Some(moto) = Moto::start() else {
        return;
    };
    let kms = provider(&moto);
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

/// With auth enforced, moto checks every request's SigV4 signature by recomputing it with
/// botocore against an IAM access key. That proves our signer on real KMS
/// requests (headers, JSON body, scope), and shows a wrong secret fails as a provider error,
/// not as `Invalid` (the wrapped key is fine, the credentials are not).
#[tokio::test]
async fn moto_verifies_signatures_when_auth_is_on() {
    let Some(moto) = Moto::start() else {
        return;
    };
    // A user with a KMS policy and an access key; everything after that must be signed with
    // that key.
    let (access_key_id, secret) = moto.enforce_auth("kms:*");

    let kms = KmsProvider::new(config(&moto.endpoint(), &access_key_id, &secret)).unwrap();
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
    let forged = KmsProvider::new(config(&moto.endpoint(), &access_key_id, forged_secret)).unwrap();
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
        KmsProvider::new(config(&moto.endpoint(), "AKIAIOSFODNN7EXAMPLE", SECRET)).unwrap();
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
    scripted: Vec<Response>,
    requests: Vec<Seen>,
}

/// An in-memory KMS speaking the real wire format, including its revocation errors.
#[derive(Default)]
struct FakeKms {
    state: Mutex<FakeState>,
    calls: AtomicUsize,
}

fn error(status: u16, kind: &str, message: &str) -> Response {
    Response::new(
        status,
        json!({ "__type": kind, "message": message }).to_string(),
    )
}

fn ok(body: Value) -> Response {
    Response::new(200, body.to_string())
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

    fn script(&self, responses: Vec<Response>) {
        self.state.lock().unwrap().scripted = responses;
    }

    fn revoked(state: State, id: &str) -> Option<Response> {
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

    fn handle(&self, request: &Request) -> Response {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        let operation = kms::operation(request).unwrap().to_owned();
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
    fn send<'a>(&'a self, request: &'a Request) -> BoxFuture<'a, Result<Response, Error>> {
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
    let Some(moto) = Moto::start() else {
        return;
    };
    let transport = Arc::new(Faithful::new());
    let kms = KmsProvider::with_transport(
        config(&moto.endpoint(), "AKIDEXAMPLE", SECRET),
        transport.clone(),
    )
    .unwrap();
    let kek = kms.create_key("e4").await.unwrap();
    let key = DataKey::generate();
    let c = ctx(ENV_A, "data-key", 9);
    let wrapped = kms.wrap(&kek, &key, &c).await.unwrap();

    disable(&kms, &kek, &transport).await;
    let arn = arn(&kek);
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
    enable(&kms, &kek, &transport).await;
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
    cfg.credentials.session_token = Some(Secret::new("FQoGZXIvYXdzEXAMPLETOKEN"));
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
        Response::new(502, "<html>Bad Gateway</html>"),
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
        fn send<'a>(&'a self, request: &'a Request) -> BoxFuture<'a, Result<Response, Error>> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Box::pin(async { Err(Error::transport(&request.endpoint, "connection refused")) })
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
    let transport = Arc::new(Client::with_root_certificates(roots, kms::LIMITS).unwrap());
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
        Response::new(200, "{}"),
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
    cfg.credentials.session_token = Some(Secret::new("SESSIONTOKENSECRET"));
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
        Response::new(502, "bad gateway"),
    ] {
        fake.script(vec![scripted, Response::new(502, "again")]);
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
    let request = Request {
        method: Method::POST,
        endpoint: Endpoint::parse("https://kms.us-east-1.amazonaws.com").unwrap(),
        target: "/".to_owned(),
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
    cfg.credentials.access_key_id = String::new();
    assert!(refused(cfg));
    let mut cfg = base();
    cfg.credentials.secret_access_key = Secret::new("");
    assert!(refused(cfg));
    let mut cfg = base();
    cfg.credentials.secret_access_key = Secret::new(format!("{SECRET} "));
    assert!(refused(cfg));
    let mut cfg = base();
    cfg.credentials.session_token = Some(Secret::new("bad\ntoken"));
    assert!(refused(cfg));
}
