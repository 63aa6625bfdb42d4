//! Members and erasure.

use portcullis_service::members;
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Member {
    pub identity_id: Uuid,
    pub email: String,
    pub display_name: String,
    /// A built-in role name or `custom:<role id>`.
    pub role: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub joined_at: OffsetDateTime,
}

impl From<portcullis_store::queries::members::Member> for Member {
    fn from(m: portcullis_store::queries::members::Member) -> Self {
        Member {
            identity_id: m.identity_id,
            email: m.email,
            display_name: m.display_name,
            role: m.role,
            joined_at: m.joined_at,
        }
    }
}

/// What an erasure did.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Erasure {
    pub identity_id: Uuid,
    /// Whether a key existed (and was destroyed). False for a member who left no personal data
    /// in this environment's audit log. Someone with neither a key nor a membership here is
    /// `404`.
    pub key_destroyed: bool,
}

impl From<members::Erasure> for Erasure {
    fn from(e: members::Erasure) -> Self {
        Erasure {
            identity_id: e.identity.as_uuid(),
            key_destroyed: e.key_destroyed,
        }
    }
}
