//! The contract: what the OpenAPI document states beyond what the handlers'
//! attributes and types derive. Every rule the server checks and a schema can
//! express is stated here once, from the same constants the checks use:
//!
//! * problem responses, declared once under `components/responses` and
//!   referenced by every operation that can answer them (401 where a token is
//!   needed, 400/413/415 where a body is read, 404 where a path names
//!   something, 403 where a project role decides, 429/503 with `Retry-After`);
//! * the constraints of path, query and header parameters, by name;
//! * the constraints of request bodies (name patterns, lengths, label rules,
//!   the plan-dependent storage range, the ACL's CIDR format);
//! * `links` from the operations that create something to those that use it;
//! * the event stream's `text/event-stream` form.
//!
//! [`for_offering`] adds what only the running server knows (the PostgreSQL
//! versions it offers): `/openapi.json` serves that document. See
//! docs/api-contract.md.

use serde_json::{Map, Value, json};
use strata_core::acl::ACL_MAX;
use strata_core::instance::{
    LABEL_PART_MAX, LABELS_MAX, label_key_pattern, label_selector_pattern, label_value_pattern,
};
use strata_core::{InstanceName, PlanCatalog, ProjectName, Username, VersionCatalog};

use crate::extract::BODY_LIMIT;

/// Completes the document derived from the handlers.
pub(crate) fn complete(mut doc: Value) -> Value {
    problem_responses(&mut doc);
    for (path, method, op) in operations(&mut doc) {
        parameters(&path, op);
        problems(&path, op);
        links(&method, &path, op);
        headers(op);
    }
    schemas(&mut doc, &PlanCatalog::default());
    event_stream(&mut doc);
    doc
}

/// The document as one server serves it: the PostgreSQL versions it offers
/// become an enumeration, and `external_access` can only be false where the
/// runtime has no external endpoints.
pub fn for_offering(mut doc: Value, versions: &VersionCatalog, external_access: bool) -> Value {
    if let Some(version) = doc.pointer_mut("/components/schemas/CreateInstance/properties/version")
    {
        let mut values: Vec<Value> = versions.all().iter().map(|v| json!(v.version)).collect();
        values.push(Value::Null);
        version["enum"] = Value::Array(values);
    }
    if !external_access {
        for schema in ["CreateInstance", "UpdateInstance"] {
            if let Some(external) = doc.pointer_mut(&format!(
                "/components/schemas/{schema}/properties/external_access"
            )) {
                external["enum"] = json!([false, null]);
                external["description"] = json!(
                    "Not offered by this platform: instances are reachable at their endpoint only"
                );
            }
        }
    }
    doc
}

const PROBLEM_JSON: &str = "application/problem+json";

/// The problem responses, by status: (component name, description).
const PROBLEMS: &[(u16, &str, &str)] = &[
    (
        400,
        "BadRequest",
        "The request breaks a rule; `errors` names each field at fault",
    ),
    (
        401,
        "Unauthorized",
        "No valid bearer token (missing, expired, revoked or not Strata's)",
    ),
    (
        403,
        "Forbidden",
        "The caller's role in the project does not allow this",
    ),
    (
        404,
        "NotFound",
        "No such resource, or the caller may not see it (the same answer for both)",
    ),
    (
        409,
        "Conflict",
        "The request does not fit the resource as it is now; `errors` names the fields",
    ),
    (
        413,
        "PayloadTooLarge",
        "The body is larger than the API accepts",
    ),
    (
        415,
        "UnsupportedMediaType",
        "The body must be `application/json` (and a JSON object)",
    ),
    (
        422,
        "UnprocessableContent",
        "The request cannot be processed as sent",
    ),
    (
        429,
        "TooManyRequests",
        "Rate-limited: try again after `Retry-After` seconds",
    ),
    (
        503,
        "ServiceUnavailable",
        "Temporarily unable to serve this; try again after `Retry-After` seconds when given",
    ),
];

fn problem_content() -> Value {
    json!({ PROBLEM_JSON: { "schema": { "$ref": "#/components/schemas/Problem" } } })
}

fn retry_after(required: bool) -> Value {
    json!({
        "description": "Seconds to wait before trying again",
        "required": required,
        "schema": { "type": "integer", "minimum": 1 }
    })
}

/// Operations whose success carries a secret (a token, a password): their
/// answer must not be stored by any cache.
const NO_STORE: &[(&str, &str)] = &[
    ("signIn", "200"),
    ("refreshToken", "200"),
    ("createAccessToken", "201"),
    ("getCredentials", "200"),
    ("rotateCredentials", "200"),
];

/// Headers every answer carries (`X-Content-Type-Options: nosniff`), and
/// `Cache-Control: no-store` on those that carry a secret.
fn headers(op: &mut Value) {
    let id = op["operationId"].as_str().unwrap_or_default().to_owned();
    let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) else {
        return;
    };
    for (status, response) in responses.iter_mut() {
        if response.get("$ref").is_some() {
            continue;
        }
        // OpenAPI requires a description: the status's reason phrase at least.
        if response["description"].as_str().is_none_or(str::is_empty) {
            let reason = status
                .parse::<u16>()
                .ok()
                .and_then(|s| axum::http::StatusCode::from_u16(s).ok())
                .and_then(|s| s.canonical_reason());
            response["description"] = json!(reason.unwrap_or("Success"));
        }
        response["headers"]["X-Content-Type-Options"] =
            json!({ "$ref": "#/components/headers/NoSniff" });
        if NO_STORE.contains(&(id.as_str(), status.as_str())) {
            response["headers"]["Cache-Control"] =
                json!({ "$ref": "#/components/headers/NoStore" });
        }
    }
}

fn problem_responses(doc: &mut Value) {
    doc["components"]["headers"] = json!({
        "NoSniff": {
            "description": "Always `nosniff`: the body is what Content-Type says",
            "required": true,
            "schema": { "type": "string", "const": "nosniff" }
        },
        "NoStore": {
            "description": "Always `no-store`: the answer holds a secret no cache may keep",
            "required": true,
            "schema": { "type": "string", "const": "no-store" }
        }
    });
    let mut responses = Map::new();
    for &(status, name, description) in PROBLEMS {
        let mut r = json!({ "description": description, "content": problem_content() });
        r["headers"]["X-Content-Type-Options"] = json!({ "$ref": "#/components/headers/NoSniff" });
        match status {
            401 => {
                r["headers"]["WWW-Authenticate"] = json!({
                    "description": "`Bearer realm=\"strata\"`",
                    "schema": { "type": "string" }
                });
            }
            413 => {
                r["description"] = json!(format!("The body is larger than {BODY_LIMIT} bytes"));
            }
            429 => r["headers"]["Retry-After"] = retry_after(true),
            503 => r["headers"]["Retry-After"] = retry_after(false),
            _ => {}
        }
        responses.insert(name.to_owned(), r);
    }
    doc["components"]["responses"] = Value::Object(responses);
}

fn component_for(status: u16) -> Option<&'static str> {
    PROBLEMS
        .iter()
        .find(|(s, _, _)| *s == status)
        .map(|(_, name, _)| *name)
}

/// Every operation: its path, method and object.
fn operations(doc: &mut Value) -> Vec<(String, String, &mut Value)> {
    let mut ops = Vec::new();
    if let Some(paths) = doc["paths"].as_object_mut() {
        for (path, item) in paths.iter_mut() {
            if let Some(item) = item.as_object_mut() {
                for (method, op) in item.iter_mut() {
                    ops.push((path.clone(), method.clone(), op));
                }
            }
        }
    }
    ops
}

/// The statuses every operation of this shape can answer, besides its own.
fn implied_problems(path: &str, op: &Value) -> Vec<u16> {
    let secured = op.get("security").is_some();
    let params = op["parameters"].as_array().map_or(&[][..], Vec::as_slice);
    let has = |place: &str| params.iter().any(|p| p["in"] == place);
    let mut statuses = Vec::new();
    if secured {
        statuses.push(401);
    }
    if path.contains('{') {
        statuses.push(404);
    }
    if secured && path.contains("{project}") {
        statuses.push(403);
    }
    if op.get("requestBody").is_some() {
        statuses.extend([400, 413, 415]);
    }
    if has("query") || has("header") {
        statuses.push(400);
    }
    statuses
}

fn problems(path: &str, op: &mut Value) {
    let implied = implied_problems(path, op);
    let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) else {
        return;
    };
    for status in implied {
        if let Some(name) = component_for(status) {
            responses
                .entry(status.to_string())
                .or_insert_with(|| json!({ "$ref": format!("#/components/responses/{name}") }));
        }
    }
    // Declared with a description of their own: the problem body and headers
    // come from here.
    for (status, response) in responses.iter_mut() {
        let Ok(code) = status.parse::<u16>() else {
            continue;
        };
        if code < 400 || response.get("$ref").is_some() {
            continue;
        }
        let empty = response["description"].as_str().is_none_or(str::is_empty);
        match component_for(code) {
            Some(name) if empty => {
                *response = json!({ "$ref": format!("#/components/responses/{name}") });
            }
            _ => {
                response["content"] = problem_content();
                if code == 429 || code == 503 {
                    response["headers"]["Retry-After"] = retry_after(code == 429);
                }
            }
        }
    }
}

fn name_schema(pattern: &str, max: usize, what: &str) -> Value {
    json!({ "type": "string", "pattern": pattern, "minLength": 1, "maxLength": max, "description": what })
}

fn project_name() -> Value {
    name_schema(
        &ProjectName::pattern(),
        ProjectName::MAX_LEN,
        "A project name: a DNS label (lowercase letters, digits and '-', starting with a letter)",
    )
}

fn instance_name() -> Value {
    name_schema(
        &InstanceName::pattern(),
        InstanceName::MAX_LEN,
        "An instance name: a DNS label of at most 40 characters",
    )
}

fn username() -> Value {
    name_schema(
        &Username::pattern(),
        Username::MAX_LEN,
        "A user name: a DNS label",
    )
}

/// What `page_token` is on each list: the position after the last item of
/// the previous page (opaque to clients; its form is stated so that a
/// request can be checked).
fn page_token(path: &str) -> Value {
    let mut schema = match path {
        "/v1/projects/{project}/instances" => instance_name(),
        "/v1/projects/{project}/audit-events" => {
            json!({ "type": "string", "pattern": "^[1-9][0-9]{0,17}$" })
        }
        _ => json!({ "type": "string", "format": "uuid" }),
    };
    schema["description"] = json!("The previous page's `next_page_token`");
    schema
}

fn parameters(path: &str, op: &mut Value) {
    let Some(params) = op.get_mut("parameters").and_then(Value::as_array_mut) else {
        return;
    };
    for p in params {
        let schema = match (
            p["in"].as_str().unwrap_or(""),
            p["name"].as_str().unwrap_or(""),
        ) {
            ("path", "project") => project_name(),
            ("path", "name") => instance_name(),
            ("path", "user" | "username") => username(),
            ("query", "page_size") => {
                json!({ "type": "integer", "format": "int32", "minimum": 1, "maximum": 500, "default": 100 })
            }
            ("query", "page_token") => page_token(path),
            ("query", "label") => {
                p["style"] = json!("form");
                p["explode"] = json!(true);
                json!({ "type": "array", "items": {
                    "type": "string",
                    "pattern": label_selector_pattern(),
                    "maxLength": 2 * LABEL_PART_MAX + 1,
                }})
            }
            ("query", "after") => json!({ "type": "string", "format": "uuid" }),
            ("query", "since" | "until") => json!({ "type": "string", "format": "date-time" }),
            ("header", "Idempotency-Key") => {
                json!({ "type": "string", "pattern": "^[!-~]{1,255}$" })
            }
            _ => continue,
        };
        p["schema"] = schema;
    }
}

/// Sets `schema` on the property `prop` of component `component`.
fn set(doc: &mut Value, component: &str, prop: &str, schema: Value) {
    let Some(at) = doc.pointer_mut(&format!(
        "/components/schemas/{component}/properties/{prop}"
    )) else {
        debug_assert!(false, "no property {prop} in {component}");
        return;
    };
    let nullable = at["type"]
        .as_array()
        .is_some_and(|t| t.iter().any(|t| t == "null"));
    let description = at.get("description").cloned();
    *at = schema;
    if let Some(d) = description {
        at["description"] = d;
    }
    if nullable {
        let ty = at["type"].clone();
        at["type"] = json!([ty, "null"]);
        if let Some(values) = at.get_mut("enum").and_then(Value::as_array_mut) {
            values.push(Value::Null);
        }
    }
}

fn acl_schema() -> Value {
    json!({
        "type": "array",
        "maxItems": ACL_MAX,
        "items": {
            "type": "string",
            "format": "cidr",
            "maxLength": 49,
            "description": "An IPv4 or IPv6 network in CIDR notation with the host bits zero \
                            (`10.0.0.0/8`, `2001:db8::/32`), or one address (taken as /32 or /128)",
            "example": "10.0.0.0/8"
        }
    })
}

fn labels_schema() -> Value {
    json!({
        "type": "object",
        "maxProperties": LABELS_MAX,
        "propertyNames": { "pattern": label_key_pattern(), "maxLength": LABEL_PART_MAX },
        "additionalProperties": {
            "type": "string", "pattern": label_value_pattern(), "maxLength": LABEL_PART_MAX
        }
    })
}

/// `storage_gb` within the plan's range: per plan, and the default plan's
/// range when the request names none.
fn storage_by_plan(plans: &PlanCatalog, create: bool) -> Vec<Value> {
    let range = |p: &strata_core::Plan| {
        json!({ "properties": { "storage_gb": {
            "minimum": p.storage_gb_min, "maximum": p.storage_gb_max
        }}})
    };
    let mut rules: Vec<Value> = plans
        .all()
        .iter()
        .map(|p| {
            let mut when =
                json!({ "properties": { "plan": { "const": p.id } }, "required": ["plan"] });
            if !create {
                // A change checks the pair only when both are sent; alone,
                // each is checked against the instance as it is (409).
                when["properties"]["storage_gb"] = json!({ "type": "integer" });
                when["required"] = json!(["plan", "storage_gb"]);
            }
            json!({ "if": when, "then": range(p) })
        })
        .collect();
    if create {
        let default = plans.default_plan();
        rules.push(json!({
            "if": { "anyOf": [
                { "not": { "required": ["plan"] } },
                { "properties": { "plan": { "type": "null" } }, "required": ["plan"] }
            ]},
            "then": range(default)
        }));
    }
    rules
}

fn schemas(doc: &mut Value, plans: &PlanCatalog) {
    let plan_ids: Vec<Value> = plans.all().iter().map(|p| json!(p.id)).collect();
    let (min, max) = plans.storage_gb_bounds();
    for (component, create) in [("CreateInstance", true), ("UpdateInstance", false)] {
        if create {
            set(doc, component, "name", instance_name());
            set(
                doc,
                component,
                "version",
                json!({ "type": "string", "description": "PostgreSQL major version, one of `GET /v1/versions`" }),
            );
        }
        set(
            doc,
            component,
            "plan",
            json!({ "type": "string", "enum": plan_ids }),
        );
        set(
            doc,
            component,
            "storage_gb",
            json!({ "type": "integer", "format": "int32", "minimum": min, "maximum": max }),
        );
        set(doc, component, "acl", acl_schema());
        set(doc, component, "labels", labels_schema());
        let mut rules = storage_by_plan(plans, create);
        // An external endpoint admits only the ACL's networks: with both in
        // one request, the ACL must name at least one.
        let when = json!({
            "properties": { "external_access": { "const": true }, "acl": { "type": "array" } },
            "required": ["external_access", "acl"]
        });
        rules.push(json!({ "if": when, "then": { "properties": { "acl": { "minItems": 1 } } } }));
        if let Some(schema) = doc.pointer_mut(&format!("/components/schemas/{component}")) {
            schema["allOf"] = Value::Array(rules);
        }
    }
    set(doc, "CreateProject", "name", project_name());
    set(doc, "CreateUser", "username", username());
    set(
        doc,
        "CreateUser",
        "password",
        json!({ "type": "string", "minLength": 12, "maxLength": 1024, "format": "password" }),
    );
    set(doc, "AddMember", "user", username());
    set(
        doc,
        "CreateToken",
        "name",
        json!({ "type": "string", "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f]{1,100}$", "minLength": 1, "maxLength": 100 }),
    );
    set(doc, "CreateToken", "project", project_name());
    set(
        doc,
        "CreateToken",
        "expires_in_days",
        json!({ "type": "integer", "format": "int32", "minimum": 1, "maximum": 365, "default": 90 }),
    );
    set(
        doc,
        "TokenRequest",
        "username",
        json!({ "type": "string", "minLength": 1, "maxLength": 256 }),
    );
    set(
        doc,
        "TokenRequest",
        "password",
        json!({ "type": "string", "maxLength": 1024, "format": "password" }),
    );
}

/// What an operation's success yields for others: method, path and status of
/// the response, then each link's name, target operation and parameters.
type LinkRule = (
    &'static str,
    &'static str,
    &'static str,
    &'static [(
        &'static str,
        &'static str,
        &'static [(&'static str, &'static str)],
    )],
);

const PROJECT_FROM_BODY: (&str, &str) = ("project", "$response.body#/name");
const INSTANCE: &[(&str, &str)] = &[
    ("project", "$request.path.project"),
    ("name", "$response.body#/name"),
];

const LINKS: &[LinkRule] = &[
    (
        "post",
        "/v1/projects",
        "201",
        &[
            ("ListInstances", "listInstances", &[PROJECT_FROM_BODY]),
            ("CreateInstance", "createInstance", &[PROJECT_FROM_BODY]),
            ("ListMembers", "listMembers", &[PROJECT_FROM_BODY]),
            // No link to addMember: its body names a user the link cannot
            // supply, and a made-up user is (rightly) 404.
            ("ListAuditEvents", "listAuditEvents", &[PROJECT_FROM_BODY]),
        ],
    ),
    (
        "post",
        "/v1/projects/{project}/instances",
        "202",
        &[
            ("GetInstance", "getInstance", INSTANCE),
            ("UpdateInstance", "updateInstance", INSTANCE),
            ("DeleteInstance", "deleteInstance", INSTANCE),
            ("GetCredentials", "getCredentials", INSTANCE),
            ("RotateCredentials", "rotateCredentials", INSTANCE),
            ("ListEvents", "listEvents", INSTANCE),
        ],
    ),
    (
        "post",
        "/v1/projects/{project}/members",
        "201",
        &[(
            "RemoveMember",
            "removeMember",
            &[
                ("project", "$request.path.project"),
                ("user", "$response.body#/user"),
            ],
        )],
    ),
    (
        "post",
        "/v1/users",
        "201",
        &[(
            "DeleteUser",
            "deleteUser",
            &[("username", "$response.body#/username")],
        )],
    ),
    (
        "post",
        "/v1/tokens",
        "201",
        &[(
            "RevokeAccessToken",
            "revokeAccessToken",
            &[("id", "$response.body#/id")],
        )],
    ),
];

fn links(method: &str, path: &str, op: &mut Value) {
    for &(m, p, status, links) in LINKS {
        if m != method || p != path {
            continue;
        }
        let Some(response) = op.pointer_mut(&format!("/responses/{status}")) else {
            continue;
        };
        for &(name, operation_id, params) in links {
            let parameters: Map<String, Value> = params
                .iter()
                .map(|(k, v)| ((*k).to_owned(), json!(v)))
                .collect();
            response["links"][name] =
                json!({ "operationId": operation_id, "parameters": parameters });
        }
    }
}

/// The service log also answers as a Server-Sent Events stream.
fn event_stream(doc: &mut Value) {
    let Some(op) =
        doc.pointer_mut("/paths/~1v1~1projects~1{project}~1instances~1{name}~1events/get")
    else {
        return;
    };
    op["responses"]["200"]["content"]["text/event-stream"] = json!({
        "schema": {
            "type": "object",
            "description": "One Server-Sent Event per service event; a comment line every few \
                            seconds keeps the stream open",
            "required": ["id", "event", "data"],
            "properties": {
                "id": { "type": "string", "format": "uuid", "description": "The event id (send as Last-Event-ID to resume)" },
                "event": { "$ref": "#/components/schemas/EventKind" },
                "data": {
                    "type": "string",
                    "contentMediaType": "application/json",
                    "contentSchema": { "$ref": "#/components/schemas/ServiceEvent" },
                    "description": "The ServiceEvent as JSON"
                }
            }
        }
    });
    if let Some(params) = op.get_mut("parameters").and_then(Value::as_array_mut) {
        params.push(json!({
            "name": "Last-Event-ID",
            "in": "header",
            "required": false,
            "description": "Resume after this event id (what browsers send on reconnecting); `after` wins when both are given",
            "schema": { "type": "string", "format": "uuid" }
        }));
    }
}
