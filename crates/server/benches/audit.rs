//! Benchmarks of the tamper-evident audit trail, measured side by side in one run:
//!
//! - **(a) ratio**: `W` concurrent writers over `E` environments; every transaction inserts one
//!   `projects` row, and in the *audited* arm also submits its audit entry (`TenantTx::audit`:
//!   one INSERT into `audit_pending`), which the audit sequencer (running in the background as
//!   in `serve`) chains in batches. An audited round ends when every entry it submitted is
//!   chained (its time includes the sequencer's drain, its CPU the sequencer's backends).
//!   Audited and plain rounds alternate (A P, P A, A P, ...), each with the same number of
//!   transactions and the same sequence of environments. Reported: tx/s per arm and the median
//!   per-pair ratio.
//! - **(b) one environment**: the same writers all in one environment (before the sequencer,
//!   every audited transaction queued on that environment's head lock); plain rounds in the
//!   same environment alternate with them for reference.
//! - **(c) verification from the database**: an environment with a large log (bulk-loaded as
//!   superuser with entries hashed exactly as `portcullis_store::audit` hashes them, then one
//!   real append and a signed checkpoint on top; a small log built the same way must verify
//!   clean first), timed through `trail::verify_environment`, with a breakdown: raw `COPY`,
//!   the verifier's fetch loop alone (runtime role and superuser), and the client-side CPU
//!   work (body rebuild, canonical JSON + hashing) on an in-memory sample.
//! - **(d) inclusion proofs** at that size: the old way (load every entry hash, build the
//!   proof in memory) and the way the API builds them now (stored subtree nodes plus at most
//!   two blocks of entry hashes; the first proof backfills the nodes of the bulk-loaded log),
//!   p50 and max over a few random indices; consistency proofs from stored nodes.
//! - **(e) offline**: the same log exported as a bundle and verified in memory with
//!   `verify_bundle` (realistic bodies). The audit crate's `throughput` example gives the
//!   small-body number; `bench/audit/run.sh` runs both.
//!
//! ```text
//! cargo bench -p portcullis-server --bench audit
//! ```
//!
//! Knobs (environment): `AUDIT_BENCH_ENTRIES` (log size for c/d, default 1000000),
//! `AUDIT_BENCH_PAIRS` (audited/plain round pairs for a, default 8), `AUDIT_BENCH_TX` (tx per
//! round, default 4000), `AUDIT_BENCH_WRITERS` (8), `AUDIT_BENCH_ENVS` (64),
//! `AUDIT_BENCH_WRITES_ONLY` (1: stop after a and b). Uses the shared
//! test cluster (or `PORTCULLIS_TEST_DATABASE_URL`); the database is dropped at the end.
//! Progress goes to stderr, the Markdown report to stdout.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods,
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::too_many_arguments,
    missing_debug_implementations
)]

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use portcullis_audit::bundle::{verify_bundle, VerifyOptions};
use portcullis_audit::entry::merkle_leaf;
use portcullis_audit::merkle;
use portcullis_audit::verify::{Body, StoredEntry as VerifyEntry, Verifier};
use portcullis_core::{EnvironmentId, IdentityId, Permission, PermissionSet, ProjectId};
use portcullis_service::anchor::{Anchors, LocalAnchors};
use portcullis_service::trail::{self, ExportFormat, ExportWriter, Signer};
use portcullis_store::audit_writer::{entry_body, jsonb_exact, rfc3339_micros};
use portcullis_store::queries::audit_log::{self, StoredEntry, STORED_COLUMNS};
use portcullis_store::queries::{environments, identities, projects};
use portcullis_store::testing::TestDb;
use portcullis_store::{AuditEvent, RequestMeta, Store};
use sqlx::{Connection, PgConnection};
use time::OffsetDateTime;
use uuid::Uuid;

// The chain is built as the tests' attacker rebuilds it, by the same code.
#[allow(dead_code)]
#[path = "../tests/it/support/chain.rs"]
mod chain;

/// `audit_log::STORED_COLUMNS`, spelled out so the statements below are static SQL (`main`
/// checks that the two agree).
macro_rules! stored_columns {
    () => {
        "environment_id, seq, audit_id, occurred_at, actor_type, actor_id, action, action_version, \
         target_type, target_id, outcome, before, after, request_id, ip, user_agent, prev_hash, entry_hash"
    };
}

/// Where `copy_out` reads: `COPY` takes no parameters, so the environment travels in a setting.
const COPY_ENV_SETTING: &str = "portcullis_bench.environment_id";
const COPY_OUT_STORED: &str = concat!(
    "COPY (SELECT ",
    stored_columns!(),
    " FROM audit_log WHERE environment_id = current_setting('portcullis_bench.environment_id')::uuid ORDER BY seq) TO STDOUT"
);
const COPY_OUT_HASHES: &str = "COPY (SELECT seq, prev_hash, entry_hash FROM audit_log \
     WHERE environment_id = current_setting('portcullis_bench.environment_id')::uuid ORDER BY seq) TO STDOUT";

/// Hard budget for the whole run: phases still pending after it are skipped.
const BUDGET: Duration = Duration::from_secs(18 * 60);

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// splitmix64: a deterministic sequence without another dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e3779b97f4a7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
        z ^ (z >> 31)
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// Nanoseconds on CPU of every thread of process `pid` (or of this process for `None`).
fn cpu_ns(pid: Option<i32>) -> u64 {
    let dir = match pid {
        Some(p) => format!("/proc/{p}/task"),
        None => "/proc/self/task".into(),
    };
    let Ok(tasks) = std::fs::read_dir(dir) else {
        return 0;
    };
    tasks
        .filter_map(|t| t.ok())
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

fn meta() -> RequestMeta {
    RequestMeta {
        request_id: Some(format!("bench-{}", Uuid::now_v7())),
        ip: Some("10.1.2.3".into()),
        user_agent: Some("portcullis-bench/1.0".into()),
    }
}

async fn owner_identity(store: &Store, vault: &portcullis_store::vault::Vault) -> IdentityId {
    let id = IdentityId::new();
    let mut tx = store.auth(RequestMeta::default()).await.unwrap();
    identities::create(
        &mut tx,
        vault,
        id,
        &format!("bench-{id}@example.test"),
        "Bench",
        "$argon2id$fake",
        OffsetDateTime::now_utc(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    id
}

async fn environment(store: &Store, owner: IdentityId, name: &str) -> EnvironmentId {
    let env = EnvironmentId::new();
    let mut tx = store
        .new_environment(env, owner, RequestMeta::default())
        .await
        .unwrap();
    environments::create(
        &mut tx,
        name,
        "eu-central",
        owner,
        OffsetDateTime::now_utc(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    env
}

/// One mutation: a `projects` row, plus its audit entry when `audited`.
async fn mutation(store: &Store, env: EnvironmentId, owner: Uuid, audited: bool) {
    let mut tx = store
        .tenant_as_system(env, PermissionSet::all(), meta())
        .await
        .unwrap();
    let id = ProjectId::new();
    let project = projects::create(
        &mut tx,
        id,
        &id.to_string(),
        owner,
        OffsetDateTime::now_utc(),
    )
    .await
    .unwrap();
    if audited {
        tx.audit(
            AuditEvent::success("project.created", "project", project.project_id).after(&project),
        )
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
}

/// One timed round: throughput and CPU per transaction (this process, and the runtime-role
/// backends of the benchmark database).
#[derive(Clone, Copy)]
struct Round {
    tps: f64,
    client_us: f64,
    backend_us: f64,
}

/// PIDs of the runtime role's and the sequencer's backends in `database` (the write pool's and
/// the sequencer pool's connections).
async fn pool_backends(admin: &mut PgConnection, database: &str) -> Vec<i32> {
    sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND usename IN ($2, $3) AND pid <> pg_backend_pid()",
    )
    .bind(database)
    .bind(portcullis_store::bootstrap::RUNTIME_ROLE)
    .bind(portcullis_store::bootstrap::SEQUENCER_ROLE)
    .fetch_all(admin)
    .await
    .unwrap()
}

/// What a round runs against.
struct Writes<'a> {
    store: &'a Store,
    admin: &'a mut PgConnection,
    database: &'a str,
    owner: Uuid,
    writers: u64,
}

/// `writers` tasks share `total` transactions; transaction `k` goes to `envs[pick(k)]`, with
/// the same picks for a given `seed`.
async fn round(
    w: &mut Writes<'_>,
    envs: &[EnvironmentId],
    total: u64,
    audited: bool,
    seed: u64,
) -> Round {
    let mut rng = Rng(seed);
    let picks: Vec<EnvironmentId> = (0..total)
        .map(|_| envs[(rng.next() % envs.len() as u64) as usize])
        .collect();
    let picks = std::sync::Arc::new(picks);
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let backends = pool_backends(w.admin, w.database).await;
    let backend_cpu = |pids: &[i32]| pids.iter().map(|&p| cpu_ns(Some(p))).sum::<u64>();
    let (client0, backend0) = (cpu_ns(None), backend_cpu(&backends));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..w.writers {
        let store = w.store.clone();
        let picks = picks.clone();
        let next = next.clone();
        let owner = w.owner;
        tasks.push(tokio::spawn(async move {
            loop {
                let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(&env) = picks.get(k) else { break };
                mutation(&store, env, owner, audited).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // Audited writes are done when they are chained: drain what the background sequencer has
    // not chained yet.
    if audited {
        w.store
            .sequencer()
            .expect("the bench store has a sequencer")
            .sweep()
            .await
            .unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    let client = cpu_ns(None).saturating_sub(client0) as f64;
    let backend = backend_cpu(&backends).saturating_sub(backend0) as f64;
    Round {
        tps: total as f64 / secs,
        client_us: client / 1e3 / total as f64,
        backend_us: backend / 1e3 / total as f64,
    }
}

/// Interleaved audited/plain pairs (the arm that goes first alternates). Returns the audited
/// rounds, the plain rounds and the per-pair throughput ratios (audited / plain).
async fn interleaved(
    w: &mut Writes<'_>,
    envs: &[EnvironmentId],
    per_round: u64,
    pairs: u64,
    label: &str,
    deadline: Instant,
) -> (Vec<Round>, Vec<Round>, Vec<f64>) {
    let (mut audited, mut plain, mut ratios) = (vec![], vec![], vec![]);
    for p in 0..pairs {
        if Instant::now() > deadline {
            eprintln!("[{label}] budget reached, {p} pairs done");
            break;
        }
        let seed = 0xa0d1_7000 + p;
        let audited_first = p % 2 == 0;
        let first = round(w, envs, per_round, audited_first, seed).await;
        let second = round(w, envs, per_round, !audited_first, seed).await;
        let (a, pl) = if audited_first {
            (first, second)
        } else {
            (second, first)
        };
        audited.push(a);
        plain.push(pl);
        ratios.push(a.tps / pl.tps);
        eprintln!(
            "[{label}] pair {p}: audited {:.0} tx/s ({:.0}+{:.0} µs CPU/tx), plain {:.0} tx/s ({:.0}+{:.0} µs CPU/tx), ratio {:.3} (load {})",
            a.tps, a.client_us, a.backend_us, pl.tps, pl.client_us, pl.backend_us,
            a.tps / pl.tps,
            loadavg()
        );
    }
    (audited, plain, ratios)
}

/// Escapes a value for PostgreSQL's COPY text format.
fn copy_text(out: &mut String, value: Option<&str>) {
    match value {
        None => out.push_str("\\N"),
        Some(v) => {
            for c in v.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '\t' => out.push_str("\\t"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    c => out.push(c),
                }
            }
        }
    }
}

fn copy_bytea(out: &mut String, bytes: &[u8]) {
    out.push_str("\\\\x");
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
}

/// Bulk-loads `n` entries into `env`'s empty log as superuser, hashed and chained exactly as
/// `portcullis_store::audit_writer::insert` does (entry body rebuilt with `entry_body`, so what the
/// verifier rebuilds from the stored columns hashes the same), then writes the chain head
/// and the Merkle frontier. Returns seconds spent.
async fn bulk_load(admin: &mut PgConnection, env: Uuid, owner: Uuid, n: u64) -> f64 {
    let started = Instant::now();
    let mut chain = chain::Chain::new(env);
    let base = OffsetDateTime::now_utc() - Duration::from_secs(30 * 24 * 3600);
    let base = base.replace_nanosecond(0).unwrap();
    const CHUNK: u64 = 50_000;
    let mut seq = 0u64;
    let mut last_report = Instant::now();
    let mut copy = admin
        .copy_in_raw(concat!(
            "COPY audit_log (",
            stored_columns!(),
            ") FROM STDIN"
        ))
        .await
        .unwrap();
    while seq < n {
        let mut buf = String::with_capacity(CHUNK as usize * 700);
        for _ in 0..CHUNK.min(n - seq) {
            seq += 1;
            let at = base + Duration::from_micros(seq * 1_700);
            let project = Uuid::now_v7();
            let after = jsonb_exact(serde_json::json!({
                "project_id": project,
                "name": format!("project-{seq}"),
                "created_by": owner,
                "created_at": at.format(&time::format_description::well_known::Rfc3339).unwrap(),
            }));
            let mut row = StoredEntry {
                environment_id: env,
                seq: seq as i64,
                audit_id: Uuid::now_v7(),
                occurred_at: at,
                actor_type: "identity".into(),
                actor_id: Some(owner),
                action: "project.created".into(),
                action_version: 1,
                target_type: "project".into(),
                target_id: Some(project.to_string()),
                outcome: "success".into(),
                before: None,
                after: Some(after),
                request_id: Some(format!("req-{}", Uuid::now_v7())),
                ip: Some("10.1.2.3".into()),
                user_agent: Some("portcullis-bench/1.0".into()),
                prev_hash: vec![],
                entry_hash: vec![],
            };
            chain.link(&mut row);
            // Columns in stored_columns!() order.
            copy_text(&mut buf, Some(&row.environment_id.to_string()));
            buf.push('\t');
            let _ = write!(buf, "{}\t", row.seq);
            copy_text(&mut buf, Some(&row.audit_id.to_string()));
            buf.push('\t');
            copy_text(&mut buf, Some(&rfc3339_micros(row.occurred_at)));
            buf.push('\t');
            copy_text(&mut buf, Some(&row.actor_type));
            buf.push('\t');
            copy_text(&mut buf, row.actor_id.map(|a| a.to_string()).as_deref());
            buf.push('\t');
            copy_text(&mut buf, Some(&row.action));
            buf.push('\t');
            let _ = write!(buf, "{}\t", row.action_version);
            copy_text(&mut buf, Some(&row.target_type));
            buf.push('\t');
            copy_text(&mut buf, row.target_id.as_deref());
            buf.push('\t');
            copy_text(&mut buf, Some(&row.outcome));
            buf.push('\t');
            copy_text(
                &mut buf,
                row.before.as_ref().map(|v| v.to_string()).as_deref(),
            );
            buf.push('\t');
            copy_text(
                &mut buf,
                row.after.as_ref().map(|v| v.to_string()).as_deref(),
            );
            buf.push('\t');
            copy_text(&mut buf, row.request_id.as_deref());
            buf.push('\t');
            copy_text(&mut buf, row.ip.as_deref());
            buf.push('\t');
            copy_text(&mut buf, row.user_agent.as_deref());
            buf.push('\t');
            copy_bytea(&mut buf, &row.prev_hash);
            buf.push('\t');
            copy_bytea(&mut buf, &row.entry_hash);
            buf.push('\n');
        }
        copy.send(buf.into_bytes()).await.unwrap();
        if last_report.elapsed() > Duration::from_secs(10) || seq == n {
            last_report = Instant::now();
            eprintln!(
                "[bulk] {seq}/{n} entries sent ({:.0} s)",
                started.elapsed().as_secs_f64()
            );
        }
    }
    let rows = copy.finish().await.unwrap();
    assert_eq!(rows, n);
    chain.store_head(admin).await;
    started.elapsed().as_secs_f64()
}

/// A log of `n` bulk entries plus `real` appends through `TenantTx::audit` on top (they read
/// the bulk head and frontier), checkpointed and anchored.
async fn build_log(
    db: &TestDb,
    store: &Store,
    signer: &Signer,
    anchors: &Anchors,
    env: EnvironmentId,
    owner: IdentityId,
    n: u64,
    real: u64,
) -> f64 {
    let mut admin = db.admin_conn().await;
    let secs = bulk_load(&mut admin, env.as_uuid(), owner.as_uuid(), n).await;
    admin.close().await.ok();
    for _ in 0..real {
        mutation(store, env, owner.as_uuid(), true).await;
    }
    trail::checkpoint(store, signer, anchors, env.as_uuid())
        .await
        .unwrap()
        .expect("a checkpoint");
    secs
}

/// The verifier's fetch loop with no verification: same query, same batch size, runtime role.
async fn fetch_only(store: &Store, env: EnvironmentId) -> (u64, f64) {
    let started = Instant::now();
    let mut tx = store
        .tenant_as_system(env, PermissionSet::of(&[Permission::AuditRead]), meta())
        .await
        .unwrap();
    let (mut after, mut count) = (0i64, 0u64);
    loop {
        let batch = audit_log::stored_range(&mut tx, after, 5000).await.unwrap();
        let Some(last) = batch.last() else { break };
        after = last.seq;
        count += batch.len() as u64;
    }
    tx.commit().await.unwrap();
    (count, started.elapsed().as_secs_f64())
}

/// The same loop as superuser (no row-level security).
async fn fetch_only_superuser(admin: &mut PgConnection, env: Uuid) -> (u64, f64) {
    let started = Instant::now();
    let (mut after, mut count) = (0i64, 0u64);
    loop {
        let batch: Vec<StoredEntry> = sqlx::query_as(concat!(
            "SELECT ",
            stored_columns!(),
            " FROM audit_log WHERE environment_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"
        ))
        .bind(env)
        .bind(after)
        .bind(5000i64)
        .fetch_all(&mut *admin)
        .await
        .unwrap();
        let Some(last) = batch.last() else { break };
        after = last.seq;
        count += batch.len() as u64;
    }
    (count, started.elapsed().as_secs_f64())
}

/// `COPY ... TO STDOUT` of the same rows (`copy` is `COPY_OUT_STORED` or `COPY_OUT_HASHES`):
/// the floor for moving them out of PostgreSQL.
async fn copy_out(admin: &mut PgConnection, env: Uuid, copy: &'static str) -> (u64, f64) {
    sqlx::query("SELECT set_config($1, $2, false)")
        .bind(COPY_ENV_SETTING)
        .bind(env.to_string())
        .execute(&mut *admin)
        .await
        .unwrap();
    let started = Instant::now();
    let mut stream = admin.copy_out_raw(copy).await.unwrap();
    let mut bytes = 0u64;
    while let Some(chunk) = stream.next().await {
        bytes += chunk.unwrap().len() as u64;
    }
    (bytes, started.elapsed().as_secs_f64())
}

struct ProofTiming {
    load: f64,
    compute: f64,
    total: f64,
}

/// An inclusion proof as `service::audit_access::inclusion_proof` builds one (checkpoints, every entry
/// hash up to the size, leaves, proof, root), checked against the checkpoint's root. The
/// route's own audit entry (`audit.read`) is left out.
async fn proof_as_api(store: &Store, env: EnvironmentId, seq: u64) -> ProofTiming {
    let started = Instant::now();
    let mut tx = store
        .tenant_as_system(env, PermissionSet::of(&[Permission::AuditRead]), meta())
        .await
        .unwrap();
    let checkpoints = audit_log::checkpoints(&mut tx).await.unwrap();
    let cp = checkpoints.last().expect("a checkpoint");
    let size = cp.tree_size as u64;
    let load_started = Instant::now();
    let hashes = audit_log::entry_hashes(&mut tx, size as i64).await.unwrap();
    let load = load_started.elapsed().as_secs_f64();
    assert_eq!(hashes.len() as u64, size);
    let compute_started = Instant::now();
    let leaves: Vec<[u8; 32]> = hashes.iter().map(merkle_leaf).collect();
    let proof = merkle::inclusion_proof(&leaves, seq - 1).expect("proof");
    let root = merkle::root(&leaves);
    let compute = compute_started.elapsed().as_secs_f64();
    tx.commit().await.unwrap();
    let total = started.elapsed().as_secs_f64();
    assert_eq!(
        root.as_slice(),
        cp.root_hash.as_slice(),
        "root matches checkpoint"
    );
    assert!(merkle::verify_inclusion(
        &leaves[(seq - 1) as usize],
        seq - 1,
        size,
        &proof,
        &root
    ));
    ProofTiming {
        load,
        compute,
        total,
    }
}

/// An inclusion proof as `service::audit_access::inclusion_proof` builds one now: the plan, stored
/// subtree nodes and at most two blocks of entry hashes (`audit_log::proof_source`, which also
/// backfills missing nodes), proof and root from them; checked against the checkpoint.
async fn proof_stored(store: &Store, env: EnvironmentId, seq: u64) -> ProofTiming {
    let started = Instant::now();
    let mut tx = store
        .tenant_as_system(env, PermissionSet::of(&[Permission::AuditRead]), meta())
        .await
        .unwrap();
    let checkpoints = audit_log::checkpoints(&mut tx).await.unwrap();
    let cp = checkpoints.last().expect("a checkpoint");
    let size = cp.tree_size as u64;
    let (head, _, _) = audit_log::head(&mut tx).await.unwrap().unwrap();
    assert!(head as u64 >= size);
    let load_started = Instant::now();
    let plan = merkle::stored::Plan::inclusion(seq - 1, size).unwrap();
    let mut source = audit_log::proof_source(&mut tx, &plan).await.unwrap();
    let load = load_started.elapsed().as_secs_f64();
    let compute_started = Instant::now();
    let proof = merkle::inclusion_proof_from(&mut source, seq - 1, size).unwrap();
    let root = source.hash(0, size).unwrap();
    let leaf = merkle_leaf(source.leaf_data(seq - 1).unwrap());
    let compute = compute_started.elapsed().as_secs_f64();
    tx.commit().await.unwrap();
    let total = started.elapsed().as_secs_f64();
    assert_eq!(
        root.as_slice(),
        cp.root_hash.as_slice(),
        "root matches checkpoint"
    );
    assert!(merkle::verify_inclusion(
        &leaf,
        seq - 1,
        size,
        &proof,
        &root
    ));
    ProofTiming {
        load,
        compute,
        total,
    }
}

/// A consistency proof from `old` to the latest checkpoint, from stored nodes; verified against
/// the checkpoint root and the root of `old` (computed from the stored nodes too).
async fn consistency_stored(store: &Store, env: EnvironmentId, old: u64) -> f64 {
    let started = Instant::now();
    let mut tx = store
        .tenant_as_system(env, PermissionSet::of(&[Permission::AuditRead]), meta())
        .await
        .unwrap();
    let checkpoints = audit_log::checkpoints(&mut tx).await.unwrap();
    let cp = checkpoints.last().expect("a checkpoint");
    let size = cp.tree_size as u64;
    let plan = merkle::stored::Plan::consistency(old, size).unwrap();
    let mut source = audit_log::proof_source(&mut tx, &plan).await.unwrap();
    let proof = merkle::consistency_proof_from(&mut source, old, size).unwrap();
    tx.commit().await.unwrap();
    let total = started.elapsed().as_secs_f64();
    // Not part of the timing: the old root, from stored nodes as well.
    let mut tx = store
        .tenant_as_system(env, PermissionSet::of(&[Permission::AuditRead]), meta())
        .await
        .unwrap();
    let old_root = audit_log::proof_source(&mut tx, &merkle::stored::Plan::for_ranges([(0, old)]))
        .await
        .unwrap()
        .hash(0, old)
        .unwrap();
    tx.commit().await.unwrap();
    let new_root = <[u8; 32]>::try_from(cp.root_hash.as_slice()).unwrap();
    assert!(merkle::verify_consistency(
        old, size, &old_root, &new_root, &proof
    ));
    total
}

async fn backend_pid(store: &Store, env: EnvironmentId) -> i32 {
    let mut tx = store
        .tenant_as_system(env, PermissionSet::of(&[Permission::AuditRead]), meta())
        .await
        .unwrap();
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(tx.conn_for_tests())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    pid
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

async fn run() {
    let run_started = Instant::now();
    let deadline = run_started + BUDGET;
    let entries = knob("AUDIT_BENCH_ENTRIES", 1_000_000);
    let pairs = knob("AUDIT_BENCH_PAIRS", 8);
    let per_round = knob("AUDIT_BENCH_TX", 4000);
    let writers = knob("AUDIT_BENCH_WRITERS", 8);
    let env_count = knob("AUDIT_BENCH_ENVS", 64);
    let load_start = loadavg();
    let columns = |list: &str| {
        list.split(',')
            .map(|c| c.trim().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        columns(stored_columns!()),
        columns(STORED_COLUMNS),
        "stored_columns!() no longer matches audit_log::STORED_COLUMNS"
    );
    let mut out = String::new();

    let db = TestDb::new().await;
    let store = Store::new(
        portcullis_store::bootstrap::runtime_pool(&db.runtime, writers as u32)
            .await
            .unwrap(),
        db.context_key().await,
    )
    .with_sequencer(db.sequencer().await);
    // The sequencer chains submitted entries in the background, as `serve` runs it; its pool
    // is connected before the rounds so its backends are counted.
    tokio::spawn(
        store
            .sequencer()
            .unwrap()
            .clone()
            .run(portcullis_store::sequencer::SWEEP_EVERY),
    );
    let mut admin = db.admin_conn().await;
    let settings: Vec<(String, String)> = sqlx::query_as(
        "SELECT name, setting || COALESCE(unit, '') FROM pg_settings
          WHERE name IN ('fsync', 'synchronous_commit', 'full_page_writes', 'shared_buffers', 'server_version')
          ORDER BY name",
    )
    .fetch_all(&mut admin)
    .await
    .unwrap();
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_default();
    let _ = writeln!(out, "## Audit trail benchmark\n");
    let _ = writeln!(
        out,
        "- CPUs: {} ({cpu_model}); load at start: {load_start}",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let _ = writeln!(
        out,
        "- PostgreSQL: {}",
        settings
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        out,
        "- writers {writers}, environments {env_count}, tx per round {per_round}, pairs {pairs}, log size {entries}\n"
    );

    let vault = portcullis_store::testing::test_vault();
    let owner = owner_identity(&store, &vault).await;
    let mut envs = Vec::new();
    for i in 0..env_count {
        envs.push(environment(&store, owner, &format!("bench-{i}")).await);
    }
    let single = environment(&store, owner, "bench-single").await;
    let small = environment(&store, owner, "bench-small").await;
    let big = environment(&store, owner, "bench-big").await;
    let owner_pool = portcullis_store::bootstrap::runtime_pool(&db.owner, 2)
        .await
        .unwrap();
    let signer = Signer::create(&owner_pool, &vault, vault.default_kek())
        .await
        .unwrap();
    let anchor_dir =
        std::env::temp_dir().join(format!("portcullis-bench-anchors-{}", Uuid::now_v7()));
    let anchors = Anchors::from(LocalAnchors::new(&anchor_dir));

    // Warm-up: every environment gets its audit head, caches and plans warm.
    eprintln!("[warm-up]");
    let mut w = Writes {
        store: &store,
        admin: &mut admin,
        database: &db.name,
        owner: owner.as_uuid(),
        writers,
    };
    round(&mut w, &envs, 1000, true, 1).await;
    round(&mut w, &envs, 1000, false, 1).await;

    // (a) audited vs plain across many environments.
    let (a_aud, a_plain, a_ratio) =
        interleaved(&mut w, &envs, per_round, pairs, "a: many envs", deadline).await;
    // (b) one environment.
    let single_envs = [single];
    round(&mut w, &single_envs, 200, true, 2).await;
    let (b_aud, b_plain, b_ratio) = interleaved(
        &mut w,
        &single_envs,
        per_round / 2,
        pairs.div_ceil(2).max(2),
        "b: one env",
        deadline,
    )
    .await;
    let load_after_writes = loadavg();

    let _ = writeln!(
        out,
        "### Writes ({writers} writers; one tx = BEGIN, tenant context, INSERT projects [+ audit append], COMMIT)\n"
    );
    let _ = writeln!(
        out,
        "| case | rounds per arm | audited tx/s | plain tx/s | **ratio audited/plain** (median of pairs) | ratio min–max | audited CPU µs/tx (client + backend) | plain CPU µs/tx (client + backend) |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|");
    for (name, aud, plain, ratio) in [
        (
            format!("(a) {env_count} environments"),
            &a_aud,
            &a_plain,
            &a_ratio,
        ),
        ("(b) one environment".to_owned(), &b_aud, &b_plain, &b_ratio),
    ] {
        let min = ratio.iter().cloned().fold(f64::INFINITY, f64::min);
        let max = ratio.iter().cloned().fold(0.0, f64::max);
        let m = |rounds: &[Round], f: fn(&Round) -> f64| {
            median(&rounds.iter().map(f).collect::<Vec<_>>())
        };
        let _ = writeln!(
            out,
            "| {name} | {} | {:.0} | {:.0} | **{:.3}** | {min:.3}–{max:.3} | {:.0} + {:.0} | {:.0} + {:.0} |",
            aud.len(),
            m(aud, |r| r.tps),
            m(plain, |r| r.tps),
            median(ratio),
            m(aud, |r| r.client_us),
            m(aud, |r| r.backend_us),
            m(plain, |r| r.client_us),
            m(plain, |r| r.backend_us),
        );
    }
    let tps = |rounds: &[Round]| rounds.iter().map(|r| r.tps.round()).collect::<Vec<_>>();
    let _ = writeln!(
        out,
        "\nTx/s and CPU are medians over rounds. Per-round tx/s (a) audited: {:?}; plain: {:?}",
        tps(&a_aud),
        tps(&a_plain)
    );
    let _ = writeln!(
        out,
        "Per-round tx/s (b) audited: {:?}; plain: {:?}\nLoad after the write phases: {load_after_writes}\n",
        tps(&b_aud),
        tps(&b_plain)
    );
    // The single environment's chain must be gapless after all that.
    {
        let mut tx = store
            .tenant_as_system(single, PermissionSet::all(), meta())
            .await
            .unwrap();
        let (seq, _, _) = audit_log::head(&mut tx).await.unwrap().unwrap();
        let count: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM audit_log WHERE environment_id = $1 AND seq BETWEEN 1 AND $2",
        )
        .bind(single.as_uuid())
        .bind(seq)
        .fetch_one(tx.conn_for_tests())
        .await
        .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(count, seq, "single-environment chain is gapless");
    }
    print!("{out}");
    out.clear();
    if knob("AUDIT_BENCH_WRITES_ONLY", 0) == 1 {
        db.drop_now().await;
        return;
    }

    // (c) Faithfulness of the bulk generator: small log, real appends on top, checkpoint,
    // verify clean.
    eprintln!("[c] generator check");
    build_log(&db, &store, &signer, &anchors, small, owner, 2000, 5).await;
    let report = trail::verify_environment(
        &store,
        small.as_uuid(),
        signer.public_keys(),
        &anchors,
        |_| {},
    )
    .await
    .unwrap();
    assert!(
        report.is_clean(),
        "generator check: {:?}",
        report.first_problem
    );
    assert_eq!(report.entries, 2005);
    assert_eq!(
        report.checkpoints_checked, 2,
        "database and anchored checkpoint"
    );

    if Instant::now() > deadline {
        eprintln!("budget reached before the large log");
        return;
    }
    eprintln!("[c] bulk-loading {entries} entries");
    let load_secs = build_log(&db, &store, &signer, &anchors, big, owner, entries, 1).await;
    let vacuum_started = Instant::now();
    sqlx::query("VACUUM (ANALYZE) audit_log")
        .execute(&mut admin)
        .await
        .unwrap();
    let vacuum_secs = vacuum_started.elapsed().as_secs_f64();
    let size = entries + 1;
    let table_bytes: i64 =
        sqlx::query_scalar("SELECT pg_total_relation_size('audit_log'::regclass)")
            .fetch_one(&mut admin)
            .await
            .unwrap();
    eprintln!("[c] loaded in {load_secs:.0} s, vacuum {vacuum_secs:.0} s");

    // A one-connection store, so the backend doing the work can be watched.
    let verify_store = Store::new(
        portcullis_store::bootstrap::runtime_pool(&db.runtime, 1)
            .await
            .unwrap(),
        db.context_key().await,
    )
    .with_sequencer(db.sequencer().await);
    let pid = backend_pid(&verify_store, big).await;
    let mut verify_rows = Vec::new();
    for run in 0..3 {
        if Instant::now() > deadline {
            break;
        }
        let (c0, s0, t0) = (cpu_ns(None), cpu_ns(Some(pid)), Instant::now());
        let report = trail::verify_environment(
            &verify_store,
            big.as_uuid(),
            signer.public_keys(),
            &anchors,
            |_| {},
        )
        .await
        .unwrap();
        let wall = t0.elapsed().as_secs_f64();
        let (client, server) = (
            (cpu_ns(None) - c0) as f64 / 1e9,
            (cpu_ns(Some(pid)).saturating_sub(s0)) as f64 / 1e9,
        );
        assert!(report.is_clean(), "{:?}", report.first_problem);
        assert_eq!(report.entries, size);
        eprintln!(
            "[c] verify run {run}: {wall:.2} s, {:.0} entries/s (client CPU {client:.2} s, backend CPU {server:.2} s)",
            size as f64 / wall
        );
        verify_rows.push((wall, client, server, report.checkpoints_checked));
    }
    let (c0, s0) = (cpu_ns(None), cpu_ns(Some(pid)));
    let (fetched, fetch_secs) = fetch_only(&verify_store, big).await;
    let (fetch_client, fetch_server) = (
        (cpu_ns(None) - c0) as f64 / 1e9,
        (cpu_ns(Some(pid)).saturating_sub(s0)) as f64 / 1e9,
    );
    assert_eq!(fetched, size);
    let (su_fetched, su_secs) = fetch_only_superuser(&mut admin, big.as_uuid()).await;
    assert_eq!(su_fetched, size);
    let (copy_bytes, copy_secs) = copy_out(&mut admin, big.as_uuid(), COPY_OUT_STORED).await;
    let (narrow_bytes, narrow_secs) = copy_out(&mut admin, big.as_uuid(), COPY_OUT_HASHES).await;

    // Client-side CPU work on an in-memory sample.
    let sample_n = 200_000i64.min(size as i64);
    let mut sample = Vec::with_capacity(sample_n as usize);
    {
        let mut tx = verify_store
            .tenant_as_system(big, PermissionSet::of(&[Permission::AuditRead]), meta())
            .await
            .unwrap();
        let mut after = 0i64;
        while (sample.len() as i64) < sample_n {
            let batch = audit_log::stored_range(&mut tx, after, 5000).await.unwrap();
            let Some(last) = batch.last() else { break };
            after = last.seq;
            sample.extend(batch);
        }
        tx.commit().await.unwrap();
    }
    sample.truncate(sample_n as usize);
    let t = Instant::now();
    let bodies: Vec<serde_json::Value> = sample.iter().map(entry_body).collect();
    let body_secs = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut buf = Vec::with_capacity(1024);
    let mut canon_bytes = 0usize;
    for b in &bodies {
        buf.clear();
        portcullis_audit::canonical::write_canonical_json(b, &mut buf);
        canon_bytes += buf.len();
    }
    let canon_secs = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut verifier = Verifier::new(big.as_uuid(), &[]);
    for (row, body) in sample.iter().zip(&bodies) {
        verifier.push(&VerifyEntry {
            seq: row.seq as u64,
            prev_hash: <[u8; 32]>::try_from(row.prev_hash.as_slice()).unwrap(),
            entry_hash: <[u8; 32]>::try_from(row.entry_hash.as_slice()).unwrap(),
            body: Body::Json(body),
        });
    }
    let report = verifier.finish();
    let push_secs = t.elapsed().as_secs_f64();
    assert!(report.is_clean() && report.entries == sample_n as u64);
    drop(bodies);
    drop(sample);

    let best = verify_rows
        .iter()
        .map(|r| r.0)
        .fold(f64::INFINITY, f64::min);
    let walls: Vec<f64> = verify_rows.iter().map(|r| r.0).collect();
    let _ = writeln!(
        out,
        "### Verification from the database ({size} entries: {entries} bulk-loaded + 1 appended; table+indexes {:.0} MiB)\n",
        table_bytes as f64 / 1048576.0
    );
    let _ = writeln!(
        out,
        "Bulk load {load_secs:.0} s (COPY, hashed in Rust), VACUUM ANALYZE {vacuum_secs:.0} s. Generator check: 2,000 bulk + 5 real appends verified clean against the database and anchored checkpoints.\n"
    );
    let _ = writeln!(
        out,
        "| run | wall s | entries/s | client CPU s | backend CPU s | checkpoints checked |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|");
    for (i, (wall, client, server, cps)) in verify_rows.iter().enumerate() {
        let _ = writeln!(
            out,
            "| verify_environment #{} | {wall:.2} | {:.0} | {client:.2} | {server:.2} | {cps} |",
            i + 1,
            size as f64 / wall
        );
    }
    let _ = writeln!(
        out,
        "\nBest {:.0} entries/s, median {:.0} entries/s (target ≥ 500,000/s).\n",
        size as f64 / best,
        size as f64 / median(&walls)
    );
    let _ = writeln!(out, "Breakdown:\n");
    let _ = writeln!(out, "| step | seconds | entries/s | µs/entry |");
    let _ = writeln!(out, "|---|---:|---:|---:|");
    let per = |secs: f64, n: f64| (n / secs, secs / n * 1e6);
    for (name, secs, n) in [
        (
            format!("COPY TO STDOUT, superuser ({:.0} MiB of text)", copy_bytes as f64 / 1048576.0),
            copy_secs,
            size as f64,
        ),
        (
            format!(
                "COPY TO STDOUT of seq, prev_hash, entry_hash only ({:.0} MiB)",
                narrow_bytes as f64 / 1048576.0
            ),
            narrow_secs,
            size as f64,
        ),
        (
            "fetch loop (stored_range × 5000, decode to StoredEntry), superuser, no RLS".into(),
            su_secs,
            size as f64,
        ),
        (
            format!("fetch loop as in verify_environment, runtime role + RLS (client CPU {fetch_client:.2} s, backend CPU {fetch_server:.2} s)"),
            fetch_secs,
            size as f64,
        ),
        (
            format!("entry_body rebuild (serde_json::Value), {sample_n}-entry sample"),
            body_secs,
            sample_n as f64,
        ),
        (
            format!("canonical JSON encoding alone ({:.0} B/entry), same sample", canon_bytes as f64 / sample_n as f64),
            canon_secs,
            sample_n as f64,
        ),
        (
            "Verifier::push (canonical JSON + entry hash + Merkle), same sample".into(),
            push_secs,
            sample_n as f64,
        ),
    ] {
        let (rate, us) = per(secs, n);
        let _ = writeln!(out, "| {name} | {secs:.2} | {rate:.0} | {us:.2} |");
    }
    let _ = writeln!(out);
    print!("{out}");
    out.clear();

    // (d) Inclusion proofs at this size, as the API builds them.
    eprintln!("[d] proofs");
    let mut rng = Rng(0x9f00f);
    let mut seqs = vec![1, size];
    for _ in 0..5 {
        seqs.push(1 + rng.next() % size);
    }
    let mut proof_rows = Vec::new();
    for &seq in &seqs {
        if Instant::now() > deadline {
            break;
        }
        let t = proof_as_api(&store, big, seq).await;
        eprintln!(
            "[d] seq {seq}: total {:.0} ms (load {:.0} ms, compute {:.0} ms)",
            t.total * 1e3,
            t.load * 1e3,
            t.compute * 1e3
        );
        proof_rows.push((seq, t));
    }
    let totals: Vec<f64> = proof_rows.iter().map(|r| r.1.total * 1e3).collect();
    let loads: Vec<f64> = proof_rows.iter().map(|r| r.1.load * 1e3).collect();
    let computes: Vec<f64> = proof_rows.iter().map(|r| r.1.compute * 1e3).collect();
    let max = |v: &[f64]| v.iter().cloned().fold(0.0, f64::max);
    let _ = writeln!(
        out,
        "### Inclusion proof latency at {size} entries\n\nThe old way (every entry hash loaded, as the API built proofs before stored subtree nodes; {} proofs: seq 1, seq {size}, 5 random):\n",
        proof_rows.len()
    );
    let _ = writeln!(out, "| part | p50 ms | max ms |");
    let _ = writeln!(out, "|---|---:|---:|");
    let _ = writeln!(
        out,
        "| load all entry hashes (`audit_log::entry_hashes`) | {:.0} | {:.0} |",
        median(&loads),
        max(&loads)
    );
    let _ = writeln!(
        out,
        "| leaves + proof + root in memory | {:.0} | {:.0} |",
        median(&computes),
        max(&computes)
    );
    let _ = writeln!(
        out,
        "| **total** (tx, checkpoints, load, compute, commit) | **{:.0}** | **{:.0}** |\n",
        median(&totals),
        max(&totals)
    );

    // The same proofs from stored subtree nodes. The bulk-loaded log has none (like a log
    // written before they were stored): the first proof backfills them.
    eprintln!("[d] proofs from stored subtree nodes");
    let t = Instant::now();
    let first = proof_stored(&store, big, seqs[2]).await;
    let backfill_ms = t.elapsed().as_secs_f64() * 1e3;
    let stored_count: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_subtrees WHERE environment_id = $1")
            .bind(big.as_uuid())
            .fetch_one(&mut admin)
            .await
            .unwrap();
    eprintln!(
        "[d] first proof with backfill: {backfill_ms:.0} ms (load {:.0} ms), {stored_count} nodes stored",
        first.load * 1e3
    );
    let mut stored_rows = Vec::new();
    for _ in 0..3 {
        for &seq in &seqs {
            stored_rows.push(proof_stored(&store, big, seq).await);
        }
    }
    let s_totals: Vec<f64> = stored_rows.iter().map(|r| r.total * 1e3).collect();
    let s_loads: Vec<f64> = stored_rows.iter().map(|r| r.load * 1e3).collect();
    let s_computes: Vec<f64> = stored_rows.iter().map(|r| r.compute * 1e3).collect();
    let mut cons = Vec::new();
    for _ in 0..3 {
        for old in [1, size / 3, size / 2 + 7, size - 1000] {
            cons.push(consistency_stored(&store, big, old).await * 1e3);
        }
    }
    let _ = writeln!(
        out,
        "From stored subtree nodes (`audit_log::proof_source`, as the API builds proofs now; {} inclusion proofs = the same seqs × 3, {} consistency proofs):\n",
        stored_rows.len(),
        cons.len()
    );
    let _ = writeln!(out, "| part | p50 ms | max ms |");
    let _ = writeln!(out, "|---|---:|---:|");
    let _ = writeln!(
        out,
        "| first proof on the bulk-loaded log: backfills {stored_count} subtree nodes from all entry hashes (once) | {backfill_ms:.0} | |"
    );
    let _ = writeln!(
        out,
        "| fetch stored nodes + ≤ 2 blocks of entry hashes (2 queries) | {:.2} | {:.2} |",
        median(&s_loads),
        max(&s_loads)
    );
    let _ = writeln!(
        out,
        "| proof + root from them in memory | {:.3} | {:.3} |",
        median(&s_computes),
        max(&s_computes)
    );
    let _ = writeln!(
        out,
        "| **inclusion total** (tx, checkpoints, head, fetch, compute, commit) | **{:.2}** | **{:.2}** |",
        median(&s_totals),
        max(&s_totals)
    );
    let _ = writeln!(
        out,
        "| **consistency total** (tx, checkpoints, fetch, compute, commit) | **{:.2}** | **{:.2}** |\n",
        median(&cons),
        max(&cons)
    );
    print!("{out}");
    out.clear();

    // (e) Offline: the same log as a bundle, verified in memory.
    if Instant::now() < deadline {
        eprintln!("[e] export bundle");
        let mut tx = verify_store
            .tenant_as_system(big, PermissionSet::of(&[Permission::AuditRead]), meta())
            .await
            .unwrap();
        let checkpoints: Vec<_> = audit_log::checkpoints(&mut tx)
            .await
            .unwrap()
            .into_iter()
            .map(|c| portcullis_service::trail::BundleCheckpoint {
                tree_size: c.tree_size as u64,
                text: c.signed,
                sources: vec![portcullis_audit::CheckpointSource::Database],
            })
            .collect();
        let mut writer = ExportWriter::new(
            ExportFormat::Bundle,
            big.as_uuid(),
            signer.public_keys(),
            &checkpoints,
        )
        .unwrap();
        let mut bundle = Vec::new();
        let mut after = 0i64;
        loop {
            let batch = audit_log::stored_range(&mut tx, after, 5000).await.unwrap();
            let Some(last) = batch.last() else { break };
            after = last.seq;
            bundle.extend(writer.write_rows(&batch).unwrap());
        }
        bundle.extend(writer.finish().unwrap());
        tx.commit().await.unwrap();
        let keys = signer.public_keys().to_vec();
        let mut offline = Vec::new();
        for _ in 0..3 {
            let started = Instant::now();
            let c0 = cpu_ns(None);
            let report = verify_bundle(bundle.as_slice(), VerifyOptions::pinned(&keys)).unwrap();
            let wall = started.elapsed().as_secs_f64();
            let cpu = (cpu_ns(None) - c0) as f64 / 1e9;
            assert!(report.is_clean(), "{:?}", report.first_problem);
            assert_eq!(report.entries, size);
            offline.push((wall, cpu));
        }
        let _ = writeln!(
            out,
            "### Offline verification of the same log as a bundle ({:.0} MiB, in memory, `verify_bundle`)\n",
            bundle.len() as f64 / 1048576.0
        );
        let _ = writeln!(out, "| run | wall s | entries/s wall | entries/s on CPU |");
        let _ = writeln!(out, "|---|---:|---:|---:|");
        for (i, (wall, cpu)) in offline.iter().enumerate() {
            let _ = writeln!(
                out,
                "| {} | {wall:.2} | {:.0} | {:.0} |",
                i + 1,
                size as f64 / wall,
                size as f64 / cpu
            );
        }
        let _ = writeln!(out);
    }

    let _ = writeln!(
        out,
        "Load at end: {}; total run time {:.0} s.",
        loadavg(),
        run_started.elapsed().as_secs_f64()
    );
    print!("{out}");

    // Clean up: close every pool, then drop the database.
    drop(verify_store);
    drop(store);
    owner_pool.close().await;
    admin.close().await.ok();
    db.drop_now().await;
    let _ = std::fs::remove_dir_all(&anchor_dir);
}
