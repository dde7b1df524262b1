//! An in-process Strata API on a real store (either backend) and the real
//! local runtime, with requests that carry a peer address like a real
//! connection does.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use strata_api::auth::Auth;
use strata_api::metrics::HttpMetrics;
use strata_api::proxy::TrustedProxies;
use strata_api::{AppState, Services, bootstrap};
use strata_core::Secret;
use strata_runtime_local::{LocalConfig, LocalRuntime};
use strata_store::Store;
use strata_testpg::{Backend, TestDb};
use tower::ServiceExt;

pub const PASSWORD: &str = "correct horse battery staple";
static NEXT_PORTS: AtomicU16 = AtomicU16::new(0);

pub struct App {
    pub router: Router,
    pub store: Store,
    pub runtime: LocalRuntime,
    pub db: TestDb,
    /// An access token of the bootstrap admin.
    pub admin_token: String,
    _dir: tempfile::TempDir,
}

pub struct Res {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

/// Strata with the bootstrap admin; `configure` may add to its `Auth`
/// (an external issuer, other sign-in limits).
pub async fn app(backend: Backend, configure: impl FnOnce(Auth) -> Auth) -> App {
    app_behind(backend, TrustedProxies::default(), configure).await
}

/// [`app`] behind reverse proxies it trusts to name the client.
pub async fn app_behind(
    backend: Backend,
    proxies: TrustedProxies,
    configure: impl FnOnce(Auth) -> Auth,
) -> App {
    let dir = tempfile::tempdir().unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    }
    let db = TestDb::new(backend).await;
    let store = db.open().await;
    bootstrap::bootstrap(&store, dir.path(), Some(Secret::new(PASSWORD)))
        .await
        .unwrap();
    let mut registry = prometheus_client::registry::Registry::default();
    let mut cfg = LocalConfig::new(dir.path().to_path_buf());
    let base = 34000
        + 40 * NEXT_PORTS.fetch_add(1, Ordering::SeqCst)
        + (std::process::id() % 20) as u16 * 400;
    cfg.ports = base..=base + 39;
    let runtime = LocalRuntime::start(cfg, store.clone(), &mut registry)
        .await
        .unwrap();
    let auth = configure(
        Auth::load(&store, "http://strata.test".into())
            .await
            .unwrap(),
    );
    let admin = store.user_by_name("admin").await.unwrap().unwrap();
    let admin_token = auth.issue(&admin.id.to_string(), "admin", true).unwrap();
    let state = AppState::new(Services {
        runtime: Arc::new(runtime.clone()),
        store: store.clone(),
        auth,
        metrics: HttpMetrics::register(&mut registry),
        sse_keepalive: Duration::from_secs(1),
        shutdown: tokio_util::sync::CancellationToken::new(),
        trusted_proxies: proxies,
    });
    App {
        router: strata_api::router(state),
        store,
        runtime,
        db,
        admin_token,
        _dir: dir,
    }
}

impl App {
    /// Sends a request from `peer`, with `token` as bearer when given.
    pub async fn call_from(
        &self,
        peer: &str,
        method: &str,
        uri: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Res {
        self.call_forwarded(peer, None, method, uri, token, body)
            .await
    }

    /// [`App::call_from`], with an `X-Forwarded-For` header when given.
    pub async fn call_forwarded(
        &self,
        peer: &str,
        forwarded_for: Option<&str>,
        method: &str,
        uri: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Res {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(f) = forwarded_for {
            req = req.header("x-forwarded-for", f);
        }
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let mut req = match body {
            Some(b) => req
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(b.to_string())),
            None => req.body(Body::empty()),
        }
        .unwrap();
        let addr: SocketAddr = format!("{peer}:40000").parse().unwrap();
        req.extensions_mut().insert(ConnectInfo(addr));
        self.send(req).await
    }

    /// Sends a request as it is, and reads the whole response.
    pub async fn send(&self, req: Request<Body>) -> Res {
        let res = self.router.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()));
        Res {
            status,
            headers,
            body,
        }
    }

    pub async fn call(
        &self,
        method: &str,
        uri: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Res {
        self.call_from("127.0.0.1", method, uri, token, body).await
    }

    pub async fn get(&self, uri: &str, token: &str) -> Res {
        self.call("GET", uri, Some(token), None).await
    }

    /// Creates a user with `PASSWORD` (as admin); its id.
    pub async fn user(&self, name: &str) -> String {
        let r = self
            .call(
                "POST",
                "/v1/users",
                Some(&self.admin_token),
                Some(&json!({"username": name, "password": PASSWORD})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        r.body["id"].as_str().unwrap().to_owned()
    }

    /// Gives `user` `role` in `project` (as admin).
    pub async fn member(&self, project: &str, user: &str, role: &str) {
        let r = self
            .call(
                "POST",
                &format!("/v1/projects/{project}/members"),
                Some(&self.admin_token),
                Some(&json!({"user": user, "role": role})),
            )
            .await;
        assert!(r.status.is_success(), "{}", r.body);
    }

    /// Creates a project (as admin).
    pub async fn project(&self, name: &str) {
        let r = self
            .call(
                "POST",
                "/v1/projects",
                Some(&self.admin_token),
                Some(&json!({"name": name})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    }

    /// Signs in with `PASSWORD`: the whole token response.
    pub async fn login(&self, name: &str) -> Value {
        let r = self
            .call(
                "POST",
                "/v1/auth/token",
                None,
                Some(&json!({"username": name, "password": PASSWORD})),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        r.body
    }

    /// The project's audit events (as admin), newest first.
    pub async fn audit(&self, project: &str) -> Vec<Value> {
        let r = self
            .get(
                &format!("/v1/projects/{project}/audit-events?page_size=500"),
                &self.admin_token,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        r.body["items"].as_array().unwrap().clone()
    }

    pub async fn stop(&self) {
        self.runtime.shutdown().await;
    }
}

/// The status and the field the problem names.
pub fn assert_problem(r: &Res, status: StatusCode, field: &str) {
    assert_eq!(r.status, status, "{}", r.body);
    assert_eq!(r.headers[header::CONTENT_TYPE], "application/problem+json");
    let fields: Vec<&str> = r.body["errors"]
        .as_array()
        .map(|a| a.iter().filter_map(|e| e["field"].as_str()).collect())
        .unwrap_or_default();
    assert!(fields.contains(&field), "no error for {field}: {}", r.body);
}
