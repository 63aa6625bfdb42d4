//! The gateway's own integration tests (pure library parts; the HTTP-level gateway tests are
//! in `crates/server/tests`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod redact;
