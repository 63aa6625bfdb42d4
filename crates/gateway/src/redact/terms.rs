//! Environment-defined terms: a trie over lower-cased characters, walked from every word
//! start, keeping the longest term that ends on a word boundary (longest first, whole words,
//! case-insensitive). Work per position is bounded by the longest term.

use std::collections::HashMap;

use super::{Detection, EntityKind, RedactError, MAX_TERM_CHARS};

#[derive(Default)]
struct Node {
    next: HashMap<char, usize>,
    terminal: bool,
}

#[derive(Default)]
pub(super) struct Terms {
    nodes: Vec<Node>,
}

impl std::fmt::Debug for Terms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Terms")
            .field("nodes", &self.nodes.len())
            .finish()
    }
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

impl Terms {
    pub(super) fn new(terms: &[String]) -> Result<Terms, RedactError> {
        let mut t = Terms {
            nodes: vec![Node::default()],
        };
        for (index, term) in terms.iter().enumerate() {
            let term = term.trim();
            if term.is_empty() {
                return Err(RedactError::BadTerm {
                    index,
                    reason: "empty",
                });
            }
            if term.chars().count() > MAX_TERM_CHARS {
                return Err(RedactError::BadTerm {
                    index,
                    reason: "longer than 200 characters",
                });
            }
            let (first, last) = (term.chars().next(), term.chars().last());
            if !first.is_some_and(char::is_alphanumeric) || !last.is_some_and(char::is_alphanumeric)
            {
                return Err(RedactError::BadTerm {
                    index,
                    reason: "not starting and ending with a letter or digit",
                });
            }
            let mut at = 0;
            for c in term.chars().flat_map(char::to_lowercase) {
                at = match t.nodes[at].next.get(&c) {
                    Some(n) => *n,
                    None => {
                        t.nodes.push(Node::default());
                        let n = t.nodes.len() - 1;
                        t.nodes[at].next.insert(c, n);
                        n
                    }
                };
            }
            t.nodes[at].terminal = true;
        }
        Ok(t)
    }

    pub(super) fn find(&self, text: &str) -> Vec<Detection> {
        let mut out = Vec::new();
        if self.nodes.len() <= 1 {
            return out;
        }
        let chars: Vec<(usize, char)> = text.char_indices().collect();
        let mut i = 0;
        while i < chars.len() {
            if i > 0 && is_word(chars[i - 1].1) {
                i += 1;
                continue;
            }
            let mut at = 0;
            let mut best = None;
            let mut j = i;
            'walk: while j < chars.len() {
                for c in chars[j].1.to_lowercase() {
                    match self.nodes[at].next.get(&c) {
                        Some(n) => at = *n,
                        None => break 'walk,
                    }
                }
                j += 1;
                let boundary = chars.get(j).is_none_or(|(_, c)| !is_word(*c));
                if self.nodes[at].terminal && boundary {
                    best = Some(j);
                }
            }
            match best {
                Some(end) => {
                    let end_byte = chars.get(end).map_or(text.len(), |(b, _)| *b);
                    out.push(Detection {
                        kind: EntityKind::Term,
                        start: chars[i].0,
                        end: end_byte,
                    });
                    i = end;
                }
                None => i += 1,
            }
        }
        out
    }
}
