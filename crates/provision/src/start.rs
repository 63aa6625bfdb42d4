//! Bringing a cluster up: [`LocalCluster::start`] resolves the paths and binaries, takes the
//! cluster lock, creates the cluster if there is none (`initdb`), reuses a running server
//! (`reuse`) or starts one with `pg_ctl`, detached from our process group.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use tracing::info;

use crate::command::{log_tail, run};
use crate::conf::{append_include, render_managed_conf, MANAGED_CONF};
use crate::initdb::read_pg_version;
use crate::layout::Layout;
use crate::lock::lock_cluster;
use crate::user::RunAs;
use crate::{discover, pidfile, ClusterOptions, LocalCluster, ProvisionError, DEFAULT_PORT};

/// How long `pg_ctl` (and we, for a server someone else is starting) wait for readiness.
pub(crate) const START_TIMEOUT: Duration = Duration::from_secs(60);
pub(crate) const READY_POLL_INTERVAL: Duration = Duration::from_millis(200);

/// Everything needed while bringing a cluster up.
pub(crate) struct Starter {
    pub(crate) opts: ClusterOptions,
    pub(crate) layout: Layout,
    pub(crate) bin_dir: PathBuf,
    pub(crate) version: String,
    pub(crate) run_as: RunAs,
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
}

impl Starter {
    /// Runs with the cluster lock held.
    async fn start_locked(self) -> Result<LocalCluster, ProvisionError> {
        match read_pg_version(&self.layout.data_dir)? {
            Some(major) => self.check_existing_cluster(&major)?,
            None => self.create_cluster().await?,
        }

        if let Some(cluster) = self.reuse_or_clear().await? {
            return Ok(cluster);
        }
        self.start_server().await
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

    pub(crate) fn cluster(
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

    pub(crate) fn start_failed(&self, reason: String, log_since: u64) -> ProvisionError {
        ProvisionError::StartFailed {
            data_dir: self.layout.data_dir.clone(),
            reason,
            log_file: self.layout.log_file.clone(),
            log_tail: log_tail(&self.layout.log_file, log_since),
        }
    }
}
