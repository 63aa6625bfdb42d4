//! API tokens.

use portcullis_service::tokens;
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

/// An API token as listed: never the token itself, only a short hint.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct ApiToken {
    pub token_id: Uuid,
    pub name: String,
    pub hint: String,
    pub role: String,
    pub created_by: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_used_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub revoked_at: Option<OffsetDateTime>,
}

impl From<portcullis_store::queries::tokens::ApiToken> for ApiToken {
    fn from(t: portcullis_store::queries::tokens::ApiToken) -> Self {
        ApiToken {
            token_id: t.token_id,
            name: t.name,
            hint: t.hint,
            role: t.role,
            created_by: t.created_by,
            created_at: t.created_at,
            expires_at: t.expires_at,
            last_used_at: t.last_used_at,
            revoked_at: t.revoked_at,
        }
    }
}

/// The token itself, shown this once.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenIssued {
    pub token: String,
    pub api_token: ApiToken,
}

impl From<tokens::TokenIssued> for TokenIssued {
    fn from(t: tokens::TokenIssued) -> Self {
        TokenIssued {
            token: t.token.expose().to_owned(),
            api_token: t.api_token.into(),
        }
    }
}
