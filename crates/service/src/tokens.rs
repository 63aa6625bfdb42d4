//! API tokens of an environment: created by a person with a role no greater than their own,
//! returned once, stored only as SHA-256 (E3), listed by a short hint, revoked.

use portcullis_core::{validate, ApiTokenId, EnvironmentId, Permission};
use portcullis_crypto::token::{self, TokenKind};
use portcullis_crypto::Secret;
use portcullis_store::queries::tokens::{self, ApiToken};
use portcullis_store::queries::{Page, Paged};
use portcullis_store::AuditEvent;
use time::OffsetDateTime;

use crate::roles::assignable_role;
use crate::{Principal, ServiceError, ServiceResult, Services};

#[derive(Debug)]
pub struct NewToken {
    pub name: String,
    /// The token's role; never more than the creator holds.
    pub role: String,
    /// Lifetime in days (1-365); `None` lives until revoked.
    pub expires_in_days: Option<u32>,
}

/// The token itself, which exists only here, and its listing.
#[derive(Debug)]
pub struct TokenIssued {
    pub token: Secret,
    pub api_token: ApiToken,
}

pub async fn list_tokens(
    services: &Services,
    caller: &Principal,
    env: EnvironmentId,
    page: Page,
) -> ServiceResult<Paged<ApiToken>> {
    let mut tx = caller.enter(services, env).await?;
    tx.require(Permission::TokensManage)?;
    let list = tokens::list(&mut tx, page).await?;
    tx.commit().await?;
    Ok(list)
}

pub async fn create_token(
    services: &Services,
    caller: &Principal,
    env: EnvironmentId,
    input: NewToken,
) -> ServiceResult<TokenIssued> {
    let mut tx = caller.enter(services, env).await?;
    tx.require(Permission::TokensManage)?;
    let creator = tx.caller().actor.identity().ok_or_else(|| {
        ServiceError::ForbiddenReason(
            "API tokens are created by people, not by other tokens".into(),
        )
    })?;
    let name = validate::name("name", &input.name, 200)?;
    let role = assignable_role(&mut tx, &input.role).await?;
    let now = OffsetDateTime::now_utc();
    let expires_at = match input.expires_in_days {
        Some(d @ 1..=365) => Some(now + time::Duration::days(i64::from(d))),
        Some(_) => {
            return Err(ServiceError::bad_request(
                "invalid_input",
                "expires_in_days: must be between 1 and 365",
            ))
        }
        None => None,
    };
    let (token, hash) = token::generate(TokenKind::ApiToken);
    let id = ApiTokenId::new();
    let api_token = tokens::create(
        &mut tx,
        id,
        &name,
        &hash,
        &token::display_hint(token.expose()),
        role,
        creator.as_uuid(),
        now,
        expires_at,
    )
    .await?;
    tx.audit(AuditEvent::success("token.created", "api_token", id).after(&api_token))
        .await?;
    tx.commit().await?;
    Ok(TokenIssued { token, api_token })
}

pub async fn revoke_token(
    services: &Services,
    caller: &Principal,
    env: EnvironmentId,
    id: ApiTokenId,
) -> ServiceResult<ApiToken> {
    let mut tx = caller.enter(services, env).await?;
    tx.require(Permission::TokensManage)?;
    let t = tokens::revoke(&mut tx, id, OffsetDateTime::now_utc()).await?;
    tx.audit(AuditEvent::success("token.revoked", "api_token", id))
        .await?;
    tx.commit().await?;
    Ok(t)
}
