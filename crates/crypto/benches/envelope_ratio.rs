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
//!
//! A second table splits the round trip into its two directions (seal vs encrypt, open of one
//! fixed sealed value vs decrypt), and a third times, alone, the pieces the envelope adds: the
//! OsRng nonce, the per-call key schedule, the zeroizing of the opened plaintext, and a 64 KiB
//! memcpy with and without "4K aliasing" (destination 1..31 bytes past the source modulo
//! 4096). The last column of the first two tables counts how many operations made such a copy:
//! on some CPUs glibc's `rep movsb` copy is many times slower then, which makes 64 KiB numbers
//! depend on where the allocator happens to put buffers rather than on the code under test.
//! Running with `GLIBC_TUNABLES=glibc.cpu.x86_rep_movsb_threshold=4194304` takes that path
//! out of play.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::cell::Cell;
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

/// Bytes before the ciphertext in a sealed value (format version, key id, key version, nonce).
const HEADER_LEN: usize = 1 + 16 + 4 + 12;

/// Whether a copy from `src` to `dst` is "4K-aliased": `dst` lies 1 to 31 bytes past `src`
/// modulo 4096. On the AMD EPYC machine of docs/BENCHMARKS.md, glibc's memcpy of 64 KiB then
/// takes over ten times longer (the last rows of the component table measure it).
fn aliased(dst: *const u8, src: *const u8) -> bool {
    (1..32).contains(&((dst as usize).wrapping_sub(src as usize) % 4096))
}

/// Counts the operations (calibration included) that made a 4K-aliased copy.
#[derive(Default)]
struct AliasCount {
    ops: Cell<u64>,
    aliased: Cell<u64>,
}

impl AliasCount {
    fn note(&self, aliased: bool) {
        self.ops.set(self.ops.get() + 1);
        self.aliased.set(self.aliased.get() + u64::from(aliased));
    }

    fn show(&self) -> String {
        format!(
            "{:.0}%",
            100.0 * self.aliased.get() as f64 / self.ops.get().max(1) as f64
        )
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "n/a".into())
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is not supported and is ignored.
    // Without `--bench` (`cargo test --benches`) only check that sealed values open.
    let measure = std::env::args().any(|a| a == "--bench");
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

    if !measure {
        for size in [256usize, 64 * 1024] {
            let plaintext = vec![0x5au8; size];
            let ct = envelope::seal(&key, label, &place, &plaintext);
            assert_eq!(&*envelope::open(&key, &place, &ct).unwrap(), &plaintext[..]);
        }
        println!("envelope_ratio: smoke test passed (run with `cargo bench` to measure)");
        return;
    }

    println!("load average at start: {}", loadavg());
    println!();
    println!(
        "| value size | iters/round | raw AES-256-GCM ns/op | seal+open ns/op | throughput ratio envelope/raw (median of {ROUNDS}) | added ns/op (median) | ops with a 4K-aliased copy, raw / envelope |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    let mut one_way = Vec::new();
    for (size, name) in [(256usize, "256 B"), (64 * 1024, "64 KiB")] {
        let plaintext = vec![0x5au8; size];
        let raw_encrypt = || {
            cipher
                .encrypt(
                    Nonce::from_slice(&nonce),
                    Payload {
                        msg: black_box(plaintext.as_slice()),
                        aad: b"",
                    },
                )
                .unwrap()
        };
        let raw_decrypt = |ct: &[u8]| {
            cipher
                .decrypt(
                    Nonce::from_slice(&nonce),
                    Payload {
                        msg: black_box(ct),
                        aad: b"",
                    },
                )
                .unwrap()
        };
        // `Aead::encrypt` copies the plaintext into a new buffer and `Aead::decrypt` the
        // ciphertext; `open`'s output is the buffer its decrypt copied into, from just after
        // the header. (`seal`'s internal copies cannot be observed from here.)
        let (raw_alias, env_alias) = (AliasCount::default(), AliasCount::default());
        let mut raw = || {
            let ct = raw_encrypt();
            let back = raw_decrypt(&ct);
            raw_alias.note(
                aliased(ct.as_ptr(), plaintext.as_ptr()) || aliased(back.as_ptr(), ct.as_ptr()),
            );
            black_box(back);
        };
        let mut env = || {
            let ct = envelope::seal(&key, label, &place, black_box(plaintext.as_slice()));
            let back = envelope::open(&key, &place, black_box(ct.as_slice())).unwrap();
            env_alias.note(aliased(back.as_ptr(), ct[HEADER_LEN..].as_ptr()));
            black_box(back);
        };
        // Sanity: both arms round-trip.
        let ct = envelope::seal(&key, label, &place, &plaintext);
        assert_eq!(&*envelope::open(&key, &place, &ct).unwrap(), &plaintext[..]);
        assert_eq!(raw_decrypt(&raw_encrypt()), plaintext);
        drop(ct);

        let p = interleave(&mut raw, &mut env);
        println!(
            "| {name} | {} | {:.0} | {:.0} | {:.3} | {:.0} | {} / {} |",
            p.n,
            p.a_ns,
            p.b_ns,
            p.ratio,
            p.added_ns,
            raw_alias.show(),
            env_alias.show()
        );

        // Each direction alone: seal vs encrypt, open (of one fixed sealed value) vs decrypt.
        let (enc_alias, dec_alias, open_alias) = (
            AliasCount::default(),
            AliasCount::default(),
            AliasCount::default(),
        );
        let e = interleave(
            &mut || {
                let ct = raw_encrypt();
                enc_alias.note(aliased(ct.as_ptr(), plaintext.as_ptr()));
                black_box(ct);
            },
            &mut || {
                black_box(envelope::seal(
                    &key,
                    label,
                    &place,
                    black_box(plaintext.as_slice()),
                ));
            },
        );
        let raw_ct = raw_encrypt();
        let sealed = envelope::seal(&key, label, &place, &plaintext);
        let d = interleave(
            &mut || {
                let back = raw_decrypt(&raw_ct);
                dec_alias.note(aliased(back.as_ptr(), raw_ct.as_ptr()));
                black_box(back);
            },
            &mut || {
                let back = envelope::open(&key, &place, black_box(sealed.as_slice())).unwrap();
                open_alias.note(aliased(back.as_ptr(), sealed[HEADER_LEN..].as_ptr()));
                black_box(back);
            },
        );
        one_way.push((
            name,
            [
                ("seal vs encrypt", e, enc_alias.show(), "n/a".to_string()),
                ("open vs decrypt", d, dec_alias.show(), open_alias.show()),
            ],
        ));
    }

    println!();
    println!(
        "| value size | direction | iters/round | raw ns/op | envelope ns/op | ratio envelope/raw (median) | added ns/op (median) | ops with a 4K-aliased copy, raw / envelope |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|");
    for (name, rows) in &one_way {
        for (dir, p, ra, ea) in rows {
            println!(
                "| {name} | {dir} | {} | {:.0} | {:.0} | {:.3} | {:.0} | {ra} / {ea} |",
                p.n, p.a_ns, p.b_ns, p.ratio, p.added_ns
            );
        }
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
    // A 64 KiB memcpy whose destination sits a few bytes past a 4 KiB multiple from its
    // source ("4K aliasing"), against a page-congruent one.
    let mut buf = vec![3u8; 1 << 20];
    let align = (buf.as_ptr() as usize).wrapping_neg() % 4096;
    for delta in [0usize, 31] {
        let (a, b) = buf.split_at_mut(align + 128 * 1024);
        let src = &a[align + 33..align + 33 + 64 * 1024];
        // b starts at a 4 KiB boundary: dst - src = 128 KiB - 33 + 33 + delta.
        let dst = &mut b[33 + delta..33 + delta + 64 * 1024];
        let (n, ns) = alone(&mut || {
            dst.copy_from_slice(black_box(src));
            black_box(&mut *dst);
        });
        println!("| memcpy 64 KiB, (dst - src) mod 4096 = {delta} | {n} | {ns:.0} |");
    }
    println!();
    println!("load average at end: {}", loadavg());
}
