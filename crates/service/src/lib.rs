//! The use cases of Portcullis: one plain async function per thing a caller can do (sign up,
//! log in, invite, change a role, write a document, set an integration, rotate keys, erase a
//! subject, export the audit log, ...), shared by the HTTP API, the CLI and background jobs.
//! A use case enters the tenant transaction, creates ids and timestamps, seals and opens
//! values, writes the audit entry and commits; the store's query functions store what they
//! are given.
//!
//! Use cases, by resource: [`account`] (setup, sign-up, login, the signed-in identity,
//! password changes), [`sessions`], [`environments`], [`members`] (role changes, removal,
//! erasure, ownership transfer), [`invitations`] (including acceptance), [`roles`] (and the
//! rules every role assignment follows), [`tokens`] (API tokens), [`audit_log`] (reading an
//! environment's log). Input types are plain Rust; results are the store's rows or small
//! domain structs, which the server maps to its JSON views.
//!
//! Projects, keys and the trail: [`projects`], [`grants`]
//! (a member's role on one project), [`documents`] (bodies sealed and opened here),
//! [`keyring`] (status, rotation with its re-encryption job, retirement, KEK switch),
//! [`integrations`] and [`model_key`] (write-only secrets, sealed here; only a hint is
//! returned), [`audit_access`] (streamed exports, checkpoints, proofs, published keys).
//! The operator's: [`platform`] (operator tokens and the platform audit scope), [`denials`]
//! (refused requests in the trail, rate-limited).
//!
//! Architecture invariants:
//! - No HTTP: this crate does not depend on axum or hyper's server half and knows no status
//!   codes. Failures are [`ServiceError`], which the server maps to responses.
//! - No SQL: every statement runs in `portcullis-store`.
//! - A mutation and its audit entry commit in the same transaction.

pub mod account;
pub mod anchor;
pub mod audit_access;
pub mod audit_log;
pub mod caller;
pub mod config;
pub mod denials;
pub mod documents;
pub mod environments;
mod error;
pub mod grants;
pub mod integrations;
pub mod invitations;
pub mod jobs;
pub mod keyring;
pub mod members;
pub mod model_key;
pub mod node;
pub mod platform;
pub mod projects;
pub mod report;
pub mod roles;
mod services;
pub mod sessions;
pub mod tokens;
pub mod trail;

pub use caller::{Credential, Principal};
pub use error::{ServiceError, ServiceResult};
pub use services::Services;
