//! Test support: a fresh, migrated database per test, cloned from a template that is built
//! once per migration set. Uses `PORTCULLIS_TEST_DATABASE_URL` (a superuser URL) when set,
//! otherwise the shared private cluster provisioned the same way `portcullis serve` does.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};
use tokio::sync::OnceCell;

use crate::bootstrap::{
    self, BACKGROUND_ROLES, CHECKPOINTER_ROLE, MIGRATOR, OWNER_ROLE, RUNTIME_ROLE, SCHEDULER_ROLE,
    SEQUENCER_ROLE,
};
use crate::{ddl, Store};

pub const TEST_DATABASE_URL_VAR: &str = "PORTCULLIS_TEST_DATABASE_URL";

struct Shared {
    admin_url: String,
    template: String,
}

static SHARED: OnceCell<Shared> = OnceCell::const_new();
static COUNTER: AtomicU32 = AtomicU32::new(0);

/// One test's database. Connection options for the superuser, the owner, the runtime role
/// and the background roles.
#[derive(Clone, Debug)]
pub struct TestDb {
    pub name: String,
    /// URL of the owner role for this database (for driving the `portcullis` binary).
    pub owner_url: String,
    /// URL of the superuser for this database (for pg_dump and the like).
    pub admin_url: String,
    pub admin: PgConnectOptions,
    pub owner: PgConnectOptions,
    pub runtime: PgConnectOptions,
    /// The audit checkpointer's role, as `serve` connects it.
    pub checkpointer: PgConnectOptions,
    /// The key-rotation scheduler's role, as `serve` connects it.
    pub scheduler: PgConnectOptions,
    /// The audit sequencer's role, as `serve` connects it.
    pub sequencer: PgConnectOptions,
}

/// A vault whose data keys are wrapped by a fresh local master key (one directory per call).
pub fn test_vault() -> crate::vault::Vault {
    test_vault_with_ttl(std::time::Duration::from_secs(300))
}

pub fn test_vault_with_ttl(ttl: std::time::Duration) -> crate::vault::Vault {
    let dir = portcullis_provision::test_root()
        .expect("test root")
        .join(format!(
            "portcullis-test-keys/{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
    let local = portcullis_keys::local::LocalProvider::open(&dir).expect("local key provider");
    let default_kek = portcullis_keys::KekRef::Local {
        name: local.current(),
    };
    crate::vault::Vault::new(
        portcullis_keys::Providers {
            local: Some(local),
            ..Default::default()
        },
        crate::vault::VaultConfig {
            default_kek,
            cache_ttl: ttl,
            cache_max_entries: 1000,
        },
    )
}

impl TestDb {
    /// A fresh database for one test.
    pub async fn new() -> TestDb {
        let shared = SHARED.get_or_init(init).await;
        let admin = PgConnectOptions::from_str(&shared.admin_url)
            .expect("test database URL")
            .disable_statement_logging();
        let name = format!(
            "portcullis_test_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let mut conn = admin
            .clone()
            .database("postgres")
            .connect()
            .await
            .expect("connect as superuser");
        ddl::create_database(
            &mut conn,
            &name,
            Some(&shared.template),
            OWNER_ROLE,
            RUNTIME_ROLE,
            BACKGROUND_ROLES,
        )
        .await
        .expect("create test database from template");
        conn.close().await.ok();
        TestDb {
            owner_url: url_with(&shared.admin_url, OWNER_ROLE, &name),
            admin_url: {
                let user = admin.get_username().to_owned();
                url_with(&shared.admin_url, &user, &name)
            },
            owner: admin.clone().username(OWNER_ROLE).database(&name),
            runtime: admin.clone().username(RUNTIME_ROLE).database(&name),
            checkpointer: admin.clone().username(CHECKPOINTER_ROLE).database(&name),
            scheduler: admin.clone().username(SCHEDULER_ROLE).database(&name),
            sequencer: admin.clone().username(SEQUENCER_ROLE).database(&name),
            admin: admin.database(&name),
            name,
        }
    }

    /// A runtime-role store with a small pool and an audit sequencer (which chains entries
    /// when a reader asks, [`Store::sequence`]; nothing runs in the background).
    pub async fn store(&self) -> Store {
        Store::new(
            bootstrap::runtime_pool(&self.runtime, 6)
                .await
                .expect("runtime pool"),
            self.context_key().await,
        )
        .with_sequencer(self.sequencer().await)
    }

    /// An audit sequencer on a pool of its own role, as `serve` opens it.
    pub async fn sequencer(&self) -> crate::sequencer::Sequencer {
        crate::sequencer::Sequencer::new(
            bootstrap::background_pool(&self.sequencer, SEQUENCER_ROLE, 3)
                .await
                .expect("sequencer pool"),
        )
    }

    /// Chains everything pending in `scope`, as a reader of the audit log does first.
    pub async fn sequence(&self, scope: uuid::Uuid) -> u64 {
        self.sequencer()
            .await
            .sequence(scope)
            .await
            .expect("sequence pending audit entries")
    }

    /// The database's context key (installed on first use), as a node loads it at start.
    pub async fn context_key(&self) -> portcullis_crypto::context::ContextKey {
        bootstrap::context_key(&self.owner)
            .await
            .expect("context key")
    }

    /// A pool of the checkpointer's role, as `serve` opens it.
    pub async fn checkpointer_pool(&self) -> sqlx::PgPool {
        bootstrap::background_pool(&self.checkpointer, CHECKPOINTER_ROLE, 2)
            .await
            .expect("checkpointer pool")
    }

    /// A pool of the scheduler's role, as `serve` opens it.
    pub async fn scheduler_pool(&self) -> sqlx::PgPool {
        bootstrap::background_pool(&self.scheduler, SCHEDULER_ROLE, 2)
            .await
            .expect("scheduler pool")
    }

    /// Drops this database now, disconnecting its sessions, for callers that load much more
    /// than a test does (benchmarks) and should not leave it to the next run's stale sweep.
    pub async fn drop_now(self) {
        let mut conn = self
            .admin
            .clone()
            .database("postgres")
            .connect()
            .await
            .expect("superuser connection to the maintenance database");
        ddl::drop_database(&mut conn, &self.name)
            .await
            .expect("drop the test database");
    }

    pub async fn admin_conn(&self) -> PgConnection {
        self.admin.connect().await.expect("superuser connection")
    }

    pub async fn owner_conn(&self) -> PgConnection {
        self.owner.connect().await.expect("owner connection")
    }

    pub async fn runtime_conn(&self) -> PgConnection {
        self.runtime.connect().await.expect("runtime connection")
    }

    /// Appends an entry to `environment`'s audit chain as if it had been written at
    /// `occurred_at`, through the real writer and sequencer (sequence, hash chain, Merkle
    /// frontier), submitted as the superuser. For tests that need history in past months
    /// (monthly reports, L6).
    pub async fn append_audit_at(
        &self,
        environment: uuid::Uuid,
        occurred_at: time::OffsetDateTime,
        event: crate::AuditEvent,
    ) {
        let mut conn = self.admin_conn().await;
        let mut tx = conn.begin().await.expect("begin");
        crate::audit_writer::insert_at(
            &mut tx,
            None,
            environment,
            crate::Actor::System,
            &crate::RequestMeta::default(),
            event,
            Some(occurred_at),
        )
        .await
        .expect("append a backdated audit entry");
        tx.commit().await.expect("commit");
        conn.close().await.ok();
        self.sequence(environment).await;
    }
}

/// `url` with its user and database replaced (password dropped: test clusters trust local roles).
pub fn url_with(url: &str, user: &str, database: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
    let rest = rest.split_once('@').map_or(rest, |(_, r)| r);
    let (host, tail) = rest.split_once('/').unwrap_or((rest, ""));
    let query = tail
        .split_once('?')
        .map(|(_, q)| format!("?{q}"))
        .unwrap_or_default();
    format!("{scheme}://{user}@{host}/{database}{query}")
}

async fn admin_url() -> String {
    match std::env::var(TEST_DATABASE_URL_VAR) {
        Ok(url) if !url.is_empty() => url,
        _ => {
            let cluster = portcullis_provision::shared_test_cluster()
                .await
                .unwrap_or_else(|e| panic!("could not provision the test PostgreSQL cluster: {e}\n(or set {TEST_DATABASE_URL_VAR} to a superuser URL)"));
            cluster.superuser_url("postgres")
        }
    }
}

fn template_name() -> String {
    // FNV-1a over the migration checksums: a new migration set gets a new template.
    let mut h: u64 = 0xcbf29ce484222325;
    for m in MIGRATOR.iter() {
        for b in m.checksum.iter().chain(m.version.to_le_bytes().iter()) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x100000001b3);
        }
    }
    format!("portcullis_tmpl_{h:016x}")
}

async fn init() -> Shared {
    let admin_url = admin_url().await;
    let template = template_name();
    let admin = PgConnectOptions::from_str(&admin_url)
        .expect("test database URL")
        .disable_statement_logging();
    let mut conn = admin
        .clone()
        .database("postgres")
        .connect()
        .await
        .expect("connect as superuser");
    sqlx::query("SELECT pg_advisory_lock(4242001)")
        .execute(&mut conn)
        .await
        .expect("lock");
    drop_stale(&mut conn).await;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&template)
            .fetch_one(&mut conn)
            .await
            .expect("query");
    if !exists {
        let building = format!("{template}_building");
        ddl::drop_database(&mut conn, &building)
            .await
            .expect("drop");
        let target = bootstrap::DatabaseTarget::Superuser {
            admin_url: admin_url.clone(),
            database: building.clone(),
        };
        bootstrap::prepare(&target)
            .await
            .expect("bootstrap and migrate the template");
        ddl::rename_database(&mut conn, &building, &template)
            .await
            .expect("publish template");
    }
    sqlx::query("SELECT pg_advisory_unlock(4242001)")
        .execute(&mut conn)
        .await
        .expect("unlock");
    conn.close().await.ok();
    Shared {
        admin_url,
        template,
    }
}

/// Drops test databases whose process is gone, so repeated runs do not accumulate them.
async fn drop_stale(conn: &mut PgConnection) {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT datname::text FROM pg_database WHERE datname LIKE 'portcullis\\_test\\_%'",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap_or_default();
    for name in names {
        let pid = name.split('_').nth(2).and_then(|p| p.parse::<u32>().ok());
        let alive = pid.is_some_and(|p| std::path::Path::new(&format!("/proc/{p}")).exists());
        if !alive {
            let _ = ddl::drop_database(conn, &name).await;
        }
    }
}
