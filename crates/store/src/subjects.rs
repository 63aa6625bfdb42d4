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
//! bound to their scope and subject; `custody::SubjectKeys` holds and caches them.

use portcullis_crypto::envelope::{self, Place};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::custody::envelope_error;
pub use crate::custody::{SubjectKey, SubjectKeys};
use crate::StoreError;

pub const SEALED_PREFIX: &str = "pcs-sealed:v1:";
/// What the API shows for a value whose subject key was destroyed.
pub const ERASED: &str = "[erased]";

const ERASE: &str = "DELETE FROM subject_keys WHERE environment_id = $1 AND subject_id = $2";

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

/// Seals `text` for `subject`, bound to where it is stored.
pub fn seal(key: &SubjectKey, subject: Uuid, spot: &Spot<'_>, text: &str) -> String {
    let ct = key.seal(&value_place(spot), text.as_bytes());
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
    keys: &SubjectKeys,
    spot: &Spot<'_>,
    stored: &str,
) -> Result<String, StoreError> {
    let Some(parsed) = parse(stored) else {
        return Ok(stored.to_owned());
    };
    let (subject, ct) = parsed?;
    let label = envelope::label(&ct).map_err(envelope_error)?;
    match keys.load(conn, spot.scope, subject).await? {
        Some(key) if key.key_id() == label.key_id => {
            let text = key.open_text(&value_place(spot), &ct)?;
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
    /// use. Without subject keys nothing is written: the caller's whole write fails.
    pub async fn seal(
        &self,
        conn: &mut PgConnection,
        keys: Option<&SubjectKeys>,
        subject: Uuid,
        ip: Option<&str>,
        user_agent: Option<&str>,
    ) -> Result<(Option<String>, Option<String>), StoreError> {
        if ip.is_none() && user_agent.is_none() {
            return Ok((None, None));
        }
        let keys = keys.ok_or_else(|| {
            StoreError::KeyUnavailable(format!(
                "no vault to seal the personal data of this {} row; it was not written",
                self.table
            ))
        })?;
        let key = keys.load_or_create(conn, self.scope, subject).await?;
        let seal = |column: &str, value: Option<&str>| {
            value.map(|v| seal(&key, subject, &self.spot(column), v))
        };
        Ok((seal("ip", ip), seal("user_agent", user_agent)))
    }

    /// Opens sealed values of the IP and user agent in place; clear ones stay as they are.
    pub async fn reveal(
        &self,
        conn: &mut PgConnection,
        keys: Option<&SubjectKeys>,
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
            let keys = keys.ok_or_else(|| {
                StoreError::KeyUnavailable(format!(
                    "no vault to open the sealed personal data of a {} row",
                    self.table
                ))
            })?;
            *value = Some(reveal(&mut *conn, keys, &self.spot(column), stored).await?);
        }
        Ok(())
    }
}

/// Destroys `subject`'s key in `scope`: every value sealed with it becomes unreadable for
/// good. Returns whether there was a key. The caller audits the erasure.
pub async fn erase(
    conn: &mut PgConnection,
    keys: Option<&SubjectKeys>,
    scope: Uuid,
    subject: Uuid,
) -> Result<bool, StoreError> {
    if let Some(k) = keys {
        k.forget(scope, subject);
    }
    let done = sqlx::query(ERASE)
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
        let (conn, keys) = self.conn_and_keys();
        erase(conn, keys, scope, identity.as_uuid()).await
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
        self.as_system(manage).await?;
        let (conn, keys) = self.conn_and_keys();
        erase(conn, keys, crate::PLATFORM_SCOPE, identity.as_uuid()).await
    }
}
