//! Just enough XML for S3's flat answers: element text, entities, the version listing.

use crate::anchor::AnchorError;

pub(super) use portcullis_outbound::sanitize_remote_message as sanitize;

/// The text of the first `<tag>…</tag>` in `xml`, as written (entities not decoded).
pub(super) fn first_element<'x>(xml: &'x str, tag: &str) -> Option<&'x str> {
    elements(xml, tag).next()
}

/// The text of every `<tag>…</tag>` in `xml`, in order. Enough for S3's flat answers; not an
/// XML parser (no attributes on these elements, no CDATA, no nesting of a tag in itself).
pub(super) fn elements<'x>(xml: &'x str, tag: &str) -> impl Iterator<Item = &'x str> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let mut rest = xml;
    std::iter::from_fn(move || {
        let start = rest.find(&open)? + open.len();
        let len = rest[start..].find(&close)?;
        let found = &rest[start..start + len];
        rest = &rest[start + len + close.len()..];
        Some(found)
    })
}

pub(super) fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let Some(end) = rest.find(';') else { break };
        let entity = &rest[1..end];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

pub(super) fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

pub(super) struct VersionPage {
    /// (key, version id) of every object version; delete markers are only counted.
    pub versions: Vec<(String, String)>,
    pub delete_markers: usize,
    pub truncated: bool,
    /// (`NextKeyMarker`, `NextVersionIdMarker`).
    pub next: Option<(String, String)>,
}

pub(super) fn parse_versions(xml: &str) -> Result<VersionPage, AnchorError> {
    if !xml.contains("<ListVersionsResult") {
        return Err(AnchorError::Malformed(
            "ListObjectVersions answer is not a ListVersionsResult".to_owned(),
        ));
    }
    let mut versions = vec![];
    for block in elements(xml, "Version") {
        let (Some(key), Some(version_id)) = (
            first_element(block, "Key"),
            first_element(block, "VersionId"),
        ) else {
            return Err(AnchorError::Malformed(
                "ListObjectVersions entry without Key or VersionId".to_owned(),
            ));
        };
        versions.push((unescape(key), unescape(version_id)));
    }
    // The top-level elements follow the entries in moto's answers and precede them in S3's;
    // entries never contain these names, so searching the whole document is fine.
    let truncated = first_element(xml, "IsTruncated") == Some("true");
    let next = match (
        first_element(xml, "NextKeyMarker"),
        first_element(xml, "NextVersionIdMarker"),
    ) {
        (Some(k), Some(v)) => Some((unescape(k), unescape(v))),
        (Some(k), None) => Some((unescape(k), String::new())),
        _ => None,
    };
    Ok(VersionPage {
        versions,
        delete_markers: elements(xml, "DeleteMarker").count(),
        truncated,
        next,
    })
}
