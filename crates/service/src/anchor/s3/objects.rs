//! The S3 calls of the anchor store: the bucket, writing a checkpoint once, and listing every
//! version of every checkpoint.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use md5::{Digest, Md5};
use portcullis_outbound::{Method, Session};
use std::time::Duration;
use time::OffsetDateTime;
use uuid::Uuid;

use super::retention::retain_until;
use super::xml::{escape, first_element, parse_versions};
use super::{remote, Call, S3Anchors, LIST_CONNECTIONS};
use crate::anchor::AnchorError;

impl S3Anchors {
    /// Creates the bucket with Object Lock enabled (idempotent when it already exists and is
    /// ours), then checks that Object Lock is on: a bucket created without it cannot hold
    /// locked objects, and S3 would refuse every `put`.
    pub async fn ensure_bucket(&self) -> Result<(), AnchorError> {
        let config = &self.inner.config;
        // us-east-1 is the default location; naming it in the body is an error there.
        let body = if config.region == "us-east-1" {
            String::new()
        } else {
            format!(
                "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
                 <LocationConstraint>{}</LocationConstraint></CreateBucketConfiguration>",
                escape(&config.region)
            )
        };
        let mut session = self.session();
        let created = self
            .send(
                &mut session,
                &Call {
                    operation: "CreateBucket",
                    method: Method::PUT,
                    key: None,
                    query: vec![],
                    headers: vec![(
                        "x-amz-bucket-object-lock-enabled".to_owned(),
                        "true".to_owned(),
                    )],
                    body: body.as_bytes(),
                },
            )
            .await?;
        let location = format!("s3://{}", config.bucket);
        match created.status {
            200 => {}
            409 if created.error_code() == "BucketAlreadyOwnedByYou" => {}
            _ => return Err(remote("CreateBucket", location, &created)),
        }
        let lock = self
            .send(
                &mut session,
                &Call {
                    operation: "GetObjectLockConfiguration",
                    method: Method::GET,
                    key: None,
                    query: vec![("object-lock".to_owned(), String::new())],
                    headers: vec![],
                    body: b"",
                },
            )
            .await?;
        match lock.status {
            200 => {
                let text = String::from_utf8_lossy(&lock.body);
                if first_element(&text, "ObjectLockEnabled") == Some("Enabled") {
                    Ok(())
                } else {
                    Err(AnchorError::Config(format!(
                        "{location} exists without Object Lock; enable it \
                         (PutObjectLockConfiguration, on a versioned bucket) or use a new bucket"
                    )))
                }
            }
            404 => Err(AnchorError::Config(format!(
                "{location} exists without Object Lock; enable it \
                 (PutObjectLockConfiguration, on a versioned bucket) or use a new bucket"
            ))),
            _ => Err(remote("GetObjectLockConfiguration", location, &lock)),
        }
    }

    /// Stores a signed checkpoint under COMPLIANCE retention. Idempotent for identical
    /// content; `AnchorError::Conflict` when the key already holds something else. Returns the
    /// object's `s3://` location.
    pub async fn put(
        &self,
        environment: Uuid,
        tree_size: u64,
        signed: &str,
    ) -> Result<String, AnchorError> {
        let key = self.object_key(environment, tree_size);
        let location = self.location(&key);
        let body = signed.as_bytes();
        let retain_until = retain_until(OffsetDateTime::now_utc(), self.config().retention_days)?;
        let put = Call {
            operation: "PutObject",
            method: Method::PUT,
            key: Some(&key),
            query: vec![],
            headers: vec![
                // S3 requires an integrity header on every PUT that sets a retention.
                ("content-md5".to_owned(), BASE64.encode(Md5::digest(body))),
                (
                    "content-type".to_owned(),
                    "text/plain; charset=utf-8".to_owned(),
                ),
                // Refuse to replace an existing object: 412 when the key exists.
                ("if-none-match".to_owned(), "*".to_owned()),
                ("x-amz-object-lock-mode".to_owned(), "COMPLIANCE".to_owned()),
                (
                    "x-amz-object-lock-retain-until-date".to_owned(),
                    retain_until,
                ),
            ],
            body,
        };
        let mut session = self.session();
        let mut answer = self.send(&mut session, &put).await?;
        if answer.status == 409 && answer.error_code() == "ConditionalRequestConflict" {
            // Another conditional write on the same key was in flight; once it settles, this
            // one either succeeds or meets the object with 412.
            tokio::time::sleep(Duration::from_millis(200)).await;
            answer = self.send(&mut session, &put).await?;
        }
        match answer.status {
            200 => Ok(location),
            412 => {
                let existing = self
                    .send(
                        &mut session,
                        &Call {
                            operation: "GetObject",
                            method: Method::GET,
                            key: Some(&key),
                            query: vec![],
                            headers: vec![],
                            body: b"",
                        },
                    )
                    .await?;
                match existing.status {
                    200 if existing.body == body => Ok(location),
                    200 => Err(AnchorError::Conflict {
                        path: location.into(),
                    }),
                    _ => Err(remote("GetObject", location, &existing)),
                }
            }
            _ => Err(remote("PutObject", location, &answer)),
        }
    }

    /// Every anchored checkpoint of an environment, by tree size. Reads every version of every
    /// key, so a checkpoint hidden behind a delete marker or shadowed by a later version is still
    /// returned: two different texts for one size is a fork, and the verifier will reject
    /// whichever does not match the chain. Identical versions are returned once.
    pub async fn list(&self, environment: Uuid) -> Result<Vec<(u64, String)>, AnchorError> {
        self.list_after(environment, 0).await
    }

    /// The anchored checkpoints of an environment with a tree size above `after`, as
    /// [`S3Anchors::list`] returns them: the listing starts after that size's key
    /// (`key-marker`), so only newer objects are listed and read (keys sort by size, which is
    /// zero-padded).
    pub async fn list_after(
        &self,
        environment: Uuid,
        after: u64,
    ) -> Result<Vec<(u64, String)>, AnchorError> {
        let versions = self.versions_after(environment, after).await?;
        self.fetch(versions).await
    }

    /// The tree sizes anchored for an environment above `after`, ascending, without reading
    /// the objects (one listing).
    pub async fn sizes_after(
        &self,
        environment: Uuid,
        after: u64,
    ) -> Result<Vec<u64>, AnchorError> {
        let mut sizes: Vec<u64> = self
            .versions_after(environment, after)
            .await?
            .into_iter()
            .map(|(size, _, _)| size)
            .collect();
        sizes.sort_unstable();
        sizes.dedup();
        Ok(sizes)
    }

    /// Every version anchored at one tree size (oldest first, identical ones once): normally
    /// one; two different texts are a fork.
    pub async fn at(&self, environment: Uuid, tree_size: u64) -> Result<Vec<String>, AnchorError> {
        let key = self.object_key(environment, tree_size);
        let versions = self
            .versions(&key, None)
            .await?
            .into_iter()
            .filter(|(k, _)| *k == key)
            .map(|(k, v)| (tree_size, k, v))
            .collect();
        Ok(self
            .fetch(versions)
            .await?
            .into_iter()
            .map(|(_, text)| text)
            .collect())
    }

    /// Every version under an environment's prefix with a tree size above `after`:
    /// (size, key, version id), in listing order.
    async fn versions_after(
        &self,
        environment: Uuid,
        after: u64,
    ) -> Result<Vec<(u64, String, String)>, AnchorError> {
        let prefix = format!("{}{environment}/", self.config().prefix);
        // Without a version-id-marker the listing begins with the key after the marker.
        let start = (after > 0).then(|| self.object_key(environment, after));
        Ok(self
            .versions(&prefix, start)
            .await?
            .into_iter()
            .filter_map(|(key, version)| {
                tree_size_of(&key, &prefix)
                    .filter(|size| *size > after)
                    .map(|size| (size, key, version))
            })
            .collect())
    }

    /// Every object version under `prefix` (after key `start`, if given): (key, version id), in
    /// listing order. Delete markers are counted and warned about, never returned.
    async fn versions(
        &self,
        prefix: &str,
        start: Option<String>,
    ) -> Result<Vec<(String, String)>, AnchorError> {
        let mut session = self.session();
        let mut versions: Vec<(String, String)> = vec![];
        let mut delete_markers = 0usize;
        let mut marker: Option<(String, String)> = None;
        loop {
            let mut query = vec![
                ("versions".to_owned(), String::new()),
                ("prefix".to_owned(), prefix.to_owned()),
                ("max-keys".to_owned(), self.page_size.to_string()),
            ];
            if let Some((key, version)) = &marker {
                query.push(("key-marker".to_owned(), key.clone()));
                query.push(("version-id-marker".to_owned(), version.clone()));
            } else if let Some(start) = &start {
                query.push(("key-marker".to_owned(), start.clone()));
            }
            let page = self
                .send(
                    &mut session,
                    &Call {
                        operation: "ListObjectVersions",
                        method: Method::GET,
                        key: None,
                        query,
                        headers: vec![],
                        body: b"",
                    },
                )
                .await?;
            if page.status != 200 {
                return Err(remote("ListObjectVersions", self.location(prefix), &page));
            }
            let text = std::str::from_utf8(&page.body).map_err(|_| {
                AnchorError::Malformed("ListObjectVersions answer is not UTF-8".to_owned())
            })?;
            let listing = parse_versions(text)?;
            delete_markers += listing.delete_markers;
            versions.extend(listing.versions);
            match listing.next {
                Some(next) if listing.truncated => {
                    if marker.as_ref() == Some(&next) {
                        return Err(AnchorError::Malformed(
                            "ListObjectVersions pagination does not advance".to_owned(),
                        ));
                    }
                    marker = Some(next);
                }
                None if listing.truncated => {
                    return Err(AnchorError::Malformed(
                        "ListObjectVersions is truncated without a next marker".to_owned(),
                    ))
                }
                _ => break,
            }
        }
        if delete_markers > 0 {
            // Deleting a locked checkpoint only hides it; someone tried.
            tracing::warn!(
                prefix,
                delete_markers,
                "anchored checkpoints have delete markers: someone tried to delete them"
            );
        }
        Ok(versions)
    }

    /// Reads the listed versions: by size, oldest version first within a size, identical
    /// versions of one size once.
    async fn fetch(
        &self,
        mut versions: Vec<(u64, String, String)>,
    ) -> Result<Vec<(u64, String)>, AnchorError> {
        // By size, and oldest version first within a size: S3 lists each key's versions newest
        // first, so reverse, then sort stably.
        versions.reverse();
        versions.sort_by_key(|(size, _, _)| *size);
        // A few connections read the objects at once (interleaved, so each reads about the
        // same number); the order is restored afterwards from each version's index.
        let workers = (0..LIST_CONNECTIONS.min(versions.len())).map(|worker| {
            let versions = &versions;
            async move {
                let mut session = self.session();
                let mut texts = vec![];
                for index in (worker..versions.len()).step_by(LIST_CONNECTIONS) {
                    let (_, key, version_id) = &versions[index];
                    texts.push((
                        index,
                        self.get_version(&mut session, key, version_id).await?,
                    ));
                }
                Ok::<_, AnchorError>(texts)
            }
        });
        let mut texts: Vec<(usize, String)> = futures_util::future::try_join_all(workers)
            .await?
            .into_iter()
            .flatten()
            .collect();
        texts.sort_by_key(|(index, _)| *index);
        let mut out: Vec<(u64, String)> = Vec::with_capacity(texts.len());
        for (index, text) in texts {
            let size = versions[index].0;
            let seen = out
                .iter()
                .rev()
                .take_while(|(s, _)| *s == size)
                .any(|(_, t)| *t == text);
            if !seen {
                out.push((size, text));
            }
        }
        Ok(out)
    }

    async fn get_version(
        &self,
        session: &mut Session<'_>,
        key: &str,
        version_id: &str,
    ) -> Result<String, AnchorError> {
        let object = self
            .send(
                session,
                &Call {
                    operation: "GetObject",
                    method: Method::GET,
                    key: Some(key),
                    query: vec![("versionId".to_owned(), version_id.to_owned())],
                    headers: vec![],
                    body: b"",
                },
            )
            .await?;
        if object.status != 200 {
            return Err(remote("GetObject", self.location(key), &object));
        }
        String::from_utf8(object.body)
            .map_err(|_| AnchorError::Malformed(format!("{} is not UTF-8", self.location(key))))
    }
}

/// The tree size in `<prefix><tree size>.checkpoint`, if the key has that shape.
pub(super) fn tree_size_of(key: &str, prefix: &str) -> Option<u64> {
    key.strip_prefix(prefix)?
        .strip_suffix(".checkpoint")
        .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))?
        .parse()
        .ok()
}
