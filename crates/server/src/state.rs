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
    pub fn new(store: Store, hasher: PasswordHasher, auth: AuthConfig, vault: Arc<Vault>) -> Self {
        AppState {
            inner: Arc::new(Inner {
                store: store.with_vault(vault.clone()),
                hasher,
                auth,
                vault,
                reencrypt_batch: crate::config::KeysConfig::default().reencrypt_batch,
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

    /// This state with the configured re-encryption batch size (`keys.reencrypt_batch`).
    pub fn with_reencrypt_batch(self, batch: i64) -> Self {
        let mut inner = Arc::try_unwrap(self.inner).unwrap_or_else(|shared| Inner {
            store: shared.store.clone(),
            hasher: shared.hasher.clone(),
            auth: shared.auth.clone(),
            vault: shared.vault.clone(),
            reencrypt_batch: shared.reencrypt_batch,
        });
        inner.reencrypt_batch = batch.max(1);
        AppState {
            inner: Arc::new(inner),
        }
    }

    pub fn reencrypt_batch(&self) -> i64 {
        self.inner.reencrypt_batch
    }

    pub fn vault(&self) -> &Vault {
        &self.inner.vault
    }
}
