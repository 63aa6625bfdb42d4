//! Where the anchor bucket is and as whom, checked once when the store is built.

use portcullis_crypto::Secret;
use portcullis_outbound::AwsCredentials;
use time::OffsetDateTime;

use super::retention::retain_until;
use crate::anchor::AnchorError;

/// Default key prefix inside the bucket.
pub const DEFAULT_PREFIX: &str = "portcullis-anchors/";
/// Default COMPLIANCE retention: 7 years (7 × 365 + 2 leap days).
pub const DEFAULT_RETENTION_DAYS: u32 = 2557;

/// How to reach the anchor bucket and as whom. `Debug` is redacted by `AwsCredentials`.
#[derive(Clone, Debug)]
pub struct S3AnchorConfig {
    /// `https://s3.<region>.amazonaws.com`, or `http://` on a loopback host (a local
    /// S3-compatible test server). No path: the bucket goes into each request's path.
    pub endpoint: String,
    /// e.g. `eu-west-1`; part of every signature's credential scope.
    pub region: String,
    pub bucket: String,
    /// Prepended to every object key; default [`DEFAULT_PREFIX`]. Empty, or ends with `/`.
    pub prefix: String,
    pub credentials: AwsCredentials,
    /// COMPLIANCE retention of each new checkpoint, in days; default [`DEFAULT_RETENTION_DAYS`].
    pub retention_days: u32,
}

impl S3AnchorConfig {
    /// A configuration for AWS S3 in `region` with the default endpoint, prefix and retention.
    pub fn new(
        region: impl Into<String>,
        bucket: impl Into<String>,
        access_key_id: impl Into<String>,
        secret_access_key: Secret,
    ) -> S3AnchorConfig {
        let region = region.into();
        S3AnchorConfig {
            endpoint: S3AnchorConfig::aws_endpoint(&region),
            region,
            bucket: bucket.into(),
            prefix: DEFAULT_PREFIX.to_owned(),
            credentials: AwsCredentials::new(access_key_id, secret_access_key),
            retention_days: DEFAULT_RETENTION_DAYS,
        }
    }

    /// `https://s3.<region>.amazonaws.com`.
    pub fn aws_endpoint(region: &str) -> String {
        format!("https://s3.{region}.amazonaws.com")
    }
}

pub(super) fn validate(config: &S3AnchorConfig) -> Result<(), AnchorError> {
    let bad = |why: String| Err(AnchorError::Config(why));
    let bucket = &config.bucket;
    // The rules of S3 bucket names that matter here: a path segment, and a DNS label set.
    if !(3..=63).contains(&bucket.len())
        || !bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        || !bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
        || !bucket.ends_with(|c: char| c.is_ascii_alphanumeric())
    {
        return bad(format!(
            "S3 bucket `{bucket}`: 3 to 63 lower-case letters, digits, `-` and `.`, \
             starting and ending with a letter or digit"
        ));
    }
    if config.region.is_empty()
        || !config
            .region
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return bad(format!(
            "S3 region `{}` is not a region name",
            config.region
        ));
    }
    let prefix = &config.prefix;
    if !(prefix.is_empty() || prefix.ends_with('/'))
        || prefix.starts_with('/')
        || prefix.contains("//")
        || prefix.chars().any(char::is_control)
        || prefix.len() > 512
    {
        return bad(format!(
            "S3 prefix `{prefix}`: empty, or relative path segments ending with `/`"
        ));
    }
    // It goes into `Credential=<id>/<scope>, ...`: no separators or spaces.
    let credentials = &config.credentials;
    if credentials.access_key_id.is_empty()
        || credentials
            .access_key_id
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '/' | ','))
    {
        return bad("S3 access key id is empty or holds `/`, `,` or whitespace".to_owned());
    }
    if credentials.secret_access_key.expose().is_empty() {
        return bad("S3 secret access key is empty".to_owned());
    }
    if config.retention_days == 0 {
        return bad("S3 retention_days must be at least 1".to_owned());
    }
    retain_until(OffsetDateTime::now_utc(), config.retention_days).map(|_| ())
}
