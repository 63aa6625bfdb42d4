//! Personal data at rest attacked end to end (control E2): identity emails and display names
//! and invitation emails are sealed under the platform PII key and found by blind index.

use crate::support::{self, owner_pool, request, with_body, TestApp, PASSWORD};
use axum::http::{Method, StatusCode};
use serde_json::json;

async fn login(app: &TestApp, email: &str) -> support::Reply {
    app.call(
        Method::POST,
        "/v1/auth/login",
        None,
        Some(json!({ "email": email, "password": PASSWORD })),
    )
    .await
}

/// Control E2: emails and display names never reach the database in clear, yet login (by
/// blind index, in any letter case), member listings and invitations work.
#[tokio::test]
async fn e2_personal_data_is_sealed_and_found_by_blind_index() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@example.com").await;
    let email = "marker-ada-7c1e@example.com";
    let name = "MARKER Ada Lovelace 3b9d";
    let ada = app
        .signup_with(json!({ "email": email, "password": PASSWORD, "display_name": name }))
        .await;
    let env = app.create_environment(&owner, "Acme").await;
    app.add_member(&owner, &env, &ada, "viewer").await;
    let invitee = "marker-invitee-42aa@example.com";
    let r = app
        .post(
            &format!("/v1/environments/{env}/invitations"),
            &owner.token,
            json!({ "email": invitee, "role": "viewer" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["invitation"]["email"], invitee);

    // The same email twice, in any letter case, creates no second account (the unique blind
    // index); sign-up answers as it does for a new email (issue 12, item 6).
    let r = app
        .call(
            Method::POST,
            "/v1/auth/signup",
            None,
            Some(json!({ "email": "Marker-Ada-7C1E@Example.com", "password": PASSWORD })),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);

    let dump = app.pg_dump();
    assert!(dump.contains("COPY public.identities"), "dump looks empty");
    for plain in [email, name, invitee, "owner@example.com"] {
        assert!(
            !dump.contains(plain),
            "personal data {plain:?} found in pg_dump output"
        );
    }
    let mut admin = app.db.admin_conn().await;
    let clear: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM identities WHERE email IS NOT NULL OR display_name IS NOT NULL)
              + (SELECT count(*) FROM invitations WHERE email IS NOT NULL)",
    )
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert_eq!(clear, 0);
    let accounts: i64 = sqlx::query_scalar("SELECT count(*) FROM identities")
        .fetch_one(&mut admin)
        .await
        .unwrap();
    assert_eq!(accounts, 2, "owner and Ada, no second Ada");

    // Login finds the account by blind index, whatever the letter case.
    let r = login(&app, "MARKER-ADA-7c1e@EXAMPLE.com").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["session"]["identity"]["email"], email);
    assert_eq!(r.body["session"]["identity"]["display_name"], name);
    // A wrong password and an unknown email still look the same.
    let wrong = app
        .call(
            Method::POST,
            "/v1/auth/login",
            None,
            Some(json!({ "email": email, "password": "not the password at all" })),
        )
        .await;
    let unknown = login(&app, "nobody-9f0e@example.com").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(unknown.status, wrong.status);
    assert_eq!(unknown.body, wrong.body);

    let members = app
        .get(&format!("/v1/environments/{env}/members"), &owner.token)
        .await;
    assert_eq!(members.status, StatusCode::OK, "{:?}", members.body);
    let listed = members.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["identity_id"] == ada.id.as_str())
        .unwrap()
        .clone();
    assert_eq!(listed["email"], email);
    assert_eq!(listed["display_name"], name);
    let invitations = app
        .get(&format!("/v1/environments/{env}/invitations"), &owner.token)
        .await;
    let emails: Vec<&str> = invitations.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["email"].as_str().unwrap())
        .collect();
    assert!(emails.contains(&invitee), "{emails:?}");
    // Inviting a member again is still recognised through the index.
    let r = app
        .post(
            &format!("/v1/environments/{env}/invitations"),
            &owner.token,
            json!({ "email": "MARKER-ada-7c1e@example.com", "role": "viewer" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{:?}", r.body);
}

/// Control E2: a sealed email or name moved to another account's row is refused with an
/// integrity error; it is never shown as the other account's.
#[tokio::test]
async fn e2_swapped_personal_ciphertext_is_refused() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@example.com").await;
    let bob = app.signup("bob@example.com").await;
    let env = app.create_environment(&owner, "Acme").await;
    app.add_member(&owner, &env, &bob, "viewer").await;
    let mut admin = app.db.admin_conn().await;
    sqlx::query(
        "UPDATE identities SET email_ciphertext = (SELECT email_ciphertext FROM identities WHERE identity_id = $1::uuid)
          WHERE identity_id = $2::uuid",
    )
    .bind(&owner.id)
    .bind(&bob.id)
    .execute(&mut admin)
    .await
    .unwrap();
    let r = app
        .get(&format!("/v1/environments/{env}/members"), &owner.token)
        .await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{:?}", r.body);
    assert_eq!(r.code(), "integrity_error");
    assert!(!r.body.to_string().contains("owner@example.com"));
    // The victim's own profile is refused the same way.
    let r = app.get("/v1/me", &bob.token).await;
    assert_eq!(r.code(), "integrity_error", "{:?}", r.body);
}

/// Control E2: rows written in clear by an earlier version are sealed at start by the
/// operator, whose policies let it see only such rows.
#[tokio::test]
async fn e2_legacy_personal_data_is_sealed_at_start() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@example.com").await;
    let carol = app.signup("carol@example.com").await;
    let env = app.create_environment(&owner, "Acme").await;
    app.add_member(&owner, &env, &carol, "viewer").await;
    let r = app
        .post(
            &format!("/v1/environments/{env}/invitations"),
            &owner.token,
            json!({ "email": "dave@example.com", "role": "viewer" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    // Turn Carol and the invitation back into rows as the previous version wrote them.
    let mut admin = app.db.admin_conn().await;
    sqlx::query(
        "UPDATE identities SET email = 'carol@example.com', display_name = 'Carol Legacy', email_index = NULL,
                email_ciphertext = NULL, display_name_ciphertext = NULL, pii_key_version = NULL
          WHERE identity_id = $1::uuid",
    )
    .bind(&carol.id)
    .execute(&mut admin)
    .await
    .unwrap();
    sqlx::query(
        "UPDATE invitations SET email = 'dave@example.com', email_index = NULL, email_ciphertext = NULL, pii_key_version = NULL",
    )
    .execute(&mut admin)
    .await
    .unwrap();
    let legacy_sessions = sqlx::query(
        "UPDATE sessions SET ip = '203.0.113.9', user_agent = 'Legacy Agent 7d1c' WHERE identity_id = $1::uuid",
    )
    .bind(&carol.id)
    .execute(&mut admin)
    .await
    .unwrap()
    .rows_affected();
    assert!(legacy_sessions >= 1);

    // The operator may clear plaintext, nothing else: it cannot touch a sealed row, nor write
    // plaintext into a legacy one.
    let mut owner_conn = app.db.owner_conn().await;
    let touched =
        sqlx::query("UPDATE identities SET password_hash = 'x' WHERE identity_id = $1::uuid")
            .bind(&owner.id)
            .execute(&mut owner_conn)
            .await
            .unwrap();
    assert_eq!(
        touched.rows_affected(),
        0,
        "a sealed row was updated by the operator"
    );
    let sneaky =
        sqlx::query("UPDATE identities SET display_name = 'renamed' WHERE identity_id = $1::uuid")
            .bind(&carol.id)
            .execute(&mut owner_conn)
            .await;
    assert!(
        sneaky.is_err(),
        "the operator may only clear plaintext, not write it"
    );
    let deleted = sqlx::query("DELETE FROM identities WHERE identity_id = $1::uuid")
        .bind(&carol.id)
        .execute(&mut owner_conn)
        .await
        .unwrap();
    assert_eq!(
        deleted.rows_affected(),
        0,
        "the operator deleted an identity"
    );

    let pool = owner_pool(&app.db).await;
    let store = app.db.store().await;
    let sealed = portcullis_store::pii::seal_legacy(&pool, &store, &app.vault)
        .await
        .unwrap();
    assert_eq!(sealed.identities, 1);
    // Both invitations of the environment (Carol's accepted one and Dave's) were reset.
    assert_eq!(sealed.invitations, 2);
    // Idempotent.
    assert_eq!(sealed.sessions, legacy_sessions);
    let again = portcullis_store::pii::seal_legacy(&pool, &store, &app.vault)
        .await
        .unwrap();
    assert_eq!(again, Default::default());

    let dump = app.pg_dump();
    for plain in [
        "carol@example.com",
        "Carol Legacy",
        "dave@example.com",
        "Legacy Agent 7d1c",
        "203.0.113.9",
    ] {
        assert!(!dump.contains(plain), "{plain:?} still in clear");
    }
    let r = login(&app, "carol@example.com").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(
        r.body["session"]["identity"]["display_name"],
        "Carol Legacy"
    );
    // Carol still sees where her old session came from.
    let sessions = app.get("/v1/me/sessions", &carol.token).await;
    assert!(
        sessions
            .body
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["ip"] == "203.0.113.9" && s["user_agent"] == "Legacy Agent 7d1c"),
        "{:?}",
        sessions.body
    );
    let invitations = app
        .get(&format!("/v1/environments/{env}/invitations"), &owner.token)
        .await;
    assert!(
        invitations.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["email"] == "dave@example.com"),
        "{:?}",
        invitations.body
    );
}

/// Control E5: rotating the local root key rewraps the platform keys as well as every
/// environment's data keys; nothing stays wrapped by the old root and everything still opens.
#[tokio::test]
async fn e5_root_rotation_rewraps_platform_keys() {
    let app = TestApp::spawn().await;
    let owner = app.signup("root-owner@example.com").await;
    let env = app.create_environment(&owner, "Acme").await;
    let p = app.create_project(&owner, &env, "p").await;
    app.create_document(&owner, &env, &p, "doc").await;
    let store = app.db.store().await;
    let pool = owner_pool(&app.db).await;
    let (name, envs) = portcullis_service::jobs::rotate_root(&store, &pool, &app.vault)
        .await
        .unwrap();
    assert_eq!(envs.len(), 1);
    let mut admin = app.db.admin_conn().await;
    let keks: Vec<String> = sqlx::query_scalar(
        "SELECT kek->>'name' FROM platform_keys UNION ALL SELECT kek->>'name' FROM data_keys",
    )
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert!(keks.len() >= 3, "{keks:?}");
    assert!(keks.iter().all(|k| *k == name), "{keks:?} vs {name}");
    // Unwrapped afresh under the new root, everything still opens.
    app.vault.forget_platform();
    app.vault.forget(
        portcullis_core::EnvironmentId::parse(&env)
            .unwrap()
            .as_uuid(),
    );
    let r = login(&app, "root-owner@example.com").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let docs = app
        .get(
            &format!("/v1/environments/{env}/projects/{p}/documents"),
            &owner.token,
        )
        .await;
    assert_eq!(docs.body["items"][0]["body"], "text");
    app.db.sequence(portcullis_store::PLATFORM_SCOPE).await;
    let platform_events: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_log WHERE environment_id = '00000000-0000-0000-0000-000000000000'
            AND action = 'keys.root_rotated'",
    )
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert_eq!(platform_events, 1);
}

/// Control E5 for the platform keyring: rotating the PII key re-seals every account,
/// invitation and subject key under the new version; logins, listings and sealed audit
/// metadata still open, and the operator could not move a subject key to another person.
#[tokio::test]
async fn e5_pii_key_rotation_reseals_everything() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@example.com").await;
    let bob = app.signup("bob@example.com").await;
    let env = app.create_environment(&owner, "Acme").await;
    app.add_member(&owner, &env, &bob, "viewer").await;
    let r = app
        .post(
            &format!("/v1/environments/{env}/invitations"),
            &owner.token,
            json!({ "email": "carol@example.com", "role": "viewer" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    // A request with a user agent gives the owner a subject key in the environment.
    let req = with_body(
        request(
            Method::POST,
            &format!("/v1/environments/{env}/projects"),
            Some(&owner.token),
        )
        .header(axum::http::header::USER_AGENT, "rotation-agent"),
        Some(json!({ "name": "p" })),
    );
    assert_eq!(app.send(req).await.status, StatusCode::CREATED);

    let store = app.db.store().await;
    let pool = owner_pool(&app.db).await;
    // The rotation runs on "another node": a vault of its own over the same key provider, so
    // the server's cached platform keys go stale and must be refreshed on first need.
    let other_node = portcullis_store::vault::Vault::new(
        app.vault.providers().clone(),
        portcullis_store::vault::VaultConfig {
            default_kek: app.vault.default_kek().clone(),
            cache_ttl: std::time::Duration::from_secs(300),
            cache_max_entries: 100,
        },
    );
    let mut seen = vec![];
    let done = portcullis_store::pii::rotate(&pool, &store, &other_node, |p| seen.push(*p))
        .await
        .unwrap();
    assert_eq!(done.version, 2);
    assert_eq!(done.identities, 2);
    assert_eq!(done.invitations, 2, "Bob's accepted invitation and Carol's");
    assert!(done.subject_keys >= 1);
    assert!(!seen.is_empty(), "progress is reported");
    let mut admin = app.db.admin_conn().await;
    let old: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM identities WHERE pii_key_version <> 2)
              + (SELECT count(*) FROM invitations WHERE pii_key_version <> 2)
              + (SELECT count(*) FROM subject_keys WHERE pii_key_version <> 2)",
    )
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert_eq!(old, 0);
    // Idempotent apart from the new version.
    let again = portcullis_store::pii::rotate(&pool, &store, &other_node, |_| {})
        .await
        .unwrap();
    assert_eq!(again.version, 3);
    let st = portcullis_store::pii::status(&pool).await.unwrap();
    let versions: Vec<(i32, bool, i64, i64)> = st
        .pii_versions
        .iter()
        .map(|v| (v.version, v.active, v.identities, v.invitations))
        .collect();
    assert_eq!(
        versions,
        vec![(1, false, 0, 0), (2, false, 0, 0), (3, true, 2, 2)]
    );
    assert!(st.email_index_kek.is_some());
    assert_eq!((st.clear_identities, st.clear_invitations), (0, 0));

    // The server never dropped its cache: it notices the new versions by itself.
    let r = login(&app, "bob@example.com").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let members = app
        .get(&format!("/v1/environments/{env}/members"), &owner.token)
        .await;
    assert_eq!(members.status, StatusCode::OK, "{:?}", members.body);
    let invitations = app
        .get(&format!("/v1/environments/{env}/invitations"), &owner.token)
        .await;
    assert!(invitations.body.to_string().contains("carol@example.com"));
    let audit = app
        .get(
            &format!("/v1/environments/{env}/audit?limit=100"),
            &owner.token,
        )
        .await;
    assert!(
        audit.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["user_agent"] == "rotation-agent"),
        "{:?}",
        audit.body
    );

    // The operator may replace a subject key's sealed form, never give it to someone else.
    let mut owner_conn = app.db.owner_conn().await;
    let moved = sqlx::query("UPDATE subject_keys SET subject_id = $1::uuid")
        .bind(&bob.id)
        .execute(&mut owner_conn)
        .await;
    assert!(moved.is_err(), "a subject key was moved to another person");
}
