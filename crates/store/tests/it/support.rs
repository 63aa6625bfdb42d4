//! Shared fixtures: identities and tenants built through the store's own API, as the
//! application builds them.

use portcullis_core::{DocumentId, EnvironmentId, IdentityId, ProjectId};
use portcullis_store::queries::{documents, environments, identities, projects};
use portcullis_store::{RequestMeta, Store};
use time::OffsetDateTime;

/// An environment with its owner, one project and one document in it.
pub struct Tenant {
    pub env: EnvironmentId,
    pub owner: IdentityId,
    pub project: ProjectId,
    pub document: DocumentId,
}

/// One vault for the whole process: the platform keys of every test database are wrapped by
/// its master key.
pub fn vault() -> &'static portcullis_store::vault::Vault {
    static VAULT: std::sync::OnceLock<portcullis_store::vault::Vault> = std::sync::OnceLock::new();
    VAULT.get_or_init(portcullis_store::testing::test_vault)
}

pub async fn identity(store: &Store, email: &str) -> IdentityId {
    let id = IdentityId::new();
    let mut tx = store.auth(RequestMeta::default()).await.unwrap();
    identities::create(
        &mut tx,
        vault(),
        id,
        email,
        "Test",
        "$argon2id$fake",
        OffsetDateTime::now_utc(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    id
}

pub async fn tenant(store: &Store, name: &str) -> Tenant {
    let owner = identity(store, &format!("owner@{name}.test")).await;
    let env = EnvironmentId::new();
    let now = OffsetDateTime::now_utc();
    let mut tx = store
        .new_environment(env, owner, RequestMeta::default())
        .await
        .unwrap();
    environments::create(&mut tx, name, "eu-central", owner, now)
        .await
        .unwrap();
    let project = ProjectId::new();
    projects::create(&mut tx, project, "p", owner.as_uuid(), now)
        .await
        .unwrap();
    let document = DocumentId::new();
    tx.enter_project(project).await.unwrap();
    let vault = portcullis_store::testing::test_vault();
    let ring = vault.ring(&mut tx).await.unwrap();
    let (ct, v) = vault
        .seal(
            &mut tx,
            &ring,
            documents::BODY,
            &document.to_string(),
            b"body",
        )
        .await
        .unwrap();
    documents::create(
        &mut tx,
        document,
        project,
        &format!("{name} secret"),
        &ct,
        v,
        owner.as_uuid(),
        now,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    Tenant {
        env,
        owner,
        project,
        document,
    }
}

/// The boot self-check's findings (T7) on a fresh database after the superuser ran `sql` (one
/// or more statements) to weaken it. `undo` runs before returning: roles are cluster-wide, so
/// a change to one must not reach other tests.
pub async fn catalog_findings_after(sql: &str, undo: Option<&str>) -> Vec<String> {
    let _roles = role_attributes_lock().await;
    let db = portcullis_store::testing::TestDb::new().await;
    let mut admin = db.admin_conn().await;
    sqlx::raw_sql(sql).execute(&mut admin).await.unwrap();
    let mut conn = db.runtime_conn().await;
    let checks = portcullis_store::catalog::run(&mut conn).await.unwrap();
    if let Some(undo) = undo {
        sqlx::raw_sql(undo).execute(&mut admin).await.unwrap();
    }
    portcullis_store::catalog::failures(&checks)
        .iter()
        .map(|c| c.detail.clone())
        .collect()
}

/// Held by every test that runs the self-check while another may change a cluster-wide role
/// attribute (`ALTER ROLE portcullis_app BYPASSRLS` is undone right after its check): the
/// checks would otherwise see each other's weakening.
pub async fn role_attributes_lock() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}
