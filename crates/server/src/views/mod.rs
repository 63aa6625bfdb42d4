//! The API's response types (`ToSchema`), one module per resource, mapped with `From` from the
//! domain types the service returns. They are the JSON contract: a renamed column or a new
//! domain field changes nothing here unless it is mapped on purpose.

pub mod audit;
pub mod documents;
pub mod integrations;
pub mod keyring;
pub mod projects;
