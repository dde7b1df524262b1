//! Response headers a security review expects: `Cache-Control: no-store`
//! on every response that carries a secret (tokens, credentials), and
//! `X-Content-Type-Options: nosniff` on every response.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use tower_http::set_header::SetResponseHeaderLayer;

/// `response`, marked so that no browser or proxy keeps a copy.
pub(crate) fn no_store(response: impl IntoResponse) -> Response {
    let mut res = response.into_response();
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// Adds `X-Content-Type-Options: nosniff` to every response that has none.
pub(crate) fn nosniff() -> SetResponseHeaderLayer<HeaderValue> {
    SetResponseHeaderLayer::if_not_present(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    )
}
