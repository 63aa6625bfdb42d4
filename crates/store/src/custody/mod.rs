//! Key custody: the key providers, the unwrapped keys held in memory and their caches. What
//! the vault (tenant keyrings), `pii` (the platform keyring) and `subjects` (erasure keys) all
//! need lives here, so they depend on it and not on each other.
//!
//! Architecture invariant: this is a leaf of the store's module graph. It imports none of
//! `vault`, `pii`, `subjects` or the transaction types; its SQL touches only the key tables
//! (`platform_keys`, `subject_keys`).

mod cache;
mod platform;
mod subject;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use portcullis_crypto::envelope::{DataKey, EnvelopeError};
use portcullis_keys::{KekRef, KeyError, Providers, WrapContext};
use uuid::Uuid;

use crate::StoreError;

pub(crate) use cache::TtlCache;
pub use platform::{PlatformKeys, SealedEmail, PLATFORM_KEYRING};
pub(crate) use platform::{EMAIL_INDEX, PII};
pub(crate) use subject::key_place as subject_key_place;
pub use subject::{SubjectKey, SubjectKeys};

/// The key providers and the keys unwrapped from them that belong to no environment: the
/// platform keys and the subject keys (D3).
#[derive(Debug)]
pub struct Custody {
    providers: Providers,
    default_kek: KekRef,
    ttl: Duration,
    platform: Mutex<Option<(Arc<PlatformKeys>, Instant)>>,
    /// Subject keys (D3) for writing, by (scope, subject). Reads never use it, so an erasure
    /// on another node shows at once; writes there may use a destroyed key for up to the TTL,
    /// which leaves those values unreadable too.
    subjects: TtlCache<(Uuid, Uuid), SubjectKey>,
    provider_calls: AtomicU64,
}

pub(crate) fn key_error(e: KeyError) -> StoreError {
    match e {
        KeyError::Unavailable { .. } | KeyError::NotConfigured(_) => {
            StoreError::KeyUnavailable(e.to_string())
        }
        KeyError::Invalid => StoreError::Integrity(
            "a wrapped data key failed to unwrap (wrong key or altered)".into(),
        ),
        KeyError::Provider(_) | KeyError::Config(_) => StoreError::KeyProvider(e.to_string()),
    }
}

pub(crate) fn envelope_error(e: EnvelopeError) -> StoreError {
    StoreError::Integrity(match e {
        EnvelopeError::Malformed => "a stored value is not a valid ciphertext".into(),
        EnvelopeError::Tampered => {
            "a stored value failed its integrity check (it was moved, copied or altered)".into()
        }
    })
}

impl Custody {
    pub(crate) fn new(
        providers: Providers,
        default_kek: KekRef,
        ttl: Duration,
        max_entries: usize,
    ) -> Custody {
        Custody {
            providers,
            default_kek,
            ttl,
            platform: Mutex::new(None),
            subjects: TtlCache::new(ttl, max_entries),
            provider_calls: AtomicU64::new(0),
        }
    }

    pub(crate) fn providers(&self) -> &Providers {
        &self.providers
    }

    pub(crate) fn default_kek(&self) -> &KekRef {
        &self.default_kek
    }

    pub(crate) fn provider_calls(&self) -> u64 {
        self.provider_calls.load(Ordering::Relaxed)
    }

    /// Wraps `key` under `kek` (one provider call).
    pub(crate) async fn wrap(
        &self,
        kek: &KekRef,
        key: &DataKey,
        ctx: &WrapContext<'_>,
    ) -> Result<Vec<u8>, StoreError> {
        self.provider_calls.fetch_add(1, Ordering::Relaxed);
        self.providers.wrap(kek, key, ctx).await.map_err(key_error)
    }

    /// Unwraps `wrapped` with `kek` (one provider call).
    pub(crate) async fn unwrap(
        &self,
        kek: &KekRef,
        wrapped: &[u8],
        ctx: &WrapContext<'_>,
    ) -> Result<DataKey, StoreError> {
        self.provider_calls.fetch_add(1, Ordering::Relaxed);
        self.providers
            .unwrap(kek, wrapped, ctx)
            .await
            .map_err(key_error)
    }

    pub(crate) async fn wrap_platform(
        &self,
        kek: &KekRef,
        key: &DataKey,
        purpose: &str,
        version: i32,
    ) -> Result<Vec<u8>, StoreError> {
        self.wrap(kek, key, &platform_context(purpose, version))
            .await
    }

    pub(crate) async fn unwrap_platform(
        &self,
        kek: &KekRef,
        wrapped: &[u8],
        purpose: &str,
        version: i32,
    ) -> Result<DataKey, StoreError> {
        self.unwrap(kek, wrapped, &platform_context(purpose, version))
            .await
    }

    /// Drops the cached platform keys (after a rewrap or a new PII key version).
    pub(crate) fn forget_platform(&self) {
        if let Ok(mut p) = self.platform.lock() {
            *p = None;
        }
    }

    fn platform_cached(&self) -> Option<Arc<PlatformKeys>> {
        let mut slot = self.platform.lock().ok()?;
        match &*slot {
            Some((keys, at)) if at.elapsed() < self.ttl => Some(keys.clone()),
            Some(_) => {
                *slot = None;
                None
            }
            None => None,
        }
    }

    fn platform_remember(&self, keys: Arc<PlatformKeys>) {
        if let Ok(mut slot) = self.platform.lock() {
            *slot = Some((keys, Instant::now()));
        }
    }
}

fn platform_context(purpose: &str, version: i32) -> WrapContext<'_> {
    WrapContext {
        environment_id: "platform",
        purpose,
        version: version as u32,
    }
}
