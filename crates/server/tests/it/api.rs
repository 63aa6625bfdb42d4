//! API behaviour, attacked through the real router (controls E3, R1-R5, R8, T1, L7, E1).

use crate::support::{TestApp, PASSWORD};
use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use portcullis_server::app::Limits;
use portcullis_service::config::AuthConfig;
use serde_json::json;

/// Control E3: login returns a prefixed session token, also in an HttpOnly, Secure,
/// SameSite=Strict cookie; the database holds only its SHA-256.
#[tokio::test]
async fn e3_login_sets_hardened_cookie_and_stores_only_hashes() {
    let app = TestApp::spawn().await;
    let user = app.signup("ada@example.com").await;
    assert!(user.token.starts_with("pcs_sess_"));
    let r = app
        .call(
            Method::POST,
            "/v1/auth/login",
            None,
            Some(json!({ "email": "ADA@example.com", "password": PASSWORD })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let cookie = r.headers.get(header::SET_COOKIE).unwrap().to_str().unwrap();
    for part in [
        "portcullis_session=pcs_sess_",
        "HttpOnly",
        "Secure",
        "SameSite=Strict",
        "Path=/",
    ] {
        assert!(cookie.contains(part), "{cookie}");
    }
    let token = r.body["session"]["token"].as_str().unwrap().to_owned();
    // The cookie works as a credential too.
    let req = Request::builder()
        .uri("/v1/me")
        .header(header::COOKIE, format!("portcullis_session={token}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(app.send(req).await.status, StatusCode::OK);

    let env = app.create_environment(&user, "Acme").await;
    let api = app
        .post(
            &format!("/v1/environments/{env}/tokens"),
            &user.token,
            json!({ "name": "ci", "role": "viewer" }),
        )
        .await;
    let api_token = api.body["token"].as_str().unwrap().to_owned();
    let inv = app
        .post(
            &format!("/v1/environments/{env}/invitations"),
            &user.token,
            json!({ "email": "bob@example.com", "role": "viewer" }),
        )
        .await;
    let inv_token = inv.body["token"].as_str().unwrap().to_owned();

    // No plaintext token anywhere in the database; the hashes are there.
    let mut conn = app.db.admin_conn().await;
    let dump: String = sqlx::query_scalar(
        "SELECT concat_ws('|', (SELECT string_agg(s::text, ',') FROM sessions s), (SELECT string_agg(t::text, ',') FROM api_tokens t),
                              (SELECT string_agg(i::text, ',') FROM invitations i), (SELECT string_agg(a::text, ',') FROM audit_log a))",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    for secret in [&user.token, &token, &api_token, &inv_token] {
        assert!(!dump.contains(secret.as_str()), "plaintext token stored");
        let hash = portcullis_crypto::TokenHash::of(secret).to_hex();
        assert!(dump.contains(&hash), "hash of a token missing");
    }
}

/// Control E3 / L7: wrong password and unknown email are indistinguishable; every attempt
/// is audited; repeated failures back off even with the right password.
#[tokio::test]
async fn e3_login_errors_reveal_nothing_and_back_off() {
    let auth = AuthConfig {
        lockout_threshold: 3,
        ..AuthConfig::default()
    };
    let app = TestApp::spawn_with(auth, Limits::default()).await;
    let r = app
        .call(
            Method::POST,
            "/v1/auth/signup",
            None,
            Some(json!({ "email": "ada@example.com", "password": PASSWORD })),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    let wrong = app
        .call(
            Method::POST,
            "/v1/auth/login",
            None,
            Some(json!({ "email": "ada@example.com", "password": "not the password at all" })),
        )
        .await;
    let unknown = app
        .call(
            Method::POST,
            "/v1/auth/login",
            None,
            Some(json!({ "email": "nobody@example.com", "password": "not the password at all" })),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.status, unknown.status);
    assert_eq!(wrong.body, unknown.body);
    for _ in 0..3 {
        app.call(
            Method::POST,
            "/v1/auth/login",
            None,
            Some(json!({ "email": "ada@example.com", "password": "still wrong password" })),
        )
        .await;
    }
    // Locked: even the right password is refused for now, with the same answer.
    let locked = app
        .call(
            Method::POST,
            "/v1/auth/login",
            None,
            Some(json!({ "email": "ada@example.com", "password": PASSWORD })),
        )
        .await;
    assert_eq!(locked.status, StatusCode::UNAUTHORIZED);
    assert_eq!(locked.body, unknown.body);
    app.db.sequence(portcullis_store::PLATFORM_SCOPE).await;
    let mut conn = app.db.admin_conn().await;
    let failures: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE action = 'auth.login_failed'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(failures, 6);
    let logins: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_log WHERE action = 'auth.login' AND outcome = 'success'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(logins, 0);
}

/// Keys of a JSON object, sorted.
fn keys(v: &serde_json::Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    k.sort();
    k
}

/// Control E3 (issue 12, items 3 and 5): first-run setup answers the session at `session`,
/// in the same shape as login and a password change; a wrong or used setup token is 401
/// `setup_token_invalid`, not a permission refusal.
#[tokio::test]
async fn e3_setup_answers_the_sign_in_shape_and_refuses_bad_tokens_with_401() {
    use portcullis_crypto::token::{self, TokenKind};
    let app = TestApp::spawn().await;
    let (setup_token, hash) = token::generate(TokenKind::Setup);
    let mut tx = app
        .db
        .store()
        .await
        .auth(portcullis_store::RequestMeta::default())
        .await
        .unwrap();
    portcullis_store::queries::installation::set_setup_token(&mut tx, &hash)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let setup = |token: &str| {
        json!({ "setup_token": token, "email": "ada@example.com", "password": PASSWORD,
                "environment_name": "Acme", "region": "eu-central" })
    };

    for wrong in ["pcs_setup_not-the-token", "not even a setup token"] {
        let r = app
            .call(Method::POST, "/v1/setup", None, Some(setup(wrong)))
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{:?}", r.body);
        assert_eq!(r.code(), "setup_token_invalid");
        assert!(r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("setup token"));
    }

    let done = app
        .call(
            Method::POST,
            "/v1/setup",
            None,
            Some(setup(setup_token.expose())),
        )
        .await;
    assert_eq!(done.status, StatusCode::CREATED, "{:?}", done.body);
    assert_eq!(keys(&done.body), ["environment", "session"]);
    assert!(done.body.get("token").is_none());
    let session = &done.body["session"];
    assert!(session["token"].as_str().unwrap().starts_with("pcs_sess_"));
    assert_eq!(done.body["environment"]["region"], "eu-central");
    let token = session["token"].as_str().unwrap();
    assert_eq!(app.get("/v1/me", token).await.status, StatusCode::OK);

    let login = app.login("ada@example.com", PASSWORD).await;
    let r = app
        .call(
            Method::POST,
            "/v1/auth/login",
            None,
            Some(json!({ "email": "ada@example.com", "password": PASSWORD })),
        )
        .await;
    assert_eq!(keys(&r.body), ["session"]);
    assert_eq!(keys(&r.body["session"]), keys(session));
    assert_eq!(
        keys(&r.body["session"]["identity"]),
        keys(&session["identity"])
    );
    let changed = app
        .put(
            "/v1/me/password",
            &login.token,
            json!({ "current_password": PASSWORD, "new_password": "another long password" }),
        )
        .await;
    assert_eq!(changed.status, StatusCode::OK, "{:?}", changed.body);
    assert_eq!(keys(&changed.body), ["session"]);
    assert_eq!(keys(&changed.body["session"]), keys(session));

    // Used: the same answer as a wrong token.
    let again = app
        .call(
            Method::POST,
            "/v1/setup",
            None,
            Some(setup(setup_token.expose())),
        )
        .await;
    assert_eq!(again.status, StatusCode::UNAUTHORIZED, "{:?}", again.body);
    assert_eq!(again.code(), "setup_token_invalid");
}

/// Control D1 (issue 12, item 5): an environment's region must be one the operator
/// configured (by default the one region of `portcullis.example.toml`); any other is refused
/// with 400 `region_unknown` naming the regions on offer, and no environment is created.
#[tokio::test]
async fn d1_environments_are_created_only_in_configured_regions() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@example.com").await;
    let r = app
        .post(
            "/v1/environments",
            &owner.token,
            json!({ "name": "Outpost", "region": "mars" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r.body);
    assert_eq!(r.code(), "region_unknown");
    let message = r.body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("\"mars\"") && message.contains("eu-central"),
        "{message}"
    );
    let mine = app.get("/v1/environments", &owner.token).await;
    assert_eq!(mine.body.as_array().unwrap().len(), 0, "{:?}", mine.body);
    app.create_environment(&owner, "Acme").await;
}

/// Control E3 (issue 12, item 6): sign-up does not tell whether an email has an account. A
/// second sign-up with a taken email, in any letter case, answers exactly as the first did,
/// creates nothing and leaves the account as it was: its password still signs in, the new one
/// does not. The attempt is audited in the platform scope.
#[tokio::test]
async fn e3_signup_does_not_reveal_existing_accounts() {
    let app = TestApp::spawn().await;
    let signup = |email: &str, password: &str, name: &str| {
        app.call(
            Method::POST,
            "/v1/auth/signup",
            None,
            Some(json!({ "email": email, "password": password, "display_name": name })),
        )
    };
    let first = signup("ada@example.com", PASSWORD, "Ada").await;
    let second = signup("ADA@example.com", "mallory's own password", "Mallory").await;
    let fresh = signup("bob@example.com", PASSWORD, "Bob").await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{:?}", first.body);
    for r in [&second, &fresh] {
        assert_eq!(r.status, first.status);
        assert_eq!(r.body, first.body);
        assert_eq!(
            r.headers.get(header::SET_COOKIE),
            None,
            "sign-up issues no session"
        );
    }
    assert!(first.body.get("session").is_none() && first.body.get("token").is_none());

    let ada = app.login("ada@example.com", PASSWORD).await;
    let me = app.get("/v1/me", &ada.token).await;
    assert_eq!(me.body["identity"]["display_name"], "Ada");
    let r = app
        .call(
            Method::POST,
            "/v1/auth/login",
            None,
            Some(json!({ "email": "ada@example.com", "password": "mallory's own password" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    app.db.sequence(portcullis_store::PLATFORM_SCOPE).await;
    let mut conn = app.db.admin_conn().await;
    let accounts: i64 = sqlx::query_scalar("SELECT count(*) FROM identities")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(accounts, 2, "ada and bob only");
    let (signed_up, refused): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE action = 'identity.signed_up'),
                count(*) FILTER (WHERE action = 'identity.signup_existing' AND outcome = 'failure')
           FROM audit_log",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!((signed_up, refused), (2, 1));
}

/// Control E3: sessions can be listed and revoked; a password change revokes them all;
/// logout ends the session; forged tokens are refused.
#[tokio::test]
async fn e3_sessions_are_revocable() {
    let app = TestApp::spawn().await;
    let ada = app.signup("ada@example.com").await;
    let second = app
        .call(
            Method::POST,
            "/v1/auth/login",
            None,
            Some(json!({ "email": "ada@example.com", "password": PASSWORD })),
        )
        .await;
    let second = second.body["session"]["token"].as_str().unwrap().to_owned();
    let list = app.get("/v1/me/sessions", &ada.token).await;
    assert_eq!(list.body.as_array().unwrap().len(), 2);
    assert_eq!(
        list.body
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["current"] == true)
            .count(),
        1
    );
    let other_id = list
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["current"] == false)
        .unwrap()["session_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        app.delete(&format!("/v1/me/sessions/{other_id}"), &ada.token)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.get("/v1/me", &second).await.status,
        StatusCode::UNAUTHORIZED
    );

    // Another identity cannot revoke Ada's session.
    let eve = app.signup("eve@example.com").await;
    let list = app.get("/v1/me/sessions", &ada.token).await;
    let ada_session = list.body[0]["session_id"].as_str().unwrap().to_owned();
    assert_eq!(
        app.delete(&format!("/v1/me/sessions/{ada_session}"), &eve.token)
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    // Password change: wrong current password refused; right one revokes every session.
    let bad = app.put("/v1/me/password", &ada.token, json!({ "current_password": "wrong wrong wrong", "new_password": "another long password" })).await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    let ok = app
        .put(
            "/v1/me/password",
            &ada.token,
            json!({ "current_password": PASSWORD, "new_password": "another long password" }),
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{:?}", ok.body);
    assert_eq!(
        app.get("/v1/me", &ada.token).await.status,
        StatusCode::UNAUTHORIZED
    );
    let fresh = ok.body["session"]["token"].as_str().unwrap().to_owned();
    assert_eq!(app.get("/v1/me", &fresh).await.status, StatusCode::OK);
    let relogin = app
        .call(
            Method::POST,
            "/v1/auth/login",
            None,
            Some(json!({ "email": "ada@example.com", "password": PASSWORD })),
        )
        .await;
    assert_eq!(relogin.status, StatusCode::UNAUTHORIZED);

    assert_eq!(
        app.call(Method::POST, "/v1/auth/logout", Some(&fresh), None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.get("/v1/me", &fresh).await.status,
        StatusCode::UNAUTHORIZED
    );

    // Forged and malformed tokens.
    let (forged, _) = portcullis_crypto::token::generate(portcullis_crypto::TokenKind::Session);
    for t in [forged.expose(), "pcs_sess_short", "garbage", ""] {
        assert_eq!(
            app.get("/v1/me", t).await.status,
            StatusCode::UNAUTHORIZED,
            "{t}"
        );
    }
    assert_eq!(
        app.call(Method::GET, "/v1/me", None, None).await.code(),
        "unauthenticated"
    );
}

/// Control E3: an invitation is single-use, bound to the invited email, and revocable.
#[tokio::test]
async fn e3_invitations_are_single_use_and_bound_to_email() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@example.com").await;
    let env = app.create_environment(&owner, "Acme").await;
    let bob = app.signup("bob@example.com").await;
    let eve = app.signup("eve@example.com").await;
    let r = app
        .post(
            &format!("/v1/environments/{env}/invitations"),
            &owner.token,
            json!({ "email": "bob@example.com", "role": "contributor" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let token = r.body["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("pcs_inv_"));
    let r = app
        .post(
            "/v1/invitations/accept",
            &eve.token,
            json!({ "token": token }),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);
    let r = app
        .post(
            "/v1/invitations/accept",
            &bob.token,
            json!({ "token": token }),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["role"], "contributor");
    let r = app
        .post(
            "/v1/invitations/accept",
            &bob.token,
            json!({ "token": token }),
        )
        .await;
    assert_eq!(r.status, StatusCode::GONE);
    // Revoked invitations cannot be used.
    let r = app
        .post(
            &format!("/v1/environments/{env}/invitations"),
            &owner.token,
            json!({ "email": "eve@example.com", "role": "viewer" }),
        )
        .await;
    let (id, token) = (
        r.body["invitation"]["invitation_id"]
            .as_str()
            .unwrap()
            .to_owned(),
        r.body["token"].as_str().unwrap().to_owned(),
    );
    assert_eq!(
        app.delete(
            &format!("/v1/environments/{env}/invitations/{id}"),
            &owner.token
        )
        .await
        .status,
        StatusCode::OK
    );
    assert_eq!(
        app.post(
            "/v1/invitations/accept",
            &eve.token,
            json!({ "token": token })
        )
        .await
        .status,
        StatusCode::GONE
    );
    // A made-up token names nothing.
    let (fake, _) = portcullis_crypto::token::generate(portcullis_crypto::TokenKind::Invitation);
    assert_eq!(
        app.post(
            "/v1/invitations/accept",
            &eve.token,
            json!({ "token": fake.expose() })
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
    // Expired: move the clock of the stored row back.
    let r = app
        .post(
            &format!("/v1/environments/{env}/invitations"),
            &owner.token,
            json!({ "email": "eve@example.com", "role": "viewer" }),
        )
        .await;
    let token = r.body["token"].as_str().unwrap().to_owned();
    let invitation_id: uuid::Uuid = r.body["invitation"]["invitation_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let mut conn = app.db.admin_conn().await;
    sqlx::query(
        "UPDATE invitations SET expires_at = now() - interval '1 minute' WHERE invitation_id = $1",
    )
    .bind(invitation_id)
    .execute(&mut conn)
    .await
    .unwrap();
    let r = app
        .post(
            "/v1/invitations/accept",
            &eve.token,
            json!({ "token": token }),
        )
        .await;
    assert_eq!(r.status, StatusCode::GONE);
    assert!(r.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("expired"));
}

/// Controls R1, R2, R5: exactly one owner; the owner cannot be removed or demoted except by
/// transfer; nobody grants what they do not hold; role changes are audited before/after.
#[tokio::test]
async fn r1_r2_r5_owner_rules_escalation_and_audited_role_changes() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@example.com").await;
    let env = app.create_environment(&owner, "Acme").await;
    let admin = app.signup("admin@example.com").await;
    let carol = app.signup("carol@example.com").await;
    app.add_member(&owner, &env, &admin, "admin").await;
    app.add_member(&owner, &env, &carol, "viewer").await;
    let base = format!("/v1/environments/{env}/members");

    // The owner seat cannot be granted, and the owner cannot be demoted or removed.
    let r = app
        .patch(
            &format!("{base}/{}", carol.id),
            &admin.token,
            json!({ "role": "owner" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{:?}", r.body);
    let r = app
        .patch(
            &format!("{base}/{}", owner.id),
            &admin.token,
            json!({ "role": "viewer" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(
        app.delete(&format!("{base}/{}", owner.id), &admin.token)
            .await
            .status,
        StatusCode::CONFLICT
    );

    // An admin cannot create a custom role with the owner's powers, nor one with powers the admin lacks.
    let r = app
        .post(
            &format!("/v1/environments/{env}/roles"),
            &admin.token,
            json!({ "name": "superuser", "permissions": ["environment.delete"] }),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // A contributor-level manager: custom role with members.manage but not tokens.manage.
    let r = app.post(&format!("/v1/environments/{env}/roles"), &owner.token, json!({ "name": "people-ops", "permissions": ["environment.read", "members.read", "members.manage"] })).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let people_ops = format!("custom:{}", r.body["role_id"].as_str().unwrap());
    app.patch(
        &format!("{base}/{}", carol.id),
        &owner.token,
        json!({ "role": people_ops }),
    )
    .await;
    let dave = app.signup("dave@example.com").await;
    let r = app
        .post(
            &format!("/v1/environments/{env}/invitations"),
            &carol.token,
            json!({ "email": dave.email, "role": "admin" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.code(), "role_access_denied");
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("tokens.manage"),
        "{:?}",
        r.body
    );
    // Carol cannot demote the admin (who holds more than she does).
    let r = app
        .patch(
            &format!("{base}/{}", admin.id),
            &carol.token,
            json!({ "role": "viewer" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // Transfer: the old owner becomes admin, the new one owner, exactly one owner remains.
    let r = app
        .post(
            &format!("/v1/environments/{env}/ownership-transfer"),
            &admin.token,
            json!({ "identity_id": admin.id }),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = app
        .post(
            &format!("/v1/environments/{env}/ownership-transfer"),
            &owner.token,
            json!({ "identity_id": admin.id }),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["role"], "owner");
    let members = app.get(&base, &admin.token).await;
    let owners: Vec<_> = members.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "owner")
        .collect();
    assert_eq!(owners.len(), 1);
    assert_eq!(owners[0]["identity_id"], admin.id.as_str());

    // R5: the role change was audited with prior and new value.
    let audit = app.audit_actions(&env).await;
    let change = audit
        .iter()
        .find(|e| e["action"] == "member.role_changed")
        .unwrap();
    assert_eq!(change["before"]["role"], "viewer");
    assert_eq!(change["after"]["role"], people_ops.as_str());
    assert!(audit.iter().any(|e| e["action"] == "ownership.transferred"));
}

/// Control R3: contributor on project 1 and viewer on project 2 for the same person.
#[tokio::test]
async fn r3_project_grants_scope_permissions_per_project() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@example.com").await;
    let env = app.create_environment(&owner, "Acme").await;
    let p1 = app.create_project(&owner, &env, "one").await;
    let p2 = app.create_project(&owner, &env, "two").await;
    let p3 = app.create_project(&owner, &env, "three").await;
    let d2 = app.create_document(&owner, &env, &p2, "two's doc").await;
    let guest = app.signup("guest@example.com").await;
    app.add_member(&owner, &env, &guest, "guest").await;
    let g = |p: &str| format!("/v1/environments/{env}/projects/{p}/grants/{}", guest.id);
    assert_eq!(
        app.put(&g(&p1), &owner.token, json!({ "role": "contributor" }))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        app.put(&g(&p2), &owner.token, json!({ "role": "viewer" }))
            .await
            .status,
        StatusCode::OK
    );
    // Admin-level roles cannot be granted per project.
    assert_eq!(
        app.put(&g(&p3), &owner.token, json!({ "role": "admin" }))
            .await
            .status,
        StatusCode::BAD_REQUEST
    );

    let docs = |p: &str| format!("/v1/environments/{env}/projects/{p}/documents");
    // Project 1: can write.
    let r = app
        .post(&docs(&p1), &guest.token, json!({ "title": "mine" }))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    // Project 2: can read, cannot write.
    assert_eq!(
        app.get(&format!("{}/{d2}", docs(&p2)), &guest.token)
            .await
            .status,
        StatusCode::OK
    );
    let r = app
        .post(&docs(&p2), &guest.token, json!({ "title": "nope" }))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.code(), "role_access_denied");
    let r = app
        .patch(
            &format!("{}/{d2}", docs(&p2)),
            &guest.token,
            json!({ "title": "changed" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // Project 3: nothing.
    assert_eq!(
        app.get(&docs(&p3), &guest.token).await.status,
        StatusCode::FORBIDDEN
    );
    // The project list shows only granted projects.
    let list = app
        .get(&format!("/v1/environments/{env}/projects"), &guest.token)
        .await;
    let mut names: Vec<&str> = list.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, vec!["one", "two"]);
    // A document of project 2 cannot be reached through project 1's path.
    assert_eq!(
        app.get(&format!("{}/{d2}", docs(&p1)), &guest.token)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    // Removing the grant removes the access.
    assert_eq!(
        app.delete(&g(&p1), &owner.token).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.post(&docs(&p1), &guest.token, json!({ "title": "again" }))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
}

/// Control R4: custom roles grant exactly their permissions, and changing the role changes
/// the holders' access at once.
#[tokio::test]
async fn r4_custom_roles() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@example.com").await;
    let env = app.create_environment(&owner, "Acme").await;
    let p = app.create_project(&owner, &env, "p").await;
    let r = app.post(&format!("/v1/environments/{env}/roles"), &owner.token, json!({ "name": "reader", "description": "reads", "permissions": ["environment.read", "projects.read", "documents.read"] })).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let role_id = r.body["role_id"].as_str().unwrap().to_owned();
    assert_eq!(
        app.post(
            &format!("/v1/environments/{env}/roles"),
            &owner.token,
            json!({ "name": "reader", "permissions": [] })
        )
        .await
        .status,
        StatusCode::CONFLICT
    );
    assert_eq!(
        app.post(
            &format!("/v1/environments/{env}/roles"),
            &owner.token,
            json!({ "name": "x", "permissions": ["documents.fly"] })
        )
        .await
        .status,
        StatusCode::BAD_REQUEST
    );
    let user = app.signup("user@example.com").await;
    app.add_member(&owner, &env, &user, &format!("custom:{role_id}"))
        .await;
    let docs = format!("/v1/environments/{env}/projects/{p}/documents");
    assert_eq!(app.get(&docs, &user.token).await.status, StatusCode::OK);
    assert_eq!(
        app.post(&docs, &user.token, json!({ "title": "t" }))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let r = app.patch(&format!("/v1/environments/{env}/roles/{role_id}"), &owner.token, json!({ "name": "reader", "permissions": ["environment.read", "projects.read", "documents.read", "documents.write"] })).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(
        app.post(&docs, &user.token, json!({ "title": "t" }))
            .await
            .status,
        StatusCode::CREATED
    );
    // A role in use cannot be deleted.
    assert_eq!(
        app.delete(
            &format!("/v1/environments/{env}/roles/{role_id}"),
            &owner.token
        )
        .await
        .status,
        StatusCode::CONFLICT
    );
    // Another environment's custom role is not usable here.
    let other_env = app.create_environment(&owner, "Other").await;
    let r = app
        .patch(
            &format!("/v1/environments/{other_env}/members/{}", owner.id),
            &owner.token,
            json!({ "role": format!("custom:{role_id}") }),
        )
        .await;
    assert!(
        r.status == StatusCode::BAD_REQUEST || r.status == StatusCode::CONFLICT,
        "{:?}",
        r
    );
}

/// Controls E3, T1: API tokens act only in their environment, with their role, never more
/// than their creator holds, and stop working when revoked.
#[tokio::test]
async fn e3_api_tokens_are_environment_scoped_and_revocable() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@example.com").await;
    let env = app.create_environment(&owner, "Acme").await;
    let other = app.create_environment(&owner, "Other").await;
    let p = app.create_project(&owner, &env, "p").await;
    let r = app
        .post(
            &format!("/v1/environments/{env}/tokens"),
            &owner.token,
            json!({ "name": "reader", "role": "viewer", "expires_in_days": 30 }),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let token = r.body["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("pcs_live_"));
    let id = r.body["api_token"]["token_id"].as_str().unwrap().to_owned();
    let docs = format!("/v1/environments/{env}/projects/{p}/documents");
    assert_eq!(app.get(&docs, &token).await.status, StatusCode::OK);
    assert_eq!(
        app.post(&docs, &token, json!({ "title": "t" }))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.get(&format!("/v1/environments/{other}"), &token)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get("/v1/me", &token).await.status,
        StatusCode::FORBIDDEN
    );
    // The listing never shows the token.
    let list = app
        .get(&format!("/v1/environments/{env}/tokens"), &owner.token)
        .await;
    assert!(!list.body.to_string().contains(&token));
    assert_eq!(
        app.delete(&format!("/v1/environments/{env}/tokens/{id}"), &owner.token)
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        app.get(&docs, &token).await.status,
        StatusCode::UNAUTHORIZED
    );
    // Expiry out of range is refused.
    let r = app
        .post(
            &format!("/v1/environments/{env}/tokens"),
            &owner.token,
            json!({ "name": "x", "role": "viewer", "expires_in_days": 0 }),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

/// Control E1 and the API contract: unknown fields, malformed JSON, wrong content type and
/// oversized bodies get 4xx in the one error shape; unknown routes are JSON 404s.
#[tokio::test]
async fn e1_bad_input_is_refused_in_one_error_shape() {
    let app = TestApp::spawn_with(
        AuthConfig::default(),
        Limits {
            max_body_bytes: 4096,
            ..Limits::default()
        },
    )
    .await;
    let owner = app.signup("owner@example.com").await;
    let r = app
        .post(
            "/v1/environments",
            &owner.token,
            json!({ "name": "x", "region": "eu", "extra": 1 }),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("extra"));
    let req = Request::builder()
        .method(Method::POST)
        .uri("/v1/environments")
        .header(header::AUTHORIZATION, format!("Bearer {}", owner.token))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{not json"))
        .unwrap();
    assert_eq!(app.send(req).await.code(), "malformed_json");
    let req = Request::builder()
        .method(Method::POST)
        .uri("/v1/environments")
        .header(header::AUTHORIZATION, format!("Bearer {}", owner.token))
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from("{}"))
        .unwrap();
    assert_eq!(
        app.send(req).await.status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
    let big = "x".repeat(10_000);
    let r = app
        .post(
            "/v1/environments",
            &owner.token,
            json!({ "name": big, "region": "eu" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{:?}", r.body);
    let r = app
        .post(
            "/v1/environments",
            &owner.token,
            json!({ "name": "ok", "region": "Mars!" }),
        )
        .await;
    assert_eq!(r.code(), "invalid_input");
    let r = app.get("/v1/does-not-exist", &owner.token).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.code(), "not_found");
    assert!(r.headers.get("strict-transport-security").is_some());
    assert!(r.headers.get("x-request-id").is_some());
    let r = app.get("/v1/environments/not-a-uuid", &owner.token).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

/// Cursor pagination walks every item exactly once.
#[tokio::test]
async fn pagination_walks_all_items() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@example.com").await;
    let env = app.create_environment(&owner, "Acme").await;
    let p = app.create_project(&owner, &env, "p").await;
    for i in 0..7 {
        app.create_document(&owner, &env, &p, &format!("doc {i}"))
            .await;
    }
    let mut seen = vec![];
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/v1/environments/{env}/projects/{p}/documents?limit=3");
        if let Some(c) = &cursor {
            path.push_str(&format!("&after={c}"));
        }
        let r = app.get(&path, &owner.token).await;
        assert_eq!(r.status, StatusCode::OK);
        for d in r.body["items"].as_array().unwrap() {
            seen.push(d["title"].as_str().unwrap().to_owned());
        }
        match r.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, (0..7).map(|i| format!("doc {i}")).collect::<Vec<_>>());
    assert_eq!(
        app.get(
            &format!("/v1/environments/{env}/projects/{p}/documents?limit=x"),
            &owner.token
        )
        .await
        .status,
        StatusCode::BAD_REQUEST
    );
}

/// Controls L5, L7: mutations and audit reads are audited; auditors read the log but no content.
#[tokio::test]
async fn l7_mutations_and_audit_reads_are_audited() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@example.com").await;
    let env = app.create_environment(&owner, "Acme").await;
    let p = app.create_project(&owner, &env, "p").await;
    app.create_document(&owner, &env, &p, "t").await;
    let auditor = app.signup("auditor@example.com").await;
    app.add_member(&owner, &env, &auditor, "auditor").await;
    let r = app
        .get(
            &format!("/v1/environments/{env}/audit?limit=100"),
            &auditor.token,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let actions: Vec<&str> = r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for a in [
        "environment.created",
        "project.created",
        "document.created",
        "invitation.created",
        "invitation.accepted",
        "member.added",
    ] {
        assert!(actions.contains(&a), "{a} missing from {actions:?}");
    }
    let r = app
        .get(
            &format!("/v1/environments/{env}/audit?action=document.created"),
            &auditor.token,
        )
        .await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(
        app.get(
            &format!("/v1/environments/{env}/projects/{p}/documents"),
            &auditor.token
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
    let after = app.audit_actions(&env).await;
    assert!(after.iter().filter(|e| e["action"] == "audit.read").count() >= 2);
    // Document text never reaches the audit trail.
    assert!(!serde_json::to_string(&after).unwrap().contains("\"text\""));
}

/// Control R1: exactly one owner, and ownership moves once per decision. Four concurrent
/// transfers by the owner to four members are serialized: the first succeeds, the others are
/// refused because the caller no longer holds the seat, and one `ownership.transferred` entry
/// is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn r1_concurrent_ownership_transfers_serialize() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@example.com").await;
    let env = app.create_environment(&owner, "Acme").await;
    let mut heirs = Vec::new();
    for i in 0..4 {
        let heir = app.signup(&format!("heir{i}@example.com")).await;
        app.add_member(&owner, &env, &heir, "admin").await;
        heirs.push(heir);
    }
    let path = format!("/v1/environments/{env}/ownership-transfer");
    let replies = futures_util::future::join_all(
        heirs
            .iter()
            .map(|heir| app.post(&path, &owner.token, json!({ "identity_id": heir.id }))),
    )
    .await;
    let ok = replies
        .iter()
        .filter(|r| r.status == StatusCode::OK)
        .count();
    assert_eq!(
        ok,
        1,
        "{:?}",
        replies.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    for r in replies.iter().filter(|r| r.status != StatusCode::OK) {
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);
        assert_eq!(r.code(), "role_access_denied");
    }
    let transfers = app
        .audit_actions(&env)
        .await
        .into_iter()
        .filter(|e| e["action"] == "ownership.transferred")
        .count();
    assert_eq!(transfers, 1);
    let members = app
        .get(&format!("/v1/environments/{env}/members"), &heirs[0].token)
        .await;
    let owners = members.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "owner")
        .count();
    assert_eq!(owners, 1);
}

/// Control L7: the audit trail records the server's own request id. A client's `X-Request-Id`
/// (here one that names another request) never becomes an entry's `request_id`; the response
/// carries the id the entry was written with.
#[tokio::test]
async fn l7_a_client_chosen_request_id_is_not_recorded() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@example.com").await;
    let env = app.create_environment(&owner, "Acme").await;
    let req = crate::support::app::with_body(
        crate::support::app::request(
            Method::POST,
            &format!("/v1/environments/{env}/projects"),
            Some(&owner.token),
        )
        .header("x-request-id", "forged-request-id"),
        Some(json!({ "name": "Launch" })),
    );
    let r = app.send(req).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let echoed = r.headers["x-request-id"].to_str().unwrap().to_owned();
    assert_ne!(echoed, "forged-request-id");
    let log = app
        .get(&format!("/v1/environments/{env}/audit"), &owner.token)
        .await;
    let created = log.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "project.created")
        .expect("project.created entry")
        .clone();
    assert_eq!(created["request_id"], echoed.as_str());
    assert!(!log.body.to_string().contains("forged-request-id"));
}

/// Control E3: an unusable credential is 401 everywhere. A made-up or revoked API token on an
/// account route (`/v1/me`, `/v1/environments`, sessions, logout, invitation acceptance) is
/// `unauthenticated`, not a 403 that would tell a guesser the route merely wants another kind
/// of credential; a valid token there is still refused with 403.
#[tokio::test]
async fn e3_garbage_or_revoked_api_tokens_are_unauthenticated_on_account_routes() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@example.com").await;
    let env = app.create_environment(&owner, "Acme").await;
    let r = app
        .post(
            &format!("/v1/environments/{env}/tokens"),
            &owner.token,
            json!({ "name": "reader", "role": "viewer", "expires_in_days": 30 }),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let valid = r.body["token"].as_str().unwrap().to_owned();
    let revoked = {
        let r = app
            .post(
                &format!("/v1/environments/{env}/tokens"),
                &owner.token,
                json!({ "name": "old", "role": "viewer", "expires_in_days": 30 }),
            )
            .await;
        let id = r.body["api_token"]["token_id"].as_str().unwrap().to_owned();
        let token = r.body["token"].as_str().unwrap().to_owned();
        let del = app
            .delete(&format!("/v1/environments/{env}/tokens/{id}"), &owner.token)
            .await;
        assert_eq!(del.status, StatusCode::OK);
        token
    };
    let garbage = format!("pcs_live_{}", "x".repeat(43));
    for token in [&garbage, &revoked] {
        for r in [
            app.get("/v1/me", token).await,
            app.get("/v1/environments", token).await,
            app.get("/v1/me/sessions", token).await,
            app.post("/v1/auth/logout", token, json!({})).await,
            app.post(
                "/v1/invitations/accept",
                token,
                json!({ "token": "pcs_inv_nothing" }),
            )
            .await,
        ] {
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{:?}", r.body);
            assert_eq!(r.code(), "unauthenticated");
        }
    }
    let r = app.get("/v1/me", &valid).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = app.post("/v1/auth/logout", &valid, json!({})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

/// Controls T3 and R3: deleting an environment deletes everything in it, including project
/// grants that name one of its custom roles (the grant's reference to the role must not block
/// the cascade), and only the environment is gone: the other tenant is untouched.
#[tokio::test]
async fn t3_environment_delete_cascades_through_custom_role_grants() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@example.com").await;
    let env = app.create_environment(&owner, "Acme").await;
    let other = app.create_environment(&owner, "Other").await;
    let p = app.create_project(&owner, &env, "one").await;
    let r = app
        .post(
            &format!("/v1/environments/{env}/roles"),
            &owner.token,
            json!({ "name": "editor", "permissions": ["projects.read", "documents.read", "documents.write"] }),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let role = format!("custom:{}", r.body["role_id"].as_str().unwrap());
    let guest = app.signup("guest@example.com").await;
    app.add_member(&owner, &env, &guest, "guest").await;
    let r = app
        .put(
            &format!("/v1/environments/{env}/projects/{p}/grants/{}", guest.id),
            &owner.token,
            json!({ "role": role }),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let r = app
        .delete(&format!("/v1/environments/{env}"), &owner.token)
        .await;
    assert!(r.status.is_success(), "{:?} {:?}", r.status, r.body);
    assert_eq!(
        app.get(&format!("/v1/environments/{env}"), &owner.token)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get(&format!("/v1/environments/{other}"), &owner.token)
            .await
            .status,
        StatusCode::OK
    );
}

/// Control E1 (bad input in one error shape): text PostgreSQL cannot store is refused with 400
/// `invalid_input` before it reaches the database, in bodies and query strings alike: a NUL in a
/// role's description (create and update), in the audit filters, and in the last characters of
/// integration credentials and the model key, which feed their hints. Nothing is written.
#[tokio::test]
async fn e1_nul_characters_are_refused_with_400_everywhere() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@example.com").await;
    let env = app.create_environment(&owner, "Acme").await;
    let r = app
        .post(
            &format!("/v1/environments/{env}/roles"),
            &owner.token,
            json!({ "name": "ops", "description": "fine", "permissions": ["environment.read"] }),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let role = r.body["role_id"].as_str().unwrap().to_owned();
    let before = app.fingerprint().await;
    let nul = "a\u{0}b";
    let replies =
        vec![
        app.post(
            &format!("/v1/environments/{env}/roles"),
            &owner.token,
            json!({ "name": "ops2", "description": nul, "permissions": ["environment.read"] }),
        )
        .await,
        app.patch(
            &format!("/v1/environments/{env}/roles/{role}"),
            &owner.token,
            json!({ "name": "ops", "description": nul, "permissions": ["environment.read"] }),
        )
        .await,
        app.get(&format!("/v1/environments/{env}/audit?action=a%00b"), &owner.token)
            .await,
        app.get(
            &format!("/v1/environments/{env}/audit?target_id=x%00"),
            &owner.token,
        )
        .await,
        app.post(
            &format!("/v1/environments/{env}/integrations"),
            &owner.token,
            json!({ "kind": "slack", "name": "chat", "credentials": "not-a-real-credential-ab\u{0}c" }),
        )
        .await,
        app.put(
            &format!("/v1/environments/{env}/model-key"),
            &owner.token,
            json!({ "provider": "anthropic", "api_key": "not-a-real-model-key\u{0}" }),
        )
        .await,
    ];
    for r in replies {
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r.body);
        assert_eq!(r.code(), "invalid_input", "{:?}", r.body);
    }
    assert_eq!(app.fingerprint().await, before, "nothing was written");
}

/// Control E4: naming a key-encryption key that does not exist is the caller's mistake, not
/// a revoked key: `PUT .../keys/kek` with an unknown local key answers 400 `kek_unusable`,
/// writes no `keys.access_failed` alarm, and the environment keeps its key and its data.
#[tokio::test]
async fn e4_an_unknown_kek_name_is_bad_input_not_a_key_failure() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@example.com").await;
    let env = app.create_environment(&owner, "Acme").await;
    let p = app.create_project(&owner, &env, "one").await;
    let doc = app.create_document(&owner, &env, &p, "still here").await;
    let r = app
        .put(
            &format!("/v1/environments/{env}/keys/kek"),
            &owner.token,
            json!({ "provider": "local", "name": "master-999" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r.body);
    assert_eq!(r.code(), "kek_unusable");
    let actions = app.audit_actions(&env).await;
    assert!(!actions.iter().any(|e| e["action"] == "keys.access_failed"));
    assert!(!actions.iter().any(|e| e["action"] == "keys.kek_changed"));
    let r = app
        .get(
            &format!("/v1/environments/{env}/projects/{p}/documents/{doc}"),
            &owner.token,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
}

/// Control E1: bodies parse strictly. A JSON array is not read into an object field by field
/// (`["array-project"]` creates nothing), and an empty `PATCH {}` changes nothing: the
/// document keeps its version and no `document.updated` entry is written.
#[tokio::test]
async fn e1_arrays_are_not_objects_and_empty_patches_change_nothing() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@example.com").await;
    let env = app.create_environment(&owner, "Acme").await;
    let before = app.fingerprint().await;
    let r = app
        .post(
            &format!("/v1/environments/{env}/projects"),
            &owner.token,
            json!(["array-project"]),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r.body);
    assert_eq!(r.code(), "invalid_input");
    assert_eq!(app.fingerprint().await, before, "nothing was created");

    let p = app.create_project(&owner, &env, "one").await;
    let doc = app.create_document(&owner, &env, &p, "title").await;
    let path = format!("/v1/environments/{env}/projects/{p}/documents/{doc}");
    let version = app.get(&path, &owner.token).await.body["version"].clone();
    let updates = |actions: Vec<serde_json::Value>| {
        actions
            .iter()
            .filter(|e| e["action"] == "document.updated")
            .count()
    };
    let audited = updates(app.audit_actions(&env).await);
    let r = app.patch(&path, &owner.token, json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["version"], version);
    assert_eq!(r.body["title"], "title");
    assert_eq!(app.get(&path, &owner.token).await.body["version"], version);
    assert_eq!(updates(app.audit_actions(&env).await), audited);
}

/// Control L7 (issue 12, item 4): a member's refused request is recorded in the environment's
/// trail as `authorization.denied` (outcome denied, the route without ids, the error code),
/// as that member; a flood of refusals records at most `PER_WINDOW` per minute, and nothing
/// the refused request tried is left behind.
#[tokio::test]
async fn l7_refused_requests_are_audited_and_a_flood_is_rate_limited() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@example.com").await;
    let viewer = app.signup("viewer@example.com").await;
    let env = app.create_environment(&owner, "Acme").await;
    app.add_member(&owner, &env, &viewer, "viewer").await;
    let r = app
        .post(
            &format!("/v1/environments/{env}/projects"),
            &viewer.token,
            json!({ "name": "not mine to make" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);
    let denied: Vec<serde_json::Value> = app
        .audit_actions(&env)
        .await
        .into_iter()
        .filter(|e| e["action"] == "authorization.denied")
        .collect();
    assert_eq!(denied.len(), 1, "{denied:?}");
    assert_eq!(denied[0]["outcome"], "denied");
    assert_eq!(denied[0]["actor_id"], json!(viewer.id));
    assert_eq!(denied[0]["after"]["code"], r.code());
    let mut admin = app.db.admin_conn().await;
    let target: String = sqlx::query_scalar(
        "SELECT target_id FROM audit_log WHERE environment_id = $1::uuid AND action = 'authorization.denied'",
    )
    .bind(&env)
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert_eq!(target, "POST /v1/environments/{id}/projects");

    // A flood: the first PER_WINDOW refusals of the minute are recorded, the rest counted.
    for i in 0..30 {
        let r = app
            .post(
                &format!("/v1/environments/{env}/projects"),
                &viewer.token,
                json!({ "name": format!("flood {i}") }),
            )
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
    }
    let denied = app
        .audit_actions(&env)
        .await
        .into_iter()
        .filter(|e| e["action"] == "authorization.denied")
        .count();
    assert_eq!(denied as u32, portcullis_service::denials::PER_WINDOW);
    let projects: i64 =
        sqlx::query_scalar("SELECT count(*) FROM projects WHERE environment_id = $1::uuid")
            .bind(&env)
            .fetch_one(&mut admin)
            .await
            .unwrap();
    assert_eq!(projects, 0);
}

/// Control L7 (issue 12, item 4): a person reads their own sign-in history, the failed
/// attempts against their account included, and nobody else's.
#[tokio::test]
async fn l7_a_person_reads_their_own_sign_in_history_and_only_theirs() {
    let app = TestApp::spawn().await;
    app.signup("ada@example.com").await;
    let bob = app.signup("bob@example.com").await;
    for _ in 0..2 {
        let r = app
            .call(
                Method::POST,
                "/v1/auth/login",
                None,
                Some(json!({ "email": "ada@example.com", "password": "not the password at all" })),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    let ada = app.login("ada@example.com", PASSWORD).await;
    let r = app.get("/v1/me/sign-ins", &ada.token).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let items = r.body.as_array().unwrap();
    let actions: Vec<&str> = items
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions
            .iter()
            .filter(|a| **a == "auth.login_failed")
            .count(),
        2,
        "{actions:?}"
    );
    assert_eq!(actions[0], "auth.login", "newest first: {actions:?}");
    assert!(items.iter().all(|e| e["actor_id"] == json!(ada.id)));
    let bobs = app.get("/v1/me/sign-ins", &bob.token).await;
    assert!(bobs
        .body
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["actor_id"] == json!(bob.id)));
    assert!(!bobs
        .body
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["action"] == "auth.login_failed"));
}
