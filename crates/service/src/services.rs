//! [`Services`]: what every use case needs, built once per node and shared by the HTTP API,
//! the CLI and the background passes. Cloning is cheap.

use std::sync::Arc;

use portcullis_core::{EnvironmentId, PermissionSet};
use portcullis_crypto::PasswordHasher;
use portcullis_store::vault::Vault;
use portcullis_store::{AuditEvent, Outcome, Store, StoreError};

use crate::config::{AuthConfig, Regions};
use crate::{ServiceError, ServiceResult};

#[derive(Clone, Debug)]
pub struct Services {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Store,
    hasher: PasswordHasher,
    auth: AuthConfig,
    regions: Regions,
    vault: Arc<Vault>,
    /// Rows per batch of the re-encryption an on-demand rotation starts.
    reencrypt_batch: i64,
    /// How many refused requests each caller may have recorded (`denials`).
    denials: crate::denials::DenialLimiter,
    /// The anchor store and the checkpoint keys this node holds (exports, the feed; L4).
    trail: crate::trail::TrailAccess,
}

impl Services {
    /// `regions` is `environments.regions`; `reencrypt_batch` is `keys.reencrypt_batch`: rows
    /// per batch of the re-encryption an on-demand rotation starts; `trail` the anchor store
    /// and the checkpoint keys the node holds.
    pub fn new(
        store: Store,
        hasher: PasswordHasher,
        auth: AuthConfig,
        regions: Regions,
        vault: Arc<Vault>,
        reencrypt_batch: i64,
        trail: crate::trail::TrailAccess,
    ) -> Self {
        Services {
            inner: Arc::new(Inner {
                store: store.with_vault(vault.clone()),
                hasher,
                auth,
                regions,
                vault,
                reencrypt_batch: reencrypt_batch.max(1),
                denials: Default::default(),
                trail,
            }),
        }
    }

    pub(crate) fn denials(&self) -> &crate::denials::DenialLimiter {
        &self.inner.denials
    }

    /// The anchor store and the checkpoint keys this node holds.
    pub fn trail(&self) -> &crate::trail::TrailAccess {
        &self.inner.trail
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

    /// The regions environments may be created in.
    pub fn regions(&self) -> &Regions {
        &self.inner.regions
    }

    pub fn reencrypt_batch(&self) -> i64 {
        self.inner.reencrypt_batch
    }

    pub fn vault(&self) -> &Vault {
        &self.inner.vault
    }

    pub fn vault_arc(&self) -> Arc<Vault> {
        self.inner.vault.clone()
    }

    /// The one place a key failure becomes an error: an unavailable key-encryption key is
    /// audited as `keys.access_failed` in `environment` (in a transaction of its own, since the
    /// caller's is being abandoned) before it is returned. Every other store error converts
    /// as usual.
    pub async fn keyed<T>(
        &self,
        environment: EnvironmentId,
        result: Result<T, StoreError>,
    ) -> ServiceResult<T> {
        match result {
            Err(StoreError::KeyUnavailable(reason)) => {
                self.audit_key_failure(environment, &reason).await;
                Err(ServiceError::KeyUnavailable(reason))
            }
            other => other.map_err(Into::into),
        }
    }

    async fn audit_key_failure(&self, environment: EnvironmentId, reason: &str) {
        let outcome = async {
            let mut tx = self
                .store()
                .tenant_as_system(environment, PermissionSet::EMPTY, Default::default())
                .await?;
            let event = AuditEvent::success("keys.access_failed", "keyring", environment)
                .outcome(Outcome::Failure)
                .after(serde_json::json!({ "reason": reason }));
            tx.audit(event).await?;
            tx.commit().await
        }
        .await;
        if let Err(e) = outcome {
            tracing::error!(error = %e, environment = %environment, "could not audit a key access failure");
        }
    }
}
