//! Tallying a report's facts offline, from an export bundle (`verify-report --bundle`).

use serde::Deserialize;
use serde_json::Value;

use super::{rules_of, watched_sizes, Finding, Month, MonthError, ReportBody, Tally, TallyResult};
use crate::checkpoint::PublicKey;
use crate::hex;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BundleEntry {
    seq: u64,
    prev_hash: String,
    entry_hash: String,
    body: Value,
}

/// Reads an export bundle (`crate::bundle`) into a [`Tally`] for `body`: the bundle must be of
/// the report's environment and hold the log from seq 1. Returns what the entries say and the
/// keys the bundle's header lists (trust them only for want of pinned keys). Checkpoint lines
/// are skipped: the report's own checkpoints are what is checked.
pub fn tally_bundle<R: std::io::BufRead>(
    mut reader: R,
    body: &ReportBody,
) -> Result<(TallyResult, Vec<PublicKey>), Finding> {
    let month: Month = body
        .month
        .parse()
        .map_err(|e: MonthError| Finding::new("month", e.to_string()))?;
    let io = |e: std::io::Error| Finding::new("bundle", format!("cannot read: {e}"));
    let mut line = Vec::with_capacity(4096);
    if reader.read_until(b'\n', &mut line).map_err(io)? == 0 {
        return Err(Finding::new("bundle", "the file is empty"));
    }
    let (environment_id, keys) = crate::bundle::parse_header(trim_newline(&line))
        .map_err(|e| Finding::new("bundle", e.to_string()))?;
    if environment_id != body.environment_id {
        return Err(Finding::new(
            "environment_id",
            format!(
                "the report is for {} but the bundle is for {environment_id}",
                body.environment_id
            ),
        ));
    }
    let mut tally =
        Tally::new(environment_id, month, &watched_sizes(body)).with_rules(rules_of(body));
    let mut line_no = 1u64;
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).map_err(io)? == 0 {
            break;
        }
        line_no += 1;
        let text = trim_newline(&line);
        let bad = |why: String| Finding::new("bundle", format!("line {line_no}: {why}"));
        match serde_json::from_slice::<BundleEntry>(text) {
            Ok(e) => {
                let (Some(prev), Some(hash)) = (
                    hex::decode::<32>(&e.prev_hash),
                    hex::decode::<32>(&e.entry_hash),
                ) else {
                    return Err(bad("a hash is not 64 lowercase hex digits".into()));
                };
                tally.push(e.seq, &prev, &hash, &e.body);
            }
            Err(entry_err) => {
                let is_checkpoint = matches!(
                    serde_json::from_slice::<Value>(text),
                    Ok(Value::Object(ref o)) if o.get("checkpoint").is_some_and(Value::is_string)
                        && o.keys().all(|k| k == "checkpoint" || k == "sources")
                );
                if !is_checkpoint {
                    return Err(bad(format!(
                        "neither an entry nor a checkpoint ({entry_err})"
                    )));
                }
            }
        }
    }
    Ok((tally.finish(), keys))
}

fn trim_newline(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\n").unwrap_or(line)
}
