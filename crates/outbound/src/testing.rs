//! Test fixtures for the users of this client (feature `testing`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A `moto_server` child process on a free loopback port, killed (and its log removed) when
/// dropped, also when a test panics. moto emulates KMS, S3 and IAM in one process; with its
/// signature checks on it verifies every request with botocore's own signer.
#[derive(Debug)]
pub struct Moto {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

impl Moto {
    /// `moto_server`, else `python3 -m moto.server` (a pyenv shim appears only after
    /// `pyenv rehash`), answering once this returns. `None` when neither is installed, after
    /// saying `SKIPPED: ...` on stderr. Installed but failing to start is a failure, not a skip.
    pub fn start() -> Option<Moto> {
        let candidates: [&[&str]; 2] = [&["moto_server"], &["python3", "-m", "moto.server"]];
        let Some(program) = candidates.into_iter().find(|argv| {
            Command::new(argv[0])
                .args(&argv[1..])
                .arg("--help")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        }) else {
            // Straight to the process's stderr: the harness swallows `eprintln!` of a passing
            // test, and a skip must not look like a pass.
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED: moto not installed (pip install 'moto[server]')"
            );
            return None;
        };
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // A file, not a pipe: werkzeug logs every request, and a pipe nobody reads would
        // eventually block the server.
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        let log = std::env::temp_dir().join(format!(
            "portcullis-moto-{}-{}-{port}.log",
            std::process::id(),
            STARTED.fetch_add(1, Ordering::Relaxed)
        ));
        let log_file = std::fs::File::create(&log).unwrap();
        let child = Command::new(program[0])
            .args(&program[1..])
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .unwrap();
        let mut moto = Moto { child, port, log };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if moto
                .http("GET", "/moto-api/", &[], "")
                .is_some_and(|(s, _)| s == 200)
            {
                return Some(moto);
            }
            if let Some(status) = moto.child.try_wait().unwrap() {
                panic!(
                    "moto exited with {status} before answering:\n{}",
                    moto.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "moto did not answer within 60 s:\n{}",
                moto.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Creates an IAM user allowed `action` (`kms:*`, `s3:*`) on every resource and an access
    /// key for it (while moto still accepts anything), then makes moto check every request's
    /// signature and permissions. Returns (access key id, secret access key).
    pub fn enforce_auth(&self, action: &str) -> (String, String) {
        let iam = |body: &str| {
            // Unchecked for now; the credential scope only routes the call to IAM.
            let auth =
                "AWS4-HMAC-SHA256 Credential=AKIASETUP/20260101/us-east-1/iam/aws4_request, \
                        SignedHeaders=host, Signature=0";
            let (status, text) = self
                .http(
                    "POST",
                    "/",
                    &[
                        ("Authorization", auth),
                        ("Content-Type", "application/x-www-form-urlencoded"),
                    ],
                    &format!("{body}&Version=2010-05-08"),
                )
                .unwrap();
            assert_eq!(status, 200, "{body}: {text}");
            text
        };
        iam("Action=CreateUser&UserName=portcullis");
        let policy = format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":"{action}","Resource":"*"}}]}}"#
        );
        iam(&format!(
            "Action=PutUserPolicy&UserName=portcullis&PolicyName=portcullis&PolicyDocument={}",
            form_encode(&policy)
        ));
        let keys = iam("Action=CreateAccessKey&UserName=portcullis");
        let between = |tag: &str| {
            let open = format!("<{tag}>");
            let start = keys.find(&open).unwrap() + open.len();
            let end = keys[start..].find('<').unwrap();
            keys[start..start + end].to_owned()
        };
        let credentials = (between("AccessKeyId"), between("SecretAccessKey"));
        self.check_signatures(true);
        credentials
    }

    /// Switches moto's signature and permission checks on or off (`/moto-api/reset-auth`).
    ///
    /// Off is needed around S3 listings: moto recomputes the signature over the *decoded* query
    /// string, so any request with `%2F` in a query value (a `prefix=` ending in `/`) fails
    /// with SignatureDoesNotMatch under moto, boto3's own `list_object_versions` and
    /// `list_objects_v2` included (checked with boto3 1.43 against moto 5.2.1). S3 signs the
    /// encoded form, which is what our signer sends.
    pub fn check_signatures(&self, on: bool) {
        let count = if on { "0" } else { "inf" };
        let (status, text) = self
            .http("POST", "/moto-api/reset-auth", &[], count)
            .unwrap();
        assert_eq!(status, 200, "{text}");
    }

    /// A blocking HTTP/1.1 exchange for setup calls; `None` when nothing listens yet.
    fn http(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Option<(u16, String)> {
        let port = self.port;
        let mut tcp = TcpStream::connect(("127.0.0.1", port)).ok()?;
        tcp.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\
             Content-Length: {}\r\n",
            body.len()
        );
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        request.push_str(body);
        tcp.write_all(request.as_bytes()).ok()?;
        let mut response = String::new();
        tcp.read_to_string(&mut response).ok()?;
        let status = response.split(' ').nth(1)?.parse().ok()?;
        let text = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
        Some((status, text))
    }
}

fn form_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
