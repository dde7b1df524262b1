//! Request extractors that turn bad input into problems naming the field.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Largest JSON body accepted.
pub const BODY_LIMIT: usize = 64 * 1024;

/// A JSON body: `application/json`, at most [`BODY_LIMIT`] bytes, no unknown
/// fields, every error naming its field. Keeps the raw bytes (for idempotency).
pub struct Json<T> {
    pub value: T,
    pub raw: Bytes,
}

fn field_of_message(message: &str) -> Option<&str> {
    // serde: "unknown field `colour`, expected …" / "missing field `name`"
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(&message[start..start + len])
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let content_type = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let mime = content_type.split(';').next().unwrap_or("").trim();
        if !mime.eq_ignore_ascii_case("application/json") {
            return Err(ApiError::field(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Content-Type",
                format!("must be application/json, not {content_type:?}"),
            ));
        }
        let raw = axum::body::to_bytes(req.into_body(), BODY_LIMIT)
            .await
            .map_err(|_| {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too-large",
                    format!("the body must be at most {BODY_LIMIT} bytes"),
                )
            })?;
        let mut document: serde_json::Value = serde_json::from_slice(&raw).map_err(|e| {
            let message = e.to_string();
            let message = message.split(" at line ").next().unwrap_or(&message);
            ApiError::field(StatusCode::BAD_REQUEST, "body", message)
        })?;
        if !document.is_object() {
            // serde would read a struct from an array too; every body is an object.
            return Err(ApiError::field(
                StatusCode::BAD_REQUEST,
                "body",
                "must be a JSON object",
            ));
        }
        integral_numbers(&mut document);
        let value = serde_path_to_error::deserialize(document).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let message = inner.to_string();
            let field =
                if message.starts_with("unknown field") || message.starts_with("missing field") {
                    let name = field_of_message(&message).unwrap_or("body");
                    if path == "." {
                        name.to_owned()
                    } else if path == name || path.ends_with(&format!(".{name}")) {
                        path
                    } else {
                        format!("{path}.{name}")
                    }
                } else if path == "." {
                    "body".to_owned()
                } else {
                    path
                };
            ApiError::field(StatusCode::BAD_REQUEST, &field, message)
        })?;
        Ok(Self { value, raw })
    }
}

/// JSON has one kind of number: `10.0` is the integer 10, as JSON Schema
/// says. Whole numbers written with a fraction become integers, so that
/// integer fields take them.
fn integral_numbers(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Number(n) if n.is_f64() => {
            if let Some(f) = n.as_f64()
                && f.fract() == 0.0
                && f.abs() < 9_007_199_254_740_992.0
            {
                // Exact: every whole f64 below 2^53 is an exact integer.
                #[allow(clippy::cast_possible_truncation)]
                let i = f as i64;
                *value = serde_json::Value::from(i);
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(integral_numbers),
        serde_json::Value::Object(map) => map.values_mut().for_each(integral_numbers),
        _ => {}
    }
}

/// Query parameters as strings; unknown parameters are refused by name.
/// Handlers parse values with [`QueryParams::parse`] so errors name the parameter.
pub struct QueryParams(pub Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for QueryParams {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or("");
        Ok(Self(
            form_urlencoded::parse(query.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        ))
    }
}

impl QueryParams {
    /// Refuses any parameter not in `known`.
    pub fn only(&self, known: &[&str]) -> Result<(), ApiError> {
        match self.0.iter().find(|(k, _)| !known.contains(&k.as_str())) {
            Some((k, _)) => Err(ApiError::field(
                StatusCode::BAD_REQUEST,
                k,
                format!("unknown query parameter; known: {}", known.join(", ")),
            )),
            None => Ok(()),
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn all(&self, name: &str) -> impl Iterator<Item = &str> {
        self.0
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// `page_size`: 1 to 500, 100 when absent.
    pub fn page_size(&self) -> Result<u32, ApiError> {
        let size = self
            .parse::<u32>("page_size", "a number from 1 to 500")?
            .unwrap_or(100);
        if !(1..=500).contains(&size) {
            return Err(ApiError::field(
                StatusCode::BAD_REQUEST,
                "page_size",
                "must be from 1 to 500",
            ));
        }
        Ok(size)
    }

    /// Parses `name` when present; the error names it.
    pub fn parse<T: std::str::FromStr>(
        &self,
        name: &str,
        what: &str,
    ) -> Result<Option<T>, ApiError> {
        self.get(name)
            .map(|v| {
                v.parse().map_err(|_| {
                    ApiError::field(StatusCode::BAD_REQUEST, name, format!("must be {what}"))
                })
            })
            .transpose()
    }
}
