//! The official `anthropic` Python SDK, unmodified, against the gateway over a real socket
//! (issue 14, section 1): each pinned version in `tests/sdk/versions.txt` (a 1.x, which sends
//! `x-api-key`, and the newest 2.x, which sends `Authorization: Bearer`) runs every scenario
//! of `tests/sdk/anthropic_sdk.py`. The virtual environments live in `target/ci/` (made by
//! `.ci/run`); without them the test prints `SKIPPED: ...`, unless
//! `CI_REQUIRE_ANTHROPIC_SDK=1` (set by `.ci/run`), which makes their absence a failure.

use std::path::PathBuf;
use std::time::Duration;

use axum::http::StatusCode;
use portcullis_gateway::testing::{FakeAnthropic, Script};
use serde_json::Value;

use super::gateway::{api_token, connect_key, logged};
use crate::support::{GatewaySetup, TestApp};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn versions() -> Vec<String> {
    std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/versions.txt"),
    )
    .unwrap()
    .lines()
    .map(str::trim)
    .filter(|l| !l.is_empty() && !l.starts_with('#'))
    .map(str::to_owned)
    .collect()
}

/// The venv's python for `version`, or `None` (after saying SKIPPED) when absent locally.
fn python(version: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("PORTCULLIS_ANTHROPIC_SDK_VENVS")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/ci"));
    let python = dir.join(format!("anthropic-{version}-venv/bin/python"));
    if python.exists() {
        return Some(python);
    }
    let required = std::env::var("CI_REQUIRE_ANTHROPIC_SDK").is_ok_and(|v| v == "1");
    assert!(
        !required,
        "anthropic {version} is required (CI_REQUIRE_ANTHROPIC_SDK=1) but {} is missing",
        python.display()
    );
    use std::io::Write as _;
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED: the anthropic {version} SDK is not installed at {} (bash .ci/run installs it)",
        python.display()
    );
    None
}

struct Run {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    stdout: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
}

impl Run {
    fn start(python: &PathBuf, base: &str, token: &str, session: &str, keyless: &str) -> Run {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/anthropic_sdk.py");
        let mut child = tokio::process::Command::new(python)
            .arg(&script)
            .env("GATEWAY_BASE_URL", base)
            .env("GATEWAY_TOKEN", token)
            .env("SESSION_TOKEN", session)
            .env("KEYLESS_TOKEN", keyless)
            .env_remove("ANTHROPIC_API_KEY")
            .env_remove("ANTHROPIC_AUTH_TOKEN")
            .env_remove("ANTHROPIC_BASE_URL")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        use tokio::io::AsyncBufReadExt as _;
        let stdin = child.stdin.take().unwrap();
        let stdout = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        Run {
            child,
            stdin,
            stdout,
        }
    }

    async fn scenario(&mut self, name: &str) -> Value {
        use tokio::io::AsyncWriteExt as _;
        self.stdin
            .write_all(format!("{name}\n").as_bytes())
            .await
            .unwrap();
        self.stdin.flush().await.unwrap();
        let line = tokio::time::timeout(Duration::from_secs(120), self.stdout.next_line())
            .await
            .expect("the SDK scenario hung")
            .unwrap()
            .unwrap_or_else(|| {
                panic!(
                    "{name}: the SDK driver exited ({:?})",
                    self.child.try_wait()
                )
            });
        let out: Value = serde_json::from_str(&line).unwrap();
        assert!(out.get("failed").is_none(), "{}", out);
        out
    }
}

/// Controls M1 and L1 through the official SDK: create, streamed text and tool use
/// (`input_json_delta`), count_tokens, the models list, a 529 and a 429 retried by the SDK, a
/// mid-stream error, an invalid token (401 authentication_error), a session token (403) and
/// the token of an environment with no key (403 connect_your_key, no upstream call). The
/// upstream checks the key it receives: only the environment's own.
#[tokio::test]
async fn m1_the_official_python_sdk_works_unmodified() {
    for version in versions() {
        let Some(python) = python(&version) else {
            continue;
        };
        let upstream = FakeAnthropic::with_keys(&["sk-ant-sdk-own-key-0001"]).await;
        let app = TestApp::spawn_gateway(GatewaySetup::with(upstream)).await;
        let owner = app.signup("owner@example.com").await;
        let env = app.create_environment(&owner, "SDK").await;
        assert_eq!(
            connect_key(&app, &owner, &env, "sk-ant-sdk-own-key-0001")
                .await
                .status,
            StatusCode::OK
        );
        let keyless_env = app.create_environment(&owner, "Keyless").await;
        let token = api_token(&app, &owner, &env, "contributor").await;
        let keyless = api_token(&app, &owner, &keyless_env, "contributor").await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}/gateway", listener.local_addr().unwrap());
        tokio::spawn(portcullis_server::tls::serve_plain(
            listener,
            app.router.clone(),
            std::future::pending(),
            Duration::from_secs(1),
        ));
        let mut run = Run::start(&python, &base, &token, &owner.token, &keyless);

        for name in [
            "create",
            "stream_text",
            "stream_tool",
            "count_tokens",
            "models",
            "tier",
            "mid_stream_error",
        ] {
            if name == "mid_stream_error" {
                app.upstream.then(Script::MidStreamError);
            }
            let out = run.scenario(name).await;
            assert_eq!(out["sdk"], version.as_str(), "{out}");
        }
        for status in [529, 429] {
            let before = app.upstream.message_requests().len();
            app.upstream.then(Script::Status(status));
            run.scenario("retried").await;
            assert_eq!(
                app.upstream.message_requests().len() - before,
                2,
                "the SDK retried a {status} once"
            );
        }
        let sent = app.upstream.requests().len();
        let out = run.scenario("invalid_token").await;
        assert_eq!(
            (out["status"].as_u64(), out["type"].as_str()),
            (Some(401), Some("authentication_error")),
            "{out}"
        );
        let out = run.scenario("unknown_tier").await;
        assert_eq!(
            (out["status"].as_u64(), out["type"].as_str()),
            (Some(400), Some("invalid_request_error")),
            "{out}"
        );
        let out = run.scenario("session_token").await;
        assert_eq!(out["type"], "permission_error", "{out}");
        let out = run.scenario("keyless_environment").await;
        assert_eq!(out["code"], "connect_your_key", "{out}");
        assert_eq!(
            app.upstream.requests().len(),
            sent,
            "a refused call reached the provider"
        );
        assert_eq!(
            logged(&app, &keyless_env).await.len(),
            1,
            "the refusal was not retried"
        );

        // Both header forms of the SDKs authenticate; neither token reached the provider.
        let received = app.upstream.everything_received();
        assert!(!received.contains(&token) && !received.contains(&keyless));
        assert!(app
            .upstream
            .message_requests()
            .iter()
            .all(|r| r.header("x-api-key") == Some("sk-ant-sdk-own-key-0001")));
        let rows = logged(&app, &env).await;
        // create 1, stream_text 1, stream_tool 2, count_tokens 1, tier 1, mid-stream 1,
        // retried 2 x 2, the unknown tier's refusal 1.
        assert_eq!(rows.len(), 12, "{rows:?}");
        assert_eq!(
            rows.iter().filter(|r| !r.success).count(),
            4,
            "the 529, the 429, the mid-stream error and the unknown tier"
        );
        assert_eq!(
            rows.iter()
                .filter(|r| r.tier.as_deref() == Some("fast"))
                .count(),
            1
        );
    }
}
