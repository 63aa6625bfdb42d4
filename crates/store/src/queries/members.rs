use portcullis_core::{IdentityId, RoleRef};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Page, Paged};
use crate::pii::PlatformKeys;
use crate::tx::{decode_role, encode_role};
use crate::vault::Vault;
use crate::{StoreError, TenantTx};

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Member {
    pub identity_id: Uuid,
    pub email: String,
    pub display_name: String,
    /// A built-in role name or `custom:<role id>`.
    pub role: String,
    pub joined_at: OffsetDateTime,
}

// A macro rather than a const so that `concat!` can splice it into static SQL.
macro_rules! select {
    () => {
        "SELECT m.identity_id, i.email_ciphertext, i.display_name_ciphertext,
        CASE WHEN m.role = 'custom' THEN 'custom:' || m.custom_role_id::text ELSE m.role END AS role,
        m.created_at AS joined_at
   FROM memberships m JOIN identities i ON i.identity_id = m.identity_id"
    };
}

/// A member row as stored: the identity's personal fields sealed (E2).
#[derive(sqlx::FromRow)]
struct SealedMember {
    identity_id: Uuid,
    email_ciphertext: Vec<u8>,
    display_name_ciphertext: Vec<u8>,
    role: String,
    joined_at: OffsetDateTime,
}

impl SealedMember {
    fn open(self, keys: &PlatformKeys) -> Result<Member, StoreError> {
        let (email, display_name) = keys.open_person(
            self.identity_id,
            &self.email_ciphertext,
            &self.display_name_ciphertext,
        )?;
        Ok(Member {
            identity_id: self.identity_id,
            email,
            display_name,
            role: self.role,
            joined_at: self.joined_at,
        })
    }
}

pub async fn list(
    tx: &mut TenantTx,
    vault: &Vault,
    page: Page,
) -> Result<Paged<Member>, StoreError> {
    let env = tx.environment_id().as_uuid();
    let keys = vault.platform_keys(tx.conn()).await?;
    let rows: Vec<SealedMember> = sqlx::query_as(concat!(
        select!(),
        " WHERE m.environment_id = $1 AND ($2::uuid IS NULL OR m.identity_id > $2)
          ORDER BY m.identity_id LIMIT $3"
    ))
    .bind(env)
    .bind(page.after)
    .bind(page.fetch_limit())
    .fetch_all(tx.conn())
    .await?;
    let keys = vault
        .platform_keys_covering(
            tx.conn(),
            keys,
            rows.iter().flat_map(|r| {
                [
                    r.email_ciphertext.as_slice(),
                    r.display_name_ciphertext.as_slice(),
                ]
            }),
        )
        .await?;
    let rows = rows
        .into_iter()
        .map(|r| r.open(&keys))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Paged::from_rows(rows, page, |m| m.identity_id))
}

pub async fn get(
    tx: &mut TenantTx,
    vault: &Vault,
    identity: IdentityId,
) -> Result<Member, StoreError> {
    let env = tx.environment_id().as_uuid();
    let keys = vault.platform_keys(tx.conn()).await?;
    let row: SealedMember = sqlx::query_as(concat!(
        select!(),
        " WHERE m.environment_id = $1 AND m.identity_id = $2"
    ))
    .bind(env)
    .bind(identity.as_uuid())
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

/// The member's role as stored.
pub async fn role_of(tx: &mut TenantTx, identity: IdentityId) -> Result<RoleRef, StoreError> {
    let env = tx.environment_id().as_uuid();
    let row: (String, Option<Uuid>) = sqlx::query_as(
        "SELECT role, custom_role_id FROM memberships WHERE environment_id = $1 AND identity_id = $2",
    )
    .bind(env)
    .bind(identity.as_uuid())
    .fetch_one(tx.conn())
    .await?;
    if row.0 == "custom" {
        return row
            .1
            .map(|id| RoleRef::Custom(portcullis_core::RoleId::from_uuid(id)))
            .ok_or(StoreError::NotFound);
    }
    Ok(decode_role(&row.0, None, None)?.0)
}

pub async fn add(
    tx: &mut TenantTx,
    identity: IdentityId,
    role: RoleRef,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    let env = tx.environment_id().as_uuid();
    let (role, custom) = encode_role(role);
    sqlx::query(
        "INSERT INTO memberships (environment_id, identity_id, role, custom_role_id, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $5)",
    )
    .bind(env)
    .bind(identity.as_uuid())
    .bind(role)
    .bind(custom)
    .bind(now)
    .execute(tx.conn())
    .await?;
    Ok(())
}

pub async fn set_role(
    tx: &mut TenantTx,
    identity: IdentityId,
    role: RoleRef,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    tx.invalidate(crate::auth_cache::Scope::Environment(
        tx.environment_id().as_uuid(),
    ));
    let env = tx.environment_id().as_uuid();
    let (role, custom) = encode_role(role);
    let done = sqlx::query(
        "UPDATE memberships SET role = $3, custom_role_id = $4, updated_at = $5
          WHERE environment_id = $1 AND identity_id = $2",
    )
    .bind(env)
    .bind(identity.as_uuid())
    .bind(role)
    .bind(custom)
    .bind(now)
    .execute(tx.conn())
    .await?;
    if done.rows_affected() == 1 {
        Ok(())
    } else {
        Err(StoreError::NotFound)
    }
}

pub async fn remove(tx: &mut TenantTx, identity: IdentityId) -> Result<(), StoreError> {
    tx.invalidate(crate::auth_cache::Scope::Environment(
        tx.environment_id().as_uuid(),
    ));
    let env = tx.environment_id().as_uuid();
    let done =
        sqlx::query("DELETE FROM memberships WHERE environment_id = $1 AND identity_id = $2")
            .bind(env)
            .bind(identity.as_uuid())
            .execute(tx.conn())
            .await?;
    if done.rows_affected() == 1 {
        Ok(())
    } else {
        Err(StoreError::NotFound)
    }
}

/// Whether an account with this email (compared by blind index) is a member.
pub async fn is_member_email(
    tx: &mut TenantTx,
    vault: &Vault,
    email: &str,
) -> Result<bool, StoreError> {
    let env = tx.environment_id().as_uuid();
    let index = vault.platform_keys(tx.conn()).await?.email_index(email);
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM memberships m JOIN identities i ON i.identity_id = m.identity_id
                         WHERE m.environment_id = $1 AND i.email_index = $2)",
    )
    .bind(env)
    .bind(index.as_slice())
    .fetch_one(tx.conn())
    .await?)
}

/// Serializes ownership transfers in the caller's environment until its transaction ends: a
/// transaction-scoped advisory lock in the two-key space (`pcls`, hash of the environment id),
/// apart from the single-key pass locks of `leader`.
pub async fn lock_ownership(tx: &mut TenantTx) -> Result<(), StoreError> {
    let env = tx.environment_id().as_uuid();
    sqlx::query("SELECT pg_advisory_xact_lock(1885564019, hashtext($1::text))")
        .bind(env)
        .execute(tx.conn())
        .await?;
    Ok(())
}
