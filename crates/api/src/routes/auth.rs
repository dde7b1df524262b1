use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use strata_core::Secret;
use strata_store::UserRow;
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::AppState;
use crate::audit::{self, Audit, RequestMeta};
use crate::auth::{
    ACCESS_TOKEN_SECONDS, REFRESH_PREFIX, REFRESH_TOKEN_SECONDS, new_opaque_token, same_secret,
    token_hash,
};
use crate::error::{ApiError, ApiResult};
use crate::extract;
use crate::headers::no_store;

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
    /// Seconds until the access token expires.
    pub expires_in: i64,
    /// Exchanges for a new access token at `POST /v1/auth/refresh`, once.
    pub refresh_token: String,
    /// Seconds until the refresh token expires.
    pub refresh_expires_in: i64,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    #[schema(value_type = String)]
    pub refresh_token: Secret,
}

/// The source address's attempt, or 429.
fn limit_address(st: &AppState, meta: &RequestMeta) -> ApiResult<()> {
    let address = meta.source_ip.as_deref().unwrap_or("unknown");
    st.auth.take_address_attempt(address).map_err(|wait| {
        tracing::warn!(target: "security", source_ip = %address, "sign-in requests from this address are rate-limited");
        ApiError::too_many_requests(
            "too many sign-in requests from your address; try again later",
            wait,
        )
    })
}

/// A new access token and refresh token for `user`; the refresh token is
/// stored (hashed) in the transaction that also records `audit`'s event.
async fn issue_pair(
    st: &AppState,
    user: &UserRow,
    family: Uuid,
    mut tx: strata_store::Tx,
    event: strata_core::NewAuditEvent,
) -> ApiResult<TokenResponse> {
    let access_token = st
        .auth
        .issue(&user.id.to_string(), &user.username, user.is_admin)?;
    let refresh = new_opaque_token(REFRESH_PREFIX);
    let now = OffsetDateTime::now_utc();
    tx.insert_refresh_token(
        Uuid::now_v7(),
        family,
        &user.id.to_string(),
        &token_hash(refresh.expose()),
        now,
        now + time::Duration::seconds(REFRESH_TOKEN_SECONDS),
    )
    .await?;
    tx.append_audit(event).await?;
    tx.commit().await?;
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer".into(),
        expires_in: ACCESS_TOKEN_SECONDS,
        refresh_token: refresh.expose().to_owned(),
        refresh_expires_in: REFRESH_TOKEN_SECONDS,
    })
}

/// Exchanges a user name and password for an access token (a JWT) and a
/// refresh token. Attempts are limited per source address and failed ones
/// per user name (429 with `Retry-After`); every sign-in is audited.
#[utoipa::path(post, path = "/v1/auth/token", operation_id = "signIn", tag = "auth", request_body = TokenRequest, responses(
    (status = 200, body = TokenResponse),
    (status = 401, description = "Wrong user name or password"),
    (status = 429, description = "Too many attempts; see Retry-After"),
))]
pub async fn token(
    State(st): State<AppState>,
    meta: RequestMeta,
    body: Result<extract::Json<TokenRequest>, ApiError>,
) -> ApiResult<Response> {
    limit_address(&st, &meta)?;
    let req = body?.value;
    if req.username.is_empty() || req.username.chars().count() > 256 {
        return Err(ApiError::field(
            StatusCode::BAD_REQUEST,
            "username",
            "must be 1 to 256 characters",
        ));
    }
    if req.password.expose().chars().count() > 1024 {
        return Err(ApiError::field(
            StatusCode::BAD_REQUEST,
            "password",
            "must be at most 1024 characters",
        ));
    }
    if let Err(wait) = st.auth.check_user_attempt(&req.username) {
        tracing::warn!(target: "security", username = %req.username, source_ip = ?meta.source_ip, "sign-ins of this user name are rate-limited");
        return Err(ApiError::too_many_requests(
            "too many failed sign-ins for this user; try again later",
            wait,
        ));
    }
    let audit = Audit::anonymous(
        &meta,
        &req.username,
        "auth.login",
        audit::target("user", &req.username),
    );
    audit
        .run(&st, async |audit| {
            let Some(user) = st
                .auth
                .check_password(&st.store, &req.username, req.password)
                .await?
            else {
                st.auth.count_user_failure(&req.username);
                return Err(ApiError::unauthorized("wrong user name or password"));
            };
            audit.signed_in(&user.id.to_string(), &user.username);
            let mut event = audit.event(200);
            event.target.id = Some(user.id.to_string());
            let tx = st.store.begin().await?;
            issue_pair(&st, &user, Uuid::now_v7(), tx, event).await
        })
        .await
        .map(|t| no_store(Json(t)))
}

/// Exchanges a refresh token for a new access token and a new refresh
/// token. Each refresh token works once: presenting a used one again
/// revokes every token descended from the same sign-in.
#[utoipa::path(post, path = "/v1/auth/refresh", operation_id = "refreshToken", tag = "auth", request_body = RefreshRequest, responses(
    (status = 200, body = TokenResponse),
    (status = 401, description = "The refresh token is invalid, expired or already used"),
    (status = 429, description = "Too many attempts; see Retry-After"),
))]
pub async fn refresh(
    State(st): State<AppState>,
    meta: RequestMeta,
    body: Result<extract::Json<RefreshRequest>, ApiError>,
) -> ApiResult<Response> {
    limit_address(&st, &meta)?;
    let presented = body?.value.refresh_token;
    let invalid = || ApiError::unauthorized("the refresh token is invalid or expired");
    let hash = token_hash(presented.expose());
    let row = st
        .store
        .refresh_token_by_hash(&hash)
        .await?
        .filter(|r| same_secret(&r.token_hash, &hash))
        .ok_or_else(invalid)?;
    let user = st
        .store
        .user_by_id(&row.user_id.to_string())
        .await?
        .ok_or_else(invalid)?;
    let now = OffsetDateTime::now_utc();
    if row.revoked_at.is_some() || row.expires_at <= now {
        return Err(invalid());
    }
    let mut audit = Audit::anonymous(
        &meta,
        &user.username,
        "auth.refresh",
        audit::target("user", &user.username),
    );
    audit.signed_in(&user.id.to_string(), &user.username);
    let mut tx = st.store.begin().await?;
    if !tx.use_refresh_token(row.id, now).await? {
        // Used before: someone holds a copy. End the whole sign-in.
        tx.revoke_refresh_family(row.family, now).await?;
        let mut event = audit.event(401);
        event.details = serde_json::json!({
            "error": "a used refresh token was presented again; every token of its sign-in was revoked",
        });
        tx.append_audit(event).await?;
        tx.commit().await?;
        tracing::warn!(target: "security", user = %user.username, "a used refresh token was presented again; its sign-in was revoked");
        return Err(invalid());
    }
    let event = audit.event(200);
    issue_pair(&st, &user, row.family, tx, event)
        .await
        .map(|t| no_store(Json(t)))
}

/// Signs out: revokes the refresh token and every token of its sign-in.
/// Access tokens already issued stay valid until they expire (15 minutes).
#[utoipa::path(post, path = "/v1/auth/logout", operation_id = "signOut", tag = "auth", request_body = RefreshRequest, responses(
    (status = 204, description = "Signed out (also when the token was unknown)"),
))]
pub async fn logout(
    State(st): State<AppState>,
    body: extract::Json<RefreshRequest>,
) -> ApiResult<Response> {
    let hash = token_hash(body.value.refresh_token.expose());
    if let Some(row) = st
        .store
        .refresh_token_by_hash(&hash)
        .await?
        .filter(|r| same_secret(&r.token_hash, &hash))
    {
        let mut tx = st.store.begin().await?;
        tx.revoke_refresh_family(row.family, OffsetDateTime::now_utc())
            .await?;
        tx.commit().await?;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The issuer's public keys (JWKS).
#[utoipa::path(get, path = "/.well-known/jwks.json", operation_id = "getJwks", tag = "auth", responses((status = 200, body = Object)))]
pub async fn jwks(State(st): State<AppState>) -> Json<serde_json::Value> {
    Json(st.auth.jwks().clone())
}

/// OpenID Connect discovery document of the built-in issuer.
#[utoipa::path(get, path = "/.well-known/openid-configuration", operation_id = "getOpenIdConfiguration", tag = "auth", responses((status = 200, body = Object)))]
pub async fn discovery(State(st): State<AppState>) -> Json<serde_json::Value> {
    let iss = st.auth.issuer();
    Json(serde_json::json!({
        "issuer": iss,
        "jwks_uri": format!("{iss}/.well-known/jwks.json"),
        "token_endpoint": format!("{iss}/v1/auth/token"),
        "response_types_supported": ["token"],
        "grant_types_supported": ["password", "refresh_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["EdDSA"],
        "token_endpoint_auth_methods_supported": ["none"],
        "claims_supported": ["iss", "sub", "aud", "exp", "nbf", "iat", "jti", "name", "admin"],
    }))
}
