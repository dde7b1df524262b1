//! HTTP to the Strata API, as one caller.
#![allow(dead_code)] // not every test binary uses every helper

use std::time::Duration;

use reqwest::{Method, StatusCode, header};
use serde_json::{Value, json};

pub struct Http {
    client: reqwest::Client,
    base: String,
    pub token: Option<String>,
}

impl Http {
    pub fn new(base: &str) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Self {
            client: reqwest::Client::builder()
                .timeout(Duration::from_mins(1))
                .build()
                .unwrap(),
            base: base.to_owned(),
            token: None,
        }
    }

    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let req = self.client.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, header::HeaderMap, Value) {
        let mut req = self.request(method, path);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let text = res.text().await.unwrap();
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, headers, value)
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        let (status, _, body) = self.send(Method::GET, path, None).await;
        (status, body)
    }

    /// Signs in with the built-in issuer; panics unless it answers 200.
    pub async fn login(base: &str, username: &str, password: &str) -> Self {
        let mut http = Self::new(base);
        let (status, _, body) = http
            .send(
                Method::POST,
                "/v1/auth/token",
                Some(json!({ "username": username, "password": password })),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "login as {username}: {body}");
        http.token = Some(body["access_token"].as_str().unwrap().to_owned());
        http
    }
}
