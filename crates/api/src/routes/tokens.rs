//! Personal access tokens: opaque bearer tokens for automation (CLI, SDKs,
//! CI, Terraform), scoped to one project and one role, shown once, stored
//! hashed, with an expiry, revocable.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use strata_core::{Action, Role, Scope};
use strata_store::AccessTokenRow;
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::AppState;
use crate::audit::{self, Audited};
use crate::auth::{Caller, PAT_PREFIX, new_opaque_token, token_hash};
use crate::error::{ApiError, ApiResult};
use crate::extract::{self, QueryParams};
use crate::headers::no_store;

/// Active tokens a user may hold at once.
pub const MAX_ACTIVE_TOKENS: usize = 50;
/// Lifetime when the request names none, and the longest allowed.
pub const DEFAULT_DAYS: u32 = 90;
pub const MAX_DAYS: u32 = 365;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// What the token is for, e.g. `ci-deploy` (1–100 characters).
    pub name: String,
    /// The one project the token works in.
    pub project: String,
    /// Its role there: at most the caller's own role.
    #[schema(value_type = Role)]
    pub role: String,
    /// Days until it expires: 1–365, default 90.
    #[serde(default)]
    pub expires_in_days: Option<u32>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TokenState {
    Active,
    Expired,
    Revoked,
}

/// A personal access token, without the token.
#[derive(Serialize, ToSchema)]
pub struct AccessToken {
    pub id: Uuid,
    pub name: String,
    pub project: String,
    pub role: Role,
    pub state: TokenState,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// Coarse: written at most every five minutes.
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_used_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
}

/// A new token: the only time the token itself is shown.
#[derive(Serialize, ToSchema)]
pub struct CreatedToken {
    #[serde(flatten)]
    pub info: AccessToken,
    /// `strata_pat_…`: send as `Authorization: Bearer <token>`. Shown once.
    pub token: String,
}

#[derive(Serialize, ToSchema)]
pub struct AccessTokenList {
    pub items: Vec<AccessToken>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct TokenListQuery {
    /// At most this many tokens (1–500, default 100).
    pub page_size: Option<u32>,
    /// `next_page_token` of the previous page.
    pub page_token: Option<String>,
}

impl AccessToken {
    fn from_row(t: AccessTokenRow, now: OffsetDateTime) -> Self {
        let state = if t.revoked_at.is_some() {
            TokenState::Revoked
        } else if t.expires_at <= now {
            TokenState::Expired
        } else {
            TokenState::Active
        };
        Self {
            id: t.id,
            name: t.name,
            project: t.project,
            role: t.role,
            state,
            created_at: t.created_at,
            expires_at: t.expires_at,
            last_used_at: t.last_used_at,
            revoked_at: t.revoked_at,
        }
    }
}

/// Tokens are managed with a sign-in, not with another token.
fn signed_in(caller: &Caller) -> ApiResult<()> {
    match caller.scope {
        Scope::Full { .. } => Ok(()),
        Scope::Project { .. } => Err(ApiError::forbidden(
            "personal access tokens cannot manage tokens; sign in",
        )),
    }
}

fn bad(field: &str, message: &str) -> ApiError {
    ApiError::field(StatusCode::BAD_REQUEST, field, message)
}

/// Creates a personal access token for the caller, scoped to one project
/// and a role no larger than the caller's own there. The response is the
/// only place the token appears.
#[utoipa::path(post, path = "/v1/tokens", operation_id = "createAccessToken", tag = "tokens", security(("bearer" = [])),
    request_body = CreateToken,
    responses(
        (status = 201, body = CreatedToken),
        (status = 403, description = "Personal access tokens cannot manage tokens, and a token's role cannot exceed the caller's"),
        (status = 404, description = "No such project (or no access to it)"),
        (status = 409, description = "Too many active tokens"),
    ))]
pub async fn create(
    State(st): State<AppState>,
    req: Audited,
    body: Result<extract::Json<CreateToken>, ApiError>,
) -> ApiResult<Response> {
    let (name, project) = body.as_ref().map_or_else(
        |_| (String::new(), String::new()),
        |b| (b.value.name.clone(), b.value.project.clone()),
    );
    let mut audit = req.action("token.create", audit::target("token", &name));
    audit.in_project(&project);
    audit
        .run(&st, async |audit| {
            let caller = audit.caller();
            signed_in(caller)?;
            let req = body?.value;
            let len = req.name.chars().count();
            if !(1..=100).contains(&len) || req.name.chars().any(char::is_control) {
                return Err(bad(
                    "name",
                    "must be 1 to 100 characters, no control characters",
                ));
            }
            let role =
                Role::parse(&req.role).map_err(|_| bad("role", "must be viewer, editor or owner"))?;
            let days = req.expires_in_days.unwrap_or(DEFAULT_DAYS);
            if !(1..=MAX_DAYS).contains(&days) {
                return Err(bad("expires_in_days", "must be 1 to 365"));
            }
            let project = super::project(&st, caller, &req.project, Action::InstanceRead).await?;
            let own = if caller.admin {
                Role::Owner
            } else {
                caller
                    .access(&st.store, project.as_str())
                    .await?
                    .flatten()
                    .unwrap_or(Role::Viewer)
            };
            if role > own {
                return Err(ApiError::forbidden(format!(
                    "a token cannot have more rights than you: your role in project {project} is {own}"
                )));
            }
            let now = OffsetDateTime::now_utc();
            if st.store.active_access_tokens(&caller.user_id, now).await? >= MAX_ACTIVE_TOKENS {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "conflict",
                    format!("you have {MAX_ACTIVE_TOKENS} active tokens already; revoke one first"),
                ));
            }
            let token = new_opaque_token(PAT_PREFIX);
            let row = AccessTokenRow {
                id: Uuid::now_v7(),
                user_id: Uuid::parse_str(&caller.user_id).map_err(ApiError::internal)?,
                name: req.name,
                project: project.to_string(),
                role,
                token_hash: token_hash(token.expose()),
                created_at: now,
                expires_at: now + time::Duration::days(i64::from(days)),
                last_used_at: None,
                revoked_at: None,
            };
            let mut tx = st.store.begin().await?;
            tx.insert_access_token(&row).await?;
            let mut event = audit.event(201);
            event.target.id = Some(row.id.to_string());
            event.details = serde_json::json!({
                "role": role, "expires_at": row.expires_at.unix_timestamp(),
            });
            tx.append_audit(event).await?;
            tx.commit().await?;
            let created = CreatedToken {
                info: AccessToken::from_row(row, now),
                token: token.expose().to_owned(),
            };
            Ok(no_store((StatusCode::CREATED, Json(created))))
        })
        .await
}

/// The caller's personal access tokens (active, expired and revoked), oldest first.
#[utoipa::path(get, path = "/v1/tokens", operation_id = "listAccessTokens", tag = "tokens", security(("bearer" = [])),
    params(TokenListQuery),
    responses(
        (status = 200, body = AccessTokenList),
        (status = 403, description = "Personal access tokens cannot manage tokens"),
    ))]
pub async fn list(
    State(st): State<AppState>,
    caller: Caller,
    query: QueryParams,
) -> ApiResult<Json<AccessTokenList>> {
    signed_in(&caller)?;
    query.only(&["page_size", "page_token"])?;
    let page_size = query.page_size()?;
    let after = match query.get("page_token") {
        Some(t) => {
            Some(Uuid::parse_str(t).map_err(|_| bad("page_token", "is not a token of this list"))?)
        }
        None => None,
    };
    let mut rows = st
        .store
        .access_tokens_of(&caller.user_id, after, page_size + 1)
        .await?;
    let more = rows.len() > page_size as usize;
    rows.truncate(page_size as usize);
    let next_page_token = more
        .then(|| rows.last().map(|t| t.id.to_string()))
        .flatten();
    let now = OffsetDateTime::now_utc();
    Ok(Json(AccessTokenList {
        items: rows
            .into_iter()
            .map(|t| AccessToken::from_row(t, now))
            .collect(),
        next_page_token,
    }))
}

/// Revokes a personal access token at once. Callers revoke their own
/// tokens; platform admins any token.
#[utoipa::path(delete, path = "/v1/tokens/{id}", operation_id = "revokeAccessToken", tag = "tokens", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 204, description = "Revoked"),
        (status = 403, description = "Personal access tokens cannot manage tokens"),
        (status = 404, description = "No such active token of yours"),
    ))]
pub async fn revoke(
    State(st): State<AppState>,
    req: Audited,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let missing = || ApiError::not_found(format!("token {id}"));
    req.action("token.revoke", audit::target("token", &id))
        .run(&st, async |audit| {
            let caller = audit.caller();
            signed_in(caller)?;
            let token_id = Uuid::parse_str(&id).map_err(|_| missing())?;
            let owner = (!caller.admin).then_some(caller.user_id.as_str());
            let mut tx = st.store.begin().await?;
            let Some(token) = tx
                .revoke_access_token(token_id, owner, OffsetDateTime::now_utc())
                .await?
            else {
                return Err(missing());
            };
            audit.in_project(&token.project);
            let mut event = audit.event(204);
            event.target = audit::target("token", &token.name);
            event.target.id = Some(token.id.to_string());
            tx.append_audit(event).await?;
            tx.commit().await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        })
        .await
}
