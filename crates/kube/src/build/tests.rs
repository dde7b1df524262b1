use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::*;
use crate::crd::{PostgresInstanceSpec, PostgresInstanceStatus, StatusCondition};
use time::OffsetDateTime;

fn instance(name: &str, spec: PostgresInstanceSpec) -> PostgresInstance {
    let mut i = PostgresInstance::new(name, spec);
    i.metadata = ObjectMeta {
        name: Some(name.into()),
        namespace: Some("team-a".into()),
        uid: Some("11111111-2222-3333-4444-555555555555".into()),
        generation: Some(3),
        ..ObjectMeta::default()
    };
    i
}

fn spec() -> PostgresInstanceSpec {
    PostgresInstanceSpec {
        version: "16".into(),
        plan: "small".into(),
        storage_gb: 20,
        acl: vec!["10.0.0.0/8".into(), "192.0.2.0/24".into()],
        image: None,
        storage_class: None,
        external_access: false,
    }
}

fn built(i: &PostgresInstance) -> (ValidSpec, Desired) {
    let valid = validate(i, &BuildConfig::default()).unwrap();
    let desired = build(
        i,
        &valid,
        &Observed::default(),
        "fresh-password",
        "fresh-monitor-password",
    );
    (valid, desired)
}

fn assert_owned(meta: &ObjectMeta, name: &str) {
    assert_eq!(meta.name.as_deref(), Some(name));
    assert_eq!(meta.namespace.as_deref(), Some("team-a"));
    let owners = meta.owner_references.as_ref().unwrap();
    assert_eq!(owners.len(), 1);
    assert_eq!(owners[0].kind, "PostgresInstance");
    assert_eq!(owners[0].api_version, "strata.dev/v1alpha1");
    assert_eq!(owners[0].name, "orders");
    assert_eq!(owners[0].uid, "11111111-2222-3333-4444-555555555555");
    assert_eq!(owners[0].controller, Some(true));
    let labels = meta.labels.as_ref().unwrap();
    assert_eq!(labels["app.kubernetes.io/managed-by"], "strata-operator");
    assert_eq!(labels[INSTANCE_LABEL], "orders");
    assert_eq!(labels["app.kubernetes.io/instance"], "orders");
}

fn claim_size(sts: &StatefulSet) -> Quantity {
    let spec = sts.spec.as_ref().unwrap();
    let claim = &spec.volume_claim_templates.as_ref().unwrap()[0];
    claim
        .spec
        .as_ref()
        .unwrap()
        .resources
        .as_ref()
        .unwrap()
        .requests
        .as_ref()
        .unwrap()["storage"]
        .clone()
}

fn config_hash(d: &Desired) -> String {
    let template = &d.stateful_set.spec.as_ref().unwrap().template;
    template
        .metadata
        .as_ref()
        .unwrap()
        .annotations
        .as_ref()
        .unwrap()[CONFIG_HASH_ANNOTATION]
        .clone()
}

#[test]
fn validate_accepts_a_good_spec_and_resolves_the_image() {
    let valid = validate(&instance("orders", spec()), &BuildConfig::default()).unwrap();
    assert_eq!(valid.image, "postgres:16");
    assert_eq!(valid.plan.id, "small");
    assert_eq!(valid.acl.to_strings(), ["10.0.0.0/8", "192.0.2.0/24"]);
}

#[test]
fn validate_names_every_broken_rule() {
    let mut bad = spec();
    bad.version = "9".into();
    bad.plan = "huge".into();
    bad.acl = vec!["10.0.0.1/8".into()];
    let err = validate(&instance("Orders", bad), &BuildConfig::default()).unwrap_err();
    let fields: Vec<_> = err.errors.iter().map(|e| e.field.as_str()).collect();
    assert!(fields.contains(&"metadata.name"), "{fields:?}");
    assert!(fields.contains(&"spec.version"), "{fields:?}");
    assert!(fields.contains(&"spec.plan"), "{fields:?}");
    assert!(
        fields.iter().any(|f| f.starts_with("spec.acl")),
        "{fields:?}"
    );

    let mut small = spec();
    small.storage_gb = 1;
    let err = validate(&instance("orders", small), &BuildConfig::default()).unwrap_err();
    assert_eq!(err.errors[0].field, "spec.storageGb");
}

#[test]
fn secret_is_generated_once_and_rotated_on_request() {
    let i = instance("orders", spec());
    let (valid, d) = built(&i);
    assert_owned(&d.secret.metadata, "orders-credentials");
    assert!(d.new_password);
    let data = d.secret.data.as_ref().unwrap();
    assert_eq!(data["password"].0, b"fresh-password");
    assert_eq!(data["username"].0, b"app");
    assert_eq!(data["host"].0, b"orders.team-a.svc.cluster.local");
    assert_eq!(data["port"].0, b"5432");

    // Existing password, no rotation request: kept.
    let observed = Observed {
        password: Some("old".into()),
        rotation: Some(String::new()),
        claim_storage: None,
        ..Observed::default()
    };
    let d = build(&i, &valid, &observed, "other", "monitor-other");
    assert!(!d.new_password);
    assert_eq!(d.secret.data.as_ref().unwrap()["password"].0, b"old");

    // A new rotation token: a new password, and the token is recorded.
    let mut rotated = i.clone();
    rotated
        .metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(ROTATE_ANNOTATION.into(), "2026-11-24".into());
    let d = build(&rotated, &valid, &observed, "other", "monitor-other");
    assert!(d.new_password);
    assert_eq!(d.secret.data.as_ref().unwrap()["password"].0, b"other");
    assert_eq!(
        d.secret.metadata.annotations.as_ref().unwrap()[ROTATION_ANNOTATION],
        "2026-11-24"
    );
}

#[test]
fn config_map_carries_plan_settings_and_acl() {
    let (_, d) = built(&instance("orders", spec()));
    assert_owned(&d.config_map.metadata, "orders-config");
    let data = d.config_map.data.as_ref().unwrap();
    let conf = &data["postgresql.conf"];
    assert!(conf.contains("max_connections = '100'"), "{conf}");
    assert!(conf.contains("shared_buffers = '256MB'"), "{conf}");
    assert!(conf.contains("listen_addresses = '*'"));
    assert!(conf.contains("hba_file = '/etc/strata/pg_hba.conf'"));
    assert!(conf.contains("\nssl = on\n"), "{conf}");
    assert!(conf.contains("ssl_cert_file = '/etc/strata-tls/tls.crt'"));
    assert!(conf.contains("ssl_key_file = '/etc/strata-tls/tls.key'"));
    assert!(conf.contains("ssl_ca_file = '/etc/strata-tls/ca.crt'"));
    assert!(conf.contains("unix_socket_directories = '/var/run/postgresql'"));
    let hba = &data["pg_hba.conf"];
    // The ACL admits TLS connections only; without TLS, nothing from outside the pod.
    assert!(
        hba.contains("hostssl all all 10.0.0.0/8 scram-sha-256"),
        "{hba}"
    );
    assert!(
        hba.contains("hostssl all all 192.0.2.0/24 scram-sha-256"),
        "{hba}"
    );
    assert!(!hba.contains("host all all 10.0.0.0/8"), "{hba}");
    assert!(hba.ends_with("hostnossl all all 0.0.0.0/0 reject\nhostnossl all all ::/0 reject\n"));
    assert!(!hba.contains("all 0.0.0.0/0 scram"), "{hba}");
}

#[test]
fn services_headless_and_client() {
    let (_, d) = built(&instance("orders", spec()));
    assert_owned(&d.headless_service.metadata, "orders-headless");
    let headless = d.headless_service.spec.as_ref().unwrap();
    assert_eq!(headless.cluster_ip.as_deref(), Some("None"));
    assert_eq!(
        headless.selector.as_ref().unwrap(),
        &selector_labels("orders")
    );
    assert_owned(&d.client_service.metadata, "orders");
    let client = d.client_service.spec.as_ref().unwrap();
    assert_eq!(client.type_.as_deref(), Some("ClusterIP"));
    let ports = client.ports.as_ref().unwrap();
    assert_eq!(ports.len(), 1);
    assert_eq!(ports[0].port, 5432);
}

#[test]
fn stateful_set_follows_the_spec() {
    let (_, d) = built(&instance("orders", spec()));
    let sts = &d.stateful_set;
    assert_owned(&sts.metadata, "orders");
    assert_eq!(
        sts.metadata.annotations.as_ref().unwrap()[STORAGE_ANNOTATION],
        "20"
    );
    assert_eq!(claim_size(sts), Quantity("20Gi".into()));
    let spec = sts.spec.as_ref().unwrap();
    assert_eq!(spec.replicas, Some(1));
    assert_eq!(spec.service_name.as_deref(), Some("orders-headless"));
    let pod = spec.template.spec.as_ref().unwrap();
    let sc = pod.security_context.as_ref().unwrap();
    assert_eq!(sc.run_as_non_root, Some(true));
    assert_ne!(sc.run_as_user, Some(0));
    let names: Vec<_> = pod.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["postgres", "exporter", "credentials-agent"]);
    let pg = &pod.containers[0];
    assert_eq!(pg.image.as_deref(), Some("postgres:16"));
    let limits = pg.resources.as_ref().unwrap().limits.as_ref().unwrap();
    assert_eq!(limits["memory"], Quantity("1024Mi".into()));
    assert_eq!(limits["cpu"], Quantity("1".into()));
    assert!(pg.readiness_probe.is_some() && pg.liveness_probe.is_some());
    let csc = pg.security_context.as_ref().unwrap();
    assert_eq!(csc.allow_privilege_escalation, Some(false));
    let exporter = &pod.containers[1];
    assert!(
        exporter
            .image
            .as_deref()
            .unwrap()
            .contains("postgres-exporter")
    );
    assert_eq!(exporter.ports.as_ref().unwrap()[0].container_port, 9187);
    assert!(!config_hash(&d).is_empty());
}

fn mounts(c: &k8s_openapi::api::core::v1::Container) -> BTreeMap<String, (String, bool)> {
    c.volume_mounts
        .iter()
        .flatten()
        .map(|m| {
            (
                m.name.clone(),
                (m.mount_path.clone(), m.read_only.unwrap_or(false)),
            )
        })
        .collect()
}

#[test]
fn pod_mounts_tls_and_runs_the_credentials_agent() {
    let (_, d) = built(&instance("orders", spec()));
    let pod = d.stateful_set.spec.unwrap().template.spec.unwrap();
    let volumes: BTreeMap<_, _> = pod
        .volumes
        .iter()
        .flatten()
        .map(|v| (v.name.clone(), v.clone()))
        .collect();
    // TLS: the instance's Secret, root-owned files with the postgres group
    // (fsGroup 999) and mode 0640, which PostgreSQL accepts for a key.
    let tls = volumes["tls"].secret.as_ref().unwrap();
    assert_eq!(tls.secret_name.as_deref(), Some("orders-tls"));
    assert_eq!(tls.default_mode, Some(0o640));
    assert_eq!(pod.security_context.as_ref().unwrap().fs_group, Some(999));
    let creds = volumes["credentials"].secret.as_ref().unwrap();
    assert_eq!(creds.secret_name.as_deref(), Some("orders-credentials"));
    assert_eq!(creds.default_mode, Some(0o440));
    assert!(volumes["socket"].empty_dir.is_some());
    let token = volumes["agent-token"].projected.as_ref().unwrap();
    let sources = token.sources.as_ref().unwrap();
    assert!(sources[0].service_account_token.is_some());
    // No container but the agent gets a token.
    assert_eq!(pod.automount_service_account_token, Some(false));
    assert_eq!(pod.service_account_name.as_deref(), Some("orders-agent"));

    let pg = mounts(&pod.containers[0]);
    assert_eq!(pg["tls"], ("/etc/strata-tls".into(), true));
    assert_eq!(pg["socket"], ("/var/run/postgresql".into(), false));
    // pod-postgres reads the credentials from files; the token is the agent's.
    assert_eq!(pg["credentials"], ("/etc/strata-credentials".into(), true));
    assert!(!pg.contains_key("agent-token"));
    // The exporter sees the monitoring role's files, not the tenant's password.
    let exporter = mounts(&pod.containers[1]);
    assert_eq!(
        exporter.keys().collect::<Vec<_>>(),
        ["monitor-credentials"],
        "{exporter:?}"
    );

    let agent = &pod.containers[2];
    assert_eq!(
        agent.image.as_deref(),
        Some(BuildConfig::default().agent_image.as_str())
    );
    let args = agent.args.as_ref().unwrap();
    assert_eq!(args[0], "pod-agent");
    for expected in [
        "--credentials-dir=/etc/strata-credentials",
        "--tls-dir=/etc/strata-tls",
        "--config-dir=/etc/strata",
        "--socket-dir=/var/run/postgresql",
        "--port=5432",
        "--report-secret=orders-credentials",
    ] {
        assert!(args.iter().any(|a| a == expected), "{expected} in {args:?}");
    }
    let m = mounts(agent);
    assert_eq!(m["credentials"], ("/etc/strata-credentials".into(), true));
    assert_eq!(m["socket"], ("/var/run/postgresql".into(), false));
    assert_eq!(
        m["agent-token"],
        ("/var/run/secrets/kubernetes.io/serviceaccount".into(), true)
    );
    let sc = agent.security_context.as_ref().unwrap();
    assert_eq!(sc.run_as_user, Some(999));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
}

#[test]
fn the_agent_may_only_read_and_annotate_its_credentials_secret() {
    let (_, d) = built(&instance("orders", spec()));
    assert_owned(&d.agent_service_account.metadata, "orders-agent");
    assert_owned(&d.agent_role.metadata, "orders-agent");
    assert_owned(&d.agent_role_binding.metadata, "orders-agent");
    let rules = d.agent_role.rules.as_ref().unwrap();
    assert_eq!(rules.len(), 1);
    assert_eq!(
        rules[0].resources.as_deref(),
        Some(&["secrets".to_owned()][..])
    );
    assert_eq!(
        rules[0].resource_names.as_deref(),
        Some(&["orders-credentials".to_owned()][..])
    );
    assert_eq!(rules[0].verbs, ["get", "patch"]);
    let subject = &d.agent_role_binding.subjects.as_ref().unwrap()[0];
    assert_eq!(subject.kind, "ServiceAccount");
    assert_eq!(subject.name, "orders-agent");
    assert_eq!(subject.namespace.as_deref(), Some("team-a"));
    assert_eq!(d.agent_role_binding.role_ref.name, "orders-agent");
}

#[test]
fn the_api_may_only_read_the_instances_two_secrets() {
    let i = instance("orders", spec());
    let api: ServiceAccountRef = "strata-system/strata-api".parse().unwrap();
    let (role, binding) = api_access(&i, "orders", &api);
    assert_owned(&role.metadata, "orders-api");
    assert_owned(&binding.metadata, "orders-api");
    let rules = role.rules.as_ref().unwrap();
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].api_groups.as_deref(), Some(&[String::new()][..]));
    assert_eq!(
        rules[0].resources.as_deref(),
        Some(&["secrets".to_owned()][..])
    );
    assert_eq!(
        rules[0].resource_names.as_deref(),
        Some(&["orders-credentials".to_owned(), "orders-tls".to_owned()][..])
    );
    assert_eq!(rules[0].verbs, ["get"]);
    assert_eq!(binding.role_ref.kind, "Role");
    assert_eq!(binding.role_ref.name, "orders-api");
    let subjects = binding.subjects.as_ref().unwrap();
    assert_eq!(subjects.len(), 1);
    assert_eq!(subjects[0].kind, "ServiceAccount");
    assert_eq!(subjects[0].name, "strata-api");
    assert_eq!(subjects[0].namespace.as_deref(), Some("strata-system"));
}

#[test]
fn service_account_references_are_namespace_slash_name() {
    for bad in ["", "strata-api", "/strata-api", "strata-system/", "a/b/c"] {
        assert!(bad.parse::<ServiceAccountRef>().is_err(), "{bad:?}");
    }
}

#[test]
fn credentials_applied_follows_the_agents_report() {
    let i = instance("orders", spec());
    let valid = validate(&i, &BuildConfig::default()).unwrap();
    let applied = |observed: &Observed, rotate: &str| {
        let mut i = i.clone();
        i.metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(ROTATE_ANNOTATION.into(), rotate.into());
        let d = build(&i, &valid, observed, "fresh", "monitor-fresh");
        let now = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let mut st = status(&i, Some(&valid), &Outcome::Applied(None), now);
        set_credentials_applied(&mut st, &i, observed, &d, now);
        let c = st
            .conditions
            .iter()
            .find(|c| c.type_ == CREDENTIALS_APPLIED)
            .unwrap()
            .clone();
        (c.status, d.secret.data.unwrap()[ROTATION_KEY].0.clone())
    };
    // A fresh password: nothing applied it yet.
    let (status, token) = applied(&Observed::default(), "r1");
    assert_eq!(status, "False");
    assert_eq!(token, b"r1");
    let current = Observed {
        password: Some("p".into()),
        rotation: Some("r1".into()),
        ..Observed::default()
    };
    assert_eq!(applied(&current, "r1").0, "False");
    let reported = Observed {
        applied_rotation: Some("r1".into()),
        ..current.clone()
    };
    assert_eq!(applied(&reported, "r1").0, "True");
    // A new rotation request: False again until the agent reports it.
    assert_eq!(applied(&reported, "r2").0, "False");
}

#[test]
fn image_override_and_config_hash_changes_with_plan() {
    let mut s = spec();
    s.image = Some("registry.example/pg:16.4".into());
    let (_, a) = built(&instance("orders", s.clone()));
    let pod = a
        .stateful_set
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap();
    assert_eq!(
        pod.containers[0].image.as_deref(),
        Some("registry.example/pg:16.4")
    );
    s.plan = "medium".into();
    let (_, b) = built(&instance("orders", s));
    assert_ne!(config_hash(&a), config_hash(&b));
}

#[test]
fn claim_template_keeps_the_size_it_was_created_with() {
    let i = instance("orders", spec());
    let valid = validate(&i, &BuildConfig::default()).unwrap();
    let observed = Observed {
        claim_storage: Some(Quantity("10Gi".into())),
        ..Observed::default()
    };
    let d = build(&i, &valid, &observed, "p", "monitor-p");
    assert_eq!(claim_size(&d.stateful_set), Quantity("10Gi".into()));
    assert_eq!(
        d.stateful_set.metadata.annotations.as_ref().unwrap()[STORAGE_ANNOTATION],
        "20"
    );
}

#[test]
fn claim_template_keeps_the_class_it_was_created_with() {
    let mut s = spec();
    s.storage_class = Some("slow".into());
    let i = instance("orders", s);
    let valid = validate(&i, &BuildConfig::default()).unwrap();
    let class = |observed: &Observed| {
        let d = build(&i, &valid, observed, "p", "monitor-p");
        let spec = d.stateful_set.spec.unwrap();
        spec.volume_claim_templates.unwrap()[0]
            .spec
            .as_ref()
            .unwrap()
            .storage_class_name
            .clone()
    };
    // A new StatefulSet takes the spec's class.
    assert_eq!(class(&Observed::default()), Some("slow".into()));
    // An existing one keeps its own, also "the cluster default".
    let existing = |c: Option<&str>| Observed {
        claim_storage_class: Some(c.map(str::to_owned)),
        ..Observed::default()
    };
    assert_eq!(class(&existing(Some("fast"))), Some("fast".into()));
    assert_eq!(class(&existing(None)), None);
}

#[test]
fn pdb_lets_a_node_drain_evict_the_single_server() {
    let (_, d) = built(&instance("orders", spec()));
    assert_owned(&d.pdb.metadata, "orders");
    let spec = d.pdb.spec.as_ref().unwrap();
    // One replica: `minAvailable: 1` would leave zero disruptions allowed
    // and block every drain; one unavailable pod at a time allows it.
    assert_eq!(
        d.stateful_set.spec.as_ref().unwrap().replicas,
        Some(1),
        "the budget below is chosen for one replica"
    );
    assert_eq!(spec.max_unavailable, Some(IntOrString::Int(1)));
    assert_eq!(spec.min_available, None);
    assert_eq!(
        spec.selector
            .as_ref()
            .unwrap()
            .match_labels
            .as_ref()
            .unwrap(),
        &selector_labels("orders")
    );
}

#[test]
fn network_policy_follows_the_acl() {
    let (_, d) = built(&instance("orders", spec()));
    assert_owned(&d.network_policy.metadata, "orders");
    let ingress = d
        .network_policy
        .spec
        .as_ref()
        .unwrap()
        .ingress
        .as_ref()
        .unwrap();
    let cidrs: Vec<_> = ingress[0]
        .from
        .as_ref()
        .unwrap()
        .iter()
        .map(|p| p.ip_block.as_ref().unwrap().cidr.as_str())
        .collect();
    assert_eq!(cidrs, ["10.0.0.0/8", "192.0.2.0/24"]);
    assert_eq!(
        ingress[0].ports.as_ref().unwrap()[0].port,
        Some(IntOrString::Int(5432))
    );

    // Nothing but the ACL reaches PostgreSQL, and without a monitoring
    // namespace nothing reaches the metrics port.
    assert_eq!(ingress.len(), 1, "{ingress:?}");

    let mut s = spec();
    s.acl = vec![];
    let (_, d) = built(&instance("orders", s));
    let ingress = d.network_policy.spec.as_ref().unwrap().ingress.clone();
    assert_eq!(
        ingress,
        Some(vec![]),
        "an empty ACL and no monitoring: nobody"
    );
}

#[test]
fn only_the_monitoring_namespace_reaches_the_metrics_port() {
    let config = BuildConfig {
        monitoring_namespace: Some("monitoring".into()),
        ..BuildConfig::default()
    };
    let i = instance("orders", spec());
    let valid = validate(&i, &config).unwrap();
    let d = build(&i, &valid, &Observed::default(), "p", "m");
    let ingress = d.network_policy.spec.unwrap().ingress.unwrap();
    let metrics: Vec<_> = ingress
        .iter()
        .filter(|r| {
            r.ports
                .iter()
                .flatten()
                .any(|p| p.port == Some(IntOrString::Int(9187)))
        })
        .collect();
    assert_eq!(metrics.len(), 1, "{ingress:?}");
    let peers = metrics[0].from.as_ref().unwrap();
    assert_eq!(peers.len(), 1);
    let selector = peers[0].namespace_selector.as_ref().unwrap();
    assert_eq!(
        selector.match_labels.as_ref().unwrap(),
        &BTreeMap::from([(
            "kubernetes.io/metadata.name".to_owned(),
            "monitoring".to_owned()
        )])
    );
    assert!(peers[0].ip_block.is_none() && peers[0].pod_selector.is_none());
    // The PostgreSQL port stays the ACL's alone.
    let postgres = ingress
        .iter()
        .find(|r| r.ports.as_ref().unwrap()[0].port == Some(IntOrString::Int(5432)))
        .unwrap();
    assert!(postgres.from.iter().flatten().all(|p| p.ip_block.is_some()));
}

fn ready_sts(ready: i32) -> StatefulSet {
    StatefulSet {
        metadata: ObjectMeta {
            generation: Some(1),
            ..ObjectMeta::default()
        },
        status: Some(k8s_openapi::api::apps::v1::StatefulSetStatus {
            ready_replicas: Some(ready),
            replicas: 1,
            ..Default::default()
        }),
        ..StatefulSet::default()
    }
}

fn condition<'a>(s: &'a PostgresInstanceStatus, kind: &str) -> &'a StatusCondition {
    s.conditions.iter().find(|c| c.type_ == kind).unwrap()
}

#[test]
fn status_goes_from_provisioning_to_ready_keeping_transition_times() {
    let mut i = instance("orders", spec());
    let valid = validate(&i, &BuildConfig::default()).unwrap();
    let t0 = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
    let t1 = OffsetDateTime::from_unix_timestamp(1_700_000_100).unwrap();
    let t2 = OffsetDateTime::from_unix_timestamp(1_700_000_200).unwrap();

    let s0 = status(&i, Some(&valid), &Outcome::Applied(Some(&ready_sts(0))), t0);
    assert_eq!(s0.phase.as_deref(), Some("Provisioning"));
    assert_eq!(s0.observed_generation, Some(3));
    assert_eq!(condition(&s0, READY).status, "False");
    assert_eq!(condition(&s0, PROGRESSING).status, "True");
    assert!(s0.endpoint.is_none());
    assert_eq!(s0.credentials_secret.as_deref(), Some("orders-credentials"));

    i.status = Some(s0);
    let s1 = status(&i, Some(&valid), &Outcome::Applied(Some(&ready_sts(1))), t1);
    assert_eq!(s1.phase.as_deref(), Some("Ready"));
    let endpoint = s1.endpoint.clone().unwrap();
    assert_eq!(endpoint.host, "orders.team-a.svc.cluster.local");
    assert_eq!(endpoint.port, 5432);
    assert_eq!(condition(&s1, READY).status, "True");
    assert_eq!(
        condition(&s1, READY).last_transition_time,
        "2023-11-14T22:15:00Z"
    );
    // Degraded stayed False: its transition time is still t0.
    assert_eq!(
        condition(&s1, DEGRADED).last_transition_time,
        "2023-11-14T22:13:20Z"
    );

    i.status = Some(s1.clone());
    let s2 = status(&i, Some(&valid), &Outcome::Applied(Some(&ready_sts(1))), t2);
    assert_eq!(s2, s1, "a steady state produces the same status");
}

#[test]
fn invalid_spec_is_reported_as_failed_and_degraded() {
    let mut bad = spec();
    bad.plan = "huge".into();
    let i = instance("orders", bad);
    let err = validate(&i, &BuildConfig::default()).unwrap_err();
    let s = status(
        &i,
        None,
        &Outcome::Invalid(&err),
        OffsetDateTime::UNIX_EPOCH,
    );
    assert_eq!(s.phase.as_deref(), Some("Failed"));
    assert_eq!(condition(&s, DEGRADED).status, "True");
    assert_eq!(condition(&s, DEGRADED).reason, "InvalidSpec");
    assert!(condition(&s, DEGRADED).message.contains("huge"));
}

#[test]
fn claims_smaller_than_the_spec_are_grown() {
    let claim = |name: &str, size: &str| PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_owned(),
                    Quantity(size.into()),
                )])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    };
    let claims = [
        claim("small", "20Gi"),
        claim("same", "50Gi"),
        claim("mebibytes", "51200Mi"),
        claim("decimal", "10G"),
        claim("bigger", "1Ti"),
    ];
    assert_eq!(claims_to_grow(&claims, 50), ["small", "decimal"]);
    assert_eq!(quantity_gib(&Quantity("1536Mi".into())), Some(1.5));
    assert_eq!(quantity_gib(&Quantity("lots".into())), None);
}

fn pod_spec(d: &Desired) -> k8s_openapi::api::core::v1::PodSpec {
    d.stateful_set.spec.clone().unwrap().template.spec.unwrap()
}

#[test]
fn postgres_runs_strata_copied_in_by_an_init_container_and_no_password_is_in_the_environment() {
    let (_, d) = built(&instance("orders", spec()));
    let pod = pod_spec(&d);
    let init = pod.init_containers.as_ref().unwrap();
    assert_eq!(init.len(), 1);
    assert_eq!(
        init[0].image.as_deref(),
        Some(BuildConfig::default().agent_image.as_str())
    );
    assert_eq!(
        init[0].args.as_deref().unwrap(),
        ["copy-self", "--to=/strata/strata"]
    );
    assert_eq!(mounts(&init[0])["strata-bin"], ("/strata".into(), false));
    let volumes = pod.volumes.as_ref().unwrap();
    let bin = volumes.iter().find(|v| v.name == "strata-bin").unwrap();
    assert!(bin.empty_dir.is_some());

    let pg = &pod.containers[0];
    assert_eq!(pg.image.as_deref(), Some("postgres:16"));
    let command = pg.command.as_ref().unwrap();
    assert_eq!(command[..2], ["/strata/strata", "pod-postgres"]);
    for expected in [
        "--pg-version=16",
        "--data-dir=/var/lib/postgresql/data/pgdata",
        "--config-file=/etc/strata/postgresql.conf",
        "--credentials-dir=/etc/strata-credentials",
        "--socket-dir=/var/run/postgresql",
        "--exporter-metrics=http://127.0.0.1:9187/metrics",
    ] {
        assert!(
            command.iter().any(|a| a == expected),
            "{expected} in {command:?}"
        );
    }
    // The image's CMD is not appended to pod-postgres' arguments.
    assert_eq!(pg.args.as_deref(), Some(&[][..]));
    assert_eq!(mounts(pg)["strata-bin"], ("/strata".into(), true));

    // No container, init container included, gets a password (or any
    // Secret value) through its environment.
    for c in pod.containers.iter().chain(init) {
        for e in c.env.iter().flatten() {
            let from_secret = e
                .value_from
                .as_ref()
                .is_some_and(|v| v.secret_key_ref.is_some());
            assert!(!from_secret, "{}: {} comes from a Secret", c.name, e.name);
            assert!(
                !e.name.contains("PASSWORD") && !e.name.ends_with("_PASS"),
                "{}: {}",
                c.name,
                e.name
            );
            // The passwords `built` put into the Secret appear nowhere.
            let value = e.value.as_deref().unwrap_or_default();
            assert!(
                !value.contains("fresh-password") && !value.contains("fresh-monitor-password"),
                "{}: {e:?}",
                c.name
            );
        }
    }
}

#[test]
fn probes_wait_for_a_long_recovery_and_the_exporter_must_reach_the_database() {
    let (_, d) = built(&instance("orders", spec()));
    let pod = pod_spec(&d);
    let pg = &pod.containers[0];
    let probes_port = pg
        .ports
        .iter()
        .flatten()
        .find(|p| p.name.as_deref() == Some("probes"))
        .unwrap();
    assert_eq!(probes_port.container_port, i32::from(PROBE_PORT));
    let http = |p: &Probe| {
        let get = p.http_get.as_ref().unwrap();
        (get.path.clone().unwrap(), get.port.clone())
    };
    let startup = pg.startup_probe.as_ref().unwrap();
    assert_eq!(
        http(startup),
        ("/startupz".into(), IntOrString::String("probes".into()))
    );
    // Liveness only begins once startup succeeded; startup may take half an
    // hour and more (crash recovery of a large cluster).
    let budget = startup.period_seconds.unwrap() * startup.failure_threshold.unwrap();
    assert!(budget >= 30 * 60, "startup budget {budget}s");
    let liveness = pg.liveness_probe.as_ref().unwrap();
    assert_eq!(http(liveness).0, "/livez");
    assert!(liveness.initial_delay_seconds.is_none());
    assert_eq!(http(pg.readiness_probe.as_ref().unwrap()).0, "/readyz");

    let exporter = &pod.containers[1];
    let ready = exporter.readiness_probe.as_ref().unwrap();
    assert_eq!(
        http(ready),
        ("/exporterz".into(), IntOrString::Int(i32::from(PROBE_PORT)))
    );
    let env: BTreeMap<_, _> = exporter
        .env
        .iter()
        .flatten()
        .map(|e| (e.name.as_str(), e.value.clone().unwrap_or_default()))
        .collect();
    assert_eq!(
        env["DATA_SOURCE_URI"],
        "127.0.0.1:5432/postgres?sslmode=disable"
    );
    assert_eq!(env["DATA_SOURCE_USER_FILE"], "/etc/strata-monitor/username");
    assert_eq!(env["DATA_SOURCE_PASS_FILE"], "/etc/strata-monitor/password");
    // Those files are the monitoring role's keys of the credentials Secret.
    let volumes = pod.volumes.as_ref().unwrap();
    let monitor = volumes
        .iter()
        .find(|v| v.name == "monitor-credentials")
        .unwrap()
        .secret
        .as_ref()
        .unwrap();
    assert_eq!(monitor.secret_name.as_deref(), Some("orders-credentials"));
    let items: Vec<_> = monitor
        .items
        .iter()
        .flatten()
        .map(|i| (i.key.as_str(), i.path.as_str()))
        .collect();
    assert_eq!(
        items,
        [
            ("monitor-username", "username"),
            ("monitor-password", "password")
        ]
    );
}

#[test]
fn the_monitoring_password_is_generated_once_and_rotations_keep_it() {
    let i = instance("orders", spec());
    let (valid, d) = built(&i);
    let data = d.secret.data.as_ref().unwrap();
    assert_eq!(data[MONITOR_USERNAME_KEY].0, b"strata_monitor");
    assert_eq!(data[MONITOR_PASSWORD_KEY].0, b"fresh-monitor-password");

    let observed = Observed {
        password: Some("tenant".into()),
        monitor_password: Some(strata_core::Secret::new("kept-monitor")),
        rotation: Some(String::new()),
        ..Observed::default()
    };
    let mut rotated = i.clone();
    rotated
        .metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(ROTATE_ANNOTATION.into(), "r2".into());
    let d = build(&rotated, &valid, &observed, "new-tenant", "new-monitor");
    let data = d.secret.data.as_ref().unwrap();
    assert_eq!(data["password"].0, b"new-tenant");
    assert_eq!(data[MONITOR_PASSWORD_KEY].0, b"kept-monitor");
    // Debug output of what the operator observed does not show it.
    assert!(!format!("{observed:?}").contains("kept-monitor"));
}

#[test]
fn an_acl_change_does_not_roll_the_pod_a_restart_setting_does() {
    let (_, a) = built(&instance("orders", spec()));
    let mut other_acl = spec();
    other_acl.acl = vec!["172.16.0.0/12".into()];
    let (_, b) = built(&instance("orders", other_acl));
    let hba = |d: &Desired| d.config_map.data.as_ref().unwrap()["pg_hba.conf"].clone();
    assert_ne!(hba(&a), hba(&b));
    assert_eq!(config_hash(&a), config_hash(&b));

    let conf = postgresql_conf(&valid_plan("small"));
    // A reloadable setting does not change the hash; a restart setting does.
    let reloadable = conf.replace("work_mem = '", "work_mem = '1");
    assert_ne!(reloadable, conf);
    assert_eq!(restart_config_hash(&conf), restart_config_hash(&reloadable));
    let restart = conf.replace("shared_buffers = '", "shared_buffers = '1");
    assert_ne!(restart_config_hash(&conf), restart_config_hash(&restart));
}

fn valid_plan(id: &str) -> Plan {
    PlanCatalog::default().get(id).unwrap().clone()
}

#[test]
fn pg_hba_keeps_the_superuser_on_the_socket_and_the_monitor_on_loopback() {
    let (_, d) = built(&instance("orders", spec()));
    let hba = &d.config_map.data.as_ref().unwrap()["pg_hba.conf"];
    let lines: Vec<&str> = hba.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(lines[0], "local all postgres peer");
    assert_eq!(
        lines[1],
        "host postgres strata_monitor 127.0.0.1/32 scram-sha-256"
    );
    // Before any tenant line: neither role from anywhere else over TCP.
    assert_eq!(
        lines[2],
        "host all postgres,strata_monitor 0.0.0.0/0 reject"
    );
    assert_eq!(lines[3], "host all postgres,strata_monitor ::/0 reject");
    assert!(lines[4].starts_with("hostssl all all 10.0.0.0/8"), "{hba}");
    // Nobody else on the socket, nobody trusted.
    assert!(!hba.contains("trust"), "{hba}");
    assert_eq!(hba.matches("local ").count(), 1, "{hba}");
}
