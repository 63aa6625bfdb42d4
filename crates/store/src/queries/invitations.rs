use portcullis_core::{EnvironmentId, IdentityId, InvitationId, RoleRef};
use portcullis_crypto::TokenHash;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::pii::{self, PlatformKeys};
use crate::tx::{decode_role, encode_role, Actor, Caller};
use crate::vault::Vault;
use crate::{AuthTx, StoreError, TenantTx};

#[derive(Clone, Debug)]
pub struct Invitation {
    pub invitation_id: Uuid,
    pub email: String,
    pub role: String,
    pub invited_by: Uuid,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub accepted_at: Option<OffsetDateTime>,
    pub revoked_at: Option<OffsetDateTime>,
}

// A macro rather than a const so that `concat!` can splice it into static SQL.
macro_rules! columns {
    () => {
        "environment_id, invitation_id, email_ciphertext,
    CASE WHEN role = 'custom' THEN 'custom:' || custom_role_id::text ELSE role END AS role,
    invited_by, created_at, expires_at, accepted_at, revoked_at"
    };
}

/// An invitation as stored: the email sealed under the platform PII key (E2).
#[derive(sqlx::FromRow)]
struct SealedInvitation {
    environment_id: Uuid,
    invitation_id: Uuid,
    email_ciphertext: Vec<u8>,
    role: String,
    invited_by: Uuid,
    created_at: OffsetDateTime,
    expires_at: OffsetDateTime,
    accepted_at: Option<OffsetDateTime>,
    revoked_at: Option<OffsetDateTime>,
}

impl SealedInvitation {
    fn open(self, keys: &PlatformKeys) -> Result<Invitation, StoreError> {
        let row = self.invitation_id.to_string();
        Ok(Invitation {
            invitation_id: self.invitation_id,
            email: keys.open(
                &pii::invitation_place(self.environment_id, &row),
                &self.email_ciphertext,
            )?,
            role: self.role,
            invited_by: self.invited_by,
            created_at: self.created_at,
            expires_at: self.expires_at,
            accepted_at: self.accepted_at,
            revoked_at: self.revoked_at,
        })
    }
}

#[allow(clippy::too_many_arguments)]
pub async fn create(
    tx: &mut TenantTx,
    vault: &Vault,
    id: InvitationId,
    email: &str,
    role: RoleRef,
    hash: &TokenHash,
    invited_by: Uuid,
    now: OffsetDateTime,
    expires_at: OffsetDateTime,
) -> Result<Invitation, StoreError> {
    let env = tx.environment_id().as_uuid();
    let keys = vault.platform_keys(tx.conn()).await?;
    let row = id.as_uuid().to_string();
    let sealed = keys.seal_email(&pii::invitation_place(env, &row), email);
    let (role, custom) = encode_role(role);
    let stored: SealedInvitation = sqlx::query_as(concat!("INSERT INTO invitations (environment_id, invitation_id, email_index, email_ciphertext, pii_key_version,
                                  role, custom_role_id, token_hash, invited_by, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING ", columns!()))
    .bind(env)
    .bind(id.as_uuid())
    .bind(sealed.index.as_slice())
    .bind(&sealed.ciphertext)
    .bind(sealed.version)
    .bind(role)
    .bind(custom)
    .bind(hash.as_bytes().as_slice())
    .bind(invited_by)
    .bind(now)
    .bind(expires_at)
    .fetch_one(tx.conn())
    .await?;
    stored.open(&keys)
}

pub async fn list(
    tx: &mut TenantTx,
    vault: &Vault,
    page: super::Page,
) -> Result<super::Paged<Invitation>, StoreError> {
    let env = tx.environment_id().as_uuid();
    let keys = vault.platform_keys(tx.conn()).await?;
    let rows: Vec<SealedInvitation> = sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM invitations WHERE environment_id = $1 AND ($2::uuid IS NULL OR invitation_id > $2)
          ORDER BY invitation_id LIMIT $3"
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
            rows.iter().map(|r| r.email_ciphertext.as_slice()),
        )
        .await?;
    let rows = rows
        .into_iter()
        .map(|r| r.open(&keys))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(super::Paged::from_rows(rows, page, |r| r.invitation_id))
}

pub async fn revoke(
    tx: &mut TenantTx,
    vault: &Vault,
    id: InvitationId,
    now: OffsetDateTime,
) -> Result<Invitation, StoreError> {
    let env = tx.environment_id().as_uuid();
    let keys = vault.platform_keys(tx.conn()).await?;
    let row: SealedInvitation = sqlx::query_as(concat!(
        "UPDATE invitations SET revoked_at = COALESCE(revoked_at, $3)
          WHERE environment_id = $1 AND invitation_id = $2 RETURNING ",
        columns!()
    ))
    .bind(env)
    .bind(id.as_uuid())
    .bind(now)
    .fetch_one(tx.conn())
    .await?;
    let keys = vault
        .platform_keys_covering(tx.conn(), keys, [row.email_ciphertext.as_slice()])
        .await?;
    row.open(&keys)
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
/// can audit and commit. The invited email and the account's are compared by blind index.
pub async fn accept(
    mut auth: AuthTx,
    vault: &Vault,
    identity: IdentityId,
    hash: &TokenHash,
    now: OffsetDateTime,
) -> Result<Result<(TenantTx, Invitation), Unusable>, StoreError> {
    #[derive(sqlx::FromRow)]
    struct Row {
        token_hash: Vec<u8>,
        custom_role_id: Option<Uuid>,
        raw_role: String,
        email_index: Vec<u8>,
        #[sqlx(flatten)]
        invitation: SealedInvitation,
    }
    let keys = vault.platform_keys(auth.conn()).await?;
    let identity_index = super::identities::email_index(&mut auth, identity).await?;
    auth.update(|c| {
        c.purpose = crate::context::Purpose::InvitationLookup;
        c.token_hash = Some(*hash);
    })
    .await?;
    let row: Option<Row> = sqlx::query_as(concat!(
        "SELECT token_hash, custom_role_id, role AS raw_role, email_index, ",
        columns!(),
        "
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
    let environment_id = row.invitation.environment_id;
    let email_matches = row.email_index == identity_index;
    let keys = vault
        .platform_keys_covering(
            auth.conn(),
            keys,
            [row.invitation.email_ciphertext.as_slice()],
        )
        .await?;
    let inv = row.invitation.open(&keys)?;
    let problem = if inv.revoked_at.is_some() {
        Some(Unusable::Revoked)
    } else if inv.accepted_at.is_some() {
        Some(Unusable::AlreadyUsed)
    } else if inv.expires_at <= now {
        Some(Unusable::Expired)
    } else if !email_matches {
        Some(Unusable::OtherEmail)
    } else {
        None
    };
    if let Some(p) = problem {
        return Ok(Err(p));
    }
    let environment = EnvironmentId::from_uuid(environment_id);
    let (role, _) = decode_role(&row.raw_role, row.custom_role_id, Some(&[]))?;
    let caller = Caller {
        environment_id: environment,
        actor: Actor::Identity(identity),
        role,
        permissions: portcullis_core::PermissionSet::EMPTY,
    };
    let mut tx = auth
        .into_tenant_accepting(caller, inv.invitation_id)
        .await?;
    let already: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM memberships WHERE environment_id = $1 AND identity_id = $2)",
    )
    .bind(environment_id)
    .bind(identity.as_uuid())
    .fetch_one(tx.conn())
    .await?;
    if already {
        return Ok(Err(Unusable::AlreadyMember));
    }
    super::members::add(&mut tx, identity, role, now).await?;
    let invitation: SealedInvitation = sqlx::query_as(concat!(
        "UPDATE invitations SET accepted_at = $3, accepted_by = $4
          WHERE environment_id = $1 AND invitation_id = $2 AND accepted_at IS NULL RETURNING ",
        columns!()
    ))
    .bind(environment_id)
    .bind(inv.invitation_id)
    .bind(now)
    .bind(identity.as_uuid())
    .fetch_one(tx.conn())
    .await?;
    Ok(Ok((tx, invitation.open(&keys)?)))
}
