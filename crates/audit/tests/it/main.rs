//! The audit crate's integration tests, one binary: the export bundle, tamper detection, the
//! published known-answer vectors and report windows, over the in-memory log in `support`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod bundle;
mod detection;
mod support;
mod vectors;
mod window;
