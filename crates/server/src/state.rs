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
}

impl AppState {
    pub fn new(store: Store, hasher: PasswordHasher, auth: AuthConfig, vault: Arc<Vault>) -> Self {
        AppState {
            inner: Arc::new(Inner {
                store: store.with_vault(vault.clone()),
                hasher,
                auth,
                vault,
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

    pub fn vault(&self) -> &Vault {
        &self.inner.vault
    }
}
