//! Local master keys: AES-256 key-encryption keys kept as files (`master-1.key`, `master-2.key`,
//! ...) in one directory of this installation, for deployments without an HSM or KMS.
//!
//! This provider protects wrapped data keys against anyone who can read the database but not
//! the key directory, and binds every wrap to its `WrapContext` with AES-GCM associated data.
//! It is the documented exception to "a KEK never leaves its provider": the master keys sit on
//! disk and in this process's memory, so whoever can read the key directory or this process's
//! memory can unwrap everything. It must therefore never load a key file that another user could
//! read or replace (group/other permission bits, symlinks), never write a key file that is
//! readable even for an instant, never overwrite an existing key file (that would orphan every
//! data key wrapped under it), and never print key bytes (`Debug` shows names only).
//!
//! Wrapped format, version 1: `0x01 || nonce (12 bytes) || AES-256-GCM(data key) || tag (16)`.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use portcullis_crypto::envelope::DataKey;
use rand::rngs::OsRng;
use rand::RngCore;
use zeroize::Zeroizing;

use crate::{KeyError, WrapContext};

const FORMAT_V1: u8 = 1;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const KEY_LEN: usize = 32;
const WRAPPED_LEN: usize = 1 + NONCE_LEN + KEY_LEN + TAG_LEN;
const PREFIX: &str = "master-";
const SUFFIX: &str = ".key";
/// How many times `rotate` steps past a number another process took at the same moment.
const ROTATE_ATTEMPTS: u32 = 16;

/// Master keys of this installation, loaded once from `keys_dir`. Cheap to clone: clones share
/// the loaded keys.
#[derive(Clone)]
pub struct LocalProvider {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    /// By master-key number; the highest is the current one.
    keys: RwLock<BTreeMap<u32, MasterKey>>,
    /// Serialises rotations within this process; across processes, `link(2)` refusing to
    /// overwrite is what prevents two rotations from claiming the same number.
    rotate: Mutex<()>,
}

struct MasterKey(Zeroizing<[u8; KEY_LEN]>);

impl fmt::Debug for LocalProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalProvider")
            .field("dir", &self.inner.dir)
            .field("keys", &self.names())
            .finish()
    }
}

impl LocalProvider {
    /// Loads every `master-N.key` in `keys_dir`, creating the directory (0700) and `master-1.key`
    /// (0600) if there is none. Refuses, rather than repairs, a key file that is a symlink, is
    /// accessible to group or others, or is not exactly 32 bytes: silently fixing it would hide
    /// that the key may already have been copied.
    pub fn open(keys_dir: &Path) -> Result<LocalProvider, KeyError> {
        prepare_dir(keys_dir)?;
        let mut keys = BTreeMap::new();
        let entries = fs::read_dir(keys_dir).map_err(|e| {
            config(format!(
                "cannot list the key directory {}: {e}",
                keys_dir.display()
            ))
        })?;
        for entry in entries {
            let entry = entry.map_err(|e| {
                config(format!(
                    "cannot list the key directory {}: {e}",
                    keys_dir.display()
                ))
            })?;
            let file_name = entry.file_name();
            let Some(file_name) = file_name.to_str() else {
                continue;
            };
            match parse_file_name(file_name) {
                Some(n) => {
                    keys.insert(n, read_key_file(&entry.path())?);
                }
                None if file_name.ends_with(SUFFIX) && !file_name.starts_with('.') => {
                    tracing::warn!(file = %entry.path().display(), "ignoring a .key file not named master-N.key");
                }
                None => {}
            }
        }
        if keys.is_empty() {
            let key = match create_key_file(keys_dir, 1) {
                Ok(key) => {
                    tracing::info!(dir = %keys_dir.display(), "created master key master-1");
                    key
                }
                // Another process opening the same fresh directory won the race: use its key.
                Err(CreateError::Exists) => read_key_file(&keys_dir.join(file_name(1)))?,
                Err(CreateError::Other(e)) => return Err(e),
            };
            keys.insert(1, key);
        }
        Ok(LocalProvider {
            inner: Arc::new(Inner {
                dir: keys_dir.to_path_buf(),
                keys: RwLock::new(keys),
                rotate: Mutex::new(()),
            }),
        })
    }

    /// The name of the newest master key, under which new data keys should be wrapped.
    pub fn current(&self) -> String {
        let keys = self.inner.read_keys();
        key_name(keys.keys().next_back().copied().unwrap_or(1))
    }

    /// All loaded master keys, oldest first.
    pub fn names(&self) -> Vec<String> {
        self.inner
            .read_keys()
            .keys()
            .map(|n| key_name(*n))
            .collect()
    }

    /// Creates `master-(N+1).key` and makes it current. Existing keys stay loaded: data keys
    /// wrapped under them still unwrap until the caller has rewrapped them under the new name.
    /// Blocking file I/O: call it from `spawn_blocking` in async code.
    pub fn rotate(&self) -> Result<String, KeyError> {
        let _serial = self
            .inner
            .rotate
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Start above the newest key on disk too, not just in memory, so that the new key is
        // the newest for every process sharing the directory.
        let loaded = self
            .inner
            .read_keys()
            .keys()
            .next_back()
            .copied()
            .unwrap_or(0);
        let mut next = loaded.max(highest_on_disk(&self.inner.dir)?);
        for _ in 0..ROTATE_ATTEMPTS {
            next = next
                .checked_add(1)
                .ok_or_else(|| config("master key numbers are exhausted".into()))?;
            match create_key_file(&self.inner.dir, next) {
                Ok(key) => {
                    self.inner.write_keys().insert(next, key);
                    tracing::info!(dir = %self.inner.dir.display(), key = %key_name(next), "rotated the local master key");
                    return Ok(key_name(next));
                }
                Err(CreateError::Exists) => {
                    // Another process rotated first: adopt its key instead of clobbering it,
                    // so that what it wraps stays readable here too.
                    let key = read_key_file(&self.inner.dir.join(file_name(next)))?;
                    self.inner.write_keys().insert(next, key);
                }
                Err(CreateError::Other(e)) => return Err(e),
            }
        }
        Err(config(format!(
            "could not claim a new master key number in {} after {ROTATE_ATTEMPTS} attempts",
            self.inner.dir.display()
        )))
    }

    pub async fn wrap(
        &self,
        kek: &str,
        key: &DataKey,
        ctx: &WrapContext<'_>,
    ) -> Result<Vec<u8>, KeyError> {
        let cipher = self.cipher(kek).await?;
        let mut nonce = [0u8; NONCE_LEN];
        OsRng.fill_bytes(&mut nonce);
        let aad = ctx.to_aad();
        let sealed = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: key.expose(),
                    aad: &aad,
                },
            )
            .map_err(|_| KeyError::Provider("AES-GCM encryption failed".into()))?;
        let mut out = Vec::with_capacity(WRAPPED_LEN);
        out.push(FORMAT_V1);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    pub async fn unwrap(
        &self,
        kek: &str,
        wrapped: &[u8],
        ctx: &WrapContext<'_>,
    ) -> Result<DataKey, KeyError> {
        let cipher = self.cipher(kek).await?;
        if wrapped.len() != WRAPPED_LEN || wrapped[0] != FORMAT_V1 {
            return Err(KeyError::Invalid);
        }
        let (nonce, sealed) = wrapped[1..].split_at(NONCE_LEN);
        let aad = ctx.to_aad();
        let plain = Zeroizing::new(
            cipher
                .decrypt(
                    Nonce::from_slice(nonce),
                    Payload {
                        msg: sealed,
                        aad: &aad,
                    },
                )
                .map_err(|_| KeyError::Invalid)?,
        );
        DataKey::from_bytes(&plain).ok_or(KeyError::Invalid)
    }

    /// The cipher for master key `kek`. A name not loaded yet is looked for on disk once more,
    /// so that a key rotated in by another process sharing the directory is found without a
    /// restart.
    async fn cipher(&self, kek: &str) -> Result<Aes256Gcm, KeyError> {
        let unavailable = || KeyError::Unavailable {
            kek: format!("local:{kek}"),
            reason: "no such master key file".into(),
        };
        let n = parse_name(kek).ok_or_else(unavailable)?;
        if let Some(cipher) = self.inner.cipher(n) {
            return Ok(cipher);
        }
        let inner = Arc::clone(&self.inner);
        let found = tokio::task::spawn_blocking(move || inner.load_late(n))
            .await
            .map_err(|e| KeyError::Provider(format!("loading a master key failed: {e}")))??;
        if !found {
            return Err(unavailable());
        }
        self.inner.cipher(n).ok_or_else(unavailable)
    }
}

impl Inner {
    fn read_keys(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<u32, MasterKey>> {
        // A panic while holding the lock cannot leave the map half-updated (insert is the only
        // mutation), so a poisoned lock is still safe to use.
        self.keys
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write_keys(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<u32, MasterKey>> {
        self.keys
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn cipher(&self, n: u32) -> Option<Aes256Gcm> {
        let keys = self.read_keys();
        keys.get(&n)
            .map(|key| Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key.0.as_ref())))
    }

    /// Loads `master-n.key` if it exists now; `Ok(false)` if it does not.
    fn load_late(&self, n: u32) -> Result<bool, KeyError> {
        let path = self.dir.join(file_name(n));
        match fs::symlink_metadata(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => {
                return Err(config(format!(
                    "cannot inspect the key file {}: {e}",
                    path.display()
                )))
            }
            Ok(_) => {}
        }
        let key = read_key_file(&path)?;
        self.write_keys().entry(n).or_insert(key);
        Ok(true)
    }
}

fn config(message: String) -> KeyError {
    KeyError::Config(message)
}

fn key_name(n: u32) -> String {
    format!("{PREFIX}{n}")
}

fn file_name(n: u32) -> String {
    format!("{PREFIX}{n}{SUFFIX}")
}

/// `master-N` with N a positive decimal without leading zeros, so that each number has exactly
/// one name and one file.
fn parse_name(name: &str) -> Option<u32> {
    let digits = name.strip_prefix(PREFIX)?;
    if digits.is_empty() || digits.starts_with('0') || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn parse_file_name(file_name: &str) -> Option<u32> {
    parse_name(file_name.strip_suffix(SUFFIX)?)
}

fn highest_on_disk(dir: &Path) -> Result<u32, KeyError> {
    let entries = fs::read_dir(dir).map_err(|e| {
        config(format!(
            "cannot list the key directory {}: {e}",
            dir.display()
        ))
    })?;
    let mut highest = 0;
    for entry in entries {
        let entry = entry.map_err(|e| {
            config(format!(
                "cannot list the key directory {}: {e}",
                dir.display()
            ))
        })?;
        if let Some(n) = entry.file_name().to_str().and_then(parse_file_name) {
            highest = highest.max(n);
        }
    }
    Ok(highest)
}

fn prepare_dir(dir: &Path) -> Result<(), KeyError> {
    match fs::metadata(dir) {
        Ok(meta) => {
            if !meta.is_dir() {
                return Err(config(format!(
                    "the key directory {} is not a directory",
                    dir.display()
                )));
            }
            // Whoever can write the directory can swap in a key file of their own and read
            // everything wrapped after that.
            let mode = meta.mode() & 0o7777;
            if mode & 0o022 != 0 {
                return Err(config(format!(
                    "the key directory {} has mode {mode:04o}: it is writable by group or others; run `chmod 700 {}`",
                    dir.display(),
                    dir.display()
                )));
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| {
                config(format!(
                    "cannot create the key directory {}: {e}",
                    dir.display()
                ))
            }),
        Err(e) => Err(config(format!(
            "cannot inspect the key directory {}: {e}",
            dir.display()
        ))),
    }
}

/// Reads one key file, checking the file actually opened (not just the path) so that a swap
/// between the check and the read cannot slip a symlink or a loose file in.
fn read_key_file(path: &Path) -> Result<MasterKey, KeyError> {
    let shown = path.display();
    let link = fs::symlink_metadata(path)
        .map_err(|e| config(format!("cannot inspect the key file {shown}: {e}")))?;
    if link.file_type().is_symlink() {
        return Err(config(format!(
            "the key file {shown} is a symlink; key files must be regular files"
        )));
    }
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| config(format!("cannot open the key file {shown}: {e}")))?;
    let meta = file
        .metadata()
        .map_err(|e| config(format!("cannot inspect the key file {shown}: {e}")))?;
    if !meta.is_file() {
        return Err(config(format!(
            "the key file {shown} is not a regular file"
        )));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(config(format!(
            "the key file {shown} has mode {mode:04o}: it is readable or writable by group or others; run `chmod 600 {shown}`"
        )));
    }
    if meta.len() != KEY_LEN as u64 {
        return Err(config(format!(
            "the key file {shown} is {} bytes long; a master key file must be exactly {KEY_LEN} bytes",
            meta.len()
        )));
    }
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    file.read_exact(key.as_mut())
        .map_err(|e| config(format!("cannot read the key file {shown}: {e}")))?;
    // The file may have grown between fstat and read; trailing bytes mean it is not a key.
    let mut extra = [0u8; 1];
    if file
        .read(&mut extra)
        .map_err(|e| config(format!("cannot read the key file {shown}: {e}")))?
        != 0
    {
        return Err(config(format!(
            "the key file {shown} is longer than {KEY_LEN} bytes"
        )));
    }
    Ok(MasterKey(key))
}

enum CreateError {
    /// `master-n.key` already exists; it was left untouched.
    Exists,
    Other(KeyError),
}

/// Writes a fresh random key to `dir/master-n.key`: into a temporary file created 0600 (never
/// readable by others, not even before a chmod), fsynced, then linked into place with
/// `link(2)`, which unlike `rename(2)` fails rather than replace a key file that another
/// process created meanwhile. The directory is fsynced so the new name survives a crash.
fn create_key_file(dir: &Path, n: u32) -> Result<MasterKey, CreateError> {
    let target = dir.join(file_name(n));
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    OsRng.fill_bytes(key.as_mut());
    let mut suffix = [0u8; 8];
    OsRng.fill_bytes(&mut suffix);
    let suffix: String = suffix.iter().map(|b| format!("{b:02x}")).collect();
    let temp = dir.join(format!(".{}.tmp-{suffix}", file_name(n)));
    let fail = |what: &str, path: &Path, e: io::Error| {
        CreateError::Other(config(format!(
            "cannot {what} the key file {}: {e}",
            path.display()
        )))
    };

    let written = (|| -> io::Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&temp)?;
        file.write_all(key.as_ref())?;
        file.sync_all()
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&temp);
        return Err(fail("write", &temp, e));
    }
    let linked = fs::hard_link(&temp, &target);
    let _ = fs::remove_file(&temp);
    match linked {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(CreateError::Exists),
        Err(e) => return Err(fail("create", &target, e)),
    }
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| fail("persist", &target, e))?;
    Ok(MasterKey(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_canonical() {
        assert_eq!(parse_name("master-1"), Some(1));
        assert_eq!(parse_name("master-42"), Some(42));
        for bad in [
            "master-0",
            "master-01",
            "master-",
            "master-1a",
            "master--1",
            "other-1",
            "master-99999999999",
        ] {
            assert_eq!(parse_name(bad), None, "{bad}");
        }
        assert_eq!(parse_file_name("master-3.key"), Some(3));
        assert_eq!(parse_file_name("master-3.key.tmp"), None);
        assert_eq!(parse_file_name(".master-3.key.tmp-00"), None);
    }
}
