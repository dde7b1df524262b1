//! The yardstick: a bare axum handler that answers the instance route with
//! fixed JSON bytes, on its own runtime (own worker threads, as a separate
//! server would have) inside this process.

use std::net::SocketAddr;

use anyhow::Context;
use axum::Router;
use axum::http::header::CONTENT_TYPE;
use axum::routing::get;
use bytes::Bytes;

/// Names of the bare server's threads, to read their CPU time from /proc.
pub const THREAD_NAME: &str = "bare-server";

/// A running bare server; dropping it stops it.
pub struct BareServer {
    pub addr: SocketAddr,
    runtime: Option<tokio::runtime::Runtime>,
}

impl BareServer {
    /// Serves `body` at `GET /v1/projects/{project}/instances/{name}` on
    /// 127.0.0.1, port 0, with `workers` worker threads.
    pub fn start(body: Bytes, workers: usize) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name(THREAD_NAME)
            .enable_all()
            .build()
            .context("building the bare server's runtime")?;
        // A std listener, so that starting works inside another runtime too.
        let listener =
            std::net::TcpListener::bind("127.0.0.1:0").context("binding the bare server")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let app = Router::new().route(
            "/v1/projects/{project}/instances/{name}",
            get(move || {
                let body = body.clone();
                async move { ([(CONTENT_TYPE, "application/json")], body) }
            }),
        );
        runtime.spawn(async move {
            let served = match tokio::net::TcpListener::from_std(listener) {
                Ok(listener) => axum::serve(listener, app).await,
                Err(e) => Err(e),
            };
            if let Err(e) = served {
                eprintln!("bare server: {e}");
            }
        });
        Ok(Self {
            addr,
            runtime: Some(runtime),
        })
    }
}

impl Drop for BareServer {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}
