//! Generates a deterministic labelled corpus (JSONL: `{"text", "spans": [{"start","end",
//! "entity"}]}`, offsets in characters, entity names as Presidio's) and prints the precision,
//! recall and throughput of `portcullis_gateway::redact` on it, so the same file can be given
//! to Presidio (`presidio-analyzer`) later.
//!
//! `cargo run --release -p portcullis-gateway --example redact_corpus -- [N] [OUT.jsonl]`
//! (defaults: 5000 texts, `target/redact-corpus.jsonl`).

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Instant;

use portcullis_gateway::redact::{EntityKind, RedactionPolicy, Redactor};

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len() as u64) as usize]
    }
    fn digits(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| char::from(b'0' + self.below(10) as u8))
            .collect()
    }
}

const NAMES: &[&str] = &[
    "ada", "bob", "chen", "dana", "eli", "fatima", "goran", "hiro",
];
const DOMAINS: &[&str] = &[
    "example.com",
    "mail.example.org",
    "corp.example.co.uk",
    "example.io",
];
const TERMS: &[&str] = &["Globex", "Initech", "Project Falcon"];
const FILLER: &[&str] = &[
    "please check the account",
    "the ticket was escalated",
    "see version 2.4.1 of the client",
    "order 20261203123456 shipped",
    "invoice total 1 250.00",
    "meeting at 10:30 tomorrow",
    "build 1.2.3.4.5 failed",
    "reference ABC-1234",
];

fn luhn_complete(mut body: String) -> String {
    for d in 0..10 {
        let candidate = format!("{body}{d}");
        let sum: u32 = candidate
            .bytes()
            .rev()
            .enumerate()
            .map(|(i, c)| {
                let v = u32::from(c - b'0');
                if i % 2 == 1 {
                    if v * 2 > 9 {
                        v * 2 - 9
                    } else {
                        v * 2
                    }
                } else {
                    v
                }
            })
            .sum();
        if sum.is_multiple_of(10) {
            body = candidate;
            return body;
        }
    }
    body
}

fn iban(rng: &mut Rng) -> String {
    let bban = rng.digits(18);
    // DE: 2 letters, 2 check digits, 18 digits; check digits from mod 97.
    let numeric = format!("{bban}131400");
    let rem = numeric
        .bytes()
        .fold(0u32, |r, c| (r * 10 + u32::from(c - b'0')) % 97);
    format!("DE{:02}{bban}", 98 - rem)
}

/// One value of an entity: (text, Presidio entity name), or a near miss (None).
fn value(rng: &mut Rng) -> (String, Option<&'static str>) {
    match rng.below(9) {
        0 => (
            format!(
                "{}.{}@{}",
                rng.pick(NAMES),
                rng.digits(2),
                rng.pick(DOMAINS)
            ),
            Some("EMAIL_ADDRESS"),
        ),
        1 => match rng.below(3) {
            0 => (
                format!("+1 ({}) 555-{}", 200 + rng.below(700), rng.digits(4)),
                Some("PHONE_NUMBER"),
            ),
            1 => (
                format!("+44 20 {} {}", rng.digits(4), rng.digits(4)),
                Some("PHONE_NUMBER"),
            ),
            _ => (
                format!("{}-555-{}", 200 + rng.below(700), rng.digits(4)),
                Some("PHONE_NUMBER"),
            ),
        },
        2 => {
            let n = luhn_complete(format!("4{}", rng.digits(14)));
            (
                format!("{} {} {} {}", &n[0..4], &n[4..8], &n[8..12], &n[12..16]),
                Some("CREDIT_CARD"),
            )
        }
        3 => (iban(rng), Some("IBAN_CODE")),
        4 => (
            format!(
                "{}-{}-{}",
                100 + rng.below(565),
                10 + rng.below(89),
                1000 + rng.below(8999)
            ),
            Some("US_SSN"),
        ),
        5 => (
            format!(
                "10.{}.{}.{}",
                rng.below(256),
                rng.below(256),
                1 + rng.below(254)
            ),
            Some("IP_ADDRESS"),
        ),
        6 => (
            format!("2001:db8::{:x}:{:x}", rng.below(65536), rng.below(65536)),
            Some("IP_ADDRESS"),
        ),
        7 => (rng.pick(TERMS).to_owned(), Some("TERM")),
        // Near misses: a card failing Luhn, an SSN in an invalid range, a version number.
        _ => match rng.below(3) {
            0 => {
                let n = luhn_complete(format!("4{}", rng.digits(14)));
                let last = (n.as_bytes()[15] - b'0' + 1) % 10;
                (format!("{}{}", &n[..15], last), None)
            }
            1 => (
                format!("666-{}-{}", 10 + rng.below(89), 1000 + rng.below(8999)),
                None,
            ),
            _ => (
                format!("{}.{}.{}", rng.below(10), rng.below(20), rng.below(100)),
                None,
            ),
        },
    }
}

fn presidio_name(kind: EntityKind) -> &'static str {
    match kind {
        EntityKind::Email => "EMAIL_ADDRESS",
        EntityKind::Phone => "PHONE_NUMBER",
        EntityKind::Card => "CREDIT_CARD",
        EntityKind::Iban => "IBAN_CODE",
        EntityKind::Ssn => "US_SSN",
        EntityKind::Ip => "IP_ADDRESS",
        EntityKind::Term => "TERM",
        EntityKind::Literal => "LITERAL",
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).map(|a| a.parse()).transpose()?.unwrap_or(5000);
    let out_path = args
        .get(2)
        .cloned()
        .unwrap_or_else(|| "target/redact-corpus.jsonl".into());
    let mut rng = Rng(0x5EED_CAFE_F00D_0001);
    let mut corpus = Vec::with_capacity(n);
    for _ in 0..n {
        let mut text = String::new();
        let mut spans = Vec::new();
        for _ in 0..1 + rng.below(4) {
            text.push_str(rng.pick(FILLER));
            text.push_str(", contact ");
            let (v, entity) = value(&mut rng);
            let start = text.chars().count();
            text.push_str(&v);
            if let Some(entity) = entity {
                spans.push((start, start + v.chars().count(), entity));
            }
            text.push_str(". ");
        }
        corpus.push((text, spans));
    }
    let mut file = std::io::BufWriter::new(std::fs::File::create(&out_path)?);
    for (text, spans) in &corpus {
        let spans: Vec<_> = spans
            .iter()
            .map(|(s, e, k)| serde_json::json!({"start": s, "end": e, "entity": k}))
            .collect();
        writeln!(
            file,
            "{}",
            serde_json::json!({"text": text, "spans": spans})
        )?;
    }
    file.flush()?;

    let policy = RedactionPolicy {
        terms: TERMS.iter().map(|t| (*t).to_owned()).collect(),
        ..Default::default()
    };
    let redactor = Redactor::new(&policy)?;
    let bytes: usize = corpus.iter().map(|(t, _)| t.len()).sum();
    let started = Instant::now();
    let mut found = Vec::with_capacity(corpus.len());
    for (text, _) in &corpus {
        found.push(redactor.detect(text));
    }
    let elapsed = started.elapsed().as_secs_f64();

    // (true positives, false positives, false negatives) per entity, exact span match.
    let mut tally: BTreeMap<&str, (u64, u64, u64)> = BTreeMap::new();
    for ((text, truth), detections) in corpus.iter().zip(&found) {
        let got: Vec<(usize, usize, &str)> = detections
            .iter()
            .map(|d| {
                (
                    text[..d.start].chars().count(),
                    text[..d.end].chars().count(),
                    presidio_name(d.kind),
                )
            })
            .collect();
        for g in &got {
            let t = tally.entry(g.2).or_default();
            if truth.contains(g) {
                t.0 += 1
            } else {
                t.1 += 1
            }
        }
        for t in truth {
            if !got.contains(t) {
                tally.entry(t.2).or_default().2 += 1;
            }
        }
    }
    println!("corpus: {n} texts, {bytes} bytes, written to {out_path}");
    println!(
        "{:<14} {:>6} {:>6} {:>6} {:>9} {:>9}",
        "entity", "tp", "fp", "fn", "precision", "recall"
    );
    for (entity, (tp, fp, fneg)) in &tally {
        let p = *tp as f64 / (*tp + *fp).max(1) as f64;
        let r = *tp as f64 / (*tp + *fneg).max(1) as f64;
        println!("{entity:<14} {tp:>6} {fp:>6} {fneg:>6} {p:>9.3} {r:>9.3}");
    }
    println!(
        "throughput: {:.1} MB/s, {:.0} texts/s ({elapsed:.3} s)",
        bytes as f64 / elapsed / 1e6,
        n as f64 / elapsed
    );
    Ok(())
}
