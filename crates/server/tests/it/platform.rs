//! The operator's platform route and refused account requests (issue 12, item 4): the
//! platform audit scope is read with an operator token only (`GET /v1/platform/audit`), every
//! other credential is refused, and refusals on account routes are recorded in the platform
//! scope, rate-limited. Controls L5, L7, R2, E3 (the database's side, T2, is in the store's
//! attacker suite).

use axum::http::{Method, StatusCode};
use portcullis_crypto::TokenHash;
use serde_json::{json, Value};

use crate::support::{request, with_body, TestApp, User, PASSWORD};

const ROUTE: &str = "/v1/platform/audit";

fn actions(items: &Value) -> Vec<String> {
    items
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect()
}

/// A failed login for `email` that says who is calling (user agent), as a browser would.
async fn failed_login(app: &TestApp, email: &str, agent: &str) {
    let req = request(Method::POST, "/v1/auth/login", None).header("user-agent", agent);
    let r = app
        .send(with_body(
            req,
            Some(json!({ "email": email, "password": "not the password at all" })),
        ))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

async fn api_token(app: &TestApp, owner: &User, env: &str) -> (String, String) {
    let r = app
        .post(
            &format!("/v1/environments/{env}/tokens"),
            &owner.token,
            json!({ "name": "ci", "role": "admin" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    (
        r.body["token"].as_str().unwrap().to_owned(),
        r.body["api_token"]["token_id"].as_str().unwrap().to_owned(),
    )
}

/// Control L5 (issue 12, item 4): with an operator token the operator reads the platform
/// scope (sign-ups, sign-ins, failed sign-ins, its own token's creation) with the filters and
/// paging of an environment's log, a person's sealed request metadata opened; every read is
/// audited in the platform scope under the operator token's id, and the token's use recorded.
#[tokio::test]
async fn l5_the_operator_reads_the_platform_scope_filtered_paged_and_audited() {
    let app = TestApp::spawn().await;
    let ada = app.signup("ada@example.com").await;
    failed_login(&app, "ada@example.com", "probe/1.0").await;
    failed_login(&app, "ada@example.com", "probe/1.0").await;
    let (token, token_id) = app.operator_token("on-call").await;

    let r = app.get(&format!("{ROUTE}?limit=200"), &token).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let all = actions(&r.body["items"]);
    for wanted in [
        "identity.signed_up",
        "auth.login",
        "auth.login_failed",
        "operator_token.created",
    ] {
        assert!(all.iter().any(|a| a == wanted), "{wanted} in {all:?}");
    }

    let r = app
        .get(&format!("{ROUTE}?action=auth.login_failed"), &token)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let failed = r.body["items"].as_array().unwrap();
    assert_eq!(failed.len(), 2, "{failed:?}");
    for e in failed {
        assert_eq!(e["actor_id"], json!(ada.id));
        // Stored sealed under Ada's subject key, shown opened to the operator.
        assert_eq!(e["user_agent"], "probe/1.0", "{e:?}");
    }
    let mut su = app.db.admin_conn().await;
    let stored: Vec<Option<String>> = sqlx::query_scalar(
        "SELECT user_agent FROM audit_log WHERE environment_id = $1 AND action = 'auth.login_failed'",
    )
    .bind(portcullis_store::PLATFORM_SCOPE)
    .fetch_all(&mut su)
    .await
    .unwrap();
    assert!(stored
        .iter()
        .all(|u| u.as_deref().is_some_and(|u| u.starts_with("pcs-sealed:"))));

    // Paging: one at a time, the cursor leads on.
    let first = app.get(&format!("{ROUTE}?limit=1"), &token).await;
    assert_eq!(first.body["items"].as_array().unwrap().len(), 1);
    let cursor = first.body["next_cursor"].as_str().unwrap().to_owned();
    let second = app
        .get(&format!("{ROUTE}?limit=1&after={cursor}"), &token)
        .await;
    assert_ne!(
        first.body["items"][0]["audit_id"],
        second.body["items"][0]["audit_id"]
    );
    let bad = app.get(&format!("{ROUTE}?from=yesterday"), &token).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.code(), "invalid_query");

    // Four reads answered, four audited, as the operator token.
    let reads: Vec<Value> = app
        .platform_actions()
        .await
        .into_iter()
        .filter(|e| e["action"] == "audit.read")
        .collect();
    assert_eq!(reads.len(), 4, "{reads:?}");
    assert!(reads
        .iter()
        .all(|e| e["actor_type"] == "operator_token" && e["actor_id"] == json!(token_id)));
    let used: bool = sqlx::query_scalar(
        "SELECT last_used_at IS NOT NULL FROM operator_tokens WHERE token_id = $1::uuid",
    )
    .bind(&token_id)
    .fetch_one(&mut su)
    .await
    .unwrap();
    assert!(used);
}

/// Control R2 (issue 12, item 4): the platform route refuses every credential but an operator
/// token: a session or an environment's API token, even the owner's, is 403; no credential, an
/// API token that is revoked, or an operator token that was never issued is 401. None of them
/// reads anything, so no read is audited.
#[tokio::test]
async fn r2_sessions_and_api_tokens_are_refused_on_the_platform_route() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@example.com").await;
    let env = app.create_environment(&owner, "Acme").await;
    let (valid, _) = api_token(&app, &owner, &env).await;
    let (revoked, revoked_id) = api_token(&app, &owner, &env).await;
    let del = app
        .delete(
            &format!("/v1/environments/{env}/tokens/{revoked_id}"),
            &owner.token,
        )
        .await;
    assert_eq!(del.status, StatusCode::OK);
    app.operator_token("exists").await;

    for (who, token) in [("session", &owner.token), ("API token", &valid)] {
        let r = app.get(ROUTE, token).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{who}: {:?}", r.body);
        assert_eq!(r.code(), "role_access_denied", "{who}");
        assert!(
            r.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("operator token"),
            "{who}: {:?}",
            r.body
        );
    }
    let (forged, _) = portcullis_crypto::token::generate(portcullis_crypto::TokenKind::Operator);
    let garbage = format!("pcs_op_{}", "x".repeat(52));
    for (who, token) in [
        ("revoked API token", revoked.as_str()),
        ("forged operator token", forged.expose()),
        ("malformed operator token", garbage.as_str()),
    ] {
        let r = app.get(ROUTE, token).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{who}: {:?}", r.body);
        assert_eq!(r.code(), "unauthenticated", "{who}");
    }
    let r = app.call(Method::GET, ROUTE, None, None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(!app
        .platform_actions()
        .await
        .iter()
        .any(|e| e["action"] == "audit.read"));
}

/// Control E3 (issue 12, item 4): an operator token is stored as its SHA-256 only; revoked,
/// it is refused at the very next request (operator tokens are never cached), and so is one
/// that has expired. Creating and revoking are audited in the platform scope.
#[tokio::test]
async fn e3_revoked_and_expired_operator_tokens_are_refused_at_once() {
    let app = TestApp::spawn().await;
    let (token, id) = app.operator_token("to revoke").await;
    assert!(token.starts_with("pcs_op_"));
    assert_eq!(app.get(ROUTE, &token).await.status, StatusCode::OK);
    let mut su = app.db.admin_conn().await;
    let stored: Vec<u8> =
        sqlx::query_scalar("SELECT token_hash FROM operator_tokens WHERE token_id = $1::uuid")
            .bind(&id)
            .fetch_one(&mut su)
            .await
            .unwrap();
    assert_eq!(stored, TokenHash::of(&token).as_bytes().to_vec());
    assert!(!app.pg_dump().contains(&token), "the token is in the dump");

    app.revoke_operator_token(&id).await;
    let r = app.get(ROUTE, &token).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{:?}", r.body);

    let (token, expiring) = app.operator_token("to expire").await;
    assert_eq!(app.get(ROUTE, &token).await.status, StatusCode::OK);
    sqlx::query(
        "UPDATE operator_tokens SET created_at = now() - interval '2 days',
                expires_at = now() - interval '1 second' WHERE token_id = $1::uuid",
    )
    .bind(&expiring)
    .execute(&mut su)
    .await
    .unwrap();
    let r = app.get(ROUTE, &token).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{:?}", r.body);

    let entries = app.platform_actions().await;
    let of = |action: &str, target: &str| {
        entries
            .iter()
            .filter(|e| e["action"] == action && e["target_id"] == target)
            .count()
    };
    assert_eq!(of("operator_token.created", &id), 1, "{entries:?}");
    assert_eq!(of("operator_token.revoked", &id), 1, "{entries:?}");
    assert_eq!(of("operator_token.created", &expiring), 1, "{entries:?}");
    assert!(entries
        .iter()
        .filter(|e| e["action"].as_str().unwrap().starts_with("operator_token."))
        .all(|e| e["actor_type"] == "system"));
}

/// Control L7 (issue 12, item 4): an operator token is refused on every other route (403 while
/// live, 401 once revoked) and the refusal is recorded in the platform scope under the
/// token's id, not in the environment it knocked on.
#[tokio::test]
async fn l7_operator_tokens_are_refused_outside_the_platform_routes_and_recorded() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@example.com").await;
    let env = app.create_environment(&owner, "Acme").await;
    let (token, id) = app.operator_token("wanders").await;
    for path in [
        "/v1/me".to_owned(),
        "/v1/environments".to_owned(),
        format!("/v1/environments/{env}/audit"),
    ] {
        let r = app.get(&path, &token).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}: {:?}", r.body);
        assert_eq!(r.code(), "role_access_denied");
    }
    let denied: Vec<Value> = app
        .platform_actions()
        .await
        .into_iter()
        .filter(|e| e["action"] == "authorization.denied")
        .collect();
    let targets: Vec<&str> = denied
        .iter()
        .map(|e| e["target_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        targets,
        [
            "GET /v1/me",
            "GET /v1/environments",
            "GET /v1/environments/{id}/audit"
        ]
    );
    assert!(denied
        .iter()
        .all(|e| e["actor_type"] == "operator_token" && e["actor_id"] == json!(id)));
    assert!(!app
        .audit_actions(&env)
        .await
        .iter()
        .any(|e| e["action"] == "authorization.denied"));
    app.revoke_operator_token(&id).await;
    assert_eq!(
        app.get("/v1/me", &token).await.status,
        StatusCode::UNAUTHORIZED
    );
}

/// Control L7 (issue 12, item 4): refusals on account routes are recorded in the platform
/// scope as the person (an invitation sent to someone else, the platform route with a
/// session), and the person sees them in their own history; an API token refused on an account
/// route is recorded in its own environment's log as the token. A flood is rate-limited as on
/// environment routes: at most `PER_WINDOW` a minute per person, the rest counted.
#[tokio::test]
async fn l7_refused_account_requests_are_recorded_in_the_platform_scope_and_rate_limited() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@example.com").await;
    let carol = app.signup("carol@example.com").await;
    let env = app.create_environment(&owner, "Acme").await;
    let inv = app
        .post(
            &format!("/v1/environments/{env}/invitations"),
            &owner.token,
            json!({ "email": "bob@example.com", "role": "viewer" }),
        )
        .await;
    assert_eq!(inv.status, StatusCode::CREATED, "{:?}", inv.body);
    let r = app
        .post(
            "/v1/invitations/accept",
            &carol.token,
            json!({ "token": inv.body["token"] }),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);
    assert_eq!(
        app.get(ROUTE, &carol.token).await.status,
        StatusCode::FORBIDDEN
    );

    let carols = |entries: Vec<Value>| -> Vec<Value> {
        entries
            .into_iter()
            .filter(|e| e["action"] == "authorization.denied" && e["actor_id"] == json!(carol.id))
            .collect()
    };
    let denied = carols(app.platform_actions().await);
    let targets: Vec<&str> = denied
        .iter()
        .map(|e| e["target_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        targets,
        ["POST /v1/invitations/accept", "GET /v1/platform/audit"]
    );
    assert!(denied.iter().all(|e| e["actor_type"] == "identity"
        && e["outcome"] == "denied"
        && e["after"]["code"] == "role_access_denied"));
    // Carol sees her own refusals in her sign-in history.
    let mine = app.get("/v1/me/sign-ins", &carol.token).await;
    assert!(actions(&mine.body)
        .iter()
        .any(|a| a == "authorization.denied"));
    // The refused acceptance left no membership behind.
    assert_eq!(
        app.get(&format!("/v1/environments/{env}"), &carol.token)
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    // An API token on an account route: in its own environment's log, as the token.
    let (token, token_id) = api_token(&app, &owner, &env).await;
    assert_eq!(
        app.get("/v1/me", &token).await.status,
        StatusCode::FORBIDDEN
    );
    let in_env: Vec<Value> = app
        .audit_actions(&env)
        .await
        .into_iter()
        .filter(|e| e["action"] == "authorization.denied")
        .collect();
    assert_eq!(in_env.len(), 1, "{in_env:?}");
    assert_eq!(in_env[0]["actor_id"], json!(token_id));
    assert!(!app
        .platform_actions()
        .await
        .iter()
        .any(|e| e["action"] == "authorization.denied" && e["actor_id"] == json!(token_id)));

    // A flood: the window holds PER_WINDOW, two of them already used; the rest are counted.
    for _ in 0..30 {
        assert_eq!(
            app.get(ROUTE, &carol.token).await.status,
            StatusCode::FORBIDDEN
        );
    }
    let denied = carols(app.platform_actions().await);
    assert_eq!(
        denied.len() as u32,
        portcullis_service::denials::PER_WINDOW,
        "{denied:?}"
    );
    // A request with a credential that is not valid names nobody: it is recorded anonymously
    // (`l7_refused_credentials_are_recorded_anonymously_without_the_token_and_rate_limited`).
    let before = app.platform_actions().await.len();
    let r = app.get("/v1/me", "pcs_sess_nonsense").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = app
        .call(
            Method::POST,
            "/v1/auth/login",
            None,
            Some(json!({ "email": "carol@example.com", "password": PASSWORD })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let after = app.platform_actions().await;
    let new: Vec<&Value> = after[before..].iter().collect();
    assert_eq!(new.len(), 2, "{new:?}");
    assert_eq!(new[0]["action"], "auth.credential_refused");
    assert_eq!(new[0]["actor_type"], "anonymous");
    assert_eq!(new[1]["action"], "auth.login");
}

/// Control L7: a request that presents a credential which is not valid (forged, or a session
/// that was signed out) is answered 401 as before and recorded anonymously in the platform
/// scope as `auth.credential_refused`, with the route and the kind of credential claimed and
/// nothing of the token; a flood records at most `PER_WINDOW` a minute per client address; a
/// request with no credential records nothing.
#[tokio::test]
async fn l7_refused_credentials_are_recorded_anonymously_without_the_token_and_rate_limited() {
    use portcullis_service::denials::PER_WINDOW;
    let app = TestApp::spawn().await;
    let ada = app.signup("ada@example.com").await;
    let refused = |entries: Vec<Value>| -> Vec<Value> {
        entries
            .into_iter()
            .filter(|e| e["action"] == "auth.credential_refused")
            .collect()
    };

    // No credential at all: 401, nothing recorded.
    let r = app
        .send(with_body(request(Method::GET, "/v1/me", None), None))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(refused(app.platform_actions().await).is_empty());

    // A forged session token and a signed-out session.
    let forged = format!("pcs_sess_{}", "a".repeat(52));
    assert_eq!(
        app.get("/v1/me", &forged).await.status,
        StatusCode::UNAUTHORIZED
    );
    let r = app.post("/v1/auth/logout", &ada.token, json!({})).await;
    assert!(r.status.is_success(), "{:?}", r.body);
    assert_eq!(
        app.get(
            &format!("/v1/environments/{}/audit", uuid::Uuid::now_v7()),
            &ada.token
        )
        .await
        .status,
        StatusCode::UNAUTHORIZED
    );
    let entries = refused(app.platform_actions().await);
    assert_eq!(entries.len(), 2, "{entries:#?}");
    assert_eq!(entries[0]["target_id"], "GET /v1/me");
    assert_eq!(entries[1]["target_id"], "GET /v1/environments/{id}/audit");
    for e in &entries {
        assert_eq!(e["actor_type"], "anonymous", "{e}");
        assert_eq!(e["outcome"], "failure", "{e}");
        assert_eq!(e["after"]["credential"], "session", "{e}");
    }

    // A flood of forged API tokens from one address.
    let mut sent = Vec::new();
    for i in 0..(PER_WINDOW + 15) {
        let token = format!("pcs_live_{i:0>52}");
        assert_eq!(
            app.get("/v1/me", &token).await.status,
            StatusCode::UNAUTHORIZED
        );
        sent.push(token);
    }
    let all = app.platform_actions().await;
    let entries = refused(all.clone());
    assert_eq!(entries.len() as u32, PER_WINDOW, "{entries:#?}");
    let text = serde_json::to_string(&all).unwrap();
    for token in sent.iter().chain([&forged, &ada.token]) {
        assert!(!text.contains(token.as_str()), "a token reached the log");
        assert!(
            !text.contains(&TokenHash::of(token).to_hex()),
            "a token's hash reached the log"
        );
    }
}
