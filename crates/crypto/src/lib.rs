//! Cryptographic building blocks: bearer-token generation and hashing (E3), password hashing,
//! and a secret type that never prints and is wiped from memory on drop.
//!
//! This crate never touches a database or the network and never logs: callers decide what to
//! store, and a plaintext secret only leaves it inside a [`Secret`].

pub mod blind;
pub mod context;
pub mod envelope;
pub mod password;
pub mod secret;
pub mod token;

pub use password::{PasswordError, PasswordHasher};
pub use secret::Secret;
pub use token::{TokenHash, TokenKind};
