//! Write-once anchoring of signed audit checkpoints (L4). A checkpoint copied outside the
//! database lets verification detect a chain that was rewritten consistently inside it (by a
//! superuser, or from a doctored backup).
//!
//! The local store writes `<dir>/<environment>/<tree size, 20 digits>.checkpoint`: created
//! exclusively, fsynced with its directory, never overwritten. Writing the same checkpoint again
//! is a no-op; writing a different one for the same size is refused: that is a fork. It cannot
//! enforce retention against the machine's root user; for that, point it at storage with its
//! own write-once guarantees: [`S3Anchors`] keeps each checkpoint in S3 under Object Lock
//! COMPLIANCE retention (see `s3`). [`Anchors`] is either store, chosen by configuration.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use uuid::Uuid;

mod s3;

pub use s3::{
    ObjectRetention, S3AnchorConfig, S3Anchors, S3Response, DEFAULT_PREFIX, DEFAULT_RETENTION_DAYS,
};

#[derive(Debug, thiserror::Error)]
pub enum AnchorError {
    #[error("anchor store I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// `path` is a file path for [`LocalAnchors`] and an `s3://bucket/key` for [`S3Anchors`].
    #[error("anchor conflict: {path} already holds a different checkpoint for this tree size (a forked log)")]
    Conflict { path: PathBuf },
    /// The remote store answered with an error. `code` and `message` are the store's own
    /// (bounded, printable); nothing else from its answer is kept.
    #[error("anchor store: {operation} {location} answered {status} {code}: {message}")]
    Remote {
        operation: &'static str,
        location: String,
        status: u16,
        code: String,
        message: String,
    },
    /// No HTTP answer (connection, TLS, timeout). May succeed on retry.
    #[error("anchor store at {endpoint} unreachable: {message}")]
    Transport { endpoint: String, message: String },
    #[error("anchor store configuration: {0}")]
    Config(String),
    /// An answer that is not what the store's API promises.
    #[error("anchor store answered unexpectedly: {0}")]
    Malformed(String),
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
        self.list_after(environment, 0)
    }

    /// The anchored checkpoints of an environment with a tree size above `after`, by tree
    /// size; only their files are read.
    pub fn list_after(
        &self,
        environment: Uuid,
        after: u64,
    ) -> Result<Vec<(u64, String)>, AnchorError> {
        let mut out = vec![];
        for (size, path) in self.files_after(environment, after)? {
            out.push((size, read_lossy(&path)?));
        }
        Ok(out)
    }

    /// The tree sizes anchored for an environment above `after`, ascending; no file is read.
    pub fn sizes_after(&self, environment: Uuid, after: u64) -> Result<Vec<u64>, AnchorError> {
        Ok(self
            .files_after(environment, after)?
            .into_iter()
            .map(|(size, _)| size)
            .collect())
    }

    /// The checkpoint anchored at one tree size, if any (a local store holds one per size).
    pub fn at(&self, environment: Uuid, tree_size: u64) -> Result<Vec<String>, AnchorError> {
        let path = self
            .env_dir(environment)
            .join(format!("{tree_size:020}.checkpoint"));
        match fs::metadata(&path) {
            Ok(_) => Ok(vec![read_lossy(&path)?]),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(vec![]),
            Err(e) => Err(AnchorError::Io { path, source: e }),
        }
    }

    /// The checkpoint files of an environment above `after`: (size, path), by size.
    fn files_after(
        &self,
        environment: Uuid,
        after: u64,
    ) -> Result<Vec<(u64, PathBuf)>, AnchorError> {
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
                .filter(|size| *size > after)
            else {
                continue;
            };
            out.push((size, entry.path()));
        }
        out.sort();
        Ok(out)
    }
}

/// A file's text. Bytes that are not UTF-8 are kept (lossily) rather than failing the listing:
/// verification reports such a file as malformed and goes on with the others.
fn read_lossy(path: &Path) -> Result<String, AnchorError> {
    let bytes = fs::read(path).map_err(io(path))?;
    Ok(String::from_utf8(bytes)
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
}

/// The configured anchor store. An enum rather than a trait object: there are two stores, and
/// the async `put`/`list` need no boxing this way.
#[derive(Clone, Debug)]
pub enum Anchors {
    Local(LocalAnchors),
    S3(S3Anchors),
}

impl From<LocalAnchors> for Anchors {
    fn from(local: LocalAnchors) -> Anchors {
        Anchors::Local(local)
    }
}

impl From<S3Anchors> for Anchors {
    fn from(s3: S3Anchors) -> Anchors {
        Anchors::S3(s3)
    }
}

impl Anchors {
    /// Stores a signed checkpoint. Idempotent for identical content; `AnchorError::Conflict`
    /// for different content at the same size. Returns where it is (a path or an `s3://` URL).
    pub async fn put(
        &self,
        environment: Uuid,
        tree_size: u64,
        signed: &str,
    ) -> Result<String, AnchorError> {
        match self {
            Anchors::Local(local) => {
                // Two fsyncs: off the async workers.
                let owned = local.clone();
                let signed = signed.to_owned();
                let path = blocking(local.dir(), move || {
                    owned.put(environment, tree_size, &signed)
                })
                .await?;
                Ok(path.display().to_string())
            }
            Anchors::S3(s3) => s3.put(environment, tree_size, signed).await,
        }
    }

    /// Every anchored checkpoint of an environment, by tree size.
    pub async fn list(&self, environment: Uuid) -> Result<Vec<(u64, String)>, AnchorError> {
        self.list_after(environment, 0).await
    }

    /// The anchored checkpoints of an environment with a tree size above `after`, by tree size:
    /// what the checkpointer reads before signing (only what is newer than what it already
    /// verified).
    pub async fn list_after(
        &self,
        environment: Uuid,
        after: u64,
    ) -> Result<Vec<(u64, String)>, AnchorError> {
        match self {
            Anchors::Local(local) => {
                let owned = local.clone();
                blocking(local.dir(), move || owned.list_after(environment, after)).await
            }
            Anchors::S3(s3) => s3.list_after(environment, after).await,
        }
    }

    /// The tree sizes anchored for an environment above `after`, ascending, without reading
    /// the checkpoints: what the checkpointer lists before signing.
    pub async fn sizes_after(
        &self,
        environment: Uuid,
        after: u64,
    ) -> Result<Vec<u64>, AnchorError> {
        match self {
            Anchors::Local(local) => {
                let owned = local.clone();
                blocking(local.dir(), move || owned.sizes_after(environment, after)).await
            }
            Anchors::S3(s3) => s3.sizes_after(environment, after).await,
        }
    }

    /// What is anchored at one tree size: one text, none, or (S3, a fork hidden behind a
    /// delete marker) several, oldest first.
    pub async fn at(&self, environment: Uuid, tree_size: u64) -> Result<Vec<String>, AnchorError> {
        match self {
            Anchors::Local(local) => {
                let owned = local.clone();
                blocking(local.dir(), move || owned.at(environment, tree_size)).await
            }
            Anchors::S3(s3) => s3.at(environment, tree_size).await,
        }
    }
}

impl std::fmt::Display for Anchors {
    /// Where checkpoints go, for logs: a directory or `s3://bucket/prefix`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Anchors::Local(local) => write!(f, "{}", local.dir().display()),
            Anchors::S3(s3) => write!(f, "s3://{}/{}", s3.config().bucket, s3.config().prefix),
        }
    }
}

async fn blocking<T: Send + 'static>(
    dir: &Path,
    work: impl FnOnce() -> Result<T, AnchorError> + Send + 'static,
) -> Result<T, AnchorError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| AnchorError::Io {
            path: dir.to_owned(),
            source: std::io::Error::other(format!("anchor task failed: {e}")),
        })?
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
        assert_eq!(
            a.list_after(env, 3).unwrap(),
            vec![(10, "checkpoint ten".to_owned())]
        );
        assert!(a.list_after(env, 10).unwrap().is_empty());
        assert_eq!(a.sizes_after(env, 0).unwrap(), vec![3, 10]);
        assert_eq!(a.sizes_after(env, 3).unwrap(), vec![10]);
        assert_eq!(a.at(env, 10).unwrap(), vec!["checkpoint ten".to_owned()]);
        assert!(a.at(env, 7).unwrap().is_empty());
        fs::remove_dir_all(dir).unwrap();
    }

    /// Control L4: the `Anchors` enum gives the local store's write-once behaviour unchanged.
    #[tokio::test]
    async fn l4_anchors_enum_wraps_the_local_store() {
        let dir = std::env::temp_dir().join(format!("pc-anchor-{}", Uuid::now_v7()));
        let a = Anchors::from(LocalAnchors::new(&dir));
        let env = Uuid::now_v7();
        let at = a.put(env, 3, "checkpoint three").await.unwrap();
        assert!(at.ends_with("00000000000000000003.checkpoint"), "{at}");
        a.put(env, 3, "checkpoint three").await.unwrap();
        assert!(matches!(
            a.put(env, 3, "forged three").await,
            Err(AnchorError::Conflict { .. })
        ));
        assert_eq!(
            a.list(env).await.unwrap(),
            vec![(3, "checkpoint three".to_owned())]
        );
        assert_eq!(a.to_string(), dir.display().to_string());
        fs::remove_dir_all(dir).unwrap();
    }
}
