//! AWS credentials, and signing a [`Request`] with them (SigV4, see [`crate::sigv4`]).

use std::fmt;

use portcullis_crypto::Secret;
use time::OffsetDateTime;

use crate::sigv4::{self, SigningInput};
use crate::{Error, Request};

/// An access key, as every AWS client needs one. `Debug` shows the access key id (it names the
/// credentials in use, is in every request's `Authorization` header and in CloudTrail, and
/// grants nothing alone) and never the secret or the session token.
#[derive(Clone)]
pub struct AwsCredentials {
    pub access_key_id: String,
    pub secret_access_key: Secret,
    /// For temporary credentials (STS, instance roles).
    pub session_token: Option<Secret>,
}

impl AwsCredentials {
    pub fn new(access_key_id: impl Into<String>, secret_access_key: Secret) -> AwsCredentials {
        AwsCredentials {
            access_key_id: access_key_id.into(),
            secret_access_key,
            session_token: None,
        }
    }

    /// Signs `request` for `region` and `service` at `at`: adds `host` (when absent),
    /// `x-amz-date` and the session token, then an `authorization` header over every header the
    /// request carries (so none travels unsigned) and its body. The request's target must be
    /// canonical already (see [`sigv4::uri_encode`] and [`sigv4::canonical_query`]).
    pub fn sign(
        &self,
        request: &mut Request,
        region: &str,
        service: &str,
        at: OffsetDateTime,
    ) -> Result<(), Error> {
        let amz_date = sigv4::amz_date(at);
        if request.header("host").is_none() {
            let host = request.endpoint.authority().to_owned();
            request.headers.push(("host".to_owned(), host));
        }
        request
            .headers
            .push(("x-amz-date".to_owned(), amz_date.clone()));
        if let Some(token) = &self.session_token {
            // Signed, like the SDKs do, so it cannot be swapped in transit.
            request
                .headers
                .push(("x-amz-security-token".to_owned(), token.expose().to_owned()));
        }
        let headers: Vec<(&str, &str)> = request
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let authorization = sigv4::authorization(&SigningInput {
            method: request.method.as_str(),
            path: request.path(),
            query: request.query(),
            headers: &headers,
            payload: &request.body,
            region,
            service,
            amz_date: &amz_date,
            access_key_id: &self.access_key_id,
            secret_access_key: self.secret_access_key.expose(),
        })?;
        request
            .headers
            .push(("authorization".to_owned(), authorization));
        Ok(())
    }
}

impl fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"[redacted]")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "[redacted]"),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::{Endpoint, Method};

    #[test]
    fn debug_shows_the_key_id_only() {
        let mut credentials = AwsCredentials::new("AKIDEXAMPLE", Secret::new("wJalrXUtnFEMI"));
        credentials.session_token = Some(Secret::new("session-token-secret"));
        let shown = format!("{credentials:?}");
        assert!(shown.contains("AKIDEXAMPLE"), "{shown}");
        assert!(
            !shown.contains("wJalr") && !shown.contains("session-token-secret"),
            "{shown}"
        );
    }

    /// The request-level signer gives the suite's `post-sts-header-before` signature: host from
    /// the endpoint, the date, the token, all signed.
    #[test]
    fn signing_a_request_adds_date_token_and_authorization() {
        let token = "AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfIeoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA==";
        let mut credentials = AwsCredentials::new(
            "AKIDEXAMPLE",
            Secret::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
        );
        credentials.session_token = Some(Secret::new(token));
        let mut request = Request::new(
            Method::POST,
            Endpoint::parse("https://example.amazonaws.com").unwrap(),
            "/",
        );
        let at = OffsetDateTime::from_unix_timestamp(1_440_938_160).unwrap();
        credentials
            .sign(&mut request, "us-east-1", "service", at)
            .unwrap();
        assert_eq!(request.header("x-amz-date"), Some("20150830T123600Z"));
        assert_eq!(request.header("x-amz-security-token"), Some(token));
        assert_eq!(
            request.header("authorization"),
            Some(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
                 SignedHeaders=host;x-amz-date;x-amz-security-token, \
                 Signature=85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead"
            )
        );
    }
}
