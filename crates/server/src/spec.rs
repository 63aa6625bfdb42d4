//! The refusals every operation can give because of how it is reached, added to the OpenAPI
//! document in one place so that no operation's annotation can forget one (issue 13, item 10).
//!
//! What each operation's own `#[utoipa::path]` says stays: its success, and the answers only
//! its use case gives (a 409 for a name in use, a 410 for a used invitation ...). What is added
//! here follows from the extractors and middleware the operation passes through:
//!
//! | answer | given by | to operations that |
//! |---|---|---|
//! | 400 | `extract::Json` (`malformed_json`, `invalid_input`: wrong type, unknown field, array, NUL) and `extract::Query` (`invalid_query`) | take a body or a query string |
//! | 401 | `Auth`: no credential, or one that is not valid | are authenticated |
//! | 403 | `Auth::enter` and the use case: a missing permission (`role_access_denied`); `check_origin`: a cookie from another origin (`origin_refused`) | are authenticated |
//! | 404 | `extract::Path`: an id that does not parse; an environment the caller is not in | have path parameters |
//! | 408 | `middleware::body_timeout`: the body did not arrive in time | take a body |
//! | 413 | `middleware::declared_length` and the body limit | take a body |
//! | 415 | `extract::Json`: no JSON content type | take a body |
//! | 503 | `middleware::timeout`, an unreachable database or an unavailable key | all |

use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::security::SecurityRequirement;
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr, ResponseBuilder};

/// Adds the answers every operation can give to the operations of `spec`.
pub fn complete(spec: &mut OpenApi) {
    for item in spec.paths.paths.values_mut() {
        let ops = [
            (&mut item.get, false),
            (&mut item.head, false),
            (&mut item.post, true),
            (&mut item.put, true),
            (&mut item.patch, true),
            (&mut item.delete, true),
        ];
        for (op, unsafe_method) in ops {
            if let Some(op) = op.as_mut() {
                complete_operation(op, unsafe_method);
            }
        }
    }
}

fn complete_operation(op: &mut Operation, unsafe_method: bool) {
    let params = op.parameters.as_deref().unwrap_or_default();
    let has_path = params.iter().any(|p| p.parameter_in == ParameterIn::Path);
    let has_query = params.iter().any(|p| p.parameter_in == ParameterIn::Query);
    let has_body = op.request_body.is_some();
    // `security(())` on the annotation: public, no credential is read.
    let public = op
        .security
        .as_ref()
        .is_some_and(|s| s.iter().all(|r| *r == SecurityRequirement::default()));

    let mut add = |status: &str, description: &str| {
        match op.responses.responses.entry(status.to_owned()) {
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert(error_response(description));
            }
            // An annotation that names the status without saying why gets the reason here.
            std::collections::btree_map::Entry::Occupied(mut e) => {
                if let RefOr::T(r) = e.get_mut() {
                    if r.description.is_empty() {
                        r.description = description.to_owned();
                    }
                }
            }
        }
    };
    if has_body || has_query {
        add(
            "400",
            "The input is refused: `malformed_json` (not JSON), `invalid_input` (a wrong type, an unknown or missing field, an array for an object, the NUL character, a value outside its documented constraints), `invalid_query` (a malformed query string); some operations add their own codes",
        );
    }
    if !public {
        add(
            "401",
            "`unauthenticated`: no credential, or one that is unknown, expired or revoked",
        );
        let forbidden = if unsafe_method {
            "`role_access_denied`: the credential lacks the permission this needs; `origin_refused`: authenticated by the session cookie but not sent from one of the server's own origins"
        } else {
            "`role_access_denied`: the credential lacks the permission this needs"
        };
        add("403", forbidden);
    }
    if has_path {
        add(
            "404",
            "`not_found`: no such resource in an environment the caller belongs to (an id that does not parse names nothing either)",
        );
    }
    if has_body {
        add(
            "408",
            "`body_timeout`: the request body did not arrive within the body timeout",
        );
        add(
            "413",
            "`payload_too_large`: the body, declared or read, is larger than the limit",
        );
        add(
            "415",
            "`unsupported_media_type`: the body is not sent as `application/json`",
        );
    }
    add(
        "503",
        "`timeout`, `unavailable` or `key_unavailable`: the request ran out of time, the database is unreachable, or the environment's encryption key is unavailable",
    );
}

fn error_response(description: &str) -> RefOr<utoipa::openapi::Response> {
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build(),
    )
}
