//! The store's integration tests, one binary: each module attacks or exercises the database
//! layer through the test support (`portcullis_store::testing`), a fresh database per test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

mod attacker;
mod audit_guard;
mod audit_proofs;
mod auth_cache;
mod background_roles;
mod isolation;
mod module_graph;
mod read_policies;
mod sequencer;
mod support;
