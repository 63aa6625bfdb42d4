//! Route handlers. Each one extracts, enters the caller's environment, calls a service
//! function and maps the result; the OpenAPI document is built from the same registrations
//! so it cannot drift from the router.

use serde::{Deserialize, Serialize};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::state::AppState;

pub mod account;
pub mod audit_access;
pub mod audit_log;
pub mod documents;
pub mod environments;
pub mod gateway;
pub mod grants;
pub(crate) mod input;
pub mod integrations;
pub mod invitations;
pub mod keyring;
pub mod members;
pub mod model_key;
pub mod platform;
pub mod projects;
pub mod roles;
pub mod tokens;

#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "Portcullis API",
        description = "Multi-tenant security kernel: tenants (environments), members and roles, projects, documents, tokens and the audit log. Errors are `{\"error\":{\"code\",\"message\"}}`; resources of other tenants are 404, missing permissions are 403 `role_access_denied`.",
        license(name = "Apache-2.0")
    ),
    components(schemas(crate::error::ErrorBody, audit_access::ExportFormat)),
    modifiers(&Security)
)]
pub struct ApiDoc;

struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme,
        };
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A session token (pcs_sess_...), an API token (pcs_live_...) or, on the /v1/platform routes only, an operator token (pcs_op_...)",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "session_cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(
                crate::auth::SESSION_COOKIE,
            ))),
        );
        openapi.security = Some(vec![
            utoipa::openapi::security::SecurityRequirement::new("bearer", Vec::<String>::new()),
            utoipa::openapi::security::SecurityRequirement::new(
                "session_cookie",
                Vec::<String>::new(),
            ),
        ]);
    }
}

/// Cursor pagination parameters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// The `next_cursor` of the previous page.
    pub after: Option<Uuid>,
    /// Items per page, 1-200 (default 50); a value outside is taken as the nearer bound.
    pub limit: Option<i64>,
}

impl PageQuery {
    pub fn page(&self) -> portcullis_store::queries::Page {
        portcullis_store::queries::Page::new(self.after, self.limit)
    }
}

/// A page of results.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `after` to get the next page; absent on the last page.
    pub next_cursor: Option<Uuid>,
}

/// A page of rows becomes a page of their views.
impl<T, U: Into<T>> From<portcullis_store::queries::Paged<U>> for Page<T> {
    fn from(p: portcullis_store::queries::Paged<U>) -> Self {
        Page {
            items: p.items.into_iter().map(Into::into).collect(),
            next_cursor: p.next,
        }
    }
}

pub fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(account::setup))
        .routes(routes!(account::signup))
        .routes(routes!(account::login))
        .routes(routes!(account::logout))
        .routes(routes!(account::me))
        .routes(routes!(account::change_password))
        .routes(routes!(account::list_sessions))
        .routes(routes!(account::sign_in_history))
        .routes(routes!(account::revoke_session))
        .routes(routes!(account::accept_invitation))
        .routes(routes!(
            environments::list_environments,
            environments::create_environment
        ))
        .routes(routes!(
            environments::get_environment,
            environments::update_environment,
            environments::delete_environment
        ))
        .routes(routes!(members::list_members))
        .routes(routes!(members::update_member, members::remove_member))
        .routes(routes!(members::erase_subject))
        .routes(routes!(members::transfer_ownership))
        .routes(routes!(
            invitations::list_invitations,
            invitations::create_invitation
        ))
        .routes(routes!(invitations::revoke_invitation))
        .routes(routes!(roles::list_roles, roles::create_role))
        .routes(routes!(roles::update_role, roles::delete_role))
        .routes(routes!(tokens::list_tokens, tokens::create_token))
        .routes(routes!(tokens::revoke_token))
        .routes(routes!(audit_log::list_audit))
        .routes(routes!(platform::list_platform_audit))
        .routes(routes!(projects::list_projects, projects::create_project))
        .routes(routes!(projects::get_project, projects::delete_project))
        .routes(routes!(grants::list_grants))
        .routes(routes!(grants::put_grant, grants::remove_grant))
        .routes(routes!(
            documents::list_documents,
            documents::create_document
        ))
        .routes(routes!(
            documents::get_document,
            documents::update_document,
            documents::delete_document
        ))
        .routes(routes!(audit_access::export))
        .routes(routes!(audit_access::latest_checkpoint))
        .routes(routes!(audit_access::checkpoint_feed))
        .routes(routes!(audit_access::inclusion_proof))
        .routes(routes!(audit_access::consistency_proof))
        .routes(routes!(audit_access::well_known_keys))
        .routes(routes!(keyring::key_status))
        .routes(routes!(keyring::rotate_key))
        .routes(routes!(keyring::retire_keys))
        .routes(routes!(keyring::set_kek))
        .routes(routes!(
            integrations::list_integrations,
            integrations::create_integration
        ))
        .routes(routes!(integrations::replace_credentials))
        .routes(routes!(integrations::delete_integration))
        .routes(routes!(
            model_key::get_model_key,
            model_key::put_model_key,
            model_key::delete_model_key
        ))
}
