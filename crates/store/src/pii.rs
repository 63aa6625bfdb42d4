//! Personal data at rest (E2). Identity emails and display names and invitation emails are
//! sealed under the platform PII keyring: versioned data keys that belong to no environment,
//! stored in `platform_keys` wrapped by the default KEK, with the same envelope format and
//! place binding as tenant data (environment nil for identities, the inviting environment for
//! invitations). Accounts are found by a blind index (HMAC-SHA-256 of the normalised email
//! under the platform index key), never by plaintext.
//!
//! The platform keys are created on first use inside the caller's transaction. They are
//! cached only once read back as committed rows, so a key created by a transaction that later
//! rolls back can never seal anything that outlives it.

use std::collections::BTreeMap;

use portcullis_crypto::envelope::{DataKey, Place};
use portcullis_keys::KekRef;
use sqlx::types::Json;
use sqlx::PgPool;
use time::OffsetDateTime;
use uuid::Uuid;

pub use crate::custody::{PlatformKeys, SealedEmail, PLATFORM_KEYRING};
use crate::custody::{EMAIL_INDEX, PII};
use crate::vault::Vault;
use crate::StoreError;

impl PlatformKeys {
    /// Opens an identity's sealed email and display name.
    pub fn open_person(
        &self,
        identity: Uuid,
        email: &[u8],
        display_name: &[u8],
    ) -> Result<(String, String), StoreError> {
        let row = identity.to_string();
        Ok((
            self.open(&identity_place("email", &row), email)?,
            self.open(&identity_place("display_name", &row), display_name)?,
        ))
    }
}

/// Where an identity's personal fields live.
pub fn identity_place<'a>(column: &'static str, row: &'a str) -> Place<'a> {
    Place {
        environment: Uuid::nil(),
        table: "identities",
        column,
        row,
    }
}

/// Where an invitation's email lives.
pub fn invitation_place(environment: Uuid, row: &str) -> Place<'_> {
    Place {
        environment,
        table: "invitations",
        column: "email",
        row,
    }
}

type KeyRow = (String, i32, Vec<u8>, Json<KekRef>);

/// What [`seal_legacy`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LegacySealed {
    pub identities: u64,
    pub invitations: u64,
    pub sessions: u64,
}

/// Seals personal data written before encryption, in batches: identities and invitations
/// holding plaintext as the schema owner, whose policies let it only clear plaintext; the IP and
/// user agent of sessions under their account's platform-scope subject key, each session by its
/// own account. Run at start, before serving; idempotent.
pub async fn seal_legacy(
    owner: &PgPool,
    store: &crate::Store,
    vault: &Vault,
) -> Result<LegacySealed, StoreError> {
    const BATCH: i64 = 500;
    let mut done = LegacySealed::default();
    loop {
        let mut tx = owner.begin().await?;
        let keys = vault.platform_keys(&mut tx).await?;
        let rows: Vec<(Uuid, String, String)> = sqlx::query_as(
            "SELECT identity_id, email, display_name FROM identities WHERE email IS NOT NULL
              ORDER BY identity_id LIMIT $1 FOR UPDATE",
        )
        .bind(BATCH)
        .fetch_all(&mut *tx)
        .await?;
        let mut invitations: Vec<(Uuid, Uuid, String)> = vec![];
        if rows.is_empty() {
            invitations = sqlx::query_as(
                "SELECT environment_id, invitation_id, email FROM invitations WHERE email IS NOT NULL
                  ORDER BY environment_id, invitation_id LIMIT $1 FOR UPDATE",
            )
            .bind(BATCH)
            .fetch_all(&mut *tx)
            .await?;
        }
        if rows.is_empty() && invitations.is_empty() {
            break;
        }
        for (id, email, display_name) in &rows {
            let row = id.to_string();
            let sealed = keys.seal_email(&identity_place("email", &row), email);
            let name = keys.seal(&identity_place("display_name", &row), display_name);
            sqlx::query(
                "UPDATE identities SET email = NULL, display_name = NULL, email_index = $2,
                        email_ciphertext = $3, display_name_ciphertext = $4, pii_key_version = $5
                  WHERE identity_id = $1",
            )
            .bind(id)
            .bind(sealed.index.as_slice())
            .bind(&sealed.ciphertext)
            .bind(&name)
            .bind(sealed.version)
            .execute(&mut *tx)
            .await?;
        }
        for (env, id, email) in &invitations {
            let row = id.to_string();
            let sealed = keys.seal_email(&invitation_place(*env, &row), email);
            sqlx::query(
                "UPDATE invitations SET email = NULL, email_index = $3, email_ciphertext = $4, pii_key_version = $5
                  WHERE environment_id = $1 AND invitation_id = $2",
            )
            .bind(env)
            .bind(id)
            .bind(sealed.index.as_slice())
            .bind(&sealed.ciphertext)
            .bind(sealed.version)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        done.identities += rows.len() as u64;
        done.invitations += invitations.len() as u64;
    }
    let subject_keys = vault.subject_keys();
    loop {
        let legacy: Vec<(Uuid, Uuid, Option<String>, Option<String>)> = sqlx::query_as(
            "SELECT session_id, identity_id, ip, user_agent FROM sessions
              WHERE (ip IS NOT NULL AND ip NOT LIKE 'pcs-sealed:v1:%')
                 OR (user_agent IS NOT NULL AND user_agent NOT LIKE 'pcs-sealed:v1:%')
              ORDER BY session_id LIMIT 500",
        )
        .fetch_all(owner)
        .await?;
        if legacy.is_empty() {
            break;
        }
        let before = done.sessions;
        for (session, identity, ip, user_agent) in legacy {
            let mut tx = store.auth(crate::RequestMeta::default()).await?;
            tx.act_as(portcullis_core::IdentityId::from_uuid(identity))
                .await?;
            let key = subject_keys
                .load_or_create(tx.conn(), crate::PLATFORM_SCOPE, identity)
                .await?;
            let row = session.to_string();
            let seal = |column: &str, value: Option<String>| {
                value.map(|v| {
                    if crate::subjects::parse(&v).is_some() {
                        return v;
                    }
                    let spot = crate::subjects::Spot {
                        scope: crate::PLATFORM_SCOPE,
                        table: "sessions",
                        column,
                        row: &row,
                    };
                    crate::subjects::seal(&key, identity, &spot, &v)
                })
            };
            let updated = sqlx::query(
                "UPDATE sessions SET ip = $2, user_agent = $3 WHERE session_id = $1 AND identity_id = $4",
            )
            .bind(session)
            .bind(seal("ip", ip))
            .bind(seal("user_agent", user_agent))
            .bind(identity)
            .execute(tx.conn())
            .await?;
            tx.commit().await?;
            done.sessions += updated.rows_affected();
        }
        if done.sessions == before {
            return Err(StoreError::Conflict(
                "legacy sessions could not be sealed (changed concurrently?); start again".into(),
            ));
        }
    }
    Ok(done)
}

/// Rewraps every platform key protected by a local master key under `new_kek` (root-key
/// rotation). Returns how many keys were rewrapped.
pub async fn rewrap_platform_keys(
    owner: &PgPool,
    vault: &Vault,
    new_kek: &KekRef,
) -> Result<u64, StoreError> {
    let mut tx = owner.begin().await?;
    let rows: Vec<KeyRow> = sqlx::query_as(
        "SELECT purpose, version, wrapped, kek FROM platform_keys ORDER BY purpose, version FOR UPDATE",
    )
    .fetch_all(&mut *tx)
    .await?;
    let mut done = 0;
    for (purpose, version, wrapped, kek) in rows {
        if !matches!(kek.0, KekRef::Local { .. }) || kek.0 == *new_kek {
            continue;
        }
        let key = vault
            .custody()
            .unwrap_platform(&kek.0, &wrapped, &purpose, version)
            .await?;
        let rewrapped = vault
            .custody()
            .wrap_platform(new_kek, &key, &purpose, version)
            .await?;
        sqlx::query(
            "UPDATE platform_keys SET wrapped = $3, kek = $4 WHERE purpose = $1 AND version = $2",
        )
        .bind(&purpose)
        .bind(version)
        .bind(&rewrapped)
        .bind(Json(new_kek))
        .execute(&mut *tx)
        .await?;
        done += 1;
    }
    tx.commit().await?;
    vault.forget_platform();
    Ok(done)
}

/// What [`rotate`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct PiiRotation {
    /// The new active PII key version.
    pub version: i32,
    pub identities: u64,
    pub invitations: u64,
    pub subject_keys: u64,
}

/// Rotates the platform PII key: a new version becomes active for new writes, then every
/// account, invitation and subject key sealed under an older version is re-sealed under it.
/// Older versions are kept (a node whose cache still holds them may seal with them until its
/// TTL ends; running this again picks such rows up). Each account is re-sealed in its own
/// transaction as that account (the policies allow nothing wider); invitations in their
/// environment; subject keys by the operator, whose policy lets it replace only their sealed
/// form. Resumable: a rerun continues where a crash stopped.
pub async fn rotate(
    owner: &PgPool,
    store: &crate::Store,
    vault: &Vault,
    mut progress: impl FnMut(&PiiRotation),
) -> Result<PiiRotation, StoreError> {
    // 1. The new version.
    let mut tx = owner.begin().await?;
    sqlx::query("LOCK TABLE platform_keys IN SHARE ROW EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await?;
    let current: Option<i32> =
        sqlx::query_scalar("SELECT max(version) FROM platform_keys WHERE purpose = 'pii'")
            .fetch_one(&mut *tx)
            .await?;
    let version = current.unwrap_or(0) + 1;
    let kek = vault.default_kek().clone();
    let key = DataKey::generate();
    let wrapped = vault
        .custody()
        .wrap_platform(&kek, &key, PII, version)
        .await?;
    sqlx::query(
        "INSERT INTO platform_keys (purpose, version, wrapped, kek, created_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(PII)
    .bind(version)
    .bind(&wrapped)
    .bind(Json(&kek))
    .bind(OffsetDateTime::now_utc())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    vault.forget_platform();
    let mut done = PiiRotation {
        version,
        ..Default::default()
    };
    progress(&done);

    // 2. Accounts, each as itself.
    loop {
        let ids: Vec<Uuid> = sqlx::query_scalar(
            "SELECT identity_id FROM identities WHERE pii_key_version < $1 ORDER BY identity_id LIMIT 500",
        )
        .bind(version)
        .fetch_all(owner)
        .await?;
        if ids.is_empty() {
            break;
        }
        let before = done.identities;
        for id in ids {
            let mut tx = store.auth(crate::RequestMeta::default()).await?;
            let identity = portcullis_core::IdentityId::from_uuid(id);
            tx.act_as(identity).await?;
            let keys = vault.platform_keys(tx.conn()).await?;
            let row: Option<(Vec<u8>, Vec<u8>, i32)> = sqlx::query_as(
                "SELECT email_ciphertext, display_name_ciphertext, pii_key_version FROM identities
                  WHERE identity_id = $1 FOR UPDATE",
            )
            .bind(id)
            .fetch_optional(tx.conn())
            .await?;
            if let Some((email_ct, name_ct, old)) = row.filter(|r| r.2 < keys.active_version()) {
                let (email, name) = keys.open_person(id, &email_ct, &name_ct)?;
                let row_s = id.to_string();
                sqlx::query(
                    "UPDATE identities SET email_ciphertext = $2, display_name_ciphertext = $3, pii_key_version = $4
                      WHERE identity_id = $1 AND pii_key_version = $5",
                )
                .bind(id)
                .bind(keys.seal(&identity_place("email", &row_s), &email))
                .bind(keys.seal(&identity_place("display_name", &row_s), &name))
                .bind(keys.active_version())
                .bind(old)
                .execute(tx.conn())
                .await?;
                done.identities += 1;
            }
            tx.commit().await?;
        }
        if done.identities == before {
            return Err(StoreError::Conflict(
                "accounts keep changing under the PII key rotation; run it again".into(),
            ));
        }
        progress(&done);
    }

    // 3. Invitations, environment by environment.
    let envs: Vec<Uuid> = sqlx::query_scalar(
        "SELECT DISTINCT environment_id FROM invitations WHERE pii_key_version < $1",
    )
    .bind(version)
    .fetch_all(owner)
    .await?;
    for env in envs {
        let mut tx = store
            .tenant_as_system(
                portcullis_core::EnvironmentId::from_uuid(env),
                portcullis_core::PermissionSet::all(),
                crate::RequestMeta::default(),
            )
            .await?;
        let keys = vault.platform_keys(tx.conn()).await?;
        let rows: Vec<(Uuid, Vec<u8>, i32)> = sqlx::query_as(
            "SELECT invitation_id, email_ciphertext, pii_key_version FROM invitations
              WHERE environment_id = $1 AND pii_key_version < $2 FOR UPDATE",
        )
        .bind(env)
        .bind(keys.active_version())
        .fetch_all(tx.conn())
        .await?;
        for (id, ct, old) in rows {
            let row_s = id.to_string();
            let place = invitation_place(env, &row_s);
            let email = keys.open(&place, &ct)?;
            sqlx::query(
                "UPDATE invitations SET email_ciphertext = $3, pii_key_version = $4
                  WHERE environment_id = $1 AND invitation_id = $2 AND pii_key_version = $5",
            )
            .bind(env)
            .bind(id)
            .bind(keys.seal(&place, &email))
            .bind(keys.active_version())
            .bind(old)
            .execute(tx.conn())
            .await?;
            done.invitations += 1;
        }
        tx.commit().await?;
        progress(&done);
    }

    // 4. Subject keys, by the operator (it may replace only their sealed form).
    loop {
        let mut tx = owner.begin().await?;
        let keys = vault.platform_keys(&mut tx).await?;
        let rows: Vec<(Uuid, Uuid, Vec<u8>)> = sqlx::query_as(
            "SELECT environment_id, subject_id, key_ciphertext FROM subject_keys
              WHERE pii_key_version < $1 ORDER BY environment_id, subject_id LIMIT 500 FOR UPDATE",
        )
        .bind(keys.active_version())
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            break;
        }
        for (scope, subject, ct) in rows {
            let subject_s = subject.to_string();
            let place = crate::custody::subject_key_place(scope, &subject_s);
            let key = keys.open_bytes(&place, &ct)?;
            sqlx::query(
                "UPDATE subject_keys SET key_ciphertext = $3, pii_key_version = $4
                  WHERE environment_id = $1 AND subject_id = $2",
            )
            .bind(scope)
            .bind(subject)
            .bind(keys.seal_bytes(&place, &key))
            .bind(keys.active_version())
            .execute(&mut *tx)
            .await?;
            done.subject_keys += 1;
        }
        tx.commit().await?;
        progress(&done);
    }
    Ok(done)
}

/// One platform PII key version and what it seals.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PiiVersionStatus {
    pub version: i32,
    pub active: bool,
    /// The KEK wrapping it, e.g. `{"provider":"local","name":"master-2"}`.
    pub kek: serde_json::Value,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    pub identities: i64,
    pub invitations: i64,
    pub subject_keys: i64,
}

/// The platform keyring as the operator sees it (`portcullis keys status --platform`).
#[derive(Clone, Debug, serde::Serialize)]
pub struct PlatformStatus {
    pub pii_versions: Vec<PiiVersionStatus>,
    /// The KEK wrapping the blind-index key (absent before first use).
    pub email_index_kek: Option<serde_json::Value>,
    /// Rows an earlier version wrote in clear, not yet sealed (sealed when the server starts).
    pub clear_identities: i64,
    pub clear_invitations: i64,
}

/// Values sealed per PII key version, in the order of [`PiiVersionStatus`]'s counts.
macro_rules! sealed_per_version {
    ($table:literal) => {
        concat!(
            "SELECT pii_key_version, count(*) FROM ",
            $table,
            " WHERE pii_key_version IS NOT NULL GROUP BY 1"
        )
    };
}
const SEALED_PER_VERSION: [&str; 3] = [
    sealed_per_version!("identities"),
    sealed_per_version!("invitations"),
    sealed_per_version!("subject_keys"),
];

/// Reads the platform keyring's state, as the schema owner.
pub async fn status(owner: &PgPool) -> Result<PlatformStatus, StoreError> {
    let keys: Vec<(String, i32, serde_json::Value, OffsetDateTime)> = sqlx::query_as(
        "SELECT purpose, version, kek, created_at FROM platform_keys ORDER BY purpose, version",
    )
    .fetch_all(owner)
    .await?;
    let mut per: BTreeMap<i32, [i64; 3]> = BTreeMap::new();
    for (i, count) in SEALED_PER_VERSION.into_iter().enumerate() {
        let rows: Vec<(i32, i64)> = sqlx::query_as(count).fetch_all(owner).await?;
        for (v, n) in rows {
            per.entry(v).or_default()[i] = n;
        }
    }
    let (clear_identities, clear_invitations): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM identities WHERE email IS NOT NULL),
                (SELECT count(*) FROM invitations WHERE email IS NOT NULL)",
    )
    .fetch_one(owner)
    .await?;
    let active = keys
        .iter()
        .filter(|k| k.0 == PII)
        .map(|k| k.1)
        .max()
        .unwrap_or(0);
    Ok(PlatformStatus {
        pii_versions: keys
            .iter()
            .filter(|k| k.0 == PII)
            .map(|(_, version, kek, created_at)| {
                let [identities, invitations, subject_keys] =
                    per.get(version).copied().unwrap_or_default();
                PiiVersionStatus {
                    version: *version,
                    active: *version == active,
                    kek: kek.clone(),
                    created_at: *created_at,
                    identities,
                    invitations,
                    subject_keys,
                }
            })
            .collect(),
        email_index_kek: keys
            .iter()
            .find(|k| k.0 == EMAIL_INDEX)
            .map(|k| k.2.clone()),
        clear_identities,
        clear_invitations,
    })
}
