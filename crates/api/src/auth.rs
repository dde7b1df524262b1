//! The built-in token issuer (Ed25519-signed JWTs, JWKS, discovery) and
//! verification of bearer tokens on every `/v1` route.

use std::collections::HashMap;
use std::sync::Arc;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use strata_core::Secret;
use strata_store::{SigningKeyRow, Store};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::AppState;
use crate::error::ApiError;

/// Audience of tokens the built-in issuer signs.
pub const AUDIENCE: &str = "strata";
/// Lifetime of an access token.
pub const ACCESS_TOKEN_SECONDS: i64 = 15 * 60;

#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub nbf: i64,
    pub iat: i64,
    pub jti: String,
    /// The user name.
    pub name: String,
    /// Platform administrator.
    #[serde(default)]
    pub admin: bool,
}

/// Who is calling.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user_id: String,
    pub username: String,
    pub admin: bool,
}

struct VerifyKey {
    key: DecodingKey,
}

/// The issuer's keys: the newest signs; all verify.
pub struct Auth {
    issuer: String,
    signing: (String, EncodingKey),
    verifying: HashMap<String, VerifyKey>,
    jwks: serde_json::Value,
    validation: Validation,
    dummy_hash: String,
}

/// A new Ed25519 key as the store keeps it.
pub fn generate_signing_key() -> Result<SigningKeyRow, ApiError> {
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    let pem = key
        .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
        .map_err(ApiError::internal)?;
    Ok(SigningKeyRow {
        kid: Uuid::new_v4().simple().to_string(),
        algorithm: "EdDSA".into(),
        private_pem: Secret::new(pem.to_string()),
        public_key: URL_SAFE_NO_PAD.encode(key.verifying_key().to_bytes()),
        created_at: OffsetDateTime::now_utc(),
    })
}

pub fn hash_password(password: &str) -> Result<String, ApiError> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(ApiError::internal)
}

fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

impl Auth {
    /// Loads the signing keys from the store. `issuer` is the URL tokens name as `iss`.
    pub async fn load(store: &Store, issuer: String) -> Result<Self, ApiError> {
        let rows = store.signing_keys().await?;
        let newest = rows
            .last()
            .ok_or_else(|| ApiError::internal("no signing key in the store"))?;
        let signing = (
            newest.kid.clone(),
            EncodingKey::from_ed_pem(newest.private_pem.expose().as_bytes())
                .map_err(ApiError::internal)?,
        );
        let mut verifying = HashMap::new();
        let mut keys = Vec::new();
        for row in &rows {
            let key =
                DecodingKey::from_ed_components(&row.public_key).map_err(ApiError::internal)?;
            verifying.insert(row.kid.clone(), VerifyKey { key });
            keys.push(serde_json::json!({
                "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig",
                "kid": row.kid, "x": row.public_key,
            }));
        }
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[&issuer]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = 30;
        let dummy_hash = hash_password("not a real password")?;
        Ok(Self {
            issuer,
            signing,
            verifying,
            jwks: serde_json::json!({ "keys": keys }),
            validation,
            dummy_hash,
        })
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn jwks(&self) -> &serde_json::Value {
        &self.jwks
    }

    /// Signs an access token for a user.
    pub fn issue(&self, user_id: &str, username: &str, admin: bool) -> Result<String, ApiError> {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let claims = Claims {
            iss: self.issuer.clone(),
            sub: user_id.to_owned(),
            aud: AUDIENCE.to_owned(),
            exp: now + ACCESS_TOKEN_SECONDS,
            nbf: now,
            iat: now,
            jti: Uuid::new_v4().to_string(),
            name: username.to_owned(),
            admin,
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.signing.0.clone());
        jsonwebtoken::encode(&header, &claims, &self.signing.1).map_err(ApiError::internal)
    }

    /// Checks signature, algorithm, issuer, audience and validity period.
    pub fn verify(&self, token: &str) -> Result<Caller, ApiError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| ApiError::unauthorized("the bearer token is malformed"))?;
        if header.alg != Algorithm::EdDSA {
            return Err(ApiError::unauthorized(
                "the token's algorithm is not accepted",
            ));
        }
        let key = header
            .kid
            .as_deref()
            .and_then(|kid| self.verifying.get(kid))
            .ok_or_else(|| ApiError::unauthorized("the token was not signed by a known key"))?;
        let data =
            jsonwebtoken::decode::<Claims>(token, &key.key, &self.validation).map_err(|e| {
                use jsonwebtoken::errors::ErrorKind;
                ApiError::unauthorized(match e.kind() {
                    ErrorKind::ExpiredSignature => "the token has expired",
                    ErrorKind::ImmatureSignature => "the token is not valid yet",
                    ErrorKind::InvalidIssuer => "the token's issuer is not accepted",
                    ErrorKind::InvalidAudience => "the token's audience is not accepted",
                    _ => "the token is invalid",
                })
            })?;
        Ok(Caller {
            user_id: data.claims.sub,
            username: data.claims.name,
            admin: data.claims.admin,
        })
    }

    /// Checks a user's password; takes as long for unknown users as for known ones.
    pub async fn check_password(
        self: &Arc<Self>,
        store: &Store,
        username: &str,
        password: Secret,
    ) -> Result<Option<strata_store::UserRow>, ApiError> {
        let user = store.user_by_name(username).await?;
        let hash = user.as_ref().map_or_else(
            || self.dummy_hash.clone(),
            |u| u.password_hash.expose().to_owned(),
        );
        let ok = tokio::task::spawn_blocking(move || verify_password(password.expose(), &hash))
            .await
            .map_err(ApiError::internal)?;
        Ok(user.filter(|_| ok))
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .ok_or_else(|| ApiError::unauthorized("an Authorization: Bearer token is required"))?;
        let value = header
            .to_str()
            .map_err(|_| ApiError::unauthorized("the Authorization header is malformed"))?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or_else(|| {
                ApiError::unauthorized("the Authorization header must be Bearer <token>")
            })?;
        let claimed = state.auth.verify(token.trim())?;
        // Rights come from the store, not the token: a deleted user or a
        // revoked admin flag takes effect at once.
        let user = state
            .store
            .user_by_id(&claimed.user_id)
            .await?
            .ok_or_else(|| ApiError::unauthorized("the token's user no longer exists"))?;
        Ok(Caller {
            user_id: user.id.to_string(),
            username: user.username,
            admin: user.is_admin,
        })
    }
}
