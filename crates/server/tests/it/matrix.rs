//! Every route, attacked: derived from the OpenAPI document so a new route is covered the
//! moment it is registered (controls R2, T1).
//! - A member of environment A using B's ids (or A's environment with B's sub-resources) gets
//!   404 and nothing changes.
//! - A viewer attempting every write gets 403 `role_access_denied` and nothing changes.
//! - No request is ever answered with a 5xx.

use std::collections::HashMap;

use crate::support::{TestApp, User};
use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

struct Tenant {
    owner: User,
    viewer: User,
    ids: HashMap<&'static str, String>,
}

async fn tenant(app: &TestApp, name: &str) -> Tenant {
    let owner = app.signup(&format!("owner@{name}.test")).await;
    let viewer = app.signup(&format!("viewer@{name}.test")).await;
    let env = app.create_environment(&owner, name).await;
    app.add_member(&owner, &env, &viewer, "viewer").await;
    let project = app.create_project(&owner, &env, "project").await;
    let document = app.create_document(&owner, &env, &project, "doc").await;
    app.put(
        &format!(
            "/v1/environments/{env}/projects/{project}/grants/{}",
            viewer.id
        ),
        &owner.token,
        json!({ "role": "viewer" }),
    )
    .await;
    let role = app
        .post(
            &format!("/v1/environments/{env}/roles"),
            &owner.token,
            json!({ "name": "custom", "permissions": ["documents.read"] }),
        )
        .await;
    let token = app
        .post(
            &format!("/v1/environments/{env}/tokens"),
            &owner.token,
            json!({ "name": "t", "role": "viewer" }),
        )
        .await;
    let inv = app
        .post(
            &format!("/v1/environments/{env}/invitations"),
            &owner.token,
            json!({ "email": format!("pending@{name}.test"), "role": "viewer" }),
        )
        .await;
    let integration = app
        .post(
            &format!("/v1/environments/{env}/integrations"),
            &owner.token,
            json!({ "kind": "slack", "name": "team", "credentials": "xoxb-secret-value" }),
        )
        .await;
    app.put(
        &format!("/v1/environments/{env}/model-key"),
        &owner.token,
        json!({ "provider": "anthropic", "api_key": "sk-test-key-value" }),
    )
    .await;
    let mut ids = HashMap::new();
    ids.insert(
        "integration_id",
        integration.body["integration_id"]
            .as_str()
            .unwrap()
            .to_owned(),
    );
    ids.insert("environment_id", env);
    ids.insert("project_id", project);
    ids.insert("document_id", document);
    ids.insert("identity_id", viewer.id.clone());
    ids.insert("role_id", role.body["role_id"].as_str().unwrap().to_owned());
    ids.insert(
        "token_id",
        token.body["api_token"]["token_id"]
            .as_str()
            .unwrap()
            .to_owned(),
    );
    ids.insert(
        "invitation_id",
        inv.body["invitation"]["invitation_id"]
            .as_str()
            .unwrap()
            .to_owned(),
    );
    Tenant { owner, viewer, ids }
}

fn body_for(method: &Method, template: &str, target: &Tenant) -> Option<Value> {
    let t = template.trim_start_matches("/v1/environments/{environment_id}");
    let v = match (method.as_str(), t) {
        ("PATCH", "") => json!({ "name": "renamed" }),
        ("PATCH", "/members/{identity_id}") => json!({ "role": "guest" }),
        ("POST", "/ownership-transfer") => json!({ "identity_id": target.viewer.id }),
        ("POST", "/invitations") => json!({ "email": "new@example.com", "role": "viewer" }),
        ("POST", "/roles") => json!({ "name": "another", "permissions": ["documents.read"] }),
        ("PATCH", "/roles/{role_id}") => json!({ "name": "renamed", "permissions": [] }),
        ("POST", "/tokens") => json!({ "name": "x", "role": "viewer" }),
        ("POST", "/projects") => json!({ "name": "new project" }),
        ("PUT", "/projects/{project_id}/grants/{identity_id}") => json!({ "role": "contributor" }),
        ("POST", "/projects/{project_id}/documents") => json!({ "title": "new" }),
        ("PATCH", "/projects/{project_id}/documents/{document_id}") => {
            json!({ "title": "changed", "body": "changed" })
        }
        ("POST", "/integrations") => {
            json!({ "kind": "github", "name": "new", "credentials": "ghp-new-secret" })
        }
        ("PUT", "/integrations/{integration_id}/credentials") => {
            json!({ "credentials": "replaced-secret" })
        }
        ("PUT", "/model-key") => json!({ "provider": "anthropic", "api_key": "sk-replaced" }),
        ("PUT", "/keys/kek") => json!({ "provider": "local", "name": "master-1" }),
        ("POST", "/keys/rotate" | "/keys/retire") => json!({}),
        _ => return None,
    };
    Some(v)
}

fn fill(
    template: &str,
    env_ids: &HashMap<&str, String>,
    sub_ids: &HashMap<&str, String>,
) -> String {
    let mut path = template.replace("{environment_id}", &env_ids["environment_id"]);
    for (k, v) in sub_ids {
        path = path.replace(&format!("{{{k}}}"), v);
    }
    assert!(!path.contains('{'), "unfilled parameter in {template}");
    // Required query parameters, so the request reaches the authorization checks.
    let query = match template.trim_start_matches("/v1/environments/{environment_id}") {
        "/audit/export" => "?format=jsonl",
        "/audit/proofs/inclusion" => "?seq=1&tree_size=1",
        "/audit/proofs/consistency" => "?from=1&to=1",
        _ => "",
    };
    path + query
}

fn environment_routes() -> Vec<(Method, String)> {
    let spec = serde_json::to_value(portcullis_server::openapi()).unwrap();
    let mut routes = vec![];
    for (path, item) in spec["paths"].as_object().unwrap() {
        if !path.starts_with("/v1/environments/{environment_id}") {
            continue;
        }
        for m in ["get", "post", "put", "patch", "delete"] {
            if item.get(m).is_some() {
                routes.push((
                    Method::from_bytes(m.to_uppercase().as_bytes()).unwrap(),
                    path.clone(),
                ));
            }
        }
    }
    routes
}

/// Controls R2, T1: cross-tenant ids are 404 on every route, and nothing changes.
#[tokio::test]
async fn r2_t1_other_tenants_ids_are_not_found_on_every_route() {
    let app = TestApp::spawn().await;
    let a = tenant(&app, "alpha").await;
    let b = tenant(&app, "beta").await;
    let routes = environment_routes();
    assert!(routes.len() >= 25, "only {} routes found", routes.len());
    let mut failures = vec![];
    for (method, template) in &routes {
        // B's environment entirely, then A's environment with B's sub-resources.
        let mut cases = vec![("B's environment", fill(template, &b.ids, &b.ids))];
        if template.matches('{').count() > 1 {
            cases.push((
                "A's environment, B's resource",
                fill(template, &a.ids, &b.ids),
            ));
        }
        for (case, path) in cases {
            let before = app.fingerprint().await;
            let r = app
                .call(
                    method.clone(),
                    &path,
                    Some(&a.owner.token),
                    body_for(method, template, &b),
                )
                .await;
            let after = app.fingerprint().await;
            if r.status != StatusCode::NOT_FOUND || r.code() != "not_found" {
                failures.push(format!(
                    "{method} {template} ({case}): {} {}",
                    r.status, r.body
                ));
            }
            if before != after {
                failures.push(format!("{method} {template} ({case}): data changed"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Control R2: a viewer attempting every write gets 403 role_access_denied, nothing changes.
#[tokio::test]
async fn r2_viewer_is_refused_every_write() {
    let app = TestApp::spawn().await;
    let a = tenant(&app, "alpha").await;
    let mut failures = vec![];
    let mut writes = 0;
    for (method, template) in environment_routes() {
        if method == Method::GET {
            continue;
        }
        writes += 1;
        let path = fill(&template, &a.ids, &a.ids);
        let before = app.fingerprint().await;
        let r = app
            .call(
                method.clone(),
                &path,
                Some(&a.viewer.token),
                body_for(&method, &template, &a),
            )
            .await;
        let after = app.fingerprint().await;
        if r.status != StatusCode::FORBIDDEN || r.code() != "role_access_denied" {
            failures.push(format!("{method} {template}: {} {}", r.status, r.body));
        }
        if before != after {
            failures.push(format!("{method} {template}: data changed"));
        }
    }
    assert!(writes >= 18, "only {writes} write routes");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // And the owner can do them (the bodies are valid): spot-check one write succeeds.
    let r = app
        .patch(
            &fill("/v1/environments/{environment_id}", &a.ids, &a.ids),
            &a.owner.token,
            json!({ "name": "renamed" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
}

/// Control R2: reads a viewer may not make (tokens, invitations, audit) are 403 too, and no
/// route answers any caller with a 5xx.
#[tokio::test]
async fn r2_viewer_reads_are_checked_and_nothing_is_500() {
    let app = TestApp::spawn().await;
    let a = tenant(&app, "alpha").await;
    for template in ["/tokens", "/invitations", "/audit"] {
        let r = app
            .get(
                &fill(
                    &format!("/v1/environments/{{environment_id}}{template}"),
                    &a.ids,
                    &a.ids,
                ),
                &a.viewer.token,
            )
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{template}");
        assert_eq!(r.code(), "role_access_denied");
    }
    for (method, template) in environment_routes() {
        let path = fill(&template, &a.ids, &a.ids);
        for token in [&a.viewer.token, &a.owner.token] {
            let r = app
                .call(
                    method.clone(),
                    &path,
                    Some(token),
                    body_for(&method, &template, &a),
                )
                .await;
            assert!(
                !r.status.is_server_error(),
                "{method} {template}: {} {}",
                r.status,
                r.body
            );
        }
    }
}
