//! The `PostgresInstance` custom resource (`strata.dev/v1alpha1`), generated
//! from these Rust types. `crd_yaml()` is what `strata crd` prints and what is
//! committed under `deploy/crds/`.

use kube::{CustomResource, CustomResourceExt};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use strata_core::PlanCatalog;
use strata_core::names::INSTANCE_NAME_MAX;

/// API group of every Strata resource.
pub const GROUP: &str = "strata.dev";
/// The finalizer the operator puts on every instance it reconciles.
pub const FINALIZER: &str = "strata.dev/cleanup";
/// Change this annotation (to any new value) to rotate the credentials.
pub const ROTATE_ANNOTATION: &str = "strata.dev/rotate-credentials";
/// PostgreSQL major versions the operator runs on Kubernetes.
pub const SUPPORTED_VERSIONS: &[&str] = &["14", "15", "16", "17"];
/// Port PostgreSQL listens on, in the pod and on the client Service.
pub const POSTGRES_PORT: u16 = 5432;

/// What a tenant asks for: one PostgreSQL server.
#[derive(CustomResource, Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "strata.dev",
    version = "v1alpha1",
    kind = "PostgresInstance",
    plural = "postgresinstances",
    shortname = "pgi",
    category = "strata",
    namespaced,
    status = "PostgresInstanceStatus",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Version","type":"string","jsonPath":".spec.version"}"#,
    printcolumn = r#"{"name":"Plan","type":"string","jsonPath":".spec.plan"}"#,
    printcolumn = r#"{"name":"Storage","type":"integer","description":"GiB","jsonPath":".spec.storageGb"}"#,
    printcolumn = r#"{"name":"Endpoint","type":"string","jsonPath":".status.endpoint.host"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct PostgresInstanceSpec {
    /// PostgreSQL major version.
    #[schemars(schema_with = "version_schema")]
    pub version: String,
    /// Plan id: CPU, memory, connection limit and storage range.
    #[schemars(schema_with = "plan_schema")]
    pub plan: String,
    /// Size of the data volume in GiB; must lie in the plan's range and can only grow.
    #[schemars(schema_with = "storage_schema")]
    pub storage_gb: u32,
    /// CIDR blocks allowed to connect (pg_hba.conf and the NetworkPolicy). Empty: nobody.
    #[serde(default)]
    #[schemars(schema_with = "acl_schema")]
    pub acl: Vec<String>,
    /// PostgreSQL container image; default `postgres:<version>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// StorageClass of the data volume; default: the cluster's default class.
    /// Immutable: set at creation or never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
    /// Also reachable from outside the cluster: a LoadBalancer Service
    /// `<name>-external` that admits only the ACL's networks
    /// (loadBalancerSourceRanges; pg_hba.conf checks them too). Needs at
    /// least one ACL entry.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub external_access: bool,
}

/// What the operator observed and did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PostgresInstanceStatus {
    /// Provisioning, Ready, Updating, Failed or Deleting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Human-readable summary of the phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, Progressing, Degraded, Reconciled, StorageResized and
    /// CredentialsApplied.
    #[serde(default)]
    pub conditions: Vec<StatusCondition>,
    /// Where clients connect once the instance is Ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<EndpointStatus>,
    /// Where clients outside the cluster connect (with `externalAccess`),
    /// once the load balancer has an address and the instance is Ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_endpoint: Option<EndpointStatus>,
    /// Name of the Secret holding username, password and database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<String>,
}

/// One condition, in the shape of Kubernetes' `metav1.Condition`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusCondition {
    #[serde(rename = "type")]
    pub type_: String,
    /// True, False or Unknown.
    pub status: String,
    pub reason: String,
    pub message: String,
    /// RFC 3339 time of the last change of `status`.
    pub last_transition_time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Host and port of the client Service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct EndpointStatus {
    pub host: String,
    pub port: u16,
}

fn version_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "enum": SUPPORTED_VERSIONS,
    })
}

fn plan_schema(_: &mut SchemaGenerator) -> Schema {
    let ids: Vec<String> = PlanCatalog::default()
        .all()
        .iter()
        .map(|p| p.id.clone())
        .collect();
    json_schema!({ "type": "string", "enum": ids })
}

fn storage_schema(_: &mut SchemaGenerator) -> Schema {
    let catalog = PlanCatalog::default();
    let (min, max) = catalog.storage_gb_bounds();
    json_schema!({ "type": "integer", "format": "int32", "minimum": min, "maximum": max })
}

/// An IPv4 or IPv6 CIDR block; the apiserver's CEL `cidr()` also rejects host bits.
pub const CIDR_PATTERN: &str = r"^(((25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])/(3[0-2]|[12]?[0-9])|[0-9a-fA-F:.]*:[0-9a-fA-F:.]*/(12[0-8]|1[01][0-9]|[1-9]?[0-9]))$";

fn acl_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "maxItems": strata_core::acl::ACL_MAX,
        "items": {
            "type": "string",
            "maxLength": 43,
            "pattern": CIDR_PATTERN,
            "x-kubernetes-validations": [{
                "rule": "isCIDR(self) && cidr(self).masked() == cidr(self)",
                "message": "must be a CIDR block without host bits, such as 10.0.0.0/8",
            }],
        },
    })
}

/// CEL rules that the OpenAPI schema alone cannot say.
fn root_rules() -> Value {
    json!([{
        "rule": format!(
            "self.metadata.name.size() <= {INSTANCE_NAME_MAX} && self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')"
        ),
        "message": format!(
            "metadata.name must be at most {INSTANCE_NAME_MAX} characters: lowercase letters, digits and '-', starting with a letter and ending with a letter or digit"
        ),
    }])
}

fn spec_rules() -> Value {
    let mut rules: Vec<Value> = PlanCatalog::default()
        .all()
        .iter()
        .map(|p| {
            json!({
                "rule": format!(
                    "self.plan != '{id}' || (self.storageGb >= {min} && self.storageGb <= {max})",
                    id = p.id, min = p.storage_gb_min, max = p.storage_gb_max
                ),
                "message": format!(
                    "plan {} needs storageGb between {} and {}",
                    p.id, p.storage_gb_min, p.storage_gb_max
                ),
            })
        })
        .collect();
    rules.push(json!({
        "rule": "self.storageGb >= oldSelf.storageGb",
        "message": "storageGb can only grow",
        "fieldPath": ".storageGb",
        "reason": "FieldValueInvalid",
    }));
    rules.push(json!({
        "rule": "self.version == oldSelf.version",
        "message": "version cannot be changed in place",
        "fieldPath": ".version",
        "reason": "FieldValueForbidden",
    }));
    // The StatefulSet's claim template is immutable, so another class could
    // never be applied; setting or removing one is a change too.
    rules.push(json!({
        "rule": "has(self.storageClass) == has(oldSelf.storageClass) && (!has(self.storageClass) || self.storageClass == oldSelf.storageClass)",
        "message": "storageClass cannot be changed after creation: the data volume keeps the class it was created with",
        "fieldPath": ".storageClass",
        "reason": "FieldValueForbidden",
    }));
    rules.push(json!({
        "rule": "!(has(self.externalAccess) && self.externalAccess) || (has(self.acl) && self.acl.size() > 0)",
        "message": "externalAccess needs at least one acl entry: the external endpoint admits only the ACL's networks",
        "fieldPath": ".externalAccess",
        "reason": "FieldValueInvalid",
    }));
    Value::Array(rules)
}

/// The CRD object, with the CEL rules added to the generated schema.
pub fn crd()
-> k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition {
    let mut crd = PostgresInstance::crd();
    for version in &mut crd.spec.versions {
        let Some(schema) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        else {
            continue;
        };
        // Round-trip through JSON: the typed JSONSchemaProps has no field for
        // every extension, and this keeps the edit in one place.
        let Ok(mut value) = serde_json::to_value(&*schema) else {
            continue;
        };
        value["x-kubernetes-validations"] = root_rules();
        value["properties"]["spec"]["x-kubernetes-validations"] = spec_rules();
        if let Ok(patched) = serde_json::from_value(value) {
            *schema = patched;
        }
    }
    crd
}

/// The CRD as YAML, exactly as committed in `deploy/crds/`.
pub fn crd_yaml() -> String {
    let body = serde_yaml::to_string(&crd()).unwrap_or_default();
    format!("# Generated by `strata crd` from crates/kube/src/crd.rs. Do not edit.\n{body}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMMITTED: &str = include_str!("../../../deploy/crds/postgresinstances.strata.dev.yaml");

    #[test]
    fn committed_crd_matches_the_code() {
        assert!(
            COMMITTED == crd_yaml(),
            "deploy/crds/postgresinstances.strata.dev.yaml is stale: regenerate it with \
             `cargo run -p strata-kube --example crd > deploy/crds/postgresinstances.strata.dev.yaml` \
             (or `strata crd`)"
        );
    }

    #[test]
    fn crd_has_status_subresource_and_columns() {
        let crd = crd();
        assert_eq!(
            crd.metadata.name.as_deref(),
            Some("postgresinstances.strata.dev")
        );
        assert_eq!(crd.spec.scope, "Namespaced");
        let v = &crd.spec.versions[0];
        assert_eq!(v.name, "v1alpha1");
        assert!(
            v.subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some()
        );
        let columns: Vec<_> = v
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(
            columns,
            ["Phase", "Version", "Plan", "Storage", "Endpoint", "Age"]
        );
    }

    #[test]
    fn schema_constrains_version_plan_storage_and_acl() {
        let crd = crd();
        let schema = serde_json::to_value(
            crd.spec.versions[0]
                .schema
                .as_ref()
                .unwrap()
                .open_api_v3_schema
                .as_ref()
                .unwrap(),
        )
        .unwrap();
        let spec = &schema["properties"]["spec"];
        assert_eq!(
            spec["properties"]["version"]["enum"],
            json!(SUPPORTED_VERSIONS)
        );
        assert_eq!(
            spec["properties"]["plan"]["enum"],
            json!(["micro", "small", "medium", "large"])
        );
        assert_eq!(
            spec["properties"]["storageGb"]["minimum"].as_f64(),
            Some(1.0)
        );
        assert_eq!(
            spec["properties"]["storageGb"]["maximum"].as_f64(),
            Some(2000.0)
        );
        assert_eq!(
            spec["properties"]["acl"]["items"]["pattern"],
            json!(CIDR_PATTERN)
        );
        let required: Vec<_> = spec["required"].as_array().unwrap().iter().collect();
        assert!(required.contains(&&json!("storageGb")));
        assert!(
            schema["x-kubernetes-validations"][0]["rule"]
                .as_str()
                .unwrap()
                .contains("metadata.name")
        );
        assert!(spec["x-kubernetes-validations"].as_array().unwrap().len() >= 5);
    }
}
