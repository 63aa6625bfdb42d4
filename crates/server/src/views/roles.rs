//! Roles.

use portcullis_core::BuiltinRole;
use portcullis_service::roles;
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct CustomRole {
    pub role_id: Uuid,
    pub name: String,
    pub description: String,
    pub permissions: Vec<String>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
}

impl From<portcullis_store::queries::roles::CustomRole> for CustomRole {
    fn from(r: portcullis_store::queries::roles::CustomRole) -> Self {
        CustomRole {
            role_id: r.role_id,
            name: r.name,
            description: r.description,
            permissions: r.permissions,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BuiltinRoleInfo {
    pub name: String,
    pub description: String,
    pub permissions: Vec<String>,
}

impl From<BuiltinRole> for BuiltinRoleInfo {
    fn from(r: BuiltinRole) -> Self {
        BuiltinRoleInfo {
            name: r.name().into(),
            description: r.description().into(),
            permissions: r
                .permissions()
                .names()
                .into_iter()
                .map(str::to_owned)
                .collect(),
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RoleCatalog {
    pub builtin: Vec<BuiltinRoleInfo>,
    pub custom: Vec<CustomRole>,
}

impl From<roles::RoleCatalog> for RoleCatalog {
    fn from(c: roles::RoleCatalog) -> Self {
        RoleCatalog {
            builtin: c.builtin.iter().copied().map(Into::into).collect(),
            custom: c.custom.into_iter().map(Into::into).collect(),
        }
    }
}
