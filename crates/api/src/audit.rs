//! Recording requests in the audit log: who (the caller), from where (source
//! address, user agent, request id), what (action and target), and how it
//! ended. Successful changes are recorded in the change's own transaction;
//! failed and denied attempts get an event of their own.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts, RawPathParams};
use axum::http::header::USER_AGENT;
use axum::http::request::Parts;
use strata_core::{Action, Actor, NewAuditEvent, Outcome, ProjectName, Target};

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};

/// Where a request came from. Never rejects: missing parts stay empty.
#[derive(Debug, Clone, Default)]
pub struct RequestMeta {
    /// The client's address: the peer's, or behind a trusted proxy the one
    /// it forwarded (`proxy::TrustedProxies::client`). Empty when the
    /// server runs without connect info.
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
}

fn header(parts: &Parts, name: &str) -> Option<String> {
    parts
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(512).collect())
}

impl FromRequestParts<AppState> for RequestMeta {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        // Absent when the router runs without connect info (in-process tests).
        let peer = ConnectInfo::<SocketAddr>::from_request_parts(parts, state)
            .await
            .ok();
        let client =
            peer.map(|ConnectInfo(a)| state.trusted_proxies.client(a.ip(), &parts.headers));
        Ok(Self {
            source_ip: client.map(|ip| ip.to_string()),
            user_agent: header(parts, USER_AGENT.as_str()),
            request_id: header(parts, "x-request-id"),
        })
    }
}

/// The signed-in caller of a request that changes something, where it came
/// from, and the project its path names: what every audited request starts
/// from. A handler names what it does with [`Audited::action`] and does it
/// with [`Audit::run`] or [`Audit::run_in_project`], which authorise, do
/// and record in one place.
pub(crate) struct Audited {
    caller: Caller,
    meta: RequestMeta,
    /// The `{project}` of the path, as written.
    project: Option<String>,
}

impl FromRequestParts<AppState> for Audited {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let caller = Caller::from_request_parts(parts, state).await?;
        let Ok(meta) = RequestMeta::from_request_parts(parts, state).await;
        let project = RawPathParams::from_request_parts(parts, state)
            .await
            .ok()
            .and_then(|params| {
                params
                    .iter()
                    .find(|(key, _)| *key == "project")
                    .map(|(_, value)| value.to_owned())
            });
        Ok(Self {
            caller,
            meta,
            project,
        })
    }
}

impl Audited {
    /// The request as `action` (`instance.create`, `member.add`, …) on
    /// `target`, recorded under the path's project.
    pub fn action(self, action: &str, target: Target) -> Audit {
        let mut audit = Audit::new(self.caller, &self.meta, action, target);
        if let Some(project) = self.project {
            audit.in_project(&project);
            audit.project = project;
        }
        audit
    }
}

/// The audit record of one request, filled in as the handler learns more.
pub(crate) struct Audit {
    caller: Caller,
    /// The project the request names, as written (authorised by
    /// [`Audit::run_in_project`]).
    project: String,
    event: NewAuditEvent,
}

impl Audit {
    fn new(caller: Caller, meta: &RequestMeta, action: &str, target: Target) -> Self {
        let actor = Actor {
            kind: if caller.user_id.is_empty() {
                "anonymous".into()
            } else {
                "user".into()
            },
            id: caller.user_id.clone(),
            name: caller.username.clone(),
        };
        Self {
            caller,
            project: String::new(),
            event: NewAuditEvent {
                actor,
                source_ip: meta.source_ip.clone(),
                user_agent: meta.user_agent.clone(),
                request_id: meta.request_id.clone(),
                project: None,
                action: action.into(),
                target,
                outcome: Outcome::of_status(200),
                details: serde_json::json!({}),
            },
        }
    }

    /// The record of a request that names no signed-in caller yet (a
    /// sign-in): the actor is who it claims to be.
    pub fn anonymous(meta: &RequestMeta, claimed: &str, action: &str, target: Target) -> Self {
        let caller = Caller::anonymous(claimed.chars().take(64).collect());
        Self::new(caller, meta, action, target)
    }

    /// Who makes the request.
    pub fn caller(&self) -> &Caller {
        &self.caller
    }

    /// The same record, now naming the signed-in user as actor.
    pub fn signed_in(&mut self, user_id: &str, username: &str) {
        self.event.actor = Actor {
            kind: "user".into(),
            id: user_id.to_owned(),
            name: username.to_owned(),
        };
    }

    /// Records the event under `project` (named by the request or learnt
    /// while it runs); a name that is not a valid project name is left out,
    /// so that a denied attempt on a real project shows up in its log.
    pub fn in_project(&mut self, project: &str) {
        if ProjectName::parse(project).is_ok() {
            self.event.project = Some(project.to_owned());
        }
    }

    /// The event as it reads when the request ends with `status`.
    pub fn event(&self, status: u16) -> NewAuditEvent {
        let mut e = self.event.clone();
        e.outcome = Outcome::of_status(status);
        e
    }

    /// Does `work` as this request. `work` records its success itself, in
    /// the change's own transaction ([`Audit::event`]) or with
    /// [`Audit::write_pending`]; a failed or refused attempt is recorded
    /// here, in an event of its own.
    pub async fn run<T>(
        mut self,
        st: &AppState,
        work: impl AsyncFnOnce(&mut Audit) -> ApiResult<T>,
    ) -> ApiResult<T> {
        let result = work(&mut self).await;
        self.finish(st, result).await
    }

    /// Like [`Audit::run`], after checking that the caller may do `need` in
    /// the project the path names; `work` gets the project.
    pub async fn run_in_project<T>(
        mut self,
        st: &AppState,
        need: Action,
        work: impl AsyncFnOnce(&mut Audit, ProjectName) -> ApiResult<T>,
    ) -> ApiResult<T> {
        let result = match crate::routes::project(st, &self.caller, &self.project, need).await {
            Ok(project) => work(&mut self, project).await,
            Err(e) => Err(e),
        };
        self.finish(st, result).await
    }

    /// Appends an event the runtime handed back unwritten (a runtime that
    /// keeps its state outside the store: the change is made already),
    /// naming the target's id. The request fails when it cannot be written,
    /// and the event goes to the `audit` log target in full, so that the
    /// change is on record there.
    pub async fn write_pending(
        &self,
        st: &AppState,
        pending: Option<NewAuditEvent>,
        target_id: Option<String>,
    ) -> ApiResult<()> {
        let Some(mut e) = pending else {
            return Ok(());
        };
        if target_id.is_some() {
            e.target.id = target_id;
        }
        if let Err(err) = st.store.append_audit(e.clone()).await {
            tracing::error!(
                target: "audit",
                error = %err,
                event = %serde_json::to_string(&e).unwrap_or_default(),
                "a change was made but its audit event cannot be stored"
            );
            return Err(err.into());
        }
        Ok(())
    }

    /// Records a failed or denied attempt, then returns the result unchanged.
    async fn finish<T>(&self, st: &AppState, result: ApiResult<T>) -> ApiResult<T> {
        if let Err(err) = &result {
            let mut e = self.event(err.status().as_u16());
            e.details = serde_json::json!({ "error": err.detail() });
            if let Err(w) = st.store.append_audit(e).await {
                tracing::error!(error = %w, action = %self.event.action, "cannot record a failed request in the audit log");
            }
        }
        result
    }
}

/// A target of kind `instance`.
pub(crate) fn instance(name: &str) -> Target {
    target("instance", name)
}

pub(crate) fn target(kind: &str, name: &str) -> Target {
    Target {
        kind: kind.into(),
        id: None,
        name: name.chars().take(256).collect(),
    }
}
