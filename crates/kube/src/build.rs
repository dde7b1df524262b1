//! The pure half of the reconcile: `validate` turns a spec into a `ValidSpec`,
//! `build` turns an instance into the objects that should exist, `status`
//! computes what the instance's status should say. No I/O happens here.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapProjection, ConfigMapVolumeSource, Container, ContainerPort,
    DownwardAPIProjection, DownwardAPIVolumeFile, EmptyDirVolumeSource, EnvVar, EnvVarSource,
    HTTPGetAction, KeyToPath, ObjectFieldSelector, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
    ProjectedVolumeSource, ResourceRequirements, SeccompProfile, Secret, SecretVolumeSource,
    SecurityContext, Service, ServiceAccount, ServiceAccountTokenProjection, ServicePort,
    ServiceSpec, Volume, VolumeMount, VolumeProjection, VolumeResourceRequirements,
};
use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};
use strata_core::{Acl, InstanceName, Plan, PlanCatalog, ValidationError};

use crate::crd::{
    EndpointStatus, POSTGRES_PORT, PostgresInstance, PostgresInstanceSpec, ROTATE_ANNOTATION,
    SUPPORTED_VERSIONS,
};

/// Field manager of every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "strata-operator";
/// Annotation on the credentials Secret: the rotation request it answers.
pub const ROTATION_ANNOTATION: &str = "strata.dev/rotation";
/// Annotation on the StatefulSet: the storage the spec asks for, in GiB.
pub const STORAGE_ANNOTATION: &str = "strata.dev/storage-gb";
/// Annotation on the pod template: a hash of the postgresql.conf settings
/// that take effect only at a server start, so that changing one of them
/// rolls the pod. Everything else (pg_hba.conf, reloadable settings,
/// certificates) reaches the running server by a reload.
pub const CONFIG_HASH_ANNOTATION: &str = "strata.dev/restart-config-hash";
/// Label every owned object carries with the instance name.
pub const INSTANCE_LABEL: &str = "strata.dev/instance";
/// Database user and database the instance is created with.
pub const DB_USER: &str = "app";
pub const DB_NAME: &str = "app";
/// The metrics exporter's role: `pg_monitor`, over loopback only.
pub const MONITOR_USER: &str = "strata_monitor";
/// Keys of the credentials Secret with the monitoring role's name and
/// password: generated once, kept across rotations of the tenant's password,
/// never returned by the Strata API.
pub const MONITOR_USERNAME_KEY: &str = "monitor-username";
pub const MONITOR_PASSWORD_KEY: &str = "monitor-password";
/// Where `strata pod-postgres` answers the kubelet's probes.
pub const PROBE_PORT: u16 = 8008;
/// Port of the postgres_exporter sidecar.
pub const METRICS_PORT: u16 = 9187;
/// The label the API server puts on every namespace: its name.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// The ConfigMap (postgresql.conf, pg_hba.conf), mounted into the postgres
/// container and the credentials agent.
pub const CONFIG_DIR: &str = "/etc/strata";
const DATA_DIR: &str = "/var/lib/postgresql/data";
/// The cluster, one level below the claim's root (which may hold `lost+found`).
pub const PGDATA: &str = "/var/lib/postgresql/data/pgdata";
/// The emptyDir the init container copies the `strata` binary into.
pub const STRATA_BIN_DIR: &str = "/strata";
/// The monitoring role's credentials, mounted into the exporter only.
pub const MONITOR_DIR: &str = "/etc/strata-monitor";
/// The instance's TLS Secret, mounted into the postgres container.
pub const TLS_DIR: &str = "/etc/strata-tls";
/// The credentials Secret, mounted into the credentials agent.
pub const CREDENTIALS_DIR: &str = "/etc/strata-credentials";
/// PostgreSQL's Unix socket directory, an emptyDir both containers share.
pub const SOCKET_DIR: &str = "/var/run/postgresql";
/// Where in-cluster clients find their service account token.
const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// Key of the credentials Secret naming the rotation its password answers;
/// the agent reports it back once the server uses that password.
pub const ROTATION_KEY: &str = "rotation";
/// Annotation the agent sets on the credentials Secret: the rotation whose
/// password the running server has taken.
pub const APPLIED_ROTATION_ANNOTATION: &str = "strata.dev/applied-rotation";
/// Condition: the running server uses the password in the credentials Secret.
pub const CREDENTIALS_APPLIED: &str = "CredentialsApplied";
const POSTGRES_UID: i64 = 999;
const EXPORTER_UID: i64 = 65534;

/// Settings that are not per instance: images and the cluster domain.
#[derive(Debug, Clone)]
pub struct BuildConfig {
    /// Image used when the spec names none; `{version}` is replaced.
    pub postgres_image: String,
    pub exporter_image: String,
    /// Image of the credentials agent sidecar (`strata pod-agent`): the
    /// operator's own image.
    pub agent_image: String,
    pub cluster_domain: String,
    pub plans: PlanCatalog,
    /// The Strata API's ServiceAccount: when set, each instance grants it
    /// `get` on its credentials and TLS Secrets (and nothing else), so that
    /// the API needs no Secret access of its own.
    pub api_service_account: Option<ServiceAccountRef>,
    /// The namespace whose pods may scrape the exporter's metrics port
    /// (e.g. Prometheus'); `None`: no one may.
    pub monitoring_namespace: Option<String>,
}

/// A ServiceAccount by namespace and name (`NAMESPACE/NAME` on the command line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAccountRef {
    pub namespace: String,
    pub name: String,
}

impl std::str::FromStr for ServiceAccountRef {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (namespace, name) = s
            .split_once('/')
            .filter(|(ns, name)| !ns.is_empty() && !name.is_empty() && !name.contains('/'))
            .ok_or_else(|| format!("expected NAMESPACE/NAME, got {s:?}"))?;
        Ok(Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        })
    }
}

impl Default for BuildConfig {
    fn default() -> Self {
        Self {
            postgres_image: "postgres:{version}".into(),
            exporter_image: "quay.io/prometheuscommunity/postgres-exporter:v0.17.1".into(),
            agent_image: concat!("ghcr.io/strata-dev/strata:", env!("CARGO_PKG_VERSION")).into(),
            cluster_domain: "cluster.local".into(),
            plans: PlanCatalog::default(),
            api_service_account: None,
            monitoring_namespace: None,
        }
    }
}

/// A spec that passed every rule, with defaults resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidSpec {
    pub name: InstanceName,
    pub namespace: String,
    pub version: String,
    pub plan: Plan,
    pub storage_gb: u32,
    pub acl: Acl,
    pub image: String,
    pub exporter_image: String,
    pub agent_image: String,
    pub storage_class: Option<String>,
    pub external_access: bool,
    pub cluster_domain: String,
    pub monitoring_namespace: Option<String>,
}

/// Checks the rules the CRD schema already enforces (a resource may predate
/// the schema, or the catalog may have changed) and resolves defaults.
pub fn validate(
    instance: &PostgresInstance,
    config: &BuildConfig,
) -> Result<ValidSpec, ValidationError> {
    let spec: &PostgresInstanceSpec = &instance.spec;
    let mut errors = strata_core::error::Errors::default();
    let name = errors.check("metadata.name", InstanceName::parse(&instance.name_any()));
    let namespace = instance.namespace().unwrap_or_default();
    if namespace.is_empty() {
        errors.push("metadata.namespace", "must be set");
    }
    if !SUPPORTED_VERSIONS.contains(&spec.version.as_str()) {
        errors.push(
            "spec.version",
            format!(
                "unsupported version {:?}; offered: {}",
                spec.version,
                SUPPORTED_VERSIONS.join(", ")
            ),
        );
    }
    let plan = errors
        .check("spec.plan", config.plans.get(&spec.plan))
        .cloned();
    if let Some(plan) = &plan {
        errors.check(
            "spec.storageGb",
            PlanCatalog::check_storage(plan, spec.storage_gb),
        );
    }
    let acl = errors.check(
        "spec.acl",
        Acl::parse(&spec.acl).map_err(|mut e| {
            for fe in &mut e.errors {
                fe.field = format!("spec.acl{}", fe.field);
            }
            e
        }),
    );
    if spec.external_access && acl.as_ref().is_some_and(|a| a.entries().is_empty()) {
        errors.push(
            "spec.externalAccess",
            "needs at least one acl entry: the external endpoint admits only the ACL's networks",
        );
    }
    errors.finish()?;
    match (name, plan, acl) {
        (Some(name), Some(plan), Some(acl)) => Ok(ValidSpec {
            name,
            namespace,
            version: spec.version.clone(),
            plan,
            storage_gb: spec.storage_gb,
            acl,
            image: spec
                .image
                .clone()
                .unwrap_or_else(|| config.postgres_image.replace("{version}", &spec.version)),
            exporter_image: config.exporter_image.clone(),
            agent_image: config.agent_image.clone(),
            storage_class: spec.storage_class.clone(),
            external_access: spec.external_access,
            cluster_domain: config.cluster_domain.clone(),
            monitoring_namespace: config.monitoring_namespace.clone(),
        }),
        _ => Err(ValidationError::field("spec", "invalid")),
    }
}

/// What the operator read before building: the parts of the current state
/// that the desired state depends on.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// Password and rotation token of the existing credentials Secret.
    pub password: Option<String>,
    /// The monitoring role's password in the existing credentials Secret.
    pub monitor_password: Option<strata_core::Secret>,
    pub rotation: Option<String>,
    /// The rotation the credentials agent reported as applied to the
    /// running server (`strata.dev/applied-rotation` on the Secret).
    pub applied_rotation: Option<String>,
    /// Storage request in the existing StatefulSet's claim template; that
    /// template is immutable, so it is kept as it was created.
    pub claim_storage: Option<Quantity>,
    /// StorageClass in the existing StatefulSet's claim template (`Some(None)`:
    /// the cluster default), kept for the same reason. The CRD refuses a
    /// change of `storageClass`; a resource from before that rule still
    /// applies.
    pub claim_storage_class: Option<Option<String>>,
}

/// Every object an instance owns.
#[derive(Debug, Clone)]
pub struct Desired {
    pub secret: Secret,
    pub config_map: ConfigMap,
    pub headless_service: Service,
    pub client_service: Service,
    /// The LoadBalancer Service `<name>-external`, when the spec asks for
    /// external access; without, an existing one is deleted.
    pub external_service: Option<Service>,
    pub stateful_set: StatefulSet,
    pub pdb: PodDisruptionBudget,
    pub network_policy: NetworkPolicy,
    /// The credentials agent's identity: it may only read and annotate the
    /// instance's credentials Secret.
    pub agent_service_account: ServiceAccount,
    pub agent_role: Role,
    pub agent_role_binding: RoleBinding,
    /// True when `secret` carries a newly generated password.
    pub new_password: bool,
}

pub fn secret_name(instance: &str) -> String {
    format!("{instance}-credentials")
}
pub fn config_map_name(instance: &str) -> String {
    format!("{instance}-config")
}
/// The credentials agent's ServiceAccount, Role and RoleBinding.
pub fn agent_name(instance: &str) -> String {
    format!("{instance}-agent")
}
/// The Role and RoleBinding that let the Strata API read the instance's Secrets.
pub fn api_access_name(instance: &str) -> String {
    format!("{instance}-api")
}
pub fn headless_service_name(instance: &str) -> String {
    format!("{instance}-headless")
}
/// The client Service, the StatefulSet, the PDB and the NetworkPolicy carry
/// the instance's own name.
pub fn client_service_name(instance: &str) -> String {
    instance.to_owned()
}

/// Labels every owned object carries.
pub fn common_labels(instance: &str) -> BTreeMap<String, String> {
    let mut labels = selector_labels(instance);
    labels.insert("app.kubernetes.io/managed-by".into(), FIELD_MANAGER.into());
    labels.insert("app.kubernetes.io/part-of".into(), "strata".into());
    labels.insert(INSTANCE_LABEL.into(), instance.into());
    labels
}

/// Labels that select the instance's pods.
pub fn selector_labels(instance: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), "postgresql".to_owned()),
        ("app.kubernetes.io/instance".to_owned(), instance.to_owned()),
    ])
}

/// The Service DNS name clients connect to.
pub fn endpoint(valid: &ValidSpec) -> EndpointStatus {
    EndpointStatus {
        host: format!(
            "{}.{}.svc.{}",
            client_service_name(valid.name.as_str()),
            valid.namespace,
            valid.cluster_domain
        ),
        port: POSTGRES_PORT,
    }
}

/// postgresql.conf: listen settings, TLS with the instance's certificate,
/// plus the plan's memory and connection settings.
pub fn postgresql_conf(plan: &Plan) -> String {
    let mut out = format!(
        "# Managed by strata-operator.\n\
         listen_addresses = '*'\n\
         port = {POSTGRES_PORT}\n\
         unix_socket_directories = '{SOCKET_DIR}'\n\
         hba_file = '{CONFIG_DIR}/pg_hba.conf'\n\
         password_encryption = 'scram-sha-256'\n\
         ssl = on\n\
         ssl_cert_file = '{TLS_DIR}/tls.crt'\n\
         ssl_key_file = '{TLS_DIR}/tls.key'\n\
         ssl_ca_file = '{TLS_DIR}/ca.crt'\n\
         ssl_min_protocol_version = 'TLSv1.2'\n"
    );
    for (key, value) in plan.postgres_settings() {
        let _ = writeln!(out, "{key} = '{value}'");
    }
    out
}

/// pg_hba.conf: the superuser `postgres` over the pod's Unix socket by peer
/// authentication only (`strata pod-postgres` and the credentials agent,
/// both the OS user postgres); the monitoring role from loopback only (the
/// exporter); neither of them over any other TCP connection. Then one
/// `hostssl` line per ACL entry for the tenant; a connection without TLS
/// from anywhere else is refused outright.
pub fn pg_hba_conf(acl: &Acl) -> String {
    let mut out = format!(
        "# Managed by strata-operator.\n\
         local all postgres peer\n\
         host postgres {MONITOR_USER} 127.0.0.1/32 scram-sha-256\n\
         host all postgres,{MONITOR_USER} 0.0.0.0/0 reject\n\
         host all postgres,{MONITOR_USER} ::/0 reject\n"
    );
    for net in acl.entries() {
        let _ = writeln!(out, "hostssl all all {net} scram-sha-256");
    }
    out.push_str(
        "hostnossl all all 0.0.0.0/0 reject\n\
         hostnossl all all ::/0 reject\n",
    );
    out
}

/// postgresql.conf settings that take effect only when the server starts
/// (context `postmaster`); the others are applied by a reload.
const RESTART_SETTINGS: &[&str] = &[
    "listen_addresses",
    "port",
    "unix_socket_directories",
    "hba_file",
    "max_connections",
    "shared_buffers",
    "max_worker_processes",
    "max_wal_senders",
    "max_prepared_transactions",
    "max_locks_per_transaction",
    "wal_level",
    "shared_preload_libraries",
    "huge_pages",
];

/// The hash on the pod template: of the postgresql.conf lines whose
/// settings need a restart, so that only those roll the pod.
pub fn restart_config_hash(postgresql_conf: &str) -> String {
    let mut restart = String::new();
    for line in postgresql_conf.lines() {
        let key = line.split('=').next().unwrap_or_default().trim();
        if RESTART_SETTINGS.contains(&key) || Plan::RESTART_SETTINGS.contains(&key) {
            restart.push_str(line);
            restart.push('\n');
        }
    }
    fnv1a(&restart)
}

fn fnv1a(data: &str) -> String {
    // Stable across builds and platforms, unlike `DefaultHasher`.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in data.as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

pub(crate) fn meta(
    instance: &PostgresInstance,
    name: String,
    owner: &OwnerReference,
) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: instance.namespace(),
        labels: Some(common_labels(&instance.name_any())),
        owner_references: Some(vec![owner.clone()]),
        ..ObjectMeta::default()
    }
}

pub(crate) fn owner_reference(instance: &PostgresInstance) -> OwnerReference {
    OwnerReference {
        api_version: PostgresInstance::api_version(&()).into_owned(),
        kind: PostgresInstance::kind(&()).into_owned(),
        name: instance.name_any(),
        uid: instance.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The rotation request the instance carries (empty when none).
pub fn requested_rotation(instance: &PostgresInstance) -> String {
    instance
        .annotations()
        .get(ROTATE_ANNOTATION)
        .cloned()
        .unwrap_or_default()
}

/// The credentials Secret: connection data, and the rotation request its
/// password answers (annotation for the operator, key for the agent).
fn credentials_secret(
    instance: &PostgresInstance,
    valid: &ValidSpec,
    owner: &OwnerReference,
    password: &str,
    monitor_password: &str,
    rotation: &str,
) -> Secret {
    let endpoint = endpoint(valid);
    let mut secret_meta = meta(instance, secret_name(valid.name.as_str()), owner);
    secret_meta.annotations = Some(BTreeMap::from([(
        ROTATION_ANNOTATION.to_owned(),
        rotation.to_owned(),
    )]));
    let bytes = |s: &str| ByteString(s.as_bytes().to_vec());
    Secret {
        metadata: secret_meta,
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([
            ("username".to_owned(), bytes(DB_USER)),
            ("password".to_owned(), bytes(password)),
            ("database".to_owned(), bytes(DB_NAME)),
            ("host".to_owned(), bytes(&endpoint.host)),
            ("port".to_owned(), bytes(&endpoint.port.to_string())),
            (ROTATION_KEY.to_owned(), bytes(rotation)),
            (MONITOR_USERNAME_KEY.to_owned(), bytes(MONITOR_USER)),
            (MONITOR_PASSWORD_KEY.to_owned(), bytes(monitor_password)),
        ])),
        ..Secret::default()
    }
}

/// Builds every owned object. `fresh_password` is used only when no password
/// exists yet or a rotation was requested, `fresh_monitor_password` only when
/// the Secret has no monitoring password yet (rotations keep it): passing
/// them in keeps this pure.
pub fn build(
    instance: &PostgresInstance,
    valid: &ValidSpec,
    observed: &Observed,
    fresh_password: &str,
    fresh_monitor_password: &str,
) -> Desired {
    let name = valid.name.as_str();
    let owner = owner_reference(instance);
    let rotation = requested_rotation(instance);
    let keep =
        observed.password.is_some() && observed.rotation.as_deref().unwrap_or("") == rotation;
    let password = match (&observed.password, keep) {
        (Some(p), true) => p.clone(),
        _ => fresh_password.to_owned(),
    };
    let monitor_password = observed
        .monitor_password
        .as_ref()
        .map_or(fresh_monitor_password, strata_core::Secret::expose);
    let secret = credentials_secret(
        instance,
        valid,
        &owner,
        &password,
        monitor_password,
        &rotation,
    );

    let postgresql = postgresql_conf(&valid.plan);
    let hba = pg_hba_conf(&valid.acl);
    let config_hash = restart_config_hash(&postgresql);
    let config_map = ConfigMap {
        metadata: meta(instance, config_map_name(name), &owner),
        data: Some(BTreeMap::from([
            ("postgresql.conf".to_owned(), postgresql),
            ("pg_hba.conf".to_owned(), hba),
        ])),
        ..ConfigMap::default()
    };

    let postgres_port = ServicePort {
        name: Some("postgres".into()),
        port: i32::from(POSTGRES_PORT),
        target_port: Some(IntOrString::String("postgres".into())),
        protocol: Some("TCP".into()),
        ..ServicePort::default()
    };
    let headless_service = Service {
        metadata: meta(instance, headless_service_name(name), &owner),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(true),
            selector: Some(selector_labels(name)),
            ports: Some(vec![
                postgres_port.clone(),
                ServicePort {
                    name: Some("metrics".into()),
                    port: i32::from(METRICS_PORT),
                    target_port: Some(IntOrString::String("metrics".into())),
                    protocol: Some("TCP".into()),
                    ..ServicePort::default()
                },
            ]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    };
    let client_service = Service {
        metadata: meta(instance, client_service_name(name), &owner),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(selector_labels(name)),
            ports: Some(vec![postgres_port]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    };

    let mut stateful_set = stateful_set(instance, valid, observed, &owner, &config_hash);
    keep_claim_storage_class(&mut stateful_set, observed);

    let pdb = pod_disruption_budget(instance, name, &owner);

    let network_policy = network_policy(instance, valid, &owner);
    let (agent_service_account, agent_role, agent_role_binding) =
        agent_identity(instance, name, &owner);

    Desired {
        secret,
        config_map,
        headless_service,
        client_service,
        external_service: external_service(instance, valid),
        stateful_set,
        pdb,
        network_policy,
        agent_service_account,
        agent_role,
        agent_role_binding,
        new_password: !keep,
    }
}

/// Puts the existing claim template's StorageClass back into the desired
/// StatefulSet: the API server refuses any change of a claim template.
fn keep_claim_storage_class(sts: &mut StatefulSet, observed: &Observed) {
    let Some(class) = &observed.claim_storage_class else {
        return;
    };
    let templates = sts
        .spec
        .as_mut()
        .and_then(|s| s.volume_claim_templates.as_mut());
    for template in templates.into_iter().flatten() {
        if let Some(spec) = template.spec.as_mut() {
            spec.storage_class_name.clone_from(class);
        }
    }
}

/// The PodDisruptionBudget: at most one of the instance's pods may be
/// evicted at a time. With the single server this never blocks a node
/// drain (`minAvailable: 1` on one replica would block every drain until
/// someone deleted the pod by hand); the drain costs the restart of the
/// server on another node. With more replicas the same budget keeps all
/// but one serving.
fn pod_disruption_budget(
    instance: &PostgresInstance,
    name: &str,
    owner: &OwnerReference,
) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: meta(instance, name.to_owned(), owner),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector_labels(name)),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    }
}

fn network_policy(
    instance: &PostgresInstance,
    valid: &ValidSpec,
    owner: &OwnerReference,
) -> NetworkPolicy {
    let name = valid.name.as_str();
    let port = |p: u16| NetworkPolicyPort {
        port: Some(IntOrString::Int(i32::from(p))),
        protocol: Some("TCP".into()),
        ..NetworkPolicyPort::default()
    };
    let mut ingress = Vec::new();
    if !valid.acl.entries().is_empty() {
        ingress.push(NetworkPolicyIngressRule {
            from: Some(
                valid
                    .acl
                    .entries()
                    .iter()
                    .map(|net| NetworkPolicyPeer {
                        ip_block: Some(IPBlock {
                            cidr: net.to_string(),
                            except: None,
                        }),
                        ..NetworkPolicyPeer::default()
                    })
                    .collect(),
            ),
            ports: Some(vec![port(POSTGRES_PORT)]),
        });
    }
    // Metrics: only from the monitoring namespace (by the name label the
    // API server gives every namespace); without one, from nowhere.
    if let Some(monitoring) = &valid.monitoring_namespace {
        ingress.push(NetworkPolicyIngressRule {
            from: Some(vec![NetworkPolicyPeer {
                namespace_selector: Some(LabelSelector {
                    match_labels: Some(BTreeMap::from([(
                        NAMESPACE_NAME_LABEL.to_owned(),
                        monitoring.clone(),
                    )])),
                    ..LabelSelector::default()
                }),
                ..NetworkPolicyPeer::default()
            }]),
            ports: Some(vec![port(METRICS_PORT)]),
        });
    }
    NetworkPolicy {
        metadata: meta(instance, name.to_owned(), owner),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(selector_labels(name)),
                ..LabelSelector::default()
            }),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(ingress),
            ..NetworkPolicySpec::default()
        }),
    }
}

/// The credentials agent's ServiceAccount and what it may do: read and
/// annotate this instance's credentials Secret, nothing else.
fn agent_identity(
    instance: &PostgresInstance,
    name: &str,
    owner: &OwnerReference,
) -> (ServiceAccount, Role, RoleBinding) {
    let agent = agent_name(name);
    let service_account = ServiceAccount {
        metadata: meta(instance, agent.clone(), owner),
        automount_service_account_token: Some(false),
        ..ServiceAccount::default()
    };
    let role = Role {
        metadata: meta(instance, agent.clone(), owner),
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["secrets".into()]),
            resource_names: Some(vec![secret_name(name)]),
            verbs: vec!["get".into(), "patch".into()],
            ..PolicyRule::default()
        }]),
    };
    let binding = RoleBinding {
        metadata: meta(instance, agent.clone(), owner),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: agent.clone(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: agent,
            namespace: instance.namespace(),
            ..Subject::default()
        }]),
    };
    (service_account, role, binding)
}

/// The Role and RoleBinding `<name>-api` that let the Strata API read this
/// instance's credentials and TLS Secrets by name: `get` only, these two
/// Secrets only, owned by the instance (gone with it).
pub fn api_access(
    instance: &PostgresInstance,
    name: &str,
    api: &ServiceAccountRef,
) -> (Role, RoleBinding) {
    let owner = owner_reference(instance);
    let access = api_access_name(name);
    let role = Role {
        metadata: meta(instance, access.clone(), &owner),
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["secrets".into()]),
            resource_names: Some(vec![secret_name(name), crate::tls::tls_secret_name(name)]),
            verbs: vec!["get".into()],
            ..PolicyRule::default()
        }]),
    };
    let binding = RoleBinding {
        metadata: meta(instance, access.clone(), &owner),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: access,
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: api.name.clone(),
            namespace: Some(api.namespace.clone()),
            ..Subject::default()
        }]),
    };
    (role, binding)
}

/// The `strata pod-agent` sidecar: it applies the mounted password to the
/// running server over the shared Unix socket (as the superuser, by peer
/// authentication), reloads the server when its certificate or its
/// configuration (pg_hba.conf, reloadable settings) changes, and reports the
/// rotation it applied.
fn agent_container(valid: &ValidSpec) -> Container {
    let name = valid.name.as_str();
    Container {
        name: "credentials-agent".into(),
        image: Some(valid.agent_image.clone()),
        args: Some(vec![
            "pod-agent".into(),
            format!("--credentials-dir={CREDENTIALS_DIR}"),
            format!("--tls-dir={TLS_DIR}"),
            format!("--config-dir={CONFIG_DIR}"),
            format!("--socket-dir={SOCKET_DIR}"),
            format!("--port={POSTGRES_PORT}"),
            format!("--report-secret={}", secret_name(name)),
        ]),
        env: Some(vec![EnvVar {
            name: "POD_NAMESPACE".into(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: "metadata.namespace".into(),
                    ..ObjectFieldSelector::default()
                }),
                ..EnvVarSource::default()
            }),
            ..EnvVar::default()
        }]),
        resources: Some(ResourceRequirements {
            requests: Some(quantities("10m", "16Mi")),
            limits: Some(quantities("100m", "64Mi")),
            ..ResourceRequirements::default()
        }),
        security_context: Some(restricted(POSTGRES_UID)),
        volume_mounts: Some(vec![
            mount("credentials", CREDENTIALS_DIR, true),
            mount("tls", TLS_DIR, true),
            mount("config", CONFIG_DIR, true),
            mount("socket", SOCKET_DIR, false),
            mount("agent-token", SERVICE_ACCOUNT_DIR, true),
        ]),
        ..Container::default()
    }
}

fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    }
}

fn secret_volume(name: &str, secret: String, mode: i32) -> Volume {
    Volume {
        name: name.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret),
            default_mode: Some(mode),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    }
}

/// The pod's volumes. Secret files are owned by root with the pod's
/// `fsGroup` (999, postgres) as group; mode 0640 is what PostgreSQL accepts
/// for a root-owned key file (readable by the group, nothing for others).
fn pod_volumes(name: &str) -> Vec<Volume> {
    vec![
        Volume {
            name: "config".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: config_map_name(name),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
        secret_volume("tls", crate::tls::tls_secret_name(name), 0o640),
        secret_volume("credentials", secret_name(name), 0o440),
        // Only the monitoring role's name and password, for the exporter.
        Volume {
            name: "monitor-credentials".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret_name(name)),
                default_mode: Some(0o440),
                items: Some(vec![
                    KeyToPath {
                        key: MONITOR_USERNAME_KEY.into(),
                        path: "username".into(),
                        ..KeyToPath::default()
                    },
                    KeyToPath {
                        key: MONITOR_PASSWORD_KEY.into(),
                        path: "password".into(),
                        ..KeyToPath::default()
                    },
                ]),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        },
        // The `strata` binary, copied in by the init container.
        Volume {
            name: "strata-bin".into(),
            empty_dir: Some(EmptyDirVolumeSource {
                medium: None,
                size_limit: Some(Quantity("256Mi".into())),
            }),
            ..Volume::default()
        },
        Volume {
            name: "socket".into(),
            empty_dir: Some(EmptyDirVolumeSource {
                medium: Some("Memory".into()),
                size_limit: Some(Quantity("1Mi".into())),
            }),
            ..Volume::default()
        },
        // The service account token, only for the agent: the pod does not
        // automount it into every container.
        Volume {
            name: "agent-token".into(),
            projected: Some(ProjectedVolumeSource {
                default_mode: Some(0o440),
                sources: Some(vec![
                    VolumeProjection {
                        service_account_token: Some(ServiceAccountTokenProjection {
                            path: "token".into(),
                            expiration_seconds: Some(3607),
                            ..ServiceAccountTokenProjection::default()
                        }),
                        ..VolumeProjection::default()
                    },
                    VolumeProjection {
                        config_map: Some(ConfigMapProjection {
                            name: "kube-root-ca.crt".into(),
                            items: Some(vec![KeyToPath {
                                key: "ca.crt".into(),
                                path: "ca.crt".into(),
                                ..KeyToPath::default()
                            }]),
                            ..ConfigMapProjection::default()
                        }),
                        ..VolumeProjection::default()
                    },
                    VolumeProjection {
                        downward_api: Some(DownwardAPIProjection {
                            items: Some(vec![DownwardAPIVolumeFile {
                                path: "namespace".into(),
                                field_ref: Some(ObjectFieldSelector {
                                    field_path: "metadata.namespace".into(),
                                    ..ObjectFieldSelector::default()
                                }),
                                ..DownwardAPIVolumeFile::default()
                            }]),
                        }),
                        ..VolumeProjection::default()
                    },
                ]),
            }),
            ..Volume::default()
        },
    ]
}

fn env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..EnvVar::default()
    }
}

fn restricted(uid: i64) -> SecurityContext {
    SecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(uid),
        run_as_group: Some(uid),
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Capabilities::default()
        }),
        ..SecurityContext::default()
    }
}

fn quantities(cpu: &str, memory: &str) -> BTreeMap<String, Quantity> {
    BTreeMap::from([
        ("cpu".to_owned(), Quantity(cpu.to_owned())),
        ("memory".to_owned(), Quantity(memory.to_owned())),
    ])
}

/// The storage request a claim for `gb` GiB carries.
pub fn storage_quantity(gb: u32) -> Quantity {
    Quantity(format!("{gb}Gi"))
}

/// The init container: copies the `strata` binary of the operator's image
/// into the `strata-bin` emptyDir (`strata copy-self`, no shell needed).
fn install_container(valid: &ValidSpec) -> Container {
    Container {
        name: "install-strata".into(),
        image: Some(valid.agent_image.clone()),
        args: Some(vec![
            "copy-self".into(),
            format!("--to={STRATA_BIN_DIR}/strata"),
        ]),
        resources: Some(ResourceRequirements {
            requests: Some(quantities("10m", "16Mi")),
            limits: Some(quantities("200m", "64Mi")),
            ..ResourceRequirements::default()
        }),
        security_context: Some(restricted(POSTGRES_UID)),
        volume_mounts: Some(vec![mount("strata-bin", STRATA_BIN_DIR, false)]),
        ..Container::default()
    }
}

fn probe(path: &str, port: IntOrString, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port,
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(5),
        failure_threshold: Some(failures),
        ..Probe::default()
    }
}

/// The postgres container: any image with the server binaries of the
/// spec's major runs `strata pod-postgres` from the `strata-bin` volume,
/// which initialises the cluster, supervises the server, makes the tenant's
/// and the monitoring role from the mounted credentials files and answers
/// the probes. No password reaches an environment variable.
fn postgres_container(valid: &ValidSpec) -> Container {
    let memory = format!("{}Mi", valid.plan.memory_mb);
    let probes = || IntOrString::String("probes".into());
    Container {
        name: "postgres".into(),
        image: Some(valid.image.clone()),
        command: Some(vec![
            format!("{STRATA_BIN_DIR}/strata"),
            "pod-postgres".into(),
            format!("--pg-version={}", valid.version),
            format!("--data-dir={PGDATA}"),
            format!("--config-file={CONFIG_DIR}/postgresql.conf"),
            format!("--credentials-dir={CREDENTIALS_DIR}"),
            format!("--socket-dir={SOCKET_DIR}"),
            format!("--port={POSTGRES_PORT}"),
            format!("--probe-listen=0.0.0.0:{PROBE_PORT}"),
            format!("--exporter-metrics=http://127.0.0.1:{METRICS_PORT}/metrics"),
        ]),
        // The image's own arguments (`postgres`) are not for pod-postgres.
        args: Some(Vec::new()),
        ports: Some(vec![
            ContainerPort {
                name: Some("postgres".into()),
                container_port: i32::from(POSTGRES_PORT),
                protocol: Some("TCP".into()),
                ..ContainerPort::default()
            },
            ContainerPort {
                name: Some("probes".into()),
                container_port: i32::from(PROBE_PORT),
                protocol: Some("TCP".into()),
                ..ContainerPort::default()
            },
        ]),
        resources: Some(ResourceRequirements {
            requests: Some(quantities(&valid.plan.cpu.to_string(), &memory)),
            limits: Some(quantities(&valid.plan.cpu.to_string(), &memory)),
            ..ResourceRequirements::default()
        }),
        // Crash recovery of a large cluster may take long: up to an hour
        // before the kubelet gives up; liveness starts only after it. Asked
        // every second (an HTTP answer of pod-postgres, no SQL), so a fresh
        // server is seen within a second of accepting connections, and
        // readiness (a `SELECT 1` over the socket) every 2 s after that.
        startup_probe: Some(probe("/startupz", probes(), 1, 3600)),
        readiness_probe: Some(probe("/readyz", probes(), 2, 3)),
        liveness_probe: Some(probe("/livez", probes(), 10, 6)),
        security_context: Some(restricted(POSTGRES_UID)),
        volume_mounts: Some(vec![
            mount("data", DATA_DIR, false),
            mount("config", CONFIG_DIR, true),
            mount("tls", TLS_DIR, true),
            mount("socket", SOCKET_DIR, false),
            mount("credentials", CREDENTIALS_DIR, true),
            mount("strata-bin", STRATA_BIN_DIR, true),
        ]),
        ..Container::default()
    }
}

/// The metrics exporter: the monitoring role over loopback, its name and
/// password read from files of the monitoring-only volume. Ready only when
/// it really reaches the database: its readiness probe asks `strata
/// pod-postgres`, which reads `pg_up` from the exporter's metrics (the
/// exporter image has no shell to probe with).
fn exporter_container(valid: &ValidSpec) -> Container {
    Container {
        name: "exporter".into(),
        image: Some(valid.exporter_image.clone()),
        env: Some(vec![
            env(
                "DATA_SOURCE_URI",
                &format!("127.0.0.1:{POSTGRES_PORT}/postgres?sslmode=disable"),
            ),
            env("DATA_SOURCE_USER_FILE", &format!("{MONITOR_DIR}/username")),
            env("DATA_SOURCE_PASS_FILE", &format!("{MONITOR_DIR}/password")),
        ]),
        ports: Some(vec![ContainerPort {
            name: Some("metrics".into()),
            container_port: i32::from(METRICS_PORT),
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        }]),
        resources: Some(ResourceRequirements {
            requests: Some(quantities("50m", "32Mi")),
            limits: Some(quantities("200m", "64Mi")),
            ..ResourceRequirements::default()
        }),
        readiness_probe: Some(probe(
            "/exporterz",
            IntOrString::Int(i32::from(PROBE_PORT)),
            // A scrape of the exporter each time: every 5 s, not more.
            5,
            3,
        )),
        security_context: Some(restricted(EXPORTER_UID)),
        volume_mounts: Some(vec![mount("monitor-credentials", MONITOR_DIR, true)]),
        ..Container::default()
    }
}

#[allow(clippy::too_many_lines)] // one object literal, read top to bottom
fn stateful_set(
    instance: &PostgresInstance,
    valid: &ValidSpec,
    observed: &Observed,
    owner: &OwnerReference,
    config_hash: &str,
) -> StatefulSet {
    let name = valid.name.as_str();
    let claim_storage = observed
        .claim_storage
        .clone()
        .unwrap_or_else(|| storage_quantity(valid.storage_gb));
    let mut sts_meta = meta(instance, name.to_owned(), owner);
    sts_meta.annotations = Some(BTreeMap::from([(
        STORAGE_ANNOTATION.to_owned(),
        valid.storage_gb.to_string(),
    )]));
    let mut pod_labels = common_labels(name);
    pod_labels.extend(selector_labels(name));
    StatefulSet {
        metadata: sts_meta,
        spec: Some(StatefulSetSpec {
            replicas: Some(1),
            service_name: Some(headless_service_name(name)),
            selector: LabelSelector {
                match_labels: Some(selector_labels(name)),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: Some(BTreeMap::from([(
                        CONFIG_HASH_ANNOTATION.to_owned(),
                        config_hash.to_owned(),
                    )])),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    init_containers: Some(vec![install_container(valid)]),
                    containers: vec![
                        postgres_container(valid),
                        exporter_container(valid),
                        agent_container(valid),
                    ],
                    service_account_name: Some(agent_name(name)),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(POSTGRES_UID),
                        run_as_group: Some(POSTGRES_UID),
                        fs_group: Some(POSTGRES_UID),
                        // The data volume's group is set once, not on
                        // every mount (a recursive walk of a large cluster).
                        fs_group_change_policy: Some("OnRootMismatch".into()),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".into(),
                            ..SeccompProfile::default()
                        }),
                        ..PodSecurityContext::default()
                    }),
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    termination_grace_period_seconds: Some(60),
                    volumes: Some(pod_volumes(name)),
                    ..PodSpec::default()
                }),
            },
            volume_claim_templates: Some(vec![PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some("data".into()),
                    labels: Some(common_labels(name)),
                    ..ObjectMeta::default()
                },
                spec: Some(PersistentVolumeClaimSpec {
                    access_modes: Some(vec!["ReadWriteOnce".into()]),
                    storage_class_name: valid.storage_class.clone(),
                    resources: Some(VolumeResourceRequirements {
                        requests: Some(BTreeMap::from([("storage".to_owned(), claim_storage)])),
                        ..VolumeResourceRequirements::default()
                    }),
                    ..PersistentVolumeClaimSpec::default()
                }),
                ..PersistentVolumeClaim::default()
            }]),
            ..StatefulSetSpec::default()
        }),
        ..StatefulSet::default()
    }
}

/// Size of a storage quantity in GiB, for the suffixes claims use.
pub fn quantity_gib(q: &Quantity) -> Option<f64> {
    let s = q.0.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    let n: f64 = number.parse().ok()?;
    let factor = match suffix {
        "" => 1.0 / 1024f64.powi(3),
        "Ki" => 1.0 / 1024f64.powi(2),
        "Mi" => 1.0 / 1024.0,
        "Gi" => 1.0,
        "Ti" => 1024.0,
        "Pi" => 1024f64.powi(2),
        "k" => 1e3 / 1024f64.powi(3),
        "M" => 1e6 / 1024f64.powi(3),
        "G" => 1e9 / 1024f64.powi(3),
        "T" => 1e12 / 1024f64.powi(3),
        _ => return None,
    };
    Some(n * factor)
}

/// Names of the data claims that are smaller than the spec asks for: the
/// operator grows them in place (the claim template cannot change).
pub fn claims_to_grow(claims: &[PersistentVolumeClaim], storage_gb: u32) -> Vec<String> {
    claims
        .iter()
        .filter(|c| {
            c.spec
                .as_ref()
                .and_then(|s| s.resources.as_ref())
                .and_then(|r| r.requests.as_ref())
                .and_then(|r| r.get("storage"))
                .and_then(quantity_gib)
                .is_some_and(|gib| gib < f64::from(storage_gb))
        })
        .filter_map(|c| c.metadata.name.clone())
        .collect()
}

mod external;
mod health;
mod status;
pub use external::*;
pub use health::*;
pub use status::*;

#[cfg(test)]
mod tests;
