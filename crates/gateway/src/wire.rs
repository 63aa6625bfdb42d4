//! What crosses to the provider: the header allow-list and the request's own fields.

/// The caller's headers forwarded to the provider, and only these: never cookies, the
/// caller's token, `x-forwarded-*` or anything else the caller's stack adds.
pub const FORWARDED_HEADERS: &[&str] = &["anthropic-version", "anthropic-beta", "content-type"];

/// Sent when the caller names no `anthropic-version`.
pub const DEFAULT_ANTHROPIC_VERSION: &str = "2023-06-01";

/// The caller's headers that may be forwarded, as given (a header repeated is joined).
pub fn forwarded(headers: &[(String, String)]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = vec![];
    for name in FORWARDED_HEADERS {
        let values: Vec<&str> = headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect();
        if !values.is_empty() {
            out.push(((*name).to_owned(), values.join(",")));
        }
    }
    if !out.iter().any(|(n, _)| n == "anthropic-version") {
        out.push((
            "anthropic-version".to_owned(),
            DEFAULT_ANTHROPIC_VERSION.to_owned(),
        ));
    }
    out
}

/// `beta=true` is the one query the SDKs add; anything else is dropped.
pub fn query(caller_query: Option<&str>) -> &'static str {
    match caller_query {
        Some(q) if q.split('&').any(|p| p == "beta=true") => "?beta=true",
        _ => "",
    }
}

/// The provider's headers relayed to the caller: rate-limit and retry advice, its id.
pub fn relayed(headers: &[(String, String)]) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(n, _)| {
            let n = n.to_ascii_lowercase();
            n == "retry-after"
                || n == "retry-after-ms"
                || n == "x-should-retry"
                || n.starts_with("anthropic-ratelimit-")
        })
        .cloned()
        .collect()
}

/// The byte ranges of the values of every top-level `model` member of `body`, a JSON object
/// (already checked to parse). A key is compared decoded, so `"mod\u0065l"` counts. More than
/// one range is a body Portcullis and the provider could read differently: the caller refuses
/// it. `None`: not a JSON object this scanner can follow.
pub fn model_spans(body: &[u8]) -> Option<Vec<(usize, usize)>> {
    let mut i = skip_ws(body, 0);
    if body.get(i) != Some(&b'{') {
        return None;
    }
    i = skip_ws(body, i + 1);
    let mut spans = vec![];
    if body.get(i) == Some(&b'}') {
        return Some(spans);
    }
    loop {
        let key_end = skip_string(body, i)?;
        let key: String = serde_json::from_slice(&body[i..key_end]).ok()?;
        i = skip_ws(body, key_end);
        if body.get(i) != Some(&b':') {
            return None;
        }
        let start = skip_ws(body, i + 1);
        let end = skip_value(body, start)?;
        if key == "model" {
            spans.push((start, end));
        }
        i = skip_ws(body, end);
        match body.get(i) {
            Some(b',') => i = skip_ws(body, i + 1),
            Some(b'}') => return Some(spans),
            _ => return None,
        }
    }
}

/// `body` with the value at `span` replaced by the JSON string `model`; every other byte as
/// it was.
pub fn replace_span(body: &[u8], span: (usize, usize), model: &str) -> Vec<u8> {
    let value = serde_json::Value::String(model.to_owned()).to_string();
    let mut out = Vec::with_capacity(body.len() + value.len());
    out.extend_from_slice(&body[..span.0]);
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(&body[span.1..]);
    out
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// The end (exclusive) of the string starting at `i`.
fn skip_string(b: &[u8], i: usize) -> Option<usize> {
    if b.get(i) != Some(&b'"') {
        return None;
    }
    let mut j = i + 1;
    loop {
        match b.get(j)? {
            b'\\' => j += 2,
            b'"' => return Some(j + 1),
            _ => j += 1,
        }
    }
}

/// The end (exclusive) of the value starting at `i`.
fn skip_value(b: &[u8], i: usize) -> Option<usize> {
    match b.get(i)? {
        b'"' => skip_string(b, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            loop {
                match b.get(j)? {
                    b'"' => {
                        j = skip_string(b, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
        }
        _ => {
            let mut j = i;
            while let Some(c) = b.get(j) {
                if matches!(c, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                    break;
                }
                j += 1;
            }
            (j > i).then_some(j)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn m3_the_model_is_replaced_and_every_other_byte_kept() {
        let body = br#"{ "zeta" : [1, {"model": "inner"}, "a\"}]"],"model" :"tier:fast" ,"alpha":1.50e0, "x":{"y":null}}"#;
        let spans = model_spans(body).unwrap();
        assert_eq!(spans.len(), 1);
        let out = replace_span(body, spans[0], "claude-haiku-4-5");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{ "zeta" : [1, {"model": "inner"}, "a\"}]"],"model" :"claude-haiku-4-5" ,"alpha":1.50e0, "x":{"y":null}}"#
        );
    }

    #[test]
    fn m3_an_escaped_or_repeated_model_key_is_seen() {
        let body = br#"{"model":"tier:fast","mod\u0065l":"claude-opus-4-1"}"#;
        assert_eq!(model_spans(body).unwrap().len(), 2);
        assert_eq!(model_spans(b"{}").unwrap(), vec![]);
        assert_eq!(model_spans(b"[1]"), None);
        assert_eq!(model_spans(br#"{"model":7}"#).unwrap(), vec![(9, 10)]);
    }
}
