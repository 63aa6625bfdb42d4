//! Which OS user runs PostgreSQL, and the file-system chores that follow from it (ownership,
//! private directories, reachability).

use std::ffi::OsStr;
use std::fs::{self, DirBuilder};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::{sys, ProvisionError};

/// The unprivileged account used when we are root (PostgreSQL refuses to run as root).
pub(crate) const CLUSTER_USER: &str = "postgres";

/// The OS identity PostgreSQL's programs run under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RunAs {
    /// Display name (for messages).
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: Option<PathBuf>,
    /// True when we are root and child processes must switch to `uid`/`gid`.
    pub switch: bool,
}

impl RunAs {
    /// The current user if unprivileged; the `postgres` system user if we are root.
    pub(crate) fn resolve() -> Result<RunAs, ProvisionError> {
        let euid = sys::effective_uid();
        if euid != 0 {
            return Ok(RunAs {
                name: std::env::var("USER").unwrap_or_else(|_| format!("uid {euid}")),
                uid: euid,
                gid: sys::effective_gid(),
                home: None,
                switch: false,
            });
        }
        match lookup_user(CLUSTER_USER)? {
            Some(entry) if entry.uid != 0 => Ok(RunAs {
                name: CLUSTER_USER.to_owned(),
                uid: entry.uid,
                gid: entry.gid,
                home: entry.home,
                switch: true,
            }),
            _ => Err(ProvisionError::NoUnprivilegedUser),
        }
    }

    /// Prepares a command for a PostgreSQL program: runs as this user, from `/`, with no
    /// inherited libpq/server environment (`PG*`), stdin closed.
    pub(crate) fn command(&self, program: &Path) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(program);
        cmd.current_dir("/").stdin(Stdio::null());
        for (key, _) in std::env::vars_os() {
            if key.as_bytes().starts_with(b"PG") {
                cmd.env_remove(key);
            }
        }
        if self.switch {
            // std drops supplementary groups when switching uid as root.
            cmd.uid(self.uid).gid(self.gid);
            cmd.env("USER", &self.name).env("LOGNAME", &self.name);
            match &self.home {
                Some(home) => cmd.env("HOME", home),
                None => cmd.env_remove("HOME"),
            };
        }
        cmd
    }

    /// Hands `path` (which we just created or validated) to this user. No-op unless switching.
    pub(crate) fn give(&self, path: &Path) -> Result<(), ProvisionError> {
        if !self.switch {
            return Ok(());
        }
        std::os::unix::fs::lchown(path, Some(self.uid), Some(self.gid)).map_err(|e| {
            ProvisionError::io(
                format!("give {} to user `{}`", path.display(), self.name),
                e,
            )
        })
    }

    /// Checks that every existing ancestor of `path` (not `path` itself) can be searched by this
    /// user, judging by the permission bits (ACLs are not consulted).
    pub(crate) fn check_reachable(&self, path: &Path) -> Result<(), ProvisionError> {
        if !self.switch {
            // We are that user; anything unreachable fails loudly when we create it.
            return Ok(());
        }
        let mut ancestors: Vec<&Path> = path.ancestors().skip(1).collect();
        ancestors.reverse();
        for dir in ancestors {
            let Ok(md) = fs::metadata(dir) else { continue };
            let mode = md.permissions().mode();
            let bit = if md.uid() == self.uid {
                0o100
            } else if md.gid() == self.gid {
                0o010
            } else {
                0o001
            };
            if mode & bit == 0 {
                return Err(ProvisionError::NotTraversable {
                    path: path.to_path_buf(),
                    user: self.name.clone(),
                    blocker: dir.to_path_buf(),
                    mode: mode & 0o7777,
                    owner: md.uid(),
                });
            }
        }
        Ok(())
    }

    /// Makes sure `dir` is a real directory (not a symlink) owned by this user with mode 0700,
    /// creating it if needed. Safe to use in world-writable places such as `/tmp`: a directory
    /// that someone else planted there is refused, never adopted.
    pub(crate) fn ensure_private_dir(&self, dir: &Path) -> Result<(), ProvisionError> {
        match DirBuilder::new().mode(0o700).create(dir) {
            Ok(()) => self.give(dir)?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(ProvisionError::io(
                    format!("create directory {}", dir.display()),
                    e,
                ))
            }
        }
        let md = fs::symlink_metadata(dir)
            .map_err(|e| ProvisionError::io(format!("inspect {}", dir.display()), e))?;
        if !md.file_type().is_dir() {
            return Err(ProvisionError::bad_path(
                dir,
                "exists but is not a directory (symbolic links are not followed here); remove it",
            ));
        }
        if md.uid() != self.uid {
            // Only a root-owned directory may be adopted (only root could have made it).
            if self.switch && md.uid() == 0 {
                self.give(dir)?;
            } else {
                return Err(ProvisionError::bad_path(
                    dir,
                    format!(
                        "is owned by uid {}, but PostgreSQL runs as `{}` (uid {}); remove it or \
                         fix its owner",
                        md.uid(),
                        self.name,
                        self.uid
                    ),
                ));
            }
        }
        if md.permissions().mode() & 0o7777 != 0o700 {
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(|e| {
                ProvisionError::io(format!("make {} private (mode 0700)", dir.display()), e)
            })?;
        }
        Ok(())
    }
}

/// A `passwd` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PasswdEntry {
    pub uid: u32,
    pub gid: u32,
    pub home: Option<PathBuf>,
}

/// Looks a user up with `getent passwd` (which honours NSS), falling back to `/etc/passwd`.
fn lookup_user(name: &str) -> Result<Option<PasswdEntry>, ProvisionError> {
    match std::process::Command::new("getent")
        .args(["passwd", name])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
    {
        Ok(output) if output.status.success() => {
            return Ok(parse_passwd(&String::from_utf8_lossy(&output.stdout), name))
        }
        // Exit status 2: no such user.
        Ok(output) if output.status.code() == Some(2) => return Ok(None),
        _ => {}
    }
    match fs::read("/etc/passwd") {
        Ok(bytes) => Ok(parse_passwd(&String::from_utf8_lossy(&bytes), name)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ProvisionError::io("read /etc/passwd", e)),
    }
}

/// Finds `name` in passwd(5)-formatted text.
pub(crate) fn parse_passwd(text: &str, name: &str) -> Option<PasswdEntry> {
    text.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.len() < 7 || fields[0] != name {
            return None;
        }
        let home = fields[5];
        Some(PasswdEntry {
            uid: fields[2].parse().ok()?,
            gid: fields[3].parse().ok()?,
            home: (!home.is_empty()).then(|| PathBuf::from(OsStr::new(home))),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_passwd_lines() {
        let text = "root:x:0:0:root:/root:/bin/bash\n\
                    postgres:x:101:104:PostgreSQL administrator,,,:/var/lib/postgresql:/bin/bash\n";
        assert_eq!(
            parse_passwd(text, "postgres"),
            Some(PasswdEntry {
                uid: 101,
                gid: 104,
                home: Some(PathBuf::from("/var/lib/postgresql")),
            })
        );
        assert_eq!(parse_passwd(text, "post"), None);
        assert_eq!(parse_passwd("postgres:x:oops:1:::\n", "postgres"), None);
    }
}
