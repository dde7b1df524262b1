//! Reading the audit log and verifying its hash chain.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Serialize;
use strata_core::audit::ChainReport;
use strata_core::{Action, AuditEvent};
use strata_store::AuditFilter;
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::{admin_only, project};
use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::QueryParams;

#[derive(Serialize, ToSchema)]
pub struct AuditEventList {
    pub items: Vec<AuditEvent>,
    /// Pass as `page_token` for the next (older) page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

fn time_param(q: &QueryParams, name: &str) -> ApiResult<Option<OffsetDateTime>> {
    q.get(name)
        .map(|v| {
            OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339).map_err(|_| {
                ApiError::field(
                    StatusCode::BAD_REQUEST,
                    name,
                    "must be an RFC 3339 time, e.g. 2026-11-25T00:00:00Z",
                )
            })
        })
        .transpose()
}

/// The project's audit log, newest first: who did what to which resource,
/// from where, and how it ended — failed and denied attempts included.
#[utoipa::path(get, path = "/v1/projects/{project}/audit-events", operation_id = "listAuditEvents", tag = "audit",
    security(("bearer" = [])),
    params(
        ("project" = String, Path, description = "Project name"),
        ("instance" = Option<String>, Query, description = "Only events about this instance"),
        ("action" = Option<String>, Query, description = "Only this action, e.g. instance.create"),
        ("actor" = Option<String>, Query, description = "Only events of this user name"),
        ("since" = Option<String>, Query, description = "Only events at or after this RFC 3339 time"),
        ("until" = Option<String>, Query, description = "Only events before this RFC 3339 time"),
        ("page_size" = Option<u32>, Query, description = "1 to 500, default 100"),
        ("page_token" = Option<String>, Query, description = "From the previous page's next_page_token"),
    ),
    responses(
        (status = 200, body = AuditEventList),
    ))]
pub async fn list(
    State(st): State<AppState>,
    caller: Caller,
    Path(project_name): Path<String>,
    q: QueryParams,
) -> ApiResult<Json<AuditEventList>> {
    q.only(&[
        "instance",
        "action",
        "actor",
        "since",
        "until",
        "page_size",
        "page_token",
    ])?;
    let project = project(&st, &caller, &project_name, Action::AuditRead).await?;
    let size = q.page_size()?;
    let before = q
        .get("page_token")
        .map(|t| {
            t.parse::<i64>()
                .ok()
                .filter(|seq| *seq > 0 && !t.starts_with('+') && !t.starts_with('0'))
                .ok_or_else(|| {
                    ApiError::field(
                        StatusCode::BAD_REQUEST,
                        "page_token",
                        "is not a token this API issued",
                    )
                })
        })
        .transpose()?;
    let filter = AuditFilter {
        project: project.to_string(),
        instance: q.get("instance").map(str::to_owned),
        action: q.get("action").map(str::to_owned),
        actor: q.get("actor").map(str::to_owned),
        since: time_param(&q, "since")?,
        until: time_param(&q, "until")?,
    };
    let mut items = st.store.audit_events(&filter, before, size + 1).await?;
    let next_page_token = if items.len() > size as usize {
        items.truncate(size as usize);
        items.last().map(|e| e.seq.to_string())
    } else {
        None
    };
    Ok(Json(AuditEventList {
        items,
        next_page_token,
    }))
}

/// Walks the whole audit chain and names the first broken link (platform
/// admins only). `ok` is false when an event was edited, removed or cut off.
#[utoipa::path(get, path = "/v1/admin/audit/verify", operation_id = "verifyAuditChain", tag = "audit", security(("bearer" = [])),
    responses(
        (status = 200, body = ChainReport),
        (status = 403, description = "Platform administrators only"),
    ))]
pub async fn verify(State(st): State<AppState>, caller: Caller) -> ApiResult<Json<ChainReport>> {
    admin_only(&caller)?;
    Ok(Json(st.store.verify_audit_chain().await?))
}
