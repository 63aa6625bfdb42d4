//! The monthly signed audit report (control L6), generated from a database with months of
//! history, verified against the database and an offline bundle, and attacked.

use portcullis_audit::checkpoint::SigningKey;
use portcullis_audit::report::{
    compare, tally_bundle, Finding, Month, SignedReport, VerdictStatus,
};
use portcullis_core::{EnvironmentId, Permission, PermissionSet};
use portcullis_service::anchor::Anchors;
use portcullis_service::report::{self, ReportError};
use portcullis_service::trail::{self, ExportFormat, ExportWriter, Signer};
use portcullis_store::queries::audit_log;
use portcullis_store::testing::TestDb;
use portcullis_store::{AuditEvent, Store};
use time::macros::datetime;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::support;
use crate::support::chain::{self, AuditTable};

struct History {
    db: TestDb,
    store: Store,
    env: Uuid,
    signer: Signer,
    anchors: Anchors,
    vault: portcullis_store::vault::Vault,
}

/// An environment with entries 1-3 in January 2025 (checkpointed at 3), nothing in February,
/// entries 4-7 in March and entry 8 in April. No checkpoint covers March yet.
async fn history() -> History {
    let db = TestDb::new().await;
    let store = db.store().await;
    let vault = portcullis_store::testing::test_vault();
    let signer = support::trail::signer(&db, &vault).await;
    let anchors = support::trail::local_anchors("pc-report-anchors");
    let env = Uuid::now_v7();
    let h = History {
        db,
        store,
        env,
        signer,
        anchors,
        vault,
    };
    for (at, action) in [
        (datetime!(2025-01-05 10:00 UTC), "project.created"),
        (datetime!(2025-01-20 11:00 UTC), "project.created"),
        (datetime!(2025-01-31 23:59:59.999999 UTC), "auth.login"),
    ] {
        h.append(at, action).await;
    }
    trail::checkpoint(&h.store, &h.signer, &h.anchors, env)
        .await
        .unwrap()
        .expect("checkpoint of January");
    for (at, action) in [
        (datetime!(2025-03-01 00:00 UTC), "auth.login"),
        (datetime!(2025-03-02 08:00 UTC), "document.created"),
        (datetime!(2025-03-15 12:00 UTC), "auth.login"),
        (datetime!(2025-03-31 23:59:59.999999 UTC), "auth.login"),
        (datetime!(2025-04-01 00:00 UTC), "auth.logout"),
    ] {
        h.append(at, action).await;
    }
    h
}

impl History {
    async fn append(&self, at: OffsetDateTime, action: &'static str) {
        self.db
            .append_audit_at(
                self.env,
                at,
                AuditEvent::success(action, "thing", "t1")
                    .after(serde_json::json!({ "note": "a (parenthesised) value" })),
            )
            .await;
    }

    async fn generate(&self, month: &str) -> Result<SignedReport, ReportError> {
        report::generate_now(
            &self.store,
            &self.signer,
            &self.anchors,
            &self.vault,
            self.env,
            month.parse().unwrap(),
        )
        .await
    }

    async fn verify_db(&self, report: &SignedReport) -> Vec<Finding> {
        let keys = trail::published_keys(&self.store).await.unwrap();
        report::verify_with_db(&self.store, report, &keys)
            .await
            .unwrap()
    }

    /// `verify-report --bundle` against a fresh full export, with the published keys.
    async fn verify_bundle(&self, report_json: &[u8]) -> Vec<Finding> {
        let path = std::env::temp_dir().join(format!("pc-report-{}.bundle", Uuid::now_v7()));
        trail::export_to_file(
            &self.store,
            &self.anchors,
            self.env,
            "bundle",
            &path,
            |_, _| {},
        )
        .await
        .unwrap();
        let report = match SignedReport::parse(report_json) {
            Ok(r) => r,
            Err(f) => return vec![f],
        };
        let file = std::io::BufReader::new(std::fs::File::open(&path).unwrap());
        let (tally, _bundle_keys) = tally_bundle(file, &report.body).unwrap();
        let keys = trail::published_keys(&self.store).await.unwrap();
        let mut out = compare(&report.body, &tally);
        out.extend(report.check(&keys));
        std::fs::remove_file(&path).ok();
        out
    }

    async fn superuser(&self, sql: &str) {
        chain::tamper(&self.db, AuditTable::Log, self.env, sql).await;
    }

    /// Rewrites every hash from entry 1 on and the chain head, as an attacker who bypassed L2
    /// would after editing a row: the chain is clean again, but not the signed tree.
    async fn rehash_everything(&self) {
        chain::rehash(&self.db, self.env).await;
    }

    /// The JSONL export of the month's window, as `GET /audit/export?format=jsonl&from=&to=`
    /// produces it (same writer, same query).
    async fn jsonl_export(&self, month: Month) -> Vec<u8> {
        let from = OffsetDateTime::parse(
            &month.window_from(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        let to = OffsetDateTime::parse(
            &month.window_to(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        let mut tx = self
            .store
            .tenant_as_system(
                EnvironmentId::from_uuid(self.env),
                PermissionSet::of(&[Permission::AuditRead]),
                Default::default(),
            )
            .await
            .unwrap();
        let mut writer = ExportWriter::new(ExportFormat::Jsonl, self.env, &[], &[]).unwrap();
        let mut out = vec![];
        let mut after = 0;
        loop {
            let rows = audit_log::stored_window(&mut tx, after, Some(from), Some(to), 2)
                .await
                .unwrap();
            let Some(last) = rows.last() else { break };
            after = last.seq;
            out.extend(writer.write_rows(&rows).unwrap());
        }
        out.extend(writer.finish().unwrap());
        tx.commit().await.unwrap();
        out
    }

    async fn count_action(&self, action: &str) -> i64 {
        self.db.sequence(self.env).await;
        let mut admin = self.db.admin_conn().await;
        sqlx::query_scalar(
            "SELECT count(*) FROM audit_log WHERE environment_id = $1 AND action = $2",
        )
        .bind(self.env)
        .bind(action)
        .fetch_one(&mut admin)
        .await
        .unwrap()
    }
}

fn fields(findings: &[Finding]) -> Vec<&str> {
    findings.iter().map(|f| f.field.as_str()).collect()
}

/// Control L6: a report for a past month states its window, cuts the closing checkpoint it
/// needs, proves consistency with the previous month's, and verifies against the database,
/// an offline bundle, and the JSONL export of the window.
#[tokio::test]
async fn l6_report_for_a_past_month_verifies_against_database_and_bundle() {
    let h = history().await;
    let before = audit_log_checkpoints(&h).await;
    assert_eq!(before, vec![3]);

    let report = h.generate("2025-03").await.unwrap();
    let b = &report.body;
    assert_eq!(b.environment_id, h.env);
    assert_eq!(
        (b.window.from.as_str(), b.window.to.as_str()),
        ("2025-03-01T00:00:00Z", "2025-04-01T00:00:00Z")
    );
    assert_eq!(b.entries.count, 4);
    assert_eq!(
        (b.entries.first_seq, b.entries.last_seq),
        (Some(4), Some(7))
    );
    assert_eq!(
        serde_json::to_value(&b.counts_by_action).unwrap(),
        serde_json::json!({ "auth.login": 3, "document.created": 1 })
    );
    assert_eq!(b.log_size_at_close, 7);
    // No checkpoint covered March: one was cut at the head (entry 8, in April).
    let closing = b.closing_checkpoint.as_ref().unwrap();
    assert_eq!(closing.tree_size, 8);
    assert_eq!(audit_log_checkpoints(&h).await, vec![3, 8]);
    let prev = b.previous.as_ref().unwrap();
    assert_eq!(prev.month, "2025-02");
    assert_eq!(prev.log_size_at_close, 3);
    assert_eq!(prev.checkpoint.tree_size, 3);
    assert!(!prev.consistency_proof.is_empty());
    assert_eq!(report.signature.key_id, h.signer.key_id());

    assert_eq!(h.verify_db(&report).await, vec![]);
    let (json, pdf) = report::render(&report);
    assert_eq!(h.verify_bundle(&json).await, vec![]);
    assert!(pdf.starts_with(b"%PDF-1.4\n") && pdf.ends_with(b"%%EOF\n"));
    assert!(String::from_utf8_lossy(&pdf).contains(&portcullis_audit::report::sha256_hex(&json)));

    // The JSONL export of the window hashes to the report's jsonl_sha256.
    let jsonl = h.jsonl_export("2025-03".parse().unwrap()).await;
    assert_eq!(jsonl.iter().filter(|&&c| c == b'\n').count(), 4);
    assert_eq!(
        portcullis_audit::report::sha256_hex(&jsonl),
        b.entries.jsonl_sha256
    );

    // Files on disk, named after environment and month; the JSON reads back as the report.
    let dir = std::env::temp_dir().join(format!("pc-report-out-{}", Uuid::now_v7()));
    let (json_path, pdf_path) = report::write_files(&report, &dir).unwrap();
    assert_eq!(
        json_path.file_name().unwrap().to_str().unwrap(),
        format!("{}-2025-03.report.json", h.env)
    );
    assert!(pdf_path.to_str().unwrap().ends_with("-2025-03.report.pdf"));
    let reread = SignedReport::parse(&std::fs::read(&json_path).unwrap()).unwrap();
    assert_eq!(reread, report);
    std::fs::remove_dir_all(&dir).ok();

    // Generating is audited (after the month, so the report itself still verifies).
    assert_eq!(h.count_action("audit.report_generated").await, 1);
    assert_eq!(h.verify_db(&report).await, vec![]);

    // Again: the same facts and the same closing checkpoint.
    let again = h.generate("2025-03").await.unwrap();
    assert_eq!(again.body.entries, report.body.entries);
    assert_eq!(
        again.body.closing_checkpoint,
        report.body.closing_checkpoint
    );
    assert_eq!(again.body.previous, report.body.previous);

    // April: the previous month is March, whose closing checkpoint is the one just cut.
    let april = h.generate("2025-04").await.unwrap();
    let ap = april.body.previous.as_ref().unwrap();
    assert_eq!((ap.month.as_str(), ap.log_size_at_close), ("2025-03", 7));
    assert_eq!(ap.checkpoint, *closing);
    assert_eq!(h.verify_db(&april).await, vec![]);
}

async fn audit_log_checkpoints(h: &History) -> Vec<i64> {
    let mut tx = h
        .store
        .tenant_as_system(
            EnvironmentId::from_uuid(h.env),
            PermissionSet::of(&[Permission::AuditRead]),
            Default::default(),
        )
        .await
        .unwrap();
    let rows = audit_log::checkpoints(&mut tx).await.unwrap();
    tx.commit().await.unwrap();
    rows.iter().map(|r| r.tree_size).collect()
}

/// Control L6: an empty month, a month before any history, and months that have not ended.
#[tokio::test]
async fn l6_empty_months_and_unfinished_months() {
    let h = history().await;
    let feb = h.generate("2025-02").await.unwrap();
    let b = &feb.body;
    assert_eq!(b.entries.count, 0);
    assert_eq!((b.entries.first_seq, b.entries.last_seq), (None, None));
    assert!(b.counts_by_action.is_empty());
    assert_eq!(
        b.entries.jsonl_sha256,
        portcullis_audit::report::sha256_hex(b"")
    );
    assert_eq!(b.log_size_at_close, 3);
    assert_eq!(b.closing_checkpoint.as_ref().unwrap().tree_size, 3);
    let prev = b.previous.as_ref().unwrap();
    assert_eq!(
        (prev.month.as_str(), prev.checkpoint.tree_size),
        ("2025-01", 3)
    );
    assert!(prev.consistency_proof.is_empty());
    assert_eq!(h.verify_db(&feb).await, vec![]);
    assert_eq!(h.verify_bundle(&feb.to_json_pretty()).await, vec![]);
    // The PDF of an empty month says so.
    let (_, pdf) = report::render(&feb);
    assert!(String::from_utf8_lossy(&pdf).contains("No entries were logged this month."));

    let before = h.generate("2024-12").await.unwrap();
    assert_eq!(before.body.closing_checkpoint, None);
    assert_eq!(before.body.previous, None);
    assert_eq!(h.verify_db(&before).await, vec![]);

    let now = OffsetDateTime::now_utc();
    let this_month = format!("{:04}-{:02}", now.year(), u8::from(now.month()));
    for month in [this_month, "9998-12".to_owned()] {
        match h.generate(&month).await {
            Err(ReportError::NotEnded { .. }) => {}
            other => panic!("{month}: {other:?}"),
        }
    }
}

/// Control L6: entries of the month edited in the database after the report was made, whether
/// crudely (the chain breaks) or with every hash recomputed (the signed tree does not match).
#[tokio::test]
async fn l6_report_fails_after_its_entries_are_tampered_in_the_database() {
    let h = history().await;
    let report = h.generate("2025-03").await.unwrap();
    assert_eq!(h.verify_db(&report).await, vec![]);
    h.superuser(
        "UPDATE audit_log SET action = 'auth.logout' WHERE environment_id = $1 AND seq = 6",
    )
    .await;
    let findings = h.verify_db(&report).await;
    let f = fields(&findings);
    assert_eq!(f[0], "entries", "{findings:?}");
    assert!(findings[0].reason.contains("seq 6"), "{findings:?}");
    assert!(
        f.contains(&"counts_by_action") && f.contains(&"entries.jsonl_sha256"),
        "{findings:?}"
    );
    assert!(!f.contains(&"signature"), "the report itself is intact");
    // A new report over the broken log says what failed, on page 1 of the PDF as well, and
    // never verifies as clean.
    let broken = h.generate("2025-03").await.unwrap();
    let verdict = &broken.body.summary.as_ref().unwrap().verdict;
    assert_eq!(verdict.status, VerdictStatus::Failed);
    assert_eq!(verdict.verified_through, 5, "{verdict:?}");
    assert_eq!(
        (verdict.anomalies[0].kind.as_str(), verdict.anomalies[0].seq),
        ("Changed", Some(6)),
        "{verdict:?}"
    );
    let findings = h.verify_db(&broken).await;
    assert!(
        fields(&findings).contains(&"summary.verdict"),
        "{findings:?}"
    );
    assert!(!fields(&findings).contains(&"signature"), "{findings:?}");
    let (_, pdf) = report::render(&broken);
    let first = first_page_text(&pdf);
    assert!(
        first.contains("FAILED: the audit log does not verify"),
        "{first}"
    );
    assert!(first.contains("Changed at entry 6"), "{first}");
    assert!(first.contains("verified through entry 5 of 9"), "{first}");
    assert!(
        !first.contains("VERIFIED") && !first.contains("0 anomalies"),
        "{first}"
    );
    look_at_first_page(&pdf, "broken-chain", &["FAILED", "Changed at entry 6"]);

    // The same edit with every hash recomputed: the chain is clean, the tree is not the
    // one the closing checkpoint signed.
    h.rehash_everything().await;
    let findings = h.verify_db(&report).await;
    let f = fields(&findings);
    assert!(!f.contains(&"entries"), "{findings:?}");
    for field in [
        "closing_checkpoint.root_hash",
        "entries.jsonl_sha256",
        "counts_by_action",
    ] {
        assert!(f.contains(&field), "{field}: {findings:?}");
    }
    // The offline verifier sees the same from a fresh export.
    let findings = h.verify_bundle(&report.to_json_pretty()).await;
    assert!(
        fields(&findings).contains(&"closing_checkpoint.root_hash"),
        "{findings:?}"
    );

    // Deleting a January entry (before the report's month) breaks the previous checkpoint.
    let h = history().await;
    let report = h.generate("2025-03").await.unwrap();
    h.superuser("DELETE FROM audit_log WHERE environment_id = $1 AND seq = 2")
        .await;
    let findings = h.verify_db(&report).await;
    assert_eq!(fields(&findings)[0], "entries", "{findings:?}");
}

/// Control L6: edited members are named; a signature by an unpublished key fails; a forged
/// consistency proof fails even when the report is re-signed with the real key.
#[tokio::test]
async fn l6_edited_reports_unknown_keys_and_forged_proofs_fail() {
    let h = history().await;
    let report = h.generate("2025-03").await.unwrap();
    let json: serde_json::Value = serde_json::from_slice(&report.to_json_pretty()).unwrap();
    let closing_root = report
        .body
        .closing_checkpoint
        .as_ref()
        .unwrap()
        .root_hash
        .clone();
    let other = "0f".repeat(32);
    for (pointer, value, field) in [
        ("/entries/count", serde_json::json!(5), "entries.count"),
        (
            "/counts_by_action/auth.login",
            serde_json::json!(4),
            "counts_by_action",
        ),
        (
            "/entries/jsonl_sha256",
            serde_json::json!(other),
            "entries.jsonl_sha256",
        ),
        (
            "/entries/first_seq",
            serde_json::json!(3),
            "entries.first_seq",
        ),
        (
            "/entries/last_seq",
            serde_json::json!(8),
            "entries.last_seq",
        ),
        (
            "/closing_checkpoint/root_hash",
            serde_json::json!(other),
            "closing_checkpoint.root_hash",
        ),
    ] {
        let mut edited = json.clone();
        *edited.pointer_mut(pointer).unwrap() = value;
        let text = serde_json::to_vec(&edited).unwrap();
        let findings = h.verify_bundle(&text).await;
        assert_eq!(fields(&findings)[0], field, "{pointer}: {findings:?}");
        assert!(fields(&findings).contains(&"signature"), "{pointer}");
        let findings = h.verify_db(&SignedReport::parse(&text).unwrap()).await;
        assert!(
            fields(&findings).contains(&field),
            "{pointer}: {findings:?}"
        );
    }
    // A checkpoint text whose root was replaced no longer carries a valid signature.
    let mut edited = json.clone();
    let signed = edited["closing_checkpoint"]["signed"].as_str().unwrap();
    edited["closing_checkpoint"]["signed"] = signed.replace(&closing_root, &other).into();
    let findings = h
        .verify_db(&SignedReport::parse(&serde_json::to_vec(&edited).unwrap()).unwrap())
        .await;
    assert!(
        fields(&findings).contains(&"closing_checkpoint.signed"),
        "{findings:?}"
    );

    // Signed by a key that is not published.
    let stranger = SigningKey::generate().unwrap();
    let foreign = report.body.clone().sign(&stranger).unwrap();
    let findings = h.verify_db(&foreign).await;
    assert_eq!(fields(&findings), vec!["signature"], "{findings:?}");
    assert!(findings[0].reason.contains("not a trusted"));

    // A forged consistency proof, re-signed with the real key.
    let mut body = report.body.clone();
    let proof = &mut body.previous.as_mut().unwrap().consistency_proof;
    proof[0] = other.clone();
    let forged = h.signer.sign_report(body).unwrap();
    let findings = h.verify_db(&forged).await;
    assert_eq!(
        fields(&findings),
        vec!["previous.consistency_proof"],
        "{findings:?}"
    );
    // Leaving out the previous month, re-signed, is caught against the entries.
    let mut body = report.body.clone();
    body.previous = None;
    let findings = h.verify_db(&h.signer.sign_report(body).unwrap()).await;
    assert_eq!(
        fields(&findings),
        vec!["previous.log_size_at_close"],
        "{findings:?}"
    );

    // After a key rotation (`portcullis audit rotate-signing-key`, as the owner) the old report
    // still verifies: retired keys stay published.
    let owner = support::owner_pool(&h.db).await;
    let rotated = Signer::create(&owner, &h.vault, h.vault.default_kek())
        .await
        .unwrap();
    assert_ne!(rotated.key_id(), h.signer.key_id());
    assert_eq!(h.verify_db(&report).await, vec![]);
}

/// Issue 12, item 9 (control L6): generating a report reports its progress through its three
/// reads of the log (stating the facts, verifying the whole log for the verdict, then checking
/// what was signed), each counting up to the log's size and never backwards; the CLI draws
/// these (`audit report`).
#[tokio::test]
async fn l6_report_generation_reports_progress_through_both_reads_of_the_log() {
    let h = history().await;
    let mut seen: Vec<(report::Step, u64, u64)> = Vec::new();
    let report = report::generate_now_with_progress(
        &h.store,
        &h.signer,
        &h.anchors,
        &h.vault,
        h.env,
        "2025-03".parse().unwrap(),
        &mut |step, done, total| seen.push((step, done, total)),
    )
    .await
    .unwrap();
    assert_eq!(report.body.entries.count, 4);
    let steps = [
        report::Step::Reading,
        report::Step::Verifying,
        report::Step::Checking,
    ];
    for step in steps {
        let of: Vec<(u64, u64)> = seen
            .iter()
            .filter(|(s, _, _)| *s == step)
            .map(|(_, d, t)| (*d, *t))
            .collect();
        if step != report::Step::Verifying {
            assert_eq!(of.first(), Some(&(0, 8)), "{step:?}: {seen:?}");
        }
        assert_eq!(of.last(), Some(&(8, 8)), "{step:?}: {seen:?}");
        assert!(
            of.windows(2).all(|w| w[0].0 <= w[1].0),
            "{step:?}: {seen:?}"
        );
    }
    // Reading comes first, verifying next, checking last, each once.
    let order: Vec<report::Step> = seen.iter().map(|(s, _, _)| *s).fold(vec![], |mut v, s| {
        if v.last() != Some(&s) {
            v.push(s);
        }
        v
    });
    assert_eq!(order, steps, "{seen:?}");
}

/// The text of page 1 as drawn: the strings of its text operators, unescaped, joined by
/// spaces (page 1's content is the file's first stream).
fn first_page_text(pdf: &[u8]) -> String {
    let text = String::from_utf8_lossy(pdf);
    let start = text.find("stream\n").expect("a content stream") + 7;
    let end = start + text[start..].find("\nendstream").expect("its end");
    text[start..end]
        .lines()
        .filter_map(|l| {
            let from = l.find(" Td (")? + 5;
            let to = l.rfind(") Tj ET")?;
            Some(
                l[from..to]
                    .replace("\\(", "(")
                    .replace("\\)", ")")
                    .replace("\\\\", "\\"),
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Renders page 1 to `target/report-samples/<name>-1.png` with `pdftoppm -png -r 80` (to look
/// at) and reads it back with `pdftotext`, which must find every one of `expect`; prints
/// SKIPPED where poppler-utils is not installed (`.ci/run` installs it).
fn look_at_first_page(pdf: &[u8], name: &str, expect: &[&str]) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/report-samples");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.pdf"));
    std::fs::write(&path, pdf).unwrap();
    let run = |cmd: &mut std::process::Command| cmd.output().ok().filter(|o| o.status.success());
    let Some(text) = run(std::process::Command::new("pdftotext")
        .args(["-f", "1", "-l", "1"])
        .arg(&path)
        .arg("-"))
    else {
        println!("SKIPPED: pdftotext/pdftoppm not installed (apt-get install poppler-utils)");
        return;
    };
    let text = String::from_utf8_lossy(&text.stdout)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    for e in expect {
        assert!(text.contains(e), "pdftotext of page 1 lacks {e:?}: {text}");
    }
    let png = dir.join(name);
    let out = run(std::process::Command::new("pdftoppm")
        .args(["-png", "-r", "80", "-f", "1", "-l", "1"])
        .arg(&path)
        .arg(&png))
    .expect("pdftoppm renders page 1");
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let png = dir.join(format!("{name}-1.png"));
    let bytes = std::fs::read(&png).unwrap();
    assert!(
        bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000,
        "{}",
        png.display()
    );
}

/// Control L3/L6 (issue 11, the report for a person): an environment whose month has denials,
/// a role change, a key rotation and an export, driven through the API. The report's first
/// page names the environment, gives the verdict (chain, checkpoints, anchors, no anomalies),
/// the refusals and who was refused, the privileged changes with the names of who made them
/// (opened where the report is made), and the commands to re-verify; the JSON carries the same
/// summary, recomputed from the entries by the verifier. Then an audit row is edited as the
/// superuser: the next report says on page 1 exactly what failed.
#[tokio::test]
async fn l3_l6_the_first_page_answers_whether_anything_is_wrong() {
    use crate::support::app::TestApp;
    use axum::http::StatusCode;
    let app = TestApp::spawn().await;
    let ada = app.signup("ada@example.com").await;
    let env = app.create_environment(&ada, "Acme Robotics").await;
    let bob = app.signup("bob@example.com").await;
    app.add_member(&ada, &env, &bob, "admin").await;
    let r = app
        .patch(
            &format!("/v1/environments/{env}/members/{}", bob.id),
            &ada.token,
            serde_json::json!({ "role": "viewer" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    for _ in 0..3 {
        let r = app
            .post(
                &format!("/v1/environments/{env}/projects"),
                &bob.token,
                serde_json::json!({ "name": "not allowed" }),
            )
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
    }
    let r = app
        .post(
            &format!("/v1/environments/{env}/keys/rotate"),
            &ada.token,
            serde_json::json!({}),
        )
        .await;
    assert!(r.status.is_success(), "{:?}", r.body);
    let project = app.create_project(&ada, &env, "Launch").await;
    let r = app
        .put(
            &format!(
                "/v1/environments/{env}/projects/{project}/grants/{}",
                bob.id
            ),
            &ada.token,
            serde_json::json!({ "role": "contributor" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let (status, _) = app
        .get_raw(
            &format!("/v1/environments/{env}/audit/export?format=jsonl"),
            &ada.token,
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    let store = app.db.store().await;
    let signer = support::trail::signer(&app.db, &app.vault).await;
    let anchors = support::trail::local_anchors("pc-report-seeded");
    let env_id = Uuid::parse_str(&env).unwrap();
    let now = OffsetDateTime::now_utc();
    let month: Month = format!("{:04}-{:02}", now.year(), u8::from(now.month()))
        .parse()
        .unwrap();
    // The month has not ended: the report is made as of the next month's first day.
    let after = OffsetDateTime::parse(
        &month.window_to(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap()
        + time::Duration::hours(9);
    let generate = || report::generate(&store, &signer, &anchors, &app.vault, env_id, month, after);
    let made = generate().await.unwrap();
    let summary = made.body.summary.as_ref().unwrap();
    assert_eq!(summary.environment_name.as_deref(), Some("Acme Robotics"));
    let v = &summary.verdict;
    assert_eq!(v.status, VerdictStatus::Verified, "{v:?}");
    assert!(v.anomalies.is_empty());
    assert_eq!(v.verified_through, v.log_size);
    assert!(v.checkpoints_verified >= 1 && v.covered_through >= made.body.log_size_at_close);
    assert_eq!(v.anchors.kind, "local_directory");
    let actions: Vec<&str> = summary
        .privileged
        .changes
        .iter()
        .map(|c| c.action.as_str())
        .collect();
    for action in ["member.role_changed", "keys.rotated", "audit.exported"] {
        assert!(actions.contains(&action), "{action}: {actions:?}");
    }
    let role_change = summary
        .privileged
        .changes
        .iter()
        .find(|c| c.action == "member.role_changed")
        .unwrap();
    assert_eq!(
        role_change.actor_id.map(|u| u.to_string()),
        Some(ada.id.clone())
    );
    let ada_id = Uuid::parse_str(&ada.id).unwrap();
    let bob_id = Uuid::parse_str(&bob.id).unwrap();
    let person = &summary.people[&ada_id];
    assert_eq!(
        (person.email.as_deref(), person.role.as_deref()),
        (Some("ada@example.com"), Some("owner"))
    );
    assert_eq!(summary.people[&bob_id].role.as_deref(), Some("viewer"));
    assert_eq!(summary.activity.by_outcome.get("denied"), Some(&3));
    let top = &summary.activity.top_denied_actors[0];
    assert_eq!((top.actor_id, top.denials), (Some(bob_id), 3));
    // Generation checked what it signed against the entries, summary included (checking it
    // again here would count this month's own `audit.report_generated` entry: the month has
    // not really ended).

    let (json, pdf) = report::render(&made);
    assert!(SignedReport::parse(&json).unwrap().body.summary.is_some());
    let first = first_page_text(&pdf);
    for fact in [
        "Acme Robotics",
        "VERIFIED: no anomalies found",
        &format!(
            "Hash chain verified through entry {} of {}",
            v.log_size, v.log_size
        ),
        "anchored write-once in a local directory",
        "0 anomalies.",
        "3 refused",
        "authorization.denied",
        "bob <bob@example.com>, viewer",
        "Role of bob <bob@example.com> changed from admin",
        "Data keys rotated to version 2 (requested)",
        "Audit log exported as jsonl",
        "Project grant: bob <bob@example.com> gets",
        "ada <ada@example.com>, owner",
        &format!("portcullis audit verify --environment {env}"),
        "Page 1 of",
    ] {
        assert!(first.contains(fact), "page 1 lacks {fact:?}: {first}");
    }
    let human_from = {
        let from = month.window_from();
        let t =
            OffsetDateTime::parse(&from, &time::format_description::well_known::Rfc3339).unwrap();
        format!("period 1 {} {}, 00:00 UTC", t.month(), t.year())
    };
    assert!(first.contains(&human_from), "{human_from}: {first}");
    assert!(
        !first.contains(&made.body.entries.jsonl_sha256),
        "hashes are in the appendix"
    );
    look_at_first_page(
        &pdf,
        "seeded-month",
        &[
            "VERIFIED: no anomalies found",
            "Acme Robotics",
            "Privileged changes",
        ],
    );

    // The role change, edited as the superuser: page 1 says what failed and where.
    chain::tamper(
        &app.db,
        AuditTable::Log,
        env_id,
        "UPDATE audit_log SET after = '{\"role\": \"owner\"}'
          WHERE environment_id = $1
            AND seq = (SELECT min(seq) FROM audit_log
                        WHERE environment_id = $1 AND action = 'member.role_changed')",
    )
    .await;
    let broken = generate().await.unwrap();
    let v = &broken.body.summary.as_ref().unwrap().verdict;
    assert_eq!(v.status, VerdictStatus::Failed);
    assert_eq!(v.anomalies[0].seq, Some(role_change.seq), "{v:?}");
    // The list shows the entries as they are now, the edit included.
    let edited = &broken.body.summary.as_ref().unwrap().privileged.changes[0];
    assert_eq!(edited.after, serde_json::json!({ "role": "owner" }));
    let (_, pdf) = report::render(&broken);
    let first = first_page_text(&pdf);
    let place = format!("Changed at entry {}", role_change.seq);
    assert!(
        first.contains("FAILED: the audit log does not verify"),
        "{first}"
    );
    assert!(first.contains(&place), "{first}");
    assert!(
        !first.contains("VERIFIED") && !first.contains("0 anomalies"),
        "{first}"
    );
    look_at_first_page(&pdf, "seeded-month-broken", &["FAILED", &place]);
}
