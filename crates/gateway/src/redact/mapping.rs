//! The placeholder mapping of one conversation and the restoration of answers.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::{detect::placeholder_len, EntityKind, RedactError};

/// Most values one mapping holds (a request with more is refused).
pub const MAX_ENTRIES: usize = 1_000_000;

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    placeholder: String,
    kind: EntityKind,
    original: String,
}

#[derive(Serialize, Deserialize)]
struct MappingWire {
    entries: Vec<Entry>,
}

/// Placeholders and the originals they stand for, in order of first appearance. It holds
/// customer data: carry it sealed (it serializes to `{"entries":[...]}`), never log it; its
/// `Debug` shows counts only.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(try_from = "MappingWire", into = "MappingWire")]
pub struct Mapping {
    entries: Vec<Entry>,
    by_original: HashMap<String, usize>,
    by_placeholder: HashMap<String, usize>,
    counters: HashMap<EntityKind, u64>,
    longest: usize,
}

impl PartialEq for Mapping {
    fn eq(&self, other: &Self) -> bool {
        self.entries == other.entries
    }
}

impl std::fmt::Debug for Mapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mapping")
            .field("entries", &self.entries.len())
            .finish_non_exhaustive()
    }
}

impl From<Mapping> for MappingWire {
    fn from(m: Mapping) -> Self {
        MappingWire { entries: m.entries }
    }
}

impl TryFrom<MappingWire> for Mapping {
    type Error = RedactError;
    fn try_from(w: MappingWire) -> Result<Self, RedactError> {
        let mut m = Mapping::default();
        for e in w.entries {
            let expected = format!(
                "<{}_{}>",
                e.kind.label(),
                m.counters.get(&e.kind).copied().unwrap_or(0) + 1
            );
            if e.placeholder != expected {
                return Err(RedactError::Mapping(
                    "a carried mapping's placeholders are out of order",
                ));
            }
            m.insert(e.kind, &e.original)?;
        }
        Ok(m)
    }
}

impl Mapping {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The length in bytes of the longest placeholder: the restorer's look-behind bound.
    pub fn longest_placeholder(&self) -> usize {
        self.longest
    }

    /// The placeholders with their kinds, in order (no originals).
    pub fn placeholders(&self) -> impl Iterator<Item = (&str, EntityKind)> {
        self.entries
            .iter()
            .map(|e| (e.placeholder.as_str(), e.kind))
    }

    /// The original behind `placeholder`, if this mapping made it.
    pub fn original(&self, placeholder: &str) -> Option<&str> {
        self.by_placeholder
            .get(placeholder)
            .map(|i| self.entries[*i].original.as_str())
    }

    pub(super) fn placeholder_for(
        &mut self,
        kind: EntityKind,
        original: &str,
    ) -> Result<&str, RedactError> {
        let i = match self.by_original.get(original) {
            Some(i) => *i,
            None => self.insert(kind, original)?,
        };
        Ok(&self.entries[i].placeholder)
    }

    fn insert(&mut self, kind: EntityKind, original: &str) -> Result<usize, RedactError> {
        if self.entries.len() >= MAX_ENTRIES {
            return Err(RedactError::Mapping(
                "too many values to redact in one request",
            ));
        }
        if original.is_empty() || self.by_original.contains_key(original) {
            return Err(RedactError::Mapping(
                "a mapping holds each value once, none empty",
            ));
        }
        let n = self.counters.entry(kind).or_insert(0);
        *n += 1;
        let placeholder = format!("<{}_{}>", kind.label(), n);
        let i = self.entries.len();
        self.longest = self.longest.max(placeholder.len());
        self.by_original.insert(original.to_owned(), i);
        self.by_placeholder.insert(placeholder.clone(), i);
        self.entries.push(Entry {
            placeholder,
            kind,
            original: original.to_owned(),
        });
        Ok(i)
    }

    /// `text` with every placeholder of this mapping replaced by its original. Placeholders
    /// this mapping did not make (the model invented them) stay as they are. Cannot fail.
    pub fn restore_text(&self, text: &str) -> String {
        let mut r = Restorer::text(self);
        let mut out = r.push(text);
        out.push_str(&r.finish());
        out
    }

    /// Restores a Messages response body: text blocks (`text`, citations' strings),
    /// `thinking` text and every string of `tool_use` / `server_tool_use` input. An error
    /// body or one without `content` is returned as is; a `content` that is not an array is
    /// an error.
    pub fn restore_response(
        &self,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, RedactError> {
        super::request::restore_response(self, body)
    }
}

/// How restored originals are written out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Text,
    /// Inside a JSON string (`input_json_delta.partial_json`): originals JSON-escaped.
    JsonString,
}

/// Restores a stream of deltas of one content block. Holds back at most
/// `mapping.longest_placeholder() - 1` bytes: a tail that could still become a placeholder
/// of this mapping; a placeholder split over any number of deltas is restored.
#[derive(Debug)]
pub struct Restorer<'m> {
    mapping: &'m Mapping,
    mode: Mode,
    held: String,
}

impl<'m> Restorer<'m> {
    /// For `text_delta` (and `thinking_delta`) text.
    pub fn text(mapping: &'m Mapping) -> Restorer<'m> {
        Restorer {
            mapping,
            mode: Mode::Text,
            held: String::new(),
        }
    }

    /// For `input_json_delta.partial_json`: a placeholder inside a JSON string is replaced by
    /// its original escaped for a JSON string. (A placeholder the model writes with `\u003c`
    /// escapes is not recognised and stays a placeholder.)
    pub fn json(mapping: &'m Mapping) -> Restorer<'m> {
        Restorer {
            mapping,
            mode: Mode::JsonString,
            held: String::new(),
        }
    }

    /// The bound on [`Restorer::held`]: the mapping's longest placeholder.
    pub fn bound(&self) -> usize {
        self.mapping.longest_placeholder()
    }

    /// Bytes held back now (always less than [`Restorer::bound`], or 0).
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Takes one delta, returns what can be emitted now. Cannot fail.
    pub fn push(&mut self, delta: &str) -> String {
        let mut buf = std::mem::take(&mut self.held);
        buf.push_str(delta);
        let mut out = String::with_capacity(buf.len());
        let b = buf.as_bytes();
        let mut i = 0;
        while i < b.len() {
            let Some(off) = b[i..].iter().position(|c| *c == b'<') else {
                out.push_str(&buf[i..]);
                return out;
            };
            let j = i + off;
            out.push_str(&buf[i..j]);
            let rest = &buf[j..];
            if let Some(len) = placeholder_len(rest.as_bytes()) {
                match self.mapping.original(&rest[..len]) {
                    Some(orig) => self.emit(&mut out, orig),
                    None => out.push_str(&rest[..len]),
                }
                i = j + len;
            } else if self.could_become_placeholder(rest.as_bytes()) {
                self.held = rest.to_owned();
                return out;
            } else {
                out.push('<');
                i = j + 1;
            }
        }
        out
    }

    /// At the block's end: whatever is held, as is.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }

    fn emit(&self, out: &mut String, original: &str) {
        match self.mode {
            Mode::Text => out.push_str(original),
            Mode::JsonString => {
                let quoted = serde_json::Value::String(original.to_owned()).to_string();
                out.push_str(&quoted[1..quoted.len() - 1]);
            }
        }
    }

    /// `rest` (starting at `<`) is a strict prefix of `<[A-Z]+_[0-9]+>` shorter than the
    /// longest placeholder of the mapping.
    fn could_become_placeholder(&self, rest: &[u8]) -> bool {
        if rest.len() >= self.mapping.longest_placeholder() {
            return false;
        }
        let mut i = 1;
        while i < rest.len() && rest[i].is_ascii_uppercase() {
            i += 1;
        }
        if i == rest.len() {
            return true;
        }
        if i == 1 || rest[i] != b'_' {
            return false;
        }
        i += 1;
        rest[i..].iter().all(u8::is_ascii_digit)
    }
}
