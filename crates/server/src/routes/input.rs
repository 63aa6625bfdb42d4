//! The value constraints of request fields, as the use cases check them
//! (`portcullis_core::validate` and the service's own checks), for the OpenAPI document
//! (`#[schema(schema_with = ...)]`). A value outside them is refused with 400; a value inside
//! them may still be refused for a reason no schema can say (a name in use, a role that does not
//! exist here).
//!
//! Where a rule cannot be said exactly, the document is the stricter: a password's limit is in
//! bytes, so at most 256 characters is documented (4 bytes each at most); a name is trimmed before
//! it is checked, so the documented pattern asks for no control character anywhere.

use portcullis_core::{BuiltinRole, Permission};
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, SchemaFormat, SchemaType, Type};
use utoipa::openapi::KnownFormat;

/// No control character (Rust's `char::is_control`: U+0000-U+001F, U+007F-U+009F), and at least
/// one character that is not white space.
pub const NAME_PATTERN: &str =
    r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$";
/// Any text but the NUL character, which PostgreSQL cannot store (refused everywhere).
pub const NO_NUL_PATTERN: &str = r"^[^\x00]*$";
/// `validate::region`.
pub const REGION_PATTERN: &str = r"^[a-z0-9][a-z0-9-]{0,30}[a-z0-9]$";
/// `integrations::kind`: an integration kind or a model provider.
pub const KIND_PATTERN: &str = r"^[a-z][a-z0-9_]{1,39}$";
const UUID_PATTERN: &str =
    "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}";

fn string() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(SchemaType::new(Type::String))
}

/// An optional field: serde reads `null` as absent.
fn nullable(b: ObjectBuilder) -> ObjectBuilder {
    b.schema_type(SchemaType::from_iter([Type::String, Type::Null]))
}

fn name(max: usize) -> ObjectBuilder {
    string()
        .min_length(Some(1))
        .max_length(Some(max))
        .pattern(Some(NAME_PATTERN))
}

fn text(max: usize) -> ObjectBuilder {
    string().max_length(Some(max)).pattern(Some(NO_NUL_PATTERN))
}

/// A custom role's name.
pub fn role_name() -> ObjectBuilder {
    name(100).description(Some(
        "At most 100 characters, not the name of a built-in role",
    ))
}

/// Environment, project, token, integration and display names.
pub fn name_200() -> ObjectBuilder {
    name(200)
}

/// A document's title.
pub fn title() -> ObjectBuilder {
    name(500)
}

pub fn optional_title() -> ObjectBuilder {
    nullable(title()).description(Some("Absent or null keeps the title"))
}

pub fn display_name() -> ObjectBuilder {
    nullable(name(200)).description(Some("At most 200 characters; absent or null for none"))
}

/// A custom role's description.
pub fn description() -> ObjectBuilder {
    text(1000)
}

/// A document's body (`documents::MAX_BODY_CHARS`).
pub fn document_body() -> ObjectBuilder {
    text(1_048_576)
}

pub fn optional_document_body() -> ObjectBuilder {
    nullable(document_body()).description(Some("Absent or null keeps the body"))
}

pub fn region() -> ObjectBuilder {
    string()
        .min_length(Some(2))
        .max_length(Some(32))
        .pattern(Some(REGION_PATTERN))
        .description(Some("Data-residency region, e.g. `eu-central` (D1)"))
}

pub fn email() -> ObjectBuilder {
    string()
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Email)))
        .max_length(Some(254))
}

/// A password being chosen (`validate::password`).
pub fn new_password() -> ObjectBuilder {
    string()
        .min_length(Some(portcullis_core::validate::PASSWORD_MIN_CHARS))
        .max_length(Some(portcullis_core::validate::PASSWORD_MAX_BYTES / 4))
        .pattern(Some(NO_NUL_PATTERN))
        .description(Some("At least 12 characters and at most 1024 bytes"))
}

/// Any text a credential check compares (a password, a token): never stored as given.
pub fn presented_secret() -> ObjectBuilder {
    string().pattern(Some(NO_NUL_PATTERN))
}

pub fn integration_kind() -> ObjectBuilder {
    string().pattern(Some(KIND_PATTERN)).description(Some(
        "e.g. `slack`, `github`: 2-40 characters of a-z, 0-9 and _",
    ))
}

pub fn model_provider() -> ObjectBuilder {
    string()
        .pattern(Some(KIND_PATTERN))
        .description(Some("e.g. `anthropic`: 2-40 characters of a-z, 0-9 and _"))
}

/// Integration credentials and model keys (`integrations::secret_input`: 1 to 16384 bytes).
pub fn stored_secret() -> ObjectBuilder {
    string()
        .min_length(Some(1))
        .max_length(Some(4096))
        .pattern(Some(NO_NUL_PATTERN))
        .description(Some(
            "Stored envelope-encrypted and never returned; 1 to 16384 bytes",
        ))
}

/// A role a project grant can confer (`BuiltinRole::GRANTABLE_ON_PROJECTS` or a custom role).
pub fn project_role() -> ObjectBuilder {
    let builtin: Vec<&str> = BuiltinRole::GRANTABLE_ON_PROJECTS
        .iter()
        .map(|r| r.name())
        .collect();
    string()
        .pattern(Some(format!(
            "^({}|custom:{UUID_PATTERN})$",
            builtin.join("|")
        )))
        .description(Some(format!(
            "A built-in role that can be granted on a project ({}) or `custom:<role id>`",
            builtin.join(", ")
        )))
}

/// A role that may be handed out: a built-in role other than the owner's, or `custom:<role id>`.
pub fn assignable_role() -> ObjectBuilder {
    let builtin: Vec<&str> = BuiltinRole::ALL
        .iter()
        .filter(|r| **r != BuiltinRole::Owner)
        .map(|r| r.name())
        .collect();
    string()
        .pattern(Some(format!("^({}|custom:{UUID_PATTERN})$", builtin.join("|"))))
        .description(Some(format!(
            "A built-in role ({}) or `custom:<role id>`; the owner's seat moves only by ownership transfer (409)",
            builtin.join(", ")
        )))
}

/// The permissions a custom role may carry: any but the owner's own two.
pub fn role_permissions() -> ArrayBuilder {
    let names: Vec<&str> = Permission::ALL
        .iter()
        .filter(|p| {
            !matches!(
                p,
                Permission::EnvironmentDelete | Permission::OwnershipTransfer
            )
        })
        .map(|p| p.name())
        .collect();
    ArrayBuilder::new()
        .items(string().enum_values(Some(names)))
        .description(Some(
            "Permission names, e.g. `documents.read`; `environment.delete` and `ownership.transfer` belong to the owner alone",
        ))
}

/// A key's name, label or id at its provider.
pub fn key_reference() -> ObjectBuilder {
    string().min_length(Some(1)).pattern(Some(NO_NUL_PATTERN))
}

/// RFC 3339 times of the audit filters.
pub fn time() -> ObjectBuilder {
    nullable(string().format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime))))
}

/// Filters of the audit log that are compared as text.
pub fn filter_text() -> ObjectBuilder {
    nullable(string().pattern(Some(NO_NUL_PATTERN)))
}
