//! Running the server binaries: one command to completion with its output captured, and the
//! tail of the server log for error messages.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;
use std::process::{Output, Stdio};

use tracing::debug;

use crate::ProvisionError;

const LOG_TAIL_LINES: usize = 20;

/// The last `LOG_TAIL_LINES` lines of `path`, preferring what was written after byte `since`
/// (the current attempt) and reading at most the last 64 KiB.
pub(crate) fn log_tail(path: &Path, since: u64) -> String {
    let read = || -> io::Result<String> {
        let mut file = File::open(path)?;
        let len = file.metadata()?.len();
        let start = if since < len { since } else { 0 };
        file.seek(SeekFrom::Start(start.max(len.saturating_sub(64 * 1024))))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok(last_lines(&String::from_utf8_lossy(&bytes), LOG_TAIL_LINES))
    };
    match read() {
        Ok(tail) if tail.trim().is_empty() => "(the log is empty)".to_owned(),
        Ok(tail) => tail,
        Err(e) => format!("(could not read it: {e})"),
    }
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.trim_end().lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn output_text(output: &Output) -> String {
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    last_lines(&text, LOG_TAIL_LINES)
}

fn describe_command(cmd: &tokio::process::Command) -> String {
    let std_cmd = cmd.as_std();
    let mut text = std_cmd.get_program().to_string_lossy().into_owned();
    for arg in std_cmd.get_args() {
        text.push(' ');
        text.push_str(&arg.to_string_lossy());
    }
    text
}

/// Runs `cmd` to completion, capturing its output; a non-zero exit is an error.
pub(crate) async fn run(mut cmd: tokio::process::Command) -> Result<Output, ProvisionError> {
    let command = describe_command(&cmd);
    debug!(%command, "running");
    let output = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .await
        .map_err(|e| ProvisionError::CommandFailed {
            command: command.clone(),
            status: format!("could not run it: {e}"),
            output: String::new(),
        })?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(ProvisionError::CommandFailed {
            command,
            status: output.status.to_string(),
            output: output_text(&output),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_lines_keeps_the_end() {
        assert_eq!(last_lines("a\nb\nc\n", 2), "b\nc");
        assert_eq!(last_lines("a", 5), "a");
        assert_eq!(last_lines("", 5), "");
    }
}
