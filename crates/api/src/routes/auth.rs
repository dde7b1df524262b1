use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use strata_core::Secret;
use utoipa::ToSchema;

use crate::AppState;
use crate::auth::ACCESS_TOKEN_SECONDS;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    pub username: String,
    #[schema(value_type = String)]
    pub password: Secret,
}

#[derive(Serialize, ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the token expires.
    pub expires_in: i64,
}

/// Exchanges a user name and password for an access token (a JWT).
#[utoipa::path(post, path = "/v1/auth/token", tag = "auth", request_body = TokenRequest, responses(
    (status = 200, body = TokenResponse),
    (status = 400, body = Problem, content_type = "application/problem+json"),
    (status = 401, body = Problem, content_type = "application/problem+json"),
))]
pub async fn token(
    State(st): State<AppState>,
    body: extract::Json<TokenRequest>,
) -> ApiResult<Json<TokenResponse>> {
    let req = body.value;
    if req.username.is_empty() || req.username.len() > 256 {
        return Err(ApiError::field(
            StatusCode::BAD_REQUEST,
            "username",
            "must be 1 to 256 characters",
        ));
    }
    if req.password.expose().len() > 1024 {
        return Err(ApiError::field(
            StatusCode::BAD_REQUEST,
            "password",
            "must be at most 1024 characters",
        ));
    }
    let user = st
        .auth
        .check_password(&st.store, &req.username, req.password)
        .await?
        .ok_or_else(|| ApiError::unauthorized("wrong user name or password"))?;
    let access_token = st
        .auth
        .issue(&user.id.to_string(), &user.username, user.is_admin)?;
    Ok(Json(TokenResponse {
        access_token,
        token_type: "Bearer".into(),
        expires_in: ACCESS_TOKEN_SECONDS,
    }))
}

/// The issuer's public keys (JWKS).
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "auth", responses((status = 200, body = Object)))]
pub async fn jwks(State(st): State<AppState>) -> Json<serde_json::Value> {
    Json(st.auth.jwks().clone())
}

/// OpenID Connect discovery document of the built-in issuer.
#[utoipa::path(get, path = "/.well-known/openid-configuration", tag = "auth", responses((status = 200, body = Object)))]
pub async fn discovery(State(st): State<AppState>) -> Json<serde_json::Value> {
    let iss = st.auth.issuer();
    Json(serde_json::json!({
        "issuer": iss,
        "jwks_uri": format!("{iss}/.well-known/jwks.json"),
        "token_endpoint": format!("{iss}/v1/auth/token"),
        "response_types_supported": ["token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["EdDSA"],
        "token_endpoint_auth_methods_supported": ["none"],
        "claims_supported": ["iss", "sub", "aud", "exp", "nbf", "iat", "jti", "name", "admin"],
    }))
}
