//! The JSON contract: response types with their OpenAPI schemas, mapped from the service's
//! domain results and the store's rows. A renamed column or a new field in a row never
//! changes the API by accident; changing one of these does, and the OpenAPI snapshot says so.
//! One module per resource.

pub mod account;
pub mod audit_log;
pub mod environments;
pub mod invitations;
pub mod members;
pub mod roles;
pub mod tokens;
