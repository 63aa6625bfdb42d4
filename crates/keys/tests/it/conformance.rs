//! What every key provider must do (E2, E4), run against each of them through `Providers`, as
//! the rest of the system calls them: wrap and unwrap round trip with fresh randomness; another
//! context, an altered or truncated blob, another KEK: refused; an unknown KEK and a revoked one
//! are `KeyError::Unavailable` naming the KEK, and a restored one unwraps the very same bytes;
//! shareable and usable from many tasks at once.
//!
//! Each provider module builds a [`Subject`] (`None` when its backend is not installed) and
//! `suite!` turns it into one test per check.

use std::any::Any;

use portcullis_crypto::envelope::DataKey;
use portcullis_keys::kms::KmsProvider;
use portcullis_keys::local::LocalProvider;
use portcullis_keys::pkcs11::Pkcs11Provider;
use portcullis_keys::{KekRef, KeyError, Providers, WrapContext};

const ENV: &str = "0192d1e4-5f6a-7b8c-9d0e-1f2a3b4c5d6e";
const OTHER_ENV: &str = "0192d1e4-5f6a-7b8c-9d0e-1f2a3b4c5d6f";

pub fn ctx() -> WrapContext<'static> {
    WrapContext {
        environment_id: ENV,
        purpose: "data-key",
        version: 1,
    }
}

/// What unwrapping under another existing KEK gives.
#[derive(Clone, Copy, Debug)]
pub enum Refusal {
    Invalid,
    /// moto answers AccessDeniedException where real KMS says IncorrectKeyException.
    Unavailable,
}

/// What the reason of an unknown KEK's `Unavailable` says.
#[derive(Clone, Copy, Debug)]
pub enum Reason {
    Exactly(&'static str),
    Contains(&'static str),
    Any,
}

/// How a provider's KEK is revoked and restored.
pub enum Revoker {
    Pkcs11(Pkcs11Provider, String),
    /// Disabled in moto, with AWS's refusal injected (moto itself keeps decrypting).
    Kms(KmsProvider, String, std::sync::Arc<crate::kms::Faithful>),
}

impl Revoker {
    async fn revoke(&self) {
        match self {
            Revoker::Pkcs11(hsm, label) => hsm.set_enabled(label, false).await.unwrap(),
            Revoker::Kms(kms, key_id, transport) => {
                crate::kms::disable(kms, key_id, transport).await
            }
        }
    }

    async fn restore(&self) {
        match self {
            Revoker::Pkcs11(hsm, label) => hsm.set_enabled(label, true).await.unwrap(),
            Revoker::Kms(kms, key_id, transport) => {
                crate::kms::enable(kms, key_id, transport).await
            }
        }
    }
}

/// One provider under test.
pub struct Subject {
    pub providers: Providers,
    pub kek: KekRef,
    /// Another existing KEK of the same provider.
    pub other_kek: KekRef,
    pub other_kek_refusal: Refusal,
    /// KEKs that do not exist.
    pub missing: Vec<KekRef>,
    pub missing_reason: Reason,
    /// Leading bytes of a wrapped key that name the KEK rather than protect the data key
    /// (moto's blobs start with the key id in clear): altering them is a question of which key,
    /// answered by the provider, not of integrity.
    pub key_id_prefix: usize,
    /// The project's own AES-GCM format (local, PKCS#11): version byte 1, 12-byte nonce,
    /// 32-byte ciphertext, 16-byte tag.
    pub aes_gcm_v1: bool,
    /// `None` for a provider without revocation (a local key file is there or not).
    pub revoker: Option<Revoker>,
    /// The reason a revoked KEK's `Unavailable` contains.
    pub revoked_reason: &'static str,
    /// Scratch directory, token lock, moto process: whatever must live as long as the test.
    pub _keep: Box<dyn Any + Send + Sync>,
}

impl Subject {
    async fn wrap(&self, kek: &KekRef, key: &DataKey, c: &WrapContext<'_>) -> Vec<u8> {
        self.providers.wrap(kek, key, c).await.unwrap()
    }

    async fn unwrap(&self, wrapped: &[u8], c: &WrapContext<'_>) -> Result<DataKey, KeyError> {
        self.providers.unwrap(&self.kek, wrapped, c).await
    }
}

#[test]
fn providers_are_shareable_across_tasks() {
    fn shareable<T: Clone + Send + Sync + 'static>() {}
    shareable::<LocalProvider>();
    shareable::<Pkcs11Provider>();
    shareable::<KmsProvider>();
    shareable::<Providers>();
}

pub async fn round_trip(s: Subject) {
    let key = DataKey::generate();
    let wrapped = s.wrap(&s.kek, &key, &ctx()).await;
    assert!(!wrapped.is_empty());
    assert!(
        !wrapped.windows(32).any(|w| w == key.expose()),
        "the data key must not appear in clear"
    );
    let again = s.wrap(&s.kek, &key, &ctx()).await;
    assert_ne!(wrapped, again, "each wrap is randomised");
    if s.aes_gcm_v1 {
        assert_eq!(wrapped.len(), 1 + 12 + 32 + 16);
        assert_eq!(wrapped[0], 1, "format version");
        assert_ne!(wrapped[1..13], again[1..13], "each wrap uses a fresh nonce");
    }
    for blob in [&wrapped, &again] {
        assert_eq!(s.unwrap(blob, &ctx()).await.unwrap().expose(), key.expose());
    }
}

pub async fn another_context_is_invalid(s: Subject) {
    let wrapped = s.wrap(&s.kek, &DataKey::generate(), &ctx()).await;
    let others = [
        WrapContext {
            environment_id: OTHER_ENV,
            ..ctx()
        },
        WrapContext {
            purpose: "other-key",
            ..ctx()
        },
        WrapContext {
            version: 2,
            ..ctx()
        },
    ];
    for other in others {
        let result = s.unwrap(&wrapped, &other).await;
        assert!(
            matches!(result, Err(KeyError::Invalid)),
            "{other:?}: {result:?}"
        );
    }
}

pub async fn tampering_or_another_kek_is_refused(s: Subject) {
    let wrapped = s.wrap(&s.kek, &DataKey::generate(), &ctx()).await;
    for byte in s.key_id_prefix..wrapped.len() {
        for bit in [0u8, 7] {
            let mut tampered = wrapped.clone();
            tampered[byte] ^= 1 << bit;
            let result = s.unwrap(&tampered, &ctx()).await;
            assert!(
                matches!(result, Err(KeyError::Invalid)),
                "byte {byte} bit {bit}: {result:?}"
            );
        }
    }
    let p = s.key_id_prefix;
    for len in [0, p + 1, p + 13, wrapped.len() / 2, wrapped.len() - 1] {
        let result = s.unwrap(&wrapped[..len], &ctx()).await;
        assert!(
            matches!(result, Err(KeyError::Invalid)),
            "truncated to {len}: {result:?}"
        );
    }
    let mut longer = wrapped.clone();
    longer.push(0);
    let result = s.unwrap(&longer, &ctx()).await;
    assert!(
        matches!(result, Err(KeyError::Invalid)),
        "longer: {result:?}"
    );

    let result = s.providers.unwrap(&s.other_kek, &wrapped, &ctx()).await;
    match (s.other_kek_refusal, &result) {
        (Refusal::Invalid, Err(KeyError::Invalid))
        | (Refusal::Unavailable, Err(KeyError::Unavailable { .. })) => {}
        (expected, _) => panic!("another KEK: expected {expected:?}, got {result:?}"),
    }

    // Failures must not poison the provider (pooled sessions, connections).
    let key = DataKey::generate();
    let good = s.wrap(&s.kek, &key, &ctx()).await;
    assert_eq!(
        s.unwrap(&good, &ctx()).await.unwrap().expose(),
        key.expose()
    );
}

fn expect_unavailable<T: std::fmt::Debug>(result: Result<T, KeyError>, kek: &KekRef) -> String {
    match result {
        Err(KeyError::Unavailable { kek: named, reason }) => {
            assert_eq!(named, kek.to_string());
            reason
        }
        other => panic!("{kek}: expected Unavailable, got {other:?}"),
    }
}

pub async fn an_unknown_kek_is_unavailable(s: Subject) {
    let wrapped = s.wrap(&s.kek, &DataKey::generate(), &ctx()).await;
    for missing in &s.missing {
        let reason =
            expect_unavailable(s.providers.unwrap(missing, &wrapped, &ctx()).await, missing);
        match s.missing_reason {
            Reason::Exactly(r) => assert_eq!(reason, r),
            Reason::Contains(r) => assert!(reason.contains(r), "{reason}"),
            Reason::Any => {}
        }
        expect_unavailable(
            s.providers
                .wrap(missing, &DataKey::generate(), &ctx())
                .await,
            missing,
        );
    }
}

/// E4: revoking the KEK makes the data keys it wraps unreadable at once, and restoring it makes
/// the very same wrapped bytes readable again.
pub async fn a_revoked_kek_is_unavailable_until_restored(s: Subject) {
    let revoker = s.revoker.as_ref().expect("a provider that can revoke");
    let key = DataKey::generate();
    let wrapped = s.wrap(&s.kek, &key, &ctx()).await;

    revoker.revoke().await;
    let err = s.unwrap(&wrapped, &ctx()).await.unwrap_err();
    // What callers turn into key_unavailable, naming the KEK.
    assert!(err.to_string().contains(&s.kek.to_string()), "{err}");
    let reason = expect_unavailable(Err::<(), _>(err), &s.kek);
    assert!(reason.contains(s.revoked_reason), "{reason}");
    expect_unavailable(s.providers.wrap(&s.kek, &key, &ctx()).await, &s.kek);

    revoker.restore().await;
    assert_eq!(
        s.unwrap(&wrapped, &ctx()).await.unwrap().expose(),
        key.expose()
    );
}

pub async fn usable_from_many_tasks(s: Subject) {
    let s = std::sync::Arc::new(s);
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                let context = WrapContext {
                    version: i,
                    ..ctx()
                };
                let key = DataKey::generate();
                let wrapped = s.wrap(&s.kek, &key, &context).await;
                assert_eq!(
                    s.unwrap(&wrapped, &context).await.unwrap().expose(),
                    key.expose()
                );
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
}

/// One test per check for a provider module's `subject()`.
macro_rules! suite {
    ($provider:ident) => {
        mod $provider {
            #[tokio::test]
            async fn round_trip() {
                if let Some(s) = crate::$provider::subject().await {
                    super::round_trip(s).await;
                }
            }

            #[tokio::test]
            async fn another_context_is_invalid() {
                if let Some(s) = crate::$provider::subject().await {
                    super::another_context_is_invalid(s).await;
                }
            }

            #[tokio::test]
            async fn tampering_or_another_kek_is_refused() {
                if let Some(s) = crate::$provider::subject().await {
                    super::tampering_or_another_kek_is_refused(s).await;
                }
            }

            #[tokio::test]
            async fn an_unknown_kek_is_unavailable() {
                if let Some(s) = crate::$provider::subject().await {
                    super::an_unknown_kek_is_unavailable(s).await;
                }
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn usable_from_many_tasks() {
                if let Some(s) = crate::$provider::subject().await {
                    super::usable_from_many_tasks(s).await;
                }
            }
        }
    };
}

/// The revocation check, for providers that can revoke a KEK.
macro_rules! revocation {
    ($provider:ident) => {
        mod $provider {
            #[tokio::test]
            async fn a_revoked_kek_is_unavailable_until_restored() {
                if let Some(s) = crate::$provider::subject().await {
                    super::super::a_revoked_kek_is_unavailable_until_restored(s).await;
                }
            }
        }
    };
}

suite!(local);
suite!(pkcs11);
suite!(kms);
mod revocation {
    revocation!(pkcs11);
    revocation!(kms);
}
