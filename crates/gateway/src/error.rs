//! Why a call did not reach or pass the provider, as the Anthropic error shape names it. The
//! server chooses each kind's status; the message is safe to show the caller.

use portcullis_service::ServiceError;

/// Anthropic's error `type`s the gateway answers with itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// `invalid_request_error`: the body is not a Messages request we can forward.
    InvalidRequest,
    /// `authentication_error`: no credential, or not a live Portcullis API token.
    Authentication,
    /// `permission_error`: a live credential that may not call models here.
    Permission,
    /// `permission_error` with code `connect_your_key`: no key may pay for this call.
    ConnectYourKey,
    /// `permission_error` with code `model_key_rejected`: the provider refused the key.
    KeyRejected,
    /// `api_error`: the provider could not be reached or answered nonsense.
    Upstream,
    /// `api_error`: Portcullis itself failed (the request id finds it in the log).
    Internal,
    /// `overloaded_error`: the database or a key provider is unavailable; retry.
    Unavailable,
}

#[derive(Clone, Debug, thiserror::Error)]
#[error("{message}")]
pub struct GatewayError {
    pub kind: ErrorKind,
    pub message: String,
    /// Where the environment's key is set (`connect_your_key`).
    pub console_url: Option<String>,
    /// Detail for the server log only.
    pub detail: Option<String>,
}

impl GatewayError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> GatewayError {
        GatewayError {
            kind,
            message: message.into(),
            console_url: None,
            detail: None,
        }
    }

    /// Anthropic's `error.type`.
    pub fn error_type(&self) -> &'static str {
        match self.kind {
            ErrorKind::InvalidRequest => "invalid_request_error",
            ErrorKind::Authentication => "authentication_error",
            ErrorKind::Permission | ErrorKind::ConnectYourKey | ErrorKind::KeyRejected => {
                "permission_error"
            }
            ErrorKind::Upstream | ErrorKind::Internal => "api_error",
            ErrorKind::Unavailable => "overloaded_error",
        }
    }

    /// Portcullis's stable code, beside Anthropic's type.
    pub fn code(&self) -> Option<&'static str> {
        match self.kind {
            ErrorKind::ConnectYourKey => Some("connect_your_key"),
            ErrorKind::KeyRejected => Some("model_key_rejected"),
            _ => None,
        }
    }

    /// Whether the same request could succeed if simply sent again. The SDKs retry 408, 409,
    /// 429 and 5xx unless told not to; a refusal only a person can fix must say so.
    pub fn retryable(&self) -> bool {
        matches!(self.kind, ErrorKind::Upstream | ErrorKind::Unavailable)
    }

    /// The body Anthropic's SDKs parse: `{"type":"error","error":{"type","message"}}`, with our
    /// code and console URL as extra fields they ignore.
    pub fn body(&self, request_id: Option<&str>) -> serde_json::Value {
        let mut error = serde_json::json!({ "type": self.error_type(), "message": self.message });
        if let Some(code) = self.code() {
            error["code"] = code.into();
        }
        if let Some(url) = &self.console_url {
            error["console_url"] = url.clone().into();
        }
        let mut body = serde_json::json!({ "type": "error", "error": error });
        if let Some(id) = request_id {
            body["request_id"] = id.into();
        }
        body
    }
}

/// Exhaustive: every service failure has its Anthropic kind.
impl From<ServiceError> for GatewayError {
    fn from(e: ServiceError) -> GatewayError {
        let detail = format!("{e:?}");
        let (kind, message) = match e {
            ServiceError::BadRequest { message, .. } => (ErrorKind::InvalidRequest, message),
            ServiceError::Unauthenticated | ServiceError::InvalidCredentials => (
                ErrorKind::Authentication,
                "invalid Portcullis API token: send a live environment API token (pcs_live_...) in x-api-key or Authorization: Bearer".to_owned(),
            ),
            ServiceError::InvalidSetupToken => {
                (ErrorKind::Authentication, "invalid credential".to_owned())
            }
            ServiceError::Forbidden(p) => (
                ErrorKind::Permission,
                format!("this API token's role lacks the {p} permission"),
            ),
            ServiceError::ForbiddenReason(m) => (ErrorKind::Permission, m),
            ServiceError::NotFound => (
                ErrorKind::Authentication,
                "invalid Portcullis API token".to_owned(),
            ),
            ServiceError::Conflict(m) | ServiceError::Gone(m) => (ErrorKind::InvalidRequest, m),
            ServiceError::KeyUnavailable(_) => (
                ErrorKind::Permission,
                "this environment's encryption key is unavailable, so its model key cannot be opened".to_owned(),
            ),
            ServiceError::Unavailable(_) => (
                ErrorKind::Unavailable,
                "Portcullis is temporarily unavailable; retry shortly".to_owned(),
            ),
            ServiceError::Integrity(_) | ServiceError::Internal(_) => (
                ErrorKind::Internal,
                "internal error; the request id identifies it in the server log".to_owned(),
            ),
        };
        GatewayError {
            kind,
            message,
            console_url: None,
            detail: Some(detail),
        }
    }
}

impl From<portcullis_store::StoreError> for GatewayError {
    fn from(e: portcullis_store::StoreError) -> GatewayError {
        ServiceError::from(e).into()
    }
}
