//! The summary of a report for a person (format 2, issue 11): the verdict of the verification
//! run when the report was made, what failed or was refused during the month, and the month's
//! privileged changes with the people behind them.
//!
//! Two kinds of members. `activity` and `privileged.changes` are facts of the month's entries:
//! [`Tally`](super::Tally) recomputes them and [`compare`](super::compare) checks them.
//! `environment_name`, `verdict` and `people` are what the generator saw when it made the report
//! (the names are sealed personal data, the anchors live outside the log): they are covered by
//! the signature, and a verifier checks them only for coherence.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// How many actors `activity.top_denied_actors` lists.
pub const TOP_DENIED_ACTORS: usize = 5;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Summary {
    /// The environment's name when the report was made; `null` when it could not be read
    /// (a deleted environment keeps its log).
    pub environment_name: Option<String>,
    pub verdict: LogVerdict,
    pub activity: Activity,
    pub privileged: Privileged,
    /// The identities named as actors or targets of `activity` and `privileged`, by id.
    pub people: BTreeMap<Uuid, Person>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerdictStatus {
    /// The whole log verified: chain, checkpoints, anchors, head row.
    Verified,
    /// Something did not; `anomalies` says what.
    Failed,
}

/// The verification of the whole log (`portcullis audit verify --environment`) run when the
/// report was made.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogVerdict {
    pub status: VerdictStatus,
    /// Entries in the log when it was verified.
    pub log_size: u64,
    /// Entries that passed the chain checks, from entry 1 on.
    pub verified_through: u64,
    /// Signed checkpoints that verified and matched the entries (database and anchors).
    pub checkpoints_verified: u64,
    /// The highest entry a verified checkpoint covers (0: none).
    pub covered_through: u64,
    pub anchors: AnchorPlace,
    /// Every problem found, the first first; empty exactly when `status` is `verified`.
    pub anomalies: Vec<Anomaly>,
}

/// Where the checkpoints are anchored write-once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnchorPlace {
    /// `local_directory` or `s3_object_lock`.
    pub kind: String,
    /// The directory, or `s3://bucket/prefix`.
    pub location: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Anomaly {
    /// `Changed`, `Missing`, `Reordered`, `Inserted`, `BadSignature`, `UnknownKey`,
    /// `WrongEnvironment`, `InconsistentWithCheckpoint` or `Malformed` (FORMAT.md §6).
    pub kind: String,
    /// The entry it localizes to, if any.
    pub seq: Option<u64>,
    pub detail: String,
}

/// What failed or was refused among the month's entries.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Activity {
    /// Window entries per `outcome` (`success`, `failure`, `denied`).
    pub by_outcome: BTreeMap<String, u64>,
    /// Window entries whose outcome is not `success`, per action and then outcome.
    pub not_successful: BTreeMap<String, BTreeMap<String, u64>>,
    /// Refusals the rate limit left out of the log (sum of `after.suppressed_before` over the
    /// window's `denied` entries).
    pub denials_suppressed: u64,
    /// The actors with the most `denied` entries, most first (ties: by actor type, then id),
    /// at most [`TOP_DENIED_ACTORS`].
    pub top_denied_actors: Vec<DeniedActor>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeniedActor {
    pub actor_type: String,
    pub actor_id: Option<Uuid>,
    pub denials: u64,
}

/// The month's privileged changes: the rules that pick them, and the entries picked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Privileged {
    /// An entry is a privileged change when a rule matches it. The report states its rules so
    /// that new ones (SSO and MFA policy changes, as they arrive) need no new format and every
    /// report is checked against the rules it was made with.
    pub rules: Vec<PrivilegedRule>,
    /// The matching window entries, in seq order.
    pub changes: Vec<PrivilegedChange>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivilegedRule {
    /// The entry's `action`, exactly.
    pub action: String,
    /// A further condition on the entry body, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub only_if: Option<Condition>,
}

/// The value at `pointer` (RFC 6901, into the entry body) is one of `any_of`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    pub pointer: String,
    pub any_of: Vec<Value>,
}

impl PrivilegedRule {
    fn exact(action: &str) -> PrivilegedRule {
        PrivilegedRule {
            action: action.to_owned(),
            only_if: None,
        }
    }

    pub fn matches(&self, body: &Value) -> bool {
        body.get("action").and_then(Value::as_str) == Some(self.action.as_str())
            && self.only_if.as_ref().is_none_or(|c| {
                body.pointer(&c.pointer)
                    .is_some_and(|v| c.any_of.contains(v))
            })
    }
}

/// The rules a report is made with now. Add a row to watch a new action (an SSO or MFA policy
/// change when those exist): reports made before keep being checked against their own rules.
pub fn default_rules() -> Vec<PrivilegedRule> {
    let mut rules: Vec<PrivilegedRule> = [
        "member.role_changed",
        "member.removed",
        "ownership.transferred",
        "role.created",
        "role.updated",
        "role.deleted",
        "project.grant_set",
        "keys.rotated",
        "keys.retired",
        "keys.kek_changed",
        "keys.root_rotated",
        "audit.exported",
        "subject.erased",
        "environment.deleted",
    ]
    .into_iter()
    .map(PrivilegedRule::exact)
    .collect();
    // An API token acting as an owner or admin is as privileged as the person.
    rules.push(PrivilegedRule {
        action: "token.created".into(),
        only_if: Some(Condition {
            pointer: "/after/role".into(),
            any_of: vec!["owner".into(), "admin".into()],
        }),
    });
    rules
}

/// One privileged change: the entry's own members, as logged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivilegedChange {
    pub seq: u64,
    pub occurred_at: String,
    pub action: String,
    pub outcome: String,
    pub actor_type: String,
    pub actor_id: Option<Uuid>,
    pub target_type: String,
    pub target_id: Option<String>,
    pub before: Value,
    pub after: Value,
}

impl PrivilegedChange {
    /// The change as logged in entry `seq`'s `body`.
    pub fn from_body(seq: u64, body: &Value) -> PrivilegedChange {
        let text = |k: &str| body.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        PrivilegedChange {
            seq,
            occurred_at: text("occurred_at"),
            action: text("action"),
            outcome: text("outcome"),
            actor_type: text("actor_type"),
            actor_id: uuid_at(body, "actor_id"),
            target_type: text("target_type"),
            target_id: body
                .get("target_id")
                .and_then(Value::as_str)
                .map(str::to_owned),
            before: body.get("before").cloned().unwrap_or(Value::Null),
            after: body.get("after").cloned().unwrap_or(Value::Null),
        }
    }
}

pub(super) fn uuid_at(body: &Value, key: &str) -> Option<Uuid> {
    body.get(key)
        .and_then(Value::as_str)
        .and_then(|s| Uuid::parse_str(s).ok())
}

/// A person named in the summary, as the generator could read them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Person {
    /// Display name, opened from its sealed form; `null` when it could not be.
    pub name: Option<String>,
    pub email: Option<String>,
    /// Their role in the environment when the report was made; `null` when no longer a member.
    pub role: Option<String>,
    /// Why the name is missing, when it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Streaming computation of `activity` and `privileged.changes` over window entries.
#[derive(Debug)]
pub(super) struct ActivityTally {
    rules: Vec<PrivilegedRule>,
    activity: Activity,
    denied: BTreeMap<(String, Option<Uuid>), u64>,
    changes: Vec<PrivilegedChange>,
}

impl ActivityTally {
    pub(super) fn new(rules: Vec<PrivilegedRule>) -> ActivityTally {
        ActivityTally {
            rules,
            activity: Activity::default(),
            denied: BTreeMap::new(),
            changes: vec![],
        }
    }

    pub(super) fn push(&mut self, seq: u64, action: &str, body: &Value) {
        let outcome = body.get("outcome").and_then(Value::as_str).unwrap_or("");
        *self
            .activity
            .by_outcome
            .entry(outcome.to_owned())
            .or_insert(0) += 1;
        if outcome != "success" {
            *self
                .activity
                .not_successful
                .entry(action.to_owned())
                .or_default()
                .entry(outcome.to_owned())
                .or_insert(0) += 1;
        }
        if outcome == "denied" {
            let actor_type = body.get("actor_type").and_then(Value::as_str).unwrap_or("");
            *self
                .denied
                .entry((actor_type.to_owned(), uuid_at(body, "actor_id")))
                .or_insert(0) += 1;
            let suppressed = body
                .pointer("/after/suppressed_before")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            self.activity.denials_suppressed =
                self.activity.denials_suppressed.saturating_add(suppressed);
        }
        if self.rules.iter().any(|r| r.matches(body)) {
            self.changes.push(PrivilegedChange::from_body(seq, body));
        }
    }

    pub(super) fn finish(mut self) -> (Activity, Vec<PrivilegedChange>) {
        let mut top: Vec<DeniedActor> = self
            .denied
            .into_iter()
            .map(|((actor_type, actor_id), denials)| DeniedActor {
                actor_type,
                actor_id,
                denials,
            })
            .collect();
        // Stable: the map's order (type, then id) breaks ties.
        top.sort_by_key(|a| std::cmp::Reverse(a.denials));
        top.truncate(TOP_DENIED_ACTORS);
        self.activity.top_denied_actors = top;
        self.changes.sort_by_key(|c| c.seq);
        (self.activity, self.changes)
    }
}
