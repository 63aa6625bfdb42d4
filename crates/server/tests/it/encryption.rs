//! Envelope encryption attacked end to end (controls E2, E4, E5, E6, L7).

use std::time::Duration;

use crate::support::{self, TestApp};
use axum::http::StatusCode;
use portcullis_core::{EnvironmentId, PermissionSet};
use portcullis_server::app::Limits;
use portcullis_service::config::AuthConfig;
use portcullis_store::RequestMeta;
use serde_json::json;

async fn env_with_docs(
    app: &TestApp,
    owner: &support::User,
    name: &str,
    n: usize,
) -> (String, String, Vec<String>) {
    let env = app.create_environment(owner, name).await;
    let p = app.create_project(owner, &env, "p").await;
    let mut docs = vec![];
    for i in 0..n {
        let title = format!("doc {i}");
        let body = format!("{name}-body-{i}");
        docs.push(
            app.create_document_with(owner, &env, &p, &title, &body)
                .await,
        );
    }
    (env, p, docs)
}

/// Control E2: after a workload, a pg_dump of the database contains none of the secrets or
/// content it was given, only ciphertext.
#[tokio::test]
async fn e2_database_dump_holds_no_plaintext() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@example.com").await;
    let env = app.create_environment(&owner, "Acme").await;
    let p = app.create_project(&owner, &env, "p").await;
    let body = "MARKER-document-body-7f3a";
    let creds = "MARKER-integration-credential-91bc";
    let model = "MARKER-model-provider-key-55de";
    assert_eq!(
        app.post(
            &format!("/v1/environments/{env}/projects/{p}/documents"),
            &owner.token,
            json!({ "title": "t", "body": body })
        )
        .await
        .status,
        StatusCode::CREATED
    );
    let r = app
        .post(
            &format!("/v1/environments/{env}/integrations"),
            &owner.token,
            json!({ "kind": "slack", "name": "team", "credentials": creds }),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["credentials_hint"], "…91bc");
    assert!(!r.body.to_string().contains(creds));
    let r = app
        .put(
            &format!("/v1/environments/{env}/model-key"),
            &owner.token,
            json!({ "provider": "anthropic", "api_key": model }),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert!(!r.body.to_string().contains(model));
    // Listings never show credentials either.
    let list = app
        .get(
            &format!("/v1/environments/{env}/integrations"),
            &owner.token,
        )
        .await;
    assert!(!list.body.to_string().contains(creds));

    let dump = app.pg_dump();
    assert!(dump.contains("COPY public.documents"), "dump looks empty");
    for secret in [body, creds, model, owner.token.as_str(), support::PASSWORD] {
        assert!(
            !dump.contains(secret),
            "plaintext {secret:?} found in pg_dump output"
        );
    }
    // The document can still be read back through the API.
    let docs = app
        .get(
            &format!("/v1/environments/{env}/projects/{p}/documents"),
            &owner.token,
        )
        .await;
    assert_eq!(docs.body["items"][0]["body"], body);
}

/// Control E2: ciphertext copied to another row or another tenant, or with one bit flipped, is
/// refused with an integrity error, never returned as the wrong data.
#[tokio::test]
async fn e2_moved_or_altered_ciphertext_is_refused() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@example.com").await;
    let (a, pa, da) = env_with_docs(&app, &owner, "alpha", 2).await;
    let (_b, _pb, db) = env_with_docs(&app, &owner, "beta", 1).await;
    let mut admin = app.db.admin_conn().await;
    let get =
        |env: &str, p: &str, d: &str| format!("/v1/environments/{env}/projects/{p}/documents/{d}");
    assert_eq!(
        app.get(&get(&a, &pa, &da[1]), &owner.token).await.body["body"],
        "alpha-body-1"
    );

    let copy = "UPDATE documents SET body_ciphertext = (SELECT body_ciphertext FROM documents WHERE document_id = $1::uuid) WHERE document_id = $2::uuid";
    // Row to row, same tenant.
    sqlx::query(copy)
        .bind(&da[0])
        .bind(&da[1])
        .execute(&mut admin)
        .await
        .unwrap();
    let r = app.get(&get(&a, &pa, &da[1]), &owner.token).await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(r.code(), "integrity_error");
    assert!(!r.body.to_string().contains("alpha-body-0"));
    // Tenant to tenant.
    sqlx::query(copy)
        .bind(&db[0])
        .bind(&da[0])
        .execute(&mut admin)
        .await
        .unwrap();
    let r = app.get(&get(&a, &pa, &da[0]), &owner.token).await;
    assert_eq!(r.code(), "integrity_error");
    assert!(!r.body.to_string().contains("beta-body-0"));
    // One flipped bit in an untouched row of B's.
    let (_c, pc, dc) = env_with_docs(&app, &owner, "gamma", 1).await;
    sqlx::query("UPDATE documents SET body_ciphertext = set_byte(body_ciphertext, 40, get_byte(body_ciphertext, 40) # 1) WHERE document_id = $1::uuid")
        .bind(&dc[0])
        .execute(&mut admin)
        .await
        .unwrap();
    let r = app.get(&get(&_c, &pc, &dc[0]), &owner.token).await;
    assert_eq!(r.code(), "integrity_error");
}

/// Control E5: rotation while writes continue loses nothing; after re-encryption the old
/// version can be retired and every row still reads back its latest content.
#[tokio::test]
async fn e5_rotation_under_concurrent_writes_loses_nothing() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@example.com").await;
    let (env, p, docs) = env_with_docs(&app, &owner, "acme", 40).await;
    let mut expected: std::collections::HashMap<String, String> = docs
        .iter()
        .enumerate()
        .map(|(i, d)| (d.clone(), format!("acme-body-{i}")))
        .collect();
    let r = app
        .post(
            &format!("/v1/environments/{env}/keys/rotate"),
            &owner.token,
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    assert_eq!(r.body["version"], 2);
    // Writes race the background job: edits of existing rows and new rows.
    let writes = async {
        let mut added = vec![];
        for (i, d) in docs.iter().enumerate().step_by(3) {
            let body = format!("edited-during-rotation-{i}");
            let r = app
                .patch(
                    &format!("/v1/environments/{env}/projects/{p}/documents/{d}"),
                    &owner.token,
                    json!({ "body": body }),
                )
                .await;
            assert_eq!(r.status, StatusCode::OK);
            added.push((d.clone(), body));
        }
        for i in 0..10 {
            let body = format!("created-during-rotation-{i}");
            let r = app
                .post(
                    &format!("/v1/environments/{env}/projects/{p}/documents"),
                    &owner.token,
                    json!({ "title": "n", "body": body }),
                )
                .await;
            added.push((r.body["document_id"].as_str().unwrap().to_owned(), body));
        }
        added
    };
    for (d, body) in writes.await {
        expected.insert(d, body);
    }
    // Wait for the job (bounded).
    let mut status = serde_json::Value::Null;
    for _ in 0..200 {
        status = app
            .get(&format!("/v1/environments/{env}/keys"), &owner.token)
            .await
            .body;
        if status["jobs"][0]["finished_at"].is_string() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        status["jobs"][0]["finished_at"].is_string(),
        "job did not finish: {status}"
    );
    let r = app
        .post(
            &format!("/v1/environments/{env}/keys/retire"),
            &owner.token,
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["min_decrypt_version"], 2);
    let v1 = r.body["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["version"] == 1)
        .unwrap();
    assert!(v1["retired_at"].is_string());
    assert_eq!(v1["rows"], 0);
    // Every row reads back its latest content.
    for (d, body) in &expected {
        let r = app
            .get(
                &format!("/v1/environments/{env}/projects/{p}/documents/{d}"),
                &owner.token,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{d}: {:?}", r.body);
        assert_eq!(&r.body["body"], body);
    }
    // Audited (L7).
    let actions: Vec<String> = app
        .audit_actions(&env)
        .await
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect();
    for a in ["keys.rotated", "keys.reencryption_finished", "keys.retired"] {
        assert!(actions.iter().any(|x| x == a), "{a} not audited");
    }
}

/// Control E5: the re-encryption job survives a crash: an uncommitted batch leaves no trace,
/// a restarted job continues from its last committed batch, and re-running a finished job is
/// a no-op. Retiring early is refused while old rows remain.
#[tokio::test]
async fn e5_reencryption_job_resumes_after_a_crash() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@example.com").await;
    let (env, p, docs) = env_with_docs(&app, &owner, "acme", 25).await;
    let env_id = EnvironmentId::parse(&env).unwrap();
    let store = app.db.store().await;
    // Drive the job's batches by hand with the app's own vault.
    let state_vault = app.vault.clone();
    let rotation = portcullis_service::jobs::rotate(&store, &state_vault, env_id, "test")
        .await
        .unwrap();
    // One committed batch of 10.
    let mut tx = store
        .tenant_as_system(env_id, PermissionSet::all(), RequestMeta::default())
        .await
        .unwrap();
    let first = state_vault
        .run_batch(&mut tx, rotation.job_id, 10)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(first.rows_rewritten, 10);
    assert!(!first.finished);
    // A batch that "crashes" before commit.
    let mut tx = store
        .tenant_as_system(env_id, PermissionSet::all(), RequestMeta::default())
        .await
        .unwrap();
    state_vault
        .run_batch(&mut tx, rotation.job_id, 10)
        .await
        .unwrap();
    drop(tx);
    let status = app
        .get(&format!("/v1/environments/{env}/keys"), &owner.token)
        .await
        .body;
    assert_eq!(status["jobs"][0]["rows_done"], 10, "{status}");
    let counts: Vec<(i64, i64)> = status["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["version"].as_i64().unwrap(), v["rows"].as_i64().unwrap()))
        .collect();
    assert_eq!(counts, vec![(1, 15), (2, 10)]);
    // Retiring now is refused.
    let r = app
        .post(
            &format!("/v1/environments/{env}/keys/retire"),
            &owner.token,
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    // Restart: the job continues and completes.
    let mut seen = vec![];
    let done =
        portcullis_service::jobs::run_job(&store, &state_vault, env_id, rotation.job_id, 7, |o| {
            seen.push(o.rows_done)
        })
        .await
        .unwrap();
    assert!(done.finished);
    assert_eq!(done.rows_done, 25);
    assert!(
        seen.windows(2).all(|w| w[0] <= w[1]),
        "progress must not go backwards: {seen:?}"
    );
    let again =
        portcullis_service::jobs::run_job(&store, &state_vault, env_id, rotation.job_id, 7, |_| {})
            .await
            .unwrap();
    assert_eq!(again.rows_done, 25);
    assert_eq!(
        app.post(
            &format!("/v1/environments/{env}/keys/retire"),
            &owner.token,
            json!({})
        )
        .await
        .status,
        StatusCode::OK
    );
    for (i, d) in docs.iter().enumerate() {
        let r = app
            .get(
                &format!("/v1/environments/{env}/projects/{p}/documents/{d}"),
                &owner.token,
            )
            .await;
        assert_eq!(r.body["body"], format!("acme-body-{i}"));
    }
}

/// Controls E2, E5: rows written before encryption (plaintext bodies) are sealed by the job.
#[tokio::test]
async fn e5_legacy_plaintext_rows_are_sealed_by_the_job() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@example.com").await;
    let (env, p, docs) = env_with_docs(&app, &owner, "acme", 3).await;
    let mut admin = app.db.admin_conn().await;
    sqlx::query("UPDATE documents SET body = 'legacy plaintext', body_ciphertext = NULL, body_key_version = NULL WHERE document_id = $1::uuid")
        .bind(&docs[0])
        .execute(&mut admin)
        .await
        .unwrap();
    let status = app
        .get(&format!("/v1/environments/{env}/keys"), &owner.token)
        .await
        .body;
    assert_eq!(status["plaintext_rows"], 1);
    let r = app
        .get(
            &format!("/v1/environments/{env}/projects/{p}/documents/{}", docs[0]),
            &owner.token,
        )
        .await;
    assert_eq!(r.body["body"], "legacy plaintext");
    let store = app.db.store().await;
    let env_id = EnvironmentId::parse(&env).unwrap();
    let rotation = portcullis_service::jobs::rotate(&store, &app.vault, env_id, "test")
        .await
        .unwrap();
    portcullis_service::jobs::run_job(&store, &app.vault, env_id, rotation.job_id, 100, |_| {})
        .await
        .unwrap();
    let status = app
        .get(&format!("/v1/environments/{env}/keys"), &owner.token)
        .await
        .body;
    assert_eq!(status["plaintext_rows"], 0);
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM documents WHERE body IS NOT NULL")
        .fetch_one(&mut admin)
        .await
        .unwrap();
    assert_eq!(left, 0);
    let r = app
        .get(
            &format!("/v1/environments/{env}/projects/{p}/documents/{}", docs[0]),
            &owner.token,
        )
        .await;
    assert_eq!(r.body["body"], "legacy plaintext");
}

/// Control E2 (provider calls): in steady state reads make no key-provider calls.
#[tokio::test]
async fn e2_steady_state_reads_make_no_provider_calls() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@example.com").await;
    let (env, p, docs) = env_with_docs(&app, &owner, "acme", 5).await;
    let before = app.vault.provider_calls();
    for _ in 0..40 {
        for d in &docs {
            let r = app
                .get(
                    &format!("/v1/environments/{env}/projects/{p}/documents/{d}"),
                    &owner.token,
                )
                .await;
            assert_eq!(r.status, StatusCode::OK);
        }
    }
    assert_eq!(
        app.vault.provider_calls(),
        before,
        "200 reads called the key provider"
    );
}

/// Control E6: a workload's secrets and content never reach the logs, even at trace level.
#[tokio::test]
async fn e6_plaintexts_never_reach_the_logs() {
    #[derive(Clone, Default)]
    struct Sink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let sink = Sink::default();
    let writer = sink.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let app = TestApp::spawn_full(
        AuthConfig::default(),
        Limits::default(),
        Duration::from_secs(300),
    )
    .await;
    let owner = app.signup("owner@example.com").await;
    let env = app.create_environment(&owner, "Acme").await;
    let p = app.create_project(&owner, &env, "p").await;
    let body = "LOGMARKER-body-3e1f";
    let creds = "LOGMARKER-credentials-a9d0";
    let model = "LOGMARKER-model-key-77c2";
    app.post(
        &format!("/v1/environments/{env}/projects/{p}/documents"),
        &owner.token,
        json!({ "title": "t", "body": body }),
    )
    .await;
    app.post(
        &format!("/v1/environments/{env}/integrations"),
        &owner.token,
        json!({ "kind": "slack", "name": "x", "credentials": creds }),
    )
    .await;
    app.put(
        &format!("/v1/environments/{env}/model-key"),
        &owner.token,
        json!({ "provider": "anthropic", "api_key": model }),
    )
    .await;
    let api = app
        .post(
            &format!("/v1/environments/{env}/tokens"),
            &owner.token,
            json!({ "name": "t", "role": "viewer" }),
        )
        .await;
    let api_token = api.body["token"].as_str().unwrap().to_owned();
    // Failures are logged too: make some.
    app.get(
        &format!("/v1/environments/{env}/projects/{p}/documents"),
        &api_token,
    )
    .await;
    app.post(
        &format!("/v1/environments/{env}/projects/{p}/documents"),
        &api_token,
        json!({ "title": "t", "body": body }),
    )
    .await;
    app.call(
        axum::http::Method::POST,
        "/v1/auth/login",
        None,
        Some(json!({ "email": "owner@example.com", "password": "wrong password here" })),
    )
    .await;
    let logs = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("request refused"),
        "the test must actually capture logs"
    );
    for secret in [
        body,
        creds,
        model,
        api_token.as_str(),
        owner.token.as_str(),
        support::PASSWORD,
        "wrong password here",
    ] {
        assert!(!logs.contains(secret), "{secret:?} appeared in the logs");
    }
}

/// Control E5: with several nodes only one runs the rotation scheduler at a time. While another
/// node holds the scheduler's advisory lock a pass rotates nothing and reports it skipped; once
/// released, the due key is rotated by exactly one of two concurrent passes.
#[tokio::test]
async fn e5_rotation_scheduler_runs_on_one_node_at_a_time() {
    use portcullis_store::leader::{PassLock, KEY_ROTATION_SCHEDULER_LOCK};
    async fn active(admin: &mut sqlx::PgConnection, env: EnvironmentId) -> i32 {
        sqlx::query_scalar("SELECT active_version FROM environment_keys WHERE environment_id = $1")
            .bind(env.as_uuid())
            .fetch_one(admin)
            .await
            .unwrap()
    }
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@example.com").await;
    let (env, _, _) = env_with_docs(&app, &owner, "acme", 3).await;
    let env_id = EnvironmentId::parse(&env).unwrap();
    let store = app.db.store().await;
    let mut admin = app.db.admin_conn().await;
    let before = active(&mut admin, env_id).await;
    sqlx::query("UPDATE environment_keys SET rotated_at = now() - interval '10 years' WHERE environment_id = $1")
        .bind(env_id.as_uuid())
        .execute(&mut admin)
        .await
        .unwrap();
    let node_a = app.db.scheduler_pool().await;
    let node_b = app.db.scheduler_pool().await;
    let held = PassLock::try_acquire(&node_b, KEY_ROTATION_SCHEDULER_LOCK)
        .await
        .unwrap()
        .expect("free at first");
    let pass = portcullis_service::jobs::scheduler_pass(&store, &node_a, &app.vault, 100)
        .await
        .unwrap();
    assert!(pass.skipped);
    assert_eq!(pass.rotated, 0);
    assert_eq!(active(&mut admin, env_id).await, before);
    held.release().await.unwrap();
    let (a, b) = tokio::join!(
        portcullis_service::jobs::scheduler_pass(&store, &node_a, &app.vault, 100),
        portcullis_service::jobs::scheduler_pass(&store, &node_b, &app.vault, 100),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.rotated + b.rotated, 1, "{a:?} {b:?}");
    assert_eq!(active(&mut admin, env_id).await, before + 1);
    // Nothing is due any more.
    let pass = portcullis_service::jobs::scheduler_pass(&store, &node_a, &app.vault, 100)
        .await
        .unwrap();
    assert!(!pass.skipped);
    assert_eq!((pass.rotated, pass.jobs_resumed), (0, 0));
}
