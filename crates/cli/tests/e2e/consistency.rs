//! `audit checkpoint` against a consistently rewritten log (control L4, issue 11 item 1
//! follow-up): the command signs the other environments, refuses the rewritten one, names it
//! with the anchored size and both roots, and exits 1.

use sqlx::types::time::OffsetDateTime;
use uuid::Uuid;

use portcullis_store::testing::TestDb;

use super::chain::{self, AuditTable};
use super::{command, free_port, scratch};

/// Control L4: as the superuser the attacker rewrites entry 2 of one environment and
/// recomputes its chain, subtree nodes and head; more entries follow. `portcullis audit
/// checkpoint` then exits 1 saying `REFUSED` for that environment (anchored size and root, the
/// log's root), still signs and anchors the other one, and anchors nothing of the rewrite.
#[tokio::test]
async fn l4_audit_checkpoint_refuses_a_rewritten_environment_and_signs_the_others() {
    let db = TestDb::new().await;
    let data = scratch("consistency");
    let port = free_port();
    let (env, other) = (Uuid::now_v7(), Uuid::now_v7());
    let append = |scope: Uuid, n: usize| {
        let db = &db;
        async move {
            for _ in 0..n {
                db.append_audit_at(
                    scope,
                    OffsetDateTime::now_utc(),
                    portcullis_store::AuditEvent::success("project.created", "project", "p"),
                )
                .await;
            }
        }
    };
    let run = || {
        command(&db, &data, port)
            .args(["audit", "checkpoint"])
            .output()
            .unwrap()
    };
    let anchored = |scope: Uuid| -> Vec<String> {
        let dir = data.join("anchors").join(scope.to_string());
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    };
    append(env, 4).await;
    append(other, 2).await;
    let out = run();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(anchored(env).len(), 1);
    let first = anchored(env);

    chain::tamper(
        &db,
        AuditTable::Log,
        env,
        "UPDATE audit_log SET after = '{\"name\":\"history rewritten\"}' WHERE environment_id = $1 AND seq = 2",
    )
    .await;
    chain::rehash(&db, env).await;
    append(env, 2).await;
    append(other, 1).await;

    let out = run();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let refused = stdout
        .lines()
        .find(|l| l.starts_with("REFUSED:"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(refused.contains(&env.to_string()), "{refused}");
    assert!(
        refused.contains("anchored checkpoint of size 4"),
        "{refused}"
    );
    assert!(!refused.contains(&other.to_string()), "{refused}");
    assert!(stdout.contains("1 environments left unsigned"), "{stdout}");
    // The L4 error on stderr (JSON logs) names the environment, the anchored size and root
    // and the root the stored log has at that size.
    let stderr = String::from_utf8_lossy(&out.stderr);
    let anchored_cp: portcullis_audit::SignedCheckpoint =
        std::fs::read_to_string(data.join("anchors").join(env.to_string()).join(&first[0]))
            .unwrap()
            .parse()
            .unwrap();
    let anchored_root = portcullis_audit::hex::encode(&anchored_cp.checkpoint.root_hash);
    let error = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.contains("contradicts its anchored checkpoint"))
        })
        .unwrap_or_else(|| panic!("no L4 error on stderr:\n{stderr}"));
    assert_eq!(error["level"], "ERROR", "{error}");
    let fields = &error; // the JSON log format flattens the fields
    assert_eq!(fields["control"], "L4", "{error}");
    assert_eq!(fields["environment"], env.to_string(), "{error}");
    assert_eq!(fields["anchored_size"], 4, "{error}");
    assert_eq!(fields["anchored_root"], anchored_root.as_str(), "{error}");
    let recomputed = fields["recomputed_root"].as_str().unwrap();
    assert_eq!(recomputed.len(), 64, "{error}");
    assert_ne!(recomputed, anchored_root, "{error}");
    assert!(
        refused.contains(&anchored_root) && refused.contains(recomputed),
        "{refused}"
    );
    assert_eq!(anchored(env), first, "nothing of the rewrite is anchored");
    assert_eq!(anchored(other).len(), 2, "the other environment is signed");
    // And again on the next run: the refusal does not wear off.
    let out = run();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(anchored(env), first);
}
