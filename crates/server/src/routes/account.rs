//! Sign-up, login, sessions, password changes, first-run setup and invitation acceptance:
//! everything that happens before, or outside, a tenant context.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use portcullis_core::SessionId;
use portcullis_crypto::Secret;
use portcullis_service::{account, invitations, sessions};
use serde::Deserialize;

use crate::auth::{clear_cookie, session_cookie, Auth, Meta};
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{Json, Path};
use crate::state::AppState;
use crate::views::account::{Me, SessionInfo, SetupDone, SignedIn, SignupAccepted};
use crate::views::audit_log::AuditEntry;
use crate::views::invitations::Joined;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignupRequest {
    #[schema(schema_with = super::input::email)]
    pub email: String,
    #[schema(schema_with = super::input::new_password)]
    pub password: String,
    #[schema(schema_with = super::input::display_name)]
    pub display_name: Option<String>,
}

impl From<SignupRequest> for account::NewAccount {
    fn from(r: SignupRequest) -> Self {
        account::NewAccount {
            email: r.email,
            password: Secret::new(r.password),
            display_name: r.display_name,
        }
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    #[schema(schema_with = super::input::presented_secret)]
    pub email: String,
    #[schema(schema_with = super::input::presented_secret)]
    pub password: String,
}

impl From<LoginRequest> for account::Credentials {
    fn from(r: LoginRequest) -> Self {
        account::Credentials {
            email: r.email,
            password: Secret::new(r.password),
        }
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetupRequest {
    /// The one-time token printed by `portcullis serve` on first start.
    #[schema(schema_with = super::input::presented_secret)]
    pub setup_token: String,
    #[schema(schema_with = super::input::email)]
    pub email: String,
    #[schema(schema_with = super::input::new_password)]
    pub password: String,
    #[schema(schema_with = super::input::display_name)]
    pub display_name: Option<String>,
    #[schema(schema_with = super::input::name_200)]
    pub environment_name: String,
    #[schema(schema_with = super::input::region)]
    pub region: String,
}

impl From<SetupRequest> for account::Setup {
    fn from(r: SetupRequest) -> Self {
        account::Setup {
            setup_token: Secret::new(r.setup_token),
            owner: account::NewAccount {
                email: r.email,
                password: Secret::new(r.password),
                display_name: r.display_name,
            },
            environment_name: r.environment_name,
            region: r.region,
        }
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    #[schema(schema_with = super::input::presented_secret)]
    pub current_password: String,
    #[schema(schema_with = super::input::new_password)]
    pub new_password: String,
}

impl From<PasswordChange> for account::PasswordChange {
    fn from(r: PasswordChange) -> Self {
        account::PasswordChange {
            current_password: Secret::new(r.current_password),
            new_password: Secret::new(r.new_password),
        }
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptInvitation {
    /// The `pcs_inv_...` token from the invitation link.
    #[schema(schema_with = super::input::presented_secret)]
    pub token: String,
}

/// The session's token as an HttpOnly cookie that expires with the session.
fn cookie(session: &sessions::SessionIssued) -> [(header::HeaderName, String); 1] {
    let max_age = session.lifetime().whole_seconds().max(0);
    [(
        header::SET_COOKIE,
        session_cookie(session.token.expose(), max_age),
    )]
}

/// A signed-in response: the new session in the body (at `session`) and as the cookie.
fn signed_in(status: StatusCode, session: sessions::SessionIssued) -> Response {
    let cookie = cookie(&session);
    (status, cookie, axum::Json(SignedIn::from(session))).into_response()
}

/// Create the first owner with the one-time setup token.
#[utoipa::path(post, path = "/v1/setup", tag = "account", security(()), request_body = SetupRequest,
    responses((status = 201, body = SetupDone), (status = 401, body = ErrorBody, description = "wrong or used setup token: `setup_token_invalid`"), (status = 400, body = ErrorBody)))]
pub async fn setup(
    State(state): State<AppState>,
    Meta(meta): Meta,
    Json(req): Json<SetupRequest>,
) -> ApiResult<Response> {
    let done = account::setup(&state, meta, req.into()).await?;
    let cookie = cookie(&done.session);
    Ok((
        StatusCode::CREATED,
        cookie,
        axum::Json(SetupDone::from(done)),
    )
        .into_response())
}

/// Create an account (when open sign-up is enabled).
///
/// The answer is the same whether or not the email already has an account, which is then left
/// unchanged; no session is issued: sign in with `/v1/auth/login`.
#[utoipa::path(post, path = "/v1/auth/signup", tag = "account", security(()), request_body = SignupRequest,
    responses((status = 202, body = SignupAccepted, description = "created, unless the email already had an account (not told apart)"), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody, description = "sign-up is disabled")))]
pub async fn signup(
    State(state): State<AppState>,
    Meta(meta): Meta,
    Json(req): Json<SignupRequest>,
) -> ApiResult<(StatusCode, axum::Json<SignupAccepted>)> {
    account::signup(&state, meta, req.into()).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(SignupAccepted::new())))
}

/// Sign in. Wrong email and wrong password are indistinguishable, in body and in timing.
#[utoipa::path(post, path = "/v1/auth/login", tag = "account", security(()), request_body = LoginRequest,
    responses((status = 200, body = SignedIn), (status = 401, body = ErrorBody)))]
pub async fn login(
    State(state): State<AppState>,
    Meta(meta): Meta,
    Json(req): Json<LoginRequest>,
) -> ApiResult<Response> {
    let session = account::login(&state, meta, req.into()).await?;
    Ok(signed_in(StatusCode::OK, session))
}

/// End the current session.
#[utoipa::path(post, path = "/v1/auth/logout", tag = "account", responses((status = 204), (status = 401, body = ErrorBody)))]
pub async fn logout(State(state): State<AppState>, auth: Auth) -> ApiResult<Response> {
    sessions::logout(&state, &auth).await?;
    Ok((
        StatusCode::NO_CONTENT,
        [(header::SET_COOKIE, clear_cookie())],
    )
        .into_response())
}

/// The signed-in identity and the environments it belongs to.
#[utoipa::path(get, path = "/v1/me", tag = "account", responses((status = 200, body = Me), (status = 401, body = ErrorBody)))]
pub async fn me(State(state): State<AppState>, auth: Auth) -> ApiResult<axum::Json<Me>> {
    Ok(axum::Json(account::me(&state, &auth).await?.into()))
}

/// Change the password. Every session is revoked; a new one is returned.
#[utoipa::path(put, path = "/v1/me/password", tag = "account", request_body = PasswordChange,
    responses((status = 200, body = SignedIn), (status = 401, body = ErrorBody), (status = 400, body = ErrorBody)))]
pub async fn change_password(
    State(state): State<AppState>,
    auth: Auth,
    Json(req): Json<PasswordChange>,
) -> ApiResult<Response> {
    let session = account::change_password(&state, &auth, req.into()).await?;
    Ok(signed_in(StatusCode::OK, session))
}

/// Live sessions of the signed-in identity.
#[utoipa::path(get, path = "/v1/me/sessions", tag = "account", responses((status = 200, body = Vec<SessionInfo>), (status = 401, body = ErrorBody)))]
pub async fn list_sessions(
    State(state): State<AppState>,
    auth: Auth,
) -> ApiResult<axum::Json<Vec<SessionInfo>>> {
    let list = sessions::list_sessions(&state, &auth).await?;
    Ok(axum::Json(list.into_iter().map(Into::into).collect()))
}

/// Your own sign-in history (the platform scope's entries you made, newest first, at most
/// 200): sign-ins, failed sign-ins against your account, password changes.
#[utoipa::path(get, path = "/v1/me/sign-ins", tag = "account", responses((status = 200, body = Vec<AuditEntry>), (status = 401, body = ErrorBody)))]
pub async fn sign_in_history(
    State(state): State<AppState>,
    auth: Auth,
) -> ApiResult<axum::Json<Vec<AuditEntry>>> {
    let list = sessions::sign_in_history(&state, &auth).await?;
    Ok(axum::Json(list.into_iter().map(Into::into).collect()))
}

/// Revoke one of your sessions.
#[utoipa::path(delete, path = "/v1/me/sessions/{session_id}", tag = "account", params(("session_id" = Uuid, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn revoke_session(
    State(state): State<AppState>,
    auth: Auth,
    Path(session): Path<SessionId>,
) -> ApiResult<StatusCode> {
    sessions::revoke_session(&state, &auth, session).await?;
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
    let token = Secret::new(req.token);
    let joined = invitations::accept_invitation(&state, &auth, &token).await?;
    Ok(axum::Json(joined.into()))
}
