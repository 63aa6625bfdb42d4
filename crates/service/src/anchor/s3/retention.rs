//! Object Lock: the COMPLIANCE retention each checkpoint is written with, and reading it back.

use portcullis_outbound::Method;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use uuid::Uuid;

use super::xml::sanitize;
use super::{remote, Call, S3Anchors};
use crate::anchor::AnchorError;

/// The Object Lock state of one stored checkpoint, from `HeadObject`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectRetention {
    pub version_id: Option<String>,
    /// `COMPLIANCE` or `GOVERNANCE`; `None` for an unlocked object.
    pub mode: Option<String>,
    pub retain_until: Option<OffsetDateTime>,
}

impl S3Anchors {
    /// The Object Lock state of a stored checkpoint's current version (`HeadObject`), or
    /// `None` when there is none.
    pub async fn retention(
        &self,
        environment: Uuid,
        tree_size: u64,
    ) -> Result<Option<ObjectRetention>, AnchorError> {
        let key = self.object_key(environment, tree_size);
        let head = self
            .send(
                &mut self.session(),
                &Call {
                    operation: "HeadObject",
                    method: Method::HEAD,
                    key: Some(&key),
                    query: vec![],
                    headers: vec![],
                    body: b"",
                },
            )
            .await?;
        match head.status {
            200 => {
                let retain_until = match head.header("x-amz-object-lock-retain-until-date") {
                    Some(v) => Some(OffsetDateTime::parse(v, &Rfc3339).map_err(|_| {
                        AnchorError::Malformed(format!(
                            "retain-until date of {} is not RFC 3339",
                            self.location(&key)
                        ))
                    })?),
                    None => None,
                };
                Ok(Some(ObjectRetention {
                    version_id: head.header("x-amz-version-id").map(str::to_owned),
                    mode: head.header("x-amz-object-lock-mode").map(sanitize),
                    retain_until,
                }))
            }
            404 => Ok(None),
            _ => Err(remote("HeadObject", self.location(&key), &head)),
        }
    }
}

/// `now + days`, whole seconds, RFC 3339 in UTC (`2033-11-21T09:57:43Z`).
pub(super) fn retain_until(now: OffsetDateTime, days: u32) -> Result<String, AnchorError> {
    let too_far = || AnchorError::Config(format!("S3 retention of {days} days is out of range"));
    let now = OffsetDateTime::from_unix_timestamp(now.unix_timestamp()).map_err(|_| too_far())?;
    now.checked_add(time::Duration::days(i64::from(days)))
        .filter(|t| t.year() <= 9999)
        .ok_or_else(too_far)?
        .format(&Rfc3339)
        .map_err(|_| too_far())
}
