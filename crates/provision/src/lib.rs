//! Self-provisioned PostgreSQL for Portcullis.
//!
//! When the Portcullis server runs without a configured database, this crate gives it a private
//! PostgreSQL cluster built from the system's server binaries: it finds `initdb`/`pg_ctl`,
//! creates the cluster (`initdb`), writes the Portcullis-managed settings, starts the
//! postmaster detached from our process group, reuses one that is already running, and stops it
//! again. The test suites of every crate use the same code to share one cluster under the cargo
//! target directory ([`shared_test_cluster`]).
//!
//! This crate owns processes and files only: the data directory, the private Unix socket
//! directory, the server log, a lock file, and the PostgreSQL processes it launches. It must
//! never speak SQL (it contains no client; readiness comes from `pg_ctl -w` / `pg_isready`),
//! never open a TCP listener (`listen_addresses = ''`; local trust authentication is safe only
//! because the socket directory is private to the cluster's OS user), never run PostgreSQL as
//! root (as root it switches to the unprivileged `postgres` user), and never stop or modify a
//! server it did not start.
//!
//! `options` and `layout` say what is asked for and where its files go; `start` brings a
//! cluster up, with `initdb` creating one and `reuse` taking over a running server or clearing a
//! crashed one's traces; `cluster` is the running value and `stop` ends it; `shared` is the
//! test suites' cluster. `command`, `conf` and `lock` run the binaries, write the managed
//! settings and serialize all of it across processes.

mod cluster;
mod command;
mod conf;
mod discover;
mod error;
mod initdb;
mod layout;
mod location;
mod lock;
mod options;
mod pidfile;
mod reuse;
mod shared;
mod start;
mod stop;
mod sys;
mod user;

pub use cluster::LocalCluster;
pub use discover::find_server_binaries;
pub use error::ProvisionError;
pub use location::{cluster_location, cluster_location_under, SHARED_CLUSTERS};
pub use options::ClusterOptions;
pub use shared::{cargo_target_dir, shared_test_cluster, test_root};

/// The port the private cluster uses. Only its Unix socket listens, in a private directory, so
/// the port number merely names the socket file (`.s.PGSQL.5432`).
pub const DEFAULT_PORT: u16 = 5432;
/// The bootstrap superuser created by `initdb`.
pub const SUPERUSER: &str = "postgres";
