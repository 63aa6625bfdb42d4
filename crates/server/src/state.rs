use std::sync::Arc;

use portcullis_crypto::PasswordHasher;
use portcullis_store::vault::Vault;
use portcullis_store::Store;

use crate::config::AuthConfig;

/// Shared by every request. Cloning is cheap.
#[derive(Clone, Debug)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Store,
    hasher: PasswordHasher,
    auth: AuthConfig,
    vault: Arc<Vault>,
    /// Rows per batch of the re-encryption a rotation through the API starts.
    reencrypt_batch: i64,
}

impl AppState {
    /// `reencrypt_batch` is `keys.reencrypt_batch`: rows per batch of the re-encryption a
    /// rotation through the API starts.
    pub fn new(
        store: Store,
        hasher: PasswordHasher,
        auth: AuthConfig,
        vault: Arc<Vault>,
        reencrypt_batch: i64,
    ) -> Self {
        AppState {
            inner: Arc::new(Inner {
                store: store.with_vault(vault.clone()),
                hasher,
                auth,
                vault,
                reencrypt_batch: reencrypt_batch.max(1),
            }),
        }
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn hasher(&self) -> &PasswordHasher {
        &self.inner.hasher
    }

    pub fn auth_config(&self) -> &AuthConfig {
        &self.inner.auth
    }

    pub fn reencrypt_batch(&self) -> i64 {
        self.inner.reencrypt_batch
    }

    pub fn vault(&self) -> &Vault {
        &self.inner.vault
    }
}
