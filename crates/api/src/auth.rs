//! The built-in token issuer (Ed25519-signed JWTs, JWKS, discovery) and
//! verification of bearer tokens on every `/v1` route.

use std::collections::HashMap;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use strata_core::{Role, Scope, Secret};
use strata_store::{ProjectRow, SigningKeyRow, Store, UserRow};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::AppState;
use crate::error::ApiError;
use crate::oidc::OidcVerifier;
use crate::ratelimit::{Limiter, LoginLimits};

/// Audience of tokens the built-in issuer signs.
pub const AUDIENCE: &str = "strata";
/// Lifetime of an access token.
pub const ACCESS_TOKEN_SECONDS: i64 = 15 * 60;
/// Lifetime of a refresh token (each use replaces it with a new one).
pub const REFRESH_TOKEN_SECONDS: i64 = 30 * 24 * 60 * 60;
/// Verified tokens kept in memory at most.
const VERIFIED_CACHE_ENTRIES: u64 = 10_000;
/// Every personal access token starts with this, so that secret scanners
/// can recognise one.
pub const PAT_PREFIX: &str = "strata_pat_";
/// Every refresh token starts with this.
pub const REFRESH_PREFIX: &str = "strata_rt_";

/// A new opaque token: `prefix` and 32 random bytes, URL-safe.
pub fn new_opaque_token(prefix: &str) -> Secret {
    Secret::new(format!("{prefix}{}", crate::random_token(32).expose()))
}

/// What the store keeps of an opaque token: its SHA-256, hex.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Compares two secrets (or their hashes) in time independent of where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

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

/// The 401 for a JWT that failed validation, saying which check failed.
pub(crate) fn jwt_error(e: &jsonwebtoken::errors::Error) -> ApiError {
    use jsonwebtoken::errors::ErrorKind;
    ApiError::unauthorized(match e.kind() {
        ErrorKind::ExpiredSignature => "the token has expired",
        ErrorKind::ImmatureSignature => "the token is not valid yet",
        ErrorKind::InvalidIssuer => "the token's issuer is not accepted",
        ErrorKind::InvalidAudience => "the token's audience is not accepted",
        _ => "the token is invalid",
    })
}

/// Who is calling, and with what rights.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user_id: String,
    pub username: String,
    /// Acts as platform admin: the user's flag or the external token's
    /// grants — never through a personal access token.
    pub admin: bool,
    /// The user's own admin flag.
    user_admin: bool,
    /// What the credential allows on top of the user's memberships.
    pub scope: Scope,
    /// The personal access token the request carried, if any.
    pub token_id: Option<Uuid>,
}

impl Caller {
    pub(crate) fn new(user: &UserRow, scope: Scope, token_id: Option<Uuid>) -> Self {
        Self {
            user_id: user.id.to_string(),
            username: user.username.clone(),
            admin: scope.platform_admin(user.is_admin),
            user_admin: user.is_admin,
            scope,
            token_id,
        }
    }

    /// Nobody yet: what a sign-in request is recorded under until it succeeds.
    pub(crate) fn anonymous(claimed_name: String) -> Self {
        Self {
            user_id: String::new(),
            username: claimed_name,
            admin: false,
            user_admin: false,
            scope: Scope::Project {
                project: String::new(),
                role: Role::Viewer,
            },
            token_id: None,
        }
    }

    /// A caller signed in with a password (a session of the built-in issuer).
    pub fn session(user: &UserRow) -> Self {
        Self::new(user, Scope::full(), None)
    }

    /// `None` when the project does not exist; otherwise the caller's role
    /// in it (if any) — membership, grants and token scope together. One
    /// store read.
    pub async fn access(
        &self,
        store: &Store,
        project: &str,
    ) -> Result<Option<Option<Role>>, ApiError> {
        Ok(store
            .project_access(project, &self.user_id)
            .await?
            .map(|membership| self.scope.role_in(self.user_admin, membership, project)))
    }

    /// The existing projects the caller has a role in, by name.
    pub async fn projects(&self, store: &Store) -> Result<Vec<(ProjectRow, Role)>, ApiError> {
        let memberships = store.memberships_of(&self.user_id).await?;
        let candidates: Vec<ProjectRow> = match &self.scope {
            Scope::Full { granted, .. } if !granted.is_empty() => store
                .project_rows()
                .await?
                .into_iter()
                .filter(|p| {
                    granted.iter().any(|(g, _)| *g == p.name)
                        || memberships.iter().any(|(m, _)| m.name == p.name)
                })
                .collect(),
            Scope::Project { project, .. } if self.user_admin => store
                .project_rows()
                .await?
                .into_iter()
                .filter(|p| p.name == *project)
                .collect(),
            _ => memberships.iter().map(|(p, _)| p.clone()).collect(),
        };
        Ok(candidates
            .into_iter()
            .filter_map(|p| {
                let membership = memberships
                    .iter()
                    .find(|(m, _)| m.name == p.name)
                    .map(|(_, r)| *r);
                self.scope
                    .role_in(self.user_admin, membership, &p.name)
                    .map(|r| (p, r))
            })
            .collect())
    }
}

struct VerifyKey {
    key: DecodingKey,
}

/// The issuer's keys: the newest signs; all verify. Also what verifies
/// other kinds of tokens and limits sign-in attempts.
pub struct Auth {
    issuer: String,
    signing: (String, EncodingKey),
    verifying: HashMap<String, VerifyKey>,
    jwks: serde_json::Value,
    validation: Validation,
    dummy_hash: String,
    /// Tokens verified before: token → (subject, exp). Verifying an Ed25519
    /// signature is the most expensive step of a request; a token's
    /// verdict does not change until it expires (keys are only added).
    /// Bounded; the least useful entries make room for new ones.
    verified: moka::sync::Cache<String, (String, i64)>,
    oidc: Option<OidcVerifier>,
    per_address: Limiter<String>,
    per_user: Limiter<String>,
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
            verified: moka::sync::Cache::builder()
                .max_capacity(VERIFIED_CACHE_ENTRIES)
                .time_to_live(std::time::Duration::from_secs(
                    ACCESS_TOKEN_SECONDS.unsigned_abs(),
                ))
                .build(),
            oidc: None,
            per_address: Limiter::new(LoginLimits::default().per_address),
            per_user: Limiter::new(LoginLimits::default().per_user),
        })
    }

    /// Also accepts tokens of an external OpenID Connect issuer.
    #[must_use]
    pub fn with_oidc(mut self, oidc: Option<OidcVerifier>) -> Self {
        self.oidc = oidc;
        self
    }

    /// Replaces the default limits of sign-in attempts.
    #[must_use]
    pub fn with_login_limits(mut self, limits: LoginLimits) -> Self {
        self.per_address = Limiter::new(limits.per_address);
        self.per_user = Limiter::new(limits.per_user);
        self
    }

    pub fn oidc(&self) -> Option<&OidcVerifier> {
        self.oidc.as_ref()
    }

    /// Uses one attempt of the source address (of its /64 network for
    /// IPv6); `Err(retry after)` when none is left.
    pub fn take_address_attempt(&self, address: &str) -> Result<(), std::time::Duration> {
        self.per_address
            .take(&crate::ratelimit::address_bucket(address))
    }

    /// Whether a user name may try a password now.
    pub fn check_user_attempt(&self, username: &str) -> Result<(), std::time::Duration> {
        self.per_user.check(&username.to_owned())
    }

    /// Counts a failed sign-in of a user name.
    pub fn count_user_failure(&self, username: &str) {
        let _ = self.per_user.take(&username.to_owned());
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

    /// Checks signature, algorithm, issuer, audience and validity period;
    /// the token's claims.
    pub fn verify(&self, token: &str) -> Result<Claims, ApiError> {
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
        jsonwebtoken::decode::<Claims>(token, &key.key, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| jwt_error(&e))
    }

    /// The subject of a valid token of this issuer: from the cache of
    /// tokens verified before while they last, else by [`Auth::verify`].
    pub fn verified_subject(&self, token: &str) -> Result<String, ApiError> {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let leeway = i64::try_from(self.validation.leeway).unwrap_or(0);
        if let Some((sub, exp)) = self.verified.get(token)
            && now <= exp + leeway
        {
            return Ok(sub);
        }
        let claims = self.verify(token)?;
        self.verified
            .insert(token.to_owned(), (claims.sub.clone(), claims.exp));
        Ok(claims.sub)
    }

    /// Checks a user's password; takes as long for unknown users as for known ones.
    pub async fn check_password(
        &self,
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
        let token = token.trim();
        if token.starts_with(PAT_PREFIX) {
            return access_token_caller(state, token).await;
        }
        if let Some(oidc) = state.auth.oidc()
            && unverified_issuer(token).is_some_and(|iss| oidc.issued(&iss))
        {
            let identity = oidc.verify(token).await?;
            let meta = crate::audit::RequestMeta::from_request_parts(parts, state)
                .await
                .unwrap_or_default();
            return crate::external::caller(state, oidc, identity, &meta).await;
        }
        let subject = state.auth.verified_subject(token)?;
        // Rights come from the store, not the token: a deleted user or a
        // revoked admin flag takes effect at once.
        let user = state
            .store
            .user_by_id(&subject)
            .await?
            .ok_or_else(|| ApiError::unauthorized("the token's user no longer exists"))?;
        Ok(Caller::session(&user))
    }
}

/// The `iss` a JWT claims, before anything about it is checked: only to
/// pick the verifier.
fn unverified_issuer(token: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Iss {
        iss: String,
    }
    jsonwebtoken::dangerous::insecure_decode_claims::<Iss>(token)
        .ok()
        .map(|c| c.iss)
}

/// How often at most the last use of a personal access token is written.
const TOUCH_INTERVAL: time::Duration = time::Duration::minutes(5);

async fn access_token_caller(state: &AppState, token: &str) -> Result<Caller, ApiError> {
    let hash = token_hash(token);
    let row = state
        .store
        .access_token_by_hash(&hash)
        .await?
        .filter(|t| same_secret(&t.token_hash, &hash))
        .ok_or_else(|| ApiError::unauthorized("the personal access token is not known"))?;
    let now = OffsetDateTime::now_utc();
    if row.revoked_at.is_some() {
        return Err(ApiError::unauthorized(
            "the personal access token was revoked",
        ));
    }
    if row.expires_at <= now {
        return Err(ApiError::unauthorized(
            "the personal access token has expired",
        ));
    }
    let user = state
        .store
        .user_by_id(&row.user_id.to_string())
        .await?
        .ok_or_else(|| ApiError::unauthorized("the token's user no longer exists"))?;
    if row.last_used_at.is_none_or(|t| now - t > TOUCH_INTERVAL) {
        let store = state.store.clone();
        tokio::spawn(async move {
            if let Err(e) = store.touch_access_token(row.id, now).await {
                tracing::warn!(error = %e, "cannot record the use of a personal access token");
            }
        });
    }
    let scope = Scope::Project {
        project: row.project,
        role: row.role,
    };
    Ok(Caller::new(&user, scope, Some(row.id)))
}
