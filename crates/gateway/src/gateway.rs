//! [`Gateway`]: what a node holds for model calls, built once from `[gateway]`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use portcullis_crypto::Secret;
use portcullis_outbound::{Client, Endpoint, Limits, StreamLimits};
use portcullis_service::config::GatewayConfig;

use crate::routing::Router;

/// The provider's origin, the outbound client, the platform key and the trial rule. Cheap to
/// clone.
#[derive(Clone)]
pub struct Gateway {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub base: Endpoint,
    pub client: Client,
    pub platform_key: Option<Secret>,
    pub trial: time::Duration,
    pub console_url: String,
    pub validation_model: String,
    pub stream: StreamLimits,
    pub router: Router,
}

impl fmt::Debug for Gateway {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gateway")
            .field("base", &self.inner.base)
            .field("platform_key", &self.inner.platform_key.is_some())
            .field("trial", &self.inner.trial)
            .field("router", &self.inner.router)
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// The tier registry, allow-list and prices this gateway routes with.
    pub fn router(&self) -> &Router {
        &self.inner.router
    }

    /// From the configuration: the platform key is read from its file (trimmed) now, so a
    /// missing or empty file stops the node at start rather than failing calls later.
    pub fn from_config(config: &GatewayConfig) -> Result<Gateway, String> {
        let limits = limits(config);
        let client = Client::new(limits).map_err(|e| e.to_string())?;
        let key = match &config.platform_key_file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("gateway.platform_key_file {}: {e}", path.display()))?;
                let key = text.trim();
                if key.is_empty() {
                    return Err(format!(
                        "gateway.platform_key_file {} is empty",
                        path.display()
                    ));
                }
                Some(Secret::new(key.to_owned()))
            }
            None => None,
        };
        Gateway::new(config, client, key)
    }

    /// With a client and platform key of the caller's (tests: a client trusting test roots).
    pub fn new(
        config: &GatewayConfig,
        client: Client,
        platform_key: Option<Secret>,
    ) -> Result<Gateway, String> {
        let base = Endpoint::parse(&config.anthropic_base_url)
            .map_err(|e| format!("gateway.anthropic_base_url: {e}"))?;
        let router = Router::from_config(config)?;
        Ok(Gateway {
            inner: Arc::new(Inner {
                base,
                client,
                platform_key,
                trial: time::Duration::days(i64::from(config.trial_days)),
                console_url: config.console_url.clone(),
                validation_model: config.validation_model.clone(),
                stream: StreamLimits {
                    idle_timeout: Duration::from_secs(config.upstream_timeout_seconds.max(1)),
                    max_bytes: config.max_response_bytes,
                },
                router,
            }),
        })
    }
}

/// The outbound limits for `config`: the upstream may take its time to start answering.
pub fn limits(config: &GatewayConfig) -> Limits {
    Limits {
        connect_timeout: Duration::from_secs(10),
        request_timeout: Duration::from_secs(config.upstream_timeout_seconds.max(1)),
        max_response_bytes: config.max_response_bytes,
    }
}
