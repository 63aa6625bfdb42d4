//! Lowercase hex, the only binary-to-text encoding in our formats. Decoding is strict
//! (lowercase only, exact length) so every value has exactly one textual form, which is what
//! lets a parser reject a re-encoded checkpoint or bundle line instead of accepting it.

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Lowercase hex of `bytes`.
pub fn encode(bytes: &[u8]) -> String {
    bytes
        .iter()
        .flat_map(|&b| [DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 0x0f)]])
        .map(char::from)
        .collect()
}

pub(crate) fn encode_into(bytes: &[u8], out: &mut Vec<u8>) {
    for &b in bytes {
        out.push(DIGITS[usize::from(b >> 4)]);
        out.push(DIGITS[usize::from(b & 0x0f)]);
    }
}

/// Digit values, 0xff for every byte that is not a lowercase hex digit. A table rather than
/// a `match`: hashes are random, so per-digit branches mispredict, and the verifier decodes
/// two per entry.
static VALUES: [u8; 256] = {
    let mut table = [0xff; 256];
    let mut i = 0;
    while i < 16 {
        table[DIGITS[i] as usize] = i as u8;
        i += 1;
    }
    table
};

/// Decodes exactly `N` bytes from `2N` lowercase hex digits.
pub(crate) fn decode<const N: usize>(text: &str) -> Option<[u8; N]> {
    decode_bytes(text.as_bytes())
}

pub(crate) fn decode_bytes<const N: usize>(text: &[u8]) -> Option<[u8; N]> {
    if text.len() != N * 2 {
        return None;
    }
    let mut out = [0u8; N];
    let mut chunks = text.chunks_exact(16);
    let mut at = 0;
    for chunk in chunks.by_ref() {
        let chunk: &[u8; 16] = chunk.try_into().ok()?;
        out[at..at + 8].copy_from_slice(&decode16(chunk)?);
        at += 8;
    }
    let mut invalid = 0u8;
    for (byte, pair) in out[at..].iter_mut().zip(chunks.remainder().chunks_exact(2)) {
        let (hi, lo) = (VALUES[usize::from(pair[0])], VALUES[usize::from(pair[1])]);
        invalid |= hi | lo;
        *byte = (hi << 4) | (lo & 0x0f);
    }
    (invalid & 0xf0 == 0).then_some(out)
}

/// Sixteen hex digits at once, as bytes of one `u128` (the verifier's hot path decodes two
/// hashes per entry). No byte's arithmetic can carry into the next: every intermediate stays
/// below 0x70.
fn decode16(chunk: &[u8; 16]) -> Option<[u8; 8]> {
    const ONES: u128 = u128::MAX / 0xff;
    let x = u128::from_le_bytes(*chunk);
    // Bit 6 is set for 'a'..='f' (0x61..) and clear for '0'..='9' (0x30..).
    let letter = (x >> 6) & ONES;
    let nibbles = (x & (ONES * 0x0f)) + letter * 9;
    // Valid exactly when every value is a nibble and writing it back gives the input.
    let above_nine = ((nibbles + ONES * 6) >> 4) & ONES;
    let rewritten = nibbles + ONES * 0x30 + above_nine * 0x27;
    if nibbles & (ONES * 0xf0) != 0 || rewritten != x {
        return None;
    }
    let n = nibbles.to_le_bytes();
    let mut out = [0u8; 8];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = (n[2 * i] << 4) | n[2 * i + 1];
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn round_trips_and_rejects_non_canonical_text() {
        let bytes = [0x00, 0x9f, 0xa0, 0xff];
        assert_eq!(encode(&bytes), "009fa0ff");
        assert_eq!(decode::<4>("009fa0ff"), Some(bytes));
        assert_eq!(
            decode::<4>("009FA0FF"),
            None,
            "uppercase is a second spelling"
        );
        assert_eq!(decode::<4>("009fa0f"), None);
        assert_eq!(decode::<4>("009fa0ff00"), None);
        assert_eq!(decode::<2>("0g00"), None);
        assert_eq!(decode::<2>("+1ff"), None);
    }

    #[test]
    fn the_wide_path_accepts_exactly_lowercase_hex_in_every_position() {
        let bytes: [u8; 32] = std::array::from_fn(|i| (i as u8).wrapping_mul(37) ^ 0xa5);
        let good = encode(&bytes);
        assert_eq!(decode::<32>(&good), Some(bytes));
        for pos in 0..64 {
            for b in 0..=255u8 {
                let mut text = good.clone().into_bytes();
                text[pos] = b;
                let ok = b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
                let decoded = decode_bytes::<32>(&text);
                assert_eq!(decoded.is_some(), ok, "byte {b:#x} at {pos}");
                if let Some(d) = decoded {
                    assert_eq!(encode(&d).into_bytes(), text);
                }
            }
        }
    }

    #[test]
    fn only_the_sixteen_lowercase_digits_decode() {
        for b in 0..=255u8 {
            let ok = b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
            assert_eq!(decode_bytes::<1>(&[b, b'0']).is_some(), ok, "{b:#x} high");
            assert_eq!(decode_bytes::<1>(&[b'0', b]).is_some(), ok, "{b:#x} low");
        }
    }
}
