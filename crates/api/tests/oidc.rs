//! Tokens of an external OpenID Connect issuer: an identity provider served
//! on loopback (discovery document and JWKS over HTTP, keys it signs with),
//! Strata verifying its tokens, mapping groups to roles, and refusing every
//! kind of forged or misdirected token. On SQLite and on PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{App, app};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use strata_api::oidc::{OidcConfig, OidcVerifier};
use strata_testpg::{Backend, each_backend};

const AUDIENCE: &str = "strata-console";

/// A signing key of the identity provider.
struct Key {
    kid: String,
    encoding: EncodingKey,
    jwk: Value,
    public: Vec<u8>,
}

fn key(kid: &str) -> Key {
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    let signing = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    let pem = signing
        .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
        .unwrap();
    let public = signing.verifying_key().to_bytes().to_vec();
    Key {
        kid: kid.into(),
        encoding: EncodingKey::from_ed_pem(pem.as_bytes()).unwrap(),
        jwk: json!({"kty": "OKP", "crv": "Ed25519", "use": "sig", "kid": kid, "x": URL_SAFE_NO_PAD.encode(&public)}),
        public,
    }
}

/// The identity provider: serves discovery and JWKS, counts JWKS fetches.
struct Idp {
    issuer: String,
    published: Arc<Mutex<Vec<Value>>>,
    jwks_fetches: Arc<AtomicUsize>,
    server: tokio::task::JoinHandle<()>,
}

async fn start_idp(keys: &[&Key]) -> Idp {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    let published = Arc::new(Mutex::new(
        keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>(),
    ));
    let jwks_fetches = Arc::new(AtomicUsize::new(0));
    let discovery = json!({"issuer": issuer, "jwks_uri": format!("{issuer}/keys")});
    let (p, f) = (published.clone(), jwks_fetches.clone());
    let router = axum::Router::new()
        .route(
            "/.well-known/openid-configuration",
            get(move || async move { Json(discovery) }),
        )
        .route(
            "/keys",
            get(move || {
                f.fetch_add(1, Ordering::SeqCst);
                let keys = p.lock().unwrap().clone();
                async move { Json(json!({"keys": keys})) }
            }),
        );
    let server = tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    Idp {
        issuer,
        published,
        jwks_fetches,
        server,
    }
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn claims(idp: &Idp, sub: &str, name: &str, groups: &[&str]) -> Value {
    json!({
        "iss": idp.issuer, "aud": AUDIENCE, "sub": sub, "preferred_username": name,
        "groups": groups, "iat": now(), "nbf": now() - 5, "exp": now() + 300,
    })
}

fn sign(key: &Key, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(key.kid.clone());
    jsonwebtoken::encode(&header, claims, &key.encoding).unwrap()
}

fn config(idp: &Idp, min_refresh: Duration) -> OidcConfig {
    let mut c = OidcConfig::new(&idp.issuer, AUDIENCE);
    c.mappings = ["team-a=default:viewer", "dbas=default:editor", "ops=admin"]
        .iter()
        .map(|m| m.parse().unwrap())
        .collect();
    c.jwks_min_refresh = min_refresh;
    c
}

async fn strata(backend: Backend, config: OidcConfig) -> App {
    app(backend, move |a| {
        a.with_oidc(Some(OidcVerifier::new(config).unwrap()))
    })
    .await
}

async fn status(app: &App, token: &str) -> u16 {
    app.get("/v1/projects/default/instances", token)
        .await
        .status
        .as_u16()
}

each_backend! {
    #[tokio::test]
    async fn external_users_get_their_roles_from_their_groups(backend) {
        let k1 = key("k1");
        let idp = start_idp(&[&k1]).await;
        let app = strata(backend, config(&idp, Duration::ZERO)).await;

        let alice = sign(&k1, &claims(&idp, "u-1", "Alice", &["team-a"]));
        let me = app.get("/v1/me", &alice).await;
        assert_eq!(me.status.as_u16(), 200, "{}", me.body);
        assert_eq!(me.body["username"], "oidc-alice");
        assert_eq!(me.body["admin"], false);
        assert_eq!(me.body["projects"], json!([{"project": "default", "role": "viewer"}]));
        assert_eq!(status(&app, &alice).await, 200);
        let del = app.call("DELETE", "/v1/projects/default/instances/orders", Some(&alice), None).await;
        assert_eq!(del.status.as_u16(), 403, "{}", del.body);
        assert_eq!(app.get("/v1/users", &alice).await.status.as_u16(), 403);
        // The same subject is the same user, created once and audited once.
        let again = sign(&k1, &claims(&idp, "u-1", "Alice", &["team-a", "dbas"]));
        let me2 = app.get("/v1/me", &again).await;
        assert_eq!(me2.body["id"], me.body["id"]);
        assert_eq!(me2.body["projects"], json!([{"project": "default", "role": "editor"}]), "roles follow the token's groups");
        let chain = app.store.audit_chain(0, 1000).await.unwrap();
        let provisioned: Vec<_> = chain.iter().filter(|e| e.action == "user.provision").collect();
        assert_eq!(provisioned.len(), 1);
        assert_eq!(provisioned[0].actor.name, "oidc-alice");
        // Memberships granted in Strata add to what the groups grant.
        app.project("other").await;
        app.member("other", "oidc-alice", "owner").await;
        assert_eq!(app.get("/v1/projects/other/members", &alice).await.status.as_u16(), 200);

        // A group mapped to admin makes a platform admin.
        let dave = sign(&k1, &claims(&idp, "u-2", "dave", &["ops"]));
        assert_eq!(app.get("/v1/users", &dave).await.status.as_u16(), 200);
        // No mapped group: no project to see.
        let erin = sign(&k1, &claims(&idp, "u-3", "erin", &[]));
        assert_eq!(status(&app, &erin).await, 404);
        assert_eq!(app.get("/v1/me", &erin).await.body["projects"], json!([]));
        // An external user never becomes a local user of the same name.
        app.user("oidc-mallory").await;
        let mallory = sign(&k1, &claims(&idp, "u-4", "mallory", &["team-a"]));
        let me = app.get("/v1/me", &mallory).await;
        assert_eq!(me.status.as_u16(), 200, "{}", me.body);
        let name = me.body["username"].as_str().unwrap();
        assert!(name.starts_with("oidc-mallory-") && name.len() == "oidc-mallory-".len() + 8, "{name}");
        // External users have no password to sign in with.
        let r = app.call("POST", "/v1/auth/token", None, Some(&json!({"username": "oidc-alice", "password": "!"}))).await;
        assert_eq!(r.status.as_u16(), 401);
        idp.server.abort();
        app.stop().await;
    }

    #[tokio::test]
    async fn forged_and_misdirected_tokens_are_refused(backend) {
        let k1 = key("k1");
        let idp = start_idp(&[&k1]).await;
        let app = strata(backend, config(&idp, Duration::ZERO)).await;
        let good = claims(&idp, "u-1", "alice", &["team-a"]);
        assert_eq!(status(&app, &sign(&k1, &good)).await, 200);

        let with = |field: &str, value: Value| {
            let mut c = good.clone();
            c[field] = value;
            c
        };
        let refused = [
            ("wrong audience", sign(&k1, &with("aud", json!("someone-else")))),
            ("wrong issuer", sign(&k1, &with("iss", json!("http://127.0.0.1:1")))),
            ("expired", sign(&k1, &with("exp", json!(now() - 3600)))),
            ("not yet valid", sign(&k1, &with("nbf", json!(now() + 3600)))),
            ("no subject", sign(&k1, &{
                let mut c = good.clone();
                c.as_object_mut().unwrap().remove("sub");
                c
            })),
            ("unknown kid", sign(&key("k9"), &good)),
            ("signed by another key under a known kid", sign(&key("k1"), &good)),
            ("alg none", format!(
                "{}.{}.",
                URL_SAFE_NO_PAD.encode(json!({"alg": "none", "kid": "k1"}).to_string()),
                URL_SAFE_NO_PAD.encode(good.to_string())
            )),
            ("HS256 with the public key as secret", {
                let mut header = Header::new(Algorithm::HS256);
                header.kid = Some("k1".into());
                jsonwebtoken::encode(&header, &good, &EncodingKey::from_secret(&k1.public)).unwrap()
            }),
            ("garbage", "abc.def.ghi".to_owned()),
        ];
        for (what, token) in &refused {
            let r = app.get("/v1/projects/default/instances", token).await;
            assert_eq!(r.status.as_u16(), 401, "{what}: {}", r.body);
            assert_eq!(r.headers["www-authenticate"], "Bearer realm=\"strata\"");
            assert!(r.body.get("items").is_none(), "{what} leaked data");
        }

        // The provider rotates its key: an unknown kid makes Strata fetch the
        // JWKS again, and the new key works at once.
        let fetched = idp.jwks_fetches.load(Ordering::SeqCst);
        let k2 = key("k2");
        idp.published.lock().unwrap().push(k2.jwk.clone());
        assert_eq!(status(&app, &sign(&k2, &good)).await, 200);
        assert_eq!(idp.jwks_fetches.load(Ordering::SeqCst), fetched + 1);
        // A key the provider withdraws stops working after the next fetch.
        idp.published.lock().unwrap().retain(|k| k["kid"] != "k1");
        assert_eq!(status(&app, &sign(&key("k3"), &good)).await, 401);
        assert_eq!(status(&app, &sign(&k1, &good)).await, 401);
        idp.server.abort();
        app.stop().await;
    }

    #[tokio::test]
    async fn unknown_key_ids_cannot_flood_the_provider_and_an_unreachable_one_is_503(backend) {
        let k1 = key("k1");
        let idp = start_idp(&[&k1]).await;
        let app = strata(backend, config(&idp, Duration::from_hours(1))).await;
        let good = claims(&idp, "u-1", "alice", &["team-a"]);
        assert_eq!(status(&app, &sign(&k1, &good)).await, 200);
        assert_eq!(idp.jwks_fetches.load(Ordering::SeqCst), 1);
        for i in 0..20 {
            assert_eq!(status(&app, &sign(&key(&format!("x{i}")), &good)).await, 401);
        }
        assert_eq!(idp.jwks_fetches.load(Ordering::SeqCst), 1, "at most one fetch per interval");
        idp.server.abort();
        app.stop().await;

        // A provider that does not answer: 503, not 401 or 500.
        let gone = start_idp(&[&k1]).await;
        let cfg = config(&gone, Duration::ZERO);
        let token = sign(&k1, &claims(&gone, "u-1", "alice", &[]));
        gone.server.abort();
        let _ = gone.server.await;
        let app = strata(backend, cfg).await;
        let r = app.get("/v1/projects/default/instances", &token).await;
        assert_eq!(r.status.as_u16(), 503, "{}", r.body);
        app.stop().await;
    }
}

#[test]
fn the_issuer_must_be_https_unless_on_loopback() {
    assert!(OidcVerifier::new(OidcConfig::new("http://id.example.com", AUDIENCE)).is_err());
    assert!(OidcVerifier::new(OidcConfig::new("https://id.example.com", "")).is_err());
    assert!(OidcVerifier::new(OidcConfig::new("https://id.example.com", AUDIENCE)).is_ok());
}
