//! The gateway's own integration tests (pure library parts; the HTTP-level gateway tests are
//! in `crates/server/tests`).

mod redact;
