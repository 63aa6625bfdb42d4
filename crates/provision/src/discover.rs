//! Finding the PostgreSQL server binaries (`initdb`, `pg_ctl`, `postgres`, ...).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::ProvisionError;

/// Where Debian/Ubuntu install one directory per major version: `<this>/<major>/bin`.
const DEBIAN_VERSIONED_ROOT: &str = "/usr/lib/postgresql";
/// Where a PostgreSQL built from source installs by default.
const SOURCE_BUILD_BIN: &str = "/usr/local/pgsql/bin";

/// Finds a directory holding the PostgreSQL server binaries.
///
/// With `explicit`, only that directory is considered (a configured path that is wrong is an
/// error, not a hint). Otherwise, in order: `pg_config --bindir`, the highest major version
/// under `/usr/lib/postgresql/*/bin`, `/usr/local/pgsql/bin`, then the directories on `PATH`.
/// A directory is accepted only if it contains both `initdb` and `pg_ctl` (on Debian,
/// `pg_config --bindir` says `/usr/bin`, which has neither).
pub fn find_server_binaries(explicit: Option<&Path>) -> Result<PathBuf, ProvisionError> {
    find_server_binaries_preferring(explicit, None)
}

/// Like [`find_server_binaries`], but when `prefer_major` is given and Debian-style versioned
/// binaries of exactly that major version are installed, they win (an existing cluster can only
/// be run by its own major version, even after a newer one was installed alongside).
pub(crate) fn find_server_binaries_preferring(
    explicit: Option<&Path>,
    prefer_major: Option<&str>,
) -> Result<PathBuf, ProvisionError> {
    if let Some(dir) = explicit {
        return if is_server_bin_dir(dir) {
            Ok(dir.to_path_buf())
        } else {
            Err(ProvisionError::BinariesNotFound {
                searched: vec![format!("{} (the configured bin dir)", dir.display())],
            })
        };
    }

    let versioned = debian_versioned_bin_dirs();
    if let Some(major) = prefer_major {
        if let Some((_, dir)) = versioned.iter().find(|(v, _)| v == major) {
            return Ok(dir.clone());
        }
    }

    let mut searched = Vec::new();
    match pg_config_bindir() {
        Some(dir) if is_server_bin_dir(&dir) => return Ok(dir),
        Some(dir) => searched.push(format!("{} (from `pg_config --bindir`)", dir.display())),
        None => searched.push("`pg_config --bindir` (no usable pg_config on PATH)".to_owned()),
    }

    if let Some((_, dir)) = versioned.first() {
        return Ok(dir.clone());
    }
    searched.push(format!("{DEBIAN_VERSIONED_ROOT}/*/bin"));

    let source_build = Path::new(SOURCE_BUILD_BIN);
    if is_server_bin_dir(source_build) {
        return Ok(source_build.to_path_buf());
    }
    searched.push(SOURCE_BUILD_BIN.to_owned());

    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.is_absolute() && is_server_bin_dir(&dir) {
                return Ok(dir);
            }
        }
    }
    searched.push("the directories on PATH".to_owned());

    Err(ProvisionError::BinariesNotFound { searched })
}

/// Whether `dir` holds executable `initdb` and `pg_ctl`.
pub(crate) fn is_server_bin_dir(dir: &Path) -> bool {
    ["initdb", "pg_ctl"]
        .iter()
        .all(|name| is_executable_file(&dir.join(name)))
}

fn is_executable_file(path: &Path) -> bool {
    std::fs::metadata(path)
        .map(|md| md.is_file() && md.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

fn pg_config_bindir() -> Option<PathBuf> {
    let output = Command::new("pg_config")
        .arg("--bindir")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8(output.stdout).ok()?;
    let dir = text.trim();
    (!dir.is_empty()).then(|| PathBuf::from(dir))
}

/// `(version directory name, bin dir)` for every usable `/usr/lib/postgresql/<v>/bin`, highest
/// version first.
fn debian_versioned_bin_dirs() -> Vec<(String, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(DEBIAN_VERSIONED_ROOT) else {
        return Vec::new();
    };
    let mut found: Vec<(Vec<u32>, String, PathBuf)> = entries
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let key = version_key(&name)?;
            let bin = entry.path().join("bin");
            is_server_bin_dir(&bin).then_some((key, name, bin))
        })
        .collect();
    found.sort_by(|a, b| b.0.cmp(&a.0));
    found
        .into_iter()
        .map(|(_, name, bin)| (name, bin))
        .collect()
}

/// "15" -> [15], "9.6" -> [9, 6]; anything else is not a version directory.
fn version_key(name: &str) -> Option<Vec<u32>> {
    name.split('.').map(|part| part.parse().ok()).collect()
}

/// Extracts "15.4" from `postgres (PostgreSQL) 15.4 (Debian 15.4-1)`.
pub(crate) fn parse_version_output(output: &str) -> Option<String> {
    let line = output.lines().next()?;
    let rest = line.split_once("(PostgreSQL)")?.1.trim();
    let version = rest.split_whitespace().next()?;
    (!version.is_empty()).then(|| version.to_owned())
}

/// The major version as PostgreSQL writes it into `PG_VERSION`: "15" for 15.4, "9.6" for 9.6.24.
pub(crate) fn major_of(version: &str) -> String {
    // Strip suffixes such as "16beta1" / "17rc1" from the first component.
    let mut parts = version.split('.');
    let first: String = parts
        .next()
        .unwrap_or_default()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    match first.parse::<u32>() {
        Ok(n) if n < 10 => match parts.next() {
            Some(minor) => format!("{first}.{minor}"),
            None => first,
        },
        _ => first,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_version_output() {
        assert_eq!(
            parse_version_output("postgres (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)\n")
                .as_deref(),
            Some("15.20")
        );
        assert_eq!(
            parse_version_output("postgres (PostgreSQL) 17beta1").as_deref(),
            Some("17beta1")
        );
        assert_eq!(parse_version_output("something else"), None);
    }

    #[test]
    fn majors_match_pg_version_files() {
        assert_eq!(major_of("15.20"), "15");
        assert_eq!(major_of("17beta1"), "17");
        assert_eq!(major_of("9.6.24"), "9.6");
    }

    #[test]
    fn version_directories_sort_numerically() {
        let mut keys = vec![
            version_key("9.6"),
            version_key("15"),
            version_key("10"),
            version_key("x"),
        ];
        keys.sort();
        assert_eq!(
            keys,
            vec![None, Some(vec![9, 6]), Some(vec![10]), Some(vec![15])]
        );
    }

    #[test]
    fn explicit_dir_is_not_second_guessed() {
        let err = find_server_binaries(Some(Path::new("/nonexistent/pg/bin")))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("/nonexistent/pg/bin"), "{err}");
    }
}
