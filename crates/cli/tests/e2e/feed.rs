//! The checkpoint feed from the outside (control L4, issue 11 item 5): a running server warns
//! that its anchors share the database's host; a customer keeps the checkpoints with
//! `audit fetch-checkpoints` over HTTPS (the server's own certificate pinned) and verifies the
//! operator's bundle against the kept copies; a kept copy is never replaced.

use std::process::Command;

use portcullis_store::testing::TestDb;

use super::{command, curl, free_port, scratch, Server, BIN};

#[tokio::test]
async fn l4_customers_keep_checkpoints_from_the_feed_and_verify_bundles_with_them() {
    let db = TestDb::new().await;
    let data = scratch("feed");
    let port = free_port();
    let server = Server::start({
        let mut c = command(&db, &data, port);
        c.arg("serve");
        c
    });
    let seen = server.wait_for("serving HTTPS");
    assert!(
        seen.iter().any(|l| l.contains(r#""control":"L4""#)
            && l.contains("WARN")
            && l.contains("anchored in the local directory")),
        "serve warns about anchors next to the database:\n{}",
        seen.join("\n")
    );
    let out = command(&db, &data, port).arg("controls").output().unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("warn  L4"), "{table}");
    assert!(
        out.status.success(),
        "a warning is not a failed check: {table}"
    );

    let setup_token = seen
        .iter()
        .find_map(|l| {
            l.split('"')
                .find(|s| s.starts_with("pcs_setup_"))
                .map(str::to_owned)
        })
        .expect("setup token printed");
    let base = format!("https://127.0.0.1:{port}");
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
    let token = setup["session"]["token"].as_str().unwrap().to_owned();
    let env = setup["environment"]["environment_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let out = command(&db, &data, port)
        .args(["audit", "checkpoint"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let token_file = data.join("auditor.token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let kept = data.join("kept");
    let ca = data.join("tls").join("cert.pem");
    let fetch_with = |token_file: &std::path::Path, extra: &[&str]| {
        Command::new(BIN)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .args([
                "audit",
                "fetch-checkpoints",
                "--url",
                &base,
                "--environment",
                &env,
            ])
            .arg("--token-file")
            .arg(token_file)
            .arg("--out")
            .arg(&kept)
            .arg("--ca-file")
            .arg(&ca)
            .args(extra)
            .current_dir(&data)
            .output()
            .unwrap()
    };
    let fetch = |token_file: &std::path::Path| fetch_with(token_file, &[]);
    let out = fetch(&token_file);
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("kept 1 new checkpoints"), "{said}");
    let files: Vec<_> = std::fs::read_dir(&kept).unwrap().collect();
    assert_eq!(files.len(), 1);
    let out = fetch(&token_file);
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        said.contains("kept 0 new checkpoints"),
        "resumed after it: {said}"
    );
    let out = fetch_with(&token_file, &["--recheck"]);
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        said.contains("kept 0 new checkpoints") && said.contains("1 already kept"),
        "{said}"
    );

    // The operator's bundle verifies against the kept copies with the published key.
    let (_, keys, _) = curl(&[&format!("{base}/.well-known/portcullis/audit-keys.json")]);
    let key = keys["keys"][0]["public_key"].as_str().unwrap().to_owned();
    let bundle = data.join("audit.bundle.jsonl");
    let out = command(&db, &data, port)
        .args(["audit", "export", "--environment", &env, "--output"])
        .arg(&bundle)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(BIN)
        .args(["audit", "verify", "--public-key", &key, "--bundle"])
        .arg(&bundle)
        .arg("--checkpoints")
        .arg(&kept)
        .current_dir(&data)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.starts_with("OK:"), "{said}");

    // A kept copy that differs from what the server now serves is never replaced: a fork.
    let file = std::fs::read_dir(&kept)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let original = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, original.replace("time ", "time 1")).unwrap();
    let out = fetch(&token_file);
    assert!(
        out.status.success(),
        "resuming after the largest kept size reads nothing old"
    );
    let out = fetch_with(&token_file, &["--recheck"]);
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("already holds a different checkpoint"),
        "{said}"
    );
    assert_ne!(
        std::fs::read_to_string(&file).unwrap(),
        original,
        "left as kept"
    );

    // A bad credential: the server's refusal, not an empty feed.
    let bad = data.join("bad.token");
    std::fs::write(&bad, "pcs_sess_not-a-session").unwrap();
    std::fs::remove_dir_all(&kept).unwrap();
    let out = fetch(&bad);
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(said.contains("answered 401"), "{said}");
}
