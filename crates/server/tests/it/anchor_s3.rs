//! S3 Object Lock anchors (control L4) against moto's S3 server, with moto's signature
//! checking switched on: every request below is signed by our SigV4 code and verified by
//! moto (which recomputes it with botocore). Skipped, saying so on stderr, when moto is not
//! installed.
//!
//! What moto 5.x enforces, and so what these tests can prove: `If-None-Match: *` (412),
//! Content-MD5 (or a checksum) on Object Lock PUTs, COMPLIANCE retention against deleting a
//! version (403 AccessDenied), signatures and access keys once auth is enabled. What it does
//! not: `GET ?retention` (GetObjectRetention) is not implemented, it answers with the object
//! itself and its lock headers; so retention is read with HEAD, as `S3Anchors::retention` does.

use portcullis_crypto::Secret;
use portcullis_outbound::testing::Moto;
use portcullis_service::anchor::{AnchorError, Anchors, S3AnchorConfig, S3Anchors};
use time::OffsetDateTime;
use uuid::Uuid;

fn config(moto: &Moto, bucket: &str, key_id: &str, secret: &str) -> S3AnchorConfig {
    let mut c = S3AnchorConfig::new("eu-west-1", bucket, key_id, Secret::new(secret));
    c.endpoint = moto.endpoint();
    c
}

fn remote_code(result: Result<impl std::fmt::Debug, AnchorError>) -> (u16, String) {
    match result {
        Err(AnchorError::Remote { status, code, .. }) => (status, code),
        other => panic!("expected an S3 error, got {other:?}"),
    }
}

/// Control L4: checkpoints anchored in S3 are write-once (same content idempotent, different
/// content refused), listed in order across pages, locked in COMPLIANCE mode until
/// now + retention_days, and their versions cannot be deleted; a delete marker does not hide
/// them from `list`.
#[tokio::test]
async fn l4_s3_anchors_are_write_once_and_locked() {
    let Some(moto) = Moto::start() else { return };
    let (key_id, secret) = moto.enforce_auth("s3:*");
    let mut c = config(&moto, "pc-anchors-l4", &key_id, &secret);
    c.retention_days = 30;
    let s3 = S3Anchors::new(c).unwrap().with_page_size(2);

    s3.ensure_bucket().await.unwrap();
    s3.ensure_bucket().await.unwrap(); // idempotent: already ours

    let env = Uuid::now_v7();
    let before = OffsetDateTime::now_utc();
    let at = s3.put(env, 3, "checkpoint three").await.unwrap();
    assert_eq!(
        at,
        format!("s3://pc-anchors-l4/portcullis-anchors/{env}/00000000000000000003.checkpoint")
    );
    s3.put(env, 3, "checkpoint three").await.unwrap();
    match s3.put(env, 3, "forged three").await {
        Err(AnchorError::Conflict { path }) => assert_eq!(path.to_str(), Some(at.as_str())),
        other => panic!("{other:?}"),
    }
    // Through the enum as the server will use it; a page size of 2 makes `list` paginate.
    let anchors = Anchors::from(s3.clone());
    anchors.put(env, 10, "checkpoint ten").await.unwrap();
    anchors.put(env, 7, "checkpoint seven").await.unwrap();
    let expected = vec![
        (3, "checkpoint three".to_owned()),
        (7, "checkpoint seven".to_owned()),
        (10, "checkpoint ten".to_owned()),
    ];
    moto.check_signatures(false);
    assert_eq!(anchors.list(env).await.unwrap(), expected);
    assert!(anchors.list(Uuid::now_v7()).await.unwrap().is_empty());
    // What the checkpointer reads before signing: only what is newer than it verified.
    assert_eq!(anchors.list_after(env, 3).await.unwrap(), expected[1..]);
    assert_eq!(anchors.list_after(env, 7).await.unwrap(), expected[2..]);
    assert!(anchors.list_after(env, 10).await.unwrap().is_empty());
    assert_eq!(anchors.sizes_after(env, 0).await.unwrap(), vec![3, 7, 10]);
    assert_eq!(anchors.sizes_after(env, 7).await.unwrap(), vec![10]);
    assert_eq!(
        anchors.at(env, 7).await.unwrap(),
        vec!["checkpoint seven".to_owned()]
    );
    assert!(anchors.at(env, 8).await.unwrap().is_empty());
    moto.check_signatures(true);
    assert_eq!(
        anchors.to_string(),
        "s3://pc-anchors-l4/portcullis-anchors/"
    );

    // COMPLIANCE until now + 30 days (to the second the PUT was signed).
    let retention = s3.retention(env, 3).await.unwrap().unwrap();
    assert_eq!(retention.mode.as_deref(), Some("COMPLIANCE"));
    let until = retention.retain_until.unwrap();
    let expected_until = before + time::Duration::days(30);
    assert!(
        (until - expected_until).abs() < time::Duration::seconds(60),
        "{until} vs {expected_until}"
    );
    let version = retention.version_id.clone().unwrap();
    let key = s3.object_key(env, 3);

    // GetObjectRetention: S3 answers a <Retention> document; moto 5.x has no such call and
    // answers with the object and its lock headers. Either way the lock must show.
    let r = s3
        .raw("GET", Some(&key), &[("retention", "")], &[], b"")
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let body = String::from_utf8_lossy(&r.body);
    if body.contains("<Retention") {
        assert!(body.contains("<Mode>COMPLIANCE</Mode>"), "{body}");
    } else {
        assert_eq!(body, "checkpoint three");
        assert_eq!(r.header("x-amz-object-lock-mode"), Some("COMPLIANCE"));
    }

    // Deleting the locked version is refused by the lock, not by IAM: the same user deletes
    // an unlocked object's version in the same bucket.
    let r = s3
        .raw("DELETE", Some(&key), &[("versionId", &version)], &[], b"")
        .await
        .unwrap();
    assert_eq!((r.status, r.error_code().as_str()), (403, "AccessDenied"));
    let r = s3
        .raw("PUT", Some("scratch/unlocked"), &[], &[], b"not locked")
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));
    let unlocked = r.header("x-amz-version-id").unwrap().to_owned();
    let r = s3
        .raw(
            "DELETE",
            Some("scratch/unlocked"),
            &[("versionId", &unlocked)],
            &[],
            b"",
        )
        .await
        .unwrap();
    assert_eq!(r.status, 204);

    // A plain DELETE is allowed (S3 too): it only adds a delete marker. The checkpoint is still
    // listed, because `list` reads versions, not just current objects.
    let r = s3.raw("DELETE", Some(&key), &[], &[], b"").await.unwrap();
    assert_eq!(
        (r.status, r.header("x-amz-delete-marker")),
        (204, Some("true"))
    );
    assert!(s3.retention(env, 3).await.unwrap().is_none());
    moto.check_signatures(false);
    assert_eq!(anchors.list(env).await.unwrap(), expected);
    moto.check_signatures(true);
    // Behind a delete marker the key looks free, so someone holding the credentials could
    // write a forgery as a new version; the original version stays, so `list` returns both
    // and verification rejects the forgery.
    let r = s3
        .raw("PUT", Some(&key), &[], &[], b"forged three")
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    moto.check_signatures(false);
    let listed = anchors.list(env).await.unwrap();
    let at_three = anchors.at(env, 3).await.unwrap();
    moto.check_signatures(true);
    assert_eq!(
        at_three,
        vec!["checkpoint three".to_owned(), "forged three".to_owned()]
    );
    assert_eq!(
        listed,
        vec![
            (3, "checkpoint three".to_owned()),
            (3, "forged three".to_owned()),
            (7, "checkpoint seven".to_owned()),
            (10, "checkpoint ten".to_owned()),
        ]
    );
    // The writer itself now meets the forgery and reports the fork.
    assert!(matches!(
        s3.put(env, 3, "checkpoint three").await,
        Err(AnchorError::Conflict { .. })
    ));
}

/// Control L4: S3 refuses badly signed requests and unknown keys, and the errors say so
/// without the secret. moto checks nothing by default (`INITIAL_NO_AUTH_ACTION_COUNT` is
/// infinite), so the same bad request succeeds before auth is switched on.
#[tokio::test]
async fn l4_s3_bad_credentials_are_refused() {
    let Some(moto) = Moto::start() else { return };
    let wrong = "wrong-secret-XYZZY";

    // moto's default: no checks at all, so a bad signature silently works.
    let lax = S3Anchors::new(config(&moto, "pc-anchors-lax", "AKIANOBODY", wrong)).unwrap();
    lax.ensure_bucket().await.unwrap();
    lax.put(Uuid::now_v7(), 1, "accepted unchecked")
        .await
        .unwrap();

    let (key_id, secret) = moto.enforce_auth("s3:*");
    let good = S3Anchors::new(config(&moto, "pc-anchors-auth", &key_id, &secret)).unwrap();
    good.ensure_bucket().await.unwrap();

    let env = Uuid::now_v7();
    let bad_secret = S3Anchors::new(config(&moto, "pc-anchors-auth", &key_id, wrong)).unwrap();
    let unknown_key =
        S3Anchors::new(config(&moto, "pc-anchors-auth", "AKIANOBODY", wrong)).unwrap();

    let err = bad_secret.put(env, 1, "checkpoint one").await.unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(
        !shown.contains(wrong) && !shown.contains(&secret),
        "{shown}"
    );
    assert_eq!(
        remote_code(Err::<(), _>(err)),
        (403, "SignatureDoesNotMatch".to_owned())
    );
    assert_eq!(
        remote_code(bad_secret.list(env).await),
        (403, "SignatureDoesNotMatch".to_owned())
    );
    assert_eq!(
        remote_code(unknown_key.put(env, 1, "checkpoint one").await),
        (403, "InvalidAccessKeyId".to_owned())
    );
    assert_eq!(
        remote_code(unknown_key.ensure_bucket().await),
        (403, "InvalidAccessKeyId".to_owned())
    );
    // A bucket without Object Lock is refused by `ensure_bucket`, and S3 refuses locked PUTs
    // into it, so checkpoints never land unprotected.
    let plain = S3Anchors::new(config(&moto, "pc-anchors-plain", &key_id, &secret)).unwrap();
    let location = "<CreateBucketConfiguration><LocationConstraint>eu-west-1\
                    </LocationConstraint></CreateBucketConfiguration>";
    let r = plain
        .raw("PUT", None, &[], &[], location.as_bytes())
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    match plain.ensure_bucket().await {
        Err(AnchorError::Config(m)) => assert!(m.contains("without Object Lock"), "{m}"),
        other => panic!("{other:?}"),
    }
    let (status, _) = remote_code(plain.put(env, 1, "checkpoint one").await);
    assert_eq!(status, 400);

    // Nothing was written by the refused requests; the right key works.
    assert!(good.retention(env, 1).await.unwrap().is_none());
    good.put(env, 1, "checkpoint one").await.unwrap();
    assert!(good.retention(env, 1).await.unwrap().is_some());
    moto.check_signatures(false); // see `check_signatures`
    assert_eq!(
        good.list(env).await.unwrap(),
        vec![(1, "checkpoint one".to_owned())]
    );
}
