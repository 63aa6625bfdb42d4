//! Where a cluster's files live, derived from its data directory alone, and the short socket
//! directory in `/tmp` for data directories whose socket path would be too long.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::{ProvisionError, DEFAULT_PORT};

/// Longest socket file path we use; the kernel limit (`sun_path`) is 107 bytes.
const MAX_SOCKET_PATH_LEN: usize = 100;

/// Where a cluster's files live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Layout {
    pub(crate) data_dir: PathBuf,
    pub(crate) socket_dir: PathBuf,
    pub(crate) log_file: PathBuf,
    pub(crate) lock_file: PathBuf,
    /// initdb runs here and the result is renamed to `data_dir`, so a cluster that exists is
    /// always complete.
    pub(crate) initdb_dir: PathBuf,
}

impl Layout {
    /// `data_dir` must be absolute and have a final component.
    pub(crate) fn new(data_dir: &Path) -> Result<Layout, ProvisionError> {
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
pub(crate) fn fnv1a_32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5_u32, |hash, &b| {
        (hash ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
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
}
