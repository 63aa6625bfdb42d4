//! PKCS#11 provider against SoftHSM2: what only a token has (key attributes, destruction, login
//! errors, state shared across connections); wrapping, context binding and E4 revocation are
//! `conformance`.
//!
//! SoftHSM2 reads `SOFTHSM2_CONF` once, when the module is initialised, and the module is
//! initialised once per process; so every test here shares one token, set up once, and each
//! uses its own key labels. The tests also run one at a time: login state is shared by all
//! sessions of the process, so a wrong PIN is only noticed while no other test is logged in.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass};
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use portcullis_crypto::envelope::DataKey;
use portcullis_crypto::secret::Secret;
use portcullis_keys::pkcs11::{Pkcs11Config, Pkcs11Provider};
use portcullis_keys::{KekRef, KeyError, Providers, WrapContext};

use crate::conformance::{Reason, Refusal, Revoker, Subject};

const TOKEN: &str = "portcullis-test";
const PIN: &str = "1234";
const SO_PIN: &str = "5678";
const ENV: &str = "0192d1e4-5f6a-7b8c-9d0e-1f2a3b4c5d6e";

fn module() -> PathBuf {
    std::env::var_os("PORTCULLIS_TEST_PKCS11_MODULE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/softhsm/libsofthsm2.so"))
}

/// Initialises a fresh SoftHSM2 token in a directory of this test run, once per process.
/// `None` when SoftHSM2 is not installed.
fn softhsm() -> Option<&'static Path> {
    static SETUP: OnceLock<Option<PathBuf>> = OnceLock::new();
    SETUP
        .get_or_init(|| {
            let util = Command::new("softhsm2-util").arg("--version").output();
            if !module().exists() || util.is_err() {
                return None;
            }
            let root = Path::new(env!("CARGO_TARGET_TMPDIR"))
                .join(format!("softhsm-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&root);
            let tokens = root.join("tokens");
            std::fs::create_dir_all(&tokens).unwrap();
            let conf = root.join("softhsm2.conf");
            std::fs::write(
                &conf,
                format!(
                    "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                    tokens.display()
                ),
            )
            .unwrap();
            // Before any test loads the module, and never changed afterwards.
            std::env::set_var("SOFTHSM2_CONF", &conf);
            let out = Command::new("softhsm2-util")
                .args([
                    "--init-token",
                    "--free",
                    "--label",
                    TOKEN,
                    "--pin",
                    PIN,
                    "--so-pin",
                    SO_PIN,
                ])
                .env("SOFTHSM2_CONF", &conf)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "softhsm2-util --init-token failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            Some(root)
        })
        .as_deref()
}

type Serial = tokio::sync::MutexGuard<'static, ()>;

/// Takes the token for this test and connects to it, or says loudly why the test is not run.
/// Bind the guard first so that it outlives the provider.
async fn provider() -> Option<(Serial, Pkcs11Provider)> {
    static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    if softhsm().is_none() {
        // Straight to the process's stderr: the test harness swallows `eprintln!` of a
        // passing test, and a skip must not look like a pass.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: SoftHSM2 not installed (apt-get install softhsm2)"
        );
        return None;
    }
    let serial = SERIAL.lock().await;
    Some((serial, Pkcs11Provider::connect(config()).await.unwrap()))
}

/// Two fresh keys in the shared token, holding the token for the test.
pub async fn subject() -> Option<Subject> {
    static KEYS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let (serial, hsm) = provider().await?;
    let n = KEYS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (label, other) = (
        format!("kek-conformance-{n}"),
        format!("kek-conformance-{n}-other"),
    );
    hsm.create_key(&label).await.unwrap();
    hsm.create_key(&other).await.unwrap();
    let pkcs11 = |label: &str| KekRef::Pkcs11 {
        label: label.to_owned(),
    };
    Some(Subject {
        providers: Providers {
            pkcs11: Some(hsm.clone()),
            ..Providers::default()
        },
        kek: pkcs11(&label),
        other_kek: pkcs11(&other),
        other_kek_refusal: Refusal::Invalid,
        missing: vec![pkcs11("kek-never-created")],
        missing_reason: Reason::Any,
        key_id_prefix: 0,
        aes_gcm_v1: true,
        revoker: Some(Revoker::Pkcs11(hsm, label)),
        revoked_reason: "disabled",
        _keep: Box::new(serial),
    })
}

fn config() -> Pkcs11Config {
    Pkcs11Config {
        module: module(),
        token_label: TOKEN.into(),
        pin: Secret::new(PIN),
    }
}

fn ctx() -> WrapContext<'static> {
    WrapContext {
        environment_id: ENV,
        purpose: "data-key",
        version: 1,
    }
}

fn assert_unavailable<T: std::fmt::Debug>(result: Result<T, KeyError>, label: &str) -> String {
    match result {
        Err(KeyError::Unavailable { kek, reason }) => {
            assert_eq!(kek, format!("pkcs11:{label}"));
            reason
        }
        other => panic!("expected Unavailable for {label}, got {other:?}"),
    }
}

#[tokio::test]
async fn pkcs11_a_fresh_connection_unwraps() {
    let Some((_serial, hsm)) = provider().await else {
        return;
    };
    hsm.create_key("kek-round-trip").await.unwrap();
    let key = DataKey::generate();
    let wrapped = hsm.wrap("kek-round-trip", &key, &ctx()).await.unwrap();
    let again = hsm.wrap("kek-round-trip", &key, &ctx()).await.unwrap();
    drop(hsm);

    let fresh = Pkcs11Provider::connect(config()).await.unwrap();
    assert_eq!(
        fresh
            .unwrap("kek-round-trip", &wrapped, &ctx())
            .await
            .unwrap()
            .expose(),
        key.expose()
    );
    assert_eq!(
        fresh
            .clone()
            .unwrap("kek-round-trip", &again, &ctx())
            .await
            .unwrap()
            .expose(),
        key.expose()
    );
}

/// Managing a label that was never created (wrapping and unwrapping under it: `conformance`).
#[tokio::test]
async fn pkcs11_an_unknown_label_is_unavailable() {
    let Some((_serial, hsm)) = provider().await else {
        return;
    };
    assert_unavailable(
        hsm.set_enabled("kek-never-created", false).await,
        "kek-never-created",
    );
    assert_unavailable(
        hsm.destroy_key("kek-never-created").await,
        "kek-never-created",
    );
}

/// E4: a revocation lives in the token, not in this process: another connection sees it, and
/// the restoration (revocation through `Providers`: `conformance`).
#[tokio::test]
async fn e4_disabling_the_kek_revokes_and_enabling_it_restores() {
    let Some((_serial, hsm)) = provider().await else {
        return;
    };
    hsm.create_key("kek-e4-revoke").await.unwrap();
    let key = DataKey::generate();
    let wrapped = hsm.wrap("kek-e4-revoke", &key, &ctx()).await.unwrap();

    hsm.set_enabled("kek-e4-revoke", false).await.unwrap();
    let other = Pkcs11Provider::connect(config()).await.unwrap();
    let reason = assert_unavailable(
        other.unwrap("kek-e4-revoke", &wrapped, &ctx()).await,
        "kek-e4-revoke",
    );
    assert!(reason.contains("disabled"), "{reason}");

    hsm.set_enabled("kek-e4-revoke", true).await.unwrap();
    assert_eq!(
        other
            .unwrap("kek-e4-revoke", &wrapped, &ctx())
            .await
            .unwrap()
            .expose(),
        key.expose()
    );
}

/// E4: destroying the KEK is permanent, even for a label that is later reused.
#[tokio::test]
async fn e4_destroying_the_kek_is_permanent() {
    let Some((_serial, hsm)) = provider().await else {
        return;
    };
    hsm.create_key("kek-e4-destroy").await.unwrap();
    let key = DataKey::generate();
    let wrapped = hsm.wrap("kek-e4-destroy", &key, &ctx()).await.unwrap();
    hsm.destroy_key("kek-e4-destroy").await.unwrap();
    assert_unavailable(
        hsm.unwrap("kek-e4-destroy", &wrapped, &ctx()).await,
        "kek-e4-destroy",
    );
    assert_unavailable(
        hsm.set_enabled("kek-e4-destroy", true).await,
        "kek-e4-destroy",
    );
    let fresh = Pkcs11Provider::connect(config()).await.unwrap();
    assert_unavailable(
        fresh.unwrap("kek-e4-destroy", &wrapped, &ctx()).await,
        "kek-e4-destroy",
    );
    // A new key under the old label is another key: the old wrapped bytes stay dead.
    hsm.create_key("kek-e4-destroy").await.unwrap();
    let result = hsm.unwrap("kek-e4-destroy", &wrapped, &ctx()).await;
    assert!(matches!(result, Err(KeyError::Invalid)), "{result:?}");
}

#[tokio::test]
async fn pkcs11_created_keys_are_sensitive_and_never_extractable() {
    let Some((_serial, hsm)) = provider().await else {
        return;
    };
    hsm.create_key("kek-attributes").await.unwrap();
    let err = hsm.create_key("kek-attributes").await.unwrap_err();
    assert!(
        matches!(&err, KeyError::Config(m) if m.contains("already exists")),
        "{err:?}"
    );

    // Inspect the object directly, through the same (already initialised) module.
    let ctx = Pkcs11::new(module()).unwrap();
    let _ = ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK));
    let slot = ctx
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| ctx.get_token_info(*s).unwrap().label() == TOKEN)
        .unwrap();
    let session = ctx.open_ro_session(slot).unwrap();
    let _ = session.login(UserType::User, Some(&AuthPin::from(PIN.to_string())));
    let found = session
        .find_objects(&[
            Attribute::Label(b"kek-attributes".to_vec()),
            Attribute::Class(ObjectClass::SECRET_KEY),
        ])
        .unwrap();
    assert_eq!(found.len(), 1);
    let attributes = session
        .get_attributes(
            found[0],
            &[
                AttributeType::KeyType,
                AttributeType::ValueLen,
                AttributeType::Token,
                AttributeType::Private,
                AttributeType::Sensitive,
                AttributeType::Extractable,
                AttributeType::NeverExtractable,
                AttributeType::Value,
            ],
        )
        .unwrap();
    let has = |wanted: &Attribute| {
        attributes
            .iter()
            .any(|a| format!("{a:?}") == format!("{wanted:?}"))
    };
    assert!(has(&Attribute::KeyType(KeyType::AES)), "{attributes:?}");
    assert!(has(&Attribute::ValueLen(32u64.into())), "{attributes:?}");
    for flag in [
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::NeverExtractable(true),
    ] {
        assert!(has(&flag), "{flag:?} in {attributes:?}");
    }
    assert!(has(&Attribute::Extractable(false)), "{attributes:?}");
    assert!(
        !attributes.iter().any(|a| matches!(a, Attribute::Value(_))),
        "the key value must not be readable: {attributes:?}"
    );
}

#[tokio::test]
async fn pkcs11_connect_explains_a_wrong_token_label_or_pin() {
    let Some((_serial, hsm)) = provider().await else {
        return;
    };
    // Logged out again once no session is open, so that the wrong PIN below is really checked.
    drop(hsm);
    let err = Pkcs11Provider::connect(Pkcs11Config {
        token_label: "no-such-token".into(),
        ..config()
    })
    .await
    .unwrap_err();
    assert!(
        matches!(&err, KeyError::Config(m) if m.contains("no-such-token") && m.contains(TOKEN)),
        "{err:?}"
    );

    let err = Pkcs11Provider::connect(Pkcs11Config {
        pin: Secret::new("0000"),
        ..config()
    })
    .await
    .unwrap_err();
    assert!(
        matches!(&err, KeyError::Config(m) if m.contains("PinIncorrect")),
        "{err:?}"
    );

    let err = Pkcs11Provider::connect(Pkcs11Config {
        module: "/nonexistent/libpkcs11.so".into(),
        ..config()
    })
    .await
    .unwrap_err();
    assert!(
        matches!(&err, KeyError::Config(m) if m.contains("/nonexistent/libpkcs11.so")),
        "{err:?}"
    );

    let shown = format!(
        "{:?}",
        Pkcs11Config {
            pin: Secret::new("hunter2-distinctive"),
            ..config()
        }
    );
    assert!(!shown.contains("hunter2"), "{shown}");
    let shown = format!("{:?}", Pkcs11Provider::connect(config()).await.unwrap());
    assert!(
        shown.contains(TOKEN) && !shown.to_lowercase().contains("pin"),
        "{shown}"
    );
}
