//! End-to-end tests against the real PostgreSQL server binaries of this machine. They run as
//! root in CI (the server then runs as `postgres`), so every directory lives under the cargo
//! target directory, which that user can reach (unlike a temp dir under /root).
#![allow(clippy::disallowed_methods)] // connects with sqlx only to prove the URL works

use std::error::Error;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use portcullis_provision::{
    find_server_binaries, shared_test_cluster, ClusterOptions, LocalCluster, ProvisionError,
};
use sqlx::Connection;

type TestResult = Result<(), Box<dyn Error + Send + Sync>>;

/// Routes the crate's tracing output to the test harness (shown for failing tests).
fn init_logging() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let only_this_crate = tracing_subscriber::filter::Targets::new()
        .with_target("portcullis_provision", tracing::Level::DEBUG);
    let _ = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_test_writer()
        .finish()
        .with(only_this_crate)
        .try_init();
}

/// A fresh, not yet existing directory under `<target>/portcullis-provision-tests/`.
fn scratch_dir(name: &str) -> Result<PathBuf, ProvisionError> {
    init_logging();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    Ok(portcullis_provision::test_root()?
        .join("portcullis-provision-tests")
        .join(format!("{name}-{}-{nanos}", std::process::id())))
}

fn ephemeral(data_dir: PathBuf) -> ClusterOptions {
    ClusterOptions {
        data_dir,
        bin_dir: None,
        ephemeral: true,
        max_connections: 20,
    }
}

/// Runs one statement with the cluster's own `psql` as `postgres` over the socket.
async fn psql(cluster: &LocalCluster, sql: &str) -> Result<String, Box<dyn Error + Send + Sync>> {
    let output = tokio::process::Command::new(cluster.bin_dir().join("psql"))
        .args([
            "-X",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-U",
            "postgres",
            "-d",
            "postgres",
        ])
        .arg("-h")
        .arg(cluster.socket_dir())
        .arg("-p")
        .arg(cluster.port().to_string())
        .arg("-c")
        .arg(sql)
        .env_remove("PGHOST")
        .env_remove("PGPORT")
        .env_remove("PGUSER")
        .env_remove("PGDATABASE")
        .output()
        .await?;
    if !output.status.success() {
        return Err(format!(
            "psql failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    Ok(String::from_utf8(output.stdout)?.trim().to_owned())
}

/// Connects the way the store crate does: sqlx with the URL from `superuser_url`.
async fn sqlx_select_1(cluster: &LocalCluster) -> Result<i32, Box<dyn Error + Send + Sync>> {
    let mut conn = sqlx::PgConnection::connect(&cluster.superuser_url("postgres")).await?;
    let one: i32 = sqlx::query_scalar("select 1").fetch_one(&mut conn).await?;
    conn.close().await?;
    Ok(one)
}

/// The session id of a process, from /proc/<pid>/stat.
fn session_of(pid: &str) -> Result<String, Box<dyn Error + Send + Sync>> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let (_, rest) = stat.rsplit_once(')').ok_or("malformed stat")?;
    // state ppid pgrp session
    let session = rest.split_whitespace().nth(3).ok_or("malformed stat")?;
    Ok(session.to_owned())
}

fn postmaster_pid_file(cluster: &LocalCluster) -> PathBuf {
    cluster.data_dir().join("postmaster.pid")
}

/// Writes a postmaster.pid as the cluster's owner would have left it.
fn plant_pid_file(cluster: &LocalCluster, text: &str) -> TestResult {
    let path = postmaster_pid_file(cluster);
    fs::write(&path, text)?;
    let owner = fs::metadata(cluster.data_dir())?;
    std::os::unix::fs::chown(&path, Some(owner.uid()), Some(owner.gid()))?;
    Ok(())
}

#[tokio::test]
async fn provisions_reuses_stops_and_recovers_a_cluster() -> TestResult {
    let base = scratch_dir("fresh")?;
    let opts = ephemeral(base.join("pg"));

    let cluster = LocalCluster::start(opts.clone()).await?;
    let result = lifecycle(&base, opts, &cluster).await;
    // Leave nothing running behind, even when an assertion failed.
    if let Err(e) = stop_whatever_runs(&cluster).await {
        eprintln!("cleanup: {e}");
    }
    result?;
    fs::remove_dir_all(&base)?;
    Ok(())
}

/// Stops whatever server runs in the cluster's data directory, started by us or not.
async fn stop_whatever_runs(cluster: &LocalCluster) -> TestResult {
    if !cluster.is_running() {
        return Ok(());
    }
    let mut cmd = tokio::process::Command::new(cluster.bin_dir().join("pg_ctl"));
    cmd.arg("-D")
        .arg(cluster.data_dir())
        .args(["-m", "immediate", "-w", "stop"]);
    let owner = fs::metadata(cluster.data_dir())?;
    cmd.uid(owner.uid()).gid(owner.gid()).current_dir("/");
    let status = cmd.status().await?;
    if !status.success() {
        return Err(format!("pg_ctl stop: {status}").into());
    }
    Ok(())
}

async fn lifecycle(base: &Path, opts: ClusterOptions, cluster: &LocalCluster) -> TestResult {
    assert!(cluster.started_by_us());
    assert!(cluster.is_running());
    assert!(cluster.data_dir().join("PG_VERSION").is_file());
    // Next to the cluster, unless that path is too long for a Unix socket (a deep checkout).
    let beside = base.join("pg.run");
    if beside.join(".s.PGSQL.5432").as_os_str().len() <= 100 {
        assert_eq!(cluster.socket_dir(), beside);
    } else {
        assert!(
            cluster.socket_dir().starts_with("/tmp"),
            "{:?}",
            cluster.socket_dir()
        );
    }

    // The socket exists, in a private directory.
    let socket = cluster.socket_dir().join(".s.PGSQL.5432");
    assert!(fs::symlink_metadata(&socket)?.file_type().is_socket());
    let socket_dir_mode = fs::metadata(cluster.socket_dir())?.permissions().mode() & 0o777;
    assert_eq!(socket_dir_mode, 0o700);

    // psql and sqlx can both use it, and the managed settings are in effect.
    assert_eq!(psql(cluster, "select 1").await?, "1");
    assert_eq!(sqlx_select_1(cluster).await?, 1);
    assert_eq!(psql(cluster, "show listen_addresses").await?, "");
    assert_eq!(psql(cluster, "show max_connections").await?, "20");
    assert_eq!(psql(cluster, "show fsync").await?, "off");
    assert_eq!(psql(cluster, "select current_user").await?, "postgres");

    // The postmaster runs in a session of its own (survives us, does not get our Ctrl-C).
    let pid_text = fs::read_to_string(postmaster_pid_file(cluster))?;
    let postmaster = pid_text
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned();
    assert_ne!(session_of(&postmaster)?, session_of("self")?);

    // A second start finds the running server and reuses it; its stop() leaves it alone.
    let again = LocalCluster::start(opts.clone()).await?;
    assert!(!again.started_by_us());
    assert_eq!(again.socket_dir(), cluster.socket_dir());
    assert_eq!(again.superuser_url("x"), cluster.superuser_url("x"));
    again.stop().await?;
    assert!(cluster.is_running());
    assert_eq!(psql(&again, "select 1").await?, "1");

    // Stopping the one we started really stops it, and is idempotent.
    cluster.stop().await?;
    assert!(!cluster.is_running());
    assert!(!socket.exists());
    assert!(psql(cluster, "select 1").await.is_err());
    cluster.stop().await?;

    // A postmaster.pid left behind by a killed server (the process is gone) does not block a
    // restart.
    plant_pid_file(cluster, &pid_text)?;
    let restarted = LocalCluster::start(opts.clone()).await?;
    assert!(restarted.started_by_us());
    assert_eq!(psql(&restarted, "select 1").await?, "1");
    restarted.stop().await?;
    assert!(!restarted.is_running());

    // Same with a pid that surely no longer exists (a child we already reaped): this is the
    // case PostgreSQL itself cleans up.
    let mut child = tokio::process::Command::new("true").spawn()?;
    let dead_pid = child.id().ok_or("no pid")?;
    child.wait().await?;
    plant_pid_file(
        cluster,
        &pid_text.replacen(&postmaster, &dead_pid.to_string(), 1),
    )?;
    let restarted = LocalCluster::start(opts.clone()).await?;
    assert!(restarted.started_by_us());
    assert_eq!(psql(&restarted, "select 1").await?, "1");
    restarted.stop().await?;

    // Nor does one whose pid now belongs to an unrelated live process (here: this test).
    let recycled = pid_text.replacen(&postmaster, &std::process::id().to_string(), 1);
    plant_pid_file(cluster, &recycled)?;
    let restarted = LocalCluster::start(opts).await?;
    assert!(restarted.started_by_us());
    assert_eq!(psql(&restarted, "select 1").await?, "1");
    restarted.stop().await?;
    assert!(!restarted.is_running());
    Ok(())
}

#[tokio::test]
async fn long_data_dir_paths_get_a_short_socket_dir() -> TestResult {
    let base = scratch_dir("long")?;
    let data_dir = base
        .join("a-rather-long-directory-name-to-push-the-socket-path")
        .join("beyond-the-unix-socket-limit-of-107-bytes")
        .join("pg");
    let cluster = LocalCluster::start(ephemeral(data_dir)).await?;
    let socket_dir = cluster.socket_dir().to_path_buf();
    let name = socket_dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_owned();
    let result = async {
        assert_eq!(socket_dir.parent(), Some(Path::new("/tmp")));
        assert!(name.starts_with("portcullis-"), "{name}");
        assert_eq!(name.len(), "portcullis-".len() + 8);
        assert!(name["portcullis-".len()..]
            .chars()
            .all(|c| c.is_ascii_hexdigit()));
        let md = fs::symlink_metadata(&socket_dir)?;
        assert!(md.is_dir());
        assert_eq!(md.permissions().mode() & 0o777, 0o700);
        assert_eq!(md.uid(), fs::metadata(cluster.data_dir())?.uid());
        assert_eq!(psql(&cluster, "select 1").await?, "1");
        assert_eq!(sqlx_select_1(&cluster).await?, 1);
        Ok::<(), Box<dyn Error + Send + Sync>>(())
    }
    .await;
    cluster.stop().await?;
    result?;
    fs::remove_dir_all(&socket_dir)?;
    fs::remove_dir_all(&base)?;
    Ok(())
}

#[tokio::test]
async fn a_bogus_bin_dir_gives_one_actionable_message() -> TestResult {
    let bogus = Path::new("/nonexistent/portcullis/pg/bin");
    let err = find_server_binaries(Some(bogus))
        .err()
        .ok_or("found binaries in a bogus dir")?;
    assert!(matches!(err, ProvisionError::BinariesNotFound { .. }));
    let message = err.to_string();
    assert!(message.contains("initdb, pg_ctl"), "{message}");
    assert!(
        message.contains("/nonexistent/portcullis/pg/bin"),
        "{message}"
    );
    assert!(message.contains("apt-get install postgresql"), "{message}");
    assert!(message.contains("PORTCULLIS_DATABASE_URL"), "{message}");
    assert!(!message.contains('\n'), "{message}");

    // start() fails the same way, before creating anything.
    let base = scratch_dir("bogus")?;
    let opts = ClusterOptions {
        bin_dir: Some(bogus.to_path_buf()),
        ..ephemeral(base.join("pg"))
    };
    let err = LocalCluster::start(opts)
        .await
        .err()
        .ok_or("started without binaries")?;
    assert!(
        matches!(err, ProvisionError::BinariesNotFound { .. }),
        "{err}"
    );
    assert!(!base.exists());
    Ok(())
}

#[tokio::test]
async fn as_root_an_unreachable_data_dir_is_named_in_the_error() -> TestResult {
    // Only root switches to `postgres`; an unprivileged user owns whatever it creates.
    if fs::metadata("/proc/self")?.uid() != 0 {
        return Ok(());
    }
    let base = scratch_dir("unreachable")?;
    let private = base.join("private");
    fs::create_dir_all(&private)?;
    fs::set_permissions(&private, fs::Permissions::from_mode(0o700))?;
    let err = LocalCluster::start(ephemeral(private.join("pg")))
        .await
        .err()
        .ok_or("started a cluster postgres cannot reach")?;
    let message = err.to_string();
    fs::remove_dir_all(&base)?;
    assert!(
        matches!(&err, ProvisionError::NotTraversable { blocker, .. } if *blocker == private),
        "{message}"
    );
    assert!(message.contains(&*private.to_string_lossy()), "{message}");
    assert!(message.contains("`postgres`"), "{message}");
    Ok(())
}

#[test]
fn discovery_finds_this_machines_server_binaries() -> TestResult {
    let dir = find_server_binaries(None)?;
    assert!(dir.join("initdb").is_file());
    assert!(dir.join("pg_ctl").is_file());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_share_one_test_cluster() -> TestResult {
    init_logging();
    let first = tokio::spawn(shared_test_cluster());
    let second = tokio::spawn(shared_test_cluster());
    let (first, second) = (first.await??, second.await??);
    assert_eq!(first.socket_dir(), second.socket_dir());
    assert_eq!(first.data_dir(), second.data_dir());
    assert!(first
        .data_dir()
        .starts_with(portcullis_provision::test_root()?.join("portcullis-test-pg")));
    assert_eq!(psql(&first, "select 1").await?, "1");
    assert_eq!(sqlx_select_1(&second).await?, 1);
    assert_eq!(psql(&second, "show max_connections").await?, "300");
    assert_eq!(psql(&second, "show synchronous_commit").await?, "off");

    // Tests never stop the shared cluster.
    first.stop().await?;
    second.stop().await?;
    assert!(first.is_running());
    assert_eq!(psql(&first, "select 1").await?, "1");
    Ok(())
}

/// Issue 12, item 2: as root, a data directory inside a private (0700) directory, like a clone
/// under /root or a `mktemp -d`, gets its cluster in the shared fallback location instead,
/// which `postgres` can reach; the same data directory finds the same cluster again, and a
/// fallback directory recorded for another data directory is refused, not shared.
#[tokio::test]
async fn a_data_dir_postgres_cannot_reach_gets_its_cluster_where_it_can() -> TestResult {
    if euid() != 0 {
        eprintln!("SKIPPED: needs root (as another user PostgreSQL runs as that user)");
        return Ok(());
    }
    let base = scratch_dir("private")?;
    let private = base.join("home");
    fs::DirBuilder::new().recursive(true).create(&private)?;
    fs::set_permissions(&private, fs::Permissions::from_mode(0o700))?;
    let data_dir = private.join("clone").join(".portcullis");
    fs::create_dir_all(&data_dir)?;
    let shared = base.join("shared");
    let (cluster_dir, moved) = portcullis_provision::cluster_location_under(&data_dir, &shared)?;
    assert!(moved);
    assert!(
        cluster_dir.starts_with(&shared),
        "{}",
        cluster_dir.display()
    );
    let again = portcullis_provision::cluster_location_under(&data_dir, &shared)?;
    assert_eq!(again, (cluster_dir.clone(), true));
    let cluster = LocalCluster::start(ephemeral(cluster_dir.clone())).await?;
    let result = sqlx_select_1(&cluster).await;
    stop_whatever_runs(&cluster).await?;
    assert_eq!(result?, 1);

    // Reachable: the cluster stays in the data directory.
    let open = base.join("open").join(".portcullis");
    fs::create_dir_all(&open)?;
    assert_eq!(
        portcullis_provision::cluster_location_under(&open, &shared)?,
        (open.join("postgres"), false)
    );

    // A fallback directory that belongs to another data directory.
    let owner_file = cluster_dir.parent().ok_or("no parent")?.join("data-dir");
    fs::write(&owner_file, "/somewhere/else")?;
    let err = portcullis_provision::cluster_location_under(&data_dir, &shared).unwrap_err();
    assert!(
        err.to_string()
            .contains("belongs to the data directory /somewhere/else"),
        "{err}"
    );
    Ok(())
}

/// The effective uid, as the owner of this process's /proc entry.
fn euid() -> u32 {
    fs::metadata("/proc/self").map_or(u32::MAX, |m| m.uid())
}
