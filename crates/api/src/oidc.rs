//! Tokens of an external OpenID Connect issuer: its discovery document and
//! JWKS (fetched on first use, cached, fetched again when a token names an
//! unknown `kid`), the checks on each token, and the mapping of its group
//! claim to platform admin and project roles.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use strata_core::{ProjectName, Role};
use tokio::sync::{Mutex, RwLock};

use crate::error::ApiError;

/// One rule of the claim-to-role mapping: members of `group` become platform
/// admins (`group=admin`) or get a role in a project (`group=project:role`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleMapping {
    pub group: String,
    pub grant: Grant,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    Admin,
    Project(ProjectName, Role),
}

impl FromStr for RoleMapping {
    type Err = String;

    /// `group=admin` or `group=project:role`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (group, grant) = s
            .rsplit_once('=')
            .ok_or_else(|| format!("{s:?}: expected GROUP=admin or GROUP=PROJECT:ROLE"))?;
        if group.is_empty() {
            return Err(format!("{s:?}: the group is empty"));
        }
        let grant = if grant == "admin" {
            Grant::Admin
        } else {
            let (project, role) = grant
                .split_once(':')
                .ok_or_else(|| format!("{s:?}: expected GROUP=admin or GROUP=PROJECT:ROLE"))?;
            let project = ProjectName::parse(project)
                .map_err(|_| format!("{s:?}: {project:?} is not a project name"))?;
            let role = Role::parse(role)
                .map_err(|_| format!("{s:?}: the role must be viewer, editor or owner"))?;
            Grant::Project(project, role)
        };
        Ok(Self {
            group: group.to_owned(),
            grant,
        })
    }
}

impl fmt::Display for RoleMapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.grant {
            Grant::Admin => write!(f, "{}=admin", self.group),
            Grant::Project(p, r) => write!(f, "{}={p}:{r}", self.group),
        }
    }
}

/// What a token's groups grant: platform admin, and the largest role per project.
pub fn grants(mappings: &[RoleMapping], groups: &[String]) -> (bool, Vec<(String, Role)>) {
    let mut admin = false;
    let mut roles: Vec<(String, Role)> = Vec::new();
    for m in mappings.iter().filter(|m| groups.contains(&m.group)) {
        match &m.grant {
            Grant::Admin => admin = true,
            Grant::Project(p, r) => match roles.iter_mut().find(|(q, _)| q == p.as_str()) {
                Some((_, have)) => *have = (*have).max(*r),
                None => roles.push((p.to_string(), *r)),
            },
        }
    }
    roles.sort();
    (admin, roles)
}

/// A Strata user name for an external identity: the claim, lower-cased,
/// with every character a DNS label does not allow replaced by `-`, after
/// `prefix`, cut to 63 characters.
pub fn username_for(prefix: &str, claim: &str) -> Option<String> {
    let mut name: String = format!("{prefix}{claim}")
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '-'
            }
        })
        .collect();
    name.truncate(63);
    let name = name.trim_matches('-').to_owned();
    strata_core::Username::parse(&name)
        .ok()
        .map(|u| u.to_string())
}

/// Settings of the external issuer (`--oidc-*` flags).
#[derive(Debug, Clone)]
pub struct OidcConfig {
    /// The issuer URL, exactly as tokens carry it in `iss`.
    pub issuer: String,
    /// The audience tokens must name (`aud`), usually the client id.
    pub audience: String,
    /// Claim that names the user (`preferred_username`; `sub` when absent).
    pub username_claim: String,
    /// Claim that lists the user's groups.
    pub groups_claim: String,
    /// Prefix of the Strata user names of external users, so that they never
    /// collide with local users.
    pub username_prefix: String,
    pub mappings: Vec<RoleMapping>,
    /// Least time between two JWKS fetches caused by unknown key ids.
    pub jwks_min_refresh: Duration,
}

impl OidcConfig {
    pub fn new(issuer: &str, audience: &str) -> Self {
        Self {
            issuer: issuer.trim_end_matches('/').to_owned(),
            audience: audience.to_owned(),
            username_claim: "preferred_username".into(),
            groups_claim: "groups".into(),
            username_prefix: "oidc-".into(),
            mappings: Vec::new(),
            jwks_min_refresh: Duration::from_secs(30),
        }
    }
}

/// What a verified external token says about its bearer.
#[derive(Debug, Clone)]
pub struct ExternalIdentity {
    pub issuer: String,
    pub subject: String,
    /// The value of the username claim (or the subject).
    pub name: String,
    pub groups: Vec<String>,
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Groups {
    Many(Vec<String>),
    One(String),
}

#[derive(Default)]
struct Keys {
    jwks_uri: Option<String>,
    by_kid: HashMap<String, (DecodingKey, Algorithm)>,
    fetched: Option<Instant>,
}

/// Verifies tokens of one external issuer.
pub struct OidcVerifier {
    config: OidcConfig,
    http: reqwest::Client,
    keys: RwLock<Keys>,
    /// Serialises fetches: one request at a time goes to the issuer.
    fetching: Mutex<()>,
}

/// The algorithm a key is for: its `alg`, or what its type implies.
/// Symmetric keys are never accepted.
fn key_algorithm(jwk: &Jwk) -> Option<Algorithm> {
    let alg = match (&jwk.common.key_algorithm, &jwk.algorithm) {
        (_, AlgorithmParameters::OctetKey(_) | AlgorithmParameters::Other(_)) => return None,
        (Some(a), _) => Algorithm::try_from(*a).ok()?,
        (None, AlgorithmParameters::RSA(_)) => Algorithm::RS256,
        (None, AlgorithmParameters::EllipticCurve(ec)) => match ec.curve {
            EllipticCurve::P256 => Algorithm::ES256,
            EllipticCurve::P384 => Algorithm::ES384,
            _ => return None,
        },
        (None, AlgorithmParameters::OctetKeyPair(_)) => Algorithm::EdDSA,
        (None, _) => return None,
    };
    (!matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)).then_some(alg)
}

/// Why the external issuer cannot be used, or its keys not fetched.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("{what} {url:?} is not a URL")]
    NotAUrl {
        what: &'static str,
        url: String,
        #[source]
        source: url::ParseError,
    },
    #[error("{what} {url:?} must be https")]
    NotHttps { what: &'static str, url: String },
    #[error("the OIDC audience is empty")]
    NoAudience,
    #[error("cannot make an HTTP client")]
    Client(#[source] reqwest::Error),
    #[error("GET {url}")]
    Fetch {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("GET {url}: HTTP {status}")]
    Status {
        url: String,
        status: reqwest::StatusCode,
    },
    #[error("the discovery document names issuer {found:?}, not {expected:?}")]
    WrongIssuer { found: String, expected: String },
}

/// Plain http is allowed only for an issuer on a loopback address.
fn check_url(url: &str, what: &'static str) -> Result<(), OidcError> {
    let parsed = reqwest::Url::parse(url).map_err(|source| OidcError::NotAUrl {
        what,
        url: url.to_owned(),
        source,
    })?;
    let host = parsed.host_str().unwrap_or_default();
    let loopback = host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(OidcError::NotHttps {
            what,
            url: url.to_owned(),
        }),
    }
}

fn invalid(detail: &str) -> ApiError {
    ApiError::unauthorized(detail.to_owned())
}

impl OidcVerifier {
    pub fn new(config: OidcConfig) -> Result<Self, OidcError> {
        check_url(&config.issuer, "the OIDC issuer")?;
        if config.audience.is_empty() {
            return Err(OidcError::NoAudience);
        }
        // One TLS crypto provider for the whole process; fine if one is installed already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(OidcError::Client)?;
        Ok(Self {
            config,
            http,
            keys: RwLock::new(Keys::default()),
            fetching: Mutex::new(()),
        })
    }

    pub fn config(&self) -> &OidcConfig {
        &self.config
    }

    /// Whether a token names this issuer (its claims are not trusted yet).
    pub fn issued(&self, iss: &str) -> bool {
        iss.trim_end_matches('/') == self.config.issuer
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, OidcError> {
        let fetch = |source| OidcError::Fetch {
            url: url.to_owned(),
            source,
        };
        let resp = self.http.get(url).send().await.map_err(fetch)?;
        if !resp.status().is_success() {
            return Err(OidcError::Status {
                url: url.to_owned(),
                status: resp.status(),
            });
        }
        resp.json().await.map_err(fetch)
    }

    /// Fetches the discovery document (once) and the JWKS, unless another
    /// request fetched them while this one waited or the last fetch is
    /// more recent than `jwks_min_refresh`.
    async fn refresh(&self, seen: Option<Instant>) -> Result<(), OidcError> {
        let _one_at_a_time = self.fetching.lock().await;
        let (jwks_uri, fetched) = {
            let keys = self.keys.read().await;
            (keys.jwks_uri.clone(), keys.fetched)
        };
        if fetched != seen || fetched.is_some_and(|t| t.elapsed() < self.config.jwks_min_refresh) {
            return Ok(());
        }
        let jwks_uri = if let Some(u) = jwks_uri {
            u
        } else {
            let url = format!("{}/.well-known/openid-configuration", self.config.issuer);
            let doc: Discovery = self.get_json(&url).await?;
            if doc.issuer.trim_end_matches('/') != self.config.issuer {
                return Err(OidcError::WrongIssuer {
                    found: doc.issuer,
                    expected: self.config.issuer.clone(),
                });
            }
            check_url(&doc.jwks_uri, "jwks_uri")?;
            doc.jwks_uri
        };
        let set: JwkSet = self.get_json(&jwks_uri).await?;
        let mut by_kid = HashMap::new();
        for jwk in &set.keys {
            let (Some(kid), Some(alg)) = (jwk.common.key_id.clone(), key_algorithm(jwk)) else {
                continue;
            };
            if let Ok(key) = DecodingKey::from_jwk(jwk) {
                by_kid.insert(kid, (key, alg));
            }
        }
        tracing::info!(issuer = %self.config.issuer, keys = by_kid.len(), "fetched the OIDC issuer's keys");
        *self.keys.write().await = Keys {
            jwks_uri: Some(jwks_uri),
            by_kid,
            fetched: Some(Instant::now()),
        };
        Ok(())
    }

    async fn key(&self, kid: &str) -> Result<Option<(DecodingKey, Algorithm)>, ApiError> {
        let seen = {
            let keys = self.keys.read().await;
            if let Some(k) = keys.by_kid.get(kid) {
                return Ok(Some(k.clone()));
            }
            keys.fetched
        };
        if let Err(e) = self.refresh(seen).await {
            tracing::warn!(issuer = %self.config.issuer, error = %strata_core::chain(&e), "cannot fetch the OIDC issuer's keys");
            return Err(ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the identity provider's keys cannot be fetched; try again shortly",
            ));
        }
        Ok(self.keys.read().await.by_kid.get(kid).cloned())
    }

    /// Checks signature, algorithm, issuer, audience and validity period of
    /// an external token and reads who it names.
    pub async fn verify(&self, token: &str) -> Result<ExternalIdentity, ApiError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| invalid("the bearer token is malformed"))?;
        let kid = header
            .kid
            .as_deref()
            .ok_or_else(|| invalid("the token names no key (kid)"))?;
        let (key, alg) = self
            .key(kid)
            .await?
            .ok_or_else(|| invalid("the token was not signed by a known key"))?;
        if header.alg != alg {
            return Err(invalid("the token's algorithm is not accepted"));
        }
        let mut validation = Validation::new(alg);
        validation.set_issuer(&[&self.config.issuer, &format!("{}/", self.config.issuer)]);
        validation.set_audience(&[&self.config.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = 30;
        let data = jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
            token,
            &key,
            &validation,
        )
        .map_err(|e| crate::auth::jwt_error(&e))?;
        let claims = data.claims;
        let text = |name: &str| {
            claims
                .get(name)
                .and_then(serde_json::Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let subject = text("sub").ok_or_else(|| invalid("the token has no subject"))?;
        let name = text(&self.config.username_claim).unwrap_or_else(|| subject.clone());
        let groups = match claims
            .get(&self.config.groups_claim)
            .cloned()
            .map(serde_json::from_value::<Groups>)
        {
            Some(Ok(Groups::Many(g))) => g,
            Some(Ok(Groups::One(g))) => vec![g],
            Some(Err(_)) | None => Vec::new(),
        };
        Ok(ExternalIdentity {
            issuer: self.config.issuer.clone(),
            subject,
            name,
            groups,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mappings_parse_and_print() {
        let m: RoleMapping = "dba=admin".parse().unwrap();
        assert_eq!(m.grant, Grant::Admin);
        let m: RoleMapping = "team-a=orders:editor".parse().unwrap();
        assert_eq!(m.group, "team-a");
        assert_eq!(
            m.grant,
            Grant::Project(ProjectName::parse("orders").unwrap(), Role::Editor)
        );
        assert_eq!(m.to_string(), "team-a=orders:editor");
        let m: RoleMapping = "cn=x,o=y=orders:viewer".parse().unwrap();
        assert_eq!(m.group, "cn=x,o=y", "the last = separates");
        for bad in [
            "",
            "admin",
            "=admin",
            "g=orders",
            "g=Orders:viewer",
            "g=orders:root",
        ] {
            assert!(bad.parse::<RoleMapping>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn groups_grant_the_largest_role_per_project() {
        let m: Vec<RoleMapping> = ["a=p:viewer", "b=p:owner", "c=q:editor", "ops=admin"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let (admin, roles) = grants(&m, &["a".into(), "b".into(), "x".into()]);
        assert!(!admin);
        assert_eq!(roles, vec![("p".into(), Role::Owner)]);
        let (admin, roles) = grants(&m, &["ops".into(), "c".into()]);
        assert!(admin);
        assert_eq!(roles, vec![("q".into(), Role::Editor)]);
        assert_eq!(grants(&m, &[]), (false, Vec::new()));
    }

    #[test]
    fn external_names_become_dns_labels() {
        assert_eq!(
            username_for("oidc-", "Alice").as_deref(),
            Some("oidc-alice")
        );
        assert_eq!(
            username_for("oidc-", "bob@example.com").as_deref(),
            Some("oidc-bob-example-com")
        );
        assert_eq!(username_for("", "Ü_ï").as_deref(), None);
        assert_eq!(
            username_for("oidc-", "Jürgen").as_deref(),
            Some("oidc-j-rgen")
        );
        assert_eq!(
            username_for("oidc-", &"x".repeat(100)).map(|s| s.len()),
            Some(63)
        );
    }

    #[test]
    fn only_https_or_loopback_http() {
        assert!(check_url("https://id.example.com/realms/a", "i").is_ok());
        assert!(check_url("http://127.0.0.1:8080", "i").is_ok());
        assert!(check_url("http://localhost:8080", "i").is_ok());
        assert!(check_url("http://id.example.com", "i").is_err());
        assert!(check_url("ftp://127.0.0.1", "i").is_err());
        assert!(check_url("not a url", "i").is_err());
    }

    #[test]
    fn symmetric_keys_are_never_accepted() {
        let jwk: Jwk =
            serde_json::from_value(serde_json::json!({"kty": "oct", "k": "c2VjcmV0", "kid": "h"}))
                .unwrap();
        assert_eq!(key_algorithm(&jwk), None);
        let jwk: Jwk = serde_json::from_value(serde_json::json!({
            "kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "kid": "e"
        }))
        .unwrap();
        assert_eq!(key_algorithm(&jwk), Some(Algorithm::EdDSA));
    }
}
