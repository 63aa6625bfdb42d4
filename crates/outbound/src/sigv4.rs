//! AWS Signature Version 4. The signature is what proves to KMS that a
//! request comes from the holder of the secret access key and was not altered on the way
//! (method, path, the signed headers and the body hash are all covered), and the credential
//! scope limits a captured signature to one day, region and service.
//!
//! This module must never return, log or format the secret access key or any key derived from
//! it: only the final signature leaves it. It also never chooses which headers to sign: it
//! signs exactly the headers it is given, so a caller cannot be surprised by a header that
//! travels unsigned because the signer skipped it.
//!
//! Checked against the published `aws-sig-v4-test-suite` vectors (the tests below) and, for S3,
//! against the examples of AWS's documentation (`portcullis-service`'s `anchor::s3`).

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::Error;

pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// One request to sign. `path` and `query` are taken as already canonical (URI-encoded with
/// [`uri_encode`], query pairs sorted by [`canonical_query`]): the caller sends exactly what was
/// signed.
#[derive(Clone, Copy)]
pub struct SigningInput<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    /// Every header to sign, `host` and `x-amz-date` included; names in any case.
    pub headers: &'a [(&'a str, &'a str)],
    pub payload: &'a [u8],
    pub region: &'a str,
    pub service: &'a str,
    /// `YYYYMMDDTHHMMSSZ`, the same value as the `x-amz-date` header.
    pub amz_date: &'a str,
    pub access_key_id: &'a str,
    pub secret_access_key: &'a str,
}

impl std::fmt::Debug for SigningInput<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The payload may hold a data key in base64 and the secret is the secret: neither is
        // shown, so a stray `{:?}` in a log cannot leak them.
        f.debug_struct("SigningInput")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("region", &self.region)
            .field("service", &self.service)
            .field("amz_date", &self.amz_date)
            .field("access_key_id", &self.access_key_id)
            .field("payload_len", &self.payload.len())
            .finish_non_exhaustive()
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Result<[u8; 32], Error> {
    // HMAC takes keys of any length, so this error cannot happen; it is still an error rather
    // than a panic because the workspace forbids panics outside tests.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .map_err(|_| Error::Signing("HMAC-SHA256 rejected its key"))?;
    mac.update(data);
    Ok(mac.finalize().into_bytes().into())
}

/// The sorted, lower-cased headers: (`name:value\n...`, `name;name`).
fn canonical_headers(headers: &[(&str, &str)]) -> (String, String) {
    let mut list: Vec<(String, String)> = Vec::with_capacity(headers.len());
    for (name, value) in headers {
        let name = name.trim().to_ascii_lowercase();
        // Sequential whitespace is folded because proxies may re-fold it; AWS compares the
        // folded form.
        let value = value.split_whitespace().collect::<Vec<_>>().join(" ");
        match list.iter_mut().find(|(n, _)| *n == name) {
            Some((_, existing)) => {
                existing.push(',');
                existing.push_str(&value);
            }
            None => list.push((name, value)),
        }
    }
    list.sort_by(|a, b| a.0.cmp(&b.0));
    let mut canonical = String::new();
    for (name, value) in &list {
        canonical.push_str(name);
        canonical.push(':');
        canonical.push_str(value);
        canonical.push('\n');
    }
    let signed = list
        .iter()
        .map(|(n, _)| n.as_str())
        .collect::<Vec<_>>()
        .join(";");
    (canonical, signed)
}

/// The signed header names, `;`-separated, as they appear in the `Authorization` header.
pub fn signed_headers(input: &SigningInput<'_>) -> String {
    canonical_headers(input.headers).1
}

pub fn canonical_request(input: &SigningInput<'_>) -> String {
    let (headers, signed) = canonical_headers(input.headers);
    format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        input.method,
        input.path,
        input.query,
        headers,
        signed,
        sha256_hex(input.payload)
    )
}

fn date_part(amz_date: &str) -> Result<&str, Error> {
    match amz_date.get(..8) {
        Some(d) if amz_date.len() == 16 && d.bytes().all(|b| b.is_ascii_digit()) => Ok(d),
        _ => Err(Error::Signing("malformed x-amz-date for signing")),
    }
}

pub fn credential_scope(input: &SigningInput<'_>) -> Result<String, Error> {
    Ok(format!(
        "{}/{}/{}/aws4_request",
        date_part(input.amz_date)?,
        input.region,
        input.service
    ))
}

pub fn string_to_sign(input: &SigningInput<'_>) -> Result<String, Error> {
    Ok(format!(
        "{ALGORITHM}\n{}\n{}\n{}",
        input.amz_date,
        credential_scope(input)?,
        sha256_hex(canonical_request(input).as_bytes())
    ))
}

/// kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request").
pub fn signing_key(
    secret_access_key: &str,
    date: &str,
    region: &str,
    service: &str,
) -> Result<[u8; 32], Error> {
    let mut seed = zeroize::Zeroizing::new(Vec::with_capacity(4 + secret_access_key.len()));
    seed.extend_from_slice(b"AWS4");
    seed.extend_from_slice(secret_access_key.as_bytes());
    let k_date = zeroize::Zeroizing::new(hmac_sha256(&seed, date.as_bytes())?);
    let k_region = zeroize::Zeroizing::new(hmac_sha256(k_date.as_ref(), region.as_bytes())?);
    let k_service = zeroize::Zeroizing::new(hmac_sha256(k_region.as_ref(), service.as_bytes())?);
    hmac_sha256(k_service.as_ref(), b"aws4_request")
}

/// The hex signature of the request.
pub fn signature(input: &SigningInput<'_>) -> Result<String, Error> {
    let key = zeroize::Zeroizing::new(signing_key(
        input.secret_access_key,
        date_part(input.amz_date)?,
        input.region,
        input.service,
    )?);
    Ok(hex(&hmac_sha256(
        key.as_ref(),
        string_to_sign(input)?.as_bytes(),
    )?))
}

/// The value of the `Authorization` header.
pub fn authorization(input: &SigningInput<'_>) -> Result<String, Error> {
    Ok(format!(
        "{ALGORITHM} Credential={}/{}, SignedHeaders={}, Signature={}",
        input.access_key_id,
        credential_scope(input)?,
        signed_headers(input),
        signature(input)?
    ))
}

/// AWS's URI encoding: unreserved characters stay, every other byte is `%XX` (upper case);
/// `/` too unless it separates path segments. Applied once: S3 does not double-encode.
pub fn uri_encode(value: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'.' | b'~')
            || (keep_slash && b == b'/')
        {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Encoded pairs sorted by name then value, `name=` for empty values. Also to be sent as the
/// URI's query, so the server sees exactly what was signed.
pub fn canonical_query(pairs: &[(String, String)]) -> String {
    let mut encoded: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| (uri_encode(k, false), uri_encode(v, false)))
        .collect();
    encoded.sort();
    encoded
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// `YYYYMMDDTHHMMSSZ` for a UTC instant.
pub fn amz_date(at: time::OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn header_names_are_lowercased_sorted_and_values_folded() {
        let (canonical, signed) = canonical_headers(&[
            ("X-Amz-Date", "20150830T123600Z"),
            ("My-Header1", "  a   b   c  "),
            ("Host", "example.amazonaws.com"),
        ]);
        assert_eq!(
            canonical,
            "host:example.amazonaws.com\nmy-header1:a b c\nx-amz-date:20150830T123600Z\n"
        );
        assert_eq!(signed, "host;my-header1;x-amz-date");
    }

    #[test]
    fn amz_date_is_compact_utc() {
        let at = time::OffsetDateTime::from_unix_timestamp(1_440_938_160).unwrap();
        assert_eq!(amz_date(at), "20150830T123600Z");
    }

    #[test]
    fn a_malformed_date_is_an_error_not_a_panic() {
        let input = SigningInput {
            method: "POST",
            path: "/",
            query: "",
            headers: &[],
            payload: b"",
            region: "us-east-1",
            service: "kms",
            amz_date: "2015",
            access_key_id: "AK",
            secret_access_key: "SK",
        };
        assert!(authorization(&input).is_err());
    }

    // -----------------------------------------------------------------------------------------
    // The published aws-sig-v4-test-suite (AKIDEXAMPLE, us-east-1, service "service",
    // 20150830T123600Z)
    // -----------------------------------------------------------------------------------------

    mod suite {
        use crate::sigv4::{self, SigningInput};

        const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

        fn suite<'a>(
            method: &'a str,
            headers: &'a [(&'a str, &'a str)],
            payload: &'a [u8],
        ) -> SigningInput<'a> {
            SigningInput {
                method,
                path: "/",
                query: "",
                headers,
                payload,
                region: "us-east-1",
                service: "service",
                amz_date: "20150830T123600Z",
                access_key_id: "AKIDEXAMPLE",
                secret_access_key: SECRET,
            }
        }

        const SUITE_HEADERS: &[(&str, &str)] = &[
            ("Host", "example.amazonaws.com"),
            ("X-Amz-Date", "20150830T123600Z"),
        ];
        const SCOPE: &str =
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request";

        #[test]
        fn sigv4_get_vanilla() {
            let input = suite("GET", SUITE_HEADERS, b"");
            assert_eq!(
                sigv4::canonical_request(&input),
                "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n\
                 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
            );
            assert_eq!(
                sigv4::string_to_sign(&input).unwrap(),
                "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n\
                 bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63"
            );
            assert_eq!(
                sigv4::authorization(&input).unwrap(),
                format!(
                    "{SCOPE}, SignedHeaders=host;x-amz-date, \
                     Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
                )
            );
        }

        #[test]
        fn sigv4_post_vanilla() {
            let input = suite("POST", SUITE_HEADERS, b"");
            assert!(sigv4::string_to_sign(&input)
                .unwrap()
                .ends_with("\n553f88c9e4d10fc9e109e2aeb65f030801b70c2f6468faca261d401ae622fc87"));
            assert_eq!(
                sigv4::authorization(&input).unwrap(),
                format!(
                    "{SCOPE}, SignedHeaders=host;x-amz-date, \
                     Signature=5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"
                )
            );
        }

        #[test]
        fn sigv4_post_x_www_form_urlencoded() {
            // A body and a content type, as every KMS request has.
            let headers = [
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("Host", "example.amazonaws.com"),
                ("X-Amz-Date", "20150830T123600Z"),
            ];
            let input = suite("POST", &headers, b"Param1=value1");
            assert!(sigv4::canonical_request(&input)
                .ends_with("\n9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e"));
            assert!(sigv4::string_to_sign(&input)
                .unwrap()
                .ends_with("\n42a5e5bb34198acb3e84da4f085bb7927f2bc277ca766e6d19c73c2154021281"));
            assert_eq!(
                sigv4::authorization(&input).unwrap(),
                format!(
                    "{SCOPE}, SignedHeaders=content-type;host;x-amz-date, \
                     Signature=ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a"
                )
            );
        }

        #[test]
        fn sigv4_post_sts_header_before() {
            // A session token, signed.
            let token = "AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfIeoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA==";
            let headers = [
                ("Host", "example.amazonaws.com"),
                ("X-Amz-Date", "20150830T123600Z"),
                ("X-Amz-Security-Token", token),
            ];
            let input = suite("POST", &headers, b"");
            assert!(sigv4::string_to_sign(&input)
                .unwrap()
                .ends_with("\nc237e1b440d4c63c32ca95b5b99481081cb7b13c7e40434868e71567c1a882f6"));
            assert_eq!(
                sigv4::authorization(&input).unwrap(),
                format!(
                    "{SCOPE}, SignedHeaders=host;x-amz-date;x-amz-security-token, \
                     Signature=85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead"
                )
            );
        }

        #[test]
        fn sigv4_signing_key_derivation() {
            // The AWS documentation's worked example (service iam).
            let key = sigv4::signing_key(SECRET, "20150830", "us-east-1", "iam").unwrap();
            let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(
                hex,
                "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9"
            );
        }
    }
}
