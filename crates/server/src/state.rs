use std::sync::Arc;

use portcullis_crypto::PasswordHasher;
use portcullis_service::config::AuthConfig;
use portcullis_service::Services;
use portcullis_store::vault::Vault;
use portcullis_store::Store;

/// Shared by every request: the node's [`Services`]. Cloning is cheap.
#[derive(Clone, Debug)]
pub struct AppState {
    services: Services,
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
            services: Services::new(store, hasher, auth, vault, reencrypt_batch),
        }
    }

    pub fn services(&self) -> &Services {
        &self.services
    }
}

impl std::ops::Deref for AppState {
    type Target = Services;
    fn deref(&self) -> &Services {
        &self.services
    }
}
