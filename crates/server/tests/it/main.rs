//! The server's integration tests: one binary, so the server is linked once rather than once
//! per file. Each module attacks one area; `support` holds the shared fixtures.
// Tests state their expectations with unwrap/panic, and reach the database directly to set up
// and tamper; the workspace denies both for product code.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

mod support;

mod anchor_s3;
mod api;
mod audit_anchors;
mod audit_report;
mod audit_trail;
mod cmk;
mod contract;
mod csrf;
mod encryption;
mod erasure;
mod gateway;
mod gateway_routing;
mod headers;
mod matrix;
mod openapi;
mod personal_data;
mod platform;
mod sdk;
mod signing_consistency;
mod tls;
