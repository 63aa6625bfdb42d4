//! AWS Signature Version 4 for the KMS client. The signature is what proves to KMS that a
//! request comes from the holder of the secret access key and was not altered on the way
//! (method, path, the signed headers and the body hash are all covered), and the credential
//! scope limits a captured signature to one day, region and service.
//!
//! This module must never return, log or format the secret access key or any key derived from
//! it: only the final signature leaves it. It also never chooses which headers to sign: it
//! signs exactly the headers it is given, so a caller cannot be surprised by a header that
//! travels unsigned because the signer skipped it.
//!
//! Checked against the published `aws-sig-v4-test-suite` vectors (see `tests/kms.rs`).

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::KeyError;

pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// One request to sign. `path` and `query` are taken as already canonical (URI-encoded, query
/// pairs sorted): the KMS JSON protocol only ever posts to `/` with no query, so a general
/// URI encoder here would be code without a caller.
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

fn hmac_sha256(key: &[u8], data: &[u8]) -> Result<[u8; 32], KeyError> {
    // HMAC takes keys of any length, so this error cannot happen; it is still an error rather
    // than a panic because the workspace forbids panics outside tests.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .map_err(|_| KeyError::Provider("HMAC-SHA256 rejected its key".to_owned()))?;
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

fn date_part(amz_date: &str) -> Result<&str, KeyError> {
    match amz_date.get(..8) {
        Some(d) if amz_date.len() == 16 && d.bytes().all(|b| b.is_ascii_digit()) => Ok(d),
        _ => Err(KeyError::Provider(
            "malformed x-amz-date for signing".to_owned(),
        )),
    }
}

pub fn credential_scope(input: &SigningInput<'_>) -> Result<String, KeyError> {
    Ok(format!(
        "{}/{}/{}/aws4_request",
        date_part(input.amz_date)?,
        input.region,
        input.service
    ))
}

pub fn string_to_sign(input: &SigningInput<'_>) -> Result<String, KeyError> {
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
) -> Result<[u8; 32], KeyError> {
    let mut seed = zeroize::Zeroizing::new(Vec::with_capacity(4 + secret_access_key.len()));
    seed.extend_from_slice(b"AWS4");
    seed.extend_from_slice(secret_access_key.as_bytes());
    let k_date = zeroize::Zeroizing::new(hmac_sha256(&seed, date.as_bytes())?);
    let k_region = zeroize::Zeroizing::new(hmac_sha256(k_date.as_ref(), region.as_bytes())?);
    let k_service = zeroize::Zeroizing::new(hmac_sha256(k_region.as_ref(), service.as_bytes())?);
    hmac_sha256(k_service.as_ref(), b"aws4_request")
}

/// The hex signature of the request.
pub fn signature(input: &SigningInput<'_>) -> Result<String, KeyError> {
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
pub fn authorization(input: &SigningInput<'_>) -> Result<String, KeyError> {
    Ok(format!(
        "{ALGORITHM} Credential={}/{}, SignedHeaders={}, Signature={}",
        input.access_key_id,
        credential_scope(input)?,
        signed_headers(input),
        signature(input)?
    ))
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
}
