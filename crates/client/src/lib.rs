//! Rust SDK for the Strata REST API.
//!
//! ```no_run
//! # async fn demo() -> Result<(), strata_client::Error> {
//! use std::time::Duration;
//! use strata_client::{Client, CreateInstance, Phase};
//!
//! let mut client = Client::new("http://127.0.0.1:8080")?;
//! client.login("admin", "…").await?;
//! let req = CreateInstance { name: "orders".into(), ..Default::default() };
//! client.create_instance("default", &req, None).await?;
//! client.wait_for_phase("default", "orders", Phase::Ready, Duration::from_secs(60)).await?;
//! let creds = client.credentials("default", "orders").await?;
//! println!("{}", creds.uri.expose());
//! # Ok(()) }
//! ```

use std::time::{Duration, Instant};

use reqwest::{Method, RequestBuilder, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
pub use strata_core::{
    CreateInstance, Credentials, FieldError, Instance, Phase, Plan, ServiceEvent, UpdateInstance,
    Version,
};

/// An RFC 9457 problem the API answered with.
#[derive(Debug, Clone, Deserialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    #[serde(default)]
    pub errors: Vec<FieldError>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{} {}: {}", .problem.status, .problem.title, .problem.detail)]
    Api { problem: Problem },
    #[error("HTTP: {0}")]
    Http(#[from] reqwest::Error),
    #[error("timed out: {0}")]
    Timeout(String),
    #[error("{0}")]
    Config(String),
}

impl Error {
    /// The HTTP status of an API error.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api { problem } => Some(problem.status),
            _ => None,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// One page of a list.
#[derive(Debug, Clone, Deserialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_page_token: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Items<T> {
    items: Vec<T>,
}

#[derive(Debug, Deserialize)]
struct TokenResponse {
    access_token: String,
}

/// Options of [`Client::list_instances`].
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    /// `key=value` selectors, all of which must match.
    pub labels: Vec<String>,
    pub page_size: Option<u32>,
    pub page_token: Option<String>,
}

/// A client of one Strata API endpoint.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client of the API at `base_url` (`http://127.0.0.1:8080`).
    pub fn new(base_url: &str) -> Result<Self> {
        // One TLS crypto provider for the whole process; fine if one is installed already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .user_agent(concat!("strata-client/", env!("CARGO_PKG_VERSION")))
            .timeout(Duration::from_mins(1))
            .build()?;
        Ok(Self {
            http,
            base: base_url.trim_end_matches('/').to_owned(),
            token: None,
        })
    }

    /// Uses `token` (an access token or personal access token) from now on.
    #[must_use]
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// Exchanges a user name and password for an access token and keeps it.
    pub async fn login(&mut self, username: &str, password: &str) -> Result<()> {
        let res: TokenResponse = self
            .send(
                self.request(Method::POST, "/v1/auth/token")
                    .json(&serde_json::json!({"username": username, "password": password})),
            )
            .await?;
        self.token = Some(res.access_token);
        Ok(())
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        req
    }

    async fn send<T: DeserializeOwned>(&self, req: RequestBuilder) -> Result<T> {
        let res = req.send().await?;
        let status = res.status();
        if status.is_success() {
            return Ok(res.json().await?);
        }
        let text = res.text().await.unwrap_or_default();
        let problem = serde_json::from_str(&text).unwrap_or_else(|_| Problem {
            kind: "about:blank".into(),
            title: status.canonical_reason().unwrap_or("Error").into(),
            status: status.as_u16(),
            detail: text,
            errors: Vec::new(),
        });
        Err(Error::Api { problem })
    }

    fn instance_path(project: &str, name: &str) -> String {
        format!("/v1/projects/{project}/instances/{name}")
    }

    pub async fn versions(&self) -> Result<Vec<Version>> {
        Ok(self
            .send::<Items<Version>>(self.request(Method::GET, "/v1/versions"))
            .await?
            .items)
    }

    pub async fn plans(&self) -> Result<Vec<Plan>> {
        Ok(self
            .send::<Items<Plan>>(self.request(Method::GET, "/v1/plans"))
            .await?
            .items)
    }

    pub async fn list_instances(
        &self,
        project: &str,
        opts: &ListOptions,
    ) -> Result<Page<Instance>> {
        let mut query: Vec<(&str, String)> =
            opts.labels.iter().map(|l| ("label", l.clone())).collect();
        if let Some(s) = opts.page_size {
            query.push(("page_size", s.to_string()));
        }
        if let Some(t) = &opts.page_token {
            query.push(("page_token", t.clone()));
        }
        self.send(
            self.request(Method::GET, &format!("/v1/projects/{project}/instances"))
                .query(&query),
        )
        .await
    }

    /// Every instance of a project, following pages.
    pub async fn all_instances(&self, project: &str) -> Result<Vec<Instance>> {
        let mut opts = ListOptions::default();
        let mut all = Vec::new();
        loop {
            let page = self.list_instances(project, &opts).await?;
            all.extend(page.items);
            match page.next_page_token {
                Some(t) => opts.page_token = Some(t),
                None => return Ok(all),
            }
        }
    }

    /// Orders an instance; it starts as `Provisioning`.
    pub async fn create_instance(
        &self,
        project: &str,
        req: &CreateInstance,
        idempotency_key: Option<&str>,
    ) -> Result<Instance> {
        let mut r = self
            .request(Method::POST, &format!("/v1/projects/{project}/instances"))
            .json(req);
        if let Some(k) = idempotency_key {
            r = r.header("Idempotency-Key", k);
        }
        self.send(r).await
    }

    pub async fn get_instance(&self, project: &str, name: &str) -> Result<Instance> {
        self.send(self.request(Method::GET, &Self::instance_path(project, name)))
            .await
    }

    pub async fn update_instance(
        &self,
        project: &str,
        name: &str,
        req: &UpdateInstance,
    ) -> Result<Instance> {
        self.send(
            self.request(Method::PATCH, &Self::instance_path(project, name))
                .json(req),
        )
        .await
    }

    pub async fn delete_instance(&self, project: &str, name: &str) -> Result<Instance> {
        self.send(self.request(Method::DELETE, &Self::instance_path(project, name)))
            .await
    }

    pub async fn credentials(&self, project: &str, name: &str) -> Result<Credentials> {
        self.send(self.request(
            Method::GET,
            &format!("{}/credentials", Self::instance_path(project, name)),
        ))
        .await
    }

    pub async fn rotate_credentials(&self, project: &str, name: &str) -> Result<Credentials> {
        self.send(self.request(
            Method::POST,
            &format!("{}/credentials/rotate", Self::instance_path(project, name)),
        ))
        .await
    }

    /// Service events after `after` (an event id), oldest first.
    pub async fn events(
        &self,
        project: &str,
        name: &str,
        after: Option<&str>,
    ) -> Result<Vec<ServiceEvent>> {
        let mut r = self.request(
            Method::GET,
            &format!("{}/events", Self::instance_path(project, name)),
        );
        if let Some(a) = after {
            r = r.query(&[("after", a)]);
        }
        Ok(self.send::<Items<ServiceEvent>>(r).await?.items)
    }

    /// Polls until the instance is in `phase`; fails early if it turns `Failed`
    /// while waiting for another phase.
    pub async fn wait_for_phase(
        &self,
        project: &str,
        name: &str,
        phase: Phase,
        timeout: Duration,
    ) -> Result<Instance> {
        let start = Instant::now();
        let mut polls = 0;
        loop {
            let i = self.get_instance(project, name).await?;
            if i.status.phase == phase {
                return Ok(i);
            }
            if i.status.phase == Phase::Failed {
                return Err(Error::Timeout(format!(
                    "instance {name} failed: {}",
                    i.status.message
                )));
            }
            if start.elapsed() > timeout {
                return Err(Error::Timeout(format!(
                    "instance {name} is {} after {:?}, not {phase}",
                    i.status.phase, timeout
                )));
            }
            let delay =
                strata_core::backoff(polls, Duration::from_millis(20), Duration::from_millis(500));
            tokio::time::sleep(delay).await;
            polls += 1;
        }
    }

    /// Polls until the instance no longer exists.
    pub async fn wait_deleted(&self, project: &str, name: &str, timeout: Duration) -> Result<()> {
        let start = Instant::now();
        loop {
            match self.get_instance(project, name).await {
                Err(e) if e.status() == Some(StatusCode::NOT_FOUND.as_u16()) => return Ok(()),
                Err(e) => return Err(e),
                Ok(_) if start.elapsed() > timeout => {
                    return Err(Error::Timeout(format!("instance {name} still exists")));
                }
                Ok(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }
}
