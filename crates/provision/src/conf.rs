//! The settings Portcullis manages: `portcullis.conf`, rewritten on every start, and the
//! include line that makes `postgresql.conf` read it.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;

use crate::{ClusterOptions, ProvisionError, DEFAULT_PORT};

/// Settings file inside the data directory that Portcullis rewrites on every start.
pub(crate) const MANAGED_CONF: &str = "portcullis.conf";
const INCLUDE_LINE: &str = "include = 'portcullis.conf'";

/// Quotes a value for postgresql.conf.
fn conf_quote(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

pub(crate) fn render_managed_conf(opts: &ClusterOptions, socket_dir: &Path) -> String {
    let mut conf = format!(
        "# Managed by Portcullis (portcullis-provision): rewritten on every start, do not edit.\n\
         # Only a private Unix socket listens; TCP is off.\n\
         listen_addresses = ''\n\
         port = {DEFAULT_PORT}\n\
         unix_socket_directories = {}\n\
         unix_socket_permissions = 0700\n\
         max_connections = {}\n",
        conf_quote(&socket_dir.to_string_lossy()),
        opts.max_connections
    );
    if opts.ephemeral {
        conf.push_str(
            "# Ephemeral (test) cluster: durability traded for speed.\n\
             fsync = off\n\
             synchronous_commit = off\n\
             full_page_writes = off\n",
        );
    }
    conf
}

/// Appends the include of `portcullis.conf` (with a comment) to postgresql.conf unless present.
pub(crate) fn append_include(conf: &Path) -> Result<(), ProvisionError> {
    let text = fs::read_to_string(conf)
        .map_err(|e| ProvisionError::io(format!("read {}", conf.display()), e))?;
    if text.lines().any(|line| line.trim() == INCLUDE_LINE) {
        return Ok(());
    }
    let addition = format!(
        "{}\n# Portcullis manages this cluster: the settings in {MANAGED_CONF} (rewritten by \
         Portcullis on every start) override the ones above.\n{INCLUDE_LINE}\n",
        if text.ends_with('\n') || text.is_empty() {
            ""
        } else {
            "\n"
        }
    );
    OpenOptions::new()
        .append(true)
        .open(conf)
        .and_then(|mut file| file.write_all(addition.as_bytes()))
        .map_err(|e| ProvisionError::io(format!("append to {}", conf.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conf_values_are_quoted() {
        assert_eq!(conf_quote("/tmp/it's\\here"), "'/tmp/it''s\\\\here'");
        let conf = render_managed_conf(
            &ClusterOptions {
                ephemeral: true,
                max_connections: 300,
                ..ClusterOptions::new("/x")
            },
            Path::new("/x.run"),
        );
        assert!(conf.contains("listen_addresses = ''\n"));
        assert!(conf.contains("unix_socket_directories = '/x.run'\n"));
        assert!(conf.contains("unix_socket_permissions = 0700\n"));
        assert!(conf.contains("max_connections = 300\n"));
        assert!(conf.contains("fsync = off\n"));
        assert!(conf.starts_with("# Managed by Portcullis"));
        let durable = render_managed_conf(&ClusterOptions::new("/x"), Path::new("/x.run"));
        assert!(!durable.contains("fsync"));
    }
}
