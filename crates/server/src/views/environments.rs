//! Environments.

use portcullis_store::queries::environments;
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Environment {
    pub environment_id: Uuid,
    pub name: String,
    pub region: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
}

impl From<environments::Environment> for Environment {
    fn from(e: environments::Environment) -> Self {
        Environment {
            environment_id: e.environment_id,
            name: e.name,
            region: e.region,
            created_at: e.created_at,
        }
    }
}

/// An environment as seen from one of its members' list.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct MyEnvironment {
    pub environment_id: Uuid,
    pub name: String,
    pub region: String,
    /// The caller's role: a built-in role name or `custom:<role id>`.
    pub role: String,
}

impl From<environments::MyEnvironment> for MyEnvironment {
    fn from(e: environments::MyEnvironment) -> Self {
        MyEnvironment {
            environment_id: e.environment_id,
            name: e.name,
            region: e.region,
            role: e.role,
        }
    }
}
