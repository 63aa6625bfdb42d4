//! The cluster the test suites of every crate share, under the cargo target directory.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::layout::fnv1a_32;
use crate::{user, ClusterOptions, LocalCluster, ProvisionError};

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
