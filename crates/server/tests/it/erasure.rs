//! Erasure without breaking the audit chain (control D3): a person's IP addresses and user
//! agents in audit entries are sealed under their own key; destroying it makes them unreadable
//! while the chain, the checkpoints and the proofs still verify.

use std::net::SocketAddr;

use axum::extract::ConnectInfo;
use axum::http::{header, Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::support::chain::{self, AuditTable};
use crate::support::{self, request, with_body, TestApp};

const BOB_AGENT: &str = "MARKER-agent-of-bob-5e1f";
const BOB_IP: &str = "203.0.113.77";

/// A request as a person makes it: from an address, with a user agent.
async fn as_person(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
    agent: &str,
    ip: &str,
) -> support::Reply {
    let addr: SocketAddr = format!("{ip}:40000").parse().unwrap();
    let b = request(method, path, Some(token))
        .header(header::USER_AGENT, agent)
        .extension(ConnectInfo(addr));
    app.send(with_body(b, body)).await
}

async fn entries(app: &TestApp, env: &str, token: &str) -> Vec<Value> {
    let r = app
        .get(&format!("/v1/environments/{env}/audit?limit=200"), token)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    r.body["items"].as_array().unwrap().clone()
}

fn dump_contains(app: &TestApp, needle: &str) -> bool {
    app.pg_dump().contains(needle)
}

/// Control D3: personal request metadata is sealed per subject; erasing the subject makes it
/// read `[erased]`, leaves everyone else's readable, is audited, and every hash, checkpoint
/// and proof still verifies, before and after.
#[tokio::test]
async fn d3_erasure_destroys_personal_data_and_keeps_the_chain_verifiable() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@example.com").await;
    let bob = app.signup("bob@example.com").await;
    let env = app.create_environment(&owner, "Acme").await;
    app.add_member(&owner, &env, &bob, "admin").await;
    for i in 0..3 {
        let r = as_person(
            &app,
            Method::POST,
            &format!("/v1/environments/{env}/projects"),
            &bob.token,
            Some(json!({ "name": format!("bob's project {i}") })),
            BOB_AGENT,
            BOB_IP,
        )
        .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    }
    let r = as_person(
        &app,
        Method::POST,
        &format!("/v1/environments/{env}/projects"),
        &owner.token,
        Some(json!({ "name": "owner's project" })),
        "owner-agent",
        "198.51.100.1",
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);

    // Sealed at rest: neither the agent nor the address is in the database in clear.
    assert!(!dump_contains(&app, BOB_AGENT));
    assert!(!dump_contains(&app, BOB_IP));
    // Readable through the audit API while the key exists.
    let before = entries(&app, &env, &owner.token).await;
    let bobs: Vec<&Value> = before
        .iter()
        .filter(|e| e["actor_id"] == bob.id.as_str() && e["action"] == "project.created")
        .collect();
    assert_eq!(bobs.len(), 3);
    assert!(bobs
        .iter()
        .all(|e| e["ip"] == BOB_IP && e["user_agent"] == BOB_AGENT));

    // Checkpoint and verify before the erasure.
    let env_id = Uuid::parse_str(&env).unwrap();
    let signer = support::trail::signer(&app.db, &app.vault).await;
    let anchors = support::trail::local_anchors("pc-anchors");
    let store = app.db.store().await;
    let first = support::trail::checkpoint(&store, &signer, &anchors, env_id).await;
    let report = support::trail::verify(&store, &signer, &anchors, env_id).await;
    assert!(report.is_clean(), "{:?}", report.first_problem);

    // Another tenant's admin cannot reach Bob's key here; a viewer cannot erase at all.
    let mallory = app.signup("mallory@example.com").await;
    let other = app.create_environment(&mallory, "Other").await;
    let r = app
        .post(
            &format!("/v1/environments/{env}/members/{}/erasure", bob.id),
            &mallory.token,
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = app
        .post(
            &format!("/v1/environments/{other}/members/{}/erasure", bob.id),
            &mallory.token,
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "Bob has nothing there");
    let viewer = app.signup("viewer@example.com").await;
    app.add_member(&owner, &env, &viewer, "viewer").await;
    let r = app
        .post(
            &format!("/v1/environments/{env}/members/{}/erasure", bob.id),
            &viewer.token,
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(
        entries(&app, &env, &owner.token)
            .await
            .iter()
            .filter(|e| e["actor_id"] == bob.id.as_str() && e["ip"] == BOB_IP)
            .count(),
        bobs.len(),
        "nothing was erased by refused requests"
    );

    // The erasure.
    let r = app
        .post(
            &format!("/v1/environments/{env}/members/{}/erasure", bob.id),
            &owner.token,
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["key_destroyed"], true);
    let after = entries(&app, &env, &owner.token).await;
    for e in after
        .iter()
        .filter(|e| e["actor_id"] == bob.id.as_str() && e["action"] == "project.created")
    {
        assert_eq!(e["ip"], "[erased]");
        assert_eq!(e["user_agent"], "[erased]");
    }
    assert!(after
        .iter()
        .any(|e| e["ip"] == "198.51.100.1" && e["user_agent"] == "owner-agent"));
    assert!(after.iter().any(|e| e["action"] == "subject.erased"
        && e["target_id"] == bob.id.as_str()
        && e["after"]["key_destroyed"] == true));

    // The chain, the earlier checkpoint and a new one all verify; proofs still hold.
    let second = support::trail::checkpoint(&store, &signer, &anchors, env_id).await;
    let report = support::trail::verify(&store, &signer, &anchors, env_id).await;
    assert!(report.is_clean(), "{:?}", report.first_problem);
    assert!(report.checkpoints_checked >= 2);
    let r = app
        .get(
            &format!(
                "/v1/environments/{env}/audit/proofs/consistency?from={}&to={}",
                first.checkpoint.tree_size, second.checkpoint.tree_size
            ),
            &owner.token,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);

    // Bob acting again gets a new key: new entries read, old ones stay erased.
    let r = as_person(
        &app,
        Method::POST,
        &format!("/v1/environments/{env}/projects"),
        &bob.token,
        Some(json!({ "name": "bob returns" })),
        BOB_AGENT,
        BOB_IP,
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let last = entries(&app, &env, &owner.token).await;
    let bobs: Vec<&Value> = last
        .iter()
        .filter(|e| e["actor_id"] == bob.id.as_str() && e["action"] == "project.created")
        .collect();
    assert_eq!(bobs.iter().filter(|e| e["ip"] == "[erased]").count(), 3);
    assert_eq!(bobs.iter().filter(|e| e["ip"] == BOB_IP).count(), 1);
}

/// Control D3: a sealed value moved onto another entry is refused, not shown as that entry's.
#[tokio::test]
async fn d3_sealed_metadata_is_bound_to_its_entry() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@example.com").await;
    let env = app.create_environment(&owner, "Acme").await;
    for name in ["a", "b"] {
        let r = as_person(
            &app,
            Method::POST,
            &format!("/v1/environments/{env}/projects"),
            &owner.token,
            Some(json!({ "name": name })),
            &format!("agent-{name}"),
            "192.0.2.9",
        )
        .await;
        assert_eq!(r.status, StatusCode::CREATED);
    }
    chain::tamper(
        &app.db,
        AuditTable::Log,
        Uuid::parse_str(&env).unwrap(),
        "UPDATE audit_log a SET user_agent = (SELECT user_agent FROM audit_log b
                 WHERE b.environment_id = a.environment_id AND b.action = 'project.created' ORDER BY seq LIMIT 1)
          WHERE a.environment_id = $1::uuid AND a.seq = (SELECT max(seq) FROM audit_log WHERE environment_id = $1::uuid AND action = 'project.created')",
    )
    .await;
    let r = app
        .get(&format!("/v1/environments/{env}/audit"), &owner.token)
        .await;
    assert_eq!(r.code(), "integrity_error", "{:?}", r.body);
}

/// Control D3: logins are audited in the platform scope with the person's address sealed under
/// their platform-scope key; only the operator's erasure can destroy it (a runtime connection
/// without the permission deletes nothing), and the erasure is audited.
#[tokio::test]
async fn d3_platform_scope_erasure_is_the_operators() {
    let app = TestApp::spawn().await;
    let bob = app.signup("bob@example.com").await;
    let addr: SocketAddr = format!("{BOB_IP}:40000").parse().unwrap();
    let req = request(Method::POST, "/v1/auth/login", None)
        .header(header::USER_AGENT, BOB_AGENT)
        .extension(ConnectInfo(addr));
    let login = app
        .send(with_body(
            req,
            Some(json!({ "email": "bob@example.com", "password": support::PASSWORD })),
        ))
        .await;
    assert_eq!(login.status, StatusCode::OK);
    let token = login.body["session"]["token"].as_str().unwrap().to_owned();
    let sessions = app.get("/v1/me/sessions", &token).await;
    assert!(
        sessions
            .body
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["ip"] == BOB_IP && s["user_agent"] == BOB_AGENT),
        "{:?}",
        sessions.body
    );
    app.db.sequence(portcullis_store::PLATFORM_SCOPE).await;
    let mut admin = app.db.admin_conn().await;
    let stored: Vec<Option<String>> = sqlx::query_scalar(
        "SELECT ip FROM audit_log WHERE environment_id = '00000000-0000-0000-0000-000000000000'
            AND actor_id = $1::uuid",
    )
    .bind(&bob.id)
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert!(!stored.is_empty());
    assert!(stored
        .iter()
        .flatten()
        .all(|ip| ip.starts_with(portcullis_store::subjects::SEALED_PREFIX)));
    assert!(!dump_contains(&app, BOB_IP));

    // The runtime role without the permission cannot destroy keys.
    let mut runtime = app.db.runtime_conn().await;
    let deleted = sqlx::query("DELETE FROM subject_keys")
        .execute(&mut runtime)
        .await
        .unwrap();
    assert_eq!(deleted.rows_affected(), 0);

    let store = app.db.store().await;
    let identity = portcullis_core::IdentityId::parse(&bob.id).unwrap();
    let mut tx = store.auth(Default::default()).await.unwrap();
    assert!(tx.erase_platform_subject(identity).await.unwrap());
    tx.audit(
        portcullis_store::Actor::System,
        portcullis_store::AuditEvent::success("subject.erased", "identity", identity),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let left: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM subject_keys WHERE subject_id = $1::uuid
            AND environment_id = '00000000-0000-0000-0000-000000000000'",
    )
    .bind(&bob.id)
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert_eq!(left, 0);
    // The session history is sealed under the same key: erased with it.
    let sessions = app.get("/v1/me/sessions", &token).await;
    let current = sessions
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["current"] == true)
        .unwrap()
        .clone();
    assert_eq!(current["ip"], "[erased]");
    assert_eq!(current["user_agent"], "[erased]");
    // A second erasure finds nothing.
    let mut tx = store.auth(Default::default()).await.unwrap();
    assert!(!tx.erase_platform_subject(identity).await.unwrap());
}

/// Controls D3 and R2: erasure is irreversible, so nobody erases what they could not remove.
/// A custom role with `members.manage` alone cannot erase an admin or the owner; an admin
/// cannot erase the owner; refused erasures destroy nothing and write no `subject.erased`.
/// The owner may erase anyone, and a person their own data.
#[tokio::test]
async fn d3_r2_erasure_follows_the_no_escalation_rule() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@example.com").await;
    let admin = app.signup("admin@example.com").await;
    let ops = app.signup("ops@example.com").await;
    let env = app.create_environment(&owner, "Acme").await;
    app.add_member(&owner, &env, &admin, "admin").await;
    let r = app
        .post(
            &format!("/v1/environments/{env}/roles"),
            &owner.token,
            json!({ "name": "people-ops", "permissions": ["environment.read", "members.read", "members.manage"] }),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let role = format!("custom:{}", r.body["role_id"].as_str().unwrap());
    app.add_member(&owner, &env, &ops, &role).await;
    // Everyone leaves personal data in the log first.
    for who in [&owner, &admin, &ops] {
        let r = as_person(
            &app,
            Method::PATCH,
            &format!("/v1/environments/{env}"),
            &who.token,
            Some(json!({ "name": "Acme" })),
            BOB_AGENT,
            BOB_IP,
        )
        .await;
        assert!(r.status.is_success() || r.status == StatusCode::FORBIDDEN);
    }
    let erase = |by: &str, whom: &str| {
        let path = format!("/v1/environments/{env}/members/{whom}/erasure");
        let by = by.to_owned();
        let app = &app;
        async move { app.post(&path, &by, json!({})).await }
    };
    let refused = [
        (&ops, &admin, "a members.manage-only role erasing an admin"),
        (&ops, &owner, "a members.manage-only role erasing the owner"),
        (&admin, &owner, "an admin erasing the owner"),
    ];
    for (by, whom, what) in refused {
        let r = erase(&by.token, &whom.id).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{what}: {:?}", r.body);
        assert_eq!(r.code(), "role_access_denied", "{what}");
    }
    assert!(
        !app.audit_actions(&env)
            .await
            .iter()
            .any(|a| a["action"] == "subject.erased"),
        "a refused erasure writes no erasure entry"
    );
    // Nothing was destroyed: the admin's and the owner's metadata still read in clear.
    let log = entries(&app, &env, &owner.token).await;
    for who in [&owner, &admin] {
        assert!(
            log.iter()
                .any(|e| e["actor_id"] == who.id.as_str() && e["ip"] == BOB_IP),
            "{}'s data survives refused erasures",
            who.id
        );
    }

    // What the rule allows: an admin erases the custom-role member (who holds less), a person
    // erases their own data, the owner erases the admin.
    let r = erase(&admin.token, &ops.id).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let r = erase(&admin.token, &admin.id).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let r = erase(&owner.token, &owner.id).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
}
