//! Accounts: first-run setup, sign-up, login, the signed-in identity and password changes.
//! Everything here happens before, or outside, a tenant context (the platform audit scope).

use portcullis_core::{validate, EnvironmentId, IdentityId};
use portcullis_crypto::token::TokenKind;
use portcullis_crypto::{Secret, TokenHash};
use portcullis_store::queries::environments::{self, Environment, MyEnvironment};
use portcullis_store::queries::identities::{self, Identity};
use portcullis_store::queries::{installation, sessions};
use portcullis_store::{Actor, AuditEvent, AuthTx, Outcome, RequestMeta};
use time::OffsetDateTime;

use crate::sessions::{issue_session, SessionIssued};
use crate::{Principal, ServiceError, ServiceResult, Services};

/// A new account's details.
#[derive(Debug)]
pub struct NewAccount {
    pub email: String,
    pub password: Secret,
    pub display_name: Option<String>,
}

/// First-run setup: the one-time token, the first owner and their environment.
#[derive(Debug)]
pub struct Setup {
    pub setup_token: Secret,
    pub owner: NewAccount,
    pub environment_name: String,
    pub region: String,
}

#[derive(Debug)]
pub struct SetupDone {
    pub session: SessionIssued,
    pub environment: Environment,
}

#[derive(Debug)]
pub struct Credentials {
    pub email: String,
    pub password: Secret,
}

#[derive(Debug)]
pub struct PasswordChange {
    pub current_password: Secret,
    pub new_password: Secret,
}

/// The signed-in identity and the environments it belongs to.
#[derive(Debug)]
pub struct Me {
    pub identity: Identity,
    pub environments: Vec<MyEnvironment>,
}

fn display_name(given: Option<&str>, email: &str) -> ServiceResult<String> {
    match given {
        Some(n) => Ok(validate::name("display_name", n, 200)?),
        None => Ok(email.split('@').next().unwrap_or(email).to_owned()),
    }
}

/// Argon2 is deliberately slow: keep it off the async workers.
async fn hash_password(services: &Services, password: Secret) -> ServiceResult<String> {
    let hasher = services.hasher().clone();
    tokio::task::spawn_blocking(move || hasher.hash(password.expose()))
        .await
        .map_err(|e| ServiceError::Internal(e.to_string()))?
        .map_err(|e| ServiceError::Internal(e.to_string()))
}

/// Verifies against `stored`, or against a dummy hash when there is none, so that an unknown
/// account costs the same time as a wrong password.
async fn verify_password(
    services: &Services,
    password: Secret,
    stored: Option<String>,
) -> ServiceResult<bool> {
    let hasher = services.hasher().clone();
    tokio::task::spawn_blocking(move || match stored {
        Some(h) => hasher.verify(password.expose(), &h),
        None => hasher.verify_dummy(password.expose()),
    })
    .await
    .map_err(|e| ServiceError::Internal(e.to_string()))
}

/// A new account's details, checked, with the password hashed.
struct CheckedAccount {
    id: IdentityId,
    email: String,
    display_name: String,
    password_hash: String,
}

async fn check_account(services: &Services, account: NewAccount) -> ServiceResult<CheckedAccount> {
    let email = validate::email(&account.email)?;
    validate::password(account.password.expose())?;
    let display_name = display_name(account.display_name.as_deref(), &email)?;
    let password_hash = hash_password(services, account.password).await?;
    Ok(CheckedAccount {
        id: IdentityId::new(),
        email,
        display_name,
        password_hash,
    })
}

async fn create_identity(
    services: &Services,
    tx: &mut AuthTx,
    account: NewAccount,
) -> ServiceResult<Identity> {
    let a = check_account(services, account).await?;
    let identity = identities::create(
        tx,
        services.vault(),
        a.id,
        &a.email,
        &a.display_name,
        &a.password_hash,
        OffsetDateTime::now_utc(),
    )
    .await?;
    tx.audit(
        Actor::Identity(a.id),
        AuditEvent::success("identity.signed_up", "identity", a.id),
    )
    .await?;
    Ok(identity)
}

/// Creates the first owner with the one-time setup token, signs them in and creates their
/// first environment.
pub async fn setup(
    services: &Services,
    meta: RequestMeta,
    input: Setup,
) -> ServiceResult<SetupDone> {
    let name = validate::name("environment_name", &input.environment_name, 200)?;
    let region = services.regions().check(&input.region)?;
    let mut tx = services.store().auth(meta.clone()).await?;
    let hash = TokenHash::of(input.setup_token.expose());
    if TokenKind::of(input.setup_token.expose()) != Some(TokenKind::Setup)
        || !installation::complete_setup(&mut tx, &hash, OffsetDateTime::now_utc()).await?
    {
        return Err(ServiceError::InvalidSetupToken);
    }
    let identity = create_identity(services, &mut tx, input.owner).await?;
    let id = IdentityId::from_uuid(identity.identity_id);
    tx.audit(
        Actor::Identity(id),
        AuditEvent::success("setup.completed", "identity", id),
    )
    .await?;
    let session = issue_session(services, &mut tx, identity).await?;
    tx.commit().await?;

    let env_id = EnvironmentId::new();
    let mut etx = services.store().new_environment(env_id, id, meta).await?;
    let environment =
        environments::create(&mut etx, &name, &region, id, OffsetDateTime::now_utc()).await?;
    etx.audit(
        AuditEvent::success("environment.created", "environment", env_id).after(&environment),
    )
    .await?;
    etx.commit().await?;
    Ok(SetupDone {
        session,
        environment,
    })
}

/// Creates an account when open sign-up is enabled and the email has none yet. The answer is
/// the same either way (until email verification exists, sign-up must not tell who has an
/// account): no session is issued, the new account signs in with [`login`], and an email that
/// already has an account keeps it unchanged. Both paths hash the password, so they take the
/// same time. The attempt on an existing account is audited as `identity.signup_existing`.
pub async fn signup(
    services: &Services,
    meta: RequestMeta,
    input: NewAccount,
) -> ServiceResult<()> {
    if !services.auth_config().open_signup {
        return Err(ServiceError::ForbiddenReason(
            "sign-up is disabled; ask an administrator for an invitation".into(),
        ));
    }
    let a = check_account(services, input).await?;
    let mut tx = services.store().auth(meta.clone()).await?;
    let created = identities::create_if_new(
        &mut tx,
        services.vault(),
        a.id,
        &a.email,
        &a.display_name,
        &a.password_hash,
        OffsetDateTime::now_utc(),
    )
    .await?;
    if created.is_some() {
        tx.audit(
            Actor::Identity(a.id),
            AuditEvent::success("identity.signed_up", "identity", a.id),
        )
        .await?;
        tx.commit().await?;
        return Ok(());
    }
    // Nothing was written under the sign-up context; the refusal is recorded anonymously, as
    // a login with an unknown account is.
    tx.commit().await?;
    let mut tx = services.store().auth(meta).await?;
    tx.audit(
        Actor::Anonymous,
        AuditEvent {
            action: "identity.signup_existing",
            target_type: "identity",
            target_id: None,
            outcome: Outcome::Failure,
            before: None,
            after: None,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// The lockout after `threshold` consecutive failures: doubling from one second, at most 15
/// minutes.
fn backoff(failures: i32, threshold: u32) -> Option<time::Duration> {
    let over = i64::from(failures) - i64::from(threshold);
    (over >= 0).then(|| time::Duration::seconds((1i64 << over.min(10)).min(900)))
}

/// Signs in. Wrong email and wrong password are indistinguishable, in the error and in timing;
/// every failure is audited and counts towards the account's lockout.
pub async fn login(
    services: &Services,
    meta: RequestMeta,
    input: Credentials,
) -> ServiceResult<SessionIssued> {
    let now = OffsetDateTime::now_utc();
    let email = validate::email(&input.email).ok();
    let record = match &email {
        Some(e) => {
            let mut tx = services.store().auth(meta.clone()).await?;
            let r = identities::login_record(&mut tx, services.vault(), e).await?;
            tx.commit().await?;
            r
        }
        None => None,
    };
    let locked = record
        .as_ref()
        .is_some_and(|r| r.locked_until.is_some_and(|t| t > now));
    let stored = record
        .as_ref()
        .filter(|_| !locked)
        .map(|r| r.password_hash.clone());
    let ok = verify_password(services, input.password, stored).await?;

    let mut tx = services.store().auth(meta).await?;
    let record = match record {
        Some(r) if ok => r,
        record => {
            if let (Some(r), Some(e)) = (&record, &email) {
                let id = IdentityId::from_uuid(r.identity_id);
                tx.act_as(id).await?;
                let _ = identities::login_record(&mut tx, services.vault(), e).await?;
                let failures = if locked {
                    r.failed_logins
                } else {
                    r.failed_logins + 1
                };
                let until = if locked {
                    r.locked_until
                } else {
                    backoff(failures, services.auth_config().lockout_threshold).map(|d| now + d)
                };
                identities::record_login_failure(&mut tx, id, failures, until).await?;
                tx.audit(
                    Actor::Identity(id),
                    AuditEvent::success("auth.login_failed", "identity", r.identity_id)
                        .outcome(Outcome::Failure)
                        .after(serde_json::json!({ "locked": locked, "consecutive_failures": failures })),
                )
                .await?;
            } else {
                tx.audit(
                    Actor::Anonymous,
                    AuditEvent {
                        action: "auth.login_failed",
                        target_type: "identity",
                        target_id: None,
                        outcome: Outcome::Failure,
                        before: None,
                        after: Some(serde_json::json!({ "reason": "unknown_account" })),
                    },
                )
                .await?;
            }
            tx.commit().await?;
            return Err(ServiceError::InvalidCredentials);
        }
    };
    let id = IdentityId::from_uuid(record.identity_id);
    tx.act_as(id).await?;
    identities::record_login_success(&mut tx, id).await?;
    let identity = identities::get(&mut tx, services.vault(), id).await?;
    let session = issue_session(services, &mut tx, identity).await?;
    tx.audit(
        Actor::Identity(id),
        AuditEvent::success("auth.login", "identity", id),
    )
    .await?;
    tx.commit().await?;
    Ok(session)
}

/// The signed-in identity and the environments it belongs to.
pub async fn me(services: &Services, caller: &Principal) -> ServiceResult<Me> {
    let id = caller.identity(services).await?;
    let mut tx = services.store().auth(caller.meta.clone()).await?;
    tx.act_as(id).await?;
    let identity = identities::get(&mut tx, services.vault(), id).await?;
    let environments = environments::list_for_identity(&mut tx, id).await?;
    tx.commit().await?;
    Ok(Me {
        identity,
        environments,
    })
}

/// Changes the password after checking the current one. Every session is revoked; a new one is
/// returned.
pub async fn change_password(
    services: &Services,
    caller: &Principal,
    input: PasswordChange,
) -> ServiceResult<SessionIssued> {
    let id = caller.identity(services).await?;
    validate::password(input.new_password.expose())?;
    let mut tx = services.store().auth(caller.meta.clone()).await?;
    tx.act_as(id).await?;
    let stored = identities::password_hash(&mut tx, id).await?;
    tx.commit().await?;
    if !verify_password(services, input.current_password, Some(stored)).await? {
        return Err(ServiceError::InvalidCredentials);
    }
    let hash = hash_password(services, input.new_password).await?;
    let now = OffsetDateTime::now_utc();
    let mut tx = services.store().auth(caller.meta.clone()).await?;
    tx.act_as(id).await?;
    identities::set_password(&mut tx, id, &hash, now).await?;
    let revoked = sessions::revoke_all(&mut tx, id, now).await?;
    let identity = identities::get(&mut tx, services.vault(), id).await?;
    let session = issue_session(services, &mut tx, identity).await?;
    tx.audit(
        Actor::Identity(id),
        AuditEvent::success("auth.password_changed", "identity", id)
            .after(serde_json::json!({ "sessions_revoked": revoked })),
    )
    .await?;
    tx.commit().await?;
    Ok(session)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_starts_at_the_threshold_and_is_capped() {
        assert_eq!(backoff(4, 5), None);
        assert_eq!(backoff(5, 5), Some(time::Duration::seconds(1)));
        assert_eq!(backoff(7, 5), Some(time::Duration::seconds(4)));
        assert_eq!(backoff(40, 5), Some(time::Duration::seconds(900)));
    }

    #[test]
    fn display_name_defaults_to_the_local_part() {
        assert_eq!(display_name(None, "ada@example.com").unwrap(), "ada");
    }
}
