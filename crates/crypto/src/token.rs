//! Bearer tokens (E3). A token is a readable prefix naming its kind followed by 256 bits of
//! randomness in lower-case base32, e.g. `pcs_live_4f2k...`. Only its SHA-256 is ever stored;
//! the plaintext exists once, in the response or link handed to the user.

use std::fmt;

use rand::rngs::OsRng;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::secret::Secret;

const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
const RANDOM_BYTES: usize = 32;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum TokenKind {
    Session,
    ApiToken,
    Invitation,
    Setup,
    /// The operator's token for the platform routes (`portcullis operator token create`).
    Operator,
}

impl TokenKind {
    pub const ALL: &'static [TokenKind] = &[
        TokenKind::Session,
        TokenKind::ApiToken,
        TokenKind::Invitation,
        TokenKind::Setup,
        TokenKind::Operator,
    ];

    /// The readable prefix; secret scanners can match on `pcs_`.
    pub const fn prefix(self) -> &'static str {
        match self {
            TokenKind::Session => "pcs_sess_",
            TokenKind::ApiToken => "pcs_live_",
            TokenKind::Invitation => "pcs_inv_",
            TokenKind::Setup => "pcs_setup_",
            TokenKind::Operator => "pcs_op_",
        }
    }

    /// Which kind a presented token claims to be; `None` for anything not shaped like ours.
    pub fn of(token: &str) -> Option<TokenKind> {
        TokenKind::ALL.iter().copied().find(|k| {
            token.strip_prefix(k.prefix()).is_some_and(|rest| {
                rest.len() == encoded_len() && rest.bytes().all(|b| ALPHABET.contains(&b))
            })
        })
    }
}

const fn encoded_len() -> usize {
    (RANDOM_BYTES * 8).div_ceil(5)
}

/// SHA-256 of a token; the only form that is stored or compared.
#[derive(Clone, Copy, Eq)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    pub fn of(token: &str) -> TokenHash {
        TokenHash(Sha256::digest(token.as_bytes()).into())
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<TokenHash> {
        <[u8; 32]>::try_from(bytes).ok().map(TokenHash)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Constant-time, so comparing a stored hash with a computed one leaks no prefix length.
impl PartialEq for TokenHash {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenHash({}…)", &self.to_hex()[..8])
    }
}

/// A new token of `kind` and its hash. The plaintext goes to the user; the hash to the database.
pub fn generate(kind: TokenKind) -> (Secret, TokenHash) {
    let mut bytes = [0u8; RANDOM_BYTES];
    OsRng.fill_bytes(&mut bytes);
    let mut token = String::with_capacity(kind.prefix().len() + encoded_len());
    token.push_str(kind.prefix());
    base32_into(&bytes, &mut token);
    let hash = TokenHash::of(&token);
    (Secret::new(token), hash)
}

/// A short, non-secret label for listing tokens: the prefix plus the first four characters.
pub fn display_hint(token: &str) -> String {
    let kind_len = TokenKind::of(token).map_or(0, |k| k.prefix().len());
    token.chars().take(kind_len + 4).collect::<String>() + "…"
}

fn base32_into(bytes: &[u8], out: &mut String) {
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Control E3: tokens are high-entropy, prefixed, and hashed with SHA-256.
    #[test]
    fn e3_tokens_are_prefixed_random_and_hashed() {
        let (a, ha) = generate(TokenKind::ApiToken);
        let (b, hb) = generate(TokenKind::ApiToken);
        assert!(a.expose().starts_with("pcs_live_"));
        assert_eq!(a.expose().len(), "pcs_live_".len() + 52);
        assert_ne!(a.expose(), b.expose());
        assert_ne!(ha, hb);
        assert_eq!(TokenHash::of(a.expose()), ha);
        assert_eq!(TokenKind::of(a.expose()), Some(TokenKind::ApiToken));
        // sha256("abc"), FIPS 180-2 test vector.
        assert_eq!(
            TokenHash::of("abc").to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    /// Control E3: every kind has its own prefix, and no prefix is the start of another, so a
    /// token of one kind is never taken for another (an operator token for an API token).
    #[test]
    fn e3_every_kind_has_a_distinct_prefix() {
        for a in TokenKind::ALL {
            let (t, _) = generate(*a);
            assert_eq!(TokenKind::of(t.expose()), Some(*a));
            for b in TokenKind::ALL.iter().filter(|b| *b != a) {
                assert!(!a.prefix().starts_with(b.prefix()), "{a:?} {b:?}");
            }
        }
        let (op, _) = generate(TokenKind::Operator);
        assert!(op.expose().starts_with("pcs_op_"));
    }

    #[test]
    fn malformed_tokens_have_no_kind() {
        assert_eq!(TokenKind::of("pcs_live_short"), None);
        assert_eq!(TokenKind::of("Bearer xyz"), None);
        let (t, _) = generate(TokenKind::Session);
        let upper = t.expose().to_uppercase();
        assert_eq!(TokenKind::of(&upper), None);
        assert_eq!(TokenKind::of(&format!("{}x", t.expose())), None);
    }

    #[test]
    fn hint_reveals_only_four_characters() {
        let (t, _) = generate(TokenKind::ApiToken);
        let hint = display_hint(t.expose());
        assert_eq!(hint.chars().count(), "pcs_live_".len() + 4 + 1);
    }
}
