//! Shared fixtures: the in-process app (`app`), the audit trail as a node sets it up
//! (`trail`), and an attacker's superuser edits of the append-only audit tables (`chain`).

pub mod app;
pub mod chain;
pub mod trail;

pub use app::{request, with_body, GatewaySetup, Reply, TestApp, User, PASSWORD};
pub use trail::owner_pool;

/// A 32-byte hash from the lowercase hex the API answers with.
pub fn hash32(hex: &str) -> [u8; 32] {
    <[u8; 32]>::try_from(
        (0..64)
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect::<Vec<u8>>(),
    )
    .unwrap()
}

/// A list of such hashes (a proof).
pub fn hashes(list: &serde_json::Value) -> Vec<[u8; 32]> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|h| hash32(h.as_str().unwrap()))
        .collect()
}

/// Runs `command` to completion; it must succeed (its stderr is the failure message).
pub fn run_ok(command: &mut std::process::Command) -> std::process::Output {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
