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

    /// Bad input in one field.
    pub fn field(status: StatusCode, field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        Self {
            status,
            slug: "validation",
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
            RuntimeError::Unavailable(m) => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", m)
            }
            RuntimeError::AtCapacity {
                message,
                retry_after,
            } => Self::new(StatusCode::SERVICE_UNAVAILABLE, "capacity", message)
                .retry_after(retry_after),
            RuntimeError::Internal(m) => Self::internal(m),
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
            other => Self::internal(other),
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
