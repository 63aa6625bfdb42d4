//! Integrations and the model-provider key as the API shows them: hints, never secrets.

use portcullis_store::queries::integrations as store;
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Integration {
    pub integration_id: Uuid,
    pub kind: String,
    pub name: String,
    /// The last four characters of the credentials, to recognise them; never the credentials.
    pub credentials_hint: String,
    pub created_by: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
}

impl From<store::Integration> for Integration {
    fn from(i: store::Integration) -> Self {
        Integration {
            integration_id: i.integration_id,
            kind: i.kind,
            name: i.name,
            credentials_hint: i.credentials_hint,
            created_by: i.created_by,
            created_at: i.created_at,
            updated_at: i.updated_at,
        }
    }
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct ModelKey {
    pub provider: String,
    pub key_hint: String,
    pub updated_by: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
}

impl From<store::ModelKey> for ModelKey {
    fn from(k: store::ModelKey) -> Self {
        ModelKey {
            provider: k.provider,
            key_hint: k.key_hint,
            updated_by: k.updated_by,
            updated_at: k.updated_at,
        }
    }
}
