//! DDL that has to name an identifier or carry a literal that PostgreSQL will not take as a
//! bind parameter: roles, databases, a role's password. This is the one module that builds
//! SQL text at run time (`.ci/check-sql` exempts it and nothing else), and it does so only
//! through [`ident`] and [`literal`], which validate and quote.

use sqlx::PgConnection;

use crate::StoreError;

/// PostgreSQL truncates longer identifiers (NAMEDATALEN - 1): refuse them rather than act on
/// a different name than the one asked for.
const MAX_IDENT_BYTES: usize = 63;

/// `name` as a quoted identifier. Refuses the empty name, control characters (NUL included)
/// and names PostgreSQL would truncate.
fn ident(name: &str) -> Result<String, StoreError> {
    if name.is_empty() || name.len() > MAX_IDENT_BYTES || name.chars().any(char::is_control) {
        return Err(StoreError::Bootstrap(format!(
            "{name:?} is not a usable PostgreSQL identifier"
        )));
    }
    Ok(format!("\"{}\"", name.replace('"', "\"\"")))
}

/// `value` as a quoted string literal (standard-conforming strings: only `'` is special).
/// Refuses NUL, which a literal cannot hold.
fn literal(value: &str) -> Result<String, StoreError> {
    if value.contains('\0') {
        return Err(StoreError::Bootstrap(
            "a SQL literal cannot contain NUL".into(),
        ));
    }
    Ok(format!("'{}'", value.replace('\'', "''")))
}

async fn run(conn: &mut PgConnection, sql: String) -> Result<(), sqlx::Error> {
    sqlx::raw_sql(&sql).execute(conn).await.map(drop)
}

/// The schema owner: may create the runtime role, nothing wider.
pub(crate) async fn create_owner_role(
    conn: &mut PgConnection,
    role: &str,
) -> Result<(), StoreError> {
    let sql = [
        "CREATE ROLE ",
        &ident(role)?,
        " LOGIN NOSUPERUSER NOBYPASSRLS CREATEROLE NOCREATEDB",
    ]
    .concat();
    Ok(run(conn, sql).await?)
}

/// The roles the migrations grant everything they may do: none is superuser, bypasses RLS,
/// creates roles or databases, replicates or inherits.
#[derive(Clone, Copy, Debug)]
pub(crate) enum UnprivilegedRole {
    /// Serves every request.
    Runtime,
    /// A background pass (checkpointer, scheduler).
    Background,
    /// Owns the context checks and may read only the context key's pads (T2). Cannot log
    /// in; the owner is made a member so that migrations can hand it those functions.
    Guard,
}

pub(crate) async fn create_unprivileged_role(
    conn: &mut PgConnection,
    role: &str,
    kind: UnprivilegedRole,
) -> Result<(), StoreError> {
    let (login, what, how) = match kind {
        UnprivilegedRole::Runtime => ("LOGIN", "runtime", "LOGIN NOSUPERUSER NOBYPASSRLS"),
        UnprivilegedRole::Background => (
            "LOGIN",
            "background",
            "LOGIN NOSUPERUSER NOBYPASSRLS NOINHERIT, with a password or another way to log in",
        ),
        UnprivilegedRole::Guard => (
            "NOLOGIN",
            "guard",
            "NOLOGIN NOSUPERUSER NOBYPASSRLS, and grant it to the schema owner",
        ),
    };
    let sql = [
        "CREATE ROLE ",
        &ident(role)?,
        " ",
        login,
        " NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION",
    ]
    .concat();
    run(conn, sql).await.map_err(|e| {
        StoreError::Bootstrap(format!(
            "the {what} role {role} does not exist and could not be created ({e}); create it \
             (CREATE ROLE {role} {how}) or grant CREATEROLE to the owner"
        ))
    })
}

/// Lets `role` connect to `database` (and nothing else on it).
pub(crate) async fn grant_connect(
    conn: &mut PgConnection,
    database: &str,
    role: &str,
) -> Result<(), StoreError> {
    let sql = [
        "GRANT CONNECT ON DATABASE ",
        &ident(database)?,
        " TO ",
        &ident(role)?,
    ]
    .concat();
    run(conn, sql).await.map_err(|e| {
        StoreError::Bootstrap(format!(
            "{role} may not connect to database {database} and the owner cannot grant it ({e}); \
             run GRANT CONNECT ON DATABASE {database} TO {role}"
        ))
    })
}

/// Makes `member` a member of `role` (idempotent).
pub(crate) async fn grant_role(
    conn: &mut PgConnection,
    role: &str,
    member: &str,
) -> Result<(), StoreError> {
    let sql = ["GRANT ", &ident(role)?, " TO ", &ident(member)?].concat();
    run(conn, sql)
        .await
        .map_err(|e| StoreError::Bootstrap(format!("could not grant {role} to {member}: {e}")))
}

pub(crate) async fn set_password(
    conn: &mut PgConnection,
    role: &str,
    password: &str,
) -> Result<(), StoreError> {
    let sql = [
        "ALTER ROLE ",
        &ident(role)?,
        " PASSWORD ",
        &literal(password)?,
    ]
    .concat();
    Ok(run(conn, sql).await?)
}

/// A database owned by `owner` (optionally cloned from `template`) that only `runtime` and
/// the `background` roles may connect to besides its owner.
pub(crate) async fn create_database(
    conn: &mut PgConnection,
    database: &str,
    template: Option<&str>,
    owner: &str,
    runtime: &str,
    background: &[&str],
) -> Result<(), StoreError> {
    let db = ident(database)?;
    let create = match template {
        None => [
            "CREATE DATABASE ",
            &db,
            " OWNER ",
            &ident(owner)?,
            " ENCODING 'UTF8'",
        ]
        .concat(),
        Some(t) => [
            "CREATE DATABASE ",
            &db,
            " TEMPLATE ",
            &ident(t)?,
            " OWNER ",
            &ident(owner)?,
        ]
        .concat(),
    };
    run(conn, create).await?;
    run(
        conn,
        ["REVOKE ALL ON DATABASE ", &db, " FROM PUBLIC"].concat(),
    )
    .await?;
    run(
        conn,
        ["GRANT CONNECT ON DATABASE ", &db, " TO ", &ident(runtime)?].concat(),
    )
    .await?;
    for role in background {
        grant_connect(conn, database, role).await?;
    }
    Ok(())
}

/// Drops `database` if it exists, disconnecting its sessions (test databases).
#[cfg(feature = "testing")]
pub(crate) async fn drop_database(
    conn: &mut PgConnection,
    database: &str,
) -> Result<(), StoreError> {
    let sql = [
        "DROP DATABASE IF EXISTS ",
        &ident(database)?,
        " WITH (FORCE)",
    ]
    .concat();
    Ok(run(conn, sql).await?)
}

#[cfg(feature = "testing")]
pub(crate) async fn rename_database(
    conn: &mut PgConnection,
    from: &str,
    to: &str,
) -> Result<(), StoreError> {
    let sql = ["ALTER DATABASE ", &ident(from)?, " RENAME TO ", &ident(to)?].concat();
    Ok(run(conn, sql).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted_and_validated() {
        assert_eq!(ident("portcullis_app").unwrap(), "\"portcullis_app\"");
        assert_eq!(ident("we\"ird").unwrap(), "\"we\"\"ird\"");
        assert!(ident("").is_err());
        assert!(ident("a\0b").is_err());
        assert!(ident("x\ny").is_err());
        assert!(ident(&"a".repeat(64)).is_err());
        assert!(ident(&"a".repeat(63)).is_ok());
    }

    #[test]
    fn literals_are_quoted_and_validated() {
        assert_eq!(literal("it's").unwrap(), "'it''s'");
        assert_eq!(literal("back\\slash").unwrap(), "'back\\slash'");
        assert!(literal("a\0b").is_err());
    }
}
