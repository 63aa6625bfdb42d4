#![allow(clippy::unwrap_used, clippy::panic)]
use portcullis_crypto::Secret;

use super::objects::tree_size_of;
use super::retention::retain_until;
use super::xml::parse_versions;
use super::*;
use portcullis_outbound::MAX_REMOTE_MESSAGE_CHARS as MAX_MESSAGE_CHARS;

fn config() -> S3AnchorConfig {
    let mut c = S3AnchorConfig::new(
        "eu-west-1",
        "pc-anchors",
        "AKIDEXAMPLE",
        Secret::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
    );
    c.credentials.session_token = Some(Secret::new("session-token-secret"));
    c
}

/// The S3 examples of AWS's SigV4 documentation ("Examples: Signature calculations in AWS
/// Signature Version 4", header-based authentication): the signer with S3's rules (a
/// payload hash header, path encoded once) gives AWS's signatures.
#[test]
fn l4_s3_signing_matches_the_aws_examples() {
    let mut c = S3AnchorConfig::new(
        "us-east-1",
        "examplebucket",
        "AKIAIOSFODNN7EXAMPLE",
        Secret::new("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
    );
    c.endpoint = "https://examplebucket.s3.amazonaws.com".to_owned();
    // 20130524T000000Z
    let at = OffsetDateTime::from_unix_timestamp(1_369_353_600).unwrap();
    let endpoint = Endpoint::parse(&c.endpoint).unwrap();
    let sign =
        |method: &str, key: &str, query: &[(&str, &str)], extra: &[(&str, &str)], body: &[u8]| {
            let query: Vec<(String, String)> = query
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            // Virtual-hosted style in the examples: the key is the whole path.
            let path = format!("/{}", uri_encode(key, true));
            let query = canonical_query(&query);
            let target = if query.is_empty() {
                path
            } else {
                format!("{path}?{query}")
            };
            let mut request = Request::new(
                Method::from_bytes(method.as_bytes()).unwrap(),
                endpoint.clone(),
                target,
            )
            .with_header("x-amz-content-sha256", sigv4::sha256_hex(body))
            .with_body(body);
            for (k, v) in extra {
                request = request.with_header(*k, *v);
            }
            c.credentials
                .sign(&mut request, &c.region, SERVICE, at)
                .unwrap();
            request.header("authorization").unwrap().to_owned()
        };
    let signature = |auth: String| auth.rsplit_once("Signature=").unwrap().1.to_owned();

    assert_eq!(
        signature(sign("GET", "test.txt", &[], &[("range", "bytes=0-9")], b"")),
        "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
    );
    let put = sign(
        "PUT",
        "test$file.text",
        &[],
        &[
            ("date", "Fri, 24 May 2013 00:00:00 GMT"),
            ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
        ],
        b"Welcome to Amazon S3.",
    );
    assert_eq!(
        signature(put),
        "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"
    );
    assert_eq!(
        signature(sign("GET", "", &[("lifecycle", "")], &[], b"")),
        "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543"
    );
    let list = sign("GET", "", &[("max-keys", "2"), ("prefix", "J")], &[], b"");
    assert!(list.starts_with(
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
         SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature="
    ));
    assert_eq!(
        signature(list),
        "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"
    );
}

#[test]
fn l4_s3_paths_and_queries_are_encoded_once() {
    assert_eq!(uri_encode("a b/c+d~e_f.g-h", true), "a%20b/c%2Bd~e_f.g-h");
    assert_eq!(uri_encode("a/b", false), "a%2Fb");
    assert_eq!(uri_encode("é%", true), "%C3%A9%25");
    assert_eq!(
        object_path("pc-anchors", Some("p x/0001.checkpoint")),
        "/pc-anchors/p%20x/0001.checkpoint"
    );
    assert_eq!(object_path("pc-anchors", None), "/pc-anchors");
    let q = |pairs: &[(&str, &str)]| {
        canonical_query(
            &pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<Vec<_>>(),
        )
    };
    assert_eq!(
        q(&[("versions", ""), ("prefix", "a/b c"), ("max-keys", "1000")]),
        "max-keys=1000&prefix=a%2Fb%20c&versions="
    );
    assert_eq!(q(&[]), "");
}

#[test]
fn l4_s3_object_keys_and_retention_dates() {
    let a = S3Anchors::new(config()).unwrap();
    let env = Uuid::nil();
    assert_eq!(
        a.object_key(env, 42),
        "portcullis-anchors/00000000-0000-0000-0000-000000000000/00000000000000000042.checkpoint"
    );
    assert_eq!(
        tree_size_of(
            &a.object_key(env, u64::MAX),
            &format!("portcullis-anchors/{env}/")
        ),
        Some(u64::MAX)
    );
    assert_eq!(tree_size_of("p/e/x.checkpoint", "p/e/"), None);
    assert_eq!(tree_size_of("p/e/+1.checkpoint", "p/e/"), None);
    assert_eq!(tree_size_of("p/e/12.txt", "p/e/"), None);
    let now = OffsetDateTime::from_unix_timestamp(1_440_938_160).unwrap();
    assert_eq!(retain_until(now, 1).unwrap(), "2015-08-31T12:36:00Z");
    assert_eq!(
        retain_until(now, DEFAULT_RETENTION_DAYS).unwrap(),
        "2022-08-30T12:36:00Z"
    );
    assert!(retain_until(now, u32::MAX).is_err());
}

#[test]
fn l4_s3_config_is_checked_and_never_shows_secrets() {
    let shown = format!("{:?}", S3Anchors::new(config()).unwrap());
    assert!(
        !shown.contains("wJalr") && !shown.contains("session-token-secret"),
        "{shown}"
    );
    assert!(shown.contains("AKIDEXAMPLE") && shown.contains("pc-anchors"));

    let with = |f: &dyn Fn(&mut S3AnchorConfig)| {
        let mut c = config();
        f(&mut c);
        S3Anchors::new(c)
    };
    assert!(with(&|c| c.endpoint = "http://127.0.0.1:9000".to_owned()).is_ok());
    assert!(with(&|c| c.prefix = String::new()).is_ok());
    for bad in [
        with(&|c| c.endpoint = "http://s3.example.com".to_owned()),
        with(&|c| c.endpoint = "https://s3.example.com/bucket".to_owned()),
        with(&|c| c.bucket = "Upper".to_owned()),
        with(&|c| c.bucket = "a/b".to_owned()),
        with(&|c| c.bucket = "ab".to_owned()),
        with(&|c| c.prefix = "no-slash".to_owned()),
        with(&|c| c.prefix = "/abs/".to_owned()),
        with(&|c| c.prefix = "a//b/".to_owned()),
        with(&|c| c.region = "eu west".to_owned()),
        with(&|c| c.retention_days = 0),
        with(&|c| c.retention_days = u32::MAX),
        with(&|c| c.credentials.secret_access_key = Secret::new("")),
    ] {
        match bad {
            Err(AnchorError::Config(m)) => {
                assert!(!m.contains("wJalr") && !m.contains("KMS"), "{m}")
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn l4_s3_listings_and_errors_are_parsed() {
    let page = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListVersionsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><Prefix>p/</Prefix>
<KeyMarker></KeyMarker><VersionIdMarker></VersionIdMarker>
<NextKeyMarker>p/2.checkpoint</NextKeyMarker><NextVersionIdMarker>v&amp;2</NextVersionIdMarker>
<MaxKeys>2</MaxKeys><IsTruncated>true</IsTruncated>
<Version><Key>p/1.checkpoint</Key><VersionId>v1</VersionId><IsLatest>true</IsLatest></Version>
<DeleteMarker><Key>p/2.checkpoint</Key><VersionId>d2</VersionId><IsLatest>true</IsLatest></DeleteMarker>
<Version><Key>p/2&amp;.checkpoint</Key><VersionId>v2</VersionId><IsLatest>false</IsLatest></Version>
</ListVersionsResult>"#;
    let parsed = parse_versions(page).unwrap();
    assert_eq!(
        parsed.versions,
        vec![
            ("p/1.checkpoint".to_owned(), "v1".to_owned()),
            ("p/2&.checkpoint".to_owned(), "v2".to_owned())
        ]
    );
    assert_eq!(parsed.delete_markers, 1);
    assert!(parsed.truncated);
    assert_eq!(
        parsed.next,
        Some(("p/2.checkpoint".to_owned(), "v&2".to_owned()))
    );
    assert!(parse_versions("<Error><Code>NoSuchBucket</Code></Error>").is_err());

    let error = S3Response {
        status: 403,
        headers: vec![],
        body: b"<Error><Code>SignatureDoesNotMatch</Code><Message>The request signature \
                we calculated does not match</Message><StringToSign>AWS4-HMAC-SHA256 \
                secret-ish</StringToSign><CanonicalRequest>GET</CanonicalRequest></Error>"
            .to_vec(),
    };
    let e = remote("PutObject", "s3://b/k".to_owned(), &error);
    let shown = format!("{e} {e:?}");
    assert!(
        shown.contains("SignatureDoesNotMatch") && shown.contains("403"),
        "{shown}"
    );
    assert!(!shown.contains("secret-ish"), "{shown}");
    assert_eq!(unescape("a&lt;b&#x41;&#66;&bogus;&"), "a<bAB&bogus;&");
    assert_eq!(
        sanitize(&"x\n".repeat(400)).chars().count(),
        MAX_MESSAGE_CHARS + 1
    );
}
