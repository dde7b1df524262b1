//! Instances: what a tenant asks for (spec), what it has (status), and the
//! rules that turn a request into a spec.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::acl::Acl;
use crate::error::{Errors, FieldError, ValidationError};
use crate::names::{InstanceName, ProjectName};
use crate::plans::PlanCatalog;
use crate::versions::VersionCatalog;

pub const LABELS_MAX: usize = 32;
pub const ENGINE: &str = "postgresql";

/// Body of `POST /v1/projects/{project}/instances`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateInstance {
    /// DNS label, at most 40 characters, unique in the project, immutable.
    #[schema(example = "orders")]
    pub name: String,
    /// PostgreSQL major version; the default version when omitted.
    #[schema(example = "15")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Plan id (see `GET /v1/plans`); the smallest plan when omitted.
    #[schema(example = "small")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
    /// Storage quota in GiB, within the plan's range; the plan's minimum when omitted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage_gb: Option<u32>,
    /// Client networks (CIDR) allowed to connect; everyone (TLS and password still
    /// required) when omitted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acl: Option<Vec<String>>,
    /// Also reachable from outside the cluster: a load balancer that admits
    /// only the ACL's networks (TLS and the password still required). Needs
    /// at least one ACL entry; the Kubernetes runtime only. Default false.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_access: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
}

/// Body of `PATCH /v1/projects/{project}/instances/{name}`: every field optional.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateInstance {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
    /// Grow only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage_gb: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acl: Option<Vec<String>>,
    /// Turns the external endpoint on or off (see `CreateInstance`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_access: Option<bool>,
    /// Replaces all labels.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
}

/// A validated desired state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceSpec {
    pub name: InstanceName,
    pub version: String,
    pub plan: String,
    pub storage_gb: u32,
    pub acl: Acl,
    /// An endpoint outside the cluster, admitting the ACL's networks.
    pub external_access: bool,
    pub labels: BTreeMap<String, String>,
}

/// An external endpoint admits the ACL's networks; with an empty ACL it
/// would admit no one, so asking for one is a mistake worth naming.
fn check_external_access(external: bool, acl: Option<&Acl>, errors: &mut Errors) {
    if external && acl.is_some_and(|a| a.entries().is_empty()) {
        errors.push(
            "external_access",
            "needs at least one acl entry: the external endpoint admits only the ACL's networks",
        );
    }
}

/// The longest label key or value.
pub const LABEL_PART_MAX: usize = 63;

/// The regular expression a label key matches (a value may also be empty).
pub fn label_key_pattern() -> String {
    format!(
        "^[A-Za-z0-9]([A-Za-z0-9._-]{{0,{}}}[A-Za-z0-9])?$",
        LABEL_PART_MAX - 2
    )
}

/// The regular expression a label value matches.
pub fn label_value_pattern() -> String {
    format!(
        "^([A-Za-z0-9]([A-Za-z0-9._-]{{0,{}}}[A-Za-z0-9])?)?$",
        LABEL_PART_MAX - 2
    )
}

/// The regular expression a label selector (`key=value`) matches.
pub fn label_selector_pattern() -> String {
    let part = |p: String| p.trim_start_matches('^').trim_end_matches('$').to_owned();
    format!(
        "^{}={}$",
        part(label_key_pattern()),
        part(label_value_pattern())
    )
}

fn check_label_part(value: &str, allow_empty: bool) -> Result<(), String> {
    if value.is_empty() {
        return if allow_empty {
            Ok(())
        } else {
            Err("must not be empty".into())
        };
    }
    if value.len() > LABEL_PART_MAX {
        return Err(format!("must be at most {LABEL_PART_MAX} characters"));
    }
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    let first = value
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    let last = value
        .chars()
        .last()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    if !(first && last && value.chars().all(ok_char)) {
        return Err(
            "must be letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
                .into(),
        );
    }
    Ok(())
}

fn check_labels(labels: &BTreeMap<String, String>, errors: &mut Errors) {
    if labels.len() > LABELS_MAX {
        errors.push("labels", format!("at most {LABELS_MAX} labels"));
    }
    for (k, v) in labels {
        if let Err(m) = check_label_part(k, false) {
            errors.push(format!("labels.{k}"), format!("key {m}"));
        }
        if let Err(m) = check_label_part(v, true) {
            errors.push(format!("labels.{k}"), format!("value {m}"));
        }
    }
}

fn prefixed(prefix: &str, result: Result<Acl, ValidationError>) -> Result<Acl, ValidationError> {
    result.map_err(|mut e| {
        for fe in &mut e.errors {
            fe.field = format!("{prefix}{}", fe.field);
        }
        e
    })
}

impl CreateInstance {
    /// Checks every field and returns the spec, or every problem at once.
    pub fn validate(
        self,
        plans: &PlanCatalog,
        versions: &VersionCatalog,
    ) -> Result<InstanceSpec, ValidationError> {
        let mut errors = Errors::default();
        let name = errors.check("name", InstanceName::parse(&self.name));
        let version = match self.version {
            Some(v) => errors.check("version", versions.get(&v).map(|v| v.version.clone())),
            None => {
                if let Some(v) = versions.default_version() {
                    Some(v.version.clone())
                } else {
                    errors.push(
                        "version",
                        "no PostgreSQL version is available on this platform",
                    );
                    None
                }
            }
        };
        let plan = match &self.plan {
            Some(p) => errors.check("plan", plans.get(p)),
            None => Some(plans.default_plan()),
        };
        let storage_gb = plan.and_then(|plan| {
            let gb = self.storage_gb.unwrap_or(plan.storage_gb_min);
            errors.check(
                "storage_gb",
                PlanCatalog::check_storage(plan, gb).map(|()| gb),
            )
        });
        let acl = match &self.acl {
            Some(entries) => errors.check("acl", prefixed("acl", Acl::parse(entries))),
            None => Some(Acl::open()),
        };
        let external_access = self.external_access.unwrap_or(false);
        check_external_access(external_access, acl.as_ref(), &mut errors);
        let labels = self.labels.unwrap_or_default();
        check_labels(&labels, &mut errors);
        errors.finish()?;
        match (name, version, plan, storage_gb, acl) {
            (Some(name), Some(version), Some(plan), Some(storage_gb), Some(acl)) => {
                Ok(InstanceSpec {
                    name,
                    version,
                    plan: plan.id.clone(),
                    storage_gb,
                    acl,
                    external_access,
                    labels,
                })
            }
            _ => Err(ValidationError::field("", "invalid request")),
        }
    }
}

/// Why a change was refused: the request itself breaks a rule (400), or it is
/// well-formed but does not fit the instance as it is now (409) — a smaller
/// size than the current one, a plan the current size does not fit, an
/// external endpoint with an ACL that admits no one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeRefused {
    #[error(transparent)]
    Invalid(ValidationError),
    #[error("the change does not fit the instance as it is: {0}")]
    Conflict(ValidationError),
}

impl ChangeRefused {
    /// Every field at fault.
    pub fn errors(&self) -> &[FieldError] {
        match self {
            Self::Invalid(e) | Self::Conflict(e) => &e.errors,
        }
    }
}

impl UpdateInstance {
    /// Applies the change to `current`: the plan must exist, storage may only
    /// grow and must fit the (new) plan, the ACL must parse. What the request
    /// alone shows to be wrong is [`ChangeRefused::Invalid`]; what is wrong
    /// only against `current` is [`ChangeRefused::Conflict`].
    pub fn apply(
        self,
        current: &InstanceSpec,
        plans: &PlanCatalog,
    ) -> Result<InstanceSpec, ChangeRefused> {
        let mut invalid = Errors::default();
        let mut conflict = Errors::default();
        let mut next = current.clone();
        let plan = match &self.plan {
            Some(p) => invalid.check("plan", plans.get(p)),
            None => conflict.check("plan", plans.get(&current.plan)),
        };
        if let Some(gb) = self.storage_gb {
            let (min, max) = plans.storage_gb_bounds();
            if !(min..=max).contains(&gb) {
                invalid.push(
                    "storage_gb",
                    format!("must be between {min} and {max} (and within the plan's range)"),
                );
            } else if gb < current.storage_gb {
                conflict.push(
                    "storage_gb",
                    format!(
                        "storage can only grow (currently {} GiB)",
                        current.storage_gb
                    ),
                );
            }
            next.storage_gb = gb;
        }
        if let Some(plan) = plan {
            next.plan.clone_from(&plan.id);
            let fits = PlanCatalog::check_storage(plan, next.storage_gb);
            match (self.plan.is_some(), self.storage_gb.is_some()) {
                // Both in the request: the request alone is wrong.
                (true, true) => {
                    invalid.check("storage_gb", fits);
                }
                // The old size does not fit the new plan: say what to send.
                (true, false) if fits.is_err() => conflict.push(
                    "plan",
                    format!(
                        "plan {} needs storage_gb between {} and {}; send storage_gb too",
                        plan.id, plan.storage_gb_min, plan.storage_gb_max
                    ),
                ),
                (false, true) => {
                    conflict.check("storage_gb", fits);
                }
                _ => {}
            }
        }
        if let Some(entries) = &self.acl
            && let Some(acl) = invalid.check("acl", prefixed("acl", Acl::parse(entries)))
        {
            next.acl = acl;
        }
        if let Some(external) = self.external_access {
            next.external_access = external;
        }
        match (self.external_access, &self.acl) {
            // Both in the request: the request alone is wrong.
            (Some(_), Some(_)) => {
                check_external_access(next.external_access, Some(&next.acl), &mut invalid);
            }
            (Some(_), None) | (None, Some(_)) => {
                check_external_access(next.external_access, Some(&next.acl), &mut conflict);
            }
            (None, None) => {}
        }
        if let Some(labels) = self.labels {
            check_labels(&labels, &mut invalid);
            next.labels = labels;
        }
        invalid.finish().map_err(ChangeRefused::Invalid)?;
        conflict.finish().map_err(ChangeRefused::Conflict)?;
        Ok(next)
    }
}

/// Where an instance is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum Phase {
    Provisioning,
    Ready,
    Updating,
    Failed,
    Deleting,
}

impl Phase {
    pub const ALL: [Phase; 5] = [
        Phase::Provisioning,
        Phase::Ready,
        Phase::Updating,
        Phase::Failed,
        Phase::Deleting,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Provisioning => "Provisioning",
            Phase::Ready => "Ready",
            Phase::Updating => "Updating",
            Phase::Failed => "Failed",
            Phase::Deleting => "Deleting",
        }
    }

    pub fn parse(s: &str) -> Option<Phase> {
        Phase::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// Whether a change of spec (PATCH) is accepted in this phase.
    pub fn accepts_update(self) -> bool {
        matches!(self, Phase::Ready | Phase::Failed | Phase::Updating)
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

/// A Kubernetes-style condition: its transition time changes only when its
/// status does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Condition {
    /// `Ready`, `Progressing`, `StorageWithinQuota`.
    #[serde(rename = "type")]
    pub kind: String,
    pub status: ConditionStatus,
    pub reason: String,
    pub message: String,
    #[serde(with = "time::serde::rfc3339")]
    pub last_transition_time: OffsetDateTime,
}

/// Sets `kind` to `status`; keeps the transition time when the status is unchanged.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    kind: &str,
    status: ConditionStatus,
    reason: &str,
    message: &str,
    now: OffsetDateTime,
) {
    if let Some(c) = conditions.iter_mut().find(|c| c.kind == kind) {
        if c.status != status {
            c.last_transition_time = now;
        }
        c.status = status;
        reason.clone_into(&mut c.reason);
        message.clone_into(&mut c.message);
    } else {
        conditions.push(Condition {
            kind: kind.to_owned(),
            status,
            reason: reason.to_owned(),
            message: message.to_owned(),
            last_transition_time: now,
        });
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Endpoint {
    #[schema(example = "127.0.0.1")]
    pub host: String,
    #[schema(example = 15433)]
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct InstanceStatus {
    pub phase: Phase,
    /// What is happening now, or why it failed.
    pub message: String,
    pub endpoint: Option<Endpoint>,
    /// Where clients outside the cluster connect, once the load balancer
    /// has an address (only with `external_access`).
    #[serde(default)]
    pub external_endpoint: Option<Endpoint>,
    pub conditions: Vec<Condition>,
    /// Bytes the data directory takes on disk, when measured.
    pub storage_used_bytes: Option<u64>,
}

impl InstanceStatus {
    /// The status of an instance just asked for.
    pub fn provisioning(now: OffsetDateTime) -> Self {
        let mut s = Self {
            phase: Phase::Provisioning,
            message: String::new(),
            endpoint: None,
            external_endpoint: None,
            conditions: Vec::new(),
            storage_used_bytes: None,
        };
        s.set_phase(Phase::Provisioning, "Requested", "instance requested", now);
        s
    }

    /// Moves to `phase`, keeping the `Ready` and `Progressing` conditions in step.
    pub fn set_phase(&mut self, phase: Phase, reason: &str, message: &str, now: OffsetDateTime) {
        self.phase = phase;
        message.clone_into(&mut self.message);
        let serving = matches!(phase, Phase::Ready | Phase::Updating);
        let ready = if serving {
            ConditionStatus::True
        } else {
            ConditionStatus::False
        };
        set_condition(&mut self.conditions, "Ready", ready, reason, message, now);
        let progressing = if matches!(
            phase,
            Phase::Provisioning | Phase::Updating | Phase::Deleting
        ) {
            ConditionStatus::True
        } else {
            ConditionStatus::False
        };
        set_condition(
            &mut self.conditions,
            "Progressing",
            progressing,
            reason,
            message,
            now,
        );
    }

    /// Whether clients can be given an endpoint to connect to.
    pub fn has_endpoint(&self) -> bool {
        matches!(self.phase, Phase::Ready | Phase::Updating | Phase::Failed)
    }
}

/// An instance as the API returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Instance {
    pub id: Uuid,
    pub name: String,
    pub project: String,
    /// Always `postgresql`.
    pub engine: String,
    pub version: String,
    pub plan: String,
    pub storage_gb: u32,
    pub acl: Vec<String>,
    /// An endpoint outside the cluster, admitting the ACL's networks.
    #[serde(default)]
    pub external_access: bool,
    pub labels: BTreeMap<String, String>,
    pub status: InstanceStatus,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl Instance {
    /// The spec this instance was created or last updated with.
    pub fn spec(&self) -> Result<InstanceSpec, ValidationError> {
        Ok(InstanceSpec {
            name: InstanceName::parse(&self.name)?,
            version: self.version.clone(),
            plan: self.plan.clone(),
            storage_gb: self.storage_gb,
            acl: Acl::parse(&self.acl)?,
            external_access: self.external_access,
            labels: self.labels.clone(),
        })
    }

    pub fn project_name(&self) -> Result<ProjectName, ValidationError> {
        ProjectName::parse(&self.project)
    }

    /// Whether this instance carries every `key=value` of `selector`.
    pub fn matches_labels(&self, selector: &[(String, String)]) -> bool {
        selector
            .iter()
            .all(|(k, v)| self.labels.get(k).is_some_and(|x| x == v))
    }
}

/// Parses a label selector `team=checkout` (the `?label=` query parameter).
pub fn parse_label_selector(s: &str) -> Result<(String, String), ValidationError> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| ValidationError::field("label", "must be key=value"))?;
    check_label_part(k, false).map_err(|m| ValidationError::field("label", format!("key {m}")))?;
    check_label_part(v, true).map_err(|m| ValidationError::field("label", format!("value {m}")))?;
    Ok((k.to_owned(), v.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_label_patterns_accept_exactly_what_the_checks_accept() {
        let strings = crate::names::tests::candidates(
            &['a', 'Z', '0', '-', '_', '.', '=', ' '],
            3,
            &[62, 63, 64],
        );
        let key = regex::Regex::new(&label_key_pattern()).unwrap();
        let value = regex::Regex::new(&label_value_pattern()).unwrap();
        let selector = regex::Regex::new(&label_selector_pattern()).unwrap();
        for s in &strings {
            assert_eq!(
                key.is_match(s),
                check_label_part(s, false).is_ok(),
                "key {s:?}"
            );
            assert_eq!(
                value.is_match(s),
                check_label_part(s, true).is_ok(),
                "value {s:?}"
            );
            assert_eq!(
                selector.is_match(s),
                parse_label_selector(s).is_ok(),
                "selector {s:?}"
            );
        }
    }

    fn catalogs() -> (PlanCatalog, VersionCatalog) {
        (
            PlanCatalog::default(),
            VersionCatalog::from_majors(vec![15]),
        )
    }

    fn create(name: &str) -> CreateInstance {
        CreateInstance {
            name: name.into(),
            ..CreateInstance::default()
        }
    }

    #[test]
    fn defaults_fill_the_spec() {
        let (p, v) = catalogs();
        let spec = create("orders").validate(&p, &v).unwrap();
        assert_eq!(spec.version, "15");
        assert_eq!(spec.plan, "micro");
        assert_eq!(spec.storage_gb, 1);
        assert_eq!(spec.acl, Acl::open());
    }

    #[test]
    fn every_bad_field_is_named() {
        let (p, v) = catalogs();
        let req = CreateInstance {
            name: "Bad_Name".into(),
            version: Some("9".into()),
            plan: Some("huge".into()),
            storage_gb: Some(5),
            acl: Some(vec!["10.0.0.0/8".into(), "x".into()]),
            external_access: None,
            labels: Some(BTreeMap::from([("-bad".into(), "ok".into())])),
        };
        let err = req.validate(&p, &v).unwrap_err();
        let fields: Vec<_> = err.errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            vec!["name", "version", "plan", "acl[1]", "labels.-bad"]
        );
    }

    #[test]
    fn storage_out_of_range() {
        let (p, v) = catalogs();
        let req = CreateInstance {
            storage_gb: Some(11),
            ..create("orders")
        };
        let err = req.validate(&p, &v).unwrap_err();
        assert_eq!(err.errors[0].field, "storage_gb");
    }

    #[test]
    fn update_grows_only() {
        let (p, v) = catalogs();
        let spec = CreateInstance {
            storage_gb: Some(5),
            ..create("orders")
        }
        .validate(&p, &v)
        .unwrap();
        let shrink = UpdateInstance {
            storage_gb: Some(2),
            ..UpdateInstance::default()
        };
        let err = shrink.apply(&spec, &p).unwrap_err();
        assert!(matches!(err, ChangeRefused::Conflict(_)), "{err:?}");
        assert_eq!(err.errors()[0].field, "storage_gb");
        let grow = UpdateInstance {
            storage_gb: Some(8),
            labels: Some(BTreeMap::from([("team".into(), "a".into())])),
            ..UpdateInstance::default()
        };
        let next = grow.apply(&spec, &p).unwrap();
        assert_eq!(next.storage_gb, 8);
        assert_eq!(next.labels["team"], "a");
    }

    #[test]
    fn plan_change_checks_storage() {
        let (p, v) = catalogs();
        let spec = create("orders").validate(&p, &v).unwrap();
        let err = UpdateInstance {
            plan: Some("medium".into()),
            ..UpdateInstance::default()
        }
        .apply(&spec, &p)
        .unwrap_err();
        assert!(matches!(err, ChangeRefused::Conflict(_)), "{err:?}");
        assert!(err.errors().iter().any(|e| e.field == "plan"));
        // Both sent and not fitting: the request alone is wrong.
        let err = UpdateInstance {
            plan: Some("medium".into()),
            storage_gb: Some(1),
            ..UpdateInstance::default()
        }
        .apply(&spec, &p)
        .unwrap_err();
        assert!(matches!(err, ChangeRefused::Invalid(_)), "{err:?}");
        let ok = UpdateInstance {
            plan: Some("medium".into()),
            storage_gb: Some(10),
            ..UpdateInstance::default()
        }
        .apply(&spec, &p)
        .unwrap();
        assert_eq!(ok.plan, "medium");
    }

    #[test]
    fn external_access_needs_an_acl_entry() {
        let (p, v) = catalogs();
        let external = |acl: Option<Vec<String>>| CreateInstance {
            acl,
            external_access: Some(true),
            ..create("orders")
        };
        let err = external(Some(vec![])).validate(&p, &v).unwrap_err();
        assert_eq!(err.errors[0].field, "external_access");
        let spec = external(Some(vec!["203.0.113.0/24".into()]))
            .validate(&p, &v)
            .unwrap();
        assert!(spec.external_access);
        // Omitted: the ACL admits everyone, and the request said so.
        assert!(external(None).validate(&p, &v).unwrap().external_access);
        assert!(!create("orders").validate(&p, &v).unwrap().external_access);

        // PATCH: on and off, and never with an ACL that admits no one.
        let spec = CreateInstance {
            acl: Some(vec!["203.0.113.0/24".into()]),
            ..create("orders")
        }
        .validate(&p, &v)
        .unwrap();
        let on = UpdateInstance {
            external_access: Some(true),
            ..UpdateInstance::default()
        }
        .apply(&spec, &p)
        .unwrap();
        assert!(on.external_access);
        let emptied = UpdateInstance {
            acl: Some(vec![]),
            ..UpdateInstance::default()
        }
        .apply(&on, &p)
        .unwrap_err();
        assert!(matches!(emptied, ChangeRefused::Conflict(_)), "{emptied:?}");
        assert_eq!(emptied.errors()[0].field, "external_access");
        let both = UpdateInstance {
            acl: Some(vec![]),
            external_access: Some(true),
            ..UpdateInstance::default()
        }
        .apply(&on, &p)
        .unwrap_err();
        assert!(matches!(both, ChangeRefused::Invalid(_)), "{both:?}");
        let off = UpdateInstance {
            acl: Some(vec![]),
            external_access: Some(false),
            ..UpdateInstance::default()
        }
        .apply(&on, &p)
        .unwrap();
        assert!(!off.external_access && off.acl.entries().is_empty());
    }

    #[test]
    fn condition_keeps_transition_time_when_status_holds() {
        let t0 = OffsetDateTime::UNIX_EPOCH;
        let t1 = t0 + time::Duration::seconds(10);
        let mut cs = Vec::new();
        set_condition(&mut cs, "Ready", ConditionStatus::False, "Starting", "", t0);
        set_condition(
            &mut cs,
            "Ready",
            ConditionStatus::False,
            "Starting",
            "more",
            t1,
        );
        assert_eq!(cs[0].last_transition_time, t0);
        set_condition(&mut cs, "Ready", ConditionStatus::True, "Ready", "", t1);
        assert_eq!(cs[0].last_transition_time, t1);
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = serde_json::from_str::<CreateInstance>(r#"{"name":"a","colour":"red"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("colour"));
    }

    #[test]
    fn label_selector() {
        assert_eq!(
            parse_label_selector("team=a").unwrap(),
            ("team".into(), "a".into())
        );
        assert!(parse_label_selector("team").is_err());
    }
}
