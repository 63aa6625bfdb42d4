//! PKCS#11 HSM provider: data keys are wrapped inside the token by an AES-256 secret-key object
//! found by its `CKA_LABEL`, so the key-encryption key itself never enters this process.
//!
//! This protects wrapped data keys against anyone who has the database, the host's disks, or
//! even this process's memory but not the HSM and its PIN; and it makes revocation real: an
//! operator who clears `CKA_ENCRYPT`/`CKA_DECRYPT` or destroys the key object makes every data
//! key under it unreadable at once (E4). It must never ask for, create or keep an extractable
//! copy of a KEK, never log the PIN (`Debug` of the config is redacted), and never report a
//! disabled or missing key as anything but `KeyError::Unavailable`.
//!
//! Mechanism: `CKM_AES_GCM`, 96-bit random IV, 128-bit tag, `WrapContext::to_aad()` as the
//! additional authenticated data, so the token itself authenticates the context. Chosen over
//! `CKM_AES_KEY_WRAP_PAD` because GCM authenticates the context natively (no hand-made
//! `key || sha256(aad)` construction) and SoftHSM2, like the common network HSMs, implements
//! it. Wrapped format, version 1: `0x01 || IV (12 bytes) || ciphertext (32) || tag (16)`.
//!
//! Sessions: PKCS#11 calls block, so each runs on `spawn_blocking` with a session taken from a
//! small pool of logged-in read/write sessions (or a new one, logged in, when the pool is
//! empty). A session is used by one thread at a time, as PKCS#11 requires.

use std::collections::HashMap;
use std::fmt;
use std::os::raw::c_ulong;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, SessionState, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use portcullis_crypto::envelope::DataKey;
use portcullis_crypto::secret::Secret;
use rand::rngs::OsRng;
use rand::RngCore;
use zeroize::Zeroizing;

use crate::{KeyError, WrapContext};

const FORMAT_V1: u8 = 1;
const IV_LEN: usize = 12;
const TAG_BITS: c_ulong = 128;
const TAG_LEN: usize = 16;
const KEY_LEN: usize = 32;
const WRAPPED_LEN: usize = 1 + IV_LEN + KEY_LEN + TAG_LEN;
/// Idle sessions kept for reuse. Unwraps are rare (callers cache data keys), so a few suffice.
const MAX_IDLE_SESSIONS: usize = 4;
/// `CKR_AEAD_DECRYPT_FAILED` (PKCS#11 3.0), which `cryptoki` 0.12 does not name.
const CKR_AEAD_DECRYPT_FAILED: c_ulong = 0x35;

/// Where the token is and how to log in to it.
#[derive(Clone, Debug)]
pub struct Pkcs11Config {
    /// The vendor's PKCS#11 module, e.g. `/usr/lib/softhsm/libsofthsm2.so`.
    pub module: PathBuf,
    /// The label of the token (not the slot) holding the KEKs.
    pub token_label: String,
    /// The user PIN. `Secret`'s `Debug` is redacted.
    pub pin: Secret,
}

/// A connected PKCS#11 token. Cheap to clone: clones share the session pool.
#[derive(Clone)]
pub struct Pkcs11Provider {
    inner: Arc<Inner>,
}

struct Inner {
    ctx: Pkcs11,
    slot: Slot,
    module: PathBuf,
    token_label: String,
    pin: Secret,
    idle: Mutex<Vec<Session>>,
    /// Makes `create_key`'s "label is free" check and the generation one step within this
    /// process.
    admin: Mutex<()>,
}

impl fmt::Debug for Pkcs11Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11Provider")
            .field("module", &self.inner.module)
            .field("token_label", &self.inner.token_label)
            .field("slot", &self.inner.slot.id())
            .finish()
    }
}

impl Pkcs11Provider {
    /// Loads and initialises the module (once per process and module), finds the token by
    /// label and logs in once, so that a wrong PIN or label fails at startup rather than at the
    /// first unwrap.
    pub async fn connect(config: Pkcs11Config) -> Result<Self, KeyError> {
        tokio::task::spawn_blocking(move || Self::connect_blocking(config))
            .await
            .map_err(|e| KeyError::Provider(format!("PKCS#11 worker failed: {e}")))?
    }

    fn connect_blocking(config: Pkcs11Config) -> Result<Self, KeyError> {
        let ctx = context(&config.module)?;
        let module = config.module.display();
        let slots = ctx.get_slots_with_token().map_err(|e| {
            KeyError::Provider(format!("listing the slots of {module}: {}", describe(&e)))
        })?;
        let mut labels = Vec::new();
        let mut matching = Vec::new();
        for slot in slots {
            let info = ctx.get_token_info(slot).map_err(|e| {
                KeyError::Provider(format!(
                    "reading the token in slot {slot} of {module}: {}",
                    describe(&e)
                ))
            })?;
            let label = info.label().trim_end().to_owned();
            if label == config.token_label {
                matching.push(slot);
            }
            labels.push(label);
        }
        let slot = match matching.as_slice() {
            [slot] => *slot,
            [] => {
                return Err(KeyError::Config(format!(
                "no PKCS#11 token labelled `{}` in {module}; available token labels: {labels:?}",
                config.token_label
            )))
            }
            _ => {
                return Err(KeyError::Config(format!(
                    "{} PKCS#11 tokens are labelled `{}` in {module}; token labels must be unique",
                    matching.len(),
                    config.token_label
                )))
            }
        };
        let inner = Inner {
            ctx,
            slot,
            module: config.module.clone(),
            token_label: config.token_label,
            pin: config.pin,
            idle: Mutex::new(Vec::new()),
            admin: Mutex::new(()),
        };
        let session = inner.open_session()?;
        inner.release(session);
        Ok(Pkcs11Provider {
            inner: Arc::new(inner),
        })
    }

    pub async fn wrap(
        &self,
        kek: &str,
        key: &DataKey,
        ctx: &WrapContext<'_>,
    ) -> Result<Vec<u8>, KeyError> {
        let label = kek.to_owned();
        let key = key.clone();
        let aad = ctx.to_aad();
        self.blocking(move |inner| {
            inner.with_session(|session| {
                let handle = find_key(session, &label)?;
                let mut iv = [0u8; IV_LEN];
                OsRng.fill_bytes(&mut iv);
                let sealed = {
                    let params = GcmParams::new(&mut iv, &aad, TAG_BITS.into())
                        .map_err(|e| map_error(&label, e))?;
                    session.encrypt(&Mechanism::AesGcm(params), handle, key.expose())
                }
                .map_err(|e| map_error(&label, e))?;
                if sealed.len() != KEY_LEN + TAG_LEN {
                    return Err(KeyError::Provider(format!(
                        "the token returned {} bytes for an AES-GCM wrap; expected {}",
                        sealed.len(),
                        KEY_LEN + TAG_LEN
                    )));
                }
                // Read the IV back after the call: a token that insists on choosing the IV
                // itself (some do in FIPS mode) writes it into the parameter buffer.
                let mut out = Vec::with_capacity(WRAPPED_LEN);
                out.push(FORMAT_V1);
                out.extend_from_slice(&iv);
                out.extend_from_slice(&sealed);
                Ok(out)
            })
        })
        .await
    }

    pub async fn unwrap(
        &self,
        kek: &str,
        wrapped: &[u8],
        ctx: &WrapContext<'_>,
    ) -> Result<DataKey, KeyError> {
        let label = kek.to_owned();
        let wrapped = wrapped.to_vec();
        let aad = ctx.to_aad();
        self.blocking(move |inner| {
            inner.with_session(|session| {
                // Find the key first, so that a revoked key reads as unavailable even when the
                // bytes are also damaged.
                let handle = find_key(session, &label)?;
                if wrapped.len() != WRAPPED_LEN || wrapped[0] != FORMAT_V1 {
                    return Err(KeyError::Invalid);
                }
                let mut iv = [0u8; IV_LEN];
                iv.copy_from_slice(&wrapped[1..1 + IV_LEN]);
                let plain = {
                    let params = GcmParams::new(&mut iv, &aad, TAG_BITS.into())
                        .map_err(|e| map_error(&label, e))?;
                    session.decrypt(&Mechanism::AesGcm(params), handle, &wrapped[1 + IV_LEN..])
                }
                .map_err(|e| map_decrypt_error(&label, e))?;
                let plain = Zeroizing::new(plain);
                DataKey::from_bytes(&plain).ok_or(KeyError::Invalid)
            })
        })
        .await
    }

    /// Generates a new AES-256 KEK in the token: a persistent, private, sensitive,
    /// non-extractable object that can only encrypt and decrypt. Refuses a label already used
    /// by any object, since keys are found by label.
    pub async fn create_key(&self, label: &str) -> Result<(), KeyError> {
        let label = label.to_owned();
        self.blocking(move |inner| {
            if label.is_empty() {
                return Err(KeyError::Config("a PKCS#11 key label must not be empty".into()));
            }
            let _serial = inner.admin.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            inner.with_session(|session| {
                let existing = session
                    .find_objects(&[Attribute::Token(true), Attribute::Label(label.as_bytes().to_vec())])
                    .map_err(|e| map_error(&label, e))?;
                if !existing.is_empty() {
                    return Err(KeyError::Config(format!(
                        "an object labelled `{label}` already exists in token `{}`; refusing to create another",
                        inner.token_label
                    )));
                }
                let template = [
                    Attribute::Class(ObjectClass::SECRET_KEY),
                    Attribute::KeyType(KeyType::AES),
                    Attribute::ValueLen((KEY_LEN as c_ulong).into()),
                    Attribute::Label(label.as_bytes().to_vec()),
                    Attribute::Token(true),
                    Attribute::Private(true),
                    Attribute::Sensitive(true),
                    Attribute::Extractable(false),
                    // Left modifiable on purpose: `set_enabled` is how a key is revoked and
                    // restored.
                    Attribute::Modifiable(true),
                    Attribute::Encrypt(true),
                    Attribute::Decrypt(true),
                    Attribute::Wrap(false),
                    Attribute::Unwrap(false),
                    Attribute::Sign(false),
                    Attribute::Verify(false),
                    Attribute::Derive(false),
                ];
                session.generate_key(&Mechanism::AesKeyGen, &template).map_err(|e| map_error(&label, e))?;
                tracing::info!(label = %label, token = %inner.token_label, "created a PKCS#11 key-encryption key");
                Ok(())
            })
        })
        .await
    }

    /// Revokes (`false`) or restores (`true`) a KEK by flipping `CKA_ENCRYPT` and `CKA_DECRYPT`.
    /// The key material stays in the token, so restoring makes every wrapped key readable again
    /// with the same bytes.
    pub async fn set_enabled(&self, label: &str, enabled: bool) -> Result<(), KeyError> {
        let label = label.to_owned();
        self.blocking(move |inner| {
            inner.with_session(|session| {
                let handle = find_key(session, &label)?;
                session
                    .update_attributes(handle, &[Attribute::Encrypt(enabled), Attribute::Decrypt(enabled)])
                    .map_err(|e| match e {
                        CkError::Pkcs11(RvError::AttributeReadOnly, _) => KeyError::Provider(format!(
                            "the token does not allow changing CKA_ENCRYPT/CKA_DECRYPT of `{label}` (CKA_MODIFIABLE is false?)"
                        )),
                        e => map_error(&label, e),
                    })?;
                tracing::info!(label = %label, token = %inner.token_label, enabled, "changed a PKCS#11 key-encryption key's usage");
                Ok(())
            })
        })
        .await
    }

    /// Destroys a KEK. Irreversible: every data key wrapped under it is lost for good.
    pub async fn destroy_key(&self, label: &str) -> Result<(), KeyError> {
        let label = label.to_owned();
        self.blocking(move |inner| {
            inner.with_session(|session| {
                let handle = find_key(session, &label)?;
                session.destroy_object(handle).map_err(|e| map_error(&label, e))?;
                tracing::warn!(label = %label, token = %inner.token_label, "destroyed a PKCS#11 key-encryption key");
                Ok(())
            })
        })
        .await
    }

    async fn blocking<T, F>(&self, f: F) -> Result<T, KeyError>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T, KeyError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| KeyError::Provider(format!("PKCS#11 worker failed: {e}")))?
    }
}

impl Inner {
    /// Login state is per application and token, not per session: a second login while another
    /// session is logged in answers `CKR_USER_ALREADY_LOGGED_IN`, which is success here.
    fn open_session(&self) -> Result<Session, KeyError> {
        let session = self.ctx.open_rw_session(self.slot).map_err(|e| {
            KeyError::Provider(format!(
                "opening a session on token `{}`: {}",
                self.token_label,
                describe(&e)
            ))
        })?;
        let pin = AuthPin::from(self.pin.expose().to_owned());
        match session.login(UserType::User, Some(&pin)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(session),
            Err(CkError::Pkcs11(
                rv @ (RvError::PinIncorrect
                | RvError::PinInvalid
                | RvError::PinLenRange
                | RvError::PinExpired
                | RvError::PinLocked
                | RvError::UserPinNotInitialized),
                _,
            )) => Err(KeyError::Config(format!(
                "login to PKCS#11 token `{}` refused: {rv:?}",
                self.token_label
            ))),
            Err(e) => Err(KeyError::Provider(format!(
                "login to PKCS#11 token `{}`: {}",
                self.token_label,
                describe(&e)
            ))),
        }
    }

    /// A pooled session still logged in, or a fresh one. A pooled session can have been
    /// invalidated meanwhile (token removed, library logged out when another session closed
    /// last), which `C_GetSessionInfo` reveals cheaply.
    fn take(&self) -> Result<Session, KeyError> {
        loop {
            let pooled = self
                .idle
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .pop();
            let Some(session) = pooled else {
                return self.open_session();
            };
            if matches!(
                session.get_session_info().map(|i| i.session_state()),
                Ok(SessionState::RwUser)
            ) {
                return Ok(session);
            }
        }
    }

    fn release(&self, session: Session) {
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if idle.len() < MAX_IDLE_SESSIONS {
            idle.push(session);
        }
    }

    /// Runs `op` on a session, returning the session to the pool unless the failure may have
    /// come from the session itself.
    fn with_session<T>(
        &self,
        op: impl FnOnce(&Session) -> Result<T, KeyError>,
    ) -> Result<T, KeyError> {
        let session = self.take()?;
        let result = op(&session);
        if !matches!(result, Err(KeyError::Provider(_))) {
            self.release(session);
        }
        result
    }
}

/// The token's AES secret key labelled `label`. Only `CKO_SECRET_KEY`/`CKK_AES` token objects
/// count, so a certificate or public key sharing the label is never used as a KEK.
fn find_key(session: &Session, label: &str) -> Result<ObjectHandle, KeyError> {
    let template = [
        Attribute::Token(true),
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::Label(label.as_bytes().to_vec()),
    ];
    let found = session
        .find_objects(&template)
        .map_err(|e| map_error(label, e))?;
    match found.as_slice() {
        [handle] => Ok(*handle),
        [] => Err(unavailable(
            label,
            "no AES secret key with this label in the token".into(),
        )),
        many => Err(KeyError::Config(format!(
            "{} AES secret keys are labelled `{label}` in the token; KEK labels must be unique",
            many.len()
        ))),
    }
}

fn unavailable(label: &str, reason: String) -> KeyError {
    KeyError::Unavailable {
        kek: format!("pkcs11:{label}"),
        reason,
    }
}

fn map_error(label: &str, e: CkError) -> KeyError {
    match e {
        CkError::Pkcs11(RvError::KeyFunctionNotPermitted, f) => unavailable(
            label,
            format!("the key is disabled: CKA_ENCRYPT/CKA_DECRYPT is false ({f:?}: CKR_KEY_FUNCTION_NOT_PERMITTED)"),
        ),
        CkError::Pkcs11(rv @ (RvError::KeyHandleInvalid | RvError::ObjectHandleInvalid), f) => {
            unavailable(label, format!("the key object is gone ({f:?}: {rv:?})"))
        }
        CkError::Pkcs11(RvError::EncryptedDataInvalid | RvError::EncryptedDataLenRange, _) => KeyError::Invalid,
        CkError::Pkcs11(RvError::UnknownErrorCode(CKR_AEAD_DECRYPT_FAILED), _) => KeyError::Invalid,
        e => KeyError::Provider(format!("PKCS#11 operation on `{label}` failed: {}", describe(&e))),
    }
}

/// Like `map_error`, for `C_Decrypt` once the key was found and the input is well formed: some
/// tokens, SoftHSM2 among them, report a GCM tag mismatch as `CKR_GENERAL_ERROR` or
/// `CKR_FUNCTION_FAILED` instead of `CKR_ENCRYPTED_DATA_INVALID`. At that point the only input
/// left to be wrong is the ciphertext, tag or context, so those mean `Invalid`.
fn map_decrypt_error(label: &str, e: CkError) -> KeyError {
    match e {
        CkError::Pkcs11(
            RvError::GeneralError | RvError::FunctionFailed,
            cryptoki::context::Function::Decrypt,
        ) => KeyError::Invalid,
        e => map_error(label, e),
    }
}

fn describe(e: &CkError) -> String {
    match e {
        // The `Display` of an `RvError` is a paragraph of the standard; the code name is what
        // an operator searches for.
        CkError::Pkcs11(rv, f) => format!("{f:?} returned {rv:?}"),
        e => e.to_string(),
    }
}

/// The one initialised context per module in this process. `C_Initialize` is process-wide for a
/// module (the loader shares one copy of it), and `C_Finalize` would pull the library out from
/// under every other provider instance, so contexts are created once and kept for the life of
/// the process.
fn context(module: &Path) -> Result<Pkcs11, KeyError> {
    static CONTEXTS: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();
    let canonical = module
        .canonicalize()
        .map_err(|e| KeyError::Config(format!("PKCS#11 module {}: {e}", module.display())))?;
    let mut contexts = CONTEXTS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(ctx) = contexts.get(&canonical) {
        return Ok(ctx.clone());
    }
    let ctx = Pkcs11::new(&canonical).map_err(|e| {
        KeyError::Config(format!(
            "cannot load the PKCS#11 module {}: {e}",
            canonical.display()
        ))
    })?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        // Something else in this process (another library) initialised it first; sharing is fine.
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => {
            return Err(KeyError::Provider(format!(
                "initialising the PKCS#11 module {}: {}",
                canonical.display(),
                describe(&e)
            )))
        }
    }
    contexts.insert(canonical, ctx.clone());
    Ok(ctx)
}
