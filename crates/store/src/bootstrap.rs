//! Getting from "a database URL, or nothing" to a migrated schema and connection options for
//! each role: the owner (migrations and boot-time steps only), the runtime role (every
//! request) and the background roles (the audit checkpointer, the key-rotation scheduler).

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};

use crate::{ddl, StoreError};

pub const OWNER_ROLE: &str = "portcullis_owner";
pub const RUNTIME_ROLE: &str = "portcullis_app";
/// Owns the functions that check the signed context; holds nothing but the key's pads.
pub const GUARD_ROLE: &str = "portcullis_guard";
/// The audit checkpointer and its signing key (migration `20261202000009_background_roles`).
pub const CHECKPOINTER_ROLE: &str = "portcullis_checkpointer";
/// The key-rotation scheduler.
pub const SCHEDULER_ROLE: &str = "portcullis_scheduler";
/// The audit sequencer: the only role that chains pending entries into the audit log
/// (migration `20261202000014_audit_sequencer`).
pub const SEQUENCER_ROLE: &str = "portcullis_sequencer";
/// Roles the serving process's background passes connect as, instead of the owner.
pub const BACKGROUND_ROLES: &[&str] = &[CHECKPOINTER_ROLE, SCHEDULER_ROLE, SEQUENCER_ROLE];

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Where the schema lives and how to reach it.
#[derive(Clone)]
pub enum DatabaseTarget {
    /// A superuser connection to a cluster we manage: roles and the database are created.
    Superuser { admin_url: String, database: String },
    /// An existing database; `owner_url` owns the schema. The runtime and background roles
    /// are created if the owner may create roles, otherwise they must already exist. A role
    /// without a URL of its own connects like the owner URL with its user name and, when one
    /// is given, `runtime_password` (which bootstrap then sets on it).
    Existing {
        owner_url: String,
        runtime_url: Option<String>,
        runtime_password: Option<String>,
        checkpointer_url: Option<String>,
        scheduler_url: Option<String>,
        sequencer_url: Option<String>,
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

/// The result of bootstrapping: connection options for every role.
#[derive(Clone, Debug)]
pub struct Bootstrap {
    pub owner: PgConnectOptions,
    pub runtime: PgConnectOptions,
    pub checkpointer: PgConnectOptions,
    pub scheduler: PgConnectOptions,
    pub sequencer: PgConnectOptions,
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
            Ok(private_options(&admin, database))
        }
        DatabaseTarget::Existing { owner_url, .. } => {
            existing_options(target, parse(owner_url, "owner")?)
        }
    }
}

/// The private cluster: every role logs in over the socket the superuser uses.
fn private_options(admin: &PgConnectOptions, database: &str) -> Bootstrap {
    let role = |name: &str| admin.clone().username(name).database(database);
    Bootstrap {
        owner: role(OWNER_ROLE),
        runtime: role(RUNTIME_ROLE),
        checkpointer: role(CHECKPOINTER_ROLE),
        scheduler: role(SCHEDULER_ROLE),
        sequencer: role(SEQUENCER_ROLE),
    }
}

fn existing_options(
    target: &DatabaseTarget,
    owner: PgConnectOptions,
) -> Result<Bootstrap, StoreError> {
    let DatabaseTarget::Existing {
        runtime_url,
        runtime_password,
        checkpointer_url,
        scheduler_url,
        sequencer_url,
        ..
    } = target
    else {
        return Err(StoreError::Bootstrap("not an existing database".into()));
    };
    let pw = runtime_password.as_deref();
    Ok(Bootstrap {
        runtime: role_options(&owner, RUNTIME_ROLE, runtime_url.as_deref(), pw)?,
        checkpointer: role_options(&owner, CHECKPOINTER_ROLE, checkpointer_url.as_deref(), pw)?,
        scheduler: role_options(&owner, SCHEDULER_ROLE, scheduler_url.as_deref(), pw)?,
        sequencer: role_options(&owner, SEQUENCER_ROLE, sequencer_url.as_deref(), pw)?,
        owner,
    })
}

/// `role`'s own URL, or the owner's with `role` as user and `password` when one is given.
fn role_options(
    owner: &PgConnectOptions,
    role: &str,
    url: Option<&str>,
    password: Option<&str>,
) -> Result<PgConnectOptions, StoreError> {
    match url {
        Some(url) => parse(url, role),
        None => {
            let o = owner.clone().username(role);
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
            ensure_roles(&mut conn, true, &[], OWNER_ROLE).await?;
            ensure_database(&mut conn, database).await?;
            // A database created by an earlier version lets only the runtime role connect.
            for role in BACKGROUND_ROLES {
                ensure_connect(&mut conn, database, role).await?;
            }
            conn.close().await?;
            let prepared = private_options(&admin, database);
            migrate(&prepared.owner).await?;
            Ok(prepared)
        }
        DatabaseTarget::Existing {
            owner_url,
            runtime_password,
            checkpointer_url,
            scheduler_url,
            sequencer_url,
            ..
        } => {
            let owner = parse(owner_url, "owner")?;
            // The password is set on each role that connects with it (no URL of its own).
            let mut passwords = vec![];
            if let Some(pw) = runtime_password.as_deref() {
                passwords.push((RUNTIME_ROLE, pw));
                for (role, url) in [
                    (CHECKPOINTER_ROLE, checkpointer_url),
                    (SCHEDULER_ROLE, scheduler_url),
                    (SEQUENCER_ROLE, sequencer_url),
                ] {
                    if url.is_none() {
                        passwords.push((role, pw));
                    }
                }
            }
            let mut conn = owner.connect().await?;
            let owner_role = owner.get_username().to_owned();
            ensure_roles(&mut conn, false, &passwords, &owner_role).await?;
            let database: String = sqlx::query_scalar("SELECT current_database()::text")
                .fetch_one(&mut conn)
                .await?;
            for role in BACKGROUND_ROLES {
                ensure_connect(&mut conn, &database, role).await?;
            }
            conn.close().await?;
            migrate(&owner).await?;
            existing_options(target, owner)
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

/// Creates the roles that are missing (the owner only on a cluster we manage), makes the owner
/// a member of the guard role (so migrations can hand it the context checks) and sets the
/// given passwords.
async fn ensure_roles(
    conn: &mut PgConnection,
    create_owner: bool,
    passwords: &[(&str, &str)],
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
            ddl::create_unprivileged_role(conn, RUNTIME_ROLE, ddl::UnprivilegedRole::Runtime)
                .await?;
        }
        if !role_exists(conn, GUARD_ROLE).await? {
            ddl::create_unprivileged_role(conn, GUARD_ROLE, ddl::UnprivilegedRole::Guard).await?;
        }
        if !is_member(conn, owner_role, GUARD_ROLE).await? {
            ddl::grant_role(conn, GUARD_ROLE, owner_role).await?;
        }
        for role in BACKGROUND_ROLES {
            if !role_exists(conn, role).await? {
                ddl::create_unprivileged_role(conn, role, ddl::UnprivilegedRole::Background)
                    .await?;
            }
        }
        for (role, pw) in passwords {
            ddl::set_password(conn, role, pw).await.map_err(|e| {
                StoreError::Bootstrap(format!(
                    "cannot set the configured runtime password on {role} ({e}); let the owner \
                     create the role, or give the role a URL of its own"
                ))
            })?;
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
        ddl::create_database(
            conn,
            database,
            None,
            OWNER_ROLE,
            RUNTIME_ROLE,
            BACKGROUND_ROLES,
        )
        .await?;
    }
    Ok(())
}

/// Makes sure `role` may connect to `database`, granting it when this connection may.
async fn ensure_connect(
    conn: &mut PgConnection,
    database: &str,
    role: &str,
) -> Result<(), StoreError> {
    let may: bool = sqlx::query_scalar("SELECT has_database_privilege($1, $2, 'CONNECT')")
        .bind(role)
        .bind(database)
        .fetch_one(&mut *conn)
        .await?;
    if !may {
        ddl::grant_connect(conn, database, role).await?;
    }
    Ok(())
}

/// Applies pending migrations as the owner role. Notices are not wanted on this connection:
/// the migrator's `CREATE TABLE IF NOT EXISTS _sqlx_migrations` would log one on every start.
pub async fn migrate(owner: &PgConnectOptions) -> Result<(), StoreError> {
    let mut conn = owner
        .clone()
        .options([("client_min_messages", "warning")])
        .connect()
        .await?;
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

/// Pool for a background role (`role` is one of [`BACKGROUND_ROLES`]): connects once to
/// check that the options really log in as that role, so a wrong URL or a missing role stops
/// the start with a message naming it. The passes hold one connection for their pass lock
/// (`leader::PassLock`) and query on another: `max_connections` should be 2 or more.
pub async fn background_pool(
    options: &PgConnectOptions,
    role: &str,
    max_connections: u32,
) -> Result<PgPool, StoreError> {
    let pool = PgPoolOptions::new()
        .max_connections(max_connections.max(2))
        .min_connections(0)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options.clone())
        .await
        .map_err(|e| {
            StoreError::Bootstrap(format!(
                "cannot connect as the background role {role} ({e}); see \"Database roles\" in \
                 portcullis.example.toml"
            ))
        })?;
    let user: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&pool)
        .await?;
    if user != role {
        pool.close().await;
        return Err(StoreError::Bootstrap(format!(
            "the connection meant for {role} logs in as {user}; its URL must name {role}"
        )));
    }
    Ok(pool)
}

/// Closes `pool` so that no connection of it stays open: its connections are taken out and
/// closed one by one before the pool is closed (a connection still on its way back when a pool
/// closes could otherwise linger). `serve` closes its boot-time owner pool this way.
pub async fn close_pool(pool: PgPool) {
    while pool.size() > 0 {
        match tokio::time::timeout(Duration::from_secs(5), pool.acquire()).await {
            Ok(Ok(conn)) => {
                sqlx::Connection::close(conn.detach()).await.ok();
            }
            _ => break,
        }
    }
    pool.close().await;
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
        // A request's SQL must not outlive its request (T2): whatever session state one left on
        // the connection (settings such as search_path, session advisory locks that would stall
        // the background passes) is cleared before the connection serves anyone else. A
        // connection that cannot be cleared is closed, never reused.
        .after_release(|conn, _| {
            Box::pin(async move {
                sqlx::Executor::execute(&mut *conn, RELEASE_RESET).await?;
                Ok(true)
            })
        })
        .connect_with(options.clone())
        .await?)
}

/// Run on every runtime connection as it returns to the pool.
const RELEASE_RESET: &str = "RESET ALL; SELECT pg_advisory_unlock_all()";

#[cfg(test)]
mod tests {
    use super::*;

    /// Control T7: each background role connects as itself: its own URL when given, otherwise
    /// the owner's host with the role's name and the runtime password.
    #[test]
    fn t7_background_roles_connect_as_themselves() {
        let target = DatabaseTarget::Existing {
            owner_url: "postgres://portcullis_owner:ownerpw@db.internal/pc".into(),
            runtime_url: None,
            runtime_password: Some("runtimepw".into()),
            checkpointer_url: None,
            scheduler_url: Some("postgres://portcullis_scheduler:own@other.internal/pc".into()),
            sequencer_url: None,
        };
        let b = options(&target).unwrap();
        assert_eq!(b.checkpointer.get_username(), CHECKPOINTER_ROLE);
        assert_eq!(b.checkpointer.get_host(), "db.internal");
        assert_eq!(b.scheduler.get_username(), SCHEDULER_ROLE);
        assert_eq!(b.scheduler.get_host(), "other.internal");
        assert_eq!(b.runtime.get_username(), RUNTIME_ROLE);
        let private = options(&DatabaseTarget::Superuser {
            admin_url: "postgres://postgres@localhost/postgres".into(),
            database: "portcullis".into(),
        })
        .unwrap();
        assert_eq!(private.checkpointer.get_username(), CHECKPOINTER_ROLE);
        assert_eq!(private.scheduler.get_database(), Some("portcullis"));
    }
}
