//! Invitations.

use portcullis_service::invitations;
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

/// Where an invitee accepts: they sign in and POST the token here.
pub const ACCEPT_PATH: &str = "/v1/invitations/accept";

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Invitation {
    pub invitation_id: Uuid,
    pub email: String,
    pub role: String,
    pub invited_by: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub accepted_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub revoked_at: Option<OffsetDateTime>,
}

impl From<portcullis_store::queries::invitations::Invitation> for Invitation {
    fn from(i: portcullis_store::queries::invitations::Invitation) -> Self {
        Invitation {
            invitation_id: i.invitation_id,
            email: i.email,
            role: i.role,
            invited_by: i.invited_by,
            created_at: i.created_at,
            expires_at: i.expires_at,
            accepted_at: i.accepted_at,
            revoked_at: i.revoked_at,
        }
    }
}

/// The invitation and its link token, shown this once.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct InvitationIssued {
    pub invitation: Invitation,
    /// Send this to the invitee; it is stored only as a hash.
    pub token: String,
    /// Relative accept path; the invitee signs in and POSTs the token to it.
    pub accept_path: String,
}

impl From<invitations::InvitationIssued> for InvitationIssued {
    fn from(i: invitations::InvitationIssued) -> Self {
        InvitationIssued {
            invitation: i.invitation.into(),
            token: i.token.expose().to_owned(),
            accept_path: ACCEPT_PATH.into(),
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Joined {
    pub environment_id: Uuid,
    pub role: String,
}

impl From<invitations::Joined> for Joined {
    fn from(j: invitations::Joined) -> Self {
        Joined {
            environment_id: j.environment.as_uuid(),
            role: j.role,
        }
    }
}
