use std::sync::Arc;

use portcullis_crypto::PasswordHasher;
use portcullis_service::config::{AuthConfig, Regions};
use portcullis_service::Services;
use portcullis_store::vault::Vault;
use portcullis_store::Store;

use crate::auth::PublicOrigins;

/// Shared by every request: the node's [`Services`]. Cloning is cheap.
#[derive(Clone, Debug)]
pub struct AppState {
    services: Services,
    public_origins: Arc<PublicOrigins>,
    /// The model gateway; `serve` always sets it (`with_gateway`).
    gateway: Option<portcullis_gateway::Gateway>,
}

impl AppState {
    /// `regions` is `environments.regions`; `reencrypt_batch` is `keys.reencrypt_batch`: rows
    /// per batch of the re-encryption a rotation through the API starts; `trail` the anchor
    /// store and the checkpoint keys the node holds.
    pub fn new(
        store: Store,
        hasher: PasswordHasher,
        auth: AuthConfig,
        regions: Regions,
        vault: Arc<Vault>,
        reencrypt_batch: i64,
        trail: portcullis_service::trail::TrailAccess,
    ) -> Self {
        AppState {
            services: Services::new(store, hasher, auth, regions, vault, reencrypt_batch, trail),
            public_origins: Arc::new(PublicOrigins::default()),
            gateway: None,
        }
    }

    /// The model gateway this node's `/gateway/v1` routes and model-key checks use.
    pub fn with_gateway(mut self, gateway: portcullis_gateway::Gateway) -> Self {
        self.gateway = Some(gateway);
        self
    }

    pub fn gateway(&self) -> Option<&portcullis_gateway::Gateway> {
        self.gateway.as_ref()
    }

    /// The origins a cookie-authenticated state-changing request must come from
    /// (`server.public_origins`; by default those of `ServerConfig::default()`).
    pub fn with_public_origins(mut self, origins: PublicOrigins) -> Self {
        self.public_origins = Arc::new(origins);
        self
    }

    pub fn public_origins(&self) -> &PublicOrigins {
        &self.public_origins
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
