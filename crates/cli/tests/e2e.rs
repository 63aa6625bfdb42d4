//! The real binary over a real TLS socket (controls T7, E1, R2), driven with curl.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use portcullis_store::testing::TestDb;
use serde_json::Value;

#[path = "../../server/tests/it/support/chain.rs"]
#[allow(dead_code)]
mod chain;
#[path = "e2e/consistency.rs"]
mod consistency;
#[path = "e2e/evidence.rs"]
mod evidence;
#[path = "e2e/feed.rs"]
mod feed;

const BIN: &str = env!("CARGO_BIN_EXE_portcullis");

fn scratch(name: &str) -> PathBuf {
    let dir = portcullis_provision_target().join(format!("e2e-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn portcullis_provision_target() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn command(db: &TestDb, data: &PathBuf, port: u16) -> Command {
    let mut c = Command::new(BIN);
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("PORTCULLIS_DATABASE__URL", &db.owner_url)
        .env("PORTCULLIS_DATA_DIR", data)
        .env("PORTCULLIS_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("PORTCULLIS_AUTH__PASSWORD_MEMORY_KIB", "1024")
        .env("PORTCULLIS_AUTH__PASSWORD_ITERATIONS", "1")
        .env("PORTCULLIS_LOG__FORMAT", "json");
    c
}

struct Server {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Server {
    fn start(mut cmd: Command) -> Server {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, rx) = mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
        }
        Server { child, lines: rx }
    }

    /// Waits for a line containing `needle`; returns every line seen so far.
    fn wait_for(&self, needle: &str) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = vec![];
        while Instant::now() < deadline {
            if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
                let hit = line.contains(needle);
                seen.push(line);
                if hit {
                    return seen;
                }
            }
        }
        panic!("never saw {needle:?}; output:\n{}", seen.join("\n"));
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

fn curl(args: &[&str]) -> (u16, Value, String) {
    let out = Command::new("curl")
        .args([
            "-sS",
            "-k",
            "--max-time",
            "20",
            "-D",
            "-",
            "-w",
            "\n%{http_code}",
        ])
        .args(args)
        .output()
        .expect("curl must be installed");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (rest, code) = text.trim_end().rsplit_once('\n').unwrap();
    let (headers, body) = rest.split_once("\r\n\r\n").unwrap_or((rest, ""));
    (
        code.parse().unwrap(),
        serde_json::from_str(body).unwrap_or(Value::Null),
        headers.to_lowercase(),
    )
}

/// Control T7: `portcullis serve` refuses to start when a tenant policy has been dropped.
#[tokio::test]
async fn t7_serve_refuses_a_weakened_schema() {
    let db = TestDb::new().await;
    let mut admin = db.admin_conn().await;
    sqlx::query("DROP POLICY documents_tenant_read ON documents")
        .execute(&mut admin)
        .await
        .unwrap();
    let data = scratch("weak");
    let out = command(&db, &data, free_port())
        .arg("serve")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("refusing to start"), "{stderr}");
    assert!(
        stderr.contains("documents_tenant_read is missing"),
        "{stderr}"
    );
    // `portcullis controls` reports the same finding and exits non-zero.
    let out = command(&db, &data, 0).arg("controls").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        stdout.contains("FAIL") && stdout.contains("documents_tenant_read is missing"),
        "{stdout}"
    );
}

/// Control T7 (issue 9): while serving, the process holds no connection as the schema owner:
/// requests run as the runtime role, the checkpointer, the scheduler and the audit sequencer as
/// their own roles.
#[tokio::test]
async fn t7_serving_holds_no_owner_connection() {
    let db = TestDb::new().await;
    let data = scratch("roles");
    let server = Server::start({
        let mut c = command(&db, &data, free_port());
        c.env("PORTCULLIS_AUDIT__CHECKPOINT_EVERY_SECONDS", "1")
            .arg("serve");
        c
    });
    server.wait_for("serving HTTPS");
    // Let a checkpointer pass run (every second) after the scheduler's first one.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut admin = db.admin_conn().await;
    let users: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT usename::text FROM pg_stat_activity
          WHERE datname = $1 AND pid <> pg_backend_pid() ORDER BY 1",
    )
    .bind(&db.name)
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert_eq!(
        users,
        [
            "portcullis_app",
            "portcullis_checkpointer",
            "portcullis_scheduler",
            "portcullis_sequencer"
        ]
    );
    drop(server);
}

/// Control T7: a background role's URL that logs in as another role stops the start with a
/// message naming both.
#[tokio::test]
async fn t7_serve_refuses_a_background_url_of_another_role() {
    let db = TestDb::new().await;
    let data = scratch("wrong-role");
    let runtime_url =
        portcullis_store::testing::url_with(&db.owner_url, "portcullis_app", &db.name);
    let out = command(&db, &data, free_port())
        .env("PORTCULLIS_DATABASE__SCHEDULER_URL", runtime_url)
        .arg("serve")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("meant for portcullis_scheduler logs in as portcullis_app"),
        "{stderr}"
    );
}

/// Controls E1, R2, E3: the README tour over real HTTPS: setup token, environment, project,
/// document, invitation; 403 for a viewer's write, 404 for another tenant; hardened headers;
/// graceful shutdown on SIGTERM.
#[tokio::test]
async fn e1_readme_tour_over_https() {
    let db = TestDb::new().await;
    let data = scratch("tour");
    let port = free_port();
    let out = command(&db, &data, port).arg("controls").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let server = Server::start({
        let mut c = command(&db, &data, port);
        c.arg("serve");
        c
    });
    let seen = server.wait_for("serving HTTPS");
    let setup_token = seen
        .iter()
        .find_map(|l| {
            l.split('"')
                .find(|s| s.starts_with("pcs_setup_"))
                .map(str::to_owned)
        })
        .expect("setup token printed");
    let base = format!("https://127.0.0.1:{port}");

    let (code, _, headers) = curl(&[&format!("{base}/healthz")]);
    assert_eq!(code, 200);
    for h in [
        "strict-transport-security: max-age=63072000; includesubdomains; preload",
        "content-security-policy: default-src 'self'; frame-ancestors 'none'",
        "x-content-type-options: nosniff",
    ] {
        assert!(headers.contains(h), "{h} missing in {headers}");
    }
    assert!(
        headers.contains("http/2"),
        "ALPN should pick HTTP/2: {headers}"
    );
    assert_eq!(curl(&[&format!("{base}/readyz")]).0, 200);
    // Plain http:// to the HTTPS port is told to use https (issue 12, item 5).
    let (code, plain, _) = curl(&[&format!("http://127.0.0.1:{port}/healthz")]);
    assert_eq!(code, 400, "{plain}");
    assert_eq!(plain["error"]["code"], "https_required");

    let body = format!(
        r#"{{"setup_token":"{setup_token}","email":"ada@example.com","password":"correct horse battery","environment_name":"Acme","region":"eu-central"}}"#
    );
    let (code, setup, _) = curl(&[
        "-H",
        "content-type: application/json",
        "-d",
        &body,
        &format!("{base}/v1/setup"),
    ]);
    assert_eq!(code, 201, "{setup}");
    let (code, again, _) = curl(&[
        "-H",
        "content-type: application/json",
        "-d",
        &body,
        &format!("{base}/v1/setup"),
    ]);
    assert_eq!(code, 401, "setup token is single-use: {again}");
    assert_eq!(again["error"]["code"], "setup_token_invalid");
    let owner = format!(
        "authorization: Bearer {}",
        setup["session"]["token"].as_str().unwrap()
    );
    let env = setup["environment"]["environment_id"].as_str().unwrap();
    let (code, project, _) = curl(&[
        "-H",
        &owner,
        "-H",
        "content-type: application/json",
        "-d",
        r#"{"name":"Launch"}"#,
        &format!("{base}/v1/environments/{env}/projects"),
    ]);
    assert_eq!(code, 201, "{project}");
    let p = project["project_id"].as_str().unwrap();
    let (code, doc, _) = curl(&[
        "-H",
        &owner,
        "-H",
        "content-type: application/json",
        "-d",
        r#"{"title":"Plan","body":"secret plan"}"#,
        &format!("{base}/v1/environments/{env}/projects/{p}/documents"),
    ]);
    assert_eq!(code, 201, "{doc}");

    // Operator key rotation from the CLI while the server runs (E5), then the server still
    // reads the document (now sealed with version 2).
    let out = command(&db, &data, port)
        .args(["keys", "rotate", "--environment", env])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("re-encryption finished: 1 values"),
        "{stdout}"
    );
    let out = command(&db, &data, port)
        .args(["keys", "status", "--environment", env, "--json"])
        .output()
        .unwrap();
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status[0]["active_version"], 2);
    assert_eq!(status[0]["versions"][1]["rows"], 1);

    // The platform PII key, rotated from the CLI while the server runs; the server keeps
    // reading the owner's account (re-sealed under version 2) without a restart.
    let out = command(&db, &data, port)
        .args(["keys", "rotate-pii"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("platform PII key version 2 is active"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = command(&db, &data, port)
        .args(["keys", "status", "--platform", "--json"])
        .output()
        .unwrap();
    let platform: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(platform["pii_versions"][1]["active"], true, "{platform}");
    assert_eq!(platform["pii_versions"][0]["identities"], 0, "{platform}");
    let (code, me, _) = curl(&["-H", &owner, &format!("{base}/v1/me")]);
    assert_eq!(code, 200, "{me}");
    let d = doc["document_id"].as_str().unwrap();
    let (code, read, _) = curl(&[
        "-H",
        &owner,
        &format!("{base}/v1/environments/{env}/projects/{p}/documents/{d}"),
    ]);
    assert_eq!(code, 200);
    assert_eq!(read["body"], "secret plan");

    // A second person signs up and signs in, is invited as viewer, and is refused a write.
    let bob_account = r#"{"email":"bob@example.com","password":"another long password"}"#;
    let (code, signed_up, _) = curl(&[
        "-H",
        "content-type: application/json",
        "-d",
        bob_account,
        &format!("{base}/v1/auth/signup"),
    ]);
    assert_eq!(code, 202, "{signed_up}");
    let (code, bob, _) = curl(&[
        "-H",
        "content-type: application/json",
        "-d",
        bob_account,
        &format!("{base}/v1/auth/login"),
    ]);
    assert_eq!(code, 200, "{bob}");
    let bob_auth = format!(
        "authorization: Bearer {}",
        bob["session"]["token"].as_str().unwrap()
    );
    let (_, inv, _) = curl(&[
        "-H",
        &owner,
        "-H",
        "content-type: application/json",
        "-d",
        r#"{"email":"bob@example.com","role":"viewer"}"#,
        &format!("{base}/v1/environments/{env}/invitations"),
    ]);
    let accept = format!(r#"{{"token":"{}"}}"#, inv["token"].as_str().unwrap());
    assert_eq!(
        curl(&[
            "-H",
            &bob_auth,
            "-H",
            "content-type: application/json",
            "-d",
            &accept,
            &format!("{base}/v1/invitations/accept")
        ])
        .0,
        200
    );
    let (code, err, _) = curl(&[
        "-H",
        &bob_auth,
        "-H",
        "content-type: application/json",
        "-d",
        r#"{"title":"x"}"#,
        &format!("{base}/v1/environments/{env}/projects/{p}/documents"),
    ]);
    assert_eq!(code, 403);
    assert_eq!(err["error"]["code"], "role_access_denied");
    // Bob's own environment is invisible to Ada: 404, not 403.
    let (_, bob_env, _) = curl(&[
        "-H",
        &bob_auth,
        "-H",
        "content-type: application/json",
        "-d",
        r#"{"name":"Bob's","region":"eu-central"}"#,
        &format!("{base}/v1/environments"),
    ]);
    let (code, _, _) = curl(&[
        "-H",
        &owner,
        &format!(
            "{base}/v1/environments/{}",
            bob_env["environment_id"].as_str().unwrap()
        ),
    ]);
    assert_eq!(code, 404);

    // The operator reads the platform scope over HTTP with a token the CLI makes (issue 12,
    // item 4); Ada's session is the wrong credential there.
    let out = command(&db, &data, port)
        .args(["operator", "token", "create", "--name", "tour"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let op_token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(op_token.starts_with("pcs_op_"), "{op_token}");
    let operator = format!("authorization: Bearer {op_token}");
    let (code, platform, _) = curl(&[
        "-H",
        &operator,
        &format!("{base}/v1/platform/audit?action=auth.login"),
    ]);
    assert_eq!(code, 200, "{platform}");
    assert!(
        !platform["items"].as_array().unwrap().is_empty(),
        "{platform}"
    );
    let (code, _, _) = curl(&["-H", &owner, &format!("{base}/v1/platform/audit")]);
    assert_eq!(code, 403);

    // Graceful shutdown.
    let pid = server.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let mut server = server;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            assert!(status.success(), "exit status {status}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "server did not stop after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Control L3 (with L7): kill -9 the server during a write storm; after a restart every
/// acknowledged mutation has its audit entry and the chain verifies.
#[tokio::test]
async fn l3_kill_during_write_storm_loses_no_acknowledged_entry() {
    let db = TestDb::new().await;
    let data = scratch("crash");
    let port = free_port();
    let start = || {
        let mut c = command(&db, &data, port);
        c.arg("serve");
        let s = Server::start(c);
        s.wait_for("serving HTTPS");
        s
    };
    let server = start();
    let base = format!("https://127.0.0.1:{port}");
    let account = r#"{"email":"ada@example.com","password":"correct horse battery"}"#;
    let (code, _, _) = curl(&[
        "-H",
        "content-type: application/json",
        "-d",
        account,
        &format!("{base}/v1/auth/signup"),
    ]);
    assert_eq!(code, 202);
    let (code, owner, _) = curl(&[
        "-H",
        "content-type: application/json",
        "-d",
        account,
        &format!("{base}/v1/auth/login"),
    ]);
    assert_eq!(code, 200);
    let auth = format!(
        "authorization: Bearer {}",
        owner["session"]["token"].as_str().unwrap()
    );
    let (_, env, _) = curl(&[
        "-H",
        &auth,
        "-H",
        "content-type: application/json",
        "-d",
        r#"{"name":"Acme","region":"eu-central"}"#,
        &format!("{base}/v1/environments"),
    ]);
    let env = env["environment_id"].as_str().unwrap().to_owned();

    // Four writers create projects as fast as they can; each remembers what was acknowledged.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = vec![];
    for w in 0..4 {
        let (stop, auth, url) = (
            stop.clone(),
            auth.clone(),
            format!("{base}/v1/environments/{env}/projects"),
        );
        writers.push(std::thread::spawn(move || {
            let mut acked = vec![];
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                let body = format!(r#"{{"name":"w{w}-{n}"}}"#);
                let (code, p, _) = curl(&[
                    "-H",
                    &auth,
                    "-H",
                    "content-type: application/json",
                    "-d",
                    &body,
                    &url,
                ]);
                if code == 201 {
                    acked.push(p["project_id"].as_str().unwrap().to_owned());
                }
            }
            acked
        }));
    }
    std::thread::sleep(Duration::from_millis(1500));
    assert!(Command::new("kill")
        .args(["-KILL", &server.child.id().to_string()])
        .status()
        .unwrap()
        .success());
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let acked: Vec<String> = writers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    assert!(
        acked.len() >= 5,
        "the storm acknowledged only {} writes",
        acked.len()
    );
    drop(server);

    // Restart on the same database: what the killed node left pending (committed with its
    // mutation, not yet chained; perhaps mid-batch) is sequenced by the new node's sweep, and
    // every acknowledged project has its audit entry.
    let server = start();
    let mut admin = db.admin_conn().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let pending: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_pending")
            .fetch_one(&mut admin)
            .await
            .unwrap();
        if pending == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{pending} audit entries still pending after the restart"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for p in &acked {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM audit_log WHERE action = 'project.created' AND target_id = $1",
        )
        .bind(p)
        .fetch_one(&mut admin)
        .await
        .unwrap();
        assert_eq!(n, 1, "acknowledged project {p} has no audit entry");
    }
    let (gapless,): (bool,) =
        sqlx::query_as("SELECT count(*) = max(seq) FROM audit_log WHERE environment_id = $1::uuid")
            .bind(&env)
            .fetch_one(&mut admin)
            .await
            .unwrap();
    assert!(gapless);
    let out = command(&db, &data, port)
        .args(["audit", "checkpoint"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = command(&db, &data, port)
        .args(["audit", "verify", "--environment", &env])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.starts_with("OK:"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // And the export verifies offline.
    let bundle = data.join("audit.bundle.jsonl");
    let out = command(&db, &data, port)
        .args([
            "audit",
            "export",
            "--environment",
            &env,
            "--format",
            "bundle",
            "--output",
        ])
        .arg(&bundle)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = command(&db, &data, port)
        .args(["audit", "verify", "--bundle"])
        .arg(&bundle)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    // The verdict states its coverage (issue 11, item 3) ...
    assert!(stdout.contains("signed checkpoints cover"), "{stdout}");
    // The file holds its own export's entry, the last one in it (as the API's export does).
    let text = std::fs::read_to_string(&bundle).unwrap();
    let last_entry = text
        .lines()
        .rev()
        .find(|l| l.contains("\"action\""))
        .unwrap();
    assert!(
        last_entry.contains("audit.exported") && last_entry.contains("cli"),
        "{last_entry}"
    );
    // ... and a bundle with every checkpoint line removed fails unless that is accepted.
    let stripped = data.join("audit.stripped.jsonl");
    let kept: String = text
        .lines()
        .filter(|l| !l.starts_with("{\"checkpoint\""))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(kept.len() < text.len(), "the export had checkpoint lines");
    std::fs::write(&stripped, kept).unwrap();
    let out = command(&db, &data, port)
        .args(["audit", "verify", "--bundle"])
        .arg(&stripped)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success() && stdout.contains("no signed checkpoint covers"),
        "{stdout}"
    );
    let out = command(&db, &data, port)
        .args(["audit", "verify", "--accept-uncheckpointed", "--bundle"])
        .arg(&stripped)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    drop(server);
}

/// Control L6: `audit report` writes the signed JSON and the PDF for a past month (cutting the
/// closing checkpoint), and `audit verify-report` checks it offline against a bundle and a
/// keys file, against the database, and refuses edited reports and untrusted keys. Exit codes:
/// 0 verified, 1 failed (naming the member), 2 usage error.
#[tokio::test]
async fn l6_cli_writes_and_verifies_a_monthly_report() {
    use sqlx::types::time::OffsetDateTime;
    use sqlx::types::Uuid;
    let db = TestDb::new().await;
    let data = scratch("report");
    let port = free_port();
    let env = Uuid::now_v7();
    let env_s = env.to_string();
    let run = |args: &[&str]| command(&db, &data, port).args(args).output().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).to_string();
    let append = |at: i64, action: &'static str| {
        db.append_audit_at(
            env,
            OffsetDateTime::from_unix_timestamp(at).unwrap(),
            portcullis_store::AuditEvent::success(action, "thing", "t1"),
        )
    };
    append(1_736_071_200, "project.created").await; // 2025-01-05
    append(1_737_370_800, "auth.login").await; // 2025-01-20
    let out = run(&["audit", "checkpoint"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    append(1_740_902_400, "auth.login").await; // 2025-03-02
    append(1_742_040_000, "document.created").await; // 2025-03-15
    append(1_743_465_600, "auth.logout").await; // 2025-04-01

    // January first, so that March has a previous month with a checkpoint.
    let out_dir = data.join("reports");
    let out_s = out_dir.to_str().unwrap();
    let out = run(&[
        "audit",
        "report",
        "--environment",
        &env_s,
        "--month",
        "2025-01",
        "--out",
        out_s,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = run(&[
        "audit",
        "report",
        "--environment",
        &env_s,
        "--month",
        "2025-03",
        "--out",
        out_s,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Progress (issue 12, item 9) on stderr, one finished line per read of the log, plain
    // since stderr is not a terminal here; stdout carries only the two paths.
    let stderr = text(&out.stderr);
    for step in [
        "reading the log: ",
        "verifying the log: ",
        "checking the report: ",
    ] {
        assert!(
            stderr
                .lines()
                .any(|l| l.starts_with(step) && l.contains(" entries (100%) in ")),
            "{step} in {stderr}"
        );
    }
    assert!(!stderr.contains('\r'), "no terminal redraws: {stderr}");
    let stdout = text(&out.stdout);
    let paths: Vec<&str> = stdout.lines().collect();
    assert_eq!(paths.len(), 2, "{stdout}");
    assert!(
        paths[0].ends_with(&format!("{env}-2025-03.report.json")),
        "{stdout}"
    );
    assert!(
        paths[1].ends_with(&format!("{env}-2025-03.report.pdf")),
        "{stdout}"
    );
    let report: Value = serde_json::from_slice(&std::fs::read(paths[0]).unwrap()).unwrap();
    assert_eq!(report["entries"]["count"], 2);
    assert_eq!(report["entries"]["first_seq"], 3);
    assert_eq!(report["previous"]["month"], "2025-02");
    assert_eq!(report["previous"]["checkpoint"]["tree_size"], 2);
    // Cut at the head, which by now includes the audit entry of the January report.
    assert_eq!(report["closing_checkpoint"]["tree_size"], 6);
    let pdf = std::fs::read(paths[1]).unwrap();
    assert!(pdf.starts_with(b"%PDF-1.4\n") && pdf.ends_with(b"%%EOF\n"));

    // The auditor's material: a bundle and the published keys.
    let bundle = data.join("audit.bundle.jsonl");
    let out = run(&[
        "audit",
        "export",
        "--environment",
        &env_s,
        "--format",
        "bundle",
        "--output",
        bundle.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut admin = db.admin_conn().await;
    let keys: Vec<(String, Vec<u8>)> =
        sqlx::query_as("SELECT key_id, public_key FROM audit_signing_keys")
            .fetch_all(&mut admin)
            .await
            .unwrap();
    let keys_json = serde_json::json!({ "keys": keys.iter().map(|(id, pk)| serde_json::json!({ "key_id": id, "public_key": portcullis_audit::hex::encode(pk) })).collect::<Vec<_>>() });
    let keys_file = data.join("audit-keys.json");
    std::fs::write(&keys_file, keys_json.to_string()).unwrap();
    let keys_s = keys_file.to_str().unwrap();
    let bundle_s = bundle.to_str().unwrap();

    let out = run(&[
        "audit",
        "verify-report",
        paths[0],
        "--bundle",
        bundle_s,
        "--keys",
        keys_s,
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).starts_with("OK: report of environment"),
        "{}",
        text(&out.stdout)
    );
    let out = run(&["audit", "verify-report", paths[0], "--environment", &env_s]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(text(&out.stdout).contains("the entries in the database"));
    assert!(
        text(&out.stderr)
            .lines()
            .any(|l| l.starts_with("checking: ") && l.contains("(100%)")),
        "{}",
        text(&out.stderr)
    );
    let out = run(&["audit", "verify-report", paths[0]]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );

    // An edited count: 1, naming the member.
    let mut edited = report.clone();
    edited["entries"]["count"] = 3.into();
    let edited_path = data.join("edited.report.json");
    std::fs::write(&edited_path, edited.to_string()).unwrap();
    let out = run(&[
        "audit",
        "verify-report",
        edited_path.to_str().unwrap(),
        "--bundle",
        bundle_s,
        "--keys",
        keys_s,
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).starts_with("FAILED: entries.count:"),
        "{}",
        text(&out.stdout)
    );
    assert!(
        text(&out.stdout).contains("also: signature:"),
        "{}",
        text(&out.stdout)
    );

    // Keys the report was not signed with: 1.
    let stranger = portcullis_audit::checkpoint::SigningKey::from_seed(&[5; 32])
        .unwrap()
        .public_key();
    let stranger_file = data.join("stranger-keys.json");
    std::fs::write(
        &stranger_file,
        serde_json::json!({ "keys": [{ "key_id": stranger.key_id().to_string(), "public_key": stranger.to_hex() }] }).to_string(),
    )
    .unwrap();
    let out = run(&[
        "audit",
        "verify-report",
        paths[0],
        "--bundle",
        bundle_s,
        "--keys",
        stranger_file.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("signature: signed by key"),
        "{}",
        text(&out.stdout)
    );

    // Usage errors: 2.
    let out = run(&[
        "audit",
        "report",
        "--environment",
        &env_s,
        "--month",
        "2026-13",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("--month") && err.contains("month 13 does not exist"),
        "{err}"
    );
    let out = run(&["audit", "verify-report", "/nonexistent/report.json"]);
    assert_eq!(out.status.code(), Some(2));
    let out = run(&[
        "audit",
        "verify-report",
        paths[0],
        "--environment",
        &Uuid::now_v7().to_string(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let out = run(&[
        "audit",
        "verify-report",
        paths[0],
        "--bundle",
        bundle_s,
        "--environment",
        &env_s,
    ]);
    assert_eq!(out.status.code(), Some(2));
    // A month that has not ended is refused with a reason.
    let out = run(&[
        "audit",
        "report",
        "--environment",
        &env_s,
        "--month",
        "9998-12",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("has not ended"),
        "{}",
        text(&out.stderr)
    );

    // Control L3/L6: an entry of March edited as the superuser. The report is still written,
    // says what failed, and the command exits 1; verify-report of it exits 1 on the verdict.
    for statement in [
        "ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update_delete",
        "UPDATE audit_log SET action = 'auth.logout' WHERE environment_id = $1 AND seq = 4",
        "ALTER TABLE audit_log ENABLE TRIGGER audit_log_no_update_delete",
    ] {
        sqlx::query(statement)
            .bind(env)
            .execute(&mut admin)
            .await
            .unwrap();
    }
    let broken_dir = data.join("broken");
    let out = run(&[
        "audit",
        "report",
        "--environment",
        &env_s,
        "--month",
        "2025-03",
        "--out",
        broken_dir.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[0].ends_with(".report.json") && lines[1].ends_with(".report.pdf"),
        "{stdout}"
    );
    assert!(
        lines[2].starts_with("FAILED: Changed at entry 4: "),
        "{stdout}"
    );
    let broken: Value = serde_json::from_slice(&std::fs::read(lines[0]).unwrap()).unwrap();
    assert_eq!(broken["summary"]["verdict"]["status"], "failed");
    let out = run(&["audit", "verify-report", lines[0], "--keys", keys_s]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).starts_with(
            "FAILED: summary.verdict: the report states that the log failed verification"
        ),
        "{}",
        text(&out.stdout)
    );
}

/// Issue 12, item 8: the human log a pipe or a file receives is plain text (no ANSI colour),
/// a restart on a migrated database logs no `_sqlx_migrations` notice, and a graceful
/// shutdown (SIGTERM) stops the background tasks first and logs no error.
#[tokio::test]
async fn logs_are_plain_quiet_on_restart_and_error_free_on_shutdown() {
    let db = TestDb::new().await;
    let data = scratch("logs");
    let mut all = Vec::new();
    for _ in 0..2 {
        let port = free_port();
        let mut c = command(&db, &data, port);
        c.env("PORTCULLIS_LOG__FORMAT", "human").arg("serve");
        let mut server = Server::start(c);
        all.extend(server.wait_for("serving HTTPS"));
        // Let the background tasks start their first passes.
        std::thread::sleep(Duration::from_millis(1500));
        let pid = server.child.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        let deadline = Instant::now() + Duration::from_secs(30);
        while server.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "server did not stop");
            std::thread::sleep(Duration::from_millis(100));
        }
        // Whatever the reader threads still hold.
        while let Ok(line) = server.lines.recv_timeout(Duration::from_millis(300)) {
            all.push(line);
        }
    }
    let log = all.join("\n");
    assert!(log.contains("stopped"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "ANSI escape codes in a piped log:\n{log}"
    );
    assert!(!log.contains("_sqlx_migrations"), "{log}");
    let errors: Vec<&String> = all.iter().filter(|l| l.contains(" ERROR ")).collect();
    assert!(errors.is_empty(), "{errors:#?}");
}

/// Control L7 (issue 12, item 4): the operator reads the platform scope (sign-ins, failed
/// sign-ins) with `portcullis audit list --platform`, filtered by action, as a table or JSON
/// lines; without a scope the command is a usage error that names the choice.
#[tokio::test]
async fn l7_the_operator_lists_the_platform_scope() {
    let db = TestDb::new().await;
    let data = scratch("list");
    let now = time::OffsetDateTime::now_utc();
    for (i, action) in ["auth.login_failed", "auth.login", "auth.login_failed"]
        .into_iter()
        .enumerate()
    {
        db.append_audit_at(
            portcullis_store::PLATFORM_SCOPE,
            now - time::Duration::seconds(10 - i as i64),
            portcullis_store::AuditEvent::success(action, "identity", i),
        )
        .await;
    }
    let out = command(&db, &data, 0)
        .args(["audit", "list", "--platform", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let actions: Vec<&str> = lines
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["auth.login_failed", "auth.login", "auth.login_failed"]
    );
    assert_eq!(lines[0]["target_id"], "2", "newest first");
    let out = command(&db, &data, 0)
        .args(["audit", "list", "--platform", "--action", "auth.login"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let table = String::from_utf8_lossy(&out.stdout);
    assert_eq!(table.lines().count(), 1, "{table}");
    assert!(table.contains("auth.login "), "{table}");
    let out = command(&db, &data, 0)
        .args(["audit", "list"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let usage = String::from_utf8_lossy(&out.stderr);
    assert!(
        usage.contains("--environment") && usage.contains("--platform"),
        "{usage}"
    );
}

/// Control E3 (issue 12, item 4): `portcullis operator token create` prints the token once
/// (stdout, nothing else there), `list` shows only a hint and the token's state, `revoke`
/// revokes once and says so when asked again, an unknown id fails; creation and revocation are
/// in the platform scope; a lifetime outside 1 hour to 365 days is a usage error.
#[tokio::test]
async fn e3_the_operator_creates_lists_and_revokes_tokens_with_the_cli() {
    let db = TestDb::new().await;
    let data = scratch("operator");
    let run = |args: &[&str]| command(&db, &data, 0).args(args).output().unwrap();
    let out = run(&[
        "operator",
        "token",
        "create",
        "--name",
        "siem",
        "--expires-in",
        "12h",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let token = stdout.trim();
    assert!(token.starts_with("pcs_op_") && token.len() == "pcs_op_".len() + 52);
    assert!(String::from_utf8_lossy(&out.stderr).contains("shown only this once"));

    let out = run(&["operator", "token", "list", "--json"]);
    assert!(out.status.success());
    let listed: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["state"], "active");
    assert_eq!(listed[0]["name"], "siem");
    assert!(listed[0]["expires_at"].is_string());
    let hint = listed[0]["hint"].as_str().unwrap();
    assert!(token.starts_with(hint.trim_end_matches('…')) && hint.len() < 20);
    assert!(!String::from_utf8_lossy(&out.stdout).contains(token));
    let id = listed[0]["token_id"].as_str().unwrap().to_owned();

    let out = run(&["operator", "token", "revoke", &id]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("revoked operator token"));
    let out = run(&["operator", "token", "revoke", &id]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("already revoked"));
    let out = run(&["operator", "token", "list", "--json"]);
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed["state"], "revoked");
    let out = run(&[
        "operator",
        "token",
        "revoke",
        "0193e0a8-7b5c-7cc1-9f0e-1d2c3b4a5968",
    ]);
    assert_eq!(out.status.code(), Some(1));

    let out = run(&["audit", "list", "--platform", "--json"]);
    assert!(out.status.success());
    let actions: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["action"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        actions,
        ["operator_token.revoked", "operator_token.created"]
    );

    for bad in ["5m", "0h", "366d", "soon"] {
        let out = run(&[
            "operator",
            "token",
            "create",
            "--name",
            "x",
            "--expires-in",
            bad,
        ]);
        assert_eq!(out.status.code(), Some(2), "{bad}");
    }
}

/// Issue 12, item 1 (the lighter build drops the regex-based filter): a log filter that does
/// not parse, in `RUST_LOG` or in `[log] level`, stops the command with an error naming where
/// it came from; nothing falls back to another filter silently. A target filter still works.
#[test]
fn a_log_filter_that_does_not_parse_is_refused_and_names_its_source() {
    for (var, value, source) in [
        ("RUST_LOG", "portcullis=loud", "RUST_LOG"),
        ("PORTCULLIS_LOG__LEVEL", "info,sqlx=[x]", "[log] level"),
    ] {
        let out = Command::new(BIN)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env(var, value)
            .args(["operator", "token", "list"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains(source) && stderr.contains("is not a log filter"),
            "{stderr}"
        );
    }
    // A valid target filter: the command runs (and fails later, for want of a database, with
    // its own error rather than a filter error).
    let out = Command::new(BIN)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn,portcullis_store=debug")
        .env(
            "PORTCULLIS_DATABASE__URL",
            "postgres://nobody@127.0.0.1:1/none",
        )
        .env("PORTCULLIS_DATA_DIR", scratch("log-filter"))
        .args(["operator", "token", "list"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("is not a log filter"), "{stderr}");
}
