use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use strata_core::{Plan, Version};
use utoipa::ToSchema;

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};

#[derive(Serialize, ToSchema)]
pub struct VersionList {
    pub items: Vec<Version>,
}

#[derive(Serialize, ToSchema)]
pub struct PlanList {
    pub items: Vec<Plan>,
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    pub status: String,
}

/// Liveness: the process serves requests.
#[utoipa::path(get, path = "/healthz", operation_id = "healthz", tag = "health", responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

/// Readiness: the store answers.
#[utoipa::path(get, path = "/readyz", operation_id = "readyz", tag = "health", responses(
    (status = 200, body = Health),
        (status = 503, description = "Not ready: the store does not answer"),
))]
pub async fn readyz(State(st): State<AppState>) -> ApiResult<Json<Health>> {
    st.store.ping().await.map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("the store does not answer: {e}"),
        )
    })?;
    Ok(Json(Health {
        status: "ready".into(),
    }))
}

/// PostgreSQL versions on offer.
#[utoipa::path(get, path = "/v1/versions", operation_id = "listVersions", tag = "catalog", security(("bearer" = [])), responses(
    (status = 200, body = VersionList),
))]
pub async fn versions(State(st): State<AppState>, _caller: Caller) -> Json<VersionList> {
    Json(VersionList {
        items: st.runtime.versions().all().to_vec(),
    })
}

/// Plans (flavors) on offer.
#[utoipa::path(get, path = "/v1/plans", operation_id = "listPlans", tag = "catalog", security(("bearer" = [])), responses(
    (status = 200, body = PlanList),
))]
pub async fn plans(State(st): State<AppState>, _caller: Caller) -> Json<PlanList> {
    Json(PlanList {
        items: st.runtime.plans().all().to_vec(),
    })
}
