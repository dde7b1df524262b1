//! Strata's REST API: routes, authentication, problem+json errors, metrics and
//! the OpenAPI document generated from the handlers.

pub mod audit;
pub mod auth;
pub mod bootstrap;
mod contract;
pub mod error;
mod external;
mod extract;
mod headers;
pub mod metrics;
pub mod oidc;
mod openapi;
pub mod proxy;
pub mod ratelimit;
mod routes;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderName, Request};
use strata_core::{InstanceRuntime, Secret};
use strata_store::Store;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

pub use contract::for_offering;
pub use openapi::openapi;

/// Everything a handler may use, shared: cloning it (axum does for every
/// extractor and middleware that takes the state) costs one reference count.
#[derive(Clone)]
pub struct AppState(Arc<Services>);

/// What the handlers share; see [`AppState`].
pub struct Services {
    pub runtime: Arc<dyn InstanceRuntime>,
    pub store: Store,
    pub auth: auth::Auth,
    pub metrics: metrics::HttpMetrics,
    /// Interval between keep-alive comments on event streams.
    pub sse_keepalive: Duration,
    /// Cancelled when the server shuts down: long-lived streams end with it.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// Reverse proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: proxy::TrustedProxies,
}

impl AppState {
    pub fn new(services: Services) -> Self {
        Self(Arc::new(services))
    }
}

impl std::ops::Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

/// A random URL-safe token of `bytes` random bytes, from the OS CSPRNG.
pub fn random_token(bytes: usize) -> Secret {
    use base64::Engine;
    use rand::RngCore;
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    Secret::new(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf))
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The public router: `/v1`, discovery, health, OpenAPI and its docs page.
pub fn router(state: AppState) -> Router {
    let (api, _) = routes::api().split_for_parts();
    let doc = contract::for_offering(
        openapi(),
        state.runtime.versions(),
        state.runtime.offers_external_access(),
    );
    let docs =
        utoipa_swagger_ui::SwaggerUi::new("/docs").external_url_unchecked("/openapi.json", doc);
    Router::new()
        .merge(api)
        .merge(docs)
        .fallback(routes::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
                let id = req
                    .headers()
                    .get(&REQUEST_ID)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
            }),
        )
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .layer(headers::nosniff())
        .with_state(state)
}

/// The admin router: `/metrics` and health, on its own listener.
pub fn admin_router(
    state: AppState,
    registry: Arc<prometheus_client::registry::Registry>,
) -> Router {
    Router::new()
        .route("/metrics", axum::routing::get(metrics::scrape))
        .route("/healthz", axum::routing::get(routes::meta::healthz))
        .layer(headers::nosniff())
        .with_state((state, registry))
}
