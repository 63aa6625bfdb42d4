use portcullis_core::IdentityId;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::pii::{self, PlatformKeys};
use crate::vault::Vault;
use crate::{AuthTx, StoreError};

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Identity {
    pub identity_id: Uuid,
    pub email: String,
    pub display_name: String,
    pub created_at: OffsetDateTime,
}

/// What a login needs; never leaves the server.
#[derive(sqlx::FromRow)]
pub struct LoginRecord {
    pub identity_id: Uuid,
    pub password_hash: String,
    pub failed_logins: i32,
    pub locked_until: Option<OffsetDateTime>,
}

impl std::fmt::Debug for LoginRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginRecord")
            .field("identity_id", &self.identity_id)
            .finish_non_exhaustive()
    }
}

/// An identity row as stored: personal fields sealed.
#[derive(sqlx::FromRow)]
struct SealedIdentity {
    identity_id: Uuid,
    email_ciphertext: Vec<u8>,
    display_name_ciphertext: Vec<u8>,
    created_at: OffsetDateTime,
}

impl SealedIdentity {
    fn open(self, keys: &PlatformKeys) -> Result<Identity, StoreError> {
        let (email, display_name) = keys.open_person(
            self.identity_id,
            &self.email_ciphertext,
            &self.display_name_ciphertext,
        )?;
        Ok(Identity {
            identity_id: self.identity_id,
            email,
            display_name,
            created_at: self.created_at,
        })
    }
}

/// The columns a [`SealedIdentity`] is read from.
// A macro rather than a const so that `concat!` can splice it into static SQL.
macro_rules! sealed_columns {
    () => {
        "identity_id, email_ciphertext, display_name_ciphertext, created_at"
    };
}

/// Creates an identity, its email and display name sealed under the platform PII key and the
/// email findable only by blind index (E2). An email that already has an account is a
/// conflict; sign-up uses [`create_if_new`] instead, which does not say so.
pub async fn create(
    tx: &mut AuthTx,
    vault: &Vault,
    id: IdentityId,
    email: &str,
    display_name: &str,
    password_hash: &str,
    now: OffsetDateTime,
) -> Result<Identity, StoreError> {
    create_if_new(tx, vault, id, email, display_name, password_hash, now)
        .await?
        .ok_or_else(|| StoreError::Conflict("an account with this email already exists".into()))
}

/// As [`create`], but an email that already has an account creates nothing and answers `None`,
/// leaving the transaction usable (no unique violation is raised).
pub async fn create_if_new(
    tx: &mut AuthTx,
    vault: &Vault,
    id: IdentityId,
    email: &str,
    display_name: &str,
    password_hash: &str,
    now: OffsetDateTime,
) -> Result<Option<Identity>, StoreError> {
    tx.update(|c| {
        *c = crate::context::Context::acting(
            crate::context::Purpose::Signup,
            None,
            crate::Actor::Identity(id),
            portcullis_core::PermissionSet::EMPTY,
        )
    })
    .await?;
    let keys = vault.platform_keys(tx.conn()).await?;
    let row = id.as_uuid().to_string();
    let sealed = keys.seal_email(&pii::identity_place("email", &row), email);
    let name = keys.seal(&pii::identity_place("display_name", &row), display_name);
    let created_at: Option<OffsetDateTime> = sqlx::query_scalar(
        "INSERT INTO identities (identity_id, email_index, email_ciphertext, display_name_ciphertext, pii_key_version,
                                 password_hash, password_changed_at, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7)
         ON CONFLICT (email_index) DO NOTHING
         RETURNING created_at",
    )
    .bind(id.as_uuid())
    .bind(sealed.index.as_slice())
    .bind(&sealed.ciphertext)
    .bind(&name)
    .bind(sealed.version)
    .bind(password_hash)
    .bind(now)
    .fetch_optional(tx.conn())
    .await?;
    Ok(created_at.map(|created_at| Identity {
        identity_id: id.as_uuid(),
        email: email.to_owned(),
        display_name: display_name.to_owned(),
        created_at,
    }))
}

/// Looks an account up by email for a login attempt, through its blind index (the policy
/// allows exactly this row).
pub async fn login_record(
    tx: &mut AuthTx,
    vault: &Vault,
    email: &str,
) -> Result<Option<LoginRecord>, StoreError> {
    let keys = vault.platform_keys(tx.conn()).await?;
    let index = keys.email_index(email);
    tx.update(|c| {
        if c.purpose == crate::context::Purpose::None {
            c.purpose = crate::context::Purpose::Login;
        }
        c.login_email_index = Some(index);
    })
    .await?;
    Ok(sqlx::query_as(
        "SELECT identity_id, password_hash, failed_logins, locked_until FROM identities WHERE email_index = $1",
    )
    .bind(index.as_slice())
    .fetch_optional(tx.conn())
    .await?)
}

pub async fn record_login_failure(
    tx: &mut AuthTx,
    id: IdentityId,
    failed_logins: i32,
    locked_until: Option<OffsetDateTime>,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE identities SET failed_logins = $2, locked_until = $3 WHERE identity_id = $1",
    )
    .bind(id.as_uuid())
    .bind(failed_logins)
    .bind(locked_until)
    .execute(tx.conn())
    .await?;
    Ok(())
}

pub async fn record_login_success(tx: &mut AuthTx, id: IdentityId) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE identities SET failed_logins = 0, locked_until = NULL WHERE identity_id = $1",
    )
    .bind(id.as_uuid())
    .execute(tx.conn())
    .await?;
    Ok(())
}

/// The acting identity's own record (after `act_as`), personal fields opened.
pub async fn get(tx: &mut AuthTx, vault: &Vault, id: IdentityId) -> Result<Identity, StoreError> {
    let keys = vault.platform_keys(tx.conn()).await?;
    let row: SealedIdentity = sqlx::query_as(concat!(
        "SELECT ",
        sealed_columns!(),
        " FROM identities WHERE identity_id = $1"
    ))
    .bind(id.as_uuid())
    .fetch_one(tx.conn())
    .await?;
    let keys = vault
        .platform_keys_covering(
            tx.conn(),
            keys,
            [&row.email_ciphertext[..], &row.display_name_ciphertext[..]],
        )
        .await?;
    row.open(&keys)
}

/// The blind index of the acting identity's email.
pub async fn email_index(tx: &mut AuthTx, id: IdentityId) -> Result<Vec<u8>, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT email_index FROM identities WHERE identity_id = $1")
            .bind(id.as_uuid())
            .fetch_one(tx.conn())
            .await?,
    )
}

pub async fn password_hash(tx: &mut AuthTx, id: IdentityId) -> Result<String, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT password_hash FROM identities WHERE identity_id = $1")
            .bind(id.as_uuid())
            .fetch_one(tx.conn())
            .await?,
    )
}

pub async fn set_password(
    tx: &mut AuthTx,
    id: IdentityId,
    password_hash: &str,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    tx.invalidate(crate::auth_cache::Scope::Identity(id.as_uuid()));
    sqlx::query(
        "UPDATE identities SET password_hash = $2, password_changed_at = $3 WHERE identity_id = $1",
    )
    .bind(id.as_uuid())
    .bind(password_hash)
    .bind(now)
    .execute(tx.conn())
    .await?;
    Ok(())
}
