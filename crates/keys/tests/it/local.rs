//! Local master-key provider: file permissions, persistence, rotation (wrapping, context
//! binding, tampering and unknown names: `conformance`).

use std::fs;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use portcullis_crypto::envelope::DataKey;
use portcullis_keys::local::LocalProvider;
use portcullis_keys::{KekRef, KeyError, Providers, WrapContext};

use crate::conformance::{Reason, Refusal, Subject};

/// A private scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let path = std::env::temp_dir().join(format!(
            "portcullis-keys-local-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        fs::DirBuilder::new().mode(0o700).create(&path).unwrap();
        Scratch(path)
    }

    fn keys(&self) -> PathBuf {
        self.0.join("keys")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().mode() & 0o7777
}

const ENV: &str = "0192d1e4-5f6a-7b8c-9d0e-1f2a3b4c5d6e";

fn ctx() -> WrapContext<'static> {
    WrapContext {
        environment_id: ENV,
        purpose: "data-key",
        version: 1,
    }
}

/// A fresh key directory with `master-1` (the KEK) and `master-2` (another one).
pub async fn subject() -> Option<Subject> {
    let scratch = Scratch::new();
    let provider = LocalProvider::open(&scratch.keys()).unwrap();
    assert_eq!(provider.rotate().unwrap(), "master-2");
    let local = |name: &str| KekRef::Local {
        name: name.to_owned(),
    };
    Some(Subject {
        providers: Providers {
            local: Some(provider),
            ..Providers::default()
        },
        kek: local("master-1"),
        other_kek: local("master-2"),
        other_kek_refusal: Refusal::Invalid,
        missing: ["master-9", "master-01", "bogus", "../master-1", ""]
            .into_iter()
            .map(local)
            .collect(),
        missing_reason: Reason::Exactly("no such master key file"),
        key_id_prefix: 0,
        aes_gcm_v1: true,
        revoker: None,
        revoked_reason: "",
        _keep: Box::new(scratch),
    })
}

fn config_error(result: Result<LocalProvider, KeyError>) -> String {
    match result {
        Err(KeyError::Config(message)) => message,
        other => panic!("expected a configuration error, got {other:?}"),
    }
}

/// Writes a would-be key file with exactly these bytes and mode.
fn plant(dir: &Path, name: &str, bytes: &[u8], mode: u32) {
    fs::DirBuilder::new()
        .mode(0o700)
        .recursive(true)
        .create(dir)
        .unwrap();
    let path = dir.join(name);
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&path)
        .unwrap();
    fs::write(&path, bytes).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn open_creates_the_directory_0700_and_master_1_0600() {
    let scratch = Scratch::new();
    let dir = scratch.keys();
    let provider = LocalProvider::open(&dir).unwrap();
    assert_eq!(mode(&dir), 0o700);
    let key = dir.join("master-1.key");
    assert_eq!(mode(&key), 0o600);
    assert_eq!(fs::metadata(&key).unwrap().len(), 32);
    assert_eq!(provider.current(), "master-1");
    assert_eq!(provider.names(), vec!["master-1".to_string()]);
    let left: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        left,
        vec![std::ffi::OsString::from("master-1.key")],
        "no temporary file may be left behind"
    );
}

#[test]
fn debug_shows_names_not_key_bytes() {
    let scratch = Scratch::new();
    let provider = LocalProvider::open(&scratch.keys()).unwrap();
    let bytes = fs::read(scratch.keys().join("master-1.key")).unwrap();
    let shown = format!("{provider:?}");
    assert!(shown.contains("master-1"), "{shown}");
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    assert!(!shown.contains(&hex[..8]), "{shown}");
    let decimal = format!("{}, {}, {}", bytes[0], bytes[1], bytes[2]);
    assert!(!shown.contains(&decimal), "{shown}");
}

#[tokio::test]
async fn a_reopened_provider_reads_the_same_key() {
    let scratch = Scratch::new();
    let key = DataKey::generate();
    let wrapped = {
        let first = LocalProvider::open(&scratch.keys()).unwrap();
        first.wrap("master-1", &key, &ctx()).await.unwrap()
    };
    let reopened = LocalProvider::open(&scratch.keys()).unwrap();
    assert_eq!(
        reopened.names(),
        vec!["master-1".to_string()],
        "reopening must not create another key"
    );
    let back = reopened.unwrap("master-1", &wrapped, &ctx()).await.unwrap();
    assert_eq!(back.expose(), key.expose());
}

#[test]
fn a_key_file_readable_by_others_is_refused() {
    let scratch = Scratch::new();
    LocalProvider::open(&scratch.keys()).unwrap();
    let key = scratch.keys().join("master-1.key");
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
    let message = config_error(LocalProvider::open(&scratch.keys()));
    assert!(message.contains("0644"), "{message}");
    assert!(message.contains(&key.display().to_string()), "{message}");
    assert!(message.contains("chmod 600"), "{message}");

    for loose in [0o640, 0o620, 0o604, 0o602] {
        fs::set_permissions(&key, fs::Permissions::from_mode(loose)).unwrap();
        let message = config_error(LocalProvider::open(&scratch.keys()));
        assert!(message.contains(&format!("{loose:04o}")), "{message}");
    }
    fs::set_permissions(&key, fs::Permissions::from_mode(0o400)).unwrap();
    LocalProvider::open(&scratch.keys()).expect("owner-only read is fine");
}

#[test]
fn a_key_file_of_the_wrong_size_is_refused() {
    for size in [0usize, 31, 33, 64] {
        let scratch = Scratch::new();
        plant(&scratch.keys(), "master-1.key", &vec![7u8; size], 0o600);
        let message = config_error(LocalProvider::open(&scratch.keys()));
        assert!(message.contains("master-1.key"), "{message}");
        assert!(message.contains(&format!("{size} bytes")), "{message}");
    }
}

#[test]
fn a_symlinked_key_file_is_refused() {
    let scratch = Scratch::new();
    plant(&scratch.0, "elsewhere.key", &[9u8; 32], 0o600);
    fs::DirBuilder::new()
        .mode(0o700)
        .create(scratch.keys())
        .unwrap();
    std::os::unix::fs::symlink(
        scratch.0.join("elsewhere.key"),
        scratch.keys().join("master-1.key"),
    )
    .unwrap();
    let message = config_error(LocalProvider::open(&scratch.keys()));
    assert!(message.contains("symlink"), "{message}");
}

#[test]
fn a_key_directory_writable_by_others_is_refused() {
    let scratch = Scratch::new();
    LocalProvider::open(&scratch.keys()).unwrap();
    fs::set_permissions(scratch.keys(), fs::Permissions::from_mode(0o770)).unwrap();
    let message = config_error(LocalProvider::open(&scratch.keys()));
    assert!(
        message.contains("0770") && message.contains("chmod 700"),
        "{message}"
    );
}

#[tokio::test]
async fn rotation_adds_master_2_and_both_keys_keep_working() {
    let scratch = Scratch::new();
    let provider = LocalProvider::open(&scratch.keys()).unwrap();
    let old_key = DataKey::generate();
    let old = provider.wrap("master-1", &old_key, &ctx()).await.unwrap();

    let clone = provider.clone();
    assert_eq!(clone.rotate().unwrap(), "master-2");
    assert_eq!(provider.current(), "master-2", "clones share state");
    assert_eq!(
        provider.names(),
        vec!["master-1".to_string(), "master-2".to_string()]
    );
    assert_eq!(mode(&scratch.keys().join("master-2.key")), 0o600);
    assert_eq!(
        fs::read_dir(scratch.keys()).unwrap().count(),
        2,
        "no temporary file may be left behind"
    );

    let new_key = DataKey::generate();
    let new = provider.wrap("master-2", &new_key, &ctx()).await.unwrap();
    assert_eq!(
        provider
            .unwrap("master-1", &old, &ctx())
            .await
            .unwrap()
            .expose(),
        old_key.expose()
    );
    assert_eq!(
        provider
            .unwrap("master-2", &new, &ctx())
            .await
            .unwrap()
            .expose(),
        new_key.expose()
    );
    assert!(matches!(
        provider.unwrap("master-2", &old, &ctx()).await,
        Err(KeyError::Invalid)
    ));
    assert!(matches!(
        provider.unwrap("master-1", &new, &ctx()).await,
        Err(KeyError::Invalid)
    ));

    let reopened = LocalProvider::open(&scratch.keys()).unwrap();
    assert_eq!(reopened.current(), "master-2");
    assert_eq!(
        reopened
            .unwrap("master-1", &old, &ctx())
            .await
            .unwrap()
            .expose(),
        old_key.expose()
    );
    assert_eq!(
        reopened
            .unwrap("master-2", &new, &ctx())
            .await
            .unwrap()
            .expose(),
        new_key.expose()
    );
}

#[tokio::test]
async fn a_key_rotated_by_another_process_is_found_without_reopening() {
    let scratch = Scratch::new();
    let here = LocalProvider::open(&scratch.keys()).unwrap();
    let there = LocalProvider::open(&scratch.keys()).unwrap();
    assert_eq!(there.rotate().unwrap(), "master-2");
    let key = DataKey::generate();
    let wrapped = there.wrap("master-2", &key, &ctx()).await.unwrap();
    assert_eq!(
        here.unwrap("master-2", &wrapped, &ctx())
            .await
            .unwrap()
            .expose(),
        key.expose()
    );
    // Rotating where master-2 already exists on disk must not overwrite it.
    assert_eq!(here.rotate().unwrap(), "master-3");
    assert_eq!(
        there
            .unwrap("master-2", &wrapped, &ctx())
            .await
            .unwrap()
            .expose(),
        key.expose()
    );
    // `there` never loaded master-3, but the number is taken on disk: it moves past it.
    assert_eq!(there.rotate().unwrap(), "master-4");
    let other = LocalProvider::open(&scratch.keys()).unwrap();
    assert_eq!(
        other.names(),
        vec!["master-1", "master-2", "master-3", "master-4"]
    );
    assert_eq!(other.current(), "master-4");
}
