//! The Kubernetes `InstanceRuntime` behind `strata api --runtime kubernetes`:
//! a namespace per project, a `PostgresInstance` per instance, credentials
//! from the operator's Secret, status from the resource. The operator does
//! the work; this side only writes and reads resources.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{Namespace, Secret as KubeSecret};
use k8s_openapi::api::events::v1::Event as KubeEvent;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use strata_core::events::PublishedEvent;
use strata_core::instance::ENGINE;
use strata_core::{
    Condition, Credentials, Endpoint, Instance, InstanceName, InstanceRuntime, InstanceSpec,
    InstanceStatus, Page, PageRequest, Phase, PlanCatalog, ProjectName, RuntimeError,
    RuntimeResult, Secret, ServiceEvent, UpdateInstance, VersionCatalog,
};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::build::{APPLIED_ROTATION_ANNOTATION, FIELD_MANAGER, ROTATION_ANNOTATION, secret_name};
use crate::crd::{PostgresInstance, PostgresInstanceSpec, ROTATE_ANNOTATION, SUPPORTED_VERSIONS};
use crate::events::service_event;

/// Label on the namespaces this runtime creates: the project they belong to.
pub const PROJECT_LABEL: &str = "strata.dev/project";

/// `InstanceRuntime` on a Kubernetes cluster running the operator.
pub struct KubeRuntime {
    client: Client,
    plans: PlanCatalog,
    versions: VersionCatalog,
    namespace_prefix: String,
    events: broadcast::Sender<PublishedEvent>,
    /// How long `rotate_credentials` waits for the operator and, when a
    /// server runs, for its credentials agent.
    pub rotate_timeout: Duration,
}

impl KubeRuntime {
    /// Projects live in namespaces named `<namespace_prefix><project>`.
    pub fn new(client: Client, namespace_prefix: &str) -> Self {
        let majors = SUPPORTED_VERSIONS
            .iter()
            .filter_map(|v| v.parse().ok())
            .collect();
        Self {
            client,
            plans: PlanCatalog::default(),
            versions: VersionCatalog::from_majors(majors),
            namespace_prefix: namespace_prefix.to_owned(),
            events: broadcast::channel(256).0,
            rotate_timeout: Duration::from_secs(30),
        }
    }

    /// Offers only these majors (each one of [`SUPPORTED_VERSIONS`]): the
    /// ones the installation's PostgreSQL image has.
    #[must_use]
    pub fn offering(mut self, majors: Vec<u32>) -> Self {
        self.versions = VersionCatalog::from_majors(majors);
        self
    }

    /// The watch that feeds `subscribe`: the operator's Events about
    /// instances in project namespaces, from now on (what happened before is
    /// read with `events`). Runs until `shutdown` resolves; spawn it.
    pub fn watch_events(
        &self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> impl Future<Output = ()> + Send + 'static {
        crate::events::watch(
            self.client.clone(),
            self.namespace_prefix.clone(),
            self.events.clone(),
            shutdown,
        )
    }

    /// The namespace of a project.
    pub fn namespace(&self, project: &ProjectName) -> RuntimeResult<String> {
        let ns = format!("{}{project}", self.namespace_prefix);
        if ns.len() > 63 {
            return Err(RuntimeError::Invalid(strata_core::ValidationError::field(
                "project",
                format!(
                    "too long for a Kubernetes namespace with prefix {:?}",
                    self.namespace_prefix
                ),
            )));
        }
        Ok(ns)
    }

    fn api(&self, project: &ProjectName) -> RuntimeResult<Api<PostgresInstance>> {
        Ok(Api::namespaced(
            self.client.clone(),
            &self.namespace(project)?,
        ))
    }

    async fn ensure_namespace(&self, project: &ProjectName) -> RuntimeResult<()> {
        let name = self.namespace(project)?;
        let api: Api<Namespace> = Api::all(self.client.clone());
        let ns: Namespace = serde_json::from_value(json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": name,
                "labels": {
                    PROJECT_LABEL: project.as_str(),
                    "app.kubernetes.io/managed-by": "strata",
                },
            },
        }))
        .map_err(|e| RuntimeError::internal("building the project's namespace", e))?;
        match api.create(&PostParams::default(), &ns).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 409 => {
                let existing = api.get(&name).await.map_err(unavailable)?;
                if existing.labels().get(PROJECT_LABEL).map(String::as_str)
                    == Some(project.as_str())
                {
                    Ok(())
                } else {
                    Err(RuntimeError::Conflict(format!(
                        "namespace {name} exists and does not belong to project {project}"
                    )))
                }
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    /// One attempt of `update`: `None` when the resource changed between
    /// its read and the patch.
    async fn update_once(
        &self,
        project: &ProjectName,
        name: &InstanceName,
        change: &UpdateInstance,
    ) -> RuntimeResult<Option<Instance>> {
        let current = self.fetch(project, name).await?;
        let current_instance = to_instance(project, &current);
        if !current_instance.status.phase.accepts_update() {
            return Err(RuntimeError::Conflict(format!(
                "instance {name} is {}; try again when it is Ready",
                current_instance.status.phase
            )));
        }
        let spec = current_instance.spec()?;
        let next = change.clone().apply(&spec, &self.plans)?;
        // Labels: replace the set; merge patch removes a key given as null.
        let mut labels: BTreeMap<String, serde_json::Value> = current
            .labels()
            .keys()
            .map(|k| (k.clone(), serde_json::Value::Null))
            .collect();
        for (k, v) in &next.labels {
            labels.insert(k.clone(), json!(v));
        }
        let patch = json!({
            "metadata": {
                "labels": labels,
                "resourceVersion": current.resource_version(),
            },
            "spec": {
                "plan": next.plan,
                "storageGb": next.storage_gb,
                "acl": next.acl.to_strings(),
                "externalAccess": next.external_access,
            },
        });
        match self
            .api(project)?
            .patch(
                name.as_str(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(updated) => Ok(Some(to_instance(project, &updated))),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(None),
            Err(kube::Error::Api(e)) if e.code == 422 => Err(RuntimeError::Invalid(
                strata_core::ValidationError::field("", e.message),
            )),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn fetch(
        &self,
        project: &ProjectName,
        name: &InstanceName,
    ) -> RuntimeResult<PostgresInstance> {
        self.api(project)?
            .get_opt(name.as_str())
            .await
            .map_err(unavailable)?
            .ok_or_else(|| RuntimeError::NotFound(format!("instance {name}")))
    }
}

#[allow(clippy::needless_pass_by_value)] // used as `map_err(unavailable)`
fn unavailable(e: kube::Error) -> RuntimeError {
    RuntimeError::Unavailable(format!("Kubernetes API: {e}"))
}

pub(crate) fn parse_time(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

/// The API's view of a resource.
pub fn to_instance(project: &ProjectName, pi: &PostgresInstance) -> Instance {
    let created_at = pi
        .metadata
        .creation_timestamp
        .as_ref()
        .and_then(|t| parse_time(&t.0.to_string()))
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let status = pi.status.clone().unwrap_or_default();
    let conditions: Vec<Condition> = status
        .conditions
        .iter()
        .map(crate::build::to_core)
        .collect();
    let updated_at = conditions
        .iter()
        .map(|c| c.last_transition_time)
        .max()
        .unwrap_or(created_at)
        .max(created_at);
    let deleting = pi.metadata.deletion_timestamp.is_some();
    let phase = if deleting {
        Phase::Deleting
    } else {
        status
            .phase
            .as_deref()
            .and_then(Phase::parse)
            .unwrap_or(Phase::Provisioning)
    };
    Instance {
        id: pi
            .metadata
            .uid
            .as_deref()
            .and_then(|u| Uuid::parse_str(u).ok())
            .unwrap_or_default(),
        name: pi.name_any(),
        project: project.to_string(),
        engine: ENGINE.to_owned(),
        version: pi.spec.version.clone(),
        plan: pi.spec.plan.clone(),
        storage_gb: pi.spec.storage_gb,
        acl: pi.spec.acl.clone(),
        external_access: pi.spec.external_access,
        labels: pi.labels().clone(),
        status: InstanceStatus {
            phase,
            message: status.message.unwrap_or_default(),
            endpoint: status.endpoint.map(|e| Endpoint {
                host: e.host,
                port: e.port,
            }),
            external_endpoint: status.external_endpoint.map(|e| Endpoint {
                host: e.host,
                port: e.port,
            }),
            conditions,
            storage_used_bytes: None,
        },
        created_at,
        updated_at,
    }
}

fn secret_value(secret: &KubeSecret, key: &str) -> Option<String> {
    secret
        .data
        .as_ref()?
        .get(key)
        .and_then(|b| String::from_utf8(b.0.clone()).ok())
}

/// The credentials in `secret`, with the CA certificate that signed the
/// server's (the instance's TLS Secret's `ca.crt`).
fn credentials_from(secret: &KubeSecret, ca_certificate: String) -> RuntimeResult<Credentials> {
    let get = |k: &str| {
        secret_value(secret, k)
            .ok_or_else(|| RuntimeError::Unavailable(format!("credentials are missing {k}")))
    };
    let port = get("port")?
        .parse()
        .map_err(|e| RuntimeError::internal("credentials carry a bad port", e))?;
    Ok(Credentials::new(
        &get("username")?,
        Secret::new(get("password")?),
        &get("database")?,
        &get("host")?,
        port,
        ca_certificate,
    ))
}

impl KubeRuntime {
    /// The CA certificate in the instance's TLS Secret (`<name>-tls`).
    async fn ca_certificate(
        &self,
        project: &ProjectName,
        name: &InstanceName,
    ) -> RuntimeResult<String> {
        let secrets: Api<KubeSecret> =
            Api::namespaced(self.client.clone(), &self.namespace(project)?);
        secrets
            .get_opt(&crate::tls::tls_secret_name(name.as_str()))
            .await
            .map_err(unavailable)?
            .as_ref()
            .and_then(crate::tls::ca_certificate)
            .ok_or_else(|| {
                RuntimeError::Unavailable(format!(
                    "the certificate of {name} is not issued yet; try again shortly"
                ))
            })
    }
}

#[async_trait]
impl InstanceRuntime for KubeRuntime {
    fn plans(&self) -> &PlanCatalog {
        &self.plans
    }

    fn versions(&self) -> &VersionCatalog {
        &self.versions
    }

    fn offers_external_access(&self) -> bool {
        true
    }

    async fn create(&self, project: &ProjectName, spec: InstanceSpec) -> RuntimeResult<Instance> {
        self.ensure_namespace(project).await?;
        let mut pi = PostgresInstance::new(
            spec.name.as_str(),
            PostgresInstanceSpec {
                version: spec.version,
                plan: spec.plan,
                storage_gb: spec.storage_gb,
                acl: spec.acl.to_strings(),
                image: None,
                storage_class: None,
                external_access: spec.external_access,
            },
        );
        pi.metadata.labels = Some(spec.labels);
        match self.api(project)?.create(&PostParams::default(), &pi).await {
            Ok(created) => Ok(to_instance(project, &created)),
            Err(kube::Error::Api(e)) if e.code == 409 => Err(RuntimeError::Conflict(format!(
                "instance {} already exists",
                spec.name
            ))),
            Err(kube::Error::Api(e)) if e.code == 422 => Err(RuntimeError::Invalid(
                strata_core::ValidationError::field("", e.message),
            )),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn get(&self, project: &ProjectName, name: &InstanceName) -> RuntimeResult<Instance> {
        Ok(to_instance(project, &self.fetch(project, name).await?))
    }

    async fn list(
        &self,
        project: &ProjectName,
        labels: &[(String, String)],
        page: PageRequest,
    ) -> RuntimeResult<Page<Instance>> {
        let selector = labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut params = ListParams::default();
        if !selector.is_empty() {
            params = params.labels(&selector);
        }
        if page.size > 0 {
            params = params.limit(page.size);
        }
        if let Some(token) = page.token {
            params = params.continue_token(&token);
        }
        let list = match self.api(project)?.list(&params).await {
            Ok(list) => list,
            Err(kube::Error::Api(e)) if e.code == 410 => {
                return Err(RuntimeError::Invalid(strata_core::ValidationError::field(
                    "page_token",
                    "expired; list again from the start",
                )));
            }
            Err(e) => return Err(unavailable(e)),
        };
        Ok(Page {
            items: list
                .items
                .iter()
                .map(|pi| to_instance(project, pi))
                .collect(),
            next_page_token: list.metadata.continue_.filter(|t| !t.is_empty()),
        })
    }

    async fn update(
        &self,
        project: &ProjectName,
        name: &InstanceName,
        change: UpdateInstance,
    ) -> RuntimeResult<Instance> {
        // The patch carries the resourceVersion it was computed from; a
        // write in between (mostly the operator's status) makes the server
        // refuse it, and the change is computed again on the newer resource:
        // a PATCH changes only the fields it names.
        for _ in 0..strata_core::runtime::UPDATE_ATTEMPTS {
            if let Some(updated) = self.update_once(project, name, &change).await? {
                return Ok(updated);
            }
        }
        Err(RuntimeError::Conflict(format!(
            "instance {name} changed concurrently; try again"
        )))
    }

    async fn delete(&self, project: &ProjectName, name: &InstanceName) -> RuntimeResult<Instance> {
        let current = self.fetch(project, name).await?;
        match self
            .api(project)?
            .delete(name.as_str(), &DeleteParams::background())
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(unavailable(e)),
        }
        let mut instance = to_instance(project, &current);
        instance.status.set_phase(
            Phase::Deleting,
            "DeleteRequested",
            "deleting the instance",
            OffsetDateTime::now_utc(),
        );
        Ok(instance)
    }

    async fn credentials(
        &self,
        project: &ProjectName,
        name: &InstanceName,
    ) -> RuntimeResult<Credentials> {
        self.fetch(project, name).await?;
        let secrets: Api<KubeSecret> =
            Api::namespaced(self.client.clone(), &self.namespace(project)?);
        let secret = secrets
            .get_opt(&secret_name(name.as_str()))
            .await
            .map_err(unavailable)?
            .ok_or_else(|| {
                RuntimeError::Unavailable(format!(
                    "the credentials of {name} are not generated yet; try again shortly"
                ))
            })?;
        credentials_from(&secret, self.ca_certificate(project, name).await?)
    }

    async fn rotate_credentials(
        &self,
        project: &ProjectName,
        name: &InstanceName,
    ) -> RuntimeResult<Credentials> {
        let instance = self.fetch(project, name).await?;
        // A running server must use the new password before the rotation is
        // done: its credentials agent reports that on the Secret. Without a
        // server (provisioning, failed) the agent applies it when one starts.
        let serving = instance.status.as_ref().and_then(|s| s.phase.as_deref())
            == Some(Phase::Ready.as_str());
        let token = Uuid::new_v4().to_string();
        let patch = json!({ "metadata": { "annotations": { ROTATE_ANNOTATION: token } } });
        self.api(project)?
            .patch(
                name.as_str(),
                &PatchParams {
                    field_manager: Some(format!("{FIELD_MANAGER}-api")),
                    ..PatchParams::default()
                },
                &Patch::Merge(&patch),
            )
            .await
            .map_err(unavailable)?;
        let secrets: Api<KubeSecret> =
            Api::namespaced(self.client.clone(), &self.namespace(project)?);
        let deadline = tokio::time::Instant::now() + self.rotate_timeout;
        let mut rotated = false;
        loop {
            if let Some(secret) = secrets
                .get_opt(&secret_name(name.as_str()))
                .await
                .map_err(unavailable)?
            {
                let annotation = |key: &str| secret.annotations().get(key) == Some(&token);
                rotated = annotation(ROTATION_ANNOTATION);
                if rotated && (!serving || annotation(APPLIED_ROTATION_ANNOTATION)) {
                    return credentials_from(&secret, self.ca_certificate(project, name).await?);
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(RuntimeError::Unavailable(if rotated {
                    "the new password is in place, but the running server has not confirmed it yet; read the credentials again shortly"
                } else {
                    "the operator has not rotated the credentials yet; they will change shortly"
                }.into()));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn events(
        &self,
        project: &ProjectName,
        name: &InstanceName,
        after: Option<Uuid>,
        limit: u32,
    ) -> RuntimeResult<Vec<ServiceEvent>> {
        let pi = self.fetch(project, name).await?;
        let uid = pi.metadata.uid.clone().unwrap_or_default();
        let api: Api<KubeEvent> = Api::namespaced(self.client.clone(), &self.namespace(project)?);
        let list = api
            .list(&ListParams::default().fields(&format!("regarding.uid={uid}")))
            .await
            .map_err(unavailable)?;
        let mut events: Vec<ServiceEvent> = list
            .items
            .iter()
            .map(|e| service_event(e, name.as_str()))
            .collect();
        events.sort_by_key(|e| e.time);
        if let Some(after) = after
            && let Some(pos) = events.iter().position(|e| e.id == after)
        {
            events.drain(..=pos);
        }
        events.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        Ok(events)
    }

    /// Live events, fed by `watch_events` (quiet unless it runs).
    fn subscribe(&self) -> broadcast::Receiver<PublishedEvent> {
        self.events.subscribe()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use k8s_openapi::ByteString;

    #[test]
    fn credentials_never_carry_the_monitoring_password() {
        let bytes = |s: &str| ByteString(s.as_bytes().to_vec());
        let secret = KubeSecret {
            data: Some(
                [
                    ("username", "app"),
                    ("password", "tenant-password"),
                    ("database", "app"),
                    ("host", "orders.team-a.svc.cluster.local"),
                    ("port", "5432"),
                    (crate::build::MONITOR_USERNAME_KEY, "strata_monitor"),
                    (crate::build::MONITOR_PASSWORD_KEY, "monitor-password-xyz"),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), bytes(v)))
                .collect(),
            ),
            ..KubeSecret::default()
        };
        let creds = credentials_from(&secret, "CA".into()).unwrap();
        // What the API answers: the serialised credentials.
        let json = serde_json::to_string(&creds).unwrap();
        assert!(json.contains("tenant-password"), "{json}");
        assert!(!json.contains("monitor-password-xyz"), "{json}");
        assert!(!json.contains("strata_monitor"), "{json}");
    }
}
