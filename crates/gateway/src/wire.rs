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
