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

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use portcullis_crypto::Secret;
use portcullis_service::anchor::{AnchorError, Anchors, S3AnchorConfig, S3Anchors};
use time::OffsetDateTime;
use uuid::Uuid;

/// A moto server child process, killed (and its log removed) when dropped.
struct Moto {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

impl Moto {
    /// `moto_server`, else `python3 -m moto.server` (a pyenv shim appears only after
    /// `pyenv rehash`); `None` when neither is installed. Installed but failing to start is a
    /// failure, not a skip.
    fn start() -> Option<Moto> {
        let candidates: [&[&str]; 2] = [&["moto_server"], &["python3", "-m", "moto.server"]];
        let program = candidates.into_iter().find(|argv| {
            Command::new(argv[0])
                .args(&argv[1..])
                .arg("--help")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })?;
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // A file, not a pipe: werkzeug logs every request, and a pipe nobody reads would
        // eventually block the server.
        let log = std::env::temp_dir().join(format!(
            "portcullis-moto-anchor-{}-{port}.log",
            std::process::id()
        ));
        let log_file = std::fs::File::create(&log).unwrap();
        let child = Command::new(program[0])
            .args(&program[1..])
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .unwrap();
        let mut moto = Moto { child, port, log };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if http(port, "GET", "/moto-api/", &[], "").is_some_and(|(s, _)| s == 200) {
                return Some(moto);
            }
            if let Some(status) = moto.child.try_wait().unwrap() {
                panic!(
                    "moto exited with {status} before answering:\n{}",
                    moto.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "moto did not answer within 60 s:\n{}",
                moto.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates an IAM user allowed `s3:*` with an access key (while moto still accepts
    /// anything), then makes moto check every request's signature and permissions.
    fn enforce_auth(&self) -> (String, String) {
        let iam = |body: &str| {
            // Unchecked for now; the credential scope only routes the call to IAM.
            let auth =
                "AWS4-HMAC-SHA256 Credential=AKIASETUP/20260101/us-east-1/iam/aws4_request, \
                        SignedHeaders=host, Signature=0";
            let (status, text) = http(
                self.port,
                "POST",
                "/",
                &[
                    ("Authorization", auth),
                    ("Content-Type", "application/x-www-form-urlencoded"),
                ],
                &format!("{body}&Version=2010-05-08"),
            )
            .unwrap();
            assert_eq!(status, 200, "{body}: {text}");
            text
        };
        iam("Action=CreateUser&UserName=anchor-writer");
        let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#;
        iam(&format!(
            "Action=PutUserPolicy&UserName=anchor-writer&PolicyName=s3&PolicyDocument={}",
            form_encode(policy)
        ));
        let keys = iam("Action=CreateAccessKey&UserName=anchor-writer");
        let between = |tag: &str| {
            let open = format!("<{tag}>");
            let start = keys.find(&open).unwrap() + open.len();
            let end = keys[start..].find('<').unwrap();
            keys[start..start + end].to_owned()
        };
        let credentials = (between("AccessKeyId"), between("SecretAccessKey"));
        self.check_signatures(true);
        credentials
    }

    /// Switches moto's signature and permission checks on or off.
    ///
    /// Off is needed around `list`: moto recomputes the signature over the *decoded* query
    /// string, so any request with `%2F` in a query value (a `prefix=` ending in `/`) fails
    /// with SignatureDoesNotMatch under moto, boto3's own `list_object_versions` and
    /// `list_objects_v2` included (checked with boto3 1.43 against moto 5.2.1). S3 signs the
    /// encoded form, which is what `S3Anchors` sends.
    fn check_signatures(&self, on: bool) {
        let count = if on { "0" } else { "inf" };
        let (status, text) = http(self.port, "POST", "/moto-api/reset-auth", &[], count).unwrap();
        assert_eq!(status, 200, "{text}");
    }
}

fn form_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A blocking HTTP/1.1 exchange for setup calls; `None` when nothing listens yet.
fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Option<(u16, String)> {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).ok()?;
    tcp.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\
         Content-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    tcp.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    tcp.read_to_string(&mut response).ok()?;
    let status = response.split(' ').nth(1)?.parse().ok()?;
    let text = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((status, text))
}

fn moto_or_skip() -> Option<Moto> {
    let moto = Moto::start();
    if moto.is_none() {
        // Straight to the process's stderr: the harness swallows `eprintln!` of a passing
        // test, and a skip must not look like a pass.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: moto not installed (pip install 'moto[server]')"
        );
    }
    moto
}

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
    let Some(moto) = moto_or_skip() else { return };
    let (key_id, secret) = moto.enforce_auth();
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
    moto.check_signatures(true);
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
    let Some(moto) = moto_or_skip() else { return };
    let wrong = "wrong-secret-XYZZY";

    // moto's default: no checks at all, so a bad signature silently works.
    let lax = S3Anchors::new(config(&moto, "pc-anchors-lax", "AKIANOBODY", wrong)).unwrap();
    lax.ensure_bucket().await.unwrap();
    lax.put(Uuid::now_v7(), 1, "accepted unchecked")
        .await
        .unwrap();

    let (key_id, secret) = moto.enforce_auth();
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
