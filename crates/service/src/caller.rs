//! Who is calling: a verified session, a presented API token or a presented operator token,
//! with the request metadata the audit trail records. Session tokens are resolved by
//! [`authenticate`]; API tokens are resolved when entering their environment, and operator
//! tokens when entering the platform scope (`crate::platform`), the only places each is valid.

use portcullis_core::IdentityId;
use portcullis_core::{EnvironmentId, ProjectId, SessionId};
use portcullis_crypto::{TokenHash, TokenKind};
use portcullis_store::{RequestMeta, StoreError, TenantTx};

use crate::{ServiceError, ServiceResult, Services};

#[derive(Clone, Debug)]
pub enum Credential {
    Session {
        identity: IdentityId,
        session_id: SessionId,
    },
    ApiToken(TokenHash),
    /// An operator token (`pcs_op_`), valid only on the platform routes.
    Operator(TokenHash),
}

/// An authenticated caller plus request metadata for the audit trail.
#[derive(Clone, Debug)]
pub struct Principal {
    pub credential: Credential,
    pub meta: RequestMeta,
}

/// Resolves a presented bearer token: a live session, or an API token to be verified when its
/// environment is entered. Anything else is `Unauthenticated`.
pub async fn authenticate(
    services: &Services,
    token: &str,
    meta: RequestMeta,
) -> ServiceResult<Principal> {
    let hash = TokenHash::of(token);
    match TokenKind::of(token) {
        Some(TokenKind::Session) => {
            let session = services
                .store()
                .session(&hash, meta.clone())
                .await?
                .ok_or(ServiceError::Unauthenticated)?;
            Ok(Principal {
                credential: Credential::Session {
                    identity: session.identity,
                    session_id: SessionId::from_uuid(session.session_id),
                },
                meta,
            })
        }
        Some(TokenKind::ApiToken) => Ok(Principal {
            credential: Credential::ApiToken(hash),
            meta,
        }),
        Some(TokenKind::Operator) => Ok(Principal {
            credential: Credential::Operator(hash),
            meta,
        }),
        _ => Err(ServiceError::Unauthenticated),
    }
}

impl Principal {
    /// The signed-in identity; API tokens act only inside their environment. A token that is
    /// unknown, revoked or expired is `Unauthenticated` (401) here too, like everywhere else; a
    /// valid one is refused as the wrong credential for the route (403).
    pub async fn identity(&self, services: &Services) -> ServiceResult<IdentityId> {
        match &self.credential {
            Credential::Session { identity, .. } => Ok(*identity),
            Credential::ApiToken(hash) => {
                match services
                    .store()
                    .tenant_as_api_token(hash, None, self.meta.clone())
                    .await
                {
                    Ok(_) => Err(ServiceError::ForbiddenReason(
                        "API tokens can only be used on their environment's routes".into(),
                    )),
                    Err(StoreError::NotFound) => Err(ServiceError::Unauthenticated),
                    Err(e) => Err(e.into()),
                }
            }
            Credential::Operator(hash) => Err(self.operator_elsewhere(services, hash).await),
        }
    }

    /// An operator token presented outside the platform routes: a live one is the wrong
    /// credential for the route (403), anything else is `Unauthenticated` (401).
    async fn operator_elsewhere(&self, services: &Services, hash: &TokenHash) -> ServiceError {
        match services
            .store()
            .platform_as_operator(hash, self.meta.clone())
            .await
        {
            Ok(_) => ServiceError::ForbiddenReason(
                "operator tokens can only be used on the /v1/platform routes".into(),
            ),
            Err(StoreError::NotFound) => ServiceError::Unauthenticated,
            Err(e) => e.into(),
        }
    }

    /// The session making the request, if it is one.
    pub fn session_id(&self) -> Option<SessionId> {
        match self.credential {
            Credential::Session { session_id, .. } => Some(session_id),
            Credential::ApiToken(_) | Credential::Operator(_) => None,
        }
    }

    /// Opens a transaction inside the environment an API token belongs to: the token names it
    /// (the model gateway's routes carry no environment). An unknown, revoked or expired token
    /// is `Unauthenticated`; a live session or operator token is the wrong credential
    /// (`ForbiddenReason`), anything else `Unauthenticated`.
    pub async fn enter_token_environment(&self, services: &Services) -> ServiceResult<TenantTx> {
        match &self.credential {
            Credential::ApiToken(hash) => {
                match services
                    .store()
                    .tenant_as_api_token(hash, None, self.meta.clone())
                    .await
                {
                    Ok(tx) => Ok(tx),
                    Err(StoreError::NotFound) => Err(ServiceError::Unauthenticated),
                    Err(e) => Err(e.into()),
                }
            }
            Credential::Session { .. } => Err(ServiceError::ForbiddenReason(
                "this route takes an environment's API token (pcs_live_...), not a session".into(),
            )),
            Credential::Operator(hash) => Err(self.operator_elsewhere(services, hash).await),
        }
    }

    /// Opens a transaction inside `environment` as this caller. Someone who is not a member,
    /// or a token of another environment, gets `NotFound`: the environment's existence is not
    /// revealed.
    pub async fn enter(
        &self,
        services: &Services,
        environment: EnvironmentId,
    ) -> ServiceResult<TenantTx> {
        self.open(services, environment, None).await
    }

    /// [`Principal::enter`], narrowed to `project` (see `TenantTx::enter_project`): a project
    /// that does not exist in the environment is `NotFound`.
    pub async fn enter_project(
        &self,
        services: &Services,
        environment: EnvironmentId,
        project: ProjectId,
    ) -> ServiceResult<TenantTx> {
        self.open(services, environment, Some(project)).await
    }

    async fn open(
        &self,
        services: &Services,
        environment: EnvironmentId,
        project: Option<ProjectId>,
    ) -> ServiceResult<TenantTx> {
        match &self.credential {
            Credential::Session { identity, .. } => Ok(services
                .store()
                .tenant_as_identity(environment, *identity, project, self.meta.clone())
                .await?),
            Credential::ApiToken(hash) => {
                let tx = match services
                    .store()
                    .tenant_as_api_token(hash, project.map(|p| (environment, p)), self.meta.clone())
                    .await
                {
                    Ok(tx) => tx,
                    Err(StoreError::NotFound) => return Err(ServiceError::Unauthenticated),
                    Err(e) => return Err(e.into()),
                };
                if tx.environment_id() != environment {
                    return Err(ServiceError::NotFound);
                }
                Ok(tx)
            }
            Credential::Operator(hash) => Err(self.operator_elsewhere(services, hash).await),
        }
    }
}
