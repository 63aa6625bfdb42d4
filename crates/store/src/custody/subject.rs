//! Subject keys (D3): one key per person and audit scope, stored in `subject_keys` sealed
//! under the platform PII keyring and bound to their scope and subject.

use std::sync::Arc;

use portcullis_crypto::envelope::{self, DataKey, KeyLabel, Place};
use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{envelope_error, Custody};
use crate::StoreError;

const LOAD: &str =
    "SELECT key_id, key_ciphertext FROM subject_keys WHERE environment_id = $1 AND subject_id = $2";
const CREATE: &str =
    "INSERT INTO subject_keys (environment_id, subject_id, key_id, key_ciphertext, pii_key_version, created_at)
     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (environment_id, subject_id) DO NOTHING";

/// One subject's key in one scope.
#[derive(Clone)]
pub struct SubjectKey {
    key_id: Uuid,
    key: DataKey,
}

impl std::fmt::Debug for SubjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubjectKey")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl SubjectKey {
    /// The key id sealed values carry in their envelope header.
    pub fn key_id(&self) -> Uuid {
        self.key_id
    }

    pub(crate) fn seal(&self, place: &Place<'_>, plaintext: &[u8]) -> Vec<u8> {
        let label = KeyLabel {
            key_id: self.key_id,
            version: 1,
        };
        envelope::seal(&self.key, label, place, plaintext)
    }

    pub(crate) fn open_text(
        &self,
        place: &Place<'_>,
        ciphertext: &[u8],
    ) -> Result<zeroize::Zeroizing<String>, StoreError> {
        envelope::open_text(&self.key, place, ciphertext).map_err(envelope_error)
    }
}

/// Where a subject key itself is stored.
pub(crate) fn key_place(scope: Uuid, row: &str) -> Place<'_> {
    Place {
        environment: scope,
        table: "subject_keys",
        column: "key",
        row,
    }
}

/// The handle a transaction carries to seal and open a person's data under their subject keys:
/// it reaches the subject keys (and the platform keys sealing them), not the tenant keyrings.
/// Cloning is cheap.
#[derive(Clone, Debug)]
pub struct SubjectKeys {
    custody: Arc<Custody>,
}

impl SubjectKeys {
    pub(crate) fn new(custody: Arc<Custody>) -> SubjectKeys {
        SubjectKeys { custody }
    }

    /// The subject's key in `scope`, or `None` when it has none (never created, or erased).
    pub async fn load(
        &self,
        conn: &mut PgConnection,
        scope: Uuid,
        subject: Uuid,
    ) -> Result<Option<SubjectKey>, StoreError> {
        let row: Option<(Uuid, Vec<u8>)> = sqlx::query_as(LOAD)
            .bind(scope)
            .bind(subject)
            .fetch_optional(&mut *conn)
            .await?;
        let Some((key_id, sealed)) = row else {
            return Ok(None);
        };
        let platform = self.custody.platform_keys(conn).await?;
        let platform = self
            .custody
            .platform_keys_covering(conn, platform, [sealed.as_slice()])
            .await?;
        let subject_s = subject.to_string();
        let bytes = platform.open_bytes(&key_place(scope, &subject_s), &sealed)?;
        let key = DataKey::from_bytes(&bytes)
            .ok_or_else(|| StoreError::Integrity("a subject key has the wrong length".into()))?;
        Ok(Some(SubjectKey { key_id, key }))
    }

    /// The subject's key in `scope` for sealing, created on first use in the caller's
    /// transaction. Keys read back as committed rows are cached; a key this transaction
    /// created is not, since the transaction may still roll back.
    pub async fn load_or_create(
        &self,
        conn: &mut PgConnection,
        scope: Uuid,
        subject: Uuid,
    ) -> Result<SubjectKey, StoreError> {
        if let Some(k) = self.custody.subjects.get(&(scope, subject)) {
            return Ok(k);
        }
        if let Some(k) = self.load(conn, scope, subject).await? {
            self.custody.subjects.insert((scope, subject), k.clone());
            return Ok(k);
        }
        let platform = self.custody.platform_keys(conn).await?;
        let key = DataKey::generate();
        let subject_s = subject.to_string();
        let sealed = platform.seal_bytes(&key_place(scope, &subject_s), key.expose());
        sqlx::query(CREATE)
            .bind(scope)
            .bind(subject)
            .bind(Uuid::now_v7())
            .bind(&sealed)
            .bind(platform.active_version())
            .bind(OffsetDateTime::now_utc())
            .execute(&mut *conn)
            .await?;
        self.load(conn, scope, subject)
            .await?
            .ok_or_else(|| StoreError::Integrity("a subject key could not be created".into()))
    }

    /// Drops the cached key of `subject` in `scope` (before erasing it).
    pub(crate) fn forget(&self, scope: Uuid, subject: Uuid) {
        self.custody.subjects.remove(&(scope, subject));
    }
}
