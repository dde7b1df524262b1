use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use sha2::{Digest, Sha256};
use strata_core::instance::parse_label_selector;
use strata_core::{
    Action, CreateInstance, Credentials, Instance, InstanceName, PageRequest, ProjectName,
    RuntimeError, UpdateInstance,
};
use utoipa::ToSchema;

use super::{instance_name, project};
use crate::AppState;
use crate::audit::{self, Audit, Audited};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{self, QueryParams};
use crate::headers::no_store;

#[derive(Serialize, ToSchema)]
pub struct InstanceList {
    pub items: Vec<Instance>,
    /// Pass as `page_token` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

/// Reads `page_size` and `page_token` (the last name of the previous page).
pub(crate) fn page(q: &QueryParams) -> ApiResult<PageRequest> {
    let size = q.page_size()?;
    let token = q
        .get("page_token")
        .map(|t| {
            InstanceName::parse(t).map(|_| t.to_owned()).map_err(|_| {
                ApiError::field(
                    StatusCode::BAD_REQUEST,
                    "page_token",
                    "is not a token this API issued",
                )
            })
        })
        .transpose()?;
    Ok(PageRequest { size, token })
}

fn accepted(project: &ProjectName, instance: &Instance) -> Response {
    let location = format!("/v1/projects/{project}/instances/{}", instance.name);
    let mut res = (StatusCode::ACCEPTED, Json(instance)).into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    res
}

/// [`accepted`], once the event the runtime handed back unwritten (if any)
/// is stored.
async fn accepted_audited(
    st: &AppState,
    audit: &Audit,
    project: &ProjectName,
    instance: &Instance,
    pending: Option<strata_core::NewAuditEvent>,
) -> ApiResult<Response> {
    audit
        .write_pending(st, pending, Some(instance.id.to_string()))
        .await?;
    Ok(accepted(project, instance))
}

/// Lists a project's instances, by name.
#[utoipa::path(get, path = "/v1/projects/{project}/instances", operation_id = "listInstances", tag = "instances",
    security(("bearer" = [])),
    params(
        ("project" = String, Path, description = "Project name"),
        ("label" = Option<String>, Query, description = "Only instances with this label, as key=value; repeat to require several"),
        ("page_size" = Option<u32>, Query, description = "1 to 500, default 100"),
        ("page_token" = Option<String>, Query, description = "From the previous page's next_page_token"),
    ),
    responses(
        (status = 200, body = InstanceList),
    ))]
pub async fn list(
    State(st): State<AppState>,
    caller: Caller,
    Path(project_name): Path<String>,
    q: QueryParams,
) -> ApiResult<Json<InstanceList>> {
    q.only(&["label", "page_size", "page_token"])?;
    let project = project(&st, &caller, &project_name, Action::InstanceRead).await?;
    let labels = q
        .all("label")
        .map(parse_label_selector)
        .collect::<Result<Vec<_>, _>>()?;
    let page = st.runtime.list(&project, &labels, page(&q)?).await?;
    Ok(Json(InstanceList {
        items: page.items,
        next_page_token: page.next_page_token,
    }))
}

fn idempotency_key(headers: &HeaderMap) -> ApiResult<Option<String>> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let bad = || {
        ApiError::field(
            StatusCode::BAD_REQUEST,
            "Idempotency-Key",
            "must be 1 to 255 visible ASCII characters",
        )
    };
    let s = v.to_str().map_err(|_| bad())?;
    if s.is_empty() || s.len() > 255 || !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad());
    }
    Ok(Some(s.to_owned()))
}

/// The stored response to `key`, if this request repeats an earlier one
/// whose instance still exists. Once that instance is deleted the key is
/// forgotten, and the request creates anew.
async fn replay(
    st: &AppState,
    project: &ProjectName,
    key: &str,
    fingerprint: &str,
) -> ApiResult<Option<Response>> {
    let Some((stored, status, body)) = st.store.idempotent_response(project.as_str(), key).await?
    else {
        return Ok(None);
    };
    let created = serde_json::from_str::<Instance>(&body).ok();
    let live = match &created {
        Some(instance) => match InstanceName::parse(&instance.name) {
            Ok(name) => match st.runtime.get(project, &name).await {
                Ok(now) => now.id == instance.id,
                Err(RuntimeError::NotFound(_)) => false,
                Err(e) => return Err(e.into()),
            },
            Err(_) => false,
        },
        None => true,
    };
    if !live {
        let mut tx = st.store.begin().await?;
        tx.forget_idempotent_response(project.as_str(), key).await?;
        tx.commit().await?;
        return Ok(None);
    }
    if stored != fingerprint {
        return Err(ApiError::field(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Idempotency-Key",
            "was already used with a different request; use a new key",
        ));
    }
    let mut res = (
        StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
        [(header::CONTENT_TYPE, "application/json")],
        body.clone(),
    )
        .into_response();
    res.headers_mut()
        .insert("idempotent-replayed", HeaderValue::from_static("true"));
    if let Some(instance) = created
        && let Ok(v) = HeaderValue::from_str(&format!(
            "/v1/projects/{project}/instances/{}",
            instance.name
        ))
    {
        res.headers_mut().insert(header::LOCATION, v);
    }
    Ok(Some(res))
}

/// Orders a new instance. Returns at once (202) with phase `Provisioning`;
/// poll the instance or follow its events until it is `Ready`.
#[utoipa::path(post, path = "/v1/projects/{project}/instances", operation_id = "createInstance", tag = "instances",
    security(("bearer" = [])),
    params(
        ("project" = String, Path, description = "Project name"),
        ("Idempotency-Key" = Option<String>, Header, description = "Retries with the same key and body within 24 hours return the first result (while its instance exists); after that the key is free again"),
    ),
    request_body = CreateInstance,
    responses(
        (status = 202, body = Instance, description = "Accepted; Location names the instance"),
        (status = 409, description = "The name is taken"),
        (status = 422, description = "Idempotency-Key reused with another body"),
        (status = 503, description = "A capacity limit is reached (the port range is full); see Retry-After"),
    ))]
pub async fn create(
    State(st): State<AppState>,
    req: Audited,
    headers: HeaderMap,
    body: Result<extract::Json<CreateInstance>, ApiError>,
) -> ApiResult<Response> {
    let name = body
        .as_ref()
        .ok()
        .map(|b| b.value.name.clone())
        .unwrap_or_default();
    req.action("instance.create", audit::instance(&name))
        .run_in_project(&st, Action::InstanceCreate, async |audit, project| {
            create_inner(&st, &project, &headers, body, audit).await
        })
        .await
}

async fn create_inner(
    st: &AppState,
    project: &ProjectName,
    headers: &HeaderMap,
    body: Result<extract::Json<CreateInstance>, ApiError>,
    audit: &Audit,
) -> ApiResult<Response> {
    let body = body?;
    let key = idempotency_key(headers)?;
    let fingerprint = hex::encode(Sha256::digest(&body.raw));
    if let Some(key) = &key
        && let Some(res) = replay(st, project, key, &fingerprint).await?
    {
        st.store
            .append_audit(replayed(audit, res.status().as_u16()))
            .await?;
        return Ok(res);
    }
    let spec = body
        .value
        .validate(st.runtime.plans(), st.runtime.versions())?;
    let details = serde_json::json!({
        "version": spec.version, "plan": spec.plan, "storage_gb": spec.storage_gb,
        "acl": spec.acl.to_strings(), "labels": spec.labels,
    });
    let event = {
        let mut e = audit.event(202);
        e.details = details;
        e
    };
    match st.runtime.create_audited(project, spec, event).await {
        Ok((instance, pending)) => {
            audit
                .write_pending(st, pending, Some(instance.id.to_string()))
                .await?;
            if let Some(key) = &key {
                let json = serde_json::to_string(&instance).map_err(ApiError::internal)?;
                let mut tx = st.store.begin().await?;
                match tx
                    .insert_idempotent_response(project.as_str(), key, &fingerprint, 202, &json)
                    .await
                {
                    Ok(()) => tx.commit().await?,
                    Err(strata_store::StoreError::Conflict(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Ok(accepted(project, &instance))
        }
        Err(RuntimeError::Conflict(m)) => {
            // A concurrent request with the same key may have won the race.
            if let Some(key) = &key
                && let Some(res) = replay(st, project, key, &fingerprint).await?
            {
                st.store
                    .append_audit(replayed(audit, res.status().as_u16()))
                    .await?;
                return Ok(res);
            }
            Err(RuntimeError::Conflict(m).into())
        }
        Err(e) => Err(e.into()),
    }
}

/// A retried create answered from the stored response.
fn replayed(audit: &Audit, status: u16) -> strata_core::NewAuditEvent {
    let mut e = audit.event(status);
    e.details = serde_json::json!({ "idempotent_replay": true });
    e
}

/// One instance.
#[utoipa::path(get, path = "/v1/projects/{project}/instances/{name}", operation_id = "getInstance", tag = "instances",
    security(("bearer" = [])),
    params(("project" = String, Path), ("name" = String, Path)),
    responses(
        (status = 200, body = Instance),
    ))]
pub async fn get(
    State(st): State<AppState>,
    caller: Caller,
    Path((project_name, name)): Path<(String, String)>,
) -> ApiResult<Json<Instance>> {
    let project = project(&st, &caller, &project_name, Action::InstanceRead).await?;
    Ok(Json(
        st.runtime.get(&project, &instance_name(&name)?).await?,
    ))
}

/// Changes plan, storage (grow only), ACL or labels. Returns 202 with phase
/// `Updating` while the change is applied.
#[utoipa::path(patch, path = "/v1/projects/{project}/instances/{name}", operation_id = "updateInstance", tag = "instances",
    security(("bearer" = [])),
    params(("project" = String, Path), ("name" = String, Path)),
    request_body = UpdateInstance,
    responses(
        (status = 202, body = Instance),
        (status = 409, description = "The instance is provisioning or being deleted"),
    ))]
pub async fn update(
    State(st): State<AppState>,
    req: Audited,
    Path((_project, name)): Path<(String, String)>,
    body: Result<extract::Json<UpdateInstance>, ApiError>,
) -> ApiResult<Response> {
    req.action("instance.update", audit::instance(&name))
        .run_in_project(&st, Action::InstanceUpdate, async |audit, project| {
            let name = instance_name(&name)?;
            let change = body?.value;
            let mut event = audit.event(202);
            event.details = serde_json::to_value(&change).unwrap_or_default();
            let (instance, pending) = st
                .runtime
                .update_audited(&project, &name, change, event)
                .await?;
            accepted_audited(&st, audit, &project, &instance, pending).await
        })
        .await
}

/// Deletes an instance and its data. Returns 202 with phase `Deleting`; the
/// instance is gone (404) once its server has stopped and its data is removed.
#[utoipa::path(delete, path = "/v1/projects/{project}/instances/{name}", operation_id = "deleteInstance", tag = "instances",
    security(("bearer" = [])),
    params(("project" = String, Path), ("name" = String, Path)),
    responses(
        (status = 202, body = Instance),
    ))]
pub async fn delete(
    State(st): State<AppState>,
    req: Audited,
    Path((_project, name)): Path<(String, String)>,
) -> ApiResult<Response> {
    req.action("instance.delete", audit::instance(&name))
        .run_in_project(&st, Action::InstanceDelete, async |audit, project| {
            let (instance, pending) = st
                .runtime
                .delete_audited(&project, &instance_name(&name)?, audit.event(202))
                .await?;
            accepted_audited(&st, audit, &project, &instance, pending).await
        })
        .await
}

/// Connection data of the instance's application role.
#[utoipa::path(get, path = "/v1/projects/{project}/instances/{name}/credentials", operation_id = "getCredentials", tag = "instances",
    security(("bearer" = [])),
    params(("project" = String, Path), ("name" = String, Path)),
    responses(
        (status = 200, body = Credentials),
        (status = 409, description = "Still provisioning"),
    ))]
pub async fn credentials(
    State(st): State<AppState>,
    req: Audited,
    Path((_project, name)): Path<(String, String)>,
) -> ApiResult<Response> {
    req.action("instance.credentials.read", audit::instance(&name))
        .run_in_project(&st, Action::CredentialsRead, async |audit, project| {
            let name = instance_name(&name)?;
            let creds = st.runtime.credentials(&project, &name).await?;
            let mut event = audit.event(200);
            event.target.id = st
                .runtime
                .get(&project, &name)
                .await
                .ok()
                .map(|i| i.id.to_string());
            // No record, no credentials.
            st.store.append_audit(event).await?;
            Ok(no_store(Json(creds)))
        })
        .await
}

/// Sets a new password; the old one stops working before this returns.
#[utoipa::path(post, path = "/v1/projects/{project}/instances/{name}/credentials/rotate", operation_id = "rotateCredentials", tag = "instances",
    security(("bearer" = [])),
    params(("project" = String, Path), ("name" = String, Path)),
    responses(
        (status = 200, body = Credentials),
        (status = 409, description = "Not Ready"),
        (status = 503, description = "The server is not reachable"),
    ))]
pub async fn rotate(
    State(st): State<AppState>,
    req: Audited,
    Path((_project, name)): Path<(String, String)>,
) -> ApiResult<Response> {
    req.action("instance.credentials.rotate", audit::instance(&name))
        .run_in_project(&st, Action::CredentialsRotate, async |audit, project| {
            let (creds, pending) = st
                .runtime
                .rotate_credentials_audited(&project, &instance_name(&name)?, audit.event(200))
                .await?;
            audit.write_pending(&st, pending, None).await?;
            Ok(no_store(Json(creds)))
        })
        .await
}
