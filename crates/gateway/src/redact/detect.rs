//! The detectors: small scanners over bytes, linear in the text (each start position looks
//! ahead a bounded distance, or a run once). ASCII only: every offset they return is on a
//! character boundary because it sits next to an ASCII byte.
//!
//! Rules (also in docs/GATEWAY.md):
//! - email: `local@domain`, local of `A-Za-z0-9._%+-` not starting or ending with `.`, a
//!   domain of two or more labels (`A-Za-z0-9-`, not starting or ending with `-`), the last
//!   of two or more letters.
//! - number runs: digits in groups separated by one space, `-` or `.`, a group possibly in
//!   parentheses, possibly after a `+`; not touching a letter, digit or `_`. A run is split
//!   at spaces into the longest sub-runs (from the left) that are one of:
//!   - a card: 13-19 digits, first digit 2-6, no `+` or parentheses, no separators or all
//!     the same (space or `-`) between groups of 4-6, Luhn-valid;
//!   - an SSN: `AAA-GG-SSSS`, area not 000, 666 or 9xx, group not 00, serial not 0000;
//!   - a phone: `+` then 8-15 digits (E.164, any separators; grouped, the first group of
//!     1-3 digits); or a national number written
//!     with separators: North American `(AAA) BBB-CCCC`, `AAA-BBB-CCCC`, `AAA.BBB.CCCC`,
//!     `AAA BBB CCCC`, optionally after a `1` group (area starting 2-9), or a trunk-prefixed
//!     number (first digit 0) of 10-11 digits in 2-4 groups of 2 or more digits. A run of
//!     digits without separators and without `+` is never a phone (order ids, amounts);
//!   - an IPv4 address: four dot-separated groups of 0-255 without leading zeros (so `1.2.3`,
//!     `999.1.1.1` and `1.2.3.4.5` are not).
//! - IPv6: hex groups and colons (an IPv4 tail allowed), at most one `::`, eight groups or
//!   fewer with `::`, at least two colons, not touching a letter, digit or `_`; bare `::` is
//!   not matched.
//! - IBAN: a country code of the IBAN registry, two check digits, the country's length of
//!   letters and digits, compact or in groups of 4 separated by single spaces, mod 97 = 1.

use std::collections::BTreeSet;

use super::{Detection, EntityKind};

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

pub(super) fn detect_all(text: &str, kinds: &BTreeSet<EntityKind>) -> Vec<Detection> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    if kinds.contains(&EntityKind::Email) {
        emails(b, &mut out);
    }
    if kinds.contains(&EntityKind::Iban) {
        ibans(b, &mut out);
    }
    if kinds.contains(&EntityKind::Ip) {
        ipv6s(b, &mut out);
    }
    let want_runs = [
        EntityKind::Card,
        EntityKind::Ssn,
        EntityKind::Phone,
        EntityKind::Ip,
    ]
    .iter()
    .any(|k| kinds.contains(k));
    if want_runs {
        number_runs(b, kinds, &mut out);
    }
    out
}

/// `<LABEL_N>` already in the input.
pub(super) fn literals(text: &str) -> Vec<Detection> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'<' {
            if let Some(len) = placeholder_len(&b[i..]) {
                out.push(Detection {
                    kind: EntityKind::Literal,
                    start: i,
                    end: i + len,
                });
                i += len;
                continue;
            }
        }
        i += 1;
    }
    out
}

/// The length of a placeholder-shaped `<[A-Z]+_[0-9]+>` at the start of `b`.
pub(super) fn placeholder_len(b: &[u8]) -> Option<usize> {
    if b.first() != Some(&b'<') {
        return None;
    }
    let mut i = 1;
    while i < b.len() && b[i].is_ascii_uppercase() {
        i += 1;
    }
    if i == 1 || b.get(i) != Some(&b'_') {
        return None;
    }
    i += 1;
    let digits = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    if i == digits || b.get(i) != Some(&b'>') {
        return None;
    }
    Some(i + 1)
}

// ---- email

fn is_local(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-')
}

fn emails(b: &[u8], out: &mut Vec<Detection>) {
    let mut i = 0;
    let mut floor = 0; // the local part never reaches back over an earlier match
    while i < b.len() {
        if b[i] != b'@' {
            i += 1;
            continue;
        }
        let mut s = i;
        while s > floor && is_local(b[s - 1]) {
            s -= 1;
        }
        while s < i && b[s] == b'.' {
            s += 1;
        }
        let local_ok = s < i && b[i - 1] != b'.';
        // domain
        let mut e = i + 1;
        let mut labels = 0;
        let mut last_end = None;
        let mut last_alpha = false;
        loop {
            let ls = e;
            while e < b.len() && (b[e].is_ascii_alphanumeric() || b[e] == b'-') {
                e += 1;
            }
            if e == ls || b[ls] == b'-' || b[e - 1] == b'-' {
                break;
            }
            labels += 1;
            last_end = Some(e);
            last_alpha = e - ls >= 2 && b[ls..e].iter().all(u8::is_ascii_alphabetic);
            if e + 1 < b.len() && b[e] == b'.' && b[e + 1].is_ascii_alphanumeric() {
                e += 1;
            } else {
                break;
            }
        }
        match last_end {
            Some(end)
                if local_ok
                    && labels >= 2
                    && last_alpha
                    && !b.get(end).is_some_and(|c| is_word(*c)) =>
            {
                out.push(Detection {
                    kind: EntityKind::Email,
                    start: s,
                    end,
                });
                floor = end;
                i = end;
            }
            _ => i += 1,
        }
    }
}

// ---- number runs

/// A run of digit groups; entities are classified over sub-runs that split it at spaces.
#[derive(Debug)]
struct Run {
    start: usize,
    end: usize,
    plus: bool,
    /// (digit count, in parentheses, first digit)
    groups: Vec<(usize, bool, u8)>,
    seps: Vec<u8>,
    digits: Vec<u8>,
}

/// A parsed run before it is split: each group's byte span and digits.
#[derive(Debug, Default)]
struct RawRun {
    plus: bool,
    spans: Vec<(usize, usize)>,
    groups: Vec<(usize, bool, u8)>,
    seps: Vec<u8>,
    digits: Vec<Vec<u8>>,
}

/// The most groups one entity spans (E.164 written one digit at a time): bounds the work per group.
const MAX_GROUPS: usize = 15;

fn number_runs(b: &[u8], kinds: &BTreeSet<EntityKind>, out: &mut Vec<Detection>) {
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let starts = c.is_ascii_digit()
            || ((c == b'+' || c == b'(') && b.get(i + 1).is_some_and(u8::is_ascii_digit));
        if !starts {
            i += 1;
            continue;
        }
        // Left boundary: not inside a word, nor continuing a token we skipped (`1.2.3` in `v1.2.3`).
        let touching = i > 0
            && (is_word(b[i - 1])
                || (matches!(b[i - 1], b'.' | b'-' | b'/' | b':' | b'+')
                    && i > 1
                    && is_word(b[i - 2])));
        if touching {
            i += 1;
            while i < b.len()
                && (is_word(b[i])
                    || (matches!(b[i], b'.' | b'-') && b.get(i + 1).is_some_and(|n| is_word(*n))))
            {
                i += 1;
            }
            continue;
        }
        let (raw, next) = parse_run(b, i);
        split_run(&raw, kinds, out);
        i = next.max(i + 1);
    }
}

/// Parses the groups at `start`; returns them (the last dropped, up to the previous space,
/// if it touches a word) and where scanning goes on.
fn parse_run(b: &[u8], start: usize) -> (RawRun, usize) {
    let mut j = start;
    let mut run = RawRun {
        plus: b[j] == b'+',
        ..RawRun::default()
    };
    if run.plus {
        j += 1;
    }
    let mut end = start;
    loop {
        let paren = b.get(j) == Some(&b'(');
        let gs = if paren { j + 1 } else { j };
        let mut k = gs;
        while k < b.len() && b[k].is_ascii_digit() {
            k += 1;
        }
        if k == gs || (paren && b.get(k) != Some(&b')')) {
            break;
        }
        let group_start = if run.groups.is_empty() { start } else { j };
        j = if paren { k + 1 } else { k };
        run.spans.push((group_start, j));
        run.digits.push(b[gs..k].to_vec());
        run.groups.push((k - gs, paren, b[gs]));
        end = j;
        let mut n = j;
        let mut sep = 0u8;
        if n < b.len() && matches!(b[n], b' ' | b'-' | b'.') {
            sep = b[n];
            n += 1;
        }
        let digit_follows = b.get(n).is_some_and(u8::is_ascii_digit);
        let paren_follows = b.get(n) == Some(&b'(') && b.get(n + 1).is_some_and(u8::is_ascii_digit);
        if !(paren_follows || (digit_follows && (sep != 0 || paren))) {
            break;
        }
        run.seps.push(sep);
        j = n;
    }
    if b.get(end).is_some_and(|c| is_word(*c)) {
        // The last group runs into a word: keep what is before the last space.
        let mut e = end;
        while e < b.len() && is_word(b[e]) {
            e += 1;
        }
        match run.seps.iter().rposition(|s| *s == b' ') {
            Some(p) => {
                run.spans.truncate(p + 1);
                run.groups.truncate(p + 1);
                run.digits.truncate(p + 1);
                run.seps.truncate(p);
            }
            None => run = RawRun::default(),
        }
        return (run, e);
    }
    (run, end)
}

/// At each group that starts the run or follows a space, the longest sub-run (up to
/// [`MAX_GROUPS`] groups, ending at the run's end or before a space) that is an entity.
fn split_run(run: &RawRun, kinds: &BTreeSet<EntityKind>, out: &mut Vec<Detection>) {
    let n = run.groups.len();
    let mut s = 0;
    while s < n {
        if s > 0 && run.seps[s - 1] != b' ' {
            s += 1;
            continue;
        }
        let mut hit = None;
        let last = (s + MAX_GROUPS).min(n) - 1;
        for e in (s..=last).rev() {
            if e + 1 < n && run.seps[e] != b' ' {
                continue;
            }
            let sub = Run {
                start: run.spans[s].0,
                end: run.spans[e].1,
                plus: run.plus && s == 0,
                groups: run.groups[s..=e].to_vec(),
                seps: run.seps[s..e].to_vec(),
                digits: run.digits[s..=e].concat(),
            };
            if let Some(kind) = classify(&sub, kinds) {
                hit = Some((kind, sub.start, sub.end, e));
                break;
            }
        }
        match hit {
            Some((kind, start, end, e)) => {
                out.push(Detection { kind, start, end });
                s = e + 1;
            }
            None => s += 1,
        }
    }
}

fn classify(run: &Run, kinds: &BTreeSet<EntityKind>) -> Option<EntityKind> {
    let want = |k| kinds.contains(&k);
    if want(EntityKind::Card) && is_card(run) {
        return Some(EntityKind::Card);
    }
    if want(EntityKind::Ssn) && is_ssn(run) {
        return Some(EntityKind::Ssn);
    }
    if want(EntityKind::Ip) && is_ipv4(run) {
        return Some(EntityKind::Ip);
    }
    if want(EntityKind::Phone) && is_phone(run) {
        return Some(EntityKind::Phone);
    }
    None
}

fn no_parens(run: &Run) -> bool {
    run.groups.iter().all(|g| !g.1)
}

fn is_card(run: &Run) -> bool {
    let n = run.digits.len();
    if run.plus
        || !no_parens(run)
        || !(13..=19).contains(&n)
        || !(b'2'..=b'6').contains(&run.digits[0])
    {
        return false;
    }
    if run.groups.len() > 1 {
        let first = run.seps[0];
        if !matches!(first, b' ' | b'-') || run.seps.iter().any(|s| *s != first) {
            return false;
        }
        if run.groups.iter().any(|g| !(4..=6).contains(&g.0)) {
            return false;
        }
    }
    luhn(&run.digits)
}

pub(super) fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, d) in digits.iter().rev().enumerate() {
        let mut v = u32::from(d - b'0');
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

fn is_ssn(run: &Run) -> bool {
    if run.plus || !no_parens(run) || run.seps != [b'-', b'-'] {
        return false;
    }
    let lens: Vec<usize> = run.groups.iter().map(|g| g.0).collect();
    if lens != [3, 2, 4] {
        return false;
    }
    let d = &run.digits;
    let area = &d[0..3];
    area != b"000" && area != b"666" && area[0] != b'9' && &d[3..5] != b"00" && &d[5..9] != b"0000"
}

fn is_ipv4(run: &Run) -> bool {
    if run.plus || !no_parens(run) || run.groups.len() != 4 || run.seps.iter().any(|s| *s != b'.') {
        return false;
    }
    let mut at = 0;
    for g in &run.groups {
        let part = &run.digits[at..at + g.0];
        at += g.0;
        if part.len() > 3 || (part.len() > 1 && part[0] == b'0') {
            return false;
        }
        let v: u32 = part.iter().fold(0, |a, d| a * 10 + u32::from(d - b'0'));
        if v > 255 {
            return false;
        }
    }
    true
}

fn is_phone(run: &Run) -> bool {
    let n = run.digits.len();
    if run.plus {
        // Grouped, the first group is the country code (1-3 digits).
        let grouping = run.groups.len() == 1 || run.groups[0].0 <= 3;
        return (8..=15).contains(&n) && run.digits[0] != b'0' && grouping;
    }
    if run.groups.len() < 2 {
        return false;
    }
    let lens: Vec<usize> = run.groups.iter().map(|g| g.0).collect();
    // North American, optionally after a `1` group.
    let nanp = match lens.as_slice() {
        [3, 3, 4] => Some(0),
        [1, 3, 3, 4] if run.digits[0] == b'1' && !run.groups[0].1 => Some(1),
        _ => None,
    };
    if let Some(area) = nanp {
        let (first, second) = (run.seps[area], run.seps[area + 1]);
        let parens_ok = run
            .groups
            .iter()
            .enumerate()
            .all(|(i, g)| !g.1 || i == area);
        let seps_ok = if run.groups[area].1 {
            matches!(first, b' ' | 0) && matches!(second, b' ' | b'-' | b'.')
        } else {
            first != 0 && first == second
        };
        return (b'2'..=b'9').contains(&run.groups[area].2) && parens_ok && seps_ok;
    }
    // Trunk-prefixed national numbers.
    run.digits[0] == b'0'
        && (10..=12).contains(&n)
        && (2..=4).contains(&run.groups.len())
        && lens.iter().all(|l| *l >= 2)
        && run.seps.iter().all(|s| matches!(s, b' ' | b'-' | 0))
        && run.groups.iter().enumerate().all(|(i, g)| !g.1 || i == 0)
}

// ---- IPv6

fn ipv6s(b: &[u8], out: &mut Vec<Detection>) {
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if !(c.is_ascii_hexdigit() || c == b':')
            || (i > 0 && (is_word(b[i - 1]) || b[i - 1] == b':' || b[i - 1] == b'.'))
        {
            i += 1;
            continue;
        }
        let mut e = i;
        while e < b.len() && (b[e].is_ascii_hexdigit() || b[e] == b':' || b[e] == b'.') {
            e += 1;
        }
        if b.get(e).is_some_and(|c| is_word(*c)) {
            while e < b.len() && is_word(b[e]) {
                e += 1;
            }
            i = e;
            continue;
        }
        // trailing punctuation belongs to the sentence
        let mut end = e;
        while end > i && b[end - 1] == b'.' {
            end -= 1;
        }
        if end > i + 1 && b[end - 1] == b':' && b[end - 2] != b':' {
            end -= 1;
        }
        if valid_ipv6(&b[i..end]) {
            out.push(Detection {
                kind: EntityKind::Ip,
                start: i,
                end,
            });
        }
        i = e.max(i + 1);
    }
}

fn valid_ipv6(s: &[u8]) -> bool {
    if s.iter().filter(|c| **c == b':').count() < 2 || s == b"::" {
        return false;
    }
    let text = match std::str::from_utf8(s) {
        Ok(t) => t,
        Err(_) => return false,
    };
    let (head, tail, compressed) = match text.find("::") {
        Some(p) => (&text[..p], &text[p + 2..], true),
        None => (text, "", false),
    };
    if tail.contains("::") {
        return false;
    }
    let mut count = 0;
    let parts: Vec<&str> = [head, tail]
        .into_iter()
        .filter(|p| !p.is_empty())
        .flat_map(|p| p.split(':'))
        .collect();
    let last = parts.len().saturating_sub(1);
    for (i, p) in parts.iter().enumerate() {
        if p.contains('.') {
            if i != last || !ipv4_text(p) {
                return false;
            }
            count += 2;
        } else if (1..=4).contains(&p.len()) && p.bytes().all(|c| c.is_ascii_hexdigit()) {
            count += 1;
        } else {
            return false;
        }
    }
    if compressed {
        count < 8
    } else {
        count == 8
    }
}

fn ipv4_text(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 4
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.len() <= 3
                && p.bytes().all(|c| c.is_ascii_digit())
                && !(p.len() > 1 && p.starts_with('0'))
                && p.parse::<u16>().is_ok_and(|v| v <= 255)
        })
}

// ---- IBAN

/// The IBAN registry's countries and their lengths.
const IBAN_LENGTHS: &[(&[u8; 2], usize)] = &[
    (b"AD", 24),
    (b"AE", 23),
    (b"AL", 28),
    (b"AT", 20),
    (b"AZ", 28),
    (b"BA", 20),
    (b"BE", 16),
    (b"BG", 22),
    (b"BH", 22),
    (b"BR", 29),
    (b"BY", 28),
    (b"CH", 21),
    (b"CR", 22),
    (b"CY", 28),
    (b"CZ", 24),
    (b"DE", 22),
    (b"DK", 18),
    (b"DO", 28),
    (b"EE", 20),
    (b"EG", 29),
    (b"ES", 24),
    (b"FI", 18),
    (b"FO", 18),
    (b"FR", 27),
    (b"GB", 22),
    (b"GE", 22),
    (b"GI", 23),
    (b"GL", 18),
    (b"GR", 27),
    (b"GT", 28),
    (b"HR", 21),
    (b"HU", 28),
    (b"IE", 22),
    (b"IL", 23),
    (b"IQ", 23),
    (b"IS", 26),
    (b"IT", 27),
    (b"JO", 30),
    (b"KW", 30),
    (b"KZ", 20),
    (b"LB", 28),
    (b"LC", 32),
    (b"LI", 21),
    (b"LT", 20),
    (b"LU", 20),
    (b"LV", 21),
    (b"MC", 27),
    (b"MD", 24),
    (b"ME", 22),
    (b"MK", 19),
    (b"MR", 27),
    (b"MT", 31),
    (b"MU", 30),
    (b"NL", 18),
    (b"NO", 15),
    (b"PK", 24),
    (b"PL", 28),
    (b"PS", 29),
    (b"PT", 25),
    (b"QA", 29),
    (b"RO", 24),
    (b"RS", 22),
    (b"SA", 24),
    (b"SC", 31),
    (b"SE", 24),
    (b"SI", 19),
    (b"SK", 24),
    (b"SM", 27),
    (b"ST", 25),
    (b"SV", 28),
    (b"TL", 23),
    (b"TN", 24),
    (b"TR", 26),
    (b"UA", 29),
    (b"VA", 22),
    (b"VG", 24),
    (b"XK", 20),
];

fn ibans(b: &[u8], out: &mut Vec<Detection>) {
    let mut i = 0;
    while i + 4 <= b.len() {
        let start_ok = b[i].is_ascii_uppercase()
            && b[i + 1].is_ascii_uppercase()
            && b[i + 2].is_ascii_digit()
            && b[i + 3].is_ascii_digit()
            && (i == 0 || !is_word(b[i - 1]));
        let len = if start_ok {
            IBAN_LENGTHS
                .iter()
                .find(|(cc, _)| cc[..] == b[i..i + 2])
                .map(|(_, l)| *l)
        } else {
            None
        };
        if let Some(end) = len.and_then(|len| iban_at(b, i, len)) {
            out.push(Detection {
                kind: EntityKind::Iban,
                start: i,
                end,
            });
            i = end;
        } else {
            i += 1;
        }
    }
}

/// An IBAN of `len` characters at `s` (compact, or groups of 4 after single spaces).
fn iban_at(b: &[u8], s: usize, len: usize) -> Option<usize> {
    let mut chars = Vec::with_capacity(len);
    let mut j = s;
    let mut spaced = None;
    while chars.len() < len {
        let c = *b.get(j)?;
        if c.is_ascii_uppercase() || c.is_ascii_digit() {
            chars.push(c);
            j += 1;
        } else if c == b' ' && !chars.is_empty() && chars.len() % 4 == 0 && spaced != Some(false) {
            spaced = Some(true);
            j += 1;
        } else {
            return None;
        }
        if chars.len() % 4 != 0 && spaced.is_none() && chars.len() > 4 {
            spaced = Some(false);
        }
    }
    if b.get(j).is_some_and(|c| is_word(*c)) {
        return None;
    }
    mod97(&chars).then_some(j)
}

fn mod97(chars: &[u8]) -> bool {
    let mut rem = 0u32;
    for c in chars[4..].iter().chain(&chars[..4]) {
        let v = if c.is_ascii_digit() {
            u32::from(c - b'0')
        } else {
            u32::from(c - b'A') + 10
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}
