//! The HTTP edge: router, extractors, middleware, `ApiError`, OpenAPI and the `serve`
//! runner. This is the only crate that knows HTTP status codes.
//!
//! Architecture invariants:
//! - Every route under `/v1/environments/{id}` enters the environment through
//!   `Auth::enter`, which yields a `TenantTx` only for a verified member or token of that
//!   environment; everything else is 404 (R2).
//! - Every handler checks a permission before touching data, and the database checks again.
//! - Errors are logged once, by the request middleware, never in handlers.

pub mod app;
pub mod auth;
pub mod error;
pub mod extract;
pub mod headers;
pub mod middleware;
pub mod routes;
pub mod serve;
pub mod spec;
pub mod state;
pub mod tls;
pub mod views;

pub use app::{openapi, router};
pub use state::AppState;
