//! M1 at connect time: a key is stored only once the provider accepted it: it lists the
//! models, then answers a 1-token request to the cheapest (which also catches billing
//! problems). A refusal names the provider's reason; nothing is stored.

use portcullis_core::{EnvironmentId, Permission};
use portcullis_outbound::{Method, Request};
use portcullis_service::model_key::{self, ModelKeyInput};
use portcullis_service::{Principal, ServiceError, ServiceResult, Services};
use portcullis_store::queries::integrations::ModelKey;
use serde_json::Value;

use crate::gateway::Gateway;
use crate::wire::DEFAULT_ANTHROPIC_VERSION;

/// `PUT /v1/environments/{id}/model-key`: checks the caller may set it (before the key is
/// sent anywhere, so the route is no key-testing oracle for others), checks the key with the
/// provider, then stores it sealed (`model_key::put_model_key`, which checks again).
pub async fn connect_model_key(
    gw: &Gateway,
    services: &Services,
    caller: &Principal,
    env: EnvironmentId,
    input: ModelKeyInput,
) -> ServiceResult<ModelKey> {
    let tx = caller.enter(services, env).await?;
    tx.require(Permission::KeysManage)?;
    tx.commit().await?;
    if input.provider != "anthropic" {
        return Err(ServiceError::bad_request(
            "invalid_input",
            "provider: the gateway supports `anthropic` keys",
        ));
    }
    if input.api_key.is_empty() || input.api_key.len() > 16 * 1024 {
        return Err(ServiceError::bad_request(
            "invalid_input",
            "api_key: must be 1 to 16384 bytes",
        ));
    }
    let key = input.api_key.as_str();
    check(gw, key, Method::GET, "/v1/models", None).await?;
    let ping = serde_json::json!({
        "model": gw.inner.validation_model,
        "max_tokens": 1,
        "messages": [{ "role": "user", "content": "ping" }],
    });
    check(gw, key, Method::POST, "/v1/messages", Some(ping)).await?;
    model_key::put_model_key(services, caller, env, input).await
}

async fn check(
    gw: &Gateway,
    key: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> ServiceResult<()> {
    let mut request = Request::new(method, gw.inner.base.clone(), path)
        .with_header("x-api-key", key)
        .with_header("anthropic-version", DEFAULT_ANTHROPIC_VERSION)
        .with_header("user-agent", "portcullis-gateway");
    if let Some(body) = body {
        request = request
            .with_header("content-type", "application/json")
            .with_body(body.to_string().into_bytes());
    }
    let response = gw.inner.client.send(&request).await.map_err(|e| {
        ServiceError::Unavailable(format!("checking the model key with the provider: {e}"))
    })?;
    if response.is_success() {
        return Ok(());
    }
    let body: Value = response.json().unwrap_or(Value::Null);
    let reason = body["error"]["message"]
        .as_str()
        .map(portcullis_outbound::sanitize_remote_message)
        .unwrap_or_else(|| "no reason given".to_owned());
    Err(ServiceError::bad_request(
        "model_key_invalid",
        format!(
            "the provider refused this key ({} on {path}): {reason}",
            response.status
        ),
    ))
}
