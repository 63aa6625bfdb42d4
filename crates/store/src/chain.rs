//! What an audit entry is as stored and as hashed (crates/audit/FORMAT.md): the stored row,
//! its hashed body, and the value normalisation that makes the two agree. A leaf: the writer,
//! the sequencer, the readers and the verifier all build on it.

use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

/// An entry exactly as stored, with its chain fields: what verification and export read.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct StoredEntry {
    pub environment_id: Uuid,
    pub seq: i64,
    pub audit_id: Uuid,
    pub occurred_at: OffsetDateTime,
    pub actor_type: String,
    pub actor_id: Option<Uuid>,
    pub action: String,
    pub action_version: i16,
    pub target_type: String,
    pub target_id: Option<String>,
    pub outcome: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
    pub request_id: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub prev_hash: Vec<u8>,
    pub entry_hash: Vec<u8>,
}

/// Makes a value survive a round trip through `jsonb` unchanged, so that an entry rebuilt from
/// its stored columns hashes to what was written: PostgreSQL rewrites some floating-point
/// numbers (`1e16` comes back as `10000000000000000`) and refuses NUL characters. Floats are
/// therefore recorded as their decimal text, and NULs are removed.
pub fn jsonb_exact(value: Value) -> Value {
    match value {
        Value::Number(n) if n.is_f64() => Value::String(n.to_string()),
        Value::String(s) if s.contains('\0') => Value::String(s.replace('\0', "")),
        Value::Array(items) => Value::Array(items.into_iter().map(jsonb_exact).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (k.replace('\0', ""), jsonb_exact(v)))
                .collect(),
        ),
        other => other,
    }
}

/// The hashed content of an entry, rebuilt the same way by the writer and the verifier from
/// the stored columns (see crates/audit/FORMAT.md). Timestamps are hashed at the database's
/// microsecond precision so a stored row re-hashes to the same value.
pub fn entry_body(row: &StoredEntry) -> Value {
    serde_json::json!({
        "audit_id": row.audit_id,
        "occurred_at": rfc3339_micros(row.occurred_at),
        "actor_type": row.actor_type,
        "actor_id": row.actor_id,
        "action": row.action,
        "action_version": row.action_version,
        "target_type": row.target_type,
        "target_id": row.target_id,
        "outcome": row.outcome,
        "before": row.before,
        "after": row.after,
        "request_id": row.request_id,
        "ip": row.ip,
        "user_agent": row.user_agent,
    })
}

/// RFC 3339 in UTC with exactly six fractional digits.
pub fn rfc3339_micros(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Control L3: values that PostgreSQL would rewrite are normalised before hashing.
    #[test]
    fn l3_values_are_made_jsonb_exact() {
        let v = serde_json::json!({ "big": 1e16, "ratio": 0.5, "n": 10_000_000_000_000_000u64, "s": "a\u{0}b", "list": [1.25, "x"] });
        assert_eq!(
            jsonb_exact(v),
            serde_json::json!({ "big": "1e+16", "ratio": "0.5", "n": 10_000_000_000_000_000u64, "s": "ab", "list": ["1.25", "x"] })
        );
    }
}
