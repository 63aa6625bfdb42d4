//! What a data directory may hold when we come to start it: a server that is still running
//! (reused, for example after this process was killed), a stale `postmaster.pid` left by a
//! crash, or orphaned server processes still finishing.

use std::fs;
use std::io;
use std::path::Path;
use std::process::Stdio;

use tracing::{debug, info, warn};

use crate::pidfile::{self, PidFile, ServerState};
use crate::start::{Starter, READY_POLL_INTERVAL, START_TIMEOUT};
use crate::{LocalCluster, ProvisionError, DEFAULT_PORT, SUPERUSER};

impl Starter {
    /// Deals with a server left in the data directory, with the cluster lock held: `Some` is a
    /// running server, reused once it accepts connections; `None` means the way is clear for
    /// `pg_ctl start` (no server, or a stale `postmaster.pid` that PostgreSQL or we removed).
    pub(crate) async fn reuse_or_clear(&self) -> Result<Option<LocalCluster>, ProvisionError> {
        let data_dir = &self.layout.data_dir;
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            let state = pidfile::server_state(data_dir).map_err(|e| {
                ProvisionError::io(
                    format!("read {}", data_dir.join(pidfile::PID_FILE).display()),
                    e,
                )
            })?;
            match state {
                ServerState::NotRunning => return Ok(None),
                ServerState::StaleDeadPid(stale) => {
                    info!(
                        data_dir = %data_dir.display(),
                        pid = stale.pid,
                        "found a stale postmaster.pid (process {} no longer exists); PostgreSQL \
                         removes it when it starts",
                        stale.pid
                    );
                    return Ok(None);
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
                    return Ok(None);
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
                        return Ok(Some(cluster));
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
}
