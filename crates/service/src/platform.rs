//! The platform scope for the operator (issue 12, item 4): operator tokens, which the CLI
//! creates, lists and revokes over the schema owner's connection (no serving node holds one),
//! and the operator-only read of the platform audit scope (sign-ups, sign-ins, setup, refused
//! account requests) that `GET /v1/platform/audit` serves. Reads are audited as `audit.read`
//! in the platform scope, under the operator token's id; creating and revoking a token as
//! `operator_token.created` / `.revoked`, in the same transaction as the change.

use portcullis_core::{validate, OperatorTokenId, Permission};
use portcullis_crypto::token::{self, TokenKind};
use portcullis_crypto::Secret;
use portcullis_store::operator_tokens::{self, NewOperatorToken, OperatorToken};
use portcullis_store::queries::audit_log::{self, AuditEntry};
use portcullis_store::queries::Paged;
use portcullis_store::{AuditEvent, RequestMeta, StoreError, TenantTx, PLATFORM_SCOPE};
use sqlx::PgPool;
use time::{Duration, OffsetDateTime};

use crate::audit_log::AuditQuery;
use crate::{Credential, Principal, ServiceError, ServiceResult, Services};

/// The longest an operator token may live.
pub const MAX_LIFETIME: Duration = Duration::days(365);
/// The shortest.
pub const MIN_LIFETIME: Duration = Duration::hours(1);

/// The token itself, which exists only here, and its listing.
#[derive(Debug)]
pub struct OperatorTokenIssued {
    pub token: Secret,
    pub operator_token: OperatorToken,
}

fn cli_meta() -> RequestMeta {
    RequestMeta::system("cli", "cli")
}

/// Creates an operator token named `name` that lives `lifetime` (between [`MIN_LIFETIME`] and
/// [`MAX_LIFETIME`]; `None`: until revoked). `owner` is the schema owner's pool.
pub async fn create_operator_token(
    owner: &PgPool,
    name: &str,
    lifetime: Option<Duration>,
) -> ServiceResult<OperatorTokenIssued> {
    let name = validate::name("name", name, 200)?;
    if lifetime.is_some_and(|l| !(MIN_LIFETIME..=MAX_LIFETIME).contains(&l)) {
        return Err(ServiceError::bad_request(
            "invalid_input",
            "expires_in: must be between 1 hour and 365 days",
        ));
    }
    let now = OffsetDateTime::now_utc();
    let (token, hash) = token::generate(TokenKind::Operator);
    let id = OperatorTokenId::new();
    let hint = token::display_hint(token.expose());
    let expires_at = lifetime.map(|l| now + l);
    let event = AuditEvent::success("operator_token.created", "operator_token", id).after(
        serde_json::json!({
            "name": name,
            "hint": hint,
            "expires_at": expires_at.map(|t| t.unix_timestamp()),
        }),
    );
    let operator_token = operator_tokens::create(
        owner,
        NewOperatorToken {
            id,
            name: &name,
            hash: &hash,
            hint: &hint,
            created_at: now,
            expires_at,
        },
        &cli_meta(),
        event,
    )
    .await?;
    Ok(OperatorTokenIssued {
        token,
        operator_token,
    })
}

/// Every operator token, revoked and expired ones included.
pub async fn list_operator_tokens(owner: &PgPool) -> ServiceResult<Vec<OperatorToken>> {
    Ok(operator_tokens::list(owner).await?)
}

/// Revokes an operator token at once, on every node (operator tokens are never cached). Returns
/// the token and whether this call revoked it (`false`: it was revoked before).
pub async fn revoke_operator_token(
    owner: &PgPool,
    id: OperatorTokenId,
) -> ServiceResult<(OperatorToken, bool)> {
    let event = AuditEvent::success("operator_token.revoked", "operator_token", id);
    Ok(operator_tokens::revoke(owner, id, OffsetDateTime::now_utc(), &cli_meta(), event).await?)
}

/// The caller in the platform scope, if it presents a live operator token. A session or an
/// environment's API token is the wrong credential (403); an operator token that is unknown,
/// revoked or expired, like any other credential that is not valid, is `Unauthenticated`.
pub async fn enter_as_operator(services: &Services, caller: &Principal) -> ServiceResult<TenantTx> {
    const WRONG: &str =
        "this route needs an operator token (created with `portcullis operator token create`)";
    match &caller.credential {
        Credential::Operator(hash) => match services
            .store()
            .platform_as_operator(hash, caller.meta.clone())
            .await
        {
            Ok(tx) => Ok(tx),
            Err(StoreError::NotFound) => Err(ServiceError::Unauthenticated),
            Err(e) => Err(e.into()),
        },
        Credential::Session { .. } => Err(ServiceError::ForbiddenReason(WRONG.into())),
        Credential::ApiToken(hash) => match services
            .store()
            .tenant_as_api_token(hash, None, caller.meta.clone())
            .await
        {
            Ok(_) => Err(ServiceError::ForbiddenReason(WRONG.into())),
            Err(StoreError::NotFound) => Err(ServiceError::Unauthenticated),
            Err(e) => Err(e.into()),
        },
    }
}

/// A page of the platform scope's entries (same filters and paging as an environment's log),
/// request metadata opened, for the operator only. The read is audited.
pub async fn list_platform_audit(
    services: &Services,
    caller: &Principal,
    query: AuditQuery,
) -> ServiceResult<Paged<AuditEntry>> {
    let mut tx = enter_as_operator(services, caller).await?;
    tx.require(Permission::AuditRead)?;
    services.store().sequence(PLATFORM_SCOPE).await?;
    let filter = query.filter()?;
    let page = audit_log::list(&mut tx, query.page, &filter).await?;
    tx.audit(
        AuditEvent::success("audit.read", "audit_log", PLATFORM_SCOPE).after(serde_json::json!({
            "returned": page.items.len(),
            "action": query.action,
        })),
    )
    .await?;
    tx.commit().await?;
    Ok(page)
}
