//! In-process test harness: a fresh database per test and the real router, driven with
//! `tower::ServiceExt::oneshot`.

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use portcullis_crypto::PasswordHasher;
use portcullis_gateway::testing::FakeAnthropic;
use portcullis_server::app::{router, Limits};
use portcullis_server::AppState;
use portcullis_service::config::{AuthConfig, GatewayConfig};
use portcullis_store::testing::TestDb;
use serde_json::{json, Value};
use tower::ServiceExt;

pub struct TestApp {
    pub db: TestDb,
    pub router: Router,
    pub vault: std::sync::Arc<portcullis_store::vault::Vault>,
    /// The anchor store the app's exports read (a fresh directory; L4).
    pub anchors: portcullis_service::anchor::Anchors,
    /// The model provider the gateway talks to (by default any key is accepted).
    pub upstream: std::sync::Arc<FakeAnthropic>,
    /// The router's state, for tests that serve it on a socket or call use cases directly.
    pub state: AppState,
}

/// How a test's gateway is set up: its upstream and configuration, and the platform key.
pub struct GatewaySetup {
    pub upstream: FakeAnthropic,
    pub config: GatewayConfig,
    pub platform_key: Option<String>,
}

impl GatewaySetup {
    pub async fn accepting_any_key() -> GatewaySetup {
        GatewaySetup::with(FakeAnthropic::start().await)
    }

    pub fn with(upstream: FakeAnthropic) -> GatewaySetup {
        let config = GatewayConfig {
            anthropic_base_url: upstream.base_url(),
            console_url: "https://console.example.com/model-key".into(),
            ..GatewayConfig::default()
        };
        GatewaySetup {
            upstream,
            config,
            platform_key: None,
        }
    }
}

#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

/// A signed-up user with a session token.
#[derive(Clone, Debug)]
pub struct User {
    pub token: String,
    pub id: String,
    pub email: String,
}

pub const PASSWORD: &str = "correct horse battery staple";

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(AuthConfig::default(), Limits::default()).await
    }

    pub async fn spawn_with(auth: AuthConfig, limits: Limits) -> TestApp {
        Self::spawn_full(auth, limits, Duration::from_secs(300)).await
    }

    pub async fn spawn_full(auth: AuthConfig, limits: Limits, vault_ttl: Duration) -> TestApp {
        Self::spawn_with_vault(
            auth,
            limits,
            portcullis_store::testing::test_vault_with_ttl(vault_ttl),
        )
        .await
    }

    pub async fn spawn_with_vault(
        auth: AuthConfig,
        limits: Limits,
        vault: portcullis_store::vault::Vault,
    ) -> TestApp {
        let gateway = GatewaySetup::accepting_any_key().await;
        Self::spawn_inner(auth, limits, vault, gateway).await
    }

    /// With this gateway setup (upstream, configuration, platform key).
    pub async fn spawn_gateway(gateway: GatewaySetup) -> TestApp {
        Self::spawn_inner(
            AuthConfig::default(),
            Limits::default(),
            portcullis_store::testing::test_vault_with_ttl(Duration::from_secs(300)),
            gateway,
        )
        .await
    }

    async fn spawn_inner(
        mut auth: AuthConfig,
        limits: Limits,
        vault: portcullis_store::vault::Vault,
        gateway: GatewaySetup,
    ) -> TestApp {
        let db = TestDb::new().await;
        // The credential cache on, as `serve` runs it, so every test also checks that what it
        // changes is never answered stale.
        let store = db
            .store()
            .await
            .with_auth_cache(portcullis_store::auth_cache::AuthCache::new(auth.cache()));
        if auth.cache_ttl_seconds > 0 {
            tokio::spawn(store.listen_for_changes());
        }
        // The audit sequencer chains entries in the background, as in `serve`; readers of the
        // log (and `audit_actions`) sequence what is pending first.
        if let Some(sequencer) = store.sequencer() {
            tokio::spawn(
                sequencer
                    .clone()
                    .run(portcullis_store::sequencer::SWEEP_EVERY),
            );
        }
        // Cheap hashing keeps the suite fast; production parameters are tested in the crypto crate.
        auth.password_memory_kib = 1024;
        auth.password_iterations = 1;
        let hasher =
            PasswordHasher::new(auth.password_memory_kib, auth.password_iterations).unwrap();
        // As `serve`: the signer the checkpointer loads (created on first use), whose keys the
        // checkpoint feed trusts, and the anchor store exports read.
        let signer = super::trail::signer(&db, &vault).await;
        let anchors = super::trail::local_anchors("pc-app-anchors");
        let trail = portcullis_service::trail::TrailAccess::new(anchors.clone(), &signer);
        let vault = std::sync::Arc::new(vault);
        let state = AppState::new(
            store,
            hasher,
            auth,
            portcullis_service::config::Regions::default(),
            vault.clone(),
            portcullis_service::config::KeysConfig::default().reencrypt_batch,
            trail,
        );
        let client =
            portcullis_outbound::Client::new(portcullis_outbound::Limits::default()).unwrap();
        let gw = portcullis_gateway::Gateway::new(
            &gateway.config,
            client,
            gateway.platform_key.map(portcullis_crypto::Secret::new),
        )
        .unwrap();
        let state = state.with_gateway(gw);
        TestApp {
            db,
            router: router(state.clone(), limits),
            vault,
            anchors,
            upstream: std::sync::Arc::new(gateway.upstream),
            state,
        }
    }

    pub async fn send(&self, req: Request<Body>) -> Reply {
        let res = tokio::time::timeout(Duration::from_secs(30), self.router.clone().oneshot(req))
            .await
            .expect("request timed out")
            .unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        Reply {
            status,
            headers,
            body,
        }
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        self.send(with_body(request(method, path, token), body))
            .await
    }

    /// A GET whose body is returned as raw bytes (exports).
    pub async fn get_raw(&self, path: &str, token: &str) -> (StatusCode, Vec<u8>) {
        let req = with_body(request(Method::GET, path, Some(token)), None);
        let res = self.router.clone().oneshot(req).await.unwrap();
        let status = res.status();
        (
            status,
            res.into_body().collect().await.unwrap().to_bytes().to_vec(),
        )
    }

    pub async fn get(&self, path: &str, token: &str) -> Reply {
        self.call(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Reply {
        self.call(Method::POST, path, Some(token), Some(body)).await
    }

    pub async fn patch(&self, path: &str, token: &str, body: Value) -> Reply {
        self.call(Method::PATCH, path, Some(token), Some(body))
            .await
    }

    pub async fn put(&self, path: &str, token: &str, body: Value) -> Reply {
        self.call(Method::PUT, path, Some(token), Some(body)).await
    }

    pub async fn delete(&self, path: &str, token: &str) -> Reply {
        self.call(Method::DELETE, path, Some(token), None).await
    }

    pub async fn signup(&self, email: &str) -> User {
        self.signup_with(json!({ "email": email, "password": PASSWORD }))
            .await
    }

    /// Signs up with the given request body (which must hold `email` and `password`), then
    /// signs in: sign-up itself issues no session.
    pub async fn signup_with(&self, body: Value) -> User {
        let r = self
            .call(Method::POST, "/v1/auth/signup", None, Some(body.clone()))
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
        self.login(
            body["email"].as_str().unwrap(),
            body["password"].as_str().unwrap(),
        )
        .await
    }

    /// Signs in; asserts success.
    pub async fn login(&self, email: &str, password: &str) -> User {
        let r = self
            .call(
                Method::POST,
                "/v1/auth/login",
                None,
                Some(json!({ "email": email, "password": password })),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        User {
            token: r.body["session"]["token"].as_str().unwrap().to_owned(),
            id: r.body["session"]["identity"]["identity_id"]
                .as_str()
                .unwrap()
                .to_owned(),
            email: email.to_owned(),
        }
    }

    pub async fn create_environment(&self, owner: &User, name: &str) -> String {
        let r = self
            .post(
                "/v1/environments",
                &owner.token,
                json!({ "name": name, "region": "eu-central" }),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        r.body["environment_id"].as_str().unwrap().to_owned()
    }

    pub async fn create_project(&self, owner: &User, env: &str, name: &str) -> String {
        let r = self
            .post(
                &format!("/v1/environments/{env}/projects"),
                &owner.token,
                json!({ "name": name }),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        r.body["project_id"].as_str().unwrap().to_owned()
    }

    pub async fn create_document(
        &self,
        user: &User,
        env: &str,
        project: &str,
        title: &str,
    ) -> String {
        self.create_document_with(user, env, project, title, "text")
            .await
    }

    pub async fn create_document_with(
        &self,
        user: &User,
        env: &str,
        project: &str,
        title: &str,
        body: &str,
    ) -> String {
        let r = self
            .post(
                &format!("/v1/environments/{env}/projects/{project}/documents"),
                &user.token,
                json!({ "title": title, "body": body }),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        r.body["document_id"].as_str().unwrap().to_owned()
    }

    /// The whole database as `pg_dump` writes it (plain SQL), to search for plaintext.
    pub fn pg_dump(&self) -> String {
        let bin = portcullis_provision::find_server_binaries(None).unwrap();
        let out = super::run_ok(
            std::process::Command::new(bin.join("pg_dump"))
                .arg("--dbname")
                .arg(&self.db.admin_url),
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Invites `email` with `role` and has `user` accept; returns nothing, asserts success.
    pub async fn add_member(&self, admin: &User, env: &str, user: &User, role: &str) {
        let r = self
            .post(
                &format!("/v1/environments/{env}/invitations"),
                &admin.token,
                json!({ "email": user.email, "role": role }),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        let token = r.body["token"].as_str().unwrap().to_owned();
        let r = self
            .post(
                "/v1/invitations/accept",
                &user.token,
                json!({ "token": token }),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    }

    /// A fingerprint of every tenant table's content, for "nothing changed" assertions.
    pub async fn fingerprint(&self) -> String {
        let tables: Vec<&str> = portcullis_store::catalog::TENANT_TABLES
            .iter()
            .copied()
            .chain(["identities"])
            // The audit chain grows with every request, read or refused (and its sequencer
            // works in the background).
            .filter(|t| {
                ![
                    "audit_log",
                    "audit_pending",
                    "audit_heads",
                    "audit_subtrees",
                ]
                .contains(t)
            })
            .collect();
        // Table names cannot be bound: PostgreSQL quotes each one itself (format's %I) and runs
        // the digest query for it (query_to_xml), all in one round trip.
        let rows: Vec<(String, Option<String>)> = sqlx::query_as(
            "SELECT t.name, (xpath('/row/h/text()', query_to_xml(
                        format('SELECT md5(string_agg(t::text, ''|'' ORDER BY t::text)) AS h FROM %I t', t.name),
                        false, true, '')))[1]::text
               FROM unnest($1::text[]) WITH ORDINALITY AS t(name, n)
              ORDER BY t.n",
        )
        .bind(&tables)
        .fetch_all(&mut self.db.admin_conn().await)
        .await
        .unwrap();
        let mut out = String::new();
        for (table, h) in rows {
            out.push_str(&format!("{table}={h:?};"));
        }
        out
    }

    /// An operator token as `portcullis operator token create` makes it (the owner's
    /// connection): the token and its id.
    pub async fn operator_token(&self, name: &str) -> (String, String) {
        let owner = portcullis_store::bootstrap::runtime_pool(&self.db.owner, 1)
            .await
            .unwrap();
        let issued = portcullis_service::platform::create_operator_token(&owner, name, None)
            .await
            .unwrap();
        owner.close().await;
        (
            issued.token.expose().to_owned(),
            issued.operator_token.token_id.to_string(),
        )
    }

    /// Revokes an operator token as `portcullis operator token revoke` does.
    pub async fn revoke_operator_token(&self, id: &str) {
        let owner = portcullis_store::bootstrap::runtime_pool(&self.db.owner, 1)
            .await
            .unwrap();
        portcullis_service::platform::revoke_operator_token(&owner, id.parse().unwrap())
            .await
            .unwrap();
        owner.close().await;
    }

    /// The platform scope's entries (sequenced first), oldest first, as [`Self::audit_actions`]
    /// shows an environment's, with the actor type and target.
    pub async fn platform_actions(&self) -> Vec<Value> {
        self.db.sequence(portcullis_store::PLATFORM_SCOPE).await;
        let mut conn = self.db.admin_conn().await;
        sqlx::query_scalar(
            "SELECT jsonb_build_object('action', action, 'after', after, 'outcome', outcome,
                    'actor_type', actor_type, 'actor_id', actor_id, 'target_id', target_id)
               FROM audit_log WHERE environment_id = $1 ORDER BY seq",
        )
        .bind(portcullis_store::PLATFORM_SCOPE)
        .fetch_all(&mut conn)
        .await
        .unwrap()
    }

    pub async fn audit_actions(&self, env: &str) -> Vec<Value> {
        self.db.sequence(env.parse().expect("environment id")).await;
        let mut conn = self.db.admin_conn().await;
        let rows: Vec<Value> = sqlx::query_scalar(
            "SELECT jsonb_build_object('action', action, 'before', before, 'after', after, 'outcome', outcome, 'actor_id', actor_id)
               FROM audit_log WHERE environment_id = $1::uuid ORDER BY audit_id",
        )
        .bind(env)
        .fetch_all(&mut conn)
        .await
        .unwrap();
        rows
    }
}

/// A request as [`TestApp::call`] builds it, for tests that add headers or a peer address.
pub fn request(method: Method, path: &str, token: Option<&str>) -> axum::http::request::Builder {
    let b = Request::builder().method(method).uri(path);
    match token {
        Some(t) => b.header(header::AUTHORIZATION, format!("Bearer {t}")),
        None => b,
    }
}

/// Finishes `b` with `body` as JSON, or empty.
pub fn with_body(b: axum::http::request::Builder, body: Option<Value>) -> Request<Body> {
    match body {
        Some(v) => b
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(v.to_string()))
            .unwrap(),
        None => b.body(Body::empty()).unwrap(),
    }
}
