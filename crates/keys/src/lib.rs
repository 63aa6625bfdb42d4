//! Key custody: wrapping and unwrapping data keys with a key-encryption key (KEK) held by a
//! provider: a local master-key file, a PKCS#11 HSM, or AWS KMS (E2, E4).
//!
//! Architecture invariants:
//! - A KEK never leaves its provider (the local file is the exception by design and is
//!   documented as such); only 32-byte data keys cross this API, inside `DataKey`.
//! - Every wrap is bound to a `WrapContext` (environment, purpose, version) that the provider
//!   authenticates, so a wrapped key cannot be replayed for another environment or version.
//! - A disabled, deleted or destroyed KEK is `KeyError::Unavailable`, never a panic or a
//!   generic error: callers turn it into `key_unavailable`.
//! - Nothing here touches the database.

use portcullis_crypto::envelope::DataKey;
use serde::{Deserialize, Serialize};

pub mod kms;
pub mod local;
pub mod pkcs11;

/// Which key-encryption key protects an environment's data keys.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "provider", rename_all = "snake_case")]
pub enum KekRef {
    /// A master key file of this installation, by name (`master-1`, `master-2`, ...).
    Local { name: String },
    /// An AES-256 secret-key object in the configured PKCS#11 token, by `CKA_LABEL`.
    Pkcs11 { label: String },
    /// An AWS KMS symmetric key: key id, key ARN or alias ARN.
    AwsKms { key_id: String },
}

impl KekRef {
    pub fn provider(&self) -> &'static str {
        match self {
            KekRef::Local { .. } => "local",
            KekRef::Pkcs11 { .. } => "pkcs11",
            KekRef::AwsKms { .. } => "aws_kms",
        }
    }
}

impl std::fmt::Display for KekRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KekRef::Local { name } => write!(f, "local:{name}"),
            KekRef::Pkcs11 { label } => write!(f, "pkcs11:{label}"),
            KekRef::AwsKms { key_id } => write!(f, "aws_kms:{key_id}"),
        }
    }
}

/// What a wrapped key is for. Providers authenticate it (AES-GCM associated data, KMS
/// encryption context), so unwrapping under another context fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WrapContext<'a> {
    /// The environment (tenant) id, canonical hyphenated form.
    pub environment_id: &'a str,
    /// e.g. `data-key`.
    pub purpose: &'a str,
    /// The data-key version being wrapped.
    pub version: u32,
}

impl WrapContext<'_> {
    /// Canonical bytes for use as associated data.
    pub fn to_aad(&self) -> Vec<u8> {
        format!(
            "portcullis-wrap/v1|env={}|purpose={}|version={}",
            self.environment_id, self.purpose, self.version
        )
        .into_bytes()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The KEK is disabled, scheduled for deletion, destroyed, or access was revoked. The data
    /// it protects is unreadable until it is restored.
    #[error("the key-encryption key {kek} is unavailable: {reason}")]
    Unavailable { kek: String, reason: String },
    /// The wrapped bytes are corrupt or were wrapped for another context or key.
    #[error("the wrapped key is invalid or belongs to another context")]
    Invalid,
    #[error("key provider `{0}` is not configured")]
    NotConfigured(&'static str),
    /// Anything else (network, HSM session, malformed response); may succeed on retry.
    #[error("key provider error: {0}")]
    Provider(String),
    #[error("key provider configuration: {0}")]
    Config(String),
}

/// All configured providers. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Providers {
    pub local: Option<local::LocalProvider>,
    pub pkcs11: Option<pkcs11::Pkcs11Provider>,
    pub kms: Option<kms::KmsProvider>,
}

impl Providers {
    pub async fn wrap(
        &self,
        kek: &KekRef,
        key: &DataKey,
        ctx: &WrapContext<'_>,
    ) -> Result<Vec<u8>, KeyError> {
        match kek {
            KekRef::Local { name } => {
                self.local
                    .as_ref()
                    .ok_or(KeyError::NotConfigured("local"))?
                    .wrap(name, key, ctx)
                    .await
            }
            KekRef::Pkcs11 { label } => {
                self.pkcs11
                    .as_ref()
                    .ok_or(KeyError::NotConfigured("pkcs11"))?
                    .wrap(label, key, ctx)
                    .await
            }
            KekRef::AwsKms { key_id } => {
                self.kms
                    .as_ref()
                    .ok_or(KeyError::NotConfigured("aws_kms"))?
                    .wrap(key_id, key, ctx)
                    .await
            }
        }
    }

    pub async fn unwrap(
        &self,
        kek: &KekRef,
        wrapped: &[u8],
        ctx: &WrapContext<'_>,
    ) -> Result<DataKey, KeyError> {
        match kek {
            KekRef::Local { name } => {
                self.local
                    .as_ref()
                    .ok_or(KeyError::NotConfigured("local"))?
                    .unwrap(name, wrapped, ctx)
                    .await
            }
            KekRef::Pkcs11 { label } => {
                self.pkcs11
                    .as_ref()
                    .ok_or(KeyError::NotConfigured("pkcs11"))?
                    .unwrap(label, wrapped, ctx)
                    .await
            }
            KekRef::AwsKms { key_id } => {
                self.kms
                    .as_ref()
                    .ok_or(KeyError::NotConfigured("aws_kms"))?
                    .unwrap(key_id, wrapped, ctx)
                    .await
            }
        }
    }
}
