//! Integrations: third-party credentials (E2). They are sealed here before the store sees
//! them and are write-only to callers: results carry a hint, never the credentials. Only
//! [`credentials`] opens them, for Portcullis's own calls to the integration.

use portcullis_core::{validate, EnvironmentId, IntegrationId, Permission};
use portcullis_crypto::Secret;
use portcullis_store::queries::integrations::{self, Integration, CREDENTIALS};
use portcullis_store::queries::{Page, Paged};
use portcullis_store::vault::{EncryptedColumn, Keyring};
use portcullis_store::{AuditEvent, TenantTx};
use time::OffsetDateTime;

use crate::{Principal, ServiceError, ServiceResult, Services};

#[derive(Clone)]
pub struct NewIntegration {
    /// e.g. `slack`, `github`.
    pub kind: String,
    pub name: String,
    pub credentials: String,
}

impl std::fmt::Debug for NewIntegration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewIntegration")
            .field("kind", &self.kind)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// `…abcd` for a secret: enough to recognise, useless to an attacker.
pub fn hint(secret: &str) -> String {
    let chars: Vec<char> = secret.chars().collect();
    let tail: String = chars[chars.len().saturating_sub(4)..].iter().collect();
    if chars.len() < 12 {
        "…".into()
    } else {
        format!("…{tail}")
    }
}

/// A lowercase identifier such as an integration kind or a model provider.
pub(crate) fn kind(value: &str, field: &'static str) -> ServiceResult<String> {
    let ok = (2..=40).contains(&value.len())
        && value.starts_with(|c: char| c.is_ascii_lowercase())
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(value.to_owned())
    } else {
        Err(ServiceError::bad_request(
            "invalid_input",
            format!("{field}: must be 2-40 characters of a-z, 0-9 and _"),
        ))
    }
}

pub(crate) fn secret_input(value: &str, field: &'static str) -> ServiceResult<()> {
    if value.is_empty() || value.len() > 16 * 1024 {
        return Err(ServiceError::bad_request(
            "invalid_input",
            format!("{field}: must be 1 to 16384 bytes"),
        ));
    }
    Ok(())
}

/// The environment's keyring, a key failure audited.
pub(crate) async fn ring(services: &Services, tx: &mut TenantTx) -> ServiceResult<Keyring> {
    let ring = services.vault().ring(tx).await;
    services.keyed(tx.environment_id(), ring).await
}

/// Seals `secret` for `row` of `column` with the active data key.
pub(crate) async fn seal(
    services: &Services,
    tx: &mut TenantTx,
    ring: &Keyring,
    column: &EncryptedColumn,
    row: &str,
    secret: &str,
) -> ServiceResult<(Vec<u8>, i32)> {
    let sealed = services
        .vault()
        .seal(tx, ring, column, row, secret.as_bytes())
        .await;
    services.keyed(tx.environment_id(), sealed).await
}

pub async fn list_integrations(
    services: &Services,
    caller: &Principal,
    env: EnvironmentId,
    page: Page,
) -> ServiceResult<Paged<Integration>> {
    let mut tx = caller.enter(services, env).await?;
    tx.require(Permission::IntegrationsRead)?;
    let list = integrations::list(&mut tx, page).await?;
    tx.commit().await?;
    Ok(list)
}

/// Stores an integration with its credentials (write-only).
pub async fn create_integration(
    services: &Services,
    caller: &Principal,
    env: EnvironmentId,
    input: NewIntegration,
) -> ServiceResult<Integration> {
    let mut tx = caller.enter(services, env).await?;
    tx.require(Permission::IntegrationsManage)?;
    let kind = kind(&input.kind, "kind")?;
    let name = validate::name("name", &input.name, 200)?;
    secret_input(&input.credentials, "credentials")?;
    let ring = ring(services, &mut tx).await?;
    let id = IntegrationId::new();
    let actor = tx.caller().actor.id().unwrap_or_default();
    let (ct, v) = seal(
        services,
        &mut tx,
        &ring,
        CREDENTIALS,
        &id.to_string(),
        &input.credentials,
    )
    .await?;
    let integration = integrations::create(
        &mut tx,
        id,
        &kind,
        &name,
        (&ct, v),
        &hint(&input.credentials),
        actor,
        OffsetDateTime::now_utc(),
    )
    .await?;
    tx.audit(AuditEvent::success("integration.created", "integration", id).after(&integration))
        .await?;
    tx.commit().await?;
    Ok(integration)
}

/// Replaces an integration's credentials.
pub async fn replace_credentials(
    services: &Services,
    caller: &Principal,
    env: EnvironmentId,
    id: IntegrationId,
    credentials: &str,
) -> ServiceResult<Integration> {
    let mut tx = caller.enter(services, env).await?;
    tx.require(Permission::IntegrationsManage)?;
    secret_input(credentials, "credentials")?;
    let before = integrations::get(&mut tx, id).await?;
    let ring = ring(services, &mut tx).await?;
    let (ct, v) = seal(
        services,
        &mut tx,
        &ring,
        CREDENTIALS,
        &id.to_string(),
        credentials,
    )
    .await?;
    let after = integrations::replace_credentials(
        &mut tx,
        id,
        (&ct, v),
        &hint(credentials),
        OffsetDateTime::now_utc(),
    )
    .await?;
    tx.audit(
        AuditEvent::success("integration.credentials_replaced", "integration", id)
            .before(serde_json::json!({ "credentials_hint": before.credentials_hint }))
            .after(serde_json::json!({ "credentials_hint": after.credentials_hint })),
    )
    .await?;
    tx.commit().await?;
    Ok(after)
}

pub async fn delete_integration(
    services: &Services,
    caller: &Principal,
    env: EnvironmentId,
    id: IntegrationId,
) -> ServiceResult<()> {
    let mut tx = caller.enter(services, env).await?;
    tx.require(Permission::IntegrationsManage)?;
    let before = integrations::get(&mut tx, id).await?;
    integrations::delete(&mut tx, id).await?;
    tx.audit(AuditEvent::success("integration.deleted", "integration", id).before(&before))
        .await?;
    tx.commit().await?;
    Ok(())
}

/// The plaintext credentials, for Portcullis's own call to the integration inside `tx`. Never
/// for a response.
pub async fn credentials(
    services: &Services,
    tx: &mut TenantTx,
    id: IntegrationId,
) -> ServiceResult<Secret> {
    let ct = integrations::credentials_ciphertext(tx, id).await?;
    let ring = ring(services, tx).await?;
    let opened = services
        .vault()
        .open_text(tx, &ring, CREDENTIALS, &id.to_string(), &ct)
        .await;
    Ok(Secret::new(
        services.keyed(tx.environment_id(), opened).await?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hint_shows_four_characters_of_long_secrets_only() {
        assert_eq!(hint("sk-0123456789abcdef"), "…cdef");
        assert_eq!(hint("short-secr"), "…");
    }
}
