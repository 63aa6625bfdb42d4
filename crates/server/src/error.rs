//! The one error type at the HTTP edge. Every error has a status and a stable machine code;
//! 5xx bodies say nothing internal. The error is logged once, by the logging middleware,
//! which finds it in the response extensions.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use portcullis_core::validate::Invalid;
use portcullis_core::Permission;
use portcullis_service::ServiceError;
use portcullis_store::StoreError;
use serde::Serialize;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    #[error("authentication required")]
    Unauthenticated,
    #[error("invalid email or password")]
    InvalidCredentials,
    #[error("the setup token is wrong or has already been used; while there is no owner, each start of the server prints a new one")]
    InvalidSetupToken,
    #[error("this action needs the {0} permission")]
    Forbidden(Permission),
    #[error("{0}")]
    ForbiddenReason(String),
    #[error("a request authenticated by the session cookie must come from the server's own origin; other clients use the Authorization header")]
    OriginRefused,
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Gone(String),
    #[error("request body is too large")]
    PayloadTooLarge,
    #[error("expected a JSON body with Content-Type: application/json")]
    UnsupportedMediaType,
    #[error("request timed out")]
    Timeout,
    #[error("the request body did not arrive in time")]
    BodyTimeout,
    #[error("this environment's encryption key is unavailable: {0}")]
    KeyUnavailable(String),
    #[error("stored data failed an integrity check")]
    Integrity(String),
    #[error("service temporarily unavailable")]
    Unavailable(String),
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            code,
            message: message.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthenticated
            | ApiError::InvalidCredentials
            | ApiError::InvalidSetupToken => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) | ApiError::ForbiddenReason(_) | ApiError::OriginRefused => {
                StatusCode::FORBIDDEN
            }
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Gone(_) => StatusCode::GONE,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::Timeout | ApiError::Unavailable(_) | ApiError::KeyUnavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Integrity(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest { code, .. } => code,
            ApiError::Unauthenticated => "unauthenticated",
            ApiError::InvalidCredentials => "invalid_credentials",
            ApiError::InvalidSetupToken => "setup_token_invalid",
            ApiError::Forbidden(_) | ApiError::ForbiddenReason(_) => "role_access_denied",
            ApiError::OriginRefused => "origin_refused",
            ApiError::NotFound => "not_found",
            ApiError::Conflict(_) => "conflict",
            ApiError::Gone(_) => "gone",
            ApiError::PayloadTooLarge => "payload_too_large",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::Timeout => "timeout",
            ApiError::BodyTimeout => "body_timeout",
            ApiError::KeyUnavailable(_) => "key_unavailable",
            ApiError::Integrity(_) => "integrity_error",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    /// What the client sees. Internal detail never leaves the server.
    fn public_message(&self) -> String {
        match self {
            ApiError::Internal(_) => {
                "internal error; the request id identifies it in the server log".into()
            }
            ApiError::Unavailable(_) => "service temporarily unavailable; retry shortly".into(),
            ApiError::KeyUnavailable(_) => "this environment's encryption key is unavailable (disabled, deleted or access revoked by its owner); its encrypted data can be read again once the key is restored".into(),
            ApiError::Integrity(_) => "stored data failed its integrity check; the request id identifies it in the server log".into(),
            other => other.to_string(),
        }
    }
}

/// Exhaustive: a new service error must be given its status here.
impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::BadRequest { code, message } => ApiError::BadRequest { code, message },
            ServiceError::Unauthenticated => ApiError::Unauthenticated,
            ServiceError::InvalidCredentials => ApiError::InvalidCredentials,
            ServiceError::InvalidSetupToken => ApiError::InvalidSetupToken,
            ServiceError::Forbidden(p) => ApiError::Forbidden(p),
            ServiceError::ForbiddenReason(m) => ApiError::ForbiddenReason(m),
            ServiceError::NotFound => ApiError::NotFound,
            ServiceError::Conflict(m) => ApiError::Conflict(m),
            ServiceError::Gone(m) => ApiError::Gone(m),
            ServiceError::KeyUnavailable(m) => ApiError::KeyUnavailable(m),
            ServiceError::Integrity(m) => ApiError::Integrity(m),
            ServiceError::Unavailable(m) => ApiError::Unavailable(m),
            ServiceError::Internal(m) => ApiError::Internal(m),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ServiceError::from(e).into()
    }
}

impl From<Invalid> for ApiError {
    fn from(e: Invalid) -> Self {
        ServiceError::from(e).into()
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `role_access_denied`.
    pub code: String,
    pub message: String,
}

/// The code of a 403 (or of a 401 `unauthenticated`), in response extensions for the middleware
/// that records refusals.
#[derive(Clone, Copy, Debug)]
pub struct Refused(pub &'static str);

/// Placed in response extensions so the logging middleware can log the full error once.
#[derive(Clone, Debug)]
pub struct LoggedError(pub Arc<String>, pub StatusCode);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code().into(),
                message: self.public_message(),
            },
        };
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::FORBIDDEN || matches!(self, ApiError::Unauthenticated) {
            response.extensions_mut().insert(Refused(self.code()));
        }
        response
            .extensions_mut()
            .insert(LoggedError(Arc::new(format!("{self:?}")), status));
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
