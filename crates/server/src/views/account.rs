//! Accounts and sessions.

use portcullis_service::account;
use portcullis_service::sessions::{self, ActiveSession};
use portcullis_store::queries::identities;
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use super::environments::{Environment, MyEnvironment};

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Identity {
    pub identity_id: Uuid,
    pub email: String,
    pub display_name: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
}

impl From<identities::Identity> for Identity {
    fn from(i: identities::Identity) -> Self {
        Identity {
            identity_id: i.identity_id,
            email: i.email,
            display_name: i.display_name,
            created_at: i.created_at,
        }
    }
}

/// A new session. The token is shown once; it is also set as an HttpOnly cookie.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionIssued {
    /// The session token (`pcs_sess_...`), for `Authorization: Bearer ...`.
    pub token: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: OffsetDateTime,
    pub identity: Identity,
}

impl From<sessions::SessionIssued> for SessionIssued {
    fn from(s: sessions::SessionIssued) -> Self {
        SessionIssued {
            token: s.token.expose().to_owned(),
            expires_at: s.expires_at,
            identity: s.identity.into(),
        }
    }
}

/// The answer of every request that signs someone in (login, password change): the session
/// under `session`, as first-run setup answers it, so a client reads the token at
/// `session.token` whichever way it signed in.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SignedIn {
    pub session: SessionIssued,
}

impl From<sessions::SessionIssued> for SignedIn {
    fn from(s: sessions::SessionIssued) -> Self {
        SignedIn { session: s.into() }
    }
}

/// Sign-up's answer, the same whether or not the email already had an account.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SignupAccepted {
    /// What happened and what to do next.
    pub message: String,
}

impl SignupAccepted {
    pub fn new() -> Self {
        SignupAccepted {
            message: "if this email had no account, it has one now; sign in with POST /v1/auth/login (sign-up does not say whether an email already had an account)".into(),
        }
    }
}

impl Default for SignupAccepted {
    fn default() -> Self {
        Self::new()
    }
}

/// First-run setup's answer: the owner's session (at `session`, as every sign-in answers) and
/// the first environment.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SetupDone {
    pub session: SessionIssued,
    pub environment: Environment,
}

impl From<account::SetupDone> for SetupDone {
    fn from(s: account::SetupDone) -> Self {
        SetupDone {
            session: s.session.into(),
            environment: s.environment.into(),
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Me {
    pub identity: Identity,
    pub environments: Vec<MyEnvironment>,
}

impl From<account::Me> for Me {
    fn from(m: account::Me) -> Self {
        Me {
            identity: m.identity.into(),
            environments: m.environments.into_iter().map(Into::into).collect(),
        }
    }
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Session {
    pub session_id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub last_seen_at: OffsetDateTime,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionInfo {
    #[serde(flatten)]
    pub session: Session,
    /// Whether this is the session making the request.
    pub current: bool,
}

impl From<ActiveSession> for SessionInfo {
    fn from(a: ActiveSession) -> Self {
        let s = a.session;
        SessionInfo {
            session: Session {
                session_id: s.session_id,
                created_at: s.created_at,
                expires_at: s.expires_at,
                last_seen_at: s.last_seen_at,
                user_agent: s.user_agent,
                ip: s.ip,
            },
            current: a.current,
        }
    }
}
