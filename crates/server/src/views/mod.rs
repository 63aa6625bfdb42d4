//! One module per resource.
//! The API's response types (`ToSchema`), one module per resource, mapped with `From` from the
//! The JSON contract: response types with their OpenAPI schemas, mapped from the service's
//! changes the API by accident; changing one of these does, and the OpenAPI snapshot says so.
//! domain field changes nothing here unless it is mapped on purpose.
//! domain results and the store's rows. A renamed column or a new field in a row never
//! domain types the service returns. They are the JSON contract: a renamed column or a new
pub mod account;
pub mod audit_access;
pub mod audit_log;
pub mod documents;
pub mod environments;
pub mod integrations;
pub mod invitations;
pub mod keyring;
pub mod members;
pub mod projects;
pub mod roles;
pub mod tokens;
