use portcullis_core::Permission;

/// Everything a store operation can fail with. Callers map these to their own errors; the
/// database error codes are interpreted here and nowhere else.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The row does not exist, or exists in a tenant the caller cannot see. The two are
    /// deliberately indistinguishable.
    #[error("not found")]
    NotFound,
    #[error("missing permission {0}")]
    Forbidden(Permission),
    /// A database policy refused a write the application allowed: the third layer (R8) caught
    /// an application bug.
    #[error("refused by a database policy")]
    PolicyViolation,
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("the database is unavailable")]
    Unavailable(#[source] sqlx::Error),
    #[error("database error")]
    Database(#[source] sqlx::Error),
    #[error("migration failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{0}")]
    Bootstrap(String),
    /// The environment's key-encryption key is disabled, deleted or unreachable by policy.
    #[error("{0}")]
    KeyUnavailable(String),
    /// A key-encryption key asked for (`Vault::set_kek`) cannot wrap: unknown, disabled or not
    /// permitted. Nothing of the environment's own keys is affected.
    #[error("{0}")]
    UnusableKek(String),
    /// The key provider failed (network, HSM session); may succeed on retry.
    #[error("{0}")]
    KeyProvider(String),
    /// Stored data failed an integrity check: moved, copied or altered ciphertext.
    #[error("{0}")]
    Integrity(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::RowNotFound => StoreError::NotFound,
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
                StoreError::Unavailable(e)
            }
            sqlx::Error::Database(db) => match db.code().as_deref() {
                Some("23505") => StoreError::Conflict(conflict_message(db.constraint())),
                Some("23503") => StoreError::Conflict(conflict_message(db.constraint())),
                Some("23514") => StoreError::Conflict(conflict_message(db.constraint())),
                Some("42501") => {
                    // The application never sends a statement the database should refuse: one
                    // that is refused is a bug or someone else's SQL, and is worth a look.
                    tracing::warn!(
                        database_message = db.message(),
                        "the database refused a statement (row-level security or privileges)"
                    );
                    StoreError::PolicyViolation
                }
                Some("57P01" | "57P02" | "57P03" | "53300") => StoreError::Unavailable(e),
                _ => StoreError::Database(e),
            },
            _ => StoreError::Database(e),
        }
    }
}

/// A message safe to show a client: it names the rule, never the data.
fn conflict_message(constraint: Option<&str>) -> String {
    match constraint {
        Some("identities_email_key") | Some("identities_email_index_key") => {
            "an account with this email already exists".into()
        }
        Some("projects_environment_id_name_key") => {
            "a project with this name already exists".into()
        }
        Some("custom_roles_environment_id_name_key") => {
            "a role with this name already exists".into()
        }
        Some("memberships_one_owner")
        | Some("memberships_exactly_one_owner")
        | Some("environments_exactly_one_owner") => {
            "an environment has exactly one owner; use an ownership transfer".into()
        }
        Some(c) if c.ends_with("custom_role_id_fkey") => {
            "the custom role is in use or does not exist".into()
        }
        Some(c) if c.starts_with("project_grants_environment_id_identity_id") => {
            "the identity is not a member of this environment".into()
        }
        Some(c) => format!("constraint {c} refused the change"),
        None => "the change conflicts with existing data".into(),
    }
}
