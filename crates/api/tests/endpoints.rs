//! Every endpoint driven in-process through the router, against a real store
//! (on SQLite and on a throwaway PostgreSQL server: each test runs on both)
//! and the real local runtime (PostgreSQL servers included).

// Test helpers outside #[test] functions may panic: that is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::too_many_lines,
    clippy::cast_possible_wrap,
    clippy::items_after_statements
)]

mod common;

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::{PASSWORD, Res, assert_problem};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use strata_store::Backend;
use strata_testpg::each_backend;
use tower::ServiceExt;

/// The shared fixture, with the admin's token and id at hand.
struct App {
    inner: common::App,
    token: String,
    admin_id: String,
}

impl std::ops::Deref for App {
    type Target = common::App;
    fn deref(&self) -> &common::App {
        &self.inner
    }
}

async fn app(backend: Backend) -> App {
    let inner = common::app(backend, |a| a).await;
    let admin_id = inner
        .store
        .user_by_name("admin")
        .await
        .unwrap()
        .unwrap()
        .id
        .to_string();
    App {
        token: inner.admin_token.clone(),
        admin_id,
        inner,
    }
}

impl App {
    async fn call(&self, req: Request<Body>) -> Res {
        self.inner.send(req).await
    }

    fn req(&self, method: &str, uri: &str) -> axum::http::request::Builder {
        Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token))
    }

    async fn get(&self, uri: &str) -> Res {
        self.call(self.req("GET", uri).body(Body::empty()).unwrap())
            .await
    }

    async fn send_json(&self, method: &str, uri: &str, body: &Value) -> Res {
        self.call(
            self.req(method, uri)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_string()))
                .unwrap(),
        )
        .await
    }

    async fn wait_phase(&self, name: &str, phase: &str) -> Value {
        let start = Instant::now();
        loop {
            let r = self
                .get(&format!("/v1/projects/default/instances/{name}"))
                .await;
            if r.body["status"]["phase"] == phase {
                return r.body;
            }
            assert!(
                start.elapsed() < Duration::from_mins(1),
                "{name} never became {phase}: {}",
                r.body
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn wait_gone(&self, name: &str) {
        let start = Instant::now();
        while self
            .get(&format!("/v1/projects/default/instances/{name}"))
            .await
            .status
            != StatusCode::NOT_FOUND
        {
            assert!(
                start.elapsed() < Duration::from_mins(1),
                "{name} never went away"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn stop(self) {
        self.runtime.shutdown().await;
    }
}

each_backend! {
    #[tokio::test]
    async fn health_catalog_and_docs(backend) {
        let app = app(backend).await;
        assert_eq!(
            app.call(Request::get("/healthz").body(Body::empty()).unwrap())
                .await
                .status,
            StatusCode::OK
        );
        let ready = app
            .call(Request::get("/readyz").body(Body::empty()).unwrap())
            .await;
        assert_eq!(ready.body["status"], "ready");

        let versions = app.get("/v1/versions").await;
        assert_eq!(versions.status, StatusCode::OK);
        let items = versions.body["items"].as_array().unwrap();
        assert!(items.iter().any(|v| v["default"] == true));

        let plans = app.get("/v1/plans").await;
        let ids: Vec<&str> = plans.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["micro", "small", "medium", "large"]);

        let doc = app
            .call(Request::get("/openapi.json").body(Body::empty()).unwrap())
            .await;
        assert_eq!(doc.body["openapi"], "3.1.0");
        assert!(doc.body["paths"]["/v1/projects/{project}/instances"]["post"].is_object());
        let docs = app
            .call(Request::get("/docs/").body(Body::empty()).unwrap())
            .await;
        assert_eq!(docs.status, StatusCode::OK);
        assert!(
            docs.body.as_str().unwrap().contains("swagger"),
            "docs page is not Swagger UI"
        );

        let missing = app.get("/v1/nothing-here").await;
        assert_eq!(missing.status, StatusCode::NOT_FOUND);
        assert!(missing.headers.contains_key("x-request-id"));
        app.stop().await;
    }
}

each_backend! {
    #[tokio::test]
    async fn token_endpoint(backend) {
        let app = app(backend).await;
        let ok = app
            .send_json(
                "POST",
                "/v1/auth/token",
                &json!({"username": "admin", "password": PASSWORD}),
            )
            .await;
        assert_eq!(ok.status, StatusCode::OK);
        assert_eq!(ok.body["token_type"], "Bearer");
        let token = ok.body["access_token"].as_str().unwrap();
        let me = app
            .call(
                Request::get("/v1/plans")
                    .header(header::AUTHORIZATION, format!("Bearer {token}"))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(me.status, StatusCode::OK);

        let wrong = app
            .send_json(
                "POST",
                "/v1/auth/token",
                &json!({"username": "admin", "password": "nope"}),
            )
            .await;
        assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
        let nobody = app
            .send_json(
                "POST",
                "/v1/auth/token",
                &json!({"username": "ghost", "password": "nope"}),
            )
            .await;
        assert_eq!(nobody.status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            wrong.body["detail"], nobody.body["detail"],
            "unknown users must look like wrong passwords"
        );
        let bad = app
            .send_json("POST", "/v1/auth/token", &json!({"username": "admin"}))
            .await;
        assert_problem(&bad, StatusCode::BAD_REQUEST, "password");
        app.stop().await;
    }
}

fn b64(v: &Value) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

each_backend! {
    #[tokio::test]
    async fn bad_tokens_get_401(backend) {
        let app = app(backend).await;
        let key = app.store.signing_keys().await.unwrap().pop().unwrap();
        let enc = jsonwebtoken::EncodingKey::from_ed_pem(key.private_pem.expose().as_bytes()).unwrap();
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let claims = |exp: i64, nbf: i64, iss: &str, aud: &str| json!({"iss": iss, "sub": app.admin_id, "aud": aud, "exp": exp, "nbf": nbf, "iat": now, "jti": "j", "name": "admin", "admin": true});
        let sign = |c: &Value, kid: &str| {
            let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
            h.kid = Some(kid.to_owned());
            jsonwebtoken::encode(&h, c, &enc).unwrap()
        };
        let good = claims(now + 600, now, "http://strata.test", "strata");
        let valid = sign(&good, &key.kid);
        let mut tampered = valid.clone();
        tampered.replace_range(tampered.len() - 6.., "AAAAAA");
        let alg_none = format!(
            "{}.{}.",
            b64(&json!({"alg": "none", "typ": "JWT", "kid": key.kid})),
            b64(&good)
        );
        let hs256 = {
            let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
            h.kid = Some(key.kid.clone());
            jsonwebtoken::encode(
                &h,
                &good,
                &jsonwebtoken::EncodingKey::from_secret(key.public_key.as_bytes()),
            )
            .unwrap()
        };
        let cases = [
            (
                "expired",
                sign(
                    &claims(now - 600, now - 1200, "http://strata.test", "strata"),
                    &key.kid,
                ),
            ),
            (
                "not yet valid",
                sign(
                    &claims(now + 1200, now + 600, "http://strata.test", "strata"),
                    &key.kid,
                ),
            ),
            (
                "wrong issuer",
                sign(
                    &claims(now + 600, now, "http://evil.test", "strata"),
                    &key.kid,
                ),
            ),
            (
                "wrong audience",
                sign(
                    &claims(now + 600, now, "http://strata.test", "other"),
                    &key.kid,
                ),
            ),
            ("unknown kid", sign(&good, "no-such-key")),
            ("tampered", tampered),
            ("alg none", alg_none),
            ("HS256 with the public key", hs256),
            ("garbage", "not.a.jwt".to_owned()),
        ];
        for (what, token) in cases {
            let r = app
                .call(
                    Request::get("/v1/projects/default/instances")
                        .header(header::AUTHORIZATION, format!("Bearer {token}"))
                        .body(Body::empty())
                        .unwrap(),
                )
                .await;
            assert_eq!(
                r.status,
                StatusCode::UNAUTHORIZED,
                "{what} accepted: {}",
                r.body
            );
            assert_eq!(
                r.headers[header::WWW_AUTHENTICATE],
                "Bearer realm=\"strata\""
            );
        }
        let none = app
            .call(Request::get("/v1/versions").body(Body::empty()).unwrap())
            .await;
        assert_eq!(none.status, StatusCode::UNAUTHORIZED);
        let ok = app
            .call(
                Request::get("/v1/versions")
                    .header(header::AUTHORIZATION, format!("Bearer {valid}"))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(ok.status, StatusCode::OK);
        app.stop().await;
    }
}

each_backend! {
    #[tokio::test]
    async fn create_validation_names_fields_and_creates_nothing(backend) {
        let app = app(backend).await;
        let url = "/v1/projects/default/instances";
        let cases = [
            (json!({"name": "Bad_Name"}), "name"),
            (json!({"name": &"a".repeat(41)}), "name"),
            (json!({"name": "a", "plan": "huge"}), "plan"),
            (json!({"name": "a", "version": "9"}), "version"),
            (json!({"name": "a", "storage_gb": 11}), "storage_gb"),
            (
                json!({"name": "a", "acl": ["10.0.0.0/8", "not-a-cidr"]}),
                "acl[1]",
            ),
            (json!({"name": "a", "colour": "red"}), "colour"),
            (json!({"name": "a", "storage_gb": "ten"}), "storage_gb"),
            (json!({"plan": "small"}), "name"),
            (
                json!({"name": "a", "labels": {"bad key!": "x"}}),
                "labels.bad key!",
            ),
            // An external endpoint that would admit no one.
            (
                json!({"name": "a", "acl": [], "external_access": true}),
                "external_access",
            ),
            (json!({"name": "a", "external_access": "yes"}), "external_access"),
            // One this platform does not offer (the local runtime serves on
            // its own address; Kubernetes has a load balancer).
            (
                json!({"name": "a", "acl": ["203.0.113.0/24"], "external_access": true}),
                "external_access",
            ),
        ];
        for (body, field) in cases {
            let r = app.send_json("POST", url, &body).await;
            assert_problem(&r, StatusCode::BAD_REQUEST, field);
        }
        let malformed = app
            .call(
                app.req("POST", url)
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from("{\"name\":"))
                    .unwrap(),
            )
            .await;
        assert_problem(&malformed, StatusCode::BAD_REQUEST, "body");
        let text = app
            .call(
                app.req("POST", url)
                    .header(header::CONTENT_TYPE, "text/plain")
                    .body(Body::from("{}"))
                    .unwrap(),
            )
            .await;
        assert_problem(&text, StatusCode::UNSUPPORTED_MEDIA_TYPE, "Content-Type");
        let huge = format!(
            "{{\"name\":\"a\",\"labels\":{{\"k\":\"{}\"}}}}",
            "x".repeat(100_000)
        );
        let big = app
            .call(
                app.req("POST", url)
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(huge))
                    .unwrap(),
            )
            .await;
        assert_eq!(big.status, StatusCode::PAYLOAD_TOO_LARGE);
        let unknown_project = app
            .send_json("POST", "/v1/projects/nope/instances", &json!({"name": "a"}))
            .await;
        assert_eq!(unknown_project.status, StatusCode::NOT_FOUND);

        let list = app.get(url).await;
        assert_eq!(
            list.body["items"],
            json!([]),
            "a bad request left something behind"
        );
        assert!(
            std::fs::read_dir(
                app.runtime
                    .instance_dir(uuid::Uuid::nil())
                    .parent()
                    .unwrap()
            )
            .unwrap()
            .next()
            .is_none()
        );
        app.stop().await;
    }
}

each_backend! {
    #[tokio::test]
    async fn lifecycle_through_the_router(backend) {
        let app = app(backend).await;
        let url = "/v1/projects/default/instances";
        let created = app
            .send_json(
                "POST",
                url,
                &json!({"name": "orders", "labels": {"team": "checkout"}}),
            )
            .await;
        assert_eq!(created.status, StatusCode::ACCEPTED, "{}", created.body);
        assert_eq!(
            created.headers[header::LOCATION],
            "/v1/projects/default/instances/orders"
        );
        assert_eq!(created.body["status"]["phase"], "Provisioning");

        let early = app.get(&format!("{url}/orders/credentials")).await;
        assert!(early.status == StatusCode::CONFLICT || early.status == StatusCode::OK);

        let dup = app.send_json("POST", url, &json!({"name": "orders"})).await;
        assert_eq!(dup.status, StatusCode::CONFLICT);

        let ready = app.wait_phase("orders", "Ready").await;
        assert_eq!(ready["status"]["endpoint"]["host"], "127.0.0.1");

        let creds = app.get(&format!("{url}/orders/credentials")).await;
        assert_eq!(creds.status, StatusCode::OK);
        assert_eq!(creds.headers[header::CACHE_CONTROL], "no-store");
        let password = creds.body["password"].as_str().unwrap().to_owned();
        assert!(password.len() >= 32);
        assert!(
            creds.body["ca_certificate"]
                .as_str()
                .unwrap()
                .starts_with("-----BEGIN CERTIFICATE-----")
        );
        assert!(
            creds.body["uri"]
                .as_str()
                .unwrap()
                .contains("sslmode=require")
        );

        // Filtering and paging.
        assert_eq!(
            app.get(&format!("{url}?label=team%3Dcheckout")).await.body["items"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            app.get(&format!("{url}?label=team%3Dother")).await.body["items"],
            json!([])
        );
        assert_problem(
            &app.get(&format!("{url}?page_size=501")).await,
            StatusCode::BAD_REQUEST,
            "page_size",
        );
        assert_problem(
            &app.get(&format!("{url}?label=nokey")).await,
            StatusCode::BAD_REQUEST,
            "label",
        );
        assert_problem(
            &app.get(&format!("{url}?colour=red")).await,
            StatusCode::BAD_REQUEST,
            "colour",
        );

        // PATCH: bad input, then a real change.
        assert_problem(
            &app.send_json("PATCH", &format!("{url}/orders"), &json!({"storage_gb": 0}))
                .await,
            StatusCode::BAD_REQUEST,
            "storage_gb",
        );
        assert_problem(
            &app.send_json("PATCH", &format!("{url}/orders"), &json!({"acl": ["x"]}))
                .await,
            StatusCode::BAD_REQUEST,
            "acl[0]",
        );
        assert_eq!(ready["external_access"], false);
        assert_eq!(ready["status"]["external_endpoint"], Value::Null);
        assert_problem(
            &app.send_json(
                "PATCH",
                &format!("{url}/orders"),
                &json!({"external_access": true}),
            )
            .await,
            StatusCode::BAD_REQUEST,
            "external_access",
        );
        // The data volume's storage class is not the tenant's to change (on
        // Kubernetes the CRD refuses it for kubectl and GitOps too).
        assert_problem(
            &app.send_json(
                "PATCH",
                &format!("{url}/orders"),
                &json!({"storage_class": "fast"}),
            )
            .await,
            StatusCode::BAD_REQUEST,
            "storage_class",
        );
        let patched = app
            .send_json(
                "PATCH",
                &format!("{url}/orders"),
                &json!({"plan": "small", "storage_gb": 5}),
            )
            .await;
        assert_eq!(patched.status, StatusCode::ACCEPTED, "{}", patched.body);
        assert_eq!(patched.body["status"]["phase"], "Updating");
        let updated = app.wait_phase("orders", "Ready").await;
        assert_eq!(updated["plan"], "small");
        assert_eq!(updated["storage_gb"], 5);
        let shrink = app
            .send_json("PATCH", &format!("{url}/orders"), &json!({"storage_gb": 4}))
            .await;
        // Well-formed, but smaller than the instance is now: a conflict.
        assert_problem(&shrink, StatusCode::CONFLICT, "storage_gb");
        // Two changes of different fields at once: both take effect.
        let orders = format!("{url}/orders");
        let (labels, acl) = (
            json!({"labels": {"team": "billing"}}),
            json!({"acl": ["10.1.0.0/16"]}),
        );
        let (labelled, narrowed) = tokio::join!(
            app.send_json("PATCH", &orders, &labels),
            app.send_json("PATCH", &orders, &acl),
        );
        assert_eq!(labelled.status, StatusCode::ACCEPTED, "{}", labelled.body);
        assert_eq!(narrowed.status, StatusCode::ACCEPTED, "{}", narrowed.body);
        let both = app.wait_phase("orders", "Ready").await;
        assert_eq!(both["labels"], json!({"team": "billing"}));
        assert_eq!(both["acl"], json!(["10.1.0.0/16"]));
        assert_eq!(both["plan"], "small");

        // Rotate: a new password.
        let rotated = app
            .call(
                app.req("POST", &format!("{url}/orders/credentials/rotate"))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(rotated.status, StatusCode::OK);
        assert_ne!(rotated.body["password"].as_str().unwrap(), password);

        // Service events, as JSON and as a stream.
        let events = app.get(&format!("{url}/orders/events")).await;
        let kinds: Vec<&str> = events.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["kind"].as_str().unwrap())
            .collect();
        for k in [
            "phase_changed",
            "provisioning_step",
            "updated",
            "credentials_rotated",
        ] {
            assert!(kinds.contains(&k), "no {k} event in {kinds:?}");
        }
        assert_problem(
            &app.get(&format!("{url}/orders/events?after=x")).await,
            StatusCode::BAD_REQUEST,
            "after",
        );
        let stream = app
            .router
            .clone()
            .oneshot(
                app.req("GET", &format!("{url}/orders/events?follow=true"))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(stream.headers()[header::CONTENT_TYPE], "text/event-stream");
        let mut body = stream.into_body();
        let first = tokio::time::timeout(Duration::from_secs(5), body.frame())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let text = String::from_utf8_lossy(first.data_ref().unwrap()).into_owned();
        assert!(text.contains("event: phase_changed"), "{text}");
        drop(body);

        // Delete.
        let deleted = app
            .call(
                app.req("DELETE", &format!("{url}/orders"))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(deleted.status, StatusCode::ACCEPTED);
        assert_eq!(deleted.body["status"]["phase"], "Deleting");
        app.wait_gone("orders").await;
        assert_eq!(
            app.get(&format!("{url}/orders/credentials")).await.status,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            app.call(
                app.req("DELETE", &format!("{url}/orders"))
                    .body(Body::empty())
                    .unwrap()
            )
            .await
            .status,
            StatusCode::NOT_FOUND
        );
        app.stop().await;
    }
}

each_backend! {
    #[tokio::test]
    async fn idempotency_and_concurrent_creates(backend) {
        let app = app(backend).await;
        let url = "/v1/projects/default/instances";
        let with_key = |key: &str, body: &Value| {
            app.req("POST", url)
                .header(header::CONTENT_TYPE, "application/json")
                .header("Idempotency-Key", key)
                .body(Body::from(body.to_string()))
                .unwrap()
        };
        let first = app.call(with_key("k-1", &json!({"name": "idem"}))).await;
        let again = app.call(with_key("k-1", &json!({"name": "idem"}))).await;
        assert_eq!(first.status, StatusCode::ACCEPTED);
        assert_eq!(again.status, StatusCode::ACCEPTED);
        assert_eq!(first.body["id"], again.body["id"]);
        assert_eq!(again.headers["idempotent-replayed"], "true");
        let other_body = app.call(with_key("k-1", &json!({"name": "idem2"}))).await;
        assert_problem(
            &other_body,
            StatusCode::UNPROCESSABLE_ENTITY,
            "Idempotency-Key",
        );

        let race = json!({"name": "race"});
        let (a, b) = tokio::join!(
            app.send_json("POST", url, &race),
            app.send_json("POST", url, &race)
        );
        let mut statuses = [a.status, b.status];
        statuses.sort();
        assert_eq!(statuses, [StatusCode::ACCEPTED, StatusCode::CONFLICT]);
        let list = app.get(url).await;
        let names: Vec<&str> = list.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["idem", "race"]);
        let page = app.get(&format!("{url}?page_size=1")).await;
        assert_eq!(page.body["items"].as_array().unwrap().len(), 1);
        let token = page.body["next_page_token"].as_str().unwrap();
        let next = app
            .get(&format!("{url}?page_size=1&page_token={token}"))
            .await;
        assert_eq!(next.body["items"][0]["name"], "race");
        assert!(next.body.get("next_page_token").is_none());

        // Deleting while provisioning leaves nothing behind.
        for name in ["idem", "race"] {
            app.call(
                app.req("DELETE", &format!("{url}/{name}"))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        }
        for name in ["idem", "race"] {
            app.wait_gone(name).await;
        }
        let dirs = app.runtime.instance_dir(uuid::Uuid::nil());
        assert!(
            std::fs::read_dir(dirs.parent().unwrap())
                .unwrap()
                .next()
                .is_none(),
            "an instance directory was left behind"
        );
        app.stop().await;
    }
}

impl App {
    /// A request as the holder of `token`, with a user agent the audit log records.
    async fn call_as(&self, token: &str, method: &str, uri: &str, body: Option<&Value>) -> Res {
        let b = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::USER_AGENT, "tenancy-test/1");
        let req = match body {
            Some(v) => b
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(v.to_string()))
                .unwrap(),
            None => b.body(Body::empty()).unwrap(),
        };
        self.call(req).await
    }

    /// Creates a user through the API and logs it in.
    async fn user(&self, name: &str) -> String {
        let r = self
            .send_json(
                "POST",
                "/v1/users",
                &json!({"username": name, "password": PASSWORD}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        let t = self
            .call(
                Request::post("/v1/auth/token")
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(
                        json!({"username": name, "password": PASSWORD}).to_string(),
                    ))
                    .unwrap(),
            )
            .await;
        assert_eq!(t.status, StatusCode::OK, "{}", t.body);
        t.body["access_token"].as_str().unwrap().to_owned()
    }
}

each_backend! {
    #[tokio::test]
    async fn tenants_see_only_their_projects_roles_limit_and_the_audit_log_records_it(backend) {
        let app = app(backend).await;
        // Platform admin: projects and users; bad input names the field.
        for p in ["tenant-a", "tenant-b"] {
            let r = app
                .send_json("POST", "/v1/projects", &json!({"name": p}))
                .await;
            assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        }
        let r = app
            .send_json("POST", "/v1/projects", &json!({"name": "Bad_Name"}))
            .await;
        assert_problem(&r, StatusCode::BAD_REQUEST, "name");
        let r = app
            .send_json("POST", "/v1/projects", &json!({"name": "tenant-a"}))
            .await;
        assert_eq!(r.status, StatusCode::CONFLICT);
        let r = app
            .send_json(
                "POST",
                "/v1/users",
                &json!({"username": "carol", "password": "short"}),
            )
            .await;
        assert_problem(&r, StatusCode::BAD_REQUEST, "password");
        let r = app
            .send_json(
                "POST",
                "/v1/users",
                &json!({"username": "Carol!", "password": PASSWORD}),
            )
            .await;
        assert_problem(&r, StatusCode::BAD_REQUEST, "username");
        let alice = app.user("alice").await;
        let bob = app.user("bob").await;
        for (user, project) in [("alice", "tenant-a"), ("bob", "tenant-b")] {
            let r = app
                .send_json(
                    "POST",
                    &format!("/v1/projects/{project}/members"),
                    &json!({"user": user, "role": "owner"}),
                )
                .await;
            assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        }
        let r = app
            .send_json(
                "POST",
                "/v1/projects/tenant-a/members",
                &json!({"user": "alice", "role": "god"}),
            )
            .await;
        assert_problem(&r, StatusCode::BAD_REQUEST, "role");
        let r = app
            .send_json(
                "POST",
                "/v1/projects/tenant-a/members",
                &json!({"user": "nobody", "role": "viewer"}),
            )
            .await;
        assert_problem(&r, StatusCode::NOT_FOUND, "user");

        // Bob creates an instance in his project.
        let r = app
            .call_as(
                &bob,
                "POST",
                "/v1/projects/tenant-b/instances",
                Some(&json!({"name": "orders"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
        let orders_id = r.body["id"].as_str().unwrap().to_owned();

        // Alice (owner of tenant-a) names tenant-b and its instance in every
        // endpoint: each answer is the one for a project that does not exist.
        let patch = json!({"labels": {"x": "y"}});
        let create = json!({"name": "sneaky"});
        let member = json!({"user": "alice", "role": "owner"});
        let endpoints: Vec<(&str, &str, Option<&Value>)> = vec![
            ("GET", "/instances", None),
            ("POST", "/instances", Some(&create)),
            ("GET", "/instances/orders", None),
            ("PATCH", "/instances/orders", Some(&patch)),
            ("DELETE", "/instances/orders", None),
            ("GET", "/instances/orders/credentials", None),
            ("POST", "/instances/orders/credentials/rotate", None),
            ("GET", "/instances/orders/events", None),
            ("GET", "/audit-events", None),
            ("GET", "/members", None),
            ("POST", "/members", Some(&member)),
            ("DELETE", "/members/bob", None),
        ];
        for (method, path, body) in &endpoints {
            let theirs = app
                .call_as(
                    &alice,
                    method,
                    &format!("/v1/projects/tenant-b{path}"),
                    *body,
                )
                .await;
            let nowhere = app
                .call_as(
                    &alice,
                    method,
                    &format!("/v1/projects/tenant-z{path}"),
                    *body,
                )
                .await;
            assert_eq!(
                theirs.status,
                StatusCode::NOT_FOUND,
                "{method} {path}: {}",
                theirs.body
            );
            assert_eq!(
                theirs.body.to_string().replace("tenant-b", "tenant-z"),
                nowhere.body.to_string(),
                "{method} {path} tells tenant-b apart from a missing project"
            );
            let text = theirs.body.to_string();
            assert!(
                !text.contains("orders") && !text.contains(&orders_id),
                "{text}"
            );
        }
        // Nothing changed in tenant-b.
        let r = app.get("/v1/projects/tenant-b/instances").await;
        let names: Vec<&str> = r.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["orders"]);
        assert!(r.body["items"][0]["labels"].get("x").is_none());
        let r = app.get("/v1/projects/tenant-b/members").await;
        assert_eq!(r.body["items"].as_array().unwrap().len(), 1, "{}", r.body);

        // Alice sees only her project; she is not an admin.
        let r = app.call_as(&alice, "GET", "/v1/projects", None).await;
        let names: Vec<&str> = r.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["tenant-a"]);
        let r = app.call_as(&alice, "GET", "/v1/me", None).await;
        assert_eq!(r.body["username"], "alice");
        assert_eq!(r.body["admin"], false);
        assert_eq!(
            r.body["projects"],
            json!([{"project": "tenant-a", "role": "owner"}])
        );
        for (method, uri, body) in [
            ("GET", "/v1/users", None),
            ("POST", "/v1/projects", Some(json!({"name": "mine"}))),
            ("DELETE", "/v1/users/bob", None),
            ("GET", "/v1/admin/audit/verify", None),
        ] {
            let r = app.call_as(&alice, method, uri, body.as_ref()).await;
            assert_eq!(
                r.status,
                StatusCode::FORBIDDEN,
                "{method} {uri}: {}",
                r.body
            );
        }

        // Bob (owner) makes Alice a viewer of tenant-b: she can list and get,
        // but not change, delete, or touch credentials.
        let r = app
            .call_as(
                &bob,
                "POST",
                "/v1/projects/tenant-b/members",
                Some(&json!({"user": "alice", "role": "viewer"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        let r = app
            .call_as(&bob, "GET", "/v1/projects/tenant-b/members", None)
            .await;
        assert_eq!(r.body["items"].as_array().unwrap().len(), 2, "{}", r.body);
        for (method, path) in [
            ("GET", "/instances"),
            ("GET", "/instances/orders"),
            ("GET", "/instances/orders/events"),
            ("GET", "/audit-events"),
        ] {
            let r = app
                .call_as(
                    &alice,
                    method,
                    &format!("/v1/projects/tenant-b{path}"),
                    None,
                )
                .await;
            assert_eq!(r.status, StatusCode::OK, "{method} {path}: {}", r.body);
        }
        for (method, path, body) in [
            ("DELETE", "/instances/orders", None),
            ("GET", "/instances/orders/credentials", None),
            ("POST", "/instances/orders/credentials/rotate", None),
            ("PATCH", "/instances/orders", Some(&patch)),
            ("POST", "/instances", Some(&create)),
            ("GET", "/members", None),
            ("DELETE", "/members/bob", None),
        ] {
            let r = app
                .call_as(
                    &alice,
                    method,
                    &format!("/v1/projects/tenant-b{path}"),
                    body,
                )
                .await;
            assert_eq!(
                r.status,
                StatusCode::FORBIDDEN,
                "{method} {path}: {}",
                r.body
            );
            assert_eq!(r.headers[header::CONTENT_TYPE], "application/problem+json");
        }
        let wait = Instant::now();
        loop {
            let r = app
                .call_as(&bob, "GET", "/v1/projects/tenant-b/instances/orders", None)
                .await;
            if r.body["status"]["phase"] == "Ready" {
                break;
            }
            assert!(wait.elapsed() < Duration::from_mins(1), "{}", r.body);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let creds = app
            .call_as(
                &bob,
                "GET",
                "/v1/projects/tenant-b/instances/orders/credentials",
                None,
            )
            .await;
        assert_eq!(creds.status, StatusCode::OK, "{}", creds.body);
        let rotated = app
            .call_as(
                &bob,
                "POST",
                "/v1/projects/tenant-b/instances/orders/credentials/rotate",
                None,
            )
            .await;
        assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.body);

        // The audit log of tenant-b shows who did what, and how it ended.
        let log = app
            .call_as(
                &alice,
                "GET",
                "/v1/projects/tenant-b/audit-events?page_size=500",
                None,
            )
            .await;
        assert_eq!(log.status, StatusCode::OK, "{}", log.body);
        let events = log.body["items"].as_array().unwrap();
        let find = |actor: &str, action: &str, status: u16| {
            events
                .iter()
                .find(|e| {
                    e["actor"]["name"] == actor
                        && e["action"] == action
                        && e["outcome"]["status"] == status
                })
                .unwrap_or_else(|| panic!("no {action} by {actor} with {status} in {}", log.body))
        };
        let created = find("bob", "instance.create", 202);
        assert_eq!(created["outcome"]["result"], "success");
        assert_eq!(
            created["target"],
            json!({"kind": "instance", "id": orders_id, "name": "orders"})
        );
        assert_eq!(created["user_agent"], "tenancy-test/1");
        assert!(
            created["request_id"]
                .as_str()
                .is_some_and(|s| !s.is_empty())
        );
        assert_eq!(created["details"]["plan"], "micro");
        assert_eq!(
            find("alice", "instance.delete", 403)["outcome"]["result"],
            "failure"
        );
        find("alice", "instance.delete", 404);
        find("alice", "instance.credentials.read", 403);
        find("alice", "instance.credentials.rotate", 403);
        find("bob", "instance.credentials.read", 200);
        find("bob", "instance.credentials.rotate", 200);
        find("bob", "member.add", 201);
        find("admin", "member.add", 201);
        // Newest first, one chain.
        let seqs: Vec<i64> = events.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
        assert!(seqs.windows(2).all(|w| w[0] > w[1]), "{seqs:?}");
        // Secrets never reach the log.
        let text = log.body.to_string();
        for c in [&creds, &rotated] {
            assert!(!text.contains(c.body["password"].as_str().unwrap()));
        }
        assert!(!text.contains(PASSWORD));

        // Filters and pagination.
        let r = app
            .call_as(
                &bob,
                "GET",
                "/v1/projects/tenant-b/audit-events?actor=alice&action=instance.delete",
                None,
            )
            .await;
        let items = r.body["items"].as_array().unwrap();
        assert_eq!(items.len(), 2, "{}", r.body);
        assert!(
            items
                .iter()
                .all(|e| e["actor"]["name"] == "alice" && e["action"] == "instance.delete")
        );
        let r = app
            .call_as(
                &bob,
                "GET",
                "/v1/projects/tenant-b/audit-events?instance=orders&page_size=1",
                None,
            )
            .await;
        assert_eq!(r.body["items"].as_array().unwrap().len(), 1);
        let token = r.body["next_page_token"].as_str().unwrap();
        let next = app
            .call_as(
                &bob,
                "GET",
                &format!(
                    "/v1/projects/tenant-b/audit-events?instance=orders&page_size=1&page_token={token}"
                ),
                None,
            )
            .await;
        assert!(next.body["items"][0]["seq"].as_i64() < r.body["items"][0]["seq"].as_i64());
        let r = app
            .call_as(
                &bob,
                "GET",
                "/v1/projects/tenant-b/audit-events?since=yesterday",
                None,
            )
            .await;
        assert_problem(&r, StatusCode::BAD_REQUEST, "since");
        let r = app
            .call_as(
                &bob,
                "GET",
                "/v1/projects/tenant-b/audit-events?until=2000-01-01T00:00:00Z",
                None,
            )
            .await;
        assert!(r.body["items"].as_array().unwrap().is_empty());

        // The admin verifies the chain; a row edited in the database breaks it there.
        let r = app.get("/v1/admin/audit/verify").await;
        assert_eq!(r.body["ok"], true, "{}", r.body);
        let edited = created["seq"].as_i64().unwrap();
        app.db
            .exec(&format!(
                "UPDATE audit_events SET actor_name = 'mallory' WHERE seq = {edited}"
            ))
            .await;
        let r = app.get("/v1/admin/audit/verify").await;
        assert_eq!(r.body["ok"], false, "{}", r.body);
        assert_eq!(r.body["first_broken"]["seq"], edited);
        assert_eq!(r.body["first_broken"]["id"], created["id"]);

        // A deleted user's token stops working at once.
        let r = app
            .call(
                app.req("DELETE", "/v1/users/alice")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);
        let r = app.call_as(&alice, "GET", "/v1/me", None).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        app.stop().await;
    }
}

each_backend! {
    #[tokio::test]
    async fn a_change_whose_audit_event_cannot_be_written_does_not_happen(backend) {
        let app = app(backend).await;
        // The audit log refuses every write, the way each backend can be made to.
        match app.db.backend() {
            Backend::Sqlite => {
                app.db.exec("CREATE TRIGGER no_audit BEFORE INSERT ON audit_events BEGIN SELECT RAISE(ABORT, 'audit log unavailable'); END").await;
            }
            Backend::Postgres => {
                app.db.exec("CREATE FUNCTION no_audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'audit log unavailable'; END $$").await;
                app.db.exec("CREATE TRIGGER no_audit BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION no_audit()").await;
            }
        }
        let r = app
            .send_json(
                "POST",
                "/v1/projects/default/instances",
                &json!({"name": "ghost"}),
            )
            .await;
        assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", r.body);
        let list = app.get("/v1/projects/default/instances").await;
        assert_eq!(
            list.body["items"],
            json!([]),
            "an unrecorded create left an instance"
        );
        let r = app
            .send_json("POST", "/v1/projects", &json!({"name": "ghost-project"}))
            .await;
        assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", r.body);
        let projects = app.get("/v1/projects").await;
        assert!(!projects.body.to_string().contains("ghost-project"));
        let r = app
            .send_json(
                "POST",
                "/v1/users",
                &json!({"username": "ghost", "password": PASSWORD}),
            )
            .await;
        assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", r.body);
        assert!(app.store.user_by_name("ghost").await.unwrap().is_none());
        app.stop().await;
    }
}

each_backend! {
    #[tokio::test]
    async fn the_audit_log_records_the_peer_address(backend) {
        let app = app(backend).await;
        let router = app
            .router
            .clone()
            .layer(axum::extract::connect_info::MockConnectInfo(
                std::net::SocketAddr::from(([10, 1, 2, 3], 45678)),
            ));
        let res = router
            .oneshot(
                app.req("POST", "/v1/projects")
                    .header(header::CONTENT_TYPE, "application/json")
                    .header("x-request-id", "req-peer-1")
                    .body(Body::from(json!({"name": "peer"}).to_string()))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::CREATED);
        let log = app.get("/v1/projects/peer/audit-events").await;
        let e = &log.body["items"][0];
        assert_eq!(e["action"], "project.create", "{}", log.body);
        assert_eq!(e["source_ip"], "10.1.2.3");
        assert_eq!(e["request_id"], "req-peer-1");
        assert_eq!(e["actor"]["name"], "admin");
        app.stop().await;
    }
}
