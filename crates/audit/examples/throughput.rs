//! Measures offline verification speed (the target is at least 2M entries/s in a release
//! build, on one core).
//!
//! ```text
//! cargo run --release -p portcullis-audit --example throughput -- 2000000          # in memory
//! cargo run --release -p portcullis-audit --example throughput -- 2000000 out.jsonl # write only
//! cargo run --release -p portcullis-audit --example throughput -- out.jsonl         # verify a file
//! ```

use std::io::BufReader;
use std::time::Instant;

use portcullis_audit::entry::merkle_leaf;
use portcullis_audit::{
    entry_hash, verify_bundle, BundleWriter, Checkpoint, EntryHashInput, KeyTrust, MerkleTree,
    SigningKey, VerifyOptions, GENESIS_PREV_HASH,
};
use serde_json::json;
use uuid::Uuid;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [path] if path.parse::<u64>().is_err() => {
            let file = BufReader::with_capacity(1 << 20, std::fs::File::open(path)?);
            measure(file)
        }
        [n, path] => {
            let file = std::io::BufWriter::new(std::fs::File::create(path)?);
            generate(n.parse()?, file)?;
            Ok(())
        }
        _ => {
            let n = args
                .first()
                .map(|s| s.parse())
                .transpose()?
                .unwrap_or(1_000_000);
            let bytes = generate(n, Vec::new())?;
            measure(bytes.as_slice())
        }
    }
}

fn generate<W: std::io::Write>(n: u64, out: W) -> Result<W, Box<dyn std::error::Error>> {
    let env = Uuid::from_u128(42);
    let key = SigningKey::from_seed(&[7; 32])?;
    // Hash first (for the checkpoint, which precedes the entries), then write.
    let mut tree = MerkleTree::new();
    let mut prev = GENESIS_PREV_HASH;
    let mut hashes = Vec::with_capacity(n as usize);
    for seq in 1..=n {
        let body = body(seq);
        let hash = entry_hash(&EntryHashInput {
            environment_id: env,
            seq,
            prev_hash: prev,
            body: &body,
        });
        tree.push(merkle_leaf(&hash));
        hashes.push(hash);
        prev = hash;
    }
    let checkpoint = key.sign(&Checkpoint {
        environment_id: env,
        tree_size: n,
        root_hash: tree.root(),
        last_entry_hash: prev,
        issued_at: 0,
    });
    let mut w = BundleWriter::new(out, env, &[key.public_key()])?;
    w.write_checkpoint(
        &checkpoint.to_string(),
        &[portcullis_audit::CheckpointSource::Database],
    )?;
    let mut prev = GENESIS_PREV_HASH;
    for (seq, hash) in (1..=n).zip(&hashes) {
        w.write_entry(seq, &prev, hash, &body(seq))?;
        prev = *hash;
    }
    Ok(w.finish()?)
}

fn body(seq: u64) -> serde_json::Value {
    json!({"action": "record.update", "actor": "user:1842", "n": seq, "ok": true})
}

fn measure(bundle: impl std::io::BufRead) -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let cpu_before = thread_cpu_ns();
    let report = verify_bundle(
        bundle,
        VerifyOptions {
            trust: KeyTrust::BundleKeys,
            extra_checkpoints: &[],
            evidence_findings: &[],
            progress: None,
        },
    )?;
    let wall = started.elapsed().as_secs_f64();
    // The verifier hashes on every core, so wall time is the measure; the main thread's CPU
    // time is printed too (it no longer bounds the rate, the hashing threads add theirs).
    let cpu = match (cpu_before, thread_cpu_ns()) {
        (Some(a), Some(b)) => (b - a) as f64 / 1e9,
        _ => wall,
    };
    println!(
        "{} entries: {wall:.3} s wall, {:.2} M entries/s wall ({} threads); main thread {cpu:.3} s on CPU; clean: {}",
        report.entries,
        report.entries as f64 / wall / 1e6,
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        report.is_clean()
    );
    Ok(())
}

/// Nanoseconds this thread has spent on a CPU (Linux only).
fn thread_cpu_ns() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    stat.split_whitespace().next()?.parse().ok()
}
