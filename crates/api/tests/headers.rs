//! Headers a security review expects, as a client reads them over a real
//! HTTP connection: no response that carries a token may be cached, and no
//! response may be sniffed into another content type.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;

use common::{PASSWORD, app};
use reqwest::{Method, StatusCode, header};
use serde_json::{Value, json};
use strata_testpg::each_backend;

/// Serves the router on a loopback port, as `strata serve` does.
async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    format!("http://{addr}")
}

async fn send(
    base: &str,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, header::HeaderMap, Value) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    let mut req = client.request(method, format!("{base}{path}"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let body = res.json().await.unwrap_or(Value::Null);
    (status, headers, body)
}

fn no_store(headers: &header::HeaderMap) -> bool {
    headers
        .get(header::CACHE_CONTROL)
        .is_some_and(|v| v == "no-store")
}

fn nosniff(headers: &header::HeaderMap) -> bool {
    headers
        .get(header::X_CONTENT_TYPE_OPTIONS)
        .is_some_and(|v| v == "nosniff")
}

each_backend! {
    #[tokio::test]
    async fn tokens_are_never_cached_and_nothing_is_sniffed(backend) {
        let app = app(backend, |a| a).await;
        let base = serve(app.router.clone()).await;

        // Sign-in, refresh and a new personal access token carry tokens.
        let login = json!({"username": "admin", "password": PASSWORD});
        let (status, headers, signed_in) = send(&base, Method::POST, "/v1/auth/token", None, Some(login)).await;
        assert_eq!(status, StatusCode::OK, "{signed_in}");
        assert!(no_store(&headers) && nosniff(&headers), "{headers:?}");
        let refresh = json!({"refresh_token": signed_in["refresh_token"]});
        let (status, headers, refreshed) = send(&base, Method::POST, "/v1/auth/refresh", None, Some(refresh)).await;
        assert_eq!(status, StatusCode::OK, "{refreshed}");
        assert!(no_store(&headers) && nosniff(&headers), "{headers:?}");
        let access = refreshed["access_token"].as_str().unwrap();
        let pat = json!({"name": "ci", "project": "default", "role": "viewer"});
        let (status, headers, created) = send(&base, Method::POST, "/v1/tokens", Some(access), Some(pat)).await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        assert!(no_store(&headers) && nosniff(&headers), "{headers:?}");

        // Every other response, successful or not, is not to be sniffed.
        for (method, path, token) in [
            (Method::GET, "/healthz", None),
            (Method::GET, "/v1/projects", Some(access)),
            (Method::GET, "/v1/projects", None),
            (Method::GET, "/no/such/route", None),
            (Method::GET, "/openapi.json", None),
            (Method::GET, "/.well-known/jwks.json", None),
        ] {
            let (status, headers, _) = send(&base, method, path, token, None).await;
            assert!(nosniff(&headers), "{path} ({status}): {headers:?}");
        }
        // A failed sign-in carries no token but is no less private.
        let wrong = json!({"username": "admin", "password": "not the password"});
        let (status, headers, _) = send(&base, Method::POST, "/v1/auth/token", None, Some(wrong)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(nosniff(&headers), "{headers:?}");
        app.stop().await;
    }
}
