//! Where a node's private cluster lives (issue 12, item 2). Normally under the node's data
//! directory. As root, PostgreSQL runs as the unprivileged `postgres` user, which cannot reach
//! a data directory inside a private (0700) directory such as `/root` or one from `mktemp -d`,
//! the most common places to clone into; the cluster then lives under
//! [`SHARED_CLUSTERS`]`/<id>/postgres` instead, where `<id>` is derived from the data
//! directory's absolute path, so each data directory keeps its own cluster across restarts.
//! The directory records which data directory it belongs to (`data-dir`), and a mismatch (two
//! data directories with the same id) is refused rather than shared.

use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use crate::error::ProvisionError;
use crate::user::RunAs;

/// Where clusters of data directories that `postgres` cannot reach are kept, as root.
pub const SHARED_CLUSTERS: &str = "/var/lib/portcullis/clusters";

/// The cluster directory for `data_dir`, and whether it is the fallback under
/// [`SHARED_CLUSTERS`] (the caller should say so: the files are not where the user looks).
pub fn cluster_location(data_dir: &Path) -> Result<(PathBuf, bool), ProvisionError> {
    cluster_location_under(data_dir, Path::new(SHARED_CLUSTERS))
}

/// [`cluster_location`] with the fallback root given (tests).
pub fn cluster_location_under(
    data_dir: &Path,
    shared: &Path,
) -> Result<(PathBuf, bool), ProvisionError> {
    let preferred = data_dir.join("postgres");
    let run_as = RunAs::resolve()?;
    match run_as.check_reachable(&preferred) {
        Ok(()) => return Ok((preferred, false)),
        Err(ProvisionError::NotTraversable { .. }) => {}
        Err(e) => return Err(e),
    }
    let absolute = fs::canonicalize(data_dir).map_err(|e| ProvisionError::BadPath {
        path: data_dir.to_path_buf(),
        problem: format!("cannot resolve the data directory: {e}"),
    })?;
    let dir = shared.join(format!(
        "{:016x}",
        fnv1a(absolute.as_os_str().as_encoded_bytes())
    ));
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(&dir)
        .map_err(|e| ProvisionError::BadPath {
            path: dir.clone(),
            problem: format!("cannot create the cluster's directory: {e}"),
        })?;
    // Reachable by `postgres` on the way down, whatever the umask made of new directories.
    run_as.check_reachable(&dir.join("postgres"))?;
    let owner_file = dir.join("data-dir");
    let recorded = absolute.to_string_lossy().into_owned();
    match fs::read_to_string(&owner_file) {
        Ok(existing) if existing == recorded => {}
        Ok(existing) => {
            return Err(ProvisionError::BadPath {
                path: dir,
                problem: format!(
                    "belongs to the data directory {existing}, not {recorded}; remove it or use \
                     another data directory"
                ),
            })
        }
        Err(_) => fs::write(&owner_file, &recorded).map_err(|e| ProvisionError::BadPath {
            path: owner_file.clone(),
            problem: format!("cannot record the data directory: {e}"),
        })?,
    }
    Ok((dir.join("postgres"), true))
}

/// FNV-1a, 64 bits: a stable name for a path (not a security boundary; the `data-dir` file
/// settles collisions).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_stable() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
