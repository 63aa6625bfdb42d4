//! PII redaction (issue 14 section 5, control M4): a pure library, no I/O. **Not yet applied
//! to calls**: the pipeline will call it between the preflight and the upstream call; until
//! then nothing here changes what the gateway sends.
//!
//! The API the pipeline is meant to use:
//!
//! ```text
//! let redactor = Redactor::new(&environment_policy)?;        // once per policy
//! let (body, mapping) = redactor.redact_request(&request)?;  // Err => refuse the call
//! // send `body` upstream; keep `mapping` for this call only (it holds the originals)
//! let answer = mapping.restore_response(&upstream_json)?;    // JSON answers
//! let mut text = Restorer::text(&mapping);                   // one per text content block
//! let mut json = Restorer::json(&mapping);                   // one per tool_use block
//! text.push(delta) -> restored text; text.finish() at content_block_stop
//! ```
//!
//! Detected: email addresses, phone numbers, payment card numbers (Luhn), IBANs (mod 97),
//! US social security numbers, IPv4/IPv6 addresses and the environment's own terms; the
//! rules are in `detect.rs` and docs/GATEWAY.md. Each value becomes a placeholder such as
//! `<EMAIL_1>`, the same exact text always the same placeholder within one [`Mapping`],
//! numbered in order of first appearance across the request.
//!
//! Protects against: customer data reaching a model provider in any place of a Messages
//! request (system prompt, text, `tool_result`, `tool_use` input, text documents and their
//! titles and context, `metadata.user_id`); a block it cannot read (images, base64/URL/file
//! documents, unknown block types) passing unseen unless the policy says so.
//!
//! Must never: fail open (every error means the call is refused), do I/O, print an original
//! value in `Debug` or in an error message, or change a field that is not content.

mod detect;
mod mapping;
mod request;
mod terms;

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

pub use mapping::{Mapping, Restorer};

/// What a detector finds. The label is the placeholder's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntityKind {
    Email,
    Phone,
    Card,
    Iban,
    Ssn,
    Ip,
    Term,
    /// Text of the input that already looks like a placeholder (`<EMAIL_1>`): always replaced,
    /// whatever the policy, so restoring cannot turn it into someone else's value.
    Literal,
}

impl EntityKind {
    /// Every kind a policy can choose.
    pub const CHOOSABLE: [EntityKind; 7] = [
        EntityKind::Email,
        EntityKind::Phone,
        EntityKind::Card,
        EntityKind::Iban,
        EntityKind::Ssn,
        EntityKind::Ip,
        EntityKind::Term,
    ];

    pub fn label(self) -> &'static str {
        match self {
            EntityKind::Email => "EMAIL",
            EntityKind::Phone => "PHONE",
            EntityKind::Card => "CARD",
            EntityKind::Iban => "IBAN",
            EntityKind::Ssn => "SSN",
            EntityKind::Ip => "IP",
            EntityKind::Term => "TERM",
            EntityKind::Literal => "LITERAL",
        }
    }
}

/// What to do with a block whose content cannot be scanned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unscannable {
    /// Refuse the call (the default: fail closed).
    #[default]
    Refuse,
    /// Send the block unchanged, unscanned.
    Pass,
}

/// An environment's redaction policy.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedactionPolicy {
    /// The entity kinds that are redacted (`Literal` is always on and cannot be chosen).
    pub kinds: BTreeSet<EntityKind>,
    /// Environment-defined terms (customer names, project codes): case-insensitive,
    /// whole-word, the longest match first. Redacted when `kinds` holds `Term`.
    pub terms: Vec<String>,
    /// Images and base64, URL or file document sources.
    pub opaque_blocks: Unscannable,
    /// Block types this module does not know.
    pub unknown_blocks: Unscannable,
}

impl Default for RedactionPolicy {
    /// Every kind, no terms, unscannable and unknown blocks refused.
    fn default() -> Self {
        RedactionPolicy {
            kinds: EntityKind::CHOOSABLE.into_iter().collect(),
            terms: Vec::new(),
            opaque_blocks: Unscannable::Refuse,
            unknown_blocks: Unscannable::Refuse,
        }
    }
}

impl std::fmt::Debug for RedactionPolicy {
    // Terms are customer names: count them, never print them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedactionPolicy")
            .field("kinds", &self.kinds)
            .field("terms", &self.terms.len())
            .field("opaque_blocks", &self.opaque_blocks)
            .field("unknown_blocks", &self.unknown_blocks)
            .finish()
    }
}

/// Why redaction refused. Never holds an original value. Every error means: refuse the call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedactError {
    #[error("redaction: {path} must be {expected}")]
    Shape {
        path: String,
        expected: &'static str,
    },
    #[error("redaction: {path} is a `{block_type}` block, which cannot be scanned and the policy refuses")]
    Unscannable { path: String, block_type: String },
    #[error("redaction: {path} is an unknown block type `{block_type}`, which the policy refuses")]
    UnknownBlock { path: String, block_type: String },
    #[error("redaction policy: term {index} is {reason}")]
    BadTerm { index: usize, reason: &'static str },
    #[error("redaction policy: {0}")]
    BadPolicy(&'static str),
    #[error("redaction: {0}")]
    Mapping(&'static str),
}

/// One value found in a text: byte offsets into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Detection {
    pub kind: EntityKind,
    pub start: usize,
    pub end: usize,
}

/// Longest term accepted, in characters.
pub const MAX_TERM_CHARS: usize = 200;
/// Most terms a policy may hold.
pub const MAX_TERMS: usize = 100_000;

/// A policy made ready to scan (the terms compiled once).
#[derive(Debug)]
pub struct Redactor {
    policy: RedactionPolicy,
    terms: terms::Terms,
}

impl Redactor {
    /// Checks the policy: `Literal` is not a choice, terms are non-empty after trimming, at
    /// most [`MAX_TERM_CHARS`] long, start and end with a letter or digit, at most [`MAX_TERMS`].
    pub fn new(policy: &RedactionPolicy) -> Result<Redactor, RedactError> {
        if policy.kinds.contains(&EntityKind::Literal) {
            return Err(RedactError::BadPolicy(
                "`literal` is always redacted and is not a kind to choose",
            ));
        }
        if policy.terms.len() > MAX_TERMS {
            return Err(RedactError::BadPolicy("too many terms"));
        }
        let terms = terms::Terms::new(&policy.terms)?;
        Ok(Redactor {
            policy: policy.clone(),
            terms,
        })
    }

    pub fn policy(&self) -> &RedactionPolicy {
        &self.policy
    }

    /// Every value of the chosen kinds in `text`, in order, not overlapping (where two
    /// detections overlap, the earlier start wins, then the longer).
    pub fn detect(&self, text: &str) -> Vec<Detection> {
        let mut found = detect::detect_all(text, &self.policy.kinds);
        if self.policy.kinds.contains(&EntityKind::Term) {
            found.extend(self.terms.find(text));
        }
        found.extend(detect::literals(text));
        found.sort_by(|a, b| a.start.cmp(&b.start).then(b.end.cmp(&a.end)));
        let mut out: Vec<Detection> = Vec::with_capacity(found.len());
        for d in found {
            if out.last().is_none_or(|last| d.start >= last.end) {
                out.push(d);
            }
        }
        out
    }

    /// Replaces every detected value of `text` with its placeholder in `mapping`.
    pub fn redact_text(&self, text: &str, mapping: &mut Mapping) -> Result<String, RedactError> {
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for d in self.detect(text) {
            out.push_str(
                text.get(at..d.start)
                    .ok_or(RedactError::Mapping("detection off a character boundary"))?,
            );
            let value = text
                .get(d.start..d.end)
                .ok_or(RedactError::Mapping("detection off a character boundary"))?;
            out.push_str(mapping.placeholder_for(d.kind, value)?);
            at = d.end;
        }
        out.push_str(
            text.get(at..)
                .ok_or(RedactError::Mapping("detection off a character boundary"))?,
        );
        Ok(out)
    }

    /// Redacts every place of an Anthropic Messages request body where customer data can be,
    /// with a fresh mapping. Any error: refuse the call.
    pub fn redact_request(
        &self,
        body: &serde_json::Value,
    ) -> Result<(serde_json::Value, Mapping), RedactError> {
        let mut mapping = Mapping::default();
        let body = self.redact_request_with(body, &mut mapping)?;
        Ok((body, mapping))
    }

    /// As [`Redactor::redact_request`], continuing an existing mapping (the placeholders
    /// stay the same across the calls of a conversation that carries its mapping).
    pub fn redact_request_with(
        &self,
        body: &serde_json::Value,
        mapping: &mut Mapping,
    ) -> Result<serde_json::Value, RedactError> {
        request::redact_request(self, body, mapping)
    }
}
