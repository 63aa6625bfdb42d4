//! Reading `postmaster.pid`, the lock file a running postmaster keeps in its data directory.
//!
//! Layout (one item per line, see PostgreSQL's `pidfile.h`): pid, data directory, start time,
//! port, first Unix socket directory, first listen address, shared memory key, status
//! (`starting`, `stopping`, `ready`, `standby`). Lines after the first may be missing while the
//! postmaster is starting.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::sys;

pub(crate) const PID_FILE: &str = "postmaster.pid";

/// The parsed contents of `postmaster.pid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PidFile {
    pub pid: i32,
    pub port: Option<u16>,
    pub socket_dir: Option<PathBuf>,
    pub status: Option<String>,
}

impl PidFile {
    pub(crate) fn parse(text: &str) -> Option<PidFile> {
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        let pid: i32 = lines.first()?.parse().ok()?;
        let non_empty = |i: usize| lines.get(i).copied().filter(|s| !s.is_empty());
        Some(PidFile {
            pid,
            port: non_empty(3).and_then(|s| s.parse().ok()),
            socket_dir: non_empty(4).map(PathBuf::from),
            status: non_empty(7).map(str::to_owned),
        })
    }

    pub(crate) fn is_ready(&self) -> bool {
        self.status.as_deref() == Some("ready")
    }
}

/// What the data directory's lock file says about the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ServerState {
    /// No `postmaster.pid`.
    NotRunning,
    /// `postmaster.pid` names a process that does not exist: left behind by a crash or kill -9.
    /// PostgreSQL removes it by itself on start.
    StaleDeadPid(PidFile),
    /// `postmaster.pid` names a process that exists but provably is not a postmaster of this
    /// data directory: a zombie (an exited postmaster nobody reaped yet), this very process, or
    /// a process whose working directory is elsewhere (a container restart recycled the pid).
    /// PostgreSQL would refuse to start, so the file must be removed first.
    StaleBlockingPid(PidFile),
    /// Like `StaleBlockingPid`, but other processes still work in the data directory (server
    /// processes orphaned by a postmaster that died). Removing the lock file would bypass
    /// PostgreSQL's own check against starting beside them, so wait for them to exit.
    Orphaned(PidFile, Vec<i32>),
    /// A postmaster is (or, if unprovable, appears to be) running.
    Running(PidFile),
}

pub(crate) fn read(data_dir: &Path) -> io::Result<Option<PidFile>> {
    match std::fs::read_to_string(data_dir.join(PID_FILE)) {
        Ok(text) => Ok(PidFile::parse(&text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

pub(crate) fn server_state(data_dir: &Path) -> io::Result<ServerState> {
    let path = data_dir.join(PID_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(ServerState::NotRunning),
        Err(e) => return Err(e),
    };
    let Some(pid_file) = PidFile::parse(&text) else {
        // Being written right now (or garbage); the postmaster writes the pid line first, so
        // treat an unparsable file as a server that is starting.
        return Ok(ServerState::Running(PidFile {
            pid: 0,
            port: None,
            socket_dir: None,
            status: Some("starting".to_owned()),
        }));
    };
    if !sys::process_exists(pid_file.pid) {
        return Ok(ServerState::StaleDeadPid(pid_file));
    }
    let ours = i32::try_from(std::process::id()).is_ok_and(|me| me == pid_file.pid);
    if ours || is_zombie(pid_file.pid) || cwd_is_elsewhere(pid_file.pid, data_dir) {
        let users = processes_in(data_dir);
        return Ok(if users.is_empty() {
            ServerState::StaleBlockingPid(pid_file)
        } else {
            ServerState::Orphaned(pid_file, users)
        });
    }
    Ok(ServerState::Running(pid_file))
}

/// Live processes (other than us) whose working directory is `data_dir`: every PostgreSQL
/// server process has it. Empty where `/proc` is unavailable.
fn processes_in(data_dir: &Path) -> Vec<i32> {
    let (Ok(data), Ok(entries)) = (std::fs::metadata(data_dir), std::fs::read_dir("/proc")) else {
        return Vec::new();
    };
    let me = std::process::id();
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter_map(|pid| i32::try_from(pid).ok())
        .filter(|&pid| {
            std::fs::metadata(format!("/proc/{pid}/cwd"))
                .is_ok_and(|cwd| (cwd.dev(), cwd.ino()) == (data.dev(), data.ino()))
                && !is_zombie(pid)
        })
        .collect()
}

/// True only if `/proc` says the process has exited and awaits reaping.
fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        // "<pid> (<comm>) <state> ..."; comm may contain spaces and parentheses.
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state == "Z" || state == "X")
    })
}

/// True only if we can prove that process `pid` does not have `data_dir` as its working
/// directory (a postmaster changes into its data directory before writing `postmaster.pid`).
/// Compares device and inode, so bind mounts and symlinks cannot cause false positives.
fn cwd_is_elsewhere(pid: i32, data_dir: &Path) -> bool {
    let (Ok(cwd), Ok(data)) = (
        std::fs::metadata(format!("/proc/{pid}/cwd")),
        std::fs::metadata(data_dir),
    ) else {
        return false;
    };
    (cwd.dev(), cwd.ino()) != (data.dev(), data.ino())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_ready_pid_file() {
        let text = "4242\n/var/lib/x\n1700000000\n5432\n/tmp/portcullis-0123abcd\n\n  5432001         0\nready   \n";
        let parsed = PidFile::parse(text);
        assert_eq!(
            parsed,
            Some(PidFile {
                pid: 4242,
                port: Some(5432),
                socket_dir: Some(PathBuf::from("/tmp/portcullis-0123abcd")),
                status: Some("ready".to_owned()),
            })
        );
        assert!(parsed.is_some_and(|p| p.is_ready()));
    }

    #[test]
    fn parses_a_partial_pid_file() {
        assert_eq!(
            PidFile::parse("17\n/data\n"),
            Some(PidFile {
                pid: 17,
                port: None,
                socket_dir: None,
                status: None,
            })
        );
        assert_eq!(PidFile::parse(""), None);
    }
}
