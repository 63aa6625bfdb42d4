//! Documents as the API shows them.

use portcullis_service::documents as service;
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

/// A document as the API shows it (body decrypted).
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Document {
    pub document_id: Uuid,
    pub project_id: Uuid,
    pub title: String,
    pub body: String,
    pub version: i32,
    pub created_by: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
}

impl From<service::Document> for Document {
    fn from(d: service::Document) -> Self {
        Document {
            document_id: d.document_id,
            project_id: d.project_id,
            title: d.title,
            body: d.body,
            version: d.version,
            created_by: d.created_by,
            created_at: d.created_at,
            updated_at: d.updated_at,
        }
    }
}
