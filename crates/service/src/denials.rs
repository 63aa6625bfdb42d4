//! Refused requests in the audit trail (issue 12, item 4; control L7): a request of an
//! authenticated caller that the application refuses (403: a missing permission, a role it may
//! not assign, the owner seat, an invitation sent to someone else, the wrong credential for the
//! route, ...) is recorded as `authorization.denied` with outcome `denied`, as the caller, in a
//! transaction of its own (the refused one rolled back): on an environment's route in that
//! environment's log, on an account route in the platform scope (see [`record_denial`]).
//!
//! A flood of refusals must not fill the log: each (scope, caller) may record [`PER_WINDOW`]
//! refusals per [`WINDOW`]; the ones beyond are counted, and the next entry that is recorded
//! says how many were left out before it (`after.suppressed_before`). A caller who is not a
//! member of the environment gets 404 (the environment's existence is not revealed) and
//! nothing is written into a log they have no part in.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use portcullis_core::EnvironmentId;
use portcullis_store::{Actor, AuditEvent, Outcome, PLATFORM_SCOPE};
use uuid::Uuid;

use crate::caller::{Credential, Principal};
use crate::{ServiceResult, Services};

/// Refusals recorded per environment and caller per window.
pub const PER_WINDOW: u32 = 10;
/// The rate limit's window.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Callers tracked at once; beyond, windows that have ended are dropped first, then all.
const TRACKED: usize = 10_000;

/// Per (environment, caller) counts of the current window.
#[derive(Debug, Default)]
pub struct DenialLimiter {
    windows: Mutex<HashMap<(EnvironmentId, String), Window>>,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    recorded: u32,
    /// Refusals not recorded since the last one that was.
    suppressed: u64,
}

/// What the limiter decided for one refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Record it, saying how many refusals were left out before it.
    Record { suppressed_before: u64 },
    /// Count it, do not record it.
    Suppress,
}

impl DenialLimiter {
    pub fn admit(&self, env: EnvironmentId, caller: &str, now: Instant) -> Admit {
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        if windows.len() >= TRACKED {
            windows.retain(|_, w| now.duration_since(w.started) < WINDOW || w.suppressed > 0);
            if windows.len() >= TRACKED {
                windows.clear();
            }
        }
        let w = windows.entry((env, caller.to_owned())).or_insert(Window {
            started: now,
            recorded: 0,
            suppressed: 0,
        });
        if now.duration_since(w.started) >= WINDOW {
            w.started = now;
            w.recorded = 0;
        }
        if w.recorded < PER_WINDOW {
            w.recorded += 1;
            let suppressed_before = std::mem::take(&mut w.suppressed);
            Admit::Record { suppressed_before }
        } else {
            w.suppressed += 1;
            Admit::Suppress
        }
    }
}

/// The caller as the limiter counts them: the identity, or the token's hash.
fn caller_key(caller: &Principal) -> String {
    match &caller.credential {
        Credential::Session { identity, .. } => identity.to_string(),
        Credential::ApiToken(hash) => format!("token:{}", hash.to_hex()),
        Credential::Operator(hash) => format!("operator:{}", hash.to_hex()),
    }
}

/// `/v1/environments/0193…/members/0193…` as `/v1/environments/{id}/members/{id}`: what was
/// asked, without ids that could identify data.
pub fn route_template(path: &str) -> String {
    path.split('/')
        .map(|seg| {
            if Uuid::parse_str(seg).is_ok() {
                "{id}"
            } else {
                seg
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Records that `caller`'s request `method path` was refused with `code`, within the rate
/// limit. Returns whether an entry was written.
///
/// Where: on an environment's route (`environment` given), in that environment's log, as the
/// caller (nothing for a caller who is not a member: they have no part in that log). On an
/// account route (`/v1/me/...`, invitation acceptance, environment creation, the platform
/// routes), in the platform scope as the person; an API token refused there, in its own
/// environment's log, as the token. An operator token, wherever it is refused, in the platform
/// scope as that token. A credential that is not valid (any more) records nothing.
pub async fn record_denial(
    services: &Services,
    caller: &Principal,
    environment: Option<EnvironmentId>,
    method: &str,
    path: &str,
    code: &str,
) -> ServiceResult<bool> {
    let platform = EnvironmentId::from_uuid(PLATFORM_SCOPE);
    let counted_in = match (&caller.credential, environment) {
        (Credential::Operator(_), _) | (_, None) => platform,
        (_, Some(env)) => env,
    };
    let suppressed_before =
        match services
            .denials()
            .admit(counted_in, &caller_key(caller), Instant::now())
        {
            Admit::Record { suppressed_before } => suppressed_before,
            Admit::Suppress => return Ok(false),
        };
    let route = format!("{method} {}", route_template(path));
    let event = AuditEvent::success("authorization.denied", "route", &route)
        .outcome(Outcome::Denied)
        .after(serde_json::json!({
            "code": code,
            "suppressed_before": suppressed_before,
        }));
    let store = services.store();
    let meta = caller.meta.clone();
    match (&caller.credential, environment) {
        (Credential::Operator(hash), _) => {
            let Ok(mut tx) = store.platform_as_operator(hash, meta).await else {
                return Ok(false);
            };
            tx.audit(event).await?;
            tx.commit().await?;
        }
        (Credential::Session { identity, .. }, None) => {
            let mut tx = store.auth(meta).await?;
            tx.act_as(*identity).await?;
            tx.audit(Actor::Identity(*identity), event).await?;
            tx.commit().await?;
        }
        (Credential::ApiToken(hash), None) => {
            let Ok(mut tx) = store.tenant_as_api_token(hash, None, meta).await else {
                return Ok(false);
            };
            tx.audit(event).await?;
            tx.commit().await?;
        }
        (_, Some(env)) => {
            // A non-member (or a token of another environment) has no part in this log.
            let Ok(mut tx) = caller.enter(services, env).await else {
                return Ok(false);
            };
            tx.audit(event).await?;
            tx.commit().await?;
        }
    }
    Ok(true)
}

/// What kind of credential a presented token claims to be, by its readable prefix (never more
/// of the token than that): `session`, `api_token`, `operator`, ... or `unrecognized`.
pub fn credential_kind(token: &str) -> &'static str {
    use portcullis_crypto::TokenKind;
    let Some(kind) = TokenKind::ALL
        .iter()
        .find(|k| token.starts_with(k.prefix()))
    else {
        return "unrecognized";
    };
    match kind {
        TokenKind::Session => "session",
        TokenKind::ApiToken => "api_token",
        TokenKind::Invitation => "invitation",
        TokenKind::Setup => "setup",
        TokenKind::Operator => "operator",
    }
}

/// Records that a request presented a credential that is not valid (unknown, forged, revoked,
/// expired, or of a kind the route does not take) and was answered 401: anonymously, in the
/// platform scope, as `auth.credential_refused` with the route and the kind the credential
/// claimed to be (`credential`: [`credential_kind`]); nothing of the token itself. Rate-limited
/// per client address like [`record_denial`] (a flood of forged tokens records
/// [`PER_WINDOW`] a minute per address, the rest counted). A request with no credential at
/// all records nothing. Returns whether an entry was written.
pub async fn record_refused_credential(
    services: &Services,
    meta: portcullis_store::RequestMeta,
    credential: &str,
    method: &str,
    path: &str,
) -> ServiceResult<bool> {
    let platform = EnvironmentId::from_uuid(PLATFORM_SCOPE);
    let address = format!("address:{}", meta.ip.as_deref().unwrap_or("unknown"));
    let suppressed_before = match services.denials().admit(platform, &address, Instant::now()) {
        Admit::Record { suppressed_before } => suppressed_before,
        Admit::Suppress => return Ok(false),
    };
    let route = format!("{method} {}", route_template(path));
    let event = AuditEvent::success("auth.credential_refused", "route", &route)
        .outcome(Outcome::Failure)
        .after(serde_json::json!({
            "credential": credential,
            "suppressed_before": suppressed_before,
        }));
    let mut tx = services.store().auth(meta).await?;
    tx.audit(Actor::Anonymous, event).await?;
    tx.commit().await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Control L7: a flood of refusals records `PER_WINDOW` per window; the next window's first
    /// entry carries the count left out.
    #[test]
    fn l7_refusals_are_rate_limited_per_caller_and_the_rest_counted() {
        let limiter = DenialLimiter::default();
        let env = EnvironmentId::new();
        let t0 = Instant::now();
        for i in 0..PER_WINDOW {
            assert_eq!(
                limiter.admit(env, "a", t0),
                Admit::Record {
                    suppressed_before: 0
                },
                "{i}"
            );
        }
        for _ in 0..25 {
            assert_eq!(limiter.admit(env, "a", t0), Admit::Suppress);
        }
        // Another caller, another environment: their own windows.
        assert!(matches!(limiter.admit(env, "b", t0), Admit::Record { .. }));
        assert!(matches!(
            limiter.admit(EnvironmentId::new(), "a", t0),
            Admit::Record { .. }
        ));
        assert_eq!(
            limiter.admit(env, "a", t0 + WINDOW),
            Admit::Record {
                suppressed_before: 25
            }
        );
    }

    #[test]
    fn l7_routes_are_recorded_without_ids() {
        assert_eq!(
            route_template(
                "/v1/environments/0193e0a8-7b5c-7cc1-9f0e-1d2c3b4a5968/members/0193e0a8-7b5c-7cc1-9f0e-1d2c3b4a5969"
            ),
            "/v1/environments/{id}/members/{id}"
        );
    }
}
