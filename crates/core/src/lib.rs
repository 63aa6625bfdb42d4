//! Domain vocabulary shared by every Portcullis crate: typed identifiers, the permission
//! catalogue, built-in roles and the rules for who may grant what.
//!
//! This crate performs no I/O and knows nothing about SQL, HTTP or cryptography. Anything
//! that needs a clock, a socket or a database belongs elsewhere.

pub mod ids;
pub mod permissions;
pub mod roles;
pub mod validate;

pub use ids::*;
pub use permissions::{Permission, PermissionSet};
pub use roles::{BuiltinRole, RoleRef};
