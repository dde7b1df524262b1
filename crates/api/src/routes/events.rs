use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};
use serde::Serialize;
use strata_core::{InstanceName, InstanceRuntime, ProjectName, ServiceEvent};
use tokio::sync::broadcast;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{instance_name, project};
use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::QueryParams;

#[derive(Serialize, ToSchema)]
pub struct EventList {
    pub items: Vec<ServiceEvent>,
    /// Pass as `after` for the next page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

/// The instance's service log, oldest first: phase changes, provisioning
/// steps, restarts, failures, rotations. With `follow=true` (or
/// `Accept: text/event-stream`) a Server-Sent Events stream that stays open.
#[utoipa::path(get, path = "/v1/projects/{project}/instances/{name}/events", operation_id = "listEvents", tag = "instances",
    security(("bearer" = [])),
    params(
        ("project" = String, Path), ("name" = String, Path),
        ("after" = Option<String>, Query, description = "Only events after this event id (also Last-Event-ID)"),
        ("page_size" = Option<u32>, Query, description = "1 to 500, default 100 (JSON only)"),
        ("follow" = Option<bool>, Query, description = "Stream as text/event-stream"),
    ),
    responses(
        (status = 200, body = EventList, description = "JSON, or text/event-stream when following"),
    ))]
pub async fn list(
    State(st): State<AppState>,
    caller: Caller,
    Path((project_name, name)): Path<(String, String)>,
    headers: HeaderMap,
    q: QueryParams,
) -> ApiResult<Response> {
    q.only(&["after", "page_size", "follow"])?;
    let project = project(
        &st,
        &caller,
        &project_name,
        strata_core::Action::InstanceRead,
    )
    .await?;
    let name = instance_name(&name)?;
    let event_id = |field: &str, value: Option<&str>| {
        value
            .map(|v| {
                Uuid::parse_str(v).map_err(|_| {
                    ApiError::field(StatusCode::BAD_REQUEST, field, "must be an event id")
                })
            })
            .transpose()
    };
    let last_event_id = match headers.get("last-event-id") {
        Some(v) => event_id("Last-Event-ID", Some(v.to_str().unwrap_or("")))?,
        None => None,
    };
    let after = event_id("after", q.get("after"))?.or(last_event_id);
    let follow = match q.get("follow") {
        Some("true") => true,
        Some("false") => false,
        None => headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("text/event-stream")),
        Some(_) => {
            return Err(ApiError::field(
                StatusCode::BAD_REQUEST,
                "follow",
                "must be true or false",
            ));
        }
    };
    if follow {
        // Subscribe first, so that nothing between backlog and live is lost.
        let rx = st.runtime.subscribe();
        let id = st.runtime.get(&project, &name).await?.id;
        let stream = follow_stream(st.runtime.clone(), project, name, id, after, rx)
            .take_until(st.shutdown.clone().cancelled_owned());
        return Ok(Sse::new(stream)
            .keep_alive(KeepAlive::new().interval(st.sse_keepalive))
            .into_response());
    }
    let size = q.page_size()?;
    let items = st.runtime.events(&project, &name, after, size).await?;
    let next_page_token = (items.len() == size as usize)
        .then(|| items.last().map(|e| e.id.to_string()))
        .flatten();
    Ok(Json(EventList {
        items,
        next_page_token,
    })
    .into_response())
}

struct Follow {
    runtime: Arc<dyn InstanceRuntime>,
    project: ProjectName,
    name: InstanceName,
    id: Uuid,
    last: Option<Uuid>,
    pending: VecDeque<ServiceEvent>,
    rx: broadcast::Receiver<strata_core::events::PublishedEvent>,
    needs_fetch: bool,
}

/// Backlog, then live events, read from the store after the last one sent;
/// ends when the instance is gone.
fn follow_stream(
    runtime: Arc<dyn InstanceRuntime>,
    project: ProjectName,
    name: InstanceName,
    id: Uuid,
    after: Option<Uuid>,
    rx: broadcast::Receiver<strata_core::events::PublishedEvent>,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let state = Follow {
        runtime,
        project,
        name,
        id,
        last: after,
        pending: VecDeque::new(),
        rx,
        needs_fetch: true,
    };
    futures::stream::unfold(state, |mut s| async move {
        loop {
            if let Some(e) = s.pending.pop_front() {
                s.last = Some(e.id);
                let event = Event::default()
                    .id(e.id.to_string())
                    .event(e.kind.as_str())
                    .json_data(&e)
                    .unwrap_or_default();
                return Some((Ok(event), s));
            }
            if s.needs_fetch {
                s.needs_fetch = false;
                match s.runtime.events(&s.project, &s.name, s.last, 500).await {
                    Ok(events) => {
                        s.needs_fetch = events.len() == 500;
                        s.pending.extend(events);
                        continue;
                    }
                    Err(_) => return None,
                }
            }
            match tokio::time::timeout(std::time::Duration::from_secs(15), s.rx.recv()).await {
                Ok(Ok(p)) => s.needs_fetch = p.instance_id == s.id,
                Ok(Err(broadcast::error::RecvError::Lagged(_))) => s.needs_fetch = true,
                Ok(Err(broadcast::error::RecvError::Closed)) => return None,
                Err(_) => {
                    // Quiet for a while: end the stream if the instance is gone.
                    match s.runtime.get(&s.project, &s.name).await {
                        Ok(i) if i.id == s.id => {}
                        _ => return None,
                    }
                }
            }
        }
    })
}
