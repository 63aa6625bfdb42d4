//! What the caller asks for: [`ClusterOptions`].

use std::path::PathBuf;

/// How to provision a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterOptions {
    /// The cluster's data directory (`PGDATA` is this directory itself). Its parent also receives
    /// `<name>.log` (server log), `<name>.lock` and usually `<name>.run/` (the socket directory).
    pub data_dir: PathBuf,
    /// Directory with the server binaries; `None` discovers them
    /// ([`find_server_binaries`](crate::find_server_binaries)).
    pub bin_dir: Option<PathBuf>,
    /// For tests: trade durability for speed (`fsync`, `synchronous_commit` and
    /// `full_page_writes` off; `initdb --no-sync`).
    pub ephemeral: bool,
    /// `max_connections` of the server.
    pub max_connections: u32,
}

impl ClusterOptions {
    /// Durable cluster in `data_dir` with discovered binaries and 100 connections.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        ClusterOptions {
            data_dir: data_dir.into(),
            bin_dir: None,
            ephemeral: false,
            max_connections: 100,
        }
    }
}
