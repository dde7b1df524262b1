//! Personal access tokens, refresh tokens and the limits of sign-in
//! attempts, through the HTTP API, on SQLite and on PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

mod common;

use std::time::Duration;

use axum::http::StatusCode;
use common::{App, PASSWORD, app, app_behind, assert_problem};
use serde_json::{Value, json};
use strata_api::proxy::{TrustedProxies, parse_cidr};
use strata_api::ratelimit::{LoginLimits, Quota};
use strata_testpg::each_backend;

/// The whole audit chain, oldest first.
async fn chain(app: &App) -> Vec<strata_core::AuditEvent> {
    app.store.audit_chain(0, 10_000).await.unwrap()
}

async fn create_token(app: &App, token: &str, body: &Value) -> common::Res {
    app.call("POST", "/v1/tokens", Some(token), Some(body))
        .await
}

each_backend! {
    #[tokio::test]
    async fn personal_access_tokens_are_scoped_shown_once_and_revocable(backend) {
        let app = app(backend, |a| a).await;
        app.project("other").await;
        app.user("bob").await;
        app.member("default", "bob", "editor").await;
        let bob = app.login("bob").await["access_token"].as_str().unwrap().to_owned();

        // Bad input names the field; nothing is created.
        let cases = [
            (json!({"name": "", "project": "default", "role": "viewer"}), "name"),
            (json!({"name": "ci", "project": "default", "role": "root"}), "role"),
            (json!({"name": "ci", "project": "default", "role": "viewer", "expires_in_days": 0}), "expires_in_days"),
            (json!({"name": "ci", "project": "default", "role": "viewer", "expires_in_days": 366}), "expires_in_days"),
            (json!({"name": "ci", "project": "default", "role": "viewer", "scope": "all"}), "scope"),
        ];
        for (body, field) in &cases {
            assert_problem(&create_token(&app, &bob, body).await, StatusCode::BAD_REQUEST, field);
        }
        // A project bob has no role in looks like one that does not exist.
        let other = create_token(&app, &bob, &json!({"name": "ci", "project": "other", "role": "viewer"})).await;
        assert_eq!(other.status, StatusCode::NOT_FOUND, "{}", other.body);
        let missing = create_token(&app, &bob, &json!({"name": "ci", "project": "nope", "role": "viewer"})).await;
        assert_eq!(missing.status, StatusCode::NOT_FOUND);
        assert_eq!(other.body["detail"], missing.body["detail"].as_str().unwrap().replace("nope", "other"));
        // No more rights than its user.
        let owner = create_token(&app, &bob, &json!({"name": "ci", "project": "default", "role": "owner"})).await;
        assert_eq!(owner.status, StatusCode::FORBIDDEN, "{}", owner.body);
        assert_eq!(app.get("/v1/tokens", &bob).await.body["items"], json!([]));

        // A viewer token for the default project, shown once.
        let created = create_token(&app, &bob, &json!({"name": "ci deploy", "project": "default", "role": "viewer", "expires_in_days": 7})).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
        let pat = created.body["token"].as_str().unwrap().to_owned();
        let id = created.body["id"].as_str().unwrap().to_owned();
        assert!(pat.starts_with("strata_pat_") && pat.len() > 50, "{pat}");
        assert_eq!(created.body["state"], "active");
        let listed = app.get("/v1/tokens", &bob).await;
        assert_eq!(listed.body["items"][0]["id"], id.as_str());
        assert_eq!(listed.body["items"][0]["role"], "viewer");
        assert!(listed.body["items"][0].get("token").is_none(), "the token is shown once");
        assert!(!listed.body.to_string().contains(&pat));

        // It reads, it does not change, and it sees nothing outside its project.
        assert_eq!(app.get("/v1/projects/default/instances", &pat).await.status, StatusCode::OK);
        let del = app.call("DELETE", "/v1/projects/default/instances/orders", Some(&pat), None).await;
        assert_eq!(del.status, StatusCode::FORBIDDEN, "{}", del.body);
        let creds = app.get("/v1/projects/default/instances/orders/credentials", &pat).await;
        assert_eq!(creds.status, StatusCode::FORBIDDEN);
        let create = app.call("POST", "/v1/projects/default/instances", Some(&pat),
            Some(&json!({"name": "orders", "plan": "micro", "storage_gb": 1}))).await;
        assert_eq!(create.status, StatusCode::FORBIDDEN);
        app.member("other", "bob", "owner").await;
        assert_eq!(app.get("/v1/projects/other/instances", &pat).await.status, StatusCode::NOT_FOUND,
            "a token of one project never reaches another, even where its user has a role");
        let me = app.get("/v1/me", &pat).await;
        assert_eq!(me.body["projects"], json!([{"project": "default", "role": "viewer"}]));
        let projects = app.get("/v1/projects", &pat).await;
        assert_eq!(projects.body["items"].as_array().unwrap().len(), 1);
        // Tokens are managed with a sign-in, not with a token.
        let nested = create_token(&app, &pat, &json!({"name": "x", "project": "default", "role": "viewer"})).await;
        assert_eq!(nested.status, StatusCode::FORBIDDEN);
        assert_eq!(app.get("/v1/tokens", &pat).await.status, StatusCode::FORBIDDEN);
        // Platform-wide endpoints are out of reach even for an admin's token.
        let admin_pat = create_token(&app, &app.admin_token, &json!({"name": "a", "project": "default", "role": "owner"})).await;
        assert_eq!(admin_pat.status, StatusCode::CREATED, "{}", admin_pat.body);
        let admin_pat = admin_pat.body["token"].as_str().unwrap().to_owned();
        assert_eq!(app.get("/v1/users", &admin_pat).await.status, StatusCode::FORBIDDEN);
        assert_eq!(app.get("/v1/projects/default/members", &admin_pat).await.status, StatusCode::OK);
        assert_eq!(app.get("/v1/projects/other/instances", &admin_pat).await.status, StatusCode::NOT_FOUND);

        // A token never outgrows its user: with the membership gone, so is access.
        let r = app.call("DELETE", "/v1/projects/default/members/bob", Some(&app.admin_token), None).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);
        assert_eq!(app.get("/v1/projects/default/instances", &pat).await.status, StatusCode::NOT_FOUND);
        app.member("default", "bob", "editor").await;
        assert_eq!(app.get("/v1/projects/default/instances", &pat).await.status, StatusCode::OK);

        // Someone else's token cannot be revoked (it does not exist for them).
        app.user("carol").await;
        let carol = app.login("carol").await["access_token"].as_str().unwrap().to_owned();
        let r = app.call("DELETE", &format!("/v1/tokens/{id}"), Some(&carol), None).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        assert_eq!(app.get("/v1/projects/default/instances", &pat).await.status, StatusCode::OK);
        // Revoked: refused at once, and gone from the active state.
        let r = app.call("DELETE", &format!("/v1/tokens/{id}"), Some(&bob), None).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
        let refused = app.get("/v1/projects/default/instances", &pat).await;
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
        assert!(refused.body["detail"].as_str().unwrap().contains("revoked"));
        assert_eq!(app.call("DELETE", &format!("/v1/tokens/{id}"), Some(&bob), None).await.status, StatusCode::NOT_FOUND);
        assert_eq!(app.get("/v1/tokens", &bob).await.body["items"][0]["state"], "revoked");
        // Unknown and malformed tokens.
        for bad in ["strata_pat_", "strata_pat_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", &format!("{pat}x")] {
            assert_eq!(app.get("/v1/projects/default/instances", bad).await.status, StatusCode::UNAUTHORIZED);
        }

        // An expired token is refused.
        let short = create_token(&app, &bob, &json!({"name": "short", "project": "default", "role": "viewer", "expires_in_days": 1})).await;
        let short_pat = short.body["token"].as_str().unwrap().to_owned();
        let n = app.db.exec(&format!(
            "UPDATE access_tokens SET expires_at = '2020-01-01T00:00:00Z' WHERE id = '{}'",
            short.body["id"].as_str().unwrap()
        )).await;
        assert_eq!(n, 1);
        let expired = app.get("/v1/projects/default/instances", &short_pat).await;
        assert_eq!(expired.status, StatusCode::UNAUTHORIZED);
        assert!(expired.body["detail"].as_str().unwrap().contains("expired"));

        // Recorded in the project's audit log, without the token.
        let events = app.audit("default").await;
        let actions: Vec<&str> = events.iter().filter_map(|e| e["action"].as_str()).collect();
        assert!(actions.contains(&"token.create") && actions.contains(&"token.revoke"), "{actions:?}");
        let revoke = events.iter().find(|e| e["action"] == "token.revoke" && e["outcome"]["result"] == "success").unwrap();
        assert_eq!(revoke["actor"]["name"], "bob");
        assert_eq!(revoke["target"]["id"], id.as_str());
        let everything = serde_json::to_string(&chain(&app).await).unwrap();
        assert!(!everything.contains(&pat) && !everything.contains(&short_pat), "a token reached the audit log");
        // A deleted user's tokens stop working.
        let r = app.call("DELETE", "/v1/users/bob", Some(&app.admin_token), None).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);
        assert_eq!(app.get("/v1/me", &bob).await.status, StatusCode::UNAUTHORIZED);
        assert!(app.store.verify_audit_chain().await.unwrap().ok);
        app.stop().await;
    }

    #[tokio::test]
    async fn refresh_tokens_work_once_and_a_replay_ends_the_sign_in(backend) {
        let app = app(backend, |a| a).await;
        app.user("bob").await;
        let first = app.login("bob").await;
        assert_eq!(first["token_type"], "Bearer");
        assert_eq!(first["expires_in"], 900);
        let r1 = first["refresh_token"].as_str().unwrap().to_owned();
        assert!(r1.starts_with("strata_rt_"));

        let app = &app;
        let refresh = |t: &str| {
            let body = json!({"refresh_token": t});
            async move { app.call("POST", "/v1/auth/refresh", None, Some(&body)).await }
        };
        let second = refresh(&r1).await;
        assert_eq!(second.status, StatusCode::OK, "{}", second.body);
        let access = second.body["access_token"].as_str().unwrap();
        assert_eq!(app.get("/v1/me", access).await.body["username"], "bob");
        let r2 = second.body["refresh_token"].as_str().unwrap().to_owned();
        assert_ne!(r1, r2);

        // r1 again: someone holds a copy. Refused, and r2 dies with it.
        let replay = refresh(&r1).await;
        assert_eq!(replay.status, StatusCode::UNAUTHORIZED);
        assert_eq!(refresh(&r2).await.status, StatusCode::UNAUTHORIZED);
        let events = chain(app).await;
        let replayed = events.iter().find(|e| e.action == "auth.refresh" && e.outcome.status == 401).unwrap();
        assert_eq!(replayed.actor.name, "bob");

        // Sign out ends a sign-in too.
        let third = app.login("bob").await;
        let r3 = third["refresh_token"].as_str().unwrap();
        let out = app.call("POST", "/v1/auth/logout", None, Some(&json!({"refresh_token": r3}))).await;
        assert_eq!(out.status, StatusCode::NO_CONTENT);
        assert_eq!(refresh(r3).await.status, StatusCode::UNAUTHORIZED);

        // Bad input.
        assert_eq!(refresh("strata_rt_nonsense").await.status, StatusCode::UNAUTHORIZED);
        assert_eq!(refresh(first["access_token"].as_str().unwrap()).await.status, StatusCode::UNAUTHORIZED);
        let r = app.call("POST", "/v1/auth/refresh", None, Some(&json!({}))).await;
        assert_problem(&r, StatusCode::BAD_REQUEST, "refresh_token");
        // An expired refresh token.
        let fourth = app.login("bob").await;
        app.db.exec("UPDATE refresh_tokens SET expires_at = '2020-01-01T00:00:00Z' WHERE used_at IS NULL AND revoked_at IS NULL").await;
        assert_eq!(refresh(fourth["refresh_token"].as_str().unwrap()).await.status, StatusCode::UNAUTHORIZED);
        // Nothing secret in the log.
        let everything = serde_json::to_string(&chain(app).await).unwrap();
        for secret in [r1.as_str(), r2.as_str(), PASSWORD] {
            assert!(!everything.contains(secret));
        }
        app.stop().await;
    }

    #[tokio::test]
    async fn password_guessing_is_limited_per_user_and_per_address(backend) {
        let limits = LoginLimits {
            per_address: Quota::new(6, Duration::from_mins(10)),
            per_user: Quota::new(3, Duration::from_mins(15)),
        };
        let app = app(backend, |a| a.with_login_limits(limits)).await;
        app.user("bob").await;
        app.user("carol").await;
        let app = &app;
        let attempt = |peer: &'static str, user: &'static str, password: &'static str| {
            let body = json!({"username": user, "password": password});
            async move { app.call_from(peer, "POST", "/v1/auth/token", None, Some(&body)).await }
        };
        // Three wrong guesses for bob from one address, then even the right
        // password is refused for bob, from any address.
        for _ in 0..3 {
            assert_eq!(attempt("10.0.0.1", "bob", "wrong password!").await.status, StatusCode::UNAUTHORIZED);
        }
        let limited = attempt("10.0.0.1", "bob", PASSWORD).await;
        assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS, "{}", limited.body);
        let wait: u64 = limited.headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=900).contains(&wait), "{wait}");
        assert_eq!(attempt("10.0.0.2", "bob", PASSWORD).await.status, StatusCode::TOO_MANY_REQUESTS);
        // Unknown users are limited the same way: no hint which names exist.
        for _ in 0..3 {
            assert_eq!(attempt("10.0.0.3", "nobody", "wrong password!").await.status, StatusCode::UNAUTHORIZED);
        }
        assert_eq!(attempt("10.0.0.3", "nobody", "wrong password!").await.status, StatusCode::TOO_MANY_REQUESTS);
        // carol is not affected by bob's lockout.
        assert_eq!(attempt("10.0.0.2", "carol", PASSWORD).await.status, StatusCode::OK);
        // One address gets six requests, whatever they are.
        for _ in 0..6 {
            assert_ne!(attempt("10.0.0.9", "carol", PASSWORD).await.status, StatusCode::TOO_MANY_REQUESTS);
        }
        let r = attempt("10.0.0.9", "carol", PASSWORD).await;
        assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
        assert!(r.headers.contains_key("retry-after"));

        // Failed sign-ins are audited with their source; limited ones are not
        // (the limit exists so that an attacker cannot fill the log).
        let events = chain(app).await;
        let failures: Vec<_> = events.iter().filter(|e| e.action == "auth.login" && e.outcome.status == 401).collect();
        assert_eq!(failures.len(), 6, "3 for bob, 3 for nobody");
        assert!(failures.iter().any(|e| e.actor.name == "bob" && e.source_ip.as_deref() == Some("10.0.0.1")));
        assert!(failures.iter().all(|e| e.actor.kind == "anonymous"));
        let ok = events.iter().filter(|e| e.action == "auth.login" && e.outcome.status == 200).count();
        assert_eq!(ok, 7, "carol signed in seven times");
        assert!(events.iter().all(|e| e.outcome.status != 429));
        let everything = serde_json::to_string(&events).unwrap();
        assert!(!everything.contains("wrong password!") && !everything.contains(PASSWORD));
        app.stop().await;
    }

    #[tokio::test]
    async fn a_forwarded_address_is_believed_only_from_a_trusted_proxy(backend) {
        let limits = LoginLimits {
            per_address: Quota::new(2, Duration::from_mins(10)),
            per_user: Quota::new(100, Duration::from_mins(15)),
        };
        let proxies = TrustedProxies::new([parse_cidr("10.0.0.0/8").unwrap()]);
        let app = app_behind(backend, proxies, |a| a.with_login_limits(limits)).await;
        let app = &app;
        let sign_in = |peer: &'static str, forwarded: &'static str| {
            let body = json!({"username": "admin", "password": PASSWORD});
            async move {
                app.call_forwarded(peer, Some(forwarded), "POST", "/v1/auth/token", None, Some(&body))
                    .await
                    .status
            }
        };
        // Behind the trusted proxy 10.0.0.1 each client has its own bucket:
        // the right-most address the proxy did not add itself.
        assert_eq!(sign_in("10.0.0.1", "203.0.113.1, 198.51.100.1").await, StatusCode::OK);
        assert_eq!(sign_in("10.0.0.1", "203.0.113.2, 198.51.100.1").await, StatusCode::OK);
        assert_eq!(sign_in("10.0.0.1", "198.51.100.1").await, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(sign_in("10.0.0.1", "198.51.100.2, 10.0.0.7").await, StatusCode::OK);
        // From anyone else the header is ignored: changing it does not
        // give an attacker a new bucket.
        assert_eq!(sign_in("192.0.2.1", "198.51.100.3").await, StatusCode::OK);
        assert_eq!(sign_in("192.0.2.1", "198.51.100.4").await, StatusCode::OK);
        assert_eq!(sign_in("192.0.2.1", "198.51.100.5").await, StatusCode::TOO_MANY_REQUESTS);

        // The audit log names the same client.
        let sources: Vec<String> = chain(app)
            .await
            .iter()
            .filter(|e| e.action == "auth.login")
            .filter_map(|e| e.source_ip.clone())
            .collect();
        assert_eq!(
            sources,
            ["198.51.100.1", "198.51.100.1", "198.51.100.2", "192.0.2.1", "192.0.2.1"]
        );
        app.stop().await;
    }
}
