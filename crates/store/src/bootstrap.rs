//! Getting from "a database URL, or nothing" to migrated schema plus two pools: the owner
//! (migrations, catalog check) and the runtime role (every request).

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};

use crate::{ddl, StoreError};

pub const OWNER_ROLE: &str = "portcullis_owner";
pub const RUNTIME_ROLE: &str = "portcullis_app";
/// Owns the functions that check the signed context; holds nothing but the key's pads.
pub const GUARD_ROLE: &str = "portcullis_guard";

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Where the schema lives and how to reach it.
#[derive(Clone)]
pub enum DatabaseTarget {
    /// A superuser connection to a cluster we manage: roles and the database are created.
    Superuser { admin_url: String, database: String },
    /// An existing database; `owner_url` owns the schema. The runtime role is created if the
    /// owner may create roles, otherwise it must already exist.
    Existing {
        owner_url: String,
        runtime_url: Option<String>,
        runtime_password: Option<String>,
    },
}

impl std::fmt::Debug for DatabaseTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DatabaseTarget::Superuser { database, .. } => f
                .debug_struct("Superuser")
                .field("database", database)
                .finish_non_exhaustive(),
            DatabaseTarget::Existing { .. } => f.write_str("Existing { .. }"),
        }
    }
}

/// The result of bootstrapping: connection options for both roles.
#[derive(Clone, Debug)]
pub struct Bootstrap {
    pub owner: PgConnectOptions,
    pub runtime: PgConnectOptions,
}

fn parse(url: &str, what: &str) -> Result<PgConnectOptions, StoreError> {
    PgConnectOptions::from_str(url)
        .map(|o| o.disable_statement_logging())
        .map_err(|e| StoreError::Bootstrap(format!("invalid {what} database URL: {e}")))
}

/// Connection options for both roles, touching nothing.
pub fn options(target: &DatabaseTarget) -> Result<Bootstrap, StoreError> {
    match target {
        DatabaseTarget::Superuser {
            admin_url,
            database,
        } => {
            let admin = parse(admin_url, "admin")?;
            Ok(Bootstrap {
                owner: admin.clone().username(OWNER_ROLE).database(database),
                runtime: admin.username(RUNTIME_ROLE).database(database),
            })
        }
        DatabaseTarget::Existing {
            owner_url,
            runtime_url,
            runtime_password,
        } => {
            let owner = parse(owner_url, "owner")?;
            let runtime =
                runtime_options(&owner, runtime_url.as_deref(), runtime_password.as_deref())?;
            Ok(Bootstrap { owner, runtime })
        }
    }
}

fn runtime_options(
    owner: &PgConnectOptions,
    runtime_url: Option<&str>,
    password: Option<&str>,
) -> Result<PgConnectOptions, StoreError> {
    match runtime_url {
        Some(url) => parse(url, "runtime"),
        None => {
            let o = owner.clone().username(RUNTIME_ROLE);
            Ok(match password {
                Some(p) => o.password(p),
                None => o,
            })
        }
    }
}

/// Creates the roles if missing, applies migrations as the owner, and returns options for
/// both roles.
pub async fn prepare(target: &DatabaseTarget) -> Result<Bootstrap, StoreError> {
    match target {
        DatabaseTarget::Superuser {
            admin_url,
            database,
        } => {
            let admin = parse(admin_url, "admin")?;
            let mut conn = admin.clone().database("postgres").connect().await?;
            ensure_roles(&mut conn, true, None, OWNER_ROLE).await?;
            ensure_database(&mut conn, database).await?;
            conn.close().await?;
            let owner = admin.clone().username(OWNER_ROLE).database(database);
            let runtime = admin.username(RUNTIME_ROLE).database(database);
            migrate(&owner).await?;
            Ok(Bootstrap { owner, runtime })
        }
        DatabaseTarget::Existing {
            owner_url,
            runtime_url,
            runtime_password,
        } => {
            let owner = parse(owner_url, "owner")?;
            let mut conn = owner.connect().await?;
            let owner_role = owner.get_username().to_owned();
            ensure_roles(&mut conn, false, runtime_password.as_deref(), &owner_role).await?;
            conn.close().await?;
            migrate(&owner).await?;
            let runtime =
                runtime_options(&owner, runtime_url.as_deref(), runtime_password.as_deref())?;
            Ok(Bootstrap { owner, runtime })
        }
    }
}

async fn role_exists(conn: &mut PgConnection, role: &str) -> Result<bool, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
            .bind(role)
            .fetch_one(conn)
            .await?,
    )
}

async fn is_member(conn: &mut PgConnection, member: &str, role: &str) -> Result<bool, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_auth_members a
                          JOIN pg_roles r ON r.oid = a.roleid
                          JOIN pg_roles m ON m.oid = a.member
                         WHERE r.rolname = $1 AND m.rolname = $2)",
    )
    .bind(role)
    .bind(member)
    .fetch_one(conn)
    .await?)
}

async fn ensure_roles(
    conn: &mut PgConnection,
    create_owner: bool,
    runtime_password: Option<&str>,
    owner_role: &str,
) -> Result<(), StoreError> {
    // Concurrent bootstraps (parallel test processes) must not race on CREATE ROLE.
    sqlx::query("SELECT pg_advisory_lock(7355608)")
        .execute(&mut *conn)
        .await?;
    let result = async {
        if create_owner && !role_exists(conn, OWNER_ROLE).await? {
            ddl::create_owner_role(conn, OWNER_ROLE).await?;
        }
        if !role_exists(conn, RUNTIME_ROLE).await? {
            ddl::create_runtime_role(conn, RUNTIME_ROLE).await?;
        }
        if !role_exists(conn, GUARD_ROLE).await? {
            ddl::create_guard_role(conn, GUARD_ROLE).await?;
        }
        if !is_member(conn, owner_role, GUARD_ROLE).await? {
            ddl::grant_role(conn, GUARD_ROLE, owner_role).await?;
        }
        if let Some(pw) = runtime_password {
            ddl::set_password(conn, RUNTIME_ROLE, pw).await?;
        }
        Ok::<(), StoreError>(())
    }
    .await;
    sqlx::query("SELECT pg_advisory_unlock(7355608)")
        .execute(&mut *conn)
        .await?;
    result
}

async fn ensure_database(conn: &mut PgConnection, database: &str) -> Result<(), StoreError> {
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(database)
            .fetch_one(&mut *conn)
            .await?;
    if !exists {
        tracing::info!(database, "creating database");
        ddl::create_database(conn, database, None, OWNER_ROLE, RUNTIME_ROLE).await?;
    }
    Ok(())
}

/// Applies pending migrations as the owner role.
pub async fn migrate(owner: &PgConnectOptions) -> Result<(), StoreError> {
    let mut conn = owner.connect().await?;
    MIGRATOR.run(&mut conn).await?;
    conn.close().await?;
    Ok(())
}

/// The context key the database holds, installing one on first use (T2). Connects as the
/// owner, the only role that can read it; done once at start, before serving.
pub async fn context_key(
    owner: &PgConnectOptions,
) -> Result<portcullis_crypto::context::ContextKey, StoreError> {
    let mut conn = owner.connect().await?;
    let key = crate::context::load_or_install(&mut conn).await;
    conn.close().await?;
    key
}

/// Pool for the runtime role.
pub async fn runtime_pool(
    options: &PgConnectOptions,
    max_connections: u32,
) -> Result<PgPool, StoreError> {
    Ok(PgPoolOptions::new()
        .max_connections(max_connections)
        .min_connections(1.min(max_connections))
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options.clone())
        .await?)
}
