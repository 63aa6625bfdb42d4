//! Canonical JSON: the one byte string an entry body hashes as.
//!
//! Two encoders that agree on these rules produce identical bytes for the same JSON value,
//! so an independent verifier can recompute entry hashes from an export. The rules:
//!
//! 1. No whitespace anywhere outside strings.
//! 2. `null`, `true`, `false` as literals.
//! 3. Objects: `{`, members separated by `,`, `}`. A member is the key as a string (rule 5),
//!    `:`, then the value. Members are sorted by the key's UTF-8 bytes, compared bytewise
//!    (unsigned, shorter prefix first). This is *not* the UTF-16 order of RFC 8785; the two
//!    differ only for keys mixing characters above U+FFFF with ones in U+E000..U+FFFF.
//!    Keys are unique (a later duplicate replaces an earlier one when the JSON is parsed).
//! 4. Arrays: `[`, elements separated by `,` in their order, `]`.
//! 5. Strings: `"`, the characters, `"`. Escaped are exactly `"` as `\"`, `\` as `\\`,
//!    U+0008 as `\b`, U+0009 `\t`, U+000A `\n`, U+000C `\f`, U+000D `\r`, and the other
//!    characters below U+0020 as `\u00XX` with lowercase hex digits. Everything else,
//!    including `/`, U+007F and all non-ASCII characters, is written as raw UTF-8.
//! 6. Numbers. A number written in the source without `.`, `e` or `E` that fits in `i64`
//!    or `u64` is an integer, printed in decimal with a leading `-` when negative and no
//!    leading zeros (`-0` is the exception: it is the double -0.0). Any other number is an
//!    IEEE 754 double, read with correct rounding and printed from the shortest digit string
//!    that reads back as the same double; of several such strings, the one nearest the exact
//!    value, and of two equally near, the one ending in an even digit (as Ryu, JavaScript and
//!    Python's `repr` do). With `d` those digits as an integer of `n` digits, `k` the exponent
//!    so that `|value| = d × 10^k`, and `p = n + k` (where the decimal point falls):
//!    - `k >= 0` and `p <= 16`: `d`, `k` zeros, `.0` (`100.0`; `1e15` is `1000000000000000.0`);
//!    - else `0 < p <= 16`: the first `p` digits, `.`, the rest (`12.34`);
//!    - else `-5 < p <= 0`: `0.`, `-p` zeros, the digits (`0.0001`);
//!    - else the first digit, then `.` and the other digits if `n > 1`, then `e` and the
//!      decimal exponent `p - 1`, with `-` when negative and never `+` (`1e16`, `1.5e-7`).
//!
//!    A negative double gets a leading `-`; zero is `0.0` or `-0.0`. This is the Ryu crate's
//!    layout, which serde_json used to print; serde_json's float printing has changed between
//!    releases, so it is pinned here rather than borrowed. Writers keep integers within
//!    `i64`/`u64` (a larger one is read as a double) and should prefer integers or strings to
//!    doubles, which every implementation must print with exactly these digits.

use serde_json::{Map, Number, Value};

/// The canonical encoding of `value` (see the module documentation for the rules).
pub fn canonical_json(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    write_canonical_json(value, &mut out);
    out
}

/// Appends the canonical encoding of `value` to `out`, so hot loops can reuse one buffer.
pub fn write_canonical_json(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => write_number(n, out),
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical_json(item, out);
            }
            out.push(b']');
        }
        Value::Object(map) => write_object(map, out),
    }
}

fn write_object(map: &Map<String, Value>, out: &mut Vec<u8>) {
    out.push(b'{');
    // serde_json's default map is a BTreeMap<String, _>, already in bytewise key order;
    // sorting only happens if some crate in the build turns on `preserve_order`.
    let sorted = map.keys().zip(map.keys().skip(1)).all(|(a, b)| a < b);
    if sorted {
        for (i, (k, v)) in map.iter().enumerate() {
            write_member(i, k, v, out);
        }
    } else {
        let mut members: Vec<(&String, &Value)> = map.iter().collect();
        members.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        for (i, (k, v)) in members.into_iter().enumerate() {
            write_member(i, k, v, out);
        }
    }
    out.push(b'}');
}

fn write_member(index: usize, key: &str, value: &Value, out: &mut Vec<u8>) {
    if index > 0 {
        out.push(b',');
    }
    write_string(key, out);
    out.push(b':');
    write_canonical_json(value, out);
}

fn write_number(n: &Number, out: &mut Vec<u8>) {
    if let Some(u) = n.as_u64() {
        write_decimal(u, out);
    } else if let Some(i) = n.as_i64() {
        out.push(b'-');
        write_decimal(i.unsigned_abs(), out);
    } else if let Some(f) = n.as_f64() {
        // A `Value` never holds NaN or an infinity, so `format_finite` is total here.
        out.extend_from_slice(ryu::Buffer::new().format_finite(f).as_bytes());
    }
}

fn write_decimal(mut n: u64, out: &mut Vec<u8>) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        // `n % 10` is below 10, so the cast cannot truncate.
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

fn write_string(s: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut clean_from = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            0x09 => b"\\t",
            0x0a => b"\\n",
            0x0c => b"\\f",
            0x0d => b"\\r",
            0x00..=0x1f => &[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0x0f)],
            ],
            _ => continue,
        };
        out.extend_from_slice(&bytes[clean_from..i]);
        out.extend_from_slice(short);
        clean_from = i + 1;
    }
    out.extend_from_slice(&bytes[clean_from..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn canon(v: &Value) -> String {
        String::from_utf8(canonical_json(v)).unwrap()
    }

    #[test]
    fn l3_objects_are_sorted_bytewise_without_whitespace() {
        let v: Value = serde_json::from_str(
            r#"{ "b": 1, "a": [true, false, null], "B": {"y": "x", "x": "y"}, "é": 0, "aa": -3 }"#,
        )
        .unwrap();
        assert_eq!(
            canon(&v),
            r#"{"B":{"x":"y","y":"x"},"a":[true,false,null],"aa":-3,"b":1,"é":0}"#
        );
    }

    #[test]
    fn l3_key_order_is_utf8_not_utf16() {
        // U+FFFF (EF BF BF) sorts before U+10000 (F0 90 80 80) in UTF-8, after it in UTF-16.
        let v = json!({"\u{10000}": 1, "\u{ffff}": 2});
        assert_eq!(canon(&v), "{\"\u{ffff}\":2,\"\u{10000}\":1}");
    }

    #[test]
    fn l3_string_escapes_are_minimal() {
        let v = json!("q\" b\\ \u{8}\u{c}\n\r\t \u{0}\u{1f} / \u{7f} é 😀");
        assert_eq!(
            canon(&v),
            "\"q\\\" b\\\\ \\b\\f\\n\\r\\t \\u0000\\u001f / \u{7f} é 😀\""
        );
    }

    #[test]
    fn l3_numbers_print_as_documented() {
        let cases = [
            ("0", "0"),
            ("-0", "-0.0"),
            ("-1", "-1"),
            ("18446744073709551615", "18446744073709551615"),
            ("-9223372036854775808", "-9223372036854775808"),
            ("18446744073709551616", "1.8446744073709552e19"),
            ("1.0", "1.0"),
            ("1e2", "100.0"),
            ("-0.0", "-0.0"),
            ("0.1", "0.1"),
            ("12.34", "12.34"),
            ("1e15", "1000000000000000.0"),
            ("1e16", "1e16"),
            ("1.5e-7", "1.5e-7"),
            ("0.0001", "0.0001"),
            ("0.00001", "0.00001"),
            ("0.000001", "1e-6"),
            ("123456789.125e20", "1.23456789125e28"),
        ];
        for (input, want) in cases {
            let v: Value = serde_json::from_str(input).unwrap();
            assert_eq!(canon(&v), want, "input {input}");
        }
    }

    fn arb_json(floats: bool) -> impl Strategy<Value = Value> {
        let number = if floats {
            any::<f64>()
                .prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
                .prop_map(Value::from)
                .boxed()
        } else {
            any::<i64>().prop_map(Value::from).boxed()
        };
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            number,
            ".{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(".{0,6}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Rule 6 for doubles exactly as the module documentation states it, built on std's
    /// correctly rounded (ties-to-even) formatting rather than on Ryu, so the prose is tested,
    /// not just the code.
    fn documented_double(f: f64) -> String {
        let sci = (0..17)
            .map(|decimals| format!("{:.*e}", decimals, f.abs()))
            .find(|s| s.parse::<f64>().unwrap() == f.abs())
            .unwrap();
        let (mantissa, exp) = sci.split_once('e').unwrap();
        let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
        let n = digits.len() as i64;
        let p = exp.parse::<i64>().unwrap() + 1;
        let k = p - n;
        let sign = if f.is_sign_negative() { "-" } else { "" };
        let body = if f == 0.0 {
            "0.0".to_string()
        } else if k >= 0 && p <= 16 {
            format!("{digits}{}.0", "0".repeat(k as usize))
        } else if 0 < p && p <= 16 {
            format!("{}.{}", &digits[..p as usize], &digits[p as usize..])
        } else if -5 < p && p <= 0 {
            format!("0.{}{digits}", "0".repeat((-p) as usize))
        } else if n == 1 {
            format!("{digits}e{}", p - 1)
        } else {
            format!("{}.{}e{}", &digits[..1], &digits[1..], p - 1)
        };
        format!("{sign}{body}")
    }

    proptest! {
        /// Control L3: the encoding reads back as the same value and is a fixed point of
        /// parse-and-encode, so a verifier that re-parses an exported body gets the same hash.
        #[test]
        fn l3_canonical_round_trips_and_is_a_fixed_point(v in arb_json(true)) {
            let bytes = canonical_json(&v);
            let back: Value = serde_json::from_slice(&bytes).unwrap();
            prop_assert_eq!(&back, &v);
            prop_assert_eq!(canonical_json(&back), bytes);
        }

        /// Without doubles, canonical JSON is byte for byte what serde_json writes for its
        /// (bytewise sorted) maps.
        #[test]
        fn l3_canonical_matches_serde_json_without_doubles(v in arb_json(false)) {
            prop_assert_eq!(canonical_json(&v), serde_json::to_vec(&v).unwrap());
        }

        #[test]
        fn l3_doubles_follow_the_documented_rule(bits in any::<u64>()) {
            let f = f64::from_bits(bits);
            prop_assume!(f.is_finite());
            let printed = String::from_utf8(canonical_json(&Value::from(f))).unwrap();
            prop_assert_eq!(&printed, &documented_double(f));
            prop_assert_eq!(printed.parse::<f64>().unwrap().to_bits(), bits);
        }
    }
}
