//! Stopping a cluster, only if this value started it and nobody restarted it since.

use std::sync::atomic::Ordering;

use tracing::info;

use crate::command::run;
use crate::lock::lock_cluster;
use crate::pidfile::{self, ServerState};
use crate::start::START_TIMEOUT;
use crate::{LocalCluster, ProvisionError};

impl LocalCluster {
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
