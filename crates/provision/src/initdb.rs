//! Creating a cluster: `initdb` into a scratch directory renamed into place, and the checks on
//! a cluster that already exists (major version, owner).

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use tracing::info;

use crate::command::run;
use crate::conf::append_include;
use crate::start::Starter;
use crate::{discover, ProvisionError, SUPERUSER};

/// Contents of `PG_VERSION` (the major version that created the cluster), if there is one.
pub(crate) fn read_pg_version(data_dir: &Path) -> Result<Option<String>, ProvisionError> {
    match fs::read_to_string(data_dir.join("PG_VERSION")) {
        Ok(text) => Ok(Some(text.trim().to_owned())),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(ProvisionError::io(
            format!("read {}", data_dir.join("PG_VERSION").display()),
            e,
        )),
    }
}

impl Starter {
    pub(crate) fn check_existing_cluster(&self, major: &str) -> Result<(), ProvisionError> {
        let data_dir = &self.layout.data_dir;
        if discover::major_of(&self.version) != major {
            return Err(ProvisionError::IncompatibleVersion {
                data_dir: data_dir.clone(),
                cluster_major: major.to_owned(),
                bin_dir: self.bin_dir.clone(),
                binaries_version: self.version.clone(),
            });
        }
        let md = fs::metadata(data_dir)
            .map_err(|e| ProvisionError::io(format!("inspect {}", data_dir.display()), e))?;
        if md.uid() != self.run_as.uid {
            return Err(ProvisionError::bad_path(
                data_dir,
                format!(
                    "the PostgreSQL cluster here is owned by uid {}, but PostgreSQL runs as `{}` \
                     (uid {}); fix the owner (chown -R) or use another data directory",
                    md.uid(),
                    self.run_as.name,
                    self.run_as.uid
                ),
            ));
        }
        Ok(())
    }

    /// initdb, into a scratch directory renamed into place (or into an existing empty one).
    pub(crate) async fn create_cluster(&self) -> Result<(), ProvisionError> {
        let data_dir = &self.layout.data_dir;
        let exists = match fs::metadata(data_dir) {
            Ok(md) if md.is_dir() => true,
            Ok(_) => return Err(ProvisionError::bad_path(
                data_dir,
                "exists but is not a directory; point data_dir at an empty or missing directory",
            )),
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => {
                return Err(ProvisionError::io(
                    format!("inspect {}", data_dir.display()),
                    e,
                ))
            }
        };
        if exists {
            let mut entries = fs::read_dir(data_dir)
                .map_err(|e| ProvisionError::io(format!("list {}", data_dir.display()), e))?;
            if entries.next().is_some() {
                return Err(ProvisionError::bad_path(
                    data_dir,
                    "is not empty but holds no PostgreSQL cluster (no PG_VERSION); point data_dir \
                     at an empty or missing directory",
                ));
            }
            if self.run_as.switch {
                let md = fs::metadata(data_dir).map_err(|e| {
                    ProvisionError::io(format!("inspect {}", data_dir.display()), e)
                })?;
                if md.uid() == 0 {
                    self.run_as.give(data_dir)?;
                }
            }
            self.initdb(data_dir).await?;
        } else {
            let scratch = &self.layout.initdb_dir;
            if fs::symlink_metadata(scratch).is_ok() {
                // Left behind by an interrupted initdb; we hold the lock, so nobody uses it.
                fs::remove_dir_all(scratch).map_err(|e| {
                    ProvisionError::io(format!("remove leftover {}", scratch.display()), e)
                })?;
            }
            self.run_as.ensure_private_dir(scratch)?;
            self.initdb(scratch).await?;
            fs::rename(scratch, data_dir).map_err(|e| {
                ProvisionError::io(
                    format!("move {} to {}", scratch.display(), data_dir.display()),
                    e,
                )
            })?;
            if !self.opts.ephemeral {
                if let Some(parent) = data_dir.parent() {
                    File::open(parent)
                        .and_then(|dir| dir.sync_all())
                        .map_err(|e| ProvisionError::io(format!("sync {}", parent.display()), e))?;
                }
            }
        }
        info!(
            data_dir = %data_dir.display(),
            "initialized PostgreSQL cluster at {}",
            data_dir.display()
        );
        Ok(())
    }

    async fn initdb(&self, target: &Path) -> Result<(), ProvisionError> {
        info!(
            data_dir = %self.layout.data_dir.display(),
            version = %self.version,
            "creating a PostgreSQL {} cluster at {} with initdb (this takes a few seconds)",
            self.version,
            self.layout.data_dir.display()
        );
        let mut cmd = self.run_as.command(&self.bin_dir.join("initdb"));
        cmd.arg("-D").arg(target).args([
            "-U",
            SUPERUSER,
            "-E",
            "UTF8",
            "--no-locale",
            "--auth-local=trust",
            "--auth-host=reject",
        ]);
        if self.opts.ephemeral {
            cmd.arg("--no-sync");
        }
        run(cmd).await?;
        append_include(&target.join("postgresql.conf"))
    }
}
