//! The cluster lock (`<data_dir>.lock`): serializes starting and stopping a cluster across
//! tasks and processes.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use tracing::info;

use crate::{sys, ProvisionError};

/// Holds the cluster's lock file, exclusively locked, until dropped.
#[derive(Debug)]
pub(crate) struct ClusterLock(#[allow(dead_code)] File);

pub(crate) async fn lock_cluster(lock_file: &Path) -> Result<ClusterLock, ProvisionError> {
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
