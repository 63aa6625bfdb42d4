//! Invitations: inviting an email with a role, listing and revoking invitations, and accepting
//! one. The token is returned once and stored only as a hash (E3).

use portcullis_core::{validate, EnvironmentId, InvitationId, Permission};
use portcullis_crypto::token::{self, TokenKind};
use portcullis_crypto::{Secret, TokenHash};
use portcullis_store::queries::invitations::{self, Invitation, Unusable};
use portcullis_store::queries::members;
use portcullis_store::queries::{Page, Paged};
use portcullis_store::AuditEvent;
use time::OffsetDateTime;

use crate::roles::assignable_role;
use crate::{Principal, ServiceError, ServiceResult, Services};

#[derive(Debug)]
pub struct NewInvitation {
    pub email: String,
    /// A built-in role name or `custom:<role id>`.
    pub role: String,
}

/// The invitation and its token, which exists only here.
#[derive(Debug)]
pub struct InvitationIssued {
    pub invitation: Invitation,
    pub token: Secret,
}

/// The environment an accepted invitation joined, and the role it gave.
#[derive(Debug)]
pub struct Joined {
    pub environment: EnvironmentId,
    pub role: String,
}

pub async fn list_invitations(
    services: &Services,
    caller: &Principal,
    env: EnvironmentId,
    page: Page,
) -> ServiceResult<Paged<Invitation>> {
    let mut tx = caller.enter(services, env).await?;
    tx.require(Permission::MembersManage)?;
    let list = invitations::list(&mut tx, services.vault(), page).await?;
    tx.commit().await?;
    Ok(list)
}

/// Invites an email with a role the caller may hand out, for `auth.invitation_ttl_hours`.
pub async fn create_invitation(
    services: &Services,
    caller: &Principal,
    env: EnvironmentId,
    input: NewInvitation,
) -> ServiceResult<InvitationIssued> {
    let mut tx = caller.enter(services, env).await?;
    tx.require(Permission::MembersManage)?;
    let email = validate::email(&input.email)?;
    let role = assignable_role(&mut tx, &input.role).await?;
    if members::is_member_email(&mut tx, services.vault(), &email).await? {
        return Err(ServiceError::Conflict(
            "this email already belongs to a member".into(),
        ));
    }
    let now = OffsetDateTime::now_utc();
    let expires =
        now + time::Duration::hours(i64::from(services.auth_config().invitation_ttl_hours));
    let (token, hash) = token::generate(TokenKind::Invitation);
    let invited_by = tx.caller().actor.id().unwrap_or_default();
    let invitation = invitations::create(
        &mut tx,
        services.vault(),
        InvitationId::new(),
        &email,
        role,
        &hash,
        invited_by,
        now,
        expires,
    )
    .await?;
    tx.audit(
        AuditEvent::success("invitation.created", "invitation", invitation.invitation_id).after(
            serde_json::json!({ "role": invitation.role, "expires_at": invitation.expires_at.unix_timestamp() }),
        ),
    )
    .await?;
    tx.commit().await?;
    Ok(InvitationIssued { invitation, token })
}

pub async fn revoke_invitation(
    services: &Services,
    caller: &Principal,
    env: EnvironmentId,
    id: InvitationId,
) -> ServiceResult<Invitation> {
    let mut tx = caller.enter(services, env).await?;
    tx.require(Permission::MembersManage)?;
    let inv = invitations::revoke(&mut tx, services.vault(), id, OffsetDateTime::now_utc()).await?;
    tx.audit(AuditEvent::success("invitation.revoked", "invitation", id))
        .await?;
    tx.commit().await?;
    Ok(inv)
}

fn unusable(why: Unusable) -> ServiceError {
    match why {
        Unusable::Expired => {
            ServiceError::Gone("this invitation has expired; ask for a new one".into())
        }
        Unusable::AlreadyUsed => ServiceError::Gone("this invitation has already been used".into()),
        Unusable::Revoked => ServiceError::Gone("this invitation was revoked".into()),
        Unusable::OtherEmail => ServiceError::ForbiddenReason(
            "this invitation was sent to a different email address".into(),
        ),
        Unusable::AlreadyMember => {
            ServiceError::Conflict("you are already a member of this environment".into())
        }
    }
}

/// Joins an environment with an invitation token. The signed-in account's email must be the
/// invited one; anything that is not an invitation token is `NotFound`.
pub async fn accept_invitation(
    services: &Services,
    caller: &Principal,
    token: &Secret,
) -> ServiceResult<Joined> {
    let id = caller.identity(services).await?;
    if TokenKind::of(token.expose()) != Some(TokenKind::Invitation) {
        return Err(ServiceError::NotFound);
    }
    let mut tx = services.store().auth(caller.meta.clone()).await?;
    tx.act_as(id).await?;
    let hash = TokenHash::of(token.expose());
    let (mut ttx, invitation) =
        invitations::accept(tx, services.vault(), id, &hash, OffsetDateTime::now_utc())
            .await?
            .map_err(unusable)?;
    let environment = ttx.environment_id();
    ttx.audit(
        AuditEvent::success(
            "invitation.accepted",
            "invitation",
            invitation.invitation_id,
        )
        .after(serde_json::json!({ "identity_id": id, "role": invitation.role })),
    )
    .await?;
    ttx.audit(
        AuditEvent::success("member.added", "identity", id)
            .after(serde_json::json!({ "role": invitation.role, "via": "invitation" })),
    )
    .await?;
    ttx.commit().await?;
    Ok(Joined {
        environment,
        role: invitation.role,
    })
}
