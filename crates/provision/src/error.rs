//! The one error type of this crate. Every variant renders as a single message that says what
//! went wrong and, where there is one, what the operator can do about it.

use std::io;
use std::path::PathBuf;

/// Why a local PostgreSQL cluster could not be found, created, started or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProvisionError {
    /// No directory with both `initdb` and `pg_ctl` was found.
    #[error(
        "PostgreSQL server binaries (initdb, pg_ctl) were not found in {}; install them \
         (Debian/Ubuntu: `apt-get install postgresql`) or configure an existing server with \
         `database.url` / PORTCULLIS_DATABASE_URL",
        .searched.join(", ")
    )]
    BinariesNotFound {
        /// Human-readable descriptions of every place that was looked at, in order.
        searched: Vec<String>,
    },

    /// The caller passed options that cannot work.
    #[error("invalid PostgreSQL cluster options: {0}")]
    InvalidOptions(String),

    /// Running as root, but there is no unprivileged `postgres` user to run the server as.
    #[error(
        "PostgreSQL refuses to run as root and there is no unprivileged system user `postgres` \
         to run it as; create an unprivileged user `postgres` (e.g. `useradd --system \
         --user-group --home-dir /var/lib/postgresql postgres`) or run portcullis as a non-root user"
    )]
    NoUnprivilegedUser,

    /// A directory on the way to the cluster cannot be searched by the user that runs PostgreSQL.
    #[error(
        "{path} is not reachable by the user `{user}` that runs PostgreSQL: the directory \
         {blocker} (mode {mode:04o}, owner uid {owner}) does not let that user through; put the \
         PostgreSQL data directory somewhere that user can reach (e.g. under /var/lib/portcullis) \
         or allow it through (e.g. `chmod o+x {blocker}`)"
    )]
    NotTraversable {
        /// The path PostgreSQL needs to reach.
        path: PathBuf,
        /// Name of the user PostgreSQL runs as.
        user: String,
        /// The first ancestor directory that blocks it.
        blocker: PathBuf,
        /// Permission bits of `blocker`.
        mode: u32,
        /// Owner uid of `blocker`.
        owner: u32,
    },

    /// A path exists but is unusable (wrong type, owner or contents).
    #[error("{path}: {problem}")]
    BadPath {
        /// The offending path.
        path: PathBuf,
        /// What is wrong with it and what to do.
        problem: String,
    },

    /// The cluster was created by a different PostgreSQL major version than the binaries found.
    #[error(
        "the PostgreSQL cluster at {data_dir} was created by PostgreSQL {cluster_major}, but the \
         server binaries in {bin_dir} are PostgreSQL {binaries_version}; install the PostgreSQL \
         {cluster_major} server binaries (and point the bin dir at them), or upgrade the cluster \
         with pg_upgrade"
    )]
    IncompatibleVersion {
        /// The cluster's data directory.
        data_dir: PathBuf,
        /// Contents of its `PG_VERSION` file.
        cluster_major: String,
        /// Directory of the binaries that were found.
        bin_dir: PathBuf,
        /// Version reported by `postgres --version`.
        binaries_version: String,
    },

    /// A file-system operation failed.
    #[error("could not {action}: {source}")]
    Io {
        /// What was being done, e.g. "create directory /x".
        action: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// A helper program (initdb, pg_ctl, ...) could not be run or exited unsuccessfully.
    #[error("{command} failed ({status}){}", fmt_output(.output))]
    CommandFailed {
        /// The command line.
        command: String,
        /// Exit status, or why it could not be spawned.
        status: String,
        /// The last lines of its output.
        output: String,
    },

    /// The server did not start or did not become ready.
    #[error(
        "PostgreSQL at {data_dir} did not start: {reason}; last lines of the server log {}:\n{log_tail}",
        .log_file.display()
    )]
    StartFailed {
        /// The cluster's data directory.
        data_dir: PathBuf,
        /// What went wrong.
        reason: String,
        /// The server log file.
        log_file: PathBuf,
        /// Its last lines.
        log_tail: String,
    },

    /// `pg_ctl stop` failed and the server is still running.
    #[error("PostgreSQL at {data_dir} did not stop: {reason}")]
    StopFailed {
        /// The cluster's data directory.
        data_dir: PathBuf,
        /// What went wrong.
        reason: String,
    },

    /// The cargo target directory (home of the shared test cluster) could not be located.
    #[error(
        "could not locate the cargo target directory for the shared test PostgreSQL cluster: \
         {0}; set CARGO_TARGET_DIR to an absolute path"
    )]
    TargetDirNotFound(String),
}

fn fmt_output(output: &str) -> String {
    if output.trim().is_empty() {
        String::new()
    } else {
        format!(":\n{}", output.trim_end())
    }
}

impl ProvisionError {
    pub(crate) fn io(action: impl Into<String>, source: io::Error) -> Self {
        ProvisionError::Io {
            action: action.into(),
            source,
        }
    }

    pub(crate) fn bad_path(path: impl Into<PathBuf>, problem: impl Into<String>) -> Self {
        ProvisionError::BadPath {
            path: path.into(),
            problem: problem.into(),
        }
    }
}
