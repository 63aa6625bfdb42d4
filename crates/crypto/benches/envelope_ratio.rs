//! Side-by-side ratio runner for envelope encryption: the raw AES-256-GCM primitive and
//! `envelope::seal` + `envelope::open`, interleaved in alternating rounds so that background
//! load hits both arms alike. Prints Markdown tables.
//!
//! `cargo bench -p portcullis-crypto --bench envelope_ratio`
//!
//! One operation is one encrypt and one decrypt of a value of the stated size (plaintext and
//! ciphertext dropped, as in real use: `open`'s plaintext is zeroized on drop). For every round
//! each arm runs `n` operations back to back; the arm that goes first alternates between
//! rounds. Reported: median ns/op of each arm over the rounds, the median of the per-round
//! throughput ratios (raw time / envelope time, so 1.0 means no overhead), and the median of
//! the per-round added time (envelope ns/op - raw ns/op).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use portcullis_crypto::envelope::{self, DataKey, KeyLabel, Place};
use rand::rngs::OsRng;
use rand::RngCore;
use uuid::Uuid;
use zeroize::Zeroize;

const ROUNDS: usize = 15;
/// Wall time each arm gets per round (the iteration count is calibrated to it).
const ROUND_TARGET: Duration = Duration::from_millis(40);

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// Runs `f` `n` times and returns ns per call.
fn time_n(n: u64, f: &mut dyn FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..n {
        f();
    }
    start.elapsed().as_nanos() as f64 / n as f64
}

/// Iterations of `f` that take about `ROUND_TARGET` (after a warm-up).
fn calibrate(f: &mut dyn FnMut()) -> u64 {
    let mut n = 1u64;
    loop {
        let start = Instant::now();
        for _ in 0..n {
            f();
        }
        let took = start.elapsed();
        if took >= ROUND_TARGET / 4 {
            let per = took.as_nanos() as f64 / n as f64;
            return ((ROUND_TARGET.as_nanos() as f64 / per) as u64).max(1);
        }
        n *= 2;
    }
}

struct Pair {
    n: u64,
    a_ns: f64,
    b_ns: f64,
    /// Median of per-round a_time / b_time.
    ratio: f64,
    /// Median of per-round b_time - a_time, ns per op.
    added_ns: f64,
}

/// Interleaves `a` and `b` for `ROUNDS` rounds, alternating which runs first.
fn interleave(a: &mut dyn FnMut(), b: &mut dyn FnMut()) -> Pair {
    let n = calibrate(a).min(calibrate(b));
    let (mut ta, mut tb, mut ratios, mut added) = (vec![], vec![], vec![], vec![]);
    for round in 0..ROUNDS {
        let (x, y) = if round % 2 == 0 {
            let x = time_n(n, a);
            (x, time_n(n, b))
        } else {
            let y = time_n(n, b);
            (time_n(n, a), y)
        };
        ta.push(x);
        tb.push(y);
        ratios.push(x / y);
        added.push(y - x);
    }
    Pair {
        n,
        a_ns: median(&mut ta),
        b_ns: median(&mut tb),
        ratio: median(&mut ratios),
        added_ns: median(&mut added),
    }
}

/// Median ns per call of `f` over `ROUNDS` rounds.
fn alone(f: &mut dyn FnMut()) -> (u64, f64) {
    let n = calibrate(f);
    let mut t: Vec<f64> = (0..ROUNDS).map(|_| time_n(n, f)).collect();
    (n, median(&mut t))
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "n/a".into())
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is not supported and is ignored.
    let key = DataKey::generate();
    let label = KeyLabel {
        key_id: Uuid::from_u128(0x0190_a1b2_c3d4_7e5f_8a9b_0c1d_2e3f_4a5b),
        version: 3,
    };
    let row = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5c";
    let place = Place {
        environment: Uuid::from_u128(0x0190_a1b2_c3d4_7e5f_8a9b_0c1d_2e3f_4a5d),
        table: "documents",
        column: "body",
        row,
    };
    let cipher = Aes256Gcm::new(key.expose().into());
    let nonce = [7u8; 12];

    println!("load average at start: {}", loadavg());
    println!();
    println!(
        "| value size | iters/round | raw AES-256-GCM ns/op | seal+open ns/op | throughput ratio envelope/raw (median of {ROUNDS}) | added ns/op (median) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    for (size, name) in [(256usize, "256 B"), (64 * 1024, "64 KiB")] {
        let plaintext = vec![0x5au8; size];
        let mut raw = || {
            let ct = cipher
                .encrypt(
                    Nonce::from_slice(&nonce),
                    Payload {
                        msg: black_box(plaintext.as_slice()),
                        aad: b"",
                    },
                )
                .unwrap();
            let back = cipher
                .decrypt(
                    Nonce::from_slice(&nonce),
                    Payload {
                        msg: black_box(ct.as_slice()),
                        aad: b"",
                    },
                )
                .unwrap();
            black_box(back);
        };
        let mut env = || {
            let ct = envelope::seal(&key, label, &place, black_box(plaintext.as_slice()));
            let back = envelope::open(&key, &place, black_box(ct.as_slice())).unwrap();
            black_box(back);
        };
        // Sanity: both arms round-trip.
        let ct = envelope::seal(&key, label, &place, &plaintext);
        assert_eq!(&*envelope::open(&key, &place, &ct).unwrap(), &plaintext[..]);

        let p = interleave(&mut raw, &mut env);
        println!(
            "| {name} | {} | {:.0} | {:.0} | {:.3} | {:.0} |",
            p.n, p.a_ns, p.b_ns, p.ratio, p.added_ns
        );
    }

    // What the envelope adds, piece by piece (each measured alone, median of ROUNDS rounds).
    println!();
    println!("| component (per call) | iters/round | ns/call (median of {ROUNDS}) |");
    println!("|---|---:|---:|");
    let mut buf = [0u8; 12];
    let (n, ns) = alone(&mut || {
        OsRng.fill_bytes(black_box(&mut buf));
    });
    println!("| OsRng.fill_bytes(12 B) (getrandom syscall) | {n} | {ns:.0} |");
    let (n, ns) = alone(&mut || {
        black_box(Aes256Gcm::new(black_box(key.expose()).into()));
    });
    println!("| Aes256Gcm::new (key schedule) | {n} | {ns:.0} |");
    for (size, name) in [(256usize, "256 B"), (64 * 1024, "64 KiB")] {
        let (n, ns) = alone(&mut || {
            let mut v = vec![0x5au8; size];
            black_box(&mut v);
            v.zeroize();
            black_box(v);
        });
        let (n2, ns2) = alone(&mut || {
            let v = vec![0x5au8; size];
            black_box(v);
        });
        println!("| allocate + fill + zeroize Vec, {name} | {n} | {ns:.0} |");
        println!("| allocate + fill Vec, {name} (baseline for the row above) | {n2} | {ns2:.0} |");
    }
    println!();
    println!("load average at end: {}", loadavg());
}
