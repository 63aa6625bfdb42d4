//! API tokens of an environment.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use portcullis_core::{ApiTokenId, EnvironmentId};
use portcullis_service::tokens;
use serde::Deserialize;

use super::{Page, PageQuery};
use crate::auth::Auth;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{Json, Path, Query};
use crate::state::AppState;
use crate::views::tokens::{ApiToken, TokenIssued};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    #[schema(schema_with = super::input::name_200)]
    pub name: String,
    /// The token's role; never more than the creator holds.
    #[schema(schema_with = super::input::assignable_role)]
    pub role: String,
    /// Lifetime in days (1-365); omit for a token that lives until revoked.
    #[schema(minimum = 1, maximum = 365)]
    #[serde(default, deserialize_with = "whole_days")]
    pub expires_in_days: Option<u32>,
}

/// A JSON integer, also when written with a zero fraction (`190.0`): JSON Schema counts that
/// as an integer, so a client generated from the document may send it. Anything else (a real
/// fraction, a negative number, text) is refused as before.
fn whole_days<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    use serde::de::Error;
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    if let Some(v) = n.as_u64() {
        return u32::try_from(v).map(Some).map_err(D::Error::custom);
    }
    match n.as_f64() {
        Some(f) if f.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&f) => {
            Ok(Some(f as u32))
        }
        _ => Err(D::Error::custom(format!(
            "expected a whole number of days, got {n}"
        ))),
    }
}

impl From<NewToken> for tokens::NewToken {
    fn from(r: NewToken) -> Self {
        tokens::NewToken {
            name: r.name,
            role: r.role,
            expires_in_days: r.expires_in_days,
        }
    }
}

#[utoipa::path(get, path = "/v1/environments/{environment_id}/tokens", tag = "tokens", params(("environment_id" = Uuid, Path), PageQuery),
    responses((status = 200, body = Page<ApiToken>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_tokens(
    State(state): State<AppState>,
    auth: Auth,
    Path(env): Path<EnvironmentId>,
    Query(q): Query<PageQuery>,
) -> ApiResult<axum::Json<Page<ApiToken>>> {
    let list = tokens::list_tokens(&state, &auth, env, q.page()).await?;
    Ok(axum::Json(list.into()))
}

/// Create an API token for this environment. Returned once; stored only as SHA-256 (E3).
#[utoipa::path(post, path = "/v1/environments/{environment_id}/tokens", tag = "tokens", params(("environment_id" = Uuid, Path)), request_body = NewToken,
    responses((status = 201, body = TokenIssued), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "the owner role cannot be given to a token")))]
pub async fn create_token(
    State(state): State<AppState>,
    auth: Auth,
    Path(env): Path<EnvironmentId>,
    Json(req): Json<NewToken>,
) -> ApiResult<impl IntoResponse> {
    let issued = tokens::create_token(&state, &auth, env, req.into()).await?;
    Ok((StatusCode::CREATED, axum::Json(TokenIssued::from(issued))))
}

#[utoipa::path(delete, path = "/v1/environments/{environment_id}/tokens/{token_id}", tag = "tokens",
    params(("environment_id" = Uuid, Path), ("token_id" = Uuid, Path)),
    responses((status = 200, body = ApiToken), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn revoke_token(
    State(state): State<AppState>,
    auth: Auth,
    Path((env, id)): Path<(EnvironmentId, ApiTokenId)>,
) -> ApiResult<axum::Json<ApiToken>> {
    let token = tokens::revoke_token(&state, &auth, env, id).await?;
    Ok(axum::Json(token.into()))
}
