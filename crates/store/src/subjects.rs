//! Erasure without breaking the audit chain (D3). Personal data inside audit entries (the IP
//! address and user agent of a person's requests) is sealed under a key of that person's own,
//! one per audit scope (environment, or the platform scope of logins), before the entry is
//! hashed. The entry hash therefore covers the sealed text, so destroying the key makes the
//! data unreadable while every hash, proof and checkpoint still verifies.
//!
//! Stored form of a sealed value (text, in the same column the clear value would have used):
//! `pcs-sealed:v1:<subject uuid>:<hex of the envelope ciphertext>`, where the envelope's key id
//! is the subject key's id and its place is (scope, `audit_log`, column, audit id).
//!
//! Subject keys live in `subject_keys`, themselves sealed under the platform PII keyring and
//! bound to their scope and subject.

use portcullis_crypto::envelope::{self, DataKey, KeyLabel, Place};
use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::vault::Vault;
use crate::StoreError;

pub const SEALED_PREFIX: &str = "pcs-sealed:v1:";
/// What the API shows for a value whose subject key was destroyed.
pub const ERASED: &str = "[erased]";

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

pub(crate) fn key_place(scope: Uuid, row: &str) -> Place<'_> {
    Place {
        environment: scope,
        table: "subject_keys",
        column: "key",
        row,
    }
}

/// Where a sealed personal value lives: a column of an audit entry (`audit_log`) or of a
/// session (`sessions`).
#[derive(Clone, Copy, Debug)]
pub struct Spot<'a> {
    pub scope: Uuid,
    pub table: &'static str,
    pub column: &'a str,
    pub row: &'a str,
}

fn value_place<'a>(spot: &Spot<'a>) -> Place<'a> {
    Place {
        environment: spot.scope,
        table: spot.table,
        column: spot.column,
        row: spot.row,
    }
}

/// The subject's key in `scope`, or `None` when it has none (never created, or erased).
pub async fn load(
    conn: &mut PgConnection,
    vault: &Vault,
    scope: Uuid,
    subject: Uuid,
) -> Result<Option<SubjectKey>, StoreError> {
    let row: Option<(Uuid, Vec<u8>)> = sqlx::query_as(
        "SELECT key_id, key_ciphertext FROM subject_keys WHERE environment_id = $1 AND subject_id = $2",
    )
    .bind(scope)
    .bind(subject)
    .fetch_optional(&mut *conn)
    .await?;
    let Some((key_id, sealed)) = row else {
        return Ok(None);
    };
    let platform = vault.platform_keys(conn).await?;
    let platform = vault
        .platform_keys_covering(conn, platform, [sealed.as_slice()])
        .await?;
    let subject_s = subject.to_string();
    let bytes = platform.open_bytes(&key_place(scope, &subject_s), &sealed)?;
    let key = DataKey::from_bytes(&bytes)
        .ok_or_else(|| StoreError::Integrity("a subject key has the wrong length".into()))?;
    Ok(Some(SubjectKey { key_id, key }))
}

/// The subject's key in `scope` for sealing, created on first use in the caller's transaction.
/// Keys read back as committed rows are cached (see `Vault`); a key this transaction created is
/// not, since the transaction may still roll back.
pub async fn load_or_create(
    conn: &mut PgConnection,
    vault: &Vault,
    scope: Uuid,
    subject: Uuid,
) -> Result<SubjectKey, StoreError> {
    if let Some(k) = vault.subject_cached(scope, subject) {
        return Ok(k);
    }
    if let Some(k) = load(conn, vault, scope, subject).await? {
        vault.subject_remember(scope, subject, &k);
        return Ok(k);
    }
    let platform = vault.platform_keys(conn).await?;
    let key = DataKey::generate();
    let subject_s = subject.to_string();
    let sealed = platform.seal_bytes(&key_place(scope, &subject_s), key.expose());
    sqlx::query(
        "INSERT INTO subject_keys (environment_id, subject_id, key_id, key_ciphertext, pii_key_version, created_at)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (environment_id, subject_id) DO NOTHING",
    )
    .bind(scope)
    .bind(subject)
    .bind(Uuid::now_v7())
    .bind(&sealed)
    .bind(platform.active_version())
    .bind(OffsetDateTime::now_utc())
    .execute(&mut *conn)
    .await?;
    load(conn, vault, scope, subject)
        .await?
        .ok_or_else(|| StoreError::Integrity("a subject key could not be created".into()))
}

/// Seals `text` for `subject`, bound to where it is stored.
pub fn seal(key: &SubjectKey, subject: Uuid, spot: &Spot<'_>, text: &str) -> String {
    let label = KeyLabel {
        key_id: key.key_id,
        version: 1,
    };
    let ct = envelope::seal(&key.key, label, &value_place(spot), text.as_bytes());
    let mut out = String::with_capacity(SEALED_PREFIX.len() + 37 + ct.len() * 2);
    out.push_str(SEALED_PREFIX);
    out.push_str(&subject.to_string());
    out.push(':');
    out.push_str(&portcullis_audit::hex::encode(&ct));
    out
}

/// The subject a stored value was sealed for, and its ciphertext; `None` for a clear value.
pub fn parse(stored: &str) -> Option<Result<(Uuid, Vec<u8>), StoreError>> {
    let rest = stored.strip_prefix(SEALED_PREFIX)?;
    let malformed = || StoreError::Integrity("a sealed audit value is malformed".into());
    Some((|| {
        let (subject, hex) = rest.split_once(':').ok_or_else(malformed)?;
        let subject = Uuid::parse_str(subject).map_err(|_| malformed())?;
        if hex.len() % 2 != 0 {
            return Err(malformed());
        }
        let bytes = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16))
            .collect::<Result<Vec<u8>, _>>()
            .map_err(|_| malformed())?;
        Ok((subject, bytes))
    })())
}

/// Opens a stored value: clear values are returned as they are, sealed ones are opened with
/// their subject's key, and values whose key was destroyed read as [`ERASED`].
pub async fn reveal(
    conn: &mut PgConnection,
    vault: &Vault,
    spot: &Spot<'_>,
    stored: &str,
) -> Result<String, StoreError> {
    let Some(parsed) = parse(stored) else {
        return Ok(stored.to_owned());
    };
    let (subject, ct) = parsed?;
    let label = envelope::label(&ct).map_err(crate::vault::envelope_error)?;
    match load(conn, vault, spot.scope, subject).await? {
        Some(key) if key.key_id == label.key_id => {
            let text = envelope::open_text(&key.key, &value_place(spot), &ct)
                .map_err(crate::vault::envelope_error)?;
            Ok(text.as_str().to_owned())
        }
        // No key, or a newer key created after an erasure: this value's key is gone.
        _ => Ok(ERASED.to_owned()),
    }
}

/// A person's request IP and user agent (`ip`, `user_agent` columns of `table`, row `row`).
#[derive(Debug)]
pub struct RequestMetaFields<'a> {
    pub scope: Uuid,
    pub table: &'static str,
    pub row: &'a str,
}

impl RequestMetaFields<'_> {
    fn spot<'c>(&'c self, column: &'c str) -> Spot<'c> {
        Spot {
            scope: self.scope,
            table: self.table,
            column,
            row: self.row,
        }
    }

    /// Seals the IP and user agent for `subject`, creating their key in this scope on first
    /// use. Without a vault nothing is written: the caller's whole write fails.
    pub async fn seal(
        &self,
        conn: &mut PgConnection,
        vault: Option<&Vault>,
        subject: Uuid,
        ip: Option<&str>,
        user_agent: Option<&str>,
    ) -> Result<(Option<String>, Option<String>), StoreError> {
        if ip.is_none() && user_agent.is_none() {
            return Ok((None, None));
        }
        let vault = vault.ok_or_else(|| {
            StoreError::KeyUnavailable(format!(
                "no vault to seal the personal data of this {} row; it was not written",
                self.table
            ))
        })?;
        let key = load_or_create(conn, vault, self.scope, subject).await?;
        let seal = |column: &str, value: Option<&str>| {
            value.map(|v| seal(&key, subject, &self.spot(column), v))
        };
        Ok((seal("ip", ip), seal("user_agent", user_agent)))
    }

    /// Opens sealed values of the IP and user agent in place; clear ones stay as they are.
    pub async fn reveal(
        &self,
        conn: &mut PgConnection,
        vault: Option<&Vault>,
        ip: &mut Option<String>,
        user_agent: &mut Option<String>,
    ) -> Result<(), StoreError> {
        for (column, value) in [("ip", ip), ("user_agent", user_agent)] {
            let Some(stored) = value.as_deref() else {
                continue;
            };
            if parse(stored).is_none() {
                continue;
            }
            let vault = vault.ok_or_else(|| {
                StoreError::KeyUnavailable(format!(
                    "no vault to open the sealed personal data of a {} row",
                    self.table
                ))
            })?;
            *value = Some(reveal(&mut *conn, vault, &self.spot(column), stored).await?);
        }
        Ok(())
    }
}

/// Destroys `subject`'s key in `scope`: every value sealed with it becomes unreadable for
/// good. Returns whether there was a key. The caller audits the erasure.
pub async fn erase(
    conn: &mut PgConnection,
    vault: Option<&Vault>,
    scope: Uuid,
    subject: Uuid,
) -> Result<bool, StoreError> {
    if let Some(v) = vault {
        v.subject_forget(scope, subject);
    }
    let done =
        sqlx::query("DELETE FROM subject_keys WHERE environment_id = $1 AND subject_id = $2")
            .bind(scope)
            .bind(subject)
            .execute(conn)
            .await?;
    Ok(done.rows_affected() > 0)
}

impl crate::TenantTx {
    /// Destroys `identity`'s subject key in this environment (the caller needs
    /// `members.manage`, which the database checks too). Returns whether a key existed.
    pub async fn erase_subject(
        &mut self,
        identity: portcullis_core::IdentityId,
    ) -> Result<bool, StoreError> {
        self.require(portcullis_core::Permission::MembersManage)?;
        let scope = self.environment_id().as_uuid();
        let (conn, vault) = self.conn_and_vault();
        erase(conn, vault.as_deref(), scope, identity.as_uuid()).await
    }
}

impl crate::AuthTx {
    /// Destroys `identity`'s subject key in the platform scope (logins, sign-ups): an operator
    /// action (`portcullis audit erase-subject` without an environment), never reachable
    /// through the API. Returns whether a key existed. The caller audits the erasure.
    pub async fn erase_platform_subject(
        &mut self,
        identity: portcullis_core::IdentityId,
    ) -> Result<bool, StoreError> {
        let manage =
            portcullis_core::PermissionSet::of(&[portcullis_core::Permission::MembersManage]);
        self.set("portcullis.permissions", &manage.to_setting())
            .await?;
        let (conn, vault) = self.conn_and_vault();
        let erased = erase(
            conn,
            vault.as_deref(),
            crate::PLATFORM_SCOPE,
            identity.as_uuid(),
        )
        .await;
        self.set("portcullis.permissions", "").await?;
        erased
    }
}
