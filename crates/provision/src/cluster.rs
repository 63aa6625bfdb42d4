//! [`LocalCluster`], a running cluster: where it is, how to connect to it (URLs over the
//! private socket), and whether it still runs.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use crate::pidfile::{self, ServerState};
use crate::user::RunAs;
use crate::SUPERUSER;

/// A running local PostgreSQL cluster, reached over its private Unix socket.
///
/// Dropping it does not stop the server; call [`LocalCluster::stop`].
#[derive(Debug)]
pub struct LocalCluster {
    pub(crate) data_dir: PathBuf,
    pub(crate) socket_dir: PathBuf,
    pub(crate) port: u16,
    pub(crate) log_file: PathBuf,
    pub(crate) lock_file: PathBuf,
    pub(crate) bin_dir: PathBuf,
    pub(crate) version: String,
    pub(crate) pid: Option<i32>,
    pub(crate) run_as: RunAs,
    pub(crate) started_by_us: bool,
    /// False for the shared test cluster, which must outlive every test process.
    pub(crate) stoppable: bool,
    pub(crate) stopped: AtomicBool,
}

impl LocalCluster {
    /// Connection URL for the bootstrap superuser `postgres` over the Unix socket, e.g.
    /// `postgres://postgres@localhost:5432/portcullis?host=/srv/pg/data.run`.
    /// Accepted by libpq and by sqlx's `PgConnectOptions::from_str`.
    pub fn superuser_url(&self, database: &str) -> String {
        self.url_for(SUPERUSER, database)
    }

    /// Connection URL for `user` (no password: local connections use trust authentication)
    /// over the Unix socket. User and database names are percent-encoded.
    pub fn url_for(&self, user: &str, database: &str) -> String {
        format!(
            "postgres://{}@localhost:{}/{}?host={}",
            percent_encode(user.as_bytes(), false),
            self.port,
            percent_encode(database.as_bytes(), false),
            percent_encode(self.socket_dir.as_os_str().as_bytes(), true),
        )
    }

    /// The directory holding the server's Unix socket (`.s.PGSQL.<port>`).
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// The cluster's data directory (absolute, with symlinks in its parent resolved).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The port number; it only names the socket file.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server log written by `pg_ctl -l`.
    pub fn log_file(&self) -> &Path {
        &self.log_file
    }

    /// The directory of the server binaries in use (also has `psql`, `pg_isready`, ...).
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// The server binaries' version, e.g. "15.4".
    pub fn server_version(&self) -> &str {
        &self.version
    }

    /// Whether this call started the server (false when an already running one was reused).
    pub fn started_by_us(&self) -> bool {
        self.started_by_us
    }

    /// Whether a postmaster is currently running in the data directory (by its lock file).
    pub fn is_running(&self) -> bool {
        matches!(
            pidfile::server_state(&self.data_dir),
            Ok(ServerState::Running(_))
        )
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters (and `/` if `keep_slash`).
pub(crate) fn percent_encode(bytes: &[u8], keep_slash: bool) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'.' | b'_' | b'~')
            || (keep_slash && b == b'/')
        {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DEFAULT_PORT;

    #[test]
    fn percent_encoding() {
        assert_eq!(percent_encode(b"/tmp/a b+c&d", true), "/tmp/a%20b%2Bc%26d");
        assert_eq!(percent_encode(b"my/db", false), "my%2Fdb");
        assert_eq!(percent_encode("ü".as_bytes(), false), "%C3%BC");
    }

    fn fake_cluster(socket_dir: &str) -> LocalCluster {
        LocalCluster {
            data_dir: PathBuf::from("/d"),
            socket_dir: PathBuf::from(socket_dir),
            port: DEFAULT_PORT,
            log_file: PathBuf::from("/d.log"),
            lock_file: PathBuf::from("/d.lock"),
            bin_dir: PathBuf::from("/bin"),
            version: "15.0".to_owned(),
            pid: None,
            run_as: RunAs {
                name: "postgres".to_owned(),
                uid: 1,
                gid: 1,
                home: None,
                switch: false,
            },
            started_by_us: false,
            stoppable: false,
            stopped: AtomicBool::new(false),
        }
    }

    #[test]
    fn url_format() {
        let cluster = fake_cluster("/srv/pg/data.run");
        assert_eq!(
            cluster.superuser_url("portcullis"),
            "postgres://postgres@localhost:5432/portcullis?host=/srv/pg/data.run"
        );
    }

    #[test]
    fn sqlx_parses_the_urls() -> Result<(), sqlx::Error> {
        use sqlx::postgres::PgConnectOptions;
        use std::str::FromStr;

        let cluster = fake_cluster("/tmp/odd dir+with&chars%/run");
        let url = cluster.url_for("app user", "db/with?odd#name");
        let opts = PgConnectOptions::from_str(&url)?;
        assert_eq!(
            opts.get_socket(),
            Some(&PathBuf::from("/tmp/odd dir+with&chars%/run"))
        );
        assert_eq!(opts.get_port(), 5432);
        assert_eq!(opts.get_username(), "app user");
        assert_eq!(opts.get_database(), Some("db/with?odd#name"));

        let plain = PgConnectOptions::from_str(
            &fake_cluster("/srv/pg/data.run").superuser_url("postgres"),
        )?;
        assert_eq!(plain.get_socket(), Some(&PathBuf::from("/srv/pg/data.run")));
        assert_eq!(plain.get_username(), "postgres");
        assert_eq!(plain.get_database(), Some("postgres"));
        Ok(())
    }
}
