#!/usr/bin/env bash
# Audit trail benchmarks (docs/BENCHMARKS.md, section "Audit trail"): all five measurements
# in one go, Markdown on stdout, progress on stderr.
#
#   bash bench/audit/run.sh                     # full run (~5-10 min after the build)
#   bash bench/audit/run.sh > bench/audit/last-run.md
#
# 1. Machine: nproc, CPU model, kernel, rustc, `uptime` before and after.
# 2. `cargo bench -p portcullis-server --bench audit` (crates/server/benches/audit.rs):
#    (a) audited vs plain mutations across many environments, interleaved; (b) one
#    environment; (c) verification from the database of a 1M-entry log, with a breakdown;
#    (d) inclusion-proof latency at that size; (e) the same log verified offline as a bundle.
#    Knobs: AUDIT_BENCH_ENTRIES, AUDIT_BENCH_PAIRS, AUDIT_BENCH_TX, AUDIT_BENCH_WRITERS,
#    AUDIT_BENCH_ENVS (see the top of that file).
# 3. Offline verification with small bodies: the audit crate's `throughput` example, run
#    THROUGHPUT_RUNS times (default 3) over THROUGHPUT_ENTRIES (default 2000000).
#
# Uses the shared test PostgreSQL cluster (or PORTCULLIS_TEST_DATABASE_URL); the benchmark
# database is dropped at the end.
set -euo pipefail
cd "$(dirname "$0")/../.."

runs="${THROUGHPUT_RUNS:-3}"
entries="${THROUGHPUT_ENTRIES:-2000000}"

echo "# Audit trail benchmark run, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo
echo "- nproc: $(nproc); CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
echo "- kernel: $(uname -r); $(rustc --version)"
echo "- uptime before: $(uptime)"
echo

cargo build --release -p portcullis-audit --example throughput >&2
cargo bench -p portcullis-server --bench audit

echo
echo "### Offline verification, small bodies (\`cargo run --release -p portcullis-audit --example throughput -- $entries\`)"
echo
echo "| run | load (1 min) | result |"
echo "|---|---:|---|"
for i in $(seq 1 "$runs"); do
    load="$(cut -d' ' -f1 /proc/loadavg)"
    result="$(cargo run -q --release -p portcullis-audit --example throughput -- "$entries")"
    echo "| $i | $load | $result |"
done
echo
echo "- uptime after: $(uptime)"
