//! Envelope encryption throughput (criterion): the raw AES-256-GCM primitive against
//! `envelope::seal` + `envelope::open`, for 256 B and 64 KiB values.
//!
//! Each iteration is one encrypt and one decrypt of a value of the stated size; the reported
//! throughput counts the value's bytes once per iteration (a full round trip).
//!
//! `cargo bench -p portcullis-crypto --bench envelope`. On a noisy machine prefer the
//! interleaved side-by-side runner: `cargo bench -p portcullis-crypto --bench envelope_ratio`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use portcullis_crypto::envelope::{self, DataKey, KeyLabel, Place};
use uuid::Uuid;

const SIZES: [(usize, &str); 2] = [(256, "256B"), (64 * 1024, "64KiB")];

fn bench_envelope(c: &mut Criterion) {
    let key = DataKey::generate();
    let label = KeyLabel {
        key_id: Uuid::from_u128(0x0190_a1b2_c3d4_7e5f_8a9b_0c1d_2e3f_4a5b),
        version: 3,
    };
    // A realistic place: a document body in one row of one environment.
    let row = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5c";
    let place = Place {
        environment: Uuid::from_u128(0x0190_a1b2_c3d4_7e5f_8a9b_0c1d_2e3f_4a5d),
        table: "documents",
        column: "body",
        row,
    };
    // The primitive the envelope wraps, keyed once, fixed nonce, empty associated data.
    let cipher = Aes256Gcm::new(key.expose().into());
    let nonce = [7u8; 12];

    for (size, name) in SIZES {
        let plaintext = vec![0x5au8; size];
        let mut group = c.benchmark_group(format!("envelope_{name}"));
        group.throughput(Throughput::Bytes(size as u64));

        group.bench_with_input(
            BenchmarkId::new("raw_aes256gcm", name),
            &plaintext,
            |b, pt| {
                b.iter(|| {
                    let ct = cipher
                        .encrypt(
                            Nonce::from_slice(&nonce),
                            Payload {
                                msg: black_box(pt.as_slice()),
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
                    black_box(back)
                });
            },
        );

        group.bench_with_input(BenchmarkId::new("seal_open", name), &plaintext, |b, pt| {
            b.iter(|| {
                let ct = envelope::seal(&key, label, &place, black_box(pt.as_slice()));
                let back = envelope::open(&key, &place, black_box(ct.as_slice())).unwrap();
                black_box(back)
            });
        });

        group.finish();
    }
}

criterion_group!(benches, bench_envelope);
criterion_main!(benches);
