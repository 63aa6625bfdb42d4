//! The signed database context (controls T2, R8, L2). Every transaction tells the database who
//! is acting through one value the application signs with the context key, which the runtime
//! role cannot read; `portcullis_guard.enter` checks it and binds it to the transaction, and
//! the accessors the policies call read only a verified, bound context. SQL run as the runtime
//! role can therefore neither invent a context nor carry one into another transaction: the
//! most it can do is what the application could do for the request it rides on.
//!
//! The payload layout is documented in migration `20261202000007_signed_context.sql`.

use std::sync::Arc;

use portcullis_core::{
    ApiTokenId, EnvironmentId, IdentityId, OperatorTokenId, PermissionSet, ProjectId,
};
use portcullis_crypto::context::ContextKey;
use portcullis_crypto::TokenHash;
use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::StoreError;

/// Who is acting. Recorded on every audit entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Actor {
    Identity(IdentityId),
    ApiToken {
        token_id: ApiTokenId,
        created_by: IdentityId,
    },
    System,
    Anonymous,
    /// The operator, by one of its operator tokens (no person: nothing of it is sealed).
    OperatorToken(OperatorTokenId),
}

impl Actor {
    pub fn kind(&self) -> &'static str {
        match self {
            Actor::Identity(_) => "identity",
            Actor::ApiToken { .. } => "api_token",
            Actor::System => "system",
            Actor::Anonymous => "anonymous",
            Actor::OperatorToken(_) => "operator_token",
        }
    }

    pub fn id(&self) -> Option<Uuid> {
        match self {
            Actor::Identity(id) => Some(id.as_uuid()),
            Actor::ApiToken { token_id, .. } => Some(token_id.as_uuid()),
            Actor::OperatorToken(id) => Some(id.as_uuid()),
            Actor::System | Actor::Anonymous => None,
        }
    }

    pub fn identity(&self) -> Option<IdentityId> {
        match self {
            Actor::Identity(id) => Some(*id),
            _ => None,
        }
    }
}

/// How long a signed context may wait between signing and `enter` (clock skew between the
/// node and the database included). Once entered it lasts as long as its transaction.
const VALIDITY_SECS: i64 = 120;

/// What a transaction is for. Only some purposes let the database create rows that grant
/// access (sessions, identities, environments, memberships), each for exactly the subject
/// the application just verified.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Purpose {
    /// No caller yet: public reads only (setup state, audit signing keys).
    #[default]
    None,
    /// A verified member or API token inside one environment.
    Request,
    /// Background work or an operator command, as `System`.
    System,
    /// Creating one environment, by the identity that becomes its owner.
    EnvironmentCreate,
    /// A signed-in identity outside any environment.
    Account,
    /// Finding an account by its email's blind index (login, failures, lockout).
    Login,
    /// Creating exactly one identity.
    Signup,
    /// Setting or spending the one-time setup token.
    Setup,
    /// Issuing a session to an identity whose password was just verified.
    SessionCreate,
    /// Finding a session by the presented token's hash.
    SessionLookup,
    /// Finding an API token by the presented token's hash.
    TokenLookup,
    /// Finding an invitation by the presented token's hash.
    InvitationLookup,
    /// Accepting one invitation: the membership it grants, for the identity accepting it.
    InvitationAccept,
    /// The operator reading the platform scope with an operator token whose hash the context
    /// carries; the database checks that token is live on every read (migration 0016).
    OperatorRead,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::None => "none",
            Purpose::Request => "request",
            Purpose::System => "system",
            Purpose::EnvironmentCreate => "environment_create",
            Purpose::Account => "account",
            Purpose::Login => "login",
            Purpose::Signup => "signup",
            Purpose::Setup => "setup",
            Purpose::SessionCreate => "session_create",
            Purpose::SessionLookup => "session_lookup",
            Purpose::TokenLookup => "token_lookup",
            Purpose::InvitationLookup => "invitation_lookup",
            Purpose::InvitationAccept => "invitation_accept",
            Purpose::OperatorRead => "operator_read",
        }
    }
}

/// The fields of one context. Only the application builds these; the database trusts them
/// because they arrive signed.
#[derive(Clone, Debug, Default)]
pub struct Context {
    pub purpose: Purpose,
    pub environment: Option<EnvironmentId>,
    /// The identity acting (never set for API tokens or system work).
    pub identity: Option<IdentityId>,
    pub actor: Option<Actor>,
    pub permissions: PermissionSet,
    pub project: Option<ProjectId>,
    pub token_hash: Option<TokenHash>,
    pub login_email_index: Option<[u8; 32]>,
    pub invitation: Option<Uuid>,
}

impl Context {
    /// The context of `actor` inside `environment` with `permissions`.
    pub fn acting(
        purpose: Purpose,
        environment: Option<EnvironmentId>,
        actor: Actor,
        permissions: PermissionSet,
    ) -> Context {
        Context {
            purpose,
            environment,
            identity: actor.identity(),
            actor: Some(actor),
            permissions,
            ..Context::default()
        }
    }

    /// The person whose personal data this transaction's request metadata is.
    fn subject(&self) -> Option<Uuid> {
        match self.actor? {
            Actor::Identity(id) => Some(id.as_uuid()),
            Actor::ApiToken { created_by, .. } => Some(created_by.as_uuid()),
            Actor::System | Actor::Anonymous | Actor::OperatorToken(_) => None,
        }
    }

    /// The signed text: fields joined by `|`, none of which can contain one.
    fn payload(&self, expires: i64) -> String {
        fn id(v: Option<impl ToString>) -> String {
            v.map(|v| v.to_string()).unwrap_or_default()
        }
        let actor = self.actor.unwrap_or(Actor::Anonymous);
        [
            "v1".to_owned(),
            self.purpose.as_str().to_owned(),
            id(self.environment),
            id(self.identity),
            actor.kind().to_owned(),
            id(actor.id()),
            id(self.subject()),
            self.permissions.to_setting(),
            id(self.project),
            self.token_hash.map(|h| h.to_hex()).unwrap_or_default(),
            self.login_email_index
                .map(|i| portcullis_audit::hex::encode(&i))
                .unwrap_or_default(),
            String::new(),
            id(self.invitation),
            expires.to_string(),
        ]
        .join("|")
    }
}

/// Signs contexts. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ContextSigner {
    key: Arc<ContextKey>,
}

impl ContextSigner {
    pub fn new(key: ContextKey) -> ContextSigner {
        ContextSigner { key: Arc::new(key) }
    }

    fn sign(&self, context: &Context) -> (String, [u8; 32]) {
        let expires = OffsetDateTime::now_utc().unix_timestamp() + VALIDITY_SECS;
        let payload = context.payload(expires);
        let signature = self.key.mac(format!("ctx|{payload}").as_bytes());
        (payload, signature)
    }

    /// Makes `context` this transaction's context (one round trip). The database refuses a
    /// context it cannot verify; that is logged, because the application never sends one.
    pub(crate) async fn enter(
        &self,
        conn: &mut PgConnection,
        context: &Context,
    ) -> Result<(), StoreError> {
        let (payload, signature) = self.sign(context);
        sqlx::query("SELECT portcullis_guard.enter($1, $2)")
            .bind(payload)
            .bind(signature.as_slice())
            .execute(conn)
            .await
            .map_err(|e| refused(e, context))?;
        Ok(())
    }

    /// Begins a transaction on `pool` already inside `context`: `BEGIN` and entering in one
    /// round trip ([`ContextSigner::begin_statement`]), or in two with bind parameters when the
    /// payload cannot be a literal.
    pub(crate) async fn begin(
        &self,
        pool: &sqlx::PgPool,
        context: &Context,
    ) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, StoreError> {
        let Some(statement) = self.begin_statement(context) else {
            let mut tx = pool.begin().await?;
            self.enter(&mut tx, context).await?;
            return Ok(tx);
        };
        pool.begin_with(statement)
            .await
            .map_err(|e| refused(e, context))
    }
}

/// The characters a payload is made of: ids, hex, digits, permission and purpose names and
/// the separators. Nothing that could end a SQL string literal.
fn payload_is_literal_safe(payload: &str) -> bool {
    payload
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'|' | b'-' | b'_' | b'.' | b',' | b':'))
}

/// A context the database refused: logged, because the application never sends one.
fn refused(e: sqlx::Error, context: &Context) -> StoreError {
    tracing::error!(error = %e, purpose = context.purpose.as_str(),
        "the database refused a signed context: is the context key the one this database holds?");
    StoreError::from(e)
}

impl ContextSigner {
    /// The statement that opens a transaction already inside `context`: `BEGIN` and the
    /// `enter` call in one simple query, so entering costs no round trip of its own. The
    /// simple-query protocol has no bind parameters, so the signed payload and signature are
    /// written as literals; a payload holds only [`payload_is_literal_safe`] characters (ids,
    /// hex, names), which is checked here, and the signature is hex. `None` if the payload
    /// has any other character: the caller then begins and enters in two steps, with bind
    /// parameters.
    fn begin_statement(&self, context: &Context) -> Option<String> {
        let (payload, signature) = self.sign(context);
        if !payload_is_literal_safe(&payload) {
            return None;
        }
        let mut sql = String::with_capacity(payload.len() + 150);
        sql.push_str("BEGIN; SELECT portcullis_guard.enter('");
        sql.push_str(&payload);
        sql.push_str("', decode('");
        sql.push_str(&portcullis_audit::hex::encode(&signature));
        sql.push_str("', 'hex'))");
        Some(sql)
    }
}

/// Installs the context key if the database has none and returns the one it holds. Runs as the
/// schema owner (the only role that can read the key), at start, before serving.
pub async fn load_or_install(owner: &mut PgConnection) -> Result<ContextKey, StoreError> {
    let fresh = ContextKey::generate();
    let (inner, outer) = fresh.pads();
    sqlx::query(
        "INSERT INTO portcullis_guard.context_key (key_id, secret, inner_pad, outer_pad, created_at)
         VALUES (1, $1, $2, $3, now()) ON CONFLICT (key_id) DO NOTHING",
    )
    .bind(fresh.expose().as_slice())
    .bind(inner.as_slice())
    .bind(outer.as_slice())
    .execute(&mut *owner)
    .await?;
    let secret: zeroize::Zeroizing<Vec<u8>> = zeroize::Zeroizing::new(
        sqlx::query_scalar("SELECT secret FROM portcullis_guard.context_key WHERE key_id = 1")
            .fetch_one(&mut *owner)
            .await?,
    );
    ContextKey::from_bytes(&secret)
        .ok_or_else(|| StoreError::Bootstrap("the stored context key is not 32 bytes".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t2_begin_statement_carries_only_literal_safe_text() {
        let signer = ContextSigner::new(ContextKey::generate());
        let ctx = Context {
            purpose: Purpose::Request,
            environment: Some(EnvironmentId::new()),
            permissions: PermissionSet::all(),
            project: Some(ProjectId::new()),
            token_hash: Some(TokenHash::of("x")),
            login_email_index: Some([7; 32]),
            ..Context::default()
        };
        let sql = signer
            .begin_statement(&ctx)
            .expect("a payload of ids and names");
        assert!(sql.starts_with("BEGIN; SELECT portcullis_guard.enter('v1|request|"));
        // Exactly the four quotes of the two literals: nothing in the payload can close one.
        assert_eq!(sql.matches('\'').count(), 6, "{sql}");
        assert!(!payload_is_literal_safe("v1|x'; DROP TABLE documents; --"));
        assert!(!payload_is_literal_safe("v1|\\"));
    }

    #[test]
    fn t2_payload_has_fourteen_fields_and_no_stray_separator() {
        let ctx = Context {
            purpose: Purpose::Request,
            environment: Some(EnvironmentId::new()),
            identity: Some(IdentityId::new()),
            actor: None,
            permissions: PermissionSet::all(),
            project: Some(ProjectId::new()),
            token_hash: Some(TokenHash::of("x")),
            login_email_index: Some([7; 32]),
            invitation: Some(Uuid::now_v7()),
        };
        let p = ctx.payload(1_900_000_000);
        assert_eq!(p.split('|').count(), 14, "{p}");
        assert!(p.starts_with("v1|request|"));
        assert!(p.ends_with("|1900000000"));
    }
}
