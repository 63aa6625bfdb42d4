//! The few libc calls std does not offer (at the workspace's minimum Rust version). Each is a
//! thin, narrowly scoped wrapper; nothing else in the crate uses `unsafe`.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// The effective user id of this process.
#[allow(unsafe_code)]
pub(crate) fn effective_uid() -> u32 {
    // SAFETY: geteuid(2) takes no arguments, has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// The effective group id of this process.
#[allow(unsafe_code)]
pub(crate) fn effective_gid() -> u32 {
    // SAFETY: getegid(2) takes no arguments, has no preconditions and cannot fail.
    unsafe { libc::getegid() }
}

/// Whether a process with this pid exists (it may belong to another user).
pub(crate) fn process_exists(pid: i32) -> bool {
    if pid <= 0 {
        // 0 and negative values address process groups, never a single process.
        return false;
    }
    #[allow(unsafe_code)]
    // SAFETY: kill(2) with signal 0 sends nothing; it only checks that the target exists and
    // whether we may signal it. pid > 0, so exactly one process is addressed.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Takes an exclusive `flock(2)` lock on `file`. With `wait == false` this fails with
/// `ErrorKind::WouldBlock` instead of waiting. The lock is released when the file is closed.
pub(crate) fn lock_exclusive(file: &File, wait: bool) -> io::Result<()> {
    let op = if wait {
        libc::LOCK_EX
    } else {
        libc::LOCK_EX | libc::LOCK_NB
    };
    loop {
        #[allow(unsafe_code)]
        // SAFETY: the descriptor comes from `file`, which is borrowed (so open) for the whole
        // call; flock(2) does not touch memory we own.
        let rc = unsafe { libc::flock(file.as_raw_fd(), op) };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}
