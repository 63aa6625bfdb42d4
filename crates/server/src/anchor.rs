//! Write-once anchoring of signed audit checkpoints (L4). A checkpoint copied outside the
//! database lets verification detect a chain that was rewritten consistently inside it (by a
//! superuser, or from a doctored backup).
//!
//! The local store writes `<dir>/<environment>/<tree size, 20 digits>.checkpoint`: created
//! exclusively, fsynced with its directory, never overwritten. Writing the same checkpoint again
//! is a no-op; writing a different one for the same size is refused: that is a fork. It cannot
//! enforce retention against the machine's root user; for that, point it at storage with its
//! own write-once guarantees.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum AnchorError {
    #[error("anchor store I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("anchor conflict: {path} already holds a different checkpoint for this tree size (a forked log)")]
    Conflict { path: PathBuf },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> AnchorError + '_ {
    move |source| AnchorError::Io {
        path: path.to_owned(),
        source,
    }
}

#[derive(Clone, Debug)]
pub struct LocalAnchors {
    dir: PathBuf,
}

impl LocalAnchors {
    pub fn new(dir: impl Into<PathBuf>) -> LocalAnchors {
        LocalAnchors { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn env_dir(&self, environment: Uuid) -> PathBuf {
        self.dir.join(environment.to_string())
    }

    /// Stores a signed checkpoint. Idempotent for identical content; refuses to overwrite.
    pub fn put(
        &self,
        environment: Uuid,
        tree_size: u64,
        signed: &str,
    ) -> Result<PathBuf, AnchorError> {
        let dir = self.env_dir(environment);
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        let path = dir.join(format!("{tree_size:020}.checkpoint"));
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(mut f) => {
                f.write_all(signed.as_bytes()).map_err(io(&path))?;
                f.sync_all().map_err(io(&path))?;
                // The new directory entry must survive a crash too.
                File::open(&dir)
                    .and_then(|d| d.sync_all())
                    .map_err(io(&dir))?;
                Ok(path)
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                let existing = fs::read_to_string(&path).map_err(io(&path))?;
                if existing == signed {
                    Ok(path)
                } else {
                    Err(AnchorError::Conflict { path })
                }
            }
            Err(e) => Err(AnchorError::Io { path, source: e }),
        }
    }

    /// Every anchored checkpoint of an environment, by tree size.
    pub fn list(&self, environment: Uuid) -> Result<Vec<(u64, String)>, AnchorError> {
        let dir = self.env_dir(environment);
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => {
                return Err(AnchorError::Io {
                    path: dir,
                    source: e,
                })
            }
        };
        let mut out = vec![];
        for entry in entries {
            let entry = entry.map_err(io(&dir))?;
            let name = entry.file_name();
            let Some(size) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".checkpoint"))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            let path = entry.path();
            out.push((size, fs::read_to_string(&path).map_err(io(&path))?));
        }
        out.sort_by_key(|(s, _)| *s);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Control L4: anchors are write-once: same content is idempotent, different content is
    /// refused, nothing is overwritten.
    #[test]
    fn l4_local_anchors_are_write_once() {
        let dir = std::env::temp_dir().join(format!("pc-anchor-{}", Uuid::now_v7()));
        let a = LocalAnchors::new(&dir);
        let env = Uuid::now_v7();
        a.put(env, 3, "checkpoint three").unwrap();
        a.put(env, 3, "checkpoint three").unwrap();
        assert!(matches!(
            a.put(env, 3, "forged three"),
            Err(AnchorError::Conflict { .. })
        ));
        a.put(env, 10, "checkpoint ten").unwrap();
        assert_eq!(
            a.list(env).unwrap(),
            vec![
                (3, "checkpoint three".to_owned()),
                (10, "checkpoint ten".to_owned())
            ]
        );
        assert!(a.list(Uuid::now_v7()).unwrap().is_empty());
        fs::remove_dir_all(dir).unwrap();
    }
}
