use portcullis_core::{EnvironmentId, IdentityId, InvitationId, RoleRef};
use portcullis_crypto::TokenHash;
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::tx::{decode_role, encode_role, Actor, Caller};
use crate::{AuthTx, StoreError, TenantTx};

#[derive(Clone, Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Invitation {
    pub invitation_id: Uuid,
    pub email: String,
    pub role: String,
    pub invited_by: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub accepted_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub revoked_at: Option<OffsetDateTime>,
}

const COLUMNS: &str = "invitation_id, email,
    CASE WHEN role = 'custom' THEN 'custom:' || custom_role_id::text ELSE role END AS role,
    invited_by, created_at, expires_at, accepted_at, revoked_at";

#[allow(clippy::too_many_arguments)]
pub async fn create(
    tx: &mut TenantTx,
    id: InvitationId,
    email: &str,
    role: RoleRef,
    hash: &TokenHash,
    invited_by: Uuid,
    now: OffsetDateTime,
    expires_at: OffsetDateTime,
) -> Result<Invitation, StoreError> {
    let env = tx.environment_id().as_uuid();
    let (role, custom) = encode_role(role);
    Ok(sqlx::query_as(&format!(
        "INSERT INTO invitations (environment_id, invitation_id, email, role, custom_role_id, token_hash, invited_by, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING {COLUMNS}"
    ))
    .bind(env)
    .bind(id.as_uuid())
    .bind(email)
    .bind(role)
    .bind(custom)
    .bind(hash.as_bytes().as_slice())
    .bind(invited_by)
    .bind(now)
    .bind(expires_at)
    .fetch_one(tx.conn())
    .await?)
}

pub async fn list(
    tx: &mut TenantTx,
    page: super::Page,
) -> Result<super::Paged<Invitation>, StoreError> {
    let env = tx.environment_id().as_uuid();
    let rows: Vec<Invitation> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM invitations WHERE environment_id = $1 AND ($2::uuid IS NULL OR invitation_id > $2)
          ORDER BY invitation_id LIMIT $3"
    ))
    .bind(env)
    .bind(page.after)
    .bind(page.fetch_limit())
    .fetch_all(tx.conn())
    .await?;
    Ok(super::Paged::from_rows(rows, page, |r| r.invitation_id))
}

pub async fn revoke(
    tx: &mut TenantTx,
    id: InvitationId,
    now: OffsetDateTime,
) -> Result<Invitation, StoreError> {
    let env = tx.environment_id().as_uuid();
    Ok(sqlx::query_as(&format!(
        "UPDATE invitations SET revoked_at = COALESCE(revoked_at, $3)
          WHERE environment_id = $1 AND invitation_id = $2 RETURNING {COLUMNS}"
    ))
    .bind(env)
    .bind(id.as_uuid())
    .bind(now)
    .fetch_one(tx.conn())
    .await?)
}

/// Why an invitation cannot be accepted. The token holder may learn these; anyone else gets
/// `NotFound`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unusable {
    Expired,
    AlreadyUsed,
    Revoked,
    OtherEmail,
    AlreadyMember,
}

/// Accepts the invitation the token names, as `identity`: adds the membership and marks the
/// invitation used, in one transaction which is returned (as the new member) so the caller
/// can audit and commit.
pub async fn accept(
    mut auth: AuthTx,
    identity: IdentityId,
    identity_email: &str,
    hash: &TokenHash,
    now: OffsetDateTime,
) -> Result<Result<(TenantTx, Invitation), Unusable>, StoreError> {
    #[derive(sqlx::FromRow)]
    struct Row {
        environment_id: Uuid,
        token_hash: Vec<u8>,
        custom_role_id: Option<Uuid>,
        raw_role: String,
        #[sqlx(flatten)]
        invitation: Invitation,
    }
    auth.set("portcullis.token_hash", &hash.to_hex()).await?;
    let row: Option<Row> = sqlx::query_as(&format!(
        "SELECT environment_id, token_hash, custom_role_id, role AS raw_role, {COLUMNS}
           FROM invitations WHERE token_hash = $1"
    ))
    .bind(hash.as_bytes().as_slice())
    .fetch_optional(auth.conn())
    .await?;
    let Some(row) = row else {
        return Err(StoreError::NotFound);
    };
    if TokenHash::from_bytes(&row.token_hash).is_none_or(|h| h != *hash) {
        return Err(StoreError::NotFound);
    }
    let inv = &row.invitation;
    let problem = if inv.revoked_at.is_some() {
        Some(Unusable::Revoked)
    } else if inv.accepted_at.is_some() {
        Some(Unusable::AlreadyUsed)
    } else if inv.expires_at <= now {
        Some(Unusable::Expired)
    } else if inv.email != identity_email {
        Some(Unusable::OtherEmail)
    } else {
        None
    };
    if let Some(p) = problem {
        return Ok(Err(p));
    }
    let environment = EnvironmentId::from_uuid(row.environment_id);
    let (role, _) = decode_role(&row.raw_role, row.custom_role_id, Some(&[]))?;
    let caller = Caller {
        environment_id: environment,
        actor: Actor::Identity(identity),
        role,
        permissions: portcullis_core::PermissionSet::EMPTY,
    };
    let mut tx = auth.into_tenant(caller).await?;
    let already: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM memberships WHERE environment_id = $1 AND identity_id = $2)",
    )
    .bind(row.environment_id)
    .bind(identity.as_uuid())
    .fetch_one(tx.conn())
    .await?;
    if already {
        return Ok(Err(Unusable::AlreadyMember));
    }
    super::members::add(&mut tx, identity, role, now).await?;
    let invitation = sqlx::query_as(&format!(
        "UPDATE invitations SET accepted_at = $3, accepted_by = $4
          WHERE environment_id = $1 AND invitation_id = $2 AND accepted_at IS NULL RETURNING {COLUMNS}"
    ))
    .bind(row.environment_id)
    .bind(inv.invitation_id)
    .bind(now)
    .bind(identity.as_uuid())
    .fetch_one(tx.conn())
    .await?;
    Ok(Ok((tx, invitation)))
}
