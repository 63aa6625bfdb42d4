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

mod discover;
mod error;
mod pidfile;
mod sys;
mod user;

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tracing::{debug, info, warn};

pub use discover::find_server_binaries;
pub use error::ProvisionError;

use pidfile::{PidFile, ServerState};
use user::RunAs;

/// The port the private cluster uses. Only its Unix socket listens, in a private directory, so
/// the port number merely names the socket file (`.s.PGSQL.5432`).
pub const DEFAULT_PORT: u16 = 5432;
/// The bootstrap superuser created by `initdb`.
pub const SUPERUSER: &str = "postgres";
/// Longest socket file path we use; the kernel limit (`sun_path`) is 107 bytes.
const MAX_SOCKET_PATH_LEN: usize = 100;
/// How long `pg_ctl` (and we, for a server someone else is starting) wait for readiness.
const START_TIMEOUT: Duration = Duration::from_secs(60);
const READY_POLL_INTERVAL: Duration = Duration::from_millis(200);
/// Settings file inside the data directory that Portcullis rewrites on every start.
const MANAGED_CONF: &str = "portcullis.conf";
const INCLUDE_LINE: &str = "include = 'portcullis.conf'";
const LOG_TAIL_LINES: usize = 20;

/// How to provision a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterOptions {
    /// The cluster's data directory (`PGDATA` is this directory itself). Its parent also receives
    /// `<name>.log` (server log), `<name>.lock` and usually `<name>.run/` (the socket directory).
    pub data_dir: PathBuf,
    /// Directory with the server binaries; `None` discovers them ([`find_server_binaries`]).
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

/// A running local PostgreSQL cluster, reached over its private Unix socket.
///
/// Dropping it does not stop the server; call [`LocalCluster::stop`].
#[derive(Debug)]
pub struct LocalCluster {
    data_dir: PathBuf,
    socket_dir: PathBuf,
    port: u16,
    log_file: PathBuf,
    lock_file: PathBuf,
    bin_dir: PathBuf,
    version: String,
    pid: Option<i32>,
    run_as: RunAs,
    started_by_us: bool,
    /// False for the shared test cluster, which must outlive every test process.
    stoppable: bool,
    stopped: AtomicBool,
}

/// Where a cluster's files live.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Layout {
    data_dir: PathBuf,
    socket_dir: PathBuf,
    log_file: PathBuf,
    lock_file: PathBuf,
    /// initdb runs here and the result is renamed to `data_dir`, so a cluster that exists is
    /// always complete.
    initdb_dir: PathBuf,
}

impl Layout {
    /// `data_dir` must be absolute and have a final component.
    fn new(data_dir: &Path) -> Result<Layout, ProvisionError> {
        let (Some(parent), Some(name)) = (data_dir.parent(), data_dir.file_name()) else {
            return Err(ProvisionError::InvalidOptions(format!(
                "data_dir {} must name a directory below some parent",
                data_dir.display()
            )));
        };
        let sibling = |prefix: &str, suffix: &str| {
            let mut file = OsString::from(prefix);
            file.push(name);
            file.push(suffix);
            parent.join(file)
        };
        Ok(Layout {
            data_dir: data_dir.to_path_buf(),
            socket_dir: socket_dir_for(data_dir, &sibling("", ".run")),
            log_file: sibling("", ".log"),
            lock_file: sibling("", ".lock"),
            initdb_dir: sibling(".", ".initdb-tmp"),
        })
    }
}

/// `preferred` unless the socket path inside it would be too long for a Unix socket; then
/// `/tmp/portcullis-<8 hex digits of a hash of data_dir>`.
fn socket_dir_for(data_dir: &Path, preferred: &Path) -> PathBuf {
    let socket_len = preferred.as_os_str().len() + socket_file_name(DEFAULT_PORT).len() + 1;
    if socket_len <= MAX_SOCKET_PATH_LEN {
        return preferred.to_path_buf();
    }
    PathBuf::from(format!(
        "/tmp/portcullis-{:08x}",
        fnv1a_32(data_dir.as_os_str().as_bytes())
    ))
}

fn socket_file_name(port: u16) -> String {
    format!(".s.PGSQL.{port}")
}

/// FNV-1a: tiny, and unlike std's hasher guaranteed stable across Rust releases, so a newer
/// Portcullis finds the socket of a server an older one started.
fn fnv1a_32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5_u32, |hash, &b| {
        (hash ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// Percent-encodes everything but RFC 3986 unreserved characters (and `/` if `keep_slash`).
fn percent_encode(bytes: &[u8], keep_slash: bool) -> String {
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

/// Quotes a value for postgresql.conf.
fn conf_quote(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

fn render_managed_conf(opts: &ClusterOptions, socket_dir: &Path) -> String {
    let mut conf = format!(
        "# Managed by Portcullis (portcullis-provision): rewritten on every start, do not edit.\n\
         # Only a private Unix socket listens; TCP is off.\n\
         listen_addresses = ''\n\
         port = {DEFAULT_PORT}\n\
         unix_socket_directories = {}\n\
         unix_socket_permissions = 0700\n\
         max_connections = {}\n",
        conf_quote(&socket_dir.to_string_lossy()),
        opts.max_connections
    );
    if opts.ephemeral {
        conf.push_str(
            "# Ephemeral (test) cluster: durability traded for speed.\n\
             fsync = off\n\
             synchronous_commit = off\n\
             full_page_writes = off\n",
        );
    }
    conf
}

/// The last `LOG_TAIL_LINES` lines of `path`, preferring what was written after byte `since`
/// (the current attempt) and reading at most the last 64 KiB.
fn log_tail(path: &Path, since: u64) -> String {
    let read = || -> io::Result<String> {
        let mut file = File::open(path)?;
        let len = file.metadata()?.len();
        let start = if since < len { since } else { 0 };
        file.seek(SeekFrom::Start(start.max(len.saturating_sub(64 * 1024))))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok(last_lines(&String::from_utf8_lossy(&bytes), LOG_TAIL_LINES))
    };
    match read() {
        Ok(tail) if tail.trim().is_empty() => "(the log is empty)".to_owned(),
        Ok(tail) => tail,
        Err(e) => format!("(could not read it: {e})"),
    }
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.trim_end().lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn output_text(output: &Output) -> String {
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    last_lines(&text, LOG_TAIL_LINES)
}

fn describe_command(cmd: &tokio::process::Command) -> String {
    let std_cmd = cmd.as_std();
    let mut text = std_cmd.get_program().to_string_lossy().into_owned();
    for arg in std_cmd.get_args() {
        text.push(' ');
        text.push_str(&arg.to_string_lossy());
    }
    text
}

/// Runs `cmd` to completion, capturing its output; a non-zero exit is an error.
async fn run(mut cmd: tokio::process::Command) -> Result<Output, ProvisionError> {
    let command = describe_command(&cmd);
    debug!(%command, "running");
    let output = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .await
        .map_err(|e| ProvisionError::CommandFailed {
            command: command.clone(),
            status: format!("could not run it: {e}"),
            output: String::new(),
        })?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(ProvisionError::CommandFailed {
            command,
            status: output.status.to_string(),
            output: output_text(&output),
        })
    }
}

/// Contents of `PG_VERSION` (the major version that created the cluster), if there is one.
fn read_pg_version(data_dir: &Path) -> Result<Option<String>, ProvisionError> {
    match fs::read_to_string(data_dir.join("PG_VERSION")) {
        Ok(text) => Ok(Some(text.trim().to_owned())),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(ProvisionError::io(
            format!("read {}", data_dir.join("PG_VERSION").display()),
            e,
        )),
    }
}

/// Holds the cluster's lock file, exclusively locked, until dropped.
#[derive(Debug)]
struct ClusterLock(#[allow(dead_code)] File);

async fn lock_cluster(lock_file: &Path) -> Result<ClusterLock, ProvisionError> {
    let path = lock_file.to_path_buf();
    let described = path.display().to_string();
    tokio::task::spawn_blocking(move || {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)?;
        match sys::lock_exclusive(&file, false) {
            Ok(()) => return Ok(ClusterLock(file)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => info!(
                lock_file = %path.display(),
                "another process (or task) is starting or stopping this PostgreSQL cluster; waiting for it"
            ),
            Err(e) => return Err(e),
        }
        sys::lock_exclusive(&file, true)?;
        Ok(ClusterLock(file))
    })
    .await
    .map_err(|e| ProvisionError::io(format!("lock {described}"), io::Error::other(e)))?
    .map_err(|e| ProvisionError::io(format!("lock {described}"), e))
}

/// Everything needed while bringing a cluster up.
struct Starter {
    opts: ClusterOptions,
    layout: Layout,
    bin_dir: PathBuf,
    version: String,
    run_as: RunAs,
}

impl LocalCluster {
    /// Makes sure a cluster is running in `opts.data_dir` and accepting connections.
    ///
    /// Runs `initdb` if `data_dir` holds no cluster, starts the server unless one is already
    /// running there (a running server, e.g. left over after this process was killed, is reused
    /// and [`started_by_us`](Self::started_by_us) is false), and waits until it accepts
    /// connections. Concurrent calls for the same data directory, from any process, are
    /// serialized by an exclusive lock on `<data_dir>.lock`.
    pub async fn start(opts: ClusterOptions) -> Result<LocalCluster, ProvisionError> {
        if opts.max_connections == 0 {
            return Err(ProvisionError::InvalidOptions(
                "max_connections must be at least 1".to_owned(),
            ));
        }
        let data_dir = std::path::absolute(&opts.data_dir)
            .map_err(|e| ProvisionError::io(format!("resolve {}", opts.data_dir.display()), e))?;
        let run_as = RunAs::resolve()?;

        // Discover before touching the file system. PG_VERSION is only a hint here; it is read
        // again under the lock.
        let hint = read_pg_version(&data_dir).ok().flatten();
        let bin_dir =
            discover::find_server_binaries_preferring(opts.bin_dir.as_deref(), hint.as_deref())?;
        let mut version_cmd = run_as.command(&bin_dir.join("postgres"));
        version_cmd.arg("--version");
        let version_output = run(version_cmd).await?;
        let version_text = String::from_utf8_lossy(&version_output.stdout);
        let version = discover::parse_version_output(&version_text)
            .unwrap_or_else(|| version_text.trim().to_owned());

        // Create the parent and resolve symlinks in it, so the path (and the socket directory
        // derived from its hash) is stable however the caller spelled it.
        let parent = data_dir.parent().filter(|p| !p.as_os_str().is_empty());
        let (Some(parent), Some(name)) = (parent, data_dir.file_name()) else {
            return Err(ProvisionError::InvalidOptions(format!(
                "data_dir {} must name a directory below some parent",
                data_dir.display()
            )));
        };
        fs::create_dir_all(parent)
            .map_err(|e| ProvisionError::io(format!("create directory {}", parent.display()), e))?;
        let parent = fs::canonicalize(parent)
            .map_err(|e| ProvisionError::io(format!("resolve {}", parent.display()), e))?;
        let layout = Layout::new(&parent.join(name))?;
        run_as.check_reachable(&layout.data_dir)?;
        run_as.check_reachable(&layout.socket_dir)?;

        let starter = Starter {
            opts,
            layout,
            bin_dir,
            version,
            run_as,
        };
        let _lock = lock_cluster(&starter.layout.lock_file).await?;
        starter.start_locked().await
    }

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

    /// Stops the server with `pg_ctl stop -m fast` if this value started it; otherwise (reused
    /// server, shared test cluster) does nothing. Idempotent.
    pub async fn stop(&self) -> Result<(), ProvisionError> {
        if !self.started_by_us || !self.stoppable || self.stopped.load(Ordering::SeqCst) {
            return Ok(());
        }
        let _lock = lock_cluster(&self.lock_file).await?;
        let stop_failed = |reason: String| ProvisionError::StopFailed {
            data_dir: self.data_dir.clone(),
            reason,
        };
        match pidfile::server_state(&self.data_dir) {
            Ok(ServerState::Running(running)) if Some(running.pid) == self.pid => {}
            Ok(ServerState::Running(running)) => {
                // Someone restarted it after us; it is theirs now.
                info!(
                    data_dir = %self.data_dir.display(),
                    pid = running.pid,
                    "not stopping PostgreSQL: it was restarted by someone else"
                );
                self.stopped.store(true, Ordering::SeqCst);
                return Ok(());
            }
            Ok(_) => {
                self.stopped.store(true, Ordering::SeqCst);
                return Ok(());
            }
            Err(e) => return Err(stop_failed(format!("could not read postmaster.pid: {e}"))),
        }
        let mut cmd = self.run_as.command(&self.bin_dir.join("pg_ctl"));
        cmd.arg("-D")
            .arg(&self.data_dir)
            .args(["-m", "fast", "-w", "-t"])
            .arg(START_TIMEOUT.as_secs().to_string())
            .arg("stop");
        if let Err(err) = run(cmd).await {
            if self.is_running() {
                return Err(stop_failed(err.to_string()));
            }
        }
        self.stopped.store(true, Ordering::SeqCst);
        info!(data_dir = %self.data_dir.display(), "stopped PostgreSQL at {}", self.data_dir.display());
        Ok(())
    }
}

impl Starter {
    /// Runs with the cluster lock held.
    async fn start_locked(self) -> Result<LocalCluster, ProvisionError> {
        let data_dir = self.layout.data_dir.clone();
        match read_pg_version(&data_dir)? {
            Some(major) => self.check_existing_cluster(&major)?,
            None => self.create_cluster().await?,
        }

        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            let state = pidfile::server_state(&data_dir).map_err(|e| {
                ProvisionError::io(
                    format!("read {}", data_dir.join(pidfile::PID_FILE).display()),
                    e,
                )
            })?;
            match state {
                ServerState::NotRunning => break,
                ServerState::StaleDeadPid(stale) => {
                    info!(
                        data_dir = %data_dir.display(),
                        pid = stale.pid,
                        "found a stale postmaster.pid (process {} no longer exists); PostgreSQL \
                         removes it when it starts",
                        stale.pid
                    );
                    break;
                }
                ServerState::StaleBlockingPid(stale) => {
                    warn!(
                        data_dir = %data_dir.display(),
                        pid = stale.pid,
                        "removing a stale postmaster.pid: process {} exists but is not a \
                         postmaster of this cluster (exited, or its pid was reused)",
                        stale.pid
                    );
                    let path = data_dir.join(pidfile::PID_FILE);
                    match fs::remove_file(&path) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => {
                            return Err(ProvisionError::io(
                                format!("remove stale {}", path.display()),
                                e,
                            ))
                        }
                    }
                    break;
                }
                ServerState::Orphaned(stale, users) => {
                    if tokio::time::Instant::now() >= deadline {
                        return Err(self.start_failed(
                            format!(
                                "its postmaster (pid {}) is gone, but processes {users:?} still \
                                 work in the data directory (orphaned server processes?); stop \
                                 them and try again",
                                stale.pid
                            ),
                            0,
                        ));
                    }
                    debug!(?users, "waiting for orphaned server processes to exit");
                    tokio::time::sleep(READY_POLL_INTERVAL).await;
                }
                ServerState::Running(running) => {
                    if let Some(cluster) = self.try_reuse(&running).await? {
                        return Ok(cluster);
                    }
                    if tokio::time::Instant::now() >= deadline {
                        return Err(self.start_failed(
                            format!(
                                "a server (pid {}) is already running there but did not accept \
                             connections within {} s",
                                running.pid,
                                START_TIMEOUT.as_secs()
                            ),
                            0,
                        ));
                    }
                    tokio::time::sleep(READY_POLL_INTERVAL).await;
                }
            }
        }
        self.start_server().await
    }

    fn check_existing_cluster(&self, major: &str) -> Result<(), ProvisionError> {
        let data_dir = &self.layout.data_dir;
        if discover::major_of(&self.version) != major {
            return Err(ProvisionError::IncompatibleVersion {
                data_dir: data_dir.clone(),
                cluster_major: major.to_owned(),
                bin_dir: self.bin_dir.clone(),
                binaries_version: self.version.clone(),
            });
        }
        let md = fs::metadata(data_dir)
            .map_err(|e| ProvisionError::io(format!("inspect {}", data_dir.display()), e))?;
        if md.uid() != self.run_as.uid {
            return Err(ProvisionError::bad_path(
                data_dir,
                format!(
                    "the PostgreSQL cluster here is owned by uid {}, but PostgreSQL runs as `{}` \
                     (uid {}); fix the owner (chown -R) or use another data directory",
                    md.uid(),
                    self.run_as.name,
                    self.run_as.uid
                ),
            ));
        }
        Ok(())
    }

    /// initdb, into a scratch directory renamed into place (or into an existing empty one).
    async fn create_cluster(&self) -> Result<(), ProvisionError> {
        let data_dir = &self.layout.data_dir;
        let exists = match fs::metadata(data_dir) {
            Ok(md) if md.is_dir() => true,
            Ok(_) => return Err(ProvisionError::bad_path(
                data_dir,
                "exists but is not a directory; point data_dir at an empty or missing directory",
            )),
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => {
                return Err(ProvisionError::io(
                    format!("inspect {}", data_dir.display()),
                    e,
                ))
            }
        };
        if exists {
            let mut entries = fs::read_dir(data_dir)
                .map_err(|e| ProvisionError::io(format!("list {}", data_dir.display()), e))?;
            if entries.next().is_some() {
                return Err(ProvisionError::bad_path(
                    data_dir,
                    "is not empty but holds no PostgreSQL cluster (no PG_VERSION); point data_dir \
                     at an empty or missing directory",
                ));
            }
            if self.run_as.switch {
                let md = fs::metadata(data_dir).map_err(|e| {
                    ProvisionError::io(format!("inspect {}", data_dir.display()), e)
                })?;
                if md.uid() == 0 {
                    self.run_as.give(data_dir)?;
                }
            }
            self.initdb(data_dir).await?;
        } else {
            let scratch = &self.layout.initdb_dir;
            if fs::symlink_metadata(scratch).is_ok() {
                // Left behind by an interrupted initdb; we hold the lock, so nobody uses it.
                fs::remove_dir_all(scratch).map_err(|e| {
                    ProvisionError::io(format!("remove leftover {}", scratch.display()), e)
                })?;
            }
            self.run_as.ensure_private_dir(scratch)?;
            self.initdb(scratch).await?;
            fs::rename(scratch, data_dir).map_err(|e| {
                ProvisionError::io(
                    format!("move {} to {}", scratch.display(), data_dir.display()),
                    e,
                )
            })?;
            if !self.opts.ephemeral {
                if let Some(parent) = data_dir.parent() {
                    File::open(parent)
                        .and_then(|dir| dir.sync_all())
                        .map_err(|e| ProvisionError::io(format!("sync {}", parent.display()), e))?;
                }
            }
        }
        info!(
            data_dir = %data_dir.display(),
            "initialized PostgreSQL cluster at {}",
            data_dir.display()
        );
        Ok(())
    }

    async fn initdb(&self, target: &Path) -> Result<(), ProvisionError> {
        info!(
            data_dir = %self.layout.data_dir.display(),
            version = %self.version,
            "creating a PostgreSQL {} cluster at {} with initdb (this takes a few seconds)",
            self.version,
            self.layout.data_dir.display()
        );
        let mut cmd = self.run_as.command(&self.bin_dir.join("initdb"));
        cmd.arg("-D").arg(target).args([
            "-U",
            SUPERUSER,
            "-E",
            "UTF8",
            "--no-locale",
            "--auth-local=trust",
            "--auth-host=reject",
        ]);
        if self.opts.ephemeral {
            cmd.arg("--no-sync");
        }
        run(cmd).await?;
        append_include(&target.join("postgresql.conf"))
    }

    /// Reuses a running server if it is ready; `None` means "not ready yet, poll again".
    async fn try_reuse(&self, running: &PidFile) -> Result<Option<LocalCluster>, ProvisionError> {
        if !running.is_ready() {
            return Ok(None);
        }
        let Some(socket_dir) = running.socket_dir.clone() else {
            return Err(self.start_failed(
                format!(
                    "the server already running there (pid {}) has no Unix socket; stop it \
                 (pg_ctl -D {} stop) so Portcullis can start it with its own settings",
                    running.pid,
                    self.layout.data_dir.display()
                ),
                0,
            ));
        };
        let port = running.port.unwrap_or(DEFAULT_PORT);
        if !self.accepts_connections(&socket_dir, port).await {
            return Ok(None);
        }
        info!(
            data_dir = %self.layout.data_dir.display(),
            pid = running.pid,
            socket_dir = %socket_dir.display(),
            "reusing PostgreSQL already running at {} (pid {})",
            self.layout.data_dir.display(),
            running.pid
        );
        Ok(Some(self.cluster(
            socket_dir,
            port,
            Some(running.pid),
            false,
        )))
    }

    /// Asks `pg_isready`; without it (unusual installations) trusts postmaster.pid's "ready".
    async fn accepts_connections(&self, socket_dir: &Path, port: u16) -> bool {
        let program = self.bin_dir.join("pg_isready");
        if !program.is_file() {
            return true;
        }
        let mut cmd = self.run_as.command(&program);
        cmd.args(["-q", "-t", "5", "-U", SUPERUSER, "-d", "postgres", "-h"])
            .arg(socket_dir)
            .arg("-p")
            .arg(port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        matches!(cmd.status().await, Ok(status) if status.success())
    }

    async fn start_server(&self) -> Result<LocalCluster, ProvisionError> {
        let layout = &self.layout;
        append_include(&layout.data_dir.join("postgresql.conf"))?;
        self.write_managed_conf()?;
        self.run_as.ensure_private_dir(&layout.socket_dir)?;
        OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&layout.log_file)
            .map_err(|e| ProvisionError::io(format!("open {}", layout.log_file.display()), e))?;
        self.run_as.give(&layout.log_file)?;
        let log_len = fs::metadata(&layout.log_file).map_or(0, |md| md.len());

        let mut cmd = self.run_as.command(&self.bin_dir.join("pg_ctl"));
        cmd.arg("-D")
            .arg(&layout.data_dir)
            .arg("-l")
            .arg(&layout.log_file)
            .args(["-w", "-t"])
            .arg(START_TIMEOUT.as_secs().to_string())
            .arg("start")
            // Our own process group: the postmaster must not get the terminal's Ctrl-C meant for
            // us (pg_ctl additionally calls setsid for it) and must survive our death.
            .process_group(0);
        if let Err(err) = run(cmd).await {
            let reason = match err {
                ProvisionError::CommandFailed { status, output, .. } => {
                    let output: Vec<&str> = output.lines().map(str::trim).collect();
                    format!("`pg_ctl start` failed ({status}): {}", output.join(" / "))
                }
                other => other.to_string(),
            };
            return Err(self.start_failed(reason, log_len));
        }

        let running = pidfile::read(&layout.data_dir).ok().flatten();
        let socket_dir = running
            .as_ref()
            .and_then(|p| p.socket_dir.clone())
            .unwrap_or_else(|| layout.socket_dir.clone());
        let port = running
            .as_ref()
            .and_then(|p| p.port)
            .unwrap_or(DEFAULT_PORT);
        let pid = running.as_ref().map(|p| p.pid);
        info!(
            data_dir = %layout.data_dir.display(),
            socket_dir = %socket_dir.display(),
            version = %self.version,
            pid = pid.unwrap_or_default(),
            "started PostgreSQL (version {}) at {}, socket in {}",
            self.version,
            layout.data_dir.display(),
            socket_dir.display()
        );
        Ok(self.cluster(socket_dir, port, pid, true))
    }

    fn write_managed_conf(&self) -> Result<(), ProvisionError> {
        let data_dir = &self.layout.data_dir;
        let target = data_dir.join(MANAGED_CONF);
        let scratch = data_dir.join(format!("{MANAGED_CONF}.new"));
        let write = || -> io::Result<()> {
            let mut file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&scratch)?;
            file.write_all(render_managed_conf(&self.opts, &self.layout.socket_dir).as_bytes())?;
            file.sync_all()
        };
        write().map_err(|e| ProvisionError::io(format!("write {}", scratch.display()), e))?;
        self.run_as.give(&scratch)?;
        fs::rename(&scratch, &target)
            .map_err(|e| ProvisionError::io(format!("write {}", target.display()), e))
    }

    fn cluster(
        &self,
        socket_dir: PathBuf,
        port: u16,
        pid: Option<i32>,
        ours: bool,
    ) -> LocalCluster {
        LocalCluster {
            data_dir: self.layout.data_dir.clone(),
            socket_dir,
            port,
            log_file: self.layout.log_file.clone(),
            lock_file: self.layout.lock_file.clone(),
            bin_dir: self.bin_dir.clone(),
            version: self.version.clone(),
            pid,
            run_as: self.run_as.clone(),
            started_by_us: ours,
            stoppable: true,
            stopped: AtomicBool::new(false),
        }
    }

    fn start_failed(&self, reason: String, log_since: u64) -> ProvisionError {
        ProvisionError::StartFailed {
            data_dir: self.layout.data_dir.clone(),
            reason,
            log_file: self.layout.log_file.clone(),
            log_tail: log_tail(&self.layout.log_file, log_since),
        }
    }
}

/// Appends the include of `portcullis.conf` (with a comment) to postgresql.conf unless present.
fn append_include(conf: &Path) -> Result<(), ProvisionError> {
    let text = fs::read_to_string(conf)
        .map_err(|e| ProvisionError::io(format!("read {}", conf.display()), e))?;
    if text.lines().any(|line| line.trim() == INCLUDE_LINE) {
        return Ok(());
    }
    let addition = format!(
        "{}\n# Portcullis manages this cluster: the settings in {MANAGED_CONF} (rewritten by \
         Portcullis on every start) override the ones above.\n{INCLUDE_LINE}\n",
        if text.ends_with('\n') || text.is_empty() {
            ""
        } else {
            "\n"
        }
    );
    OpenOptions::new()
        .append(true)
        .open(conf)
        .and_then(|mut file| file.write_all(addition.as_bytes()))
        .map_err(|e| ProvisionError::io(format!("append to {}", conf.display()), e))
}

/// The cargo target directory of the running test (or other) binary: `CARGO_TARGET_DIR` if it
/// is an absolute path, else the nearest ancestor of the executable named `target` or marked
/// by cargo's `CACHEDIR.TAG`.
pub fn cargo_target_dir() -> Result<PathBuf, ProvisionError> {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        let dir = PathBuf::from(dir);
        if dir.is_absolute() {
            return Ok(dir);
        }
    }
    let exe = std::env::current_exe()
        .map_err(|e| ProvisionError::TargetDirNotFound(format!("current_exe failed: {e}")))?;
    exe.ancestors()
        .skip(1)
        .find(|dir| {
            dir.file_name().is_some_and(|name| name == "target")
                || dir.join("CACHEDIR.TAG").is_file()
        })
        .map(Path::to_path_buf)
        .ok_or_else(|| {
            ProvisionError::TargetDirNotFound(format!(
                "no ancestor of {} is named `target` or holds CACHEDIR.TAG",
                exe.display()
            ))
        })
}

/// The PostgreSQL cluster shared by the test suites of all crates.
///
/// Lives in `<cargo target dir>/portcullis-test-pg/` (data in `data/`), is ephemeral, allows
/// 300 connections, and is created and started on first use. Concurrent callers (tasks, or the
/// test binaries cargo runs side by side) are serialized by a file lock; all get the same
/// running server. The server runs detached and is left running for later test processes:
/// [`LocalCluster::stop`] on the returned value does nothing.
pub async fn shared_test_cluster() -> Result<LocalCluster, ProvisionError> {
    let root = test_root()?.join("portcullis-test-pg");
    let opts = ClusterOptions {
        data_dir: root.join("data"),
        bin_dir: None,
        ephemeral: true,
        max_connections: 300,
    };
    let mut cluster = LocalCluster::start(opts).await?;
    cluster.stoppable = false;
    Ok(cluster)
}

/// Where test clusters and scratch directories live: the cargo target directory when the
/// cluster's user can reach it, otherwise (a checkout under a private home directory, say) a
/// directory in the system temp dir named after the target directory.
pub fn test_root() -> Result<PathBuf, ProvisionError> {
    let target = cargo_target_dir()?;
    let user = user::RunAs::resolve()?;
    match user.check_reachable(&target.join("probe")) {
        Ok(()) => Ok(target),
        Err(ProvisionError::NotTraversable { blocker, .. }) => {
            let fallback = std::env::temp_dir().join(format!(
                "portcullis-test-{:08x}",
                fnv1a_32(target.as_os_str().as_bytes())
            ));
            tracing::warn!(
                blocker = %blocker.display(),
                fallback = %fallback.display(),
                "the PostgreSQL user cannot reach the target directory; test clusters live in the temp dir instead"
            );
            std::fs::create_dir_all(&fallback)
                .map_err(|e| ProvisionError::io(format!("create {}", fallback.display()), e))?;
            Ok(fallback)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_data_dirs_keep_the_socket_next_to_the_cluster() {
        let layout = Layout::new(Path::new("/srv/portcullis/pg")).ok();
        assert_eq!(
            layout,
            Some(Layout {
                data_dir: PathBuf::from("/srv/portcullis/pg"),
                socket_dir: PathBuf::from("/srv/portcullis/pg.run"),
                log_file: PathBuf::from("/srv/portcullis/pg.log"),
                lock_file: PathBuf::from("/srv/portcullis/pg.lock"),
                initdb_dir: PathBuf::from("/srv/portcullis/.pg.initdb-tmp"),
            })
        );
    }

    #[test]
    fn long_data_dirs_put_the_socket_in_tmp() {
        let long = PathBuf::from(format!("/srv/{}/pg", "x".repeat(90)));
        let socket_dir = Layout::new(&long).map(|l| l.socket_dir).ok();
        let expected = format!(
            "/tmp/portcullis-{:08x}",
            fnv1a_32(long.as_os_str().as_bytes())
        );
        assert_eq!(socket_dir, Some(PathBuf::from(&expected)));
        assert_eq!(expected.len(), "/tmp/portcullis-".len() + 8);
        // Deterministic and path-specific.
        assert_eq!(fnv1a_32(b"/a"), fnv1a_32(b"/a"));
        assert_ne!(fnv1a_32(b"/a"), fnv1a_32(b"/b"));
    }

    #[test]
    fn the_socket_length_limit_is_exact() {
        // "/.s.PGSQL.5432" is 14 bytes, so an 86-byte directory is the longest kept.
        let fits = PathBuf::from(format!("/{}", "d".repeat(85)));
        let too_long = PathBuf::from(format!("/{}", "d".repeat(86)));
        assert_eq!(socket_dir_for(Path::new("/x"), &fits), fits);
        assert!(socket_dir_for(Path::new("/x"), &too_long).starts_with("/tmp"));
    }

    #[test]
    fn fnv_matches_reference_vectors() {
        assert_eq!(fnv1a_32(b""), 0x811c_9dc5);
        assert_eq!(fnv1a_32(b"a"), 0xe40c_292c);
        assert_eq!(fnv1a_32(b"foobar"), 0xbf9c_f968);
    }

    #[test]
    fn conf_values_are_quoted() {
        assert_eq!(conf_quote("/tmp/it's\\here"), "'/tmp/it''s\\\\here'");
        let conf = render_managed_conf(
            &ClusterOptions {
                ephemeral: true,
                max_connections: 300,
                ..ClusterOptions::new("/x")
            },
            Path::new("/x.run"),
        );
        assert!(conf.contains("listen_addresses = ''\n"));
        assert!(conf.contains("unix_socket_directories = '/x.run'\n"));
        assert!(conf.contains("unix_socket_permissions = 0700\n"));
        assert!(conf.contains("max_connections = 300\n"));
        assert!(conf.contains("fsync = off\n"));
        assert!(conf.starts_with("# Managed by Portcullis"));
        let durable = render_managed_conf(&ClusterOptions::new("/x"), Path::new("/x.run"));
        assert!(!durable.contains("fsync"));
    }

    #[test]
    fn last_lines_keeps_the_end() {
        assert_eq!(last_lines("a\nb\nc\n", 2), "b\nc");
        assert_eq!(last_lines("a", 5), "a");
        assert_eq!(last_lines("", 5), "");
    }

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
