//! The caller (`/v1/me`), users, projects and project members.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use strata_core::{Action, ProjectName, Role, Secret, Username};
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::{admin_only, project};
use crate::AppState;
use crate::audit::{self, Audited};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract;

/// A project the caller has a role in.
#[derive(Serialize, ToSchema)]
pub struct ProjectRole {
    pub project: String,
    pub role: Role,
}

/// Who is calling.
#[derive(Serialize, ToSchema)]
pub struct Me {
    pub id: String,
    pub username: String,
    /// Platform administrator: may do everything in every project.
    pub admin: bool,
    /// The projects the caller is a member of, with its role in each.
    pub projects: Vec<ProjectRole>,
}

/// The caller, its projects and roles.
#[utoipa::path(get, path = "/v1/me", operation_id = "getMe", tag = "identity", security(("bearer" = [])), responses(
    (status = 200, body = Me),
))]
pub async fn me(State(st): State<AppState>, caller: Caller) -> ApiResult<Json<Me>> {
    let projects = caller
        .projects(&st.store)
        .await?
        .into_iter()
        .map(|(p, role)| ProjectRole {
            project: p.name,
            role,
        })
        .collect();
    Ok(Json(Me {
        id: caller.user_id,
        username: caller.username,
        admin: caller.admin,
        projects,
    }))
}

// ---- users ------------------------------------------------------------------

#[derive(Serialize, ToSchema)]
pub struct User {
    pub id: String,
    pub username: String,
    pub admin: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

#[derive(Serialize, ToSchema)]
pub struct UserList {
    pub items: Vec<User>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    /// A DNS label: lowercase letters, digits and '-'.
    pub username: String,
    /// 12 to 1024 characters; stored as an argon2id hash.
    #[schema(value_type = String)]
    pub password: Secret,
    /// Make the user a platform administrator.
    #[serde(default)]
    pub admin: bool,
}

/// Every user (platform admins only).
#[utoipa::path(get, path = "/v1/users", operation_id = "listUsers", tag = "identity", security(("bearer" = [])), responses(
    (status = 200, body = UserList),
        (status = 403, description = "Platform administrators only"),
))]
pub async fn list_users(State(st): State<AppState>, caller: Caller) -> ApiResult<Json<UserList>> {
    admin_only(&caller)?;
    let items = st
        .store
        .users()
        .await?
        .into_iter()
        .map(|u| User {
            id: u.id.to_string(),
            username: u.username,
            admin: u.is_admin,
            created_at: u.created_at,
        })
        .collect();
    Ok(Json(UserList { items }))
}

/// Creates a user (platform admins only).
#[utoipa::path(post, path = "/v1/users", operation_id = "createUser", tag = "identity", security(("bearer" = [])),
    request_body = CreateUser,
    responses(
        (status = 201, body = User),
        (status = 403, description = "Platform administrators only"),
        (status = 409, description = "The name is taken"),
    ))]
pub async fn create_user(
    State(st): State<AppState>,
    req: Audited,
    body: Result<extract::Json<CreateUser>, ApiError>,
) -> ApiResult<Response> {
    let name = body
        .as_ref()
        .map(|b| b.value.username.clone())
        .unwrap_or_default();
    req.action("user.create", audit::target("user", &name))
        .run(&st, async |audit| {
            admin_only(audit.caller())?;
            let req = body?.value;
            let username = Username::parse(&req.username).map_err(|e| bad_name("username", &e))?;
            let len = req.password.expose().chars().count();
            if !(12..=1024).contains(&len) {
                return Err(ApiError::field(
                    StatusCode::BAD_REQUEST,
                    "password",
                    "must be 12 to 1024 characters",
                ));
            }
            let password = req.password;
            let hash =
                tokio::task::spawn_blocking(move || crate::auth::hash_password(password.expose()))
                    .await
                    .map_err(ApiError::internal)??;
            let mut tx = st.store.begin().await?;
            let id = tx.insert_user(username.as_str(), &hash, req.admin).await?;
            let mut event = audit.event(201);
            event.target.id = Some(id.to_string());
            event.details = serde_json::json!({ "admin": req.admin });
            tx.append_audit(event).await?;
            tx.commit().await?;
            let user = User {
                id: id.to_string(),
                username: username.to_string(),
                admin: req.admin,
                created_at: OffsetDateTime::now_utc(),
            };
            Ok((StatusCode::CREATED, Json(user)).into_response())
        })
        .await
}

/// Deletes a user and its memberships (platform admins only). Its tokens stop
/// working at once.
#[utoipa::path(delete, path = "/v1/users/{username}", operation_id = "deleteUser", tag = "identity", security(("bearer" = [])),
    params(("username" = String, Path)),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "Platform administrators only"),
        (status = 409, description = "Callers cannot delete themselves"),
    ))]
pub async fn delete_user(
    State(st): State<AppState>,
    req: Audited,
    Path(username): Path<String>,
) -> ApiResult<Response> {
    req.action("user.delete", audit::target("user", &username))
        .run(&st, async |audit| {
            admin_only(audit.caller())?;
            if username == audit.caller().username {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "conflict",
                    "you cannot delete yourself",
                ));
            }
            let user = st
                .store
                .user_by_name(&username)
                .await?
                .ok_or_else(|| ApiError::not_found(format!("user {username}")))?;
            let mut tx = st.store.begin().await?;
            if !tx.delete_user(&username).await? {
                return Err(ApiError::not_found(format!("user {username}")));
            }
            let mut event = audit.event(204);
            event.target.id = Some(user.id.to_string());
            tx.append_audit(event).await?;
            tx.commit().await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        })
        .await
}

/// A name its parser refused, reported at `field`.
fn bad_name(field: &str, e: &strata_core::ValidationError) -> ApiError {
    let message = e.errors.first().map(|f| f.message.clone());
    ApiError::field(StatusCode::BAD_REQUEST, field, message.unwrap_or_default())
}

// ---- projects ---------------------------------------------------------------

#[derive(Serialize, ToSchema)]
pub struct Project {
    pub name: String,
    /// The caller's role; absent for platform admins without a membership.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

#[derive(Serialize, ToSchema)]
pub struct ProjectList {
    pub items: Vec<Project>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProject {
    /// A DNS label, unique and immutable.
    pub name: String,
}

/// The projects the caller sees: its memberships, or every project for a
/// platform admin.
#[utoipa::path(get, path = "/v1/projects", operation_id = "listProjects", tag = "identity", security(("bearer" = [])), responses(
    (status = 200, body = ProjectList),
))]
pub async fn list_projects(
    State(st): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<ProjectList>> {
    let mine = caller.projects(&st.store).await?;
    let items = if caller.admin {
        st.store
            .project_rows()
            .await?
            .into_iter()
            .map(|p| Project {
                role: mine.iter().find(|(m, _)| m.name == p.name).map(|(_, r)| *r),
                name: p.name,
                created_at: p.created_at,
            })
            .collect()
    } else {
        mine.into_iter()
            .map(|(p, role)| Project {
                name: p.name,
                role: Some(role),
                created_at: p.created_at,
            })
            .collect()
    };
    Ok(Json(ProjectList { items }))
}

/// Creates a project (platform admins only). The creator is not made a
/// member: admins reach every project; add an owner with the members API.
#[utoipa::path(post, path = "/v1/projects", operation_id = "createProject", tag = "identity", security(("bearer" = [])),
    request_body = CreateProject,
    responses(
        (status = 201, body = Project),
        (status = 403, description = "Platform administrators only"),
        (status = 409, description = "The name is taken"),
    ))]
pub async fn create_project(
    State(st): State<AppState>,
    req: Audited,
    body: Result<extract::Json<CreateProject>, ApiError>,
) -> ApiResult<Response> {
    let name = body
        .as_ref()
        .map(|b| b.value.name.clone())
        .unwrap_or_default();
    req.action("project.create", audit::target("project", &name))
        .run(&st, async |audit| {
            admin_only(audit.caller())?;
            let req = body?.value;
            let name = ProjectName::parse(&req.name).map_err(|e| bad_name("name", &e))?;
            let mut tx = st.store.begin().await?;
            tx.insert_project(name.as_str()).await?;
            let mut event = audit.event(201);
            event.project = Some(name.to_string());
            tx.append_audit(event).await?;
            tx.commit().await?;
            let project = Project {
                name: name.to_string(),
                role: None,
                created_at: OffsetDateTime::now_utc(),
            };
            Ok((StatusCode::CREATED, Json(project)).into_response())
        })
        .await
}

// ---- members ----------------------------------------------------------------

#[derive(Serialize, ToSchema)]
pub struct Member {
    pub user: String,
    pub role: Role,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

#[derive(Serialize, ToSchema)]
pub struct MemberList {
    pub items: Vec<Member>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddMember {
    /// An existing user's name.
    pub user: String,
    /// `viewer`, `editor` or `owner`.
    #[schema(value_type = Role)]
    pub role: String,
}

/// The project's members and their roles (owners and platform admins).
#[utoipa::path(get, path = "/v1/projects/{project}/members", operation_id = "listMembers", tag = "identity", security(("bearer" = [])),
    params(("project" = String, Path)),
    responses(
        (status = 200, body = MemberList),
    ))]
pub async fn list_members(
    State(st): State<AppState>,
    caller: Caller,
    Path(project_name): Path<String>,
) -> ApiResult<Json<MemberList>> {
    let project = project(&st, &caller, &project_name, Action::MembersManage).await?;
    let items = st
        .store
        .members(project.as_str())
        .await?
        .into_iter()
        .map(|m| Member {
            user: m.username,
            role: m.role,
            created_at: m.created_at,
        })
        .collect();
    Ok(Json(MemberList { items }))
}

/// Gives a user a role in the project, replacing the role it had (owners and
/// platform admins). 201 for a new member, 200 for a changed role.
#[utoipa::path(post, path = "/v1/projects/{project}/members", operation_id = "addMember", tag = "identity", security(("bearer" = [])),
    params(("project" = String, Path)),
    request_body = AddMember,
    responses(
        (status = 201, body = Member),
        (status = 200, body = Member, description = "The user's role was changed"),
    ))]
pub async fn add_member(
    State(st): State<AppState>,
    req: Audited,
    body: Result<extract::Json<AddMember>, ApiError>,
) -> ApiResult<Response> {
    let user = body
        .as_ref()
        .map(|b| b.value.user.clone())
        .unwrap_or_default();
    req.action("member.add", audit::target("member", &user))
        .run_in_project(&st, Action::MembersManage, async |audit, project| {
            let req = body?.value;
            let role = Role::parse(&req.role).map_err(|_| {
                ApiError::field(
                    StatusCode::BAD_REQUEST,
                    "role",
                    "must be viewer, editor or owner",
                )
            })?;
            let user = st.store.user_by_name(&req.user).await?.ok_or_else(|| {
                ApiError::field(
                    StatusCode::NOT_FOUND,
                    "user",
                    format!("user {} not found", req.user),
                )
            })?;
            let mut tx = st.store.begin().await?;
            let created = tx
                .set_membership(&user.id.to_string(), project.as_str(), role)
                .await?;
            let status = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            let mut event = audit.event(status.as_u16());
            event.target.id = Some(user.id.to_string());
            event.details = serde_json::json!({ "role": role, "changed": !created });
            tx.append_audit(event).await?;
            tx.commit().await?;
            let member = Member {
                user: user.username,
                role,
                created_at: OffsetDateTime::now_utc(),
            };
            Ok((status, Json(member)).into_response())
        })
        .await
}

/// Removes a user's role in the project (owners and platform admins).
#[utoipa::path(delete, path = "/v1/projects/{project}/members/{user}", operation_id = "removeMember", tag = "identity", security(("bearer" = [])),
    params(("project" = String, Path), ("user" = String, Path)),
    responses(
        (status = 204, description = "Removed"),
    ))]
pub async fn remove_member(
    State(st): State<AppState>,
    req: Audited,
    Path((_project, username)): Path<(String, String)>,
) -> ApiResult<Response> {
    req.action("member.remove", audit::target("member", &username))
        .run_in_project(&st, Action::MembersManage, async |audit, project| {
            let missing = || ApiError::not_found(format!("member {username}"));
            let user = st
                .store
                .user_by_name(&username)
                .await?
                .ok_or_else(missing)?;
            let mut tx = st.store.begin().await?;
            if !tx
                .delete_membership(&user.id.to_string(), project.as_str())
                .await?
            {
                return Err(missing());
            }
            let mut event = audit.event(204);
            event.target.id = Some(user.id.to_string());
            tx.append_audit(event).await?;
            tx.commit().await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        })
        .await
}
