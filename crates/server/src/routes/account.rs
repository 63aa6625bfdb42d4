//! Sign-up, login, sessions, password changes, first-run setup and invitation acceptance:
//! everything that happens before, or outside, a tenant context.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use portcullis_core::{validate, EnvironmentId, IdentityId, SessionId};
use portcullis_crypto::token::{self, TokenKind};
use portcullis_crypto::{Secret, TokenHash};
use portcullis_store::queries::environments::{self, MyEnvironment};
use portcullis_store::queries::identities::{self, Identity};
use portcullis_store::queries::installation;
use portcullis_store::queries::invitations::{self, Unusable};
use portcullis_store::queries::sessions::{self, Session};
use portcullis_store::{Actor, AuditEvent, AuthTx, Outcome};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::auth::{clear_cookie, session_cookie, Auth, Credential, Meta};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{Json, Path};
use crate::state::AppState;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignupRequest {
    pub email: String,
    #[schema(min_length = 12)]
    pub password: String,
    pub display_name: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetupRequest {
    /// The one-time token printed by `portcullis serve` on first start.
    pub setup_token: String,
    pub email: String,
    pub password: String,
    pub display_name: Option<String>,
    pub environment_name: String,
    pub region: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    pub current_password: String,
    pub new_password: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptInvitation {
    /// The `pcs_inv_...` token from the invitation link.
    pub token: String,
}

/// A new session. The token is shown once; it is also set as an HttpOnly cookie.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionIssued {
    pub token: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: OffsetDateTime,
    pub identity: Identity,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SetupDone {
    pub session: SessionIssued,
    pub environment: environments::Environment,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Me {
    pub identity: Identity,
    pub environments: Vec<MyEnvironment>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionInfo {
    #[serde(flatten)]
    pub session: Session,
    /// Whether this is the session making the request.
    pub current: bool,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Joined {
    pub environment_id: Uuid,
    pub role: String,
}

fn display_name(given: Option<&str>, email: &str) -> Result<String, ApiError> {
    match given {
        Some(n) => Ok(validate::name("display_name", n, 200)?),
        None => Ok(email.split('@').next().unwrap_or(email).to_owned()),
    }
}

/// Argon2 is deliberately slow: keep it off the async workers.
async fn hash_password(state: &AppState, password: String) -> ApiResult<String> {
    let hasher = state.hasher().clone();
    let password = Secret::new(password);
    tokio::task::spawn_blocking(move || hasher.hash(password.expose()))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| ApiError::Internal(e.to_string()))
}

async fn verify_password(
    state: &AppState,
    password: String,
    stored: Option<String>,
) -> ApiResult<bool> {
    let hasher = state.hasher().clone();
    let password = Secret::new(password);
    tokio::task::spawn_blocking(move || match stored {
        Some(h) => hasher.verify(password.expose(), &h),
        None => hasher.verify_dummy(password.expose()),
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))
}

async fn issue_session(
    state: &AppState,
    tx: &mut AuthTx,
    identity: IdentityId,
) -> ApiResult<(Secret, OffsetDateTime)> {
    let now = OffsetDateTime::now_utc();
    let expires_at = now + time::Duration::hours(i64::from(state.auth_config().session_ttl_hours));
    let (token, hash) = token::generate(TokenKind::Session);
    sessions::create(tx, SessionId::new(), identity, &hash, now, expires_at).await?;
    Ok((token, expires_at))
}

fn with_cookie<T: Serialize>(
    status: StatusCode,
    token: &Secret,
    expires_at: OffsetDateTime,
    body: T,
) -> Response {
    let max_age = (expires_at - OffsetDateTime::now_utc())
        .whole_seconds()
        .max(0);
    (
        status,
        [(header::SET_COOKIE, session_cookie(token.expose(), max_age))],
        axum::Json(body),
    )
        .into_response()
}

async fn create_identity(
    state: &AppState,
    tx: &mut AuthTx,
    email: &str,
    password: String,
    name: Option<&str>,
) -> ApiResult<Identity> {
    let email = validate::email(email)?;
    validate::password(&password)?;
    let display = display_name(name, &email)?;
    let hash = hash_password(state, password).await?;
    let id = IdentityId::new();
    let identity = identities::create(
        tx,
        state.vault(),
        id,
        &email,
        &display,
        &hash,
        OffsetDateTime::now_utc(),
    )
    .await?;
    tx.audit(
        Actor::Identity(id),
        AuditEvent::success("identity.signed_up", "identity", id),
    )
    .await?;
    Ok(identity)
}

/// Create the first owner with the one-time setup token.
#[utoipa::path(post, path = "/v1/setup", tag = "account", security(()), request_body = SetupRequest,
    responses((status = 201, body = SetupDone), (status = 403, body = ErrorBody, description = "wrong or used setup token"), (status = 400, body = ErrorBody)))]
pub async fn setup(
    State(state): State<AppState>,
    Meta(meta): Meta,
    Json(req): Json<SetupRequest>,
) -> ApiResult<Response> {
    let name = validate::name("environment_name", &req.environment_name, 200)?;
    let region = validate::region(&req.region)?;
    let mut tx = state.store().auth(meta.clone()).await?;
    let hash = TokenHash::of(&req.setup_token);
    if TokenKind::of(&req.setup_token) != Some(TokenKind::Setup)
        || !installation::complete_setup(&mut tx, &hash, OffsetDateTime::now_utc()).await?
    {
        return Err(ApiError::ForbiddenReason(
            "the setup token is wrong or setup has already been completed".into(),
        ));
    }
    let identity = create_identity(
        &state,
        &mut tx,
        &req.email,
        req.password,
        req.display_name.as_deref(),
    )
    .await?;
    let id = IdentityId::from_uuid(identity.identity_id);
    tx.audit(
        Actor::Identity(id),
        AuditEvent::success("setup.completed", "identity", id),
    )
    .await?;
    let (token, expires_at) = issue_session(&state, &mut tx, id).await?;
    tx.commit().await?;

    let env_id = EnvironmentId::new();
    let mut etx = state.store().new_environment(env_id, id, meta).await?;
    let environment =
        environments::create(&mut etx, &name, &region, id, OffsetDateTime::now_utc()).await?;
    etx.audit(
        AuditEvent::success("environment.created", "environment", env_id).after(&environment),
    )
    .await?;
    etx.commit().await?;
    let body = SetupDone {
        session: SessionIssued {
            token: token.expose().to_owned(),
            expires_at,
            identity,
        },
        environment,
    };
    Ok(with_cookie(StatusCode::CREATED, &token, expires_at, body))
}

/// Create an account (when open sign-up is enabled) and sign in.
#[utoipa::path(post, path = "/v1/auth/signup", tag = "account", security(()), request_body = SignupRequest,
    responses((status = 201, body = SessionIssued), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody), (status = 403, body = ErrorBody, description = "sign-up is disabled")))]
pub async fn signup(
    State(state): State<AppState>,
    Meta(meta): Meta,
    Json(req): Json<SignupRequest>,
) -> ApiResult<Response> {
    if !state.auth_config().open_signup {
        return Err(ApiError::ForbiddenReason(
            "sign-up is disabled; ask an administrator for an invitation".into(),
        ));
    }
    let mut tx = state.store().auth(meta).await?;
    let identity = create_identity(
        &state,
        &mut tx,
        &req.email,
        req.password,
        req.display_name.as_deref(),
    )
    .await?;
    let (token, expires_at) =
        issue_session(&state, &mut tx, IdentityId::from_uuid(identity.identity_id)).await?;
    tx.commit().await?;
    let body = SessionIssued {
        token: token.expose().to_owned(),
        expires_at,
        identity,
    };
    Ok(with_cookie(StatusCode::CREATED, &token, expires_at, body))
}

fn backoff(failures: i32, threshold: u32) -> Option<time::Duration> {
    let over = i64::from(failures) - i64::from(threshold);
    (over >= 0).then(|| time::Duration::seconds((1i64 << over.min(10)).min(900)))
}

/// Sign in. Wrong email and wrong password are indistinguishable, in body and in timing.
#[utoipa::path(post, path = "/v1/auth/login", tag = "account", security(()), request_body = LoginRequest,
    responses((status = 200, body = SessionIssued), (status = 401, body = ErrorBody)))]
pub async fn login(
    State(state): State<AppState>,
    Meta(meta): Meta,
    Json(req): Json<LoginRequest>,
) -> ApiResult<Response> {
    let now = OffsetDateTime::now_utc();
    let email = validate::email(&req.email).ok();
    let record = match &email {
        Some(e) => {
            let mut tx = state.store().auth(meta.clone()).await?;
            let r = identities::login_record(&mut tx, state.vault(), e).await?;
            tx.commit().await?;
            r
        }
        None => None,
    };
    let locked = record
        .as_ref()
        .is_some_and(|r| r.locked_until.is_some_and(|t| t > now));
    let stored = record
        .as_ref()
        .filter(|_| !locked)
        .map(|r| r.password_hash.clone());
    let ok = verify_password(&state, req.password, stored).await?;

    let mut tx = state.store().auth(meta).await?;
    let record = match record {
        Some(r) if ok => r,
        record => {
            if let (Some(r), Some(e)) = (&record, &email) {
                tx.act_as(IdentityId::from_uuid(r.identity_id)).await?;
                let _ = identities::login_record(&mut tx, state.vault(), e).await?;
                let failures = if locked {
                    r.failed_logins
                } else {
                    r.failed_logins + 1
                };
                let until = if locked {
                    r.locked_until
                } else {
                    backoff(failures, state.auth_config().lockout_threshold).map(|d| now + d)
                };
                identities::record_login_failure(
                    &mut tx,
                    IdentityId::from_uuid(r.identity_id),
                    failures,
                    until,
                )
                .await?;
                tx.audit(
                Actor::Identity(IdentityId::from_uuid(r.identity_id)),
                AuditEvent::success("auth.login_failed", "identity", r.identity_id)
                    .outcome(Outcome::Failure)
                    .after(serde_json::json!({ "locked": locked, "consecutive_failures": failures })),
            )
            .await?;
            } else {
                tx.audit(
                    Actor::Anonymous,
                    AuditEvent {
                        action: "auth.login_failed",
                        target_type: "identity",
                        target_id: None,
                        outcome: Outcome::Failure,
                        before: None,
                        after: Some(serde_json::json!({ "reason": "unknown_account" })),
                    },
                )
                .await?;
            }
            tx.commit().await?;
            return Err(ApiError::InvalidCredentials);
        }
    };
    let id = IdentityId::from_uuid(record.identity_id);
    tx.act_as(id).await?;
    identities::record_login_success(&mut tx, id).await?;
    let (token, expires_at) = issue_session(&state, &mut tx, id).await?;
    let identity = identities::get(&mut tx, state.vault(), id).await?;
    tx.audit(
        Actor::Identity(id),
        AuditEvent::success("auth.login", "identity", id),
    )
    .await?;
    tx.commit().await?;
    let body = SessionIssued {
        token: token.expose().to_owned(),
        expires_at,
        identity,
    };
    Ok(with_cookie(StatusCode::OK, &token, expires_at, body))
}

/// End the current session.
#[utoipa::path(post, path = "/v1/auth/logout", tag = "account", responses((status = 204), (status = 401, body = ErrorBody)))]
pub async fn logout(State(state): State<AppState>, auth: Auth) -> ApiResult<Response> {
    let Credential::Session {
        identity,
        session_id,
    } = auth.credential
    else {
        return Err(ApiError::ForbiddenReason(
            "API tokens are revoked, not logged out".into(),
        ));
    };
    let mut tx = state.store().auth(auth.0.meta).await?;
    tx.act_as(identity).await?;
    sessions::revoke(&mut tx, identity, session_id, OffsetDateTime::now_utc()).await?;
    tx.audit(
        Actor::Identity(identity),
        AuditEvent::success("auth.logout", "session", session_id),
    )
    .await?;
    tx.commit().await?;
    Ok((
        StatusCode::NO_CONTENT,
        [(header::SET_COOKIE, clear_cookie())],
    )
        .into_response())
}

/// The signed-in identity and the environments it belongs to.
#[utoipa::path(get, path = "/v1/me", tag = "account", responses((status = 200, body = Me), (status = 401, body = ErrorBody)))]
pub async fn me(State(state): State<AppState>, auth: Auth) -> ApiResult<axum::Json<Me>> {
    let id = auth.identity()?;
    let mut tx = state.store().auth(auth.0.meta).await?;
    tx.act_as(id).await?;
    let identity = identities::get(&mut tx, state.vault(), id).await?;
    let environments = environments::list_for_identity(&mut tx, id).await?;
    tx.commit().await?;
    Ok(axum::Json(Me {
        identity,
        environments,
    }))
}

/// Change the password. Every session is revoked; a new one is returned.
#[utoipa::path(put, path = "/v1/me/password", tag = "account", request_body = PasswordChange,
    responses((status = 200, body = SessionIssued), (status = 401, body = ErrorBody), (status = 400, body = ErrorBody)))]
pub async fn change_password(
    State(state): State<AppState>,
    auth: Auth,
    Json(req): Json<PasswordChange>,
) -> ApiResult<Response> {
    let id = auth.identity()?;
    validate::password(&req.new_password)?;
    let mut tx = state.store().auth(auth.meta.clone()).await?;
    tx.act_as(id).await?;
    let stored = identities::password_hash(&mut tx, id).await?;
    tx.commit().await?;
    if !verify_password(&state, req.current_password, Some(stored)).await? {
        return Err(ApiError::InvalidCredentials);
    }
    let hash = hash_password(&state, req.new_password).await?;
    let now = OffsetDateTime::now_utc();
    let mut tx = state.store().auth(auth.0.meta).await?;
    tx.act_as(id).await?;
    identities::set_password(&mut tx, id, &hash, now).await?;
    let revoked = sessions::revoke_all(&mut tx, id, now).await?;
    let (token, expires_at) = issue_session(&state, &mut tx, id).await?;
    let identity = identities::get(&mut tx, state.vault(), id).await?;
    tx.audit(
        Actor::Identity(id),
        AuditEvent::success("auth.password_changed", "identity", id)
            .after(serde_json::json!({ "sessions_revoked": revoked })),
    )
    .await?;
    tx.commit().await?;
    let body = SessionIssued {
        token: token.expose().to_owned(),
        expires_at,
        identity,
    };
    Ok(with_cookie(StatusCode::OK, &token, expires_at, body))
}

/// Live sessions of the signed-in identity.
#[utoipa::path(get, path = "/v1/me/sessions", tag = "account", responses((status = 200, body = Vec<SessionInfo>), (status = 401, body = ErrorBody)))]
pub async fn list_sessions(
    State(state): State<AppState>,
    auth: Auth,
) -> ApiResult<axum::Json<Vec<SessionInfo>>> {
    let id = auth.identity()?;
    let current = match auth.credential {
        Credential::Session { session_id, .. } => Some(session_id.as_uuid()),
        Credential::ApiToken(_) => None,
    };
    let mut tx = state.store().auth(auth.0.meta).await?;
    tx.act_as(id).await?;
    let list = sessions::list_active(&mut tx, id, OffsetDateTime::now_utc()).await?;
    tx.commit().await?;
    Ok(axum::Json(
        list.into_iter()
            .map(|s| SessionInfo {
                current: Some(s.session_id) == current,
                session: s,
            })
            .collect(),
    ))
}

/// Revoke one of your sessions.
#[utoipa::path(delete, path = "/v1/me/sessions/{session_id}", tag = "account", params(("session_id" = Uuid, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn revoke_session(
    State(state): State<AppState>,
    auth: Auth,
    Path(session): Path<SessionId>,
) -> ApiResult<StatusCode> {
    let id = auth.identity()?;
    let mut tx = state.store().auth(auth.0.meta).await?;
    tx.act_as(id).await?;
    if !sessions::revoke(&mut tx, id, session, OffsetDateTime::now_utc()).await? {
        return Err(ApiError::NotFound);
    }
    tx.audit(
        Actor::Identity(id),
        AuditEvent::success("session.revoked", "session", session),
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Join an environment with an invitation token. The signed-in account's email must be the
/// invited one.
#[utoipa::path(post, path = "/v1/invitations/accept", tag = "account", request_body = AcceptInvitation,
    responses((status = 200, body = Joined), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 410, body = ErrorBody)))]
pub async fn accept_invitation(
    State(state): State<AppState>,
    auth: Auth,
    Json(req): Json<AcceptInvitation>,
) -> ApiResult<axum::Json<Joined>> {
    let id = auth.identity()?;
    if TokenKind::of(&req.token) != Some(TokenKind::Invitation) {
        return Err(ApiError::NotFound);
    }
    let mut tx = state.store().auth(auth.0.meta).await?;
    tx.act_as(id).await?;
    let hash = TokenHash::of(&req.token);
    let (mut ttx, invitation) =
        match invitations::accept(tx, state.vault(), id, &hash, OffsetDateTime::now_utc()).await? {
            Ok(done) => done,
            Err(Unusable::Expired) => {
                return Err(ApiError::Gone(
                    "this invitation has expired; ask for a new one".into(),
                ))
            }
            Err(Unusable::AlreadyUsed) => {
                return Err(ApiError::Gone(
                    "this invitation has already been used".into(),
                ))
            }
            Err(Unusable::Revoked) => {
                return Err(ApiError::Gone("this invitation was revoked".into()))
            }
            Err(Unusable::OtherEmail) => {
                return Err(ApiError::ForbiddenReason(
                    "this invitation was sent to a different email address".into(),
                ))
            }
            Err(Unusable::AlreadyMember) => {
                return Err(ApiError::Conflict(
                    "you are already a member of this environment".into(),
                ))
            }
        };
    let environment_id = ttx.environment_id().as_uuid();
    ttx.audit(
        AuditEvent::success(
            "invitation.accepted",
            "invitation",
            invitation.invitation_id,
        )
        .after(serde_json::json!({ "identity_id": id, "role": invitation.role })),
    )
    .await?;
    ttx.audit(
        AuditEvent::success("member.added", "identity", id)
            .after(serde_json::json!({ "role": invitation.role, "via": "invitation" })),
    )
    .await?;
    ttx.commit().await?;
    Ok(axum::Json(Joined {
        environment_id,
        role: invitation.role,
    }))
}
