//! The only crate that talks SQL. It owns the connection pools, migrations, the boot-time
//! catalog check (T7) and the transaction types through which every query runs.
//!
//! Architecture invariants:
//! - Tenant tables are reached only through [`TenantTx`], which can only be created from a
//!   verified environment and caller and sets the database context for its transaction
//!   (T1, T2). Raw pool access outside this crate is a clippy error (`clippy.toml`).
//! - Query functions store what they are given: ids and timestamps are made by the caller.
//! - Nothing here knows about HTTP.
//! - The import graph between this crate's modules is acyclic; `custody` (providers, caches,
//!   platform and subject keys) is a leaf. Checked by `tests/it/module_graph.rs`.
//! - No `format!` into SQL outside `ddl`, checked by `.ci/check-sql`.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

pub mod audit_writer;
pub mod auth_cache;
pub mod bootstrap;
pub mod catalog;
pub mod chain;
pub mod context;
mod custody;
mod ddl;
mod error;
mod keyring_row;
pub mod leader;
pub mod operator_tokens;
pub mod pii;
pub mod queries;
pub mod sequencer;
pub mod streams;
pub mod subjects;
#[cfg(feature = "testing")]
pub mod testing;
mod tx;
pub mod vault;

pub use audit_writer::{AuditEvent, Outcome};
pub use bootstrap::{Bootstrap, DatabaseTarget};
pub use error::StoreError;
pub use tx::{Actor, AuthTx, Caller, RequestMeta, Store, TenantTx};

/// The nil environment id: the audit scope of platform-level events such as logins.
pub const PLATFORM_SCOPE: uuid::Uuid = uuid::Uuid::nil();
