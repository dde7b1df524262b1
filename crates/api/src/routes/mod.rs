//! Route handlers, grouped by resource. Each handler parses, authorises,
//! calls the runtime or store, and maps the result; nothing more.

pub(crate) mod audit;
pub(crate) mod auth;
pub(crate) mod events;
pub(crate) mod identity;
pub(crate) mod instances;
pub(crate) mod meta;
pub(crate) mod tokens;

use axum::http::StatusCode;
use strata_core::access::{Action, Decision, decide};
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
        .routes(routes!(auth::refresh))
        .routes(routes!(auth::logout))
        .routes(routes!(tokens::list, tokens::create))
        .routes(routes!(tokens::revoke))
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
        .routes(routes!(identity::me))
        .routes(routes!(identity::list_users, identity::create_user))
        .routes(routes!(identity::delete_user))
        .routes(routes!(identity::list_projects, identity::create_project))
        .routes(routes!(identity::list_members, identity::add_member))
        .routes(routes!(identity::remove_member))
        .routes(routes!(audit::list))
        .routes(routes!(audit::verify))
}

pub(crate) async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not-found", "no such route")
}

/// The project a caller names, when it exists and the caller may do
/// `action` in it — the one place where access to a project is decided.
/// A caller without a role in the project gets the same 404 as for a project
/// that does not exist; a caller whose role is too small gets 403.
pub(crate) async fn project(
    st: &AppState,
    caller: &Caller,
    name: &str,
    action: Action,
) -> ApiResult<ProjectName> {
    let missing = || ApiError::not_found(format!("project {name}"));
    let project = ProjectName::parse(name).map_err(|_| missing())?;
    // One read: whether the project exists, and the caller's role in it.
    let access = caller.access(&st.store, project.as_str()).await?;
    let role = access.flatten();
    match (decide(caller.admin, role, action), access) {
        (Decision::Forbidden, _) => Err(ApiError::forbidden(format!(
            "your role in project {project} ({}) does not allow this; it needs {} or more",
            role.map_or("none", strata_core::Role::as_str),
            action.least_role()
        ))),
        (Decision::Allow, Some(_)) => Ok(project),
        // No role, or no such project: the same answer.
        (Decision::Hidden, _) | (Decision::Allow, None) => Err(missing()),
    }
}

/// Platform administrators only; everyone else gets 403.
pub(crate) fn admin_only(caller: &Caller) -> ApiResult<()> {
    if caller.admin {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "only platform administrators may do this",
        ))
    }
}

/// An instance name from a path: one that breaks the rules cannot exist.
pub(crate) fn instance_name(name: &str) -> ApiResult<InstanceName> {
    InstanceName::parse(name).map_err(|_| ApiError::not_found(format!("instance {name}")))
}
