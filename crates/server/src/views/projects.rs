//! Projects and project grants as the API shows them.

use portcullis_store::queries::projects as store;
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Project {
    pub project_id: Uuid,
    pub name: String,
    pub created_by: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
}

impl From<store::Project> for Project {
    fn from(p: store::Project) -> Self {
        Project {
            project_id: p.project_id,
            name: p.name,
            created_by: p.created_by,
            created_at: p.created_at,
        }
    }
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Grant {
    pub identity_id: Uuid,
    /// A built-in role name or `custom:<role id>`.
    pub role: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
}

impl From<store::Grant> for Grant {
    fn from(g: store::Grant) -> Self {
        Grant {
            identity_id: g.identity_id,
            role: g.role,
            updated_at: g.updated_at,
        }
    }
}
