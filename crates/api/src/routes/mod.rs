//! Route handlers, grouped by resource. Each handler parses, authorises,
//! calls the runtime or store, and maps the result; nothing more.

pub(crate) mod auth;
pub(crate) mod events;
pub(crate) mod instances;
pub(crate) mod meta;

use axum::http::StatusCode;
use strata_core::{InstanceName, ProjectName};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};

pub(crate) fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(crate::openapi::ApiDoc::openapi())
        .routes(routes!(meta::healthz))
        .routes(routes!(meta::readyz))
        .routes(routes!(meta::versions))
        .routes(routes!(meta::plans))
        .routes(routes!(auth::token))
        .routes(routes!(auth::jwks))
        .routes(routes!(auth::discovery))
        .routes(routes!(instances::list, instances::create))
        .routes(routes!(
            instances::get,
            instances::update,
            instances::delete
        ))
        .routes(routes!(instances::credentials))
        .routes(routes!(instances::rotate))
        .routes(routes!(events::list))
}

pub(crate) async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not-found", "no such route")
}

/// The project a caller names, when it exists and the caller may see it.
/// Anything else is a 404 that does not tell which.
pub(crate) async fn project(st: &AppState, _caller: &Caller, name: &str) -> ApiResult<ProjectName> {
    let missing = || ApiError::not_found(format!("project {name}"));
    let project = ProjectName::parse(name).map_err(|_| missing())?;
    if !st.store.project_exists(project.as_str()).await? {
        return Err(missing());
    }
    Ok(project)
}

/// An instance name from a path: one that breaks the rules cannot exist.
pub(crate) fn instance_name(name: &str) -> ApiResult<InstanceName> {
    InstanceName::parse(name).map_err(|_| ApiError::not_found(format!("instance {name}")))
}
