//! One mapping from every error a handler can meet to an RFC 9457
//! `application/problem+json` response.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use strata_core::{FieldError, RuntimeError, ValidationError};
use utoipa::ToSchema;

/// RFC 9457 problem details.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem (`urn:strata:problem:validation`).
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Each field at fault, for bad input.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    slug: &'static str,
    detail: String,
    errors: Vec<FieldError>,
    /// Seconds a client should wait before it tries again (429, 503).
    retry_after: Option<u64>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, slug: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            slug,
            detail: detail.into(),
            errors: Vec::new(),
            retry_after: None,
        }
    }

    /// 429 with a `Retry-After` of at least one second.
    pub fn too_many_requests(detail: impl Into<String>, wait: std::time::Duration) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, "rate-limited", detail).retry_after(wait)
    }

    /// The same error with a `Retry-After` of `wait`, at least one second.
    fn retry_after(mut self, wait: std::time::Duration) -> Self {
        self.retry_after = Some((wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1));
        self
    }

    /// Bad input in one field: 400 for a broken rule, 404 for a reference to
    /// something that does not exist, 409 for a clash with the current state.
    pub fn field(status: StatusCode, field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        Self {
            status,
            slug: match status {
                StatusCode::NOT_FOUND => "not-found",
                StatusCode::CONFLICT => "conflict",
                StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported-media-type",
                _ => "validation",
            },
            detail: format!("{field}: {message}"),
            errors: vec![FieldError {
                field: field.to_owned(),
                message,
            }],
            retry_after: None,
        }
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }

    /// The human-readable detail (never holds a secret).
    pub fn detail(&self) -> &str {
        &self.detail
    }

    pub fn not_found(what: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("{what} not found"),
        )
    }

    pub fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "internal error");
        Self::hidden_internal()
    }

    /// The 500 for `e`, logged here once with its whole cause chain.
    pub fn internal_error(e: &(dyn std::error::Error + 'static)) -> Self {
        tracing::error!(error = %strata_core::chain(e), "internal error");
        Self::hidden_internal()
    }

    /// What a caller learns of an internal error: that there was one.
    fn hidden_internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "an internal error occurred; it has been logged",
        )
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl From<ValidationError> for ApiError {
    fn from(e: ValidationError) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            slug: "validation",
            detail: e.to_string(),
            errors: e.errors,
            retry_after: None,
        }
    }
}

impl From<RuntimeError> for ApiError {
    fn from(e: RuntimeError) -> Self {
        match e {
            RuntimeError::NotFound(what) => Self::not_found(what),
            RuntimeError::Conflict(m) => Self::new(StatusCode::CONFLICT, "conflict", m),
            RuntimeError::Invalid(v) => v.into(),
            RuntimeError::ConflictingChange(v) => Self {
                status: StatusCode::CONFLICT,
                slug: "conflict",
                detail: format!(
                    "the change does not fit the instance as it is now: {}",
                    v.errors
                        .iter()
                        .map(|e| format!("{}: {}", e.field, e.message))
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
                errors: v.errors,
                retry_after: None,
            },
            RuntimeError::Unavailable(m) => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", m)
            }
            RuntimeError::AtCapacity {
                message,
                retry_after,
            } => Self::new(StatusCode::SERVICE_UNAVAILABLE, "capacity", message)
                .retry_after(retry_after),
            internal @ RuntimeError::Internal { .. } => Self::internal_error(&internal),
        }
    }
}

impl From<strata_store::StoreError> for ApiError {
    fn from(e: strata_store::StoreError) -> Self {
        match e {
            strata_store::StoreError::Conflict(m) => Self::new(
                StatusCode::CONFLICT,
                "conflict",
                format!("{m} already exists"),
            ),
            other => Self::internal_error(&other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = Problem {
            kind: format!("urn:strata:problem:{}", self.slug),
            title: self.status.canonical_reason().unwrap_or("Error").to_owned(),
            status: self.status.as_u16(),
            detail: self.detail,
            errors: self.errors,
        };
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut res = (self.status, body).into_response();
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(secs) = self.retry_after {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            res.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"strata\""),
            );
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_internal_error_tells_the_caller_nothing_of_its_cause() {
        let cause = std::io::Error::other("connection to /run/strata/1234/.s.PGSQL.15433 refused");
        let e = ApiError::from(RuntimeError::internal("changing the password", cause));
        assert_eq!(e.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(e.detail(), "an internal error occurred; it has been logged");
        // What is logged: the context and its cause.
        let again =
            RuntimeError::internal("changing the password", std::io::Error::other("refused"));
        assert_eq!(
            strata_core::chain(&again),
            "internal error: changing the password: refused"
        );
    }
}
