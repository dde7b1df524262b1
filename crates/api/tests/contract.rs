//! The OpenAPI document and the server agree: for every bound the document
//! states, a value just inside it is valid by the document's schema and not
//! refused by the server as bad input, and a value just outside it is
//! invalid by the schema and answered 400 naming the field. The document is
//! the one the server serves (`/openapi.json`), checked with a JSON Schema
//! validator; the server is the real router on a real store and the real
//! local runtime (instances created here really start).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::{Value, json};
use strata_store::Backend;

/// A value at a bound: where it goes, and what the server must answer.
struct Probe {
    /// What is probed, for messages.
    what: String,
    method: &'static str,
    uri: String,
    body: Option<Value>,
    header: Option<(&'static str, String)>,
    /// The schema the value is checked against, and the value as the schema sees it.
    schema: Value,
    instance: Value,
    /// The field a 400 must name.
    field: &'static str,
}

fn validator(doc: &Value, schema: &Value) -> jsonschema::Validator {
    let mut root = schema.clone();
    root["components"] = doc["components"].clone();
    jsonschema::options()
        .should_validate_formats(true)
        .build(&root)
        .unwrap()
}

fn component(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn parameter(doc: &Value, operation_id: &str, name: &str) -> Value {
    for item in doc["paths"].as_object().unwrap().values() {
        for op in item.as_object().unwrap().values() {
            if op["operationId"] == operation_id {
                for p in op["parameters"].as_array().unwrap() {
                    if p["name"] == name {
                        return p["schema"].clone();
                    }
                }
            }
        }
    }
    panic!("{operation_id} has no parameter {name}")
}

async fn send(app: &common::App, p: &Probe) -> common::Res {
    let mut req = Request::builder()
        .method(p.method)
        .uri(&p.uri)
        .header(header::AUTHORIZATION, format!("Bearer {}", app.admin_token));
    if let Some((name, value)) = &p.header {
        req = req.header(*name, value);
    }
    let req = match &p.body {
        Some(b) => req
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(b.to_string())),
        None => req.body(Body::empty()),
    };
    app.send(req.unwrap()).await
}

/// A body probe: `body` sent to `uri`, checked against component `schema`.
fn body(
    what: &str,
    method: &'static str,
    uri: &str,
    schema: &str,
    field: &'static str,
    body: Value,
) -> Probe {
    Probe {
        what: what.to_owned(),
        method,
        uri: uri.to_owned(),
        instance: body.clone(),
        body: Some(body),
        header: None,
        schema: component(schema),
        field,
    }
}

/// A query probe: `uri` with `name=value`, checked against the parameter's schema.
fn query(doc: &Value, operation_id: &str, uri: &str, name: &'static str, value: &str) -> Probe {
    let schema = parameter(doc, operation_id, name);
    let instance = if schema["type"] == "array" {
        json!([value])
    } else if schema["type"] == "integer" {
        value.parse::<i64>().map_or(json!(value), |n| json!(n))
    } else {
        json!(value)
    };
    let encoded: String = form_urlencoded::byte_serialize(value.as_bytes()).collect();
    Probe {
        what: format!("{operation_id} ?{name}={value}"),
        method: "GET",
        uri: format!("{uri}?{name}={encoded}"),
        body: None,
        header: None,
        schema,
        instance,
        field: name,
    }
}

fn labels(n: usize) -> Value {
    (0..n).map(|i| (format!("k{i}"), json!("v"))).collect()
}

fn acl(n: usize) -> Value {
    (0..n).map(|i| json!(format!("10.0.{i}.0/24"))).collect()
}

/// Pairs of (just inside, just outside) for every bound the document states.
fn pairs(doc: &Value) -> Vec<(Probe, Probe)> {
    let instances = "/v1/projects/contract/instances";
    let create = |what: &str, name: &str, extra: Value| {
        let mut b = json!({ "name": name, "plan": "micro" });
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        body(what, "POST", instances, "CreateInstance", "", b)
    };
    let field = |mut p: Probe, f: &'static str| {
        p.field = f;
        p
    };
    let long = |c: char, n: usize| std::iter::repeat_n(c, n).collect::<String>();
    let name_of = |n: usize| format!("a{}", long('b', n - 1));
    let token = |name: String, days: u32| json!({ "name": name, "project": "contract", "role": "viewer", "expires_in_days": days });
    let sign_in =
        |username: String, password: String| json!({ "username": username, "password": password });
    let mut pairs = vec![
        (
            body(
                "project name, 63 characters",
                "POST",
                "/v1/projects",
                "CreateProject",
                "name",
                json!({ "name": name_of(63) }),
            ),
            body(
                "project name, 64 characters",
                "POST",
                "/v1/projects",
                "CreateProject",
                "name",
                json!({ "name": name_of(64) }),
            ),
        ),
        (
            body(
                "project name, letter first",
                "POST",
                "/v1/projects",
                "CreateProject",
                "name",
                json!({ "name": "p1" }),
            ),
            body(
                "project name, digit first",
                "POST",
                "/v1/projects",
                "CreateProject",
                "name",
                json!({ "name": "1p" }),
            ),
        ),
        (
            body(
                "user name with '-'",
                "POST",
                "/v1/users",
                "CreateUser",
                "username",
                json!({ "username": "u-1", "password": long('x', 12) }),
            ),
            body(
                "user name with '_'",
                "POST",
                "/v1/users",
                "CreateUser",
                "username",
                json!({ "username": "u_1", "password": long('x', 12) }),
            ),
        ),
        (
            body(
                "password, 12 characters",
                "POST",
                "/v1/users",
                "CreateUser",
                "password",
                json!({ "username": "u-2", "password": long('é', 12) }),
            ),
            body(
                "password, 11 characters",
                "POST",
                "/v1/users",
                "CreateUser",
                "password",
                json!({ "username": "u-3", "password": long('é', 11) }),
            ),
        ),
        (
            field(
                create("instance name, 40 characters", &name_of(40), json!({})),
                "name",
            ),
            field(
                create("instance name, 41 characters", &name_of(41), json!({})),
                "name",
            ),
        ),
        (
            field(
                create(
                    "micro at its largest",
                    "micro-10",
                    json!({ "storage_gb": 10 }),
                ),
                "storage_gb",
            ),
            field(
                create(
                    "micro above its largest",
                    "micro-11",
                    json!({ "storage_gb": 11 }),
                ),
                "storage_gb",
            ),
        ),
        (
            field(
                create(
                    "small at its smallest",
                    "small-5",
                    json!({ "plan": "small", "storage_gb": 5 }),
                ),
                "storage_gb",
            ),
            field(
                create(
                    "small below its smallest",
                    "small-4",
                    json!({ "plan": "small", "storage_gb": 4 }),
                ),
                "storage_gb",
            ),
        ),
        (
            field(
                create("32 labels", "labels-32", json!({ "labels": labels(32) })),
                "labels",
            ),
            field(
                create("33 labels", "labels-33", json!({ "labels": labels(33) })),
                "labels",
            ),
        ),
        (
            field(
                create(
                    "label key, 63 characters",
                    "key-63",
                    json!({ "labels": { name_of(63): "v" } }),
                ),
                "labels",
            ),
            field(
                create(
                    "label key, 64 characters",
                    "key-64",
                    json!({ "labels": { name_of(64): "v" } }),
                ),
                "labels",
            ),
        ),
        (
            field(
                create(
                    "empty label value",
                    "value-empty",
                    json!({ "labels": { "team": "" } }),
                ),
                "labels",
            ),
            field(
                create(
                    "label value starting with '-'",
                    "value-dash",
                    json!({ "labels": { "team": "-a" } }),
                ),
                "labels",
            ),
        ),
        (
            field(
                create("64 ACL entries", "acl-64", json!({ "acl": acl(64) })),
                "acl",
            ),
            field(
                create("65 ACL entries", "acl-65", json!({ "acl": acl(65) })),
                "acl",
            ),
        ),
        (
            field(
                create(
                    "no external endpoint",
                    "external-off",
                    json!({ "external_access": false, "acl": [] }),
                ),
                "external_access",
            ),
            field(
                create(
                    "an external endpoint with an empty ACL",
                    "external-on",
                    json!({ "external_access": true, "acl": [] }),
                ),
                "external_access",
            ),
        ),
        (
            body(
                "a change to small at 5 GiB",
                "PATCH",
                &format!("{instances}/orders"),
                "UpdateInstance",
                "storage_gb",
                json!({ "plan": "small", "storage_gb": 5 }),
            ),
            body(
                "a change to small at 4 GiB",
                "PATCH",
                &format!("{instances}/orders"),
                "UpdateInstance",
                "storage_gb",
                json!({ "plan": "small", "storage_gb": 4 }),
            ),
        ),
        (
            body(
                "a size the plan allows",
                "PATCH",
                &format!("{instances}/orders"),
                "UpdateInstance",
                "storage_gb",
                json!({ "storage_gb": 6 }),
            ),
            body(
                "a size no plan allows",
                "PATCH",
                &format!("{instances}/orders"),
                "UpdateInstance",
                "storage_gb",
                json!({ "storage_gb": 0 }),
            ),
        ),
        (
            body(
                "token name, 100 characters",
                "POST",
                "/v1/tokens",
                "CreateToken",
                "name",
                token(long('n', 100), 90),
            ),
            body(
                "token name, 101 characters",
                "POST",
                "/v1/tokens",
                "CreateToken",
                "name",
                token(long('n', 101), 90),
            ),
        ),
        (
            body(
                "token name without control characters",
                "POST",
                "/v1/tokens",
                "CreateToken",
                "name",
                token("ci deploy".into(), 90),
            ),
            body(
                "token name with a control character",
                "POST",
                "/v1/tokens",
                "CreateToken",
                "name",
                token("ci\u{7}deploy".into(), 90),
            ),
        ),
        (
            body(
                "a token for 365 days",
                "POST",
                "/v1/tokens",
                "CreateToken",
                "expires_in_days",
                token("year".into(), 365),
            ),
            body(
                "a token for 366 days",
                "POST",
                "/v1/tokens",
                "CreateToken",
                "expires_in_days",
                token("leap".into(), 366),
            ),
        ),
        (
            body(
                "a token for 1 day",
                "POST",
                "/v1/tokens",
                "CreateToken",
                "expires_in_days",
                token("day".into(), 1),
            ),
            body(
                "a token for 0 days",
                "POST",
                "/v1/tokens",
                "CreateToken",
                "expires_in_days",
                token("none".into(), 0),
            ),
        ),
        (
            body(
                "sign-in name, 256 characters",
                "POST",
                "/v1/auth/token",
                "TokenRequest",
                "username",
                sign_in(long('ü', 256), "x".into()),
            ),
            body(
                "sign-in name, 257 characters",
                "POST",
                "/v1/auth/token",
                "TokenRequest",
                "username",
                sign_in(long('ü', 257), "x".into()),
            ),
        ),
        (
            body(
                "sign-in password, 1024 characters",
                "POST",
                "/v1/auth/token",
                "TokenRequest",
                "password",
                sign_in("nobody".into(), long('ü', 1024)),
            ),
            body(
                "sign-in password, 1025 characters",
                "POST",
                "/v1/auth/token",
                "TokenRequest",
                "password",
                sign_in("nobody".into(), long('ü', 1025)),
            ),
        ),
        (
            query(doc, "listInstances", instances, "page_size", "500"),
            query(doc, "listInstances", instances, "page_size", "501"),
        ),
        (
            query(doc, "listInstances", instances, "page_size", "1"),
            query(doc, "listInstances", instances, "page_size", "0"),
        ),
        (
            query(doc, "listInstances", instances, "page_token", "orders"),
            query(doc, "listInstances", instances, "page_token", "Orders"),
        ),
        (
            query(doc, "listInstances", instances, "label", "team="),
            query(doc, "listInstances", instances, "label", "=team"),
        ),
        (
            query(
                doc,
                "listAuditEvents",
                "/v1/projects/contract/audit-events",
                "page_token",
                "12",
            ),
            query(
                doc,
                "listAuditEvents",
                "/v1/projects/contract/audit-events",
                "page_token",
                "012",
            ),
        ),
        (
            query(
                doc,
                "listAuditEvents",
                "/v1/projects/contract/audit-events",
                "since",
                "2026-01-01T00:00:00Z",
            ),
            query(
                doc,
                "listAuditEvents",
                "/v1/projects/contract/audit-events",
                "since",
                "2026-01-01",
            ),
        ),
        (
            query(
                doc,
                "listEvents",
                &format!("{instances}/orders/events"),
                "after",
                "01a236ec-ae09-70c7-82dc-e1acaddc7792",
            ),
            query(
                doc,
                "listEvents",
                &format!("{instances}/orders/events"),
                "after",
                "01a236ec",
            ),
        ),
    ];
    // The Idempotency-Key header: 255 visible characters, and one more.
    let key_schema = parameter(doc, "createInstance", "Idempotency-Key");
    let keyed = |name: &str, key: String| Probe {
        what: format!("Idempotency-Key of {} characters", key.len()),
        method: "POST",
        uri: instances.to_owned(),
        body: Some(json!({ "name": name })),
        header: Some(("idempotency-key", key.clone())),
        schema: key_schema.clone(),
        instance: json!(key),
        field: "Idempotency-Key",
    };
    pairs.push((
        keyed("keyed-255", long('k', 255)),
        keyed("keyed-256", long('k', 256)),
    ));
    pairs
}

#[tokio::test]
async fn the_document_and_the_server_agree_on_every_bound() {
    let app = common::app(Backend::Sqlite, |a| a).await;
    app.project("contract").await;
    let token = app.admin_token.clone();
    let r = app
        .call(
            "POST",
            "/v1/projects/contract/instances",
            Some(&token),
            Some(&json!({ "name": "orders", "plan": "micro", "storage_gb": 1 })),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    // Changes are refused (409) while it provisions: wait until it serves.
    for _ in 0..600 {
        let r = app
            .get("/v1/projects/contract/instances/orders", &token)
            .await;
        if r.body["status"]["phase"] == "Ready" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let doc = app.get("/openapi.json", &token).await.body;
    assert_eq!(doc["openapi"], "3.1.0");

    let mut failures = Vec::new();
    for (inside, outside) in pairs(&doc) {
        for (p, valid) in [(&inside, true), (&outside, false)] {
            let by_schema = validator(&doc, &p.schema).is_valid(&p.instance);
            if by_schema != valid {
                failures.push(format!(
                    "{}: the document says {}",
                    p.what,
                    if by_schema { "valid" } else { "invalid" }
                ));
            }
            let res = send(&app, p).await;
            if valid {
                if matches!(res.status.as_u16(), 400 | 413 | 415 | 422) {
                    failures.push(format!("{}: the server refused it: {}", p.what, res.body));
                }
            } else if res.status != StatusCode::BAD_REQUEST
                || !res.body["errors"].as_array().is_some_and(|e| {
                    e.iter()
                        .any(|e| e["field"].as_str().is_some_and(|f| f.starts_with(p.field)))
                })
            {
                failures.push(format!(
                    "{}: expected 400 naming {}, got {} {}",
                    p.what, p.field, res.status, res.body
                ));
            }
        }
    }
    app.stop().await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_operation_has_a_unique_id_and_every_problem_is_declared_once() {
    let doc = strata_api::openapi();
    let mut ids = std::collections::BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let id = op["operationId"].as_str().unwrap_or_default();
            assert!(
                ids.insert(id.to_owned()),
                "{method} {path}: operationId {id:?} again"
            );
            for (status, response) in op["responses"].as_object().unwrap() {
                if status.starts_with('4') || status.starts_with('5') {
                    let problem = response.get("$ref").is_some()
                        || response["content"]["application/problem+json"]["schema"]["$ref"]
                            == "#/components/schemas/Problem";
                    assert!(problem, "{method} {path} {status}: not a problem response");
                }
            }
            if op.get("security").is_some() {
                assert!(
                    op["responses"].get("401").is_some(),
                    "{method} {path}: no 401"
                );
            }
            if op.get("requestBody").is_some() {
                for status in ["400", "413", "415"] {
                    assert!(
                        op["responses"].get(status).is_some(),
                        "{method} {path}: no {status}"
                    );
                }
            }
        }
    }
    let created = &doc["paths"]["/v1/projects/{project}/instances"]["post"]["responses"]["202"];
    assert_eq!(
        created["links"]["GetInstance"]["operationId"],
        "getInstance"
    );
    let events = &doc["paths"]["/v1/projects/{project}/instances/{name}/events"]["get"];
    assert!(events["responses"]["200"]["content"]["text/event-stream"].is_object());
}
