//! The platform keys (E2): the versioned PII keys and the blind-index key, which belong to no
//! environment. They are created on first use inside the caller's transaction and cached only
//! once read back as committed rows, so a key created by a transaction that later rolls back
//! can never seal anything that outlives it.

use std::collections::BTreeMap;
use std::sync::Arc;

use portcullis_crypto::blind;
use portcullis_crypto::envelope::{self, DataKey, KeyLabel, Place, Plaintext};
use portcullis_keys::KekRef;
use sqlx::types::Json;
use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{envelope_error, Custody};
use crate::StoreError;

/// The key id written into the header of every value sealed under the platform PII keyring.
pub const PLATFORM_KEYRING: Uuid = Uuid::nil();

pub(crate) const PII: &str = "pii";
pub(crate) const EMAIL_INDEX: &str = "email_index";

const KEY_ROWS: &str =
    "SELECT purpose, version, wrapped, kek FROM platform_keys ORDER BY purpose, version";
const CREATE_KEY: &str = "INSERT INTO platform_keys (purpose, version, wrapped, kek, created_at)
                     VALUES ($1, 1, $2, $3, $4) ON CONFLICT (purpose, version) DO NOTHING";

/// The unwrapped platform keys. Never printable.
pub struct PlatformKeys {
    pii: BTreeMap<i32, DataKey>,
    active: i32,
    index: DataKey,
}

impl std::fmt::Debug for PlatformKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlatformKeys")
            .field("pii_versions", &self.pii.keys().collect::<Vec<_>>())
            .field("active", &self.active)
            .finish_non_exhaustive()
    }
}

/// An email as stored: its blind index and its sealed form.
#[derive(Clone, Debug)]
pub struct SealedEmail {
    pub index: [u8; 32],
    pub ciphertext: Vec<u8>,
    pub version: i32,
}

impl PlatformKeys {
    /// The blind index of an email (normalised first).
    pub fn email_index(&self, email: &str) -> [u8; 32] {
        blind::index(&self.index, "email", &blind::normalize_email(email))
    }

    /// The active PII key version.
    pub fn active_version(&self) -> i32 {
        self.active
    }

    /// Seals `plaintext` for `place` with the active PII key.
    pub fn seal(&self, place: &Place<'_>, plaintext: &str) -> Vec<u8> {
        self.seal_bytes(place, plaintext.as_bytes())
    }

    pub fn seal_bytes(&self, place: &Place<'_>, plaintext: &[u8]) -> Vec<u8> {
        let key = &self.pii[&self.active];
        let label = KeyLabel {
            key_id: PLATFORM_KEYRING,
            version: self.active as u32,
        };
        envelope::seal(key, label, place, plaintext)
    }

    pub fn seal_email(&self, place: &Place<'_>, email: &str) -> SealedEmail {
        SealedEmail {
            index: self.email_index(email),
            ciphertext: self.seal(place, email),
            version: self.active,
        }
    }

    /// Opens a text value sealed for `place` under any live PII key version.
    pub fn open(&self, place: &Place<'_>, ciphertext: &[u8]) -> Result<String, StoreError> {
        let text = self
            .open_bytes(place, ciphertext)?
            .into_text()
            .map_err(envelope_error)?;
        Ok(text.as_str().to_owned())
    }

    /// Opens a value sealed for `place` under any live PII key version.
    pub fn open_bytes(
        &self,
        place: &Place<'_>,
        ciphertext: &[u8],
    ) -> Result<Plaintext, StoreError> {
        let label = envelope::label(ciphertext).map_err(envelope_error)?;
        if label.key_id != PLATFORM_KEYRING {
            return Err(StoreError::Integrity(
                "a stored personal value was not sealed under the platform keyring".into(),
            ));
        }
        let key = i32::try_from(label.version)
            .ok()
            .and_then(|v| self.pii.get(&v))
            .ok_or_else(|| {
                StoreError::Integrity(format!(
                    "a stored personal value uses PII key version {}, which does not exist",
                    label.version
                ))
            })?;
        envelope::open(key, place, ciphertext).map_err(envelope_error)
    }
}

type KeyRow = (String, i32, Vec<u8>, Json<KekRef>);

async fn key_rows(conn: &mut PgConnection) -> Result<Vec<KeyRow>, StoreError> {
    Ok(sqlx::query_as(KEY_ROWS).fetch_all(conn).await?)
}

fn complete(rows: &[KeyRow]) -> bool {
    rows.iter().any(|r| r.0 == PII) && rows.iter().any(|r| r.0 == EMAIL_INDEX)
}

impl Custody {
    /// The platform keys, from the cache or unwrapped from `platform_keys` (created on first
    /// use in the caller's transaction).
    pub(crate) async fn platform_keys(
        &self,
        conn: &mut PgConnection,
    ) -> Result<Arc<PlatformKeys>, StoreError> {
        if let Some(k) = self.platform_cached() {
            return Ok(k);
        }
        let mut rows = key_rows(conn).await?;
        let committed = complete(&rows);
        if !committed {
            let kek = self.default_kek().clone();
            let now = OffsetDateTime::now_utc();
            for purpose in [PII, EMAIL_INDEX] {
                if rows.iter().any(|r| r.0 == purpose) {
                    continue;
                }
                let key = DataKey::generate();
                let wrapped = self.wrap_platform(&kek, &key, purpose, 1).await?;
                sqlx::query(CREATE_KEY)
                    .bind(purpose)
                    .bind(&wrapped)
                    .bind(Json(&kek))
                    .bind(now)
                    .execute(&mut *conn)
                    .await?;
            }
            rows = key_rows(conn).await?;
        }
        let mut pii = BTreeMap::new();
        let mut index = None;
        for (purpose, version, wrapped, kek) in rows {
            let key = self
                .unwrap_platform(&kek.0, &wrapped, &purpose, version)
                .await?;
            if purpose == PII {
                pii.insert(version, key);
            } else if purpose == EMAIL_INDEX && version == 1 {
                index = Some(key);
            }
        }
        let (Some(active), Some(index)) = (pii.keys().next_back().copied(), index) else {
            return Err(StoreError::Integrity(
                "the platform keys are incomplete".into(),
            ));
        };
        let keys = Arc::new(PlatformKeys { pii, active, index });
        // Keys this transaction created are not cached: it may still roll back.
        if committed {
            self.platform_remember(keys.clone());
        }
        Ok(keys)
    }

    /// `keys`, or the platform keys reloaded if a ciphertext among `sealed` names a PII key
    /// version they lack: another node rotated the PII key after they were cached.
    pub(crate) async fn platform_keys_covering<'a>(
        &self,
        conn: &mut PgConnection,
        keys: Arc<PlatformKeys>,
        sealed: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<Arc<PlatformKeys>, StoreError> {
        let unknown = sealed.into_iter().any(|ct| {
            envelope::label(ct)
                .ok()
                .and_then(|l| i32::try_from(l.version).ok())
                .is_some_and(|v| !keys.pii.contains_key(&v))
        });
        if !unknown {
            return Ok(keys);
        }
        self.forget_platform();
        self.platform_keys(conn).await
    }
}
