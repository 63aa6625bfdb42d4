//! The one error of the use cases. It says what went wrong in the caller's terms; the server
//! turns it into a status and a stable code, the CLI into a message. Internal detail stays in
//! the variants the server never shows.

use portcullis_core::validate::Invalid;
use portcullis_core::Permission;
use portcullis_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// Input the use case refuses; `code` is stable and machine-readable.
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    #[error("authentication required")]
    Unauthenticated,
    #[error("invalid email or password")]
    InvalidCredentials,
    /// The setup token is wrong, or setup has already been completed with it.
    #[error("the setup token is wrong or has already been used; while there is no owner, each start of the server prints a new one")]
    InvalidSetupToken,
    #[error("this action needs the {0} permission")]
    Forbidden(Permission),
    #[error("{0}")]
    ForbiddenReason(String),
    /// Absent, or in a tenant the caller cannot see: deliberately the same.
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Gone(String),
    /// The environment's key-encryption key is disabled, deleted or revoked. Already audited
    /// as `keys.access_failed` when it comes out of a use case.
    #[error("this environment's encryption key is unavailable: {0}")]
    KeyUnavailable(String),
    #[error("stored data failed an integrity check")]
    Integrity(String),
    #[error("service temporarily unavailable")]
    Unavailable(String),
    #[error("internal error")]
    Internal(String),
}

pub type ServiceResult<T> = Result<T, ServiceError>;

impl ServiceError {
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ServiceError::BadRequest {
            code,
            message: message.into(),
        }
    }
}

/// Exhaustive: a new store error must be placed here, never fall into a catch-all.
impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ServiceError::NotFound,
            StoreError::Forbidden(p) => ServiceError::Forbidden(p),
            StoreError::PolicyViolation => {
                ServiceError::ForbiddenReason("refused by a database policy".into())
            }
            StoreError::Conflict(m) => ServiceError::Conflict(m),
            StoreError::Unavailable(e) => ServiceError::Unavailable(e.to_string()),
            StoreError::KeyUnavailable(m) => ServiceError::KeyUnavailable(m),
            StoreError::KeyProvider(m) => ServiceError::Unavailable(m),
            StoreError::UnusableKek(m) => ServiceError::bad_request(
                "kek_unusable",
                format!("that key-encryption key cannot be used: {m}"),
            ),
            StoreError::Integrity(m) => ServiceError::Integrity(m),
            e @ (StoreError::Database(_) | StoreError::Migrate(_) | StoreError::Bootstrap(_)) => {
                ServiceError::Internal(format!("{e}: {:?}", std::error::Error::source(&e)))
            }
        }
    }
}

impl From<Invalid> for ServiceError {
    fn from(e: Invalid) -> Self {
        ServiceError::bad_request("invalid_input", e.to_string())
    }
}
