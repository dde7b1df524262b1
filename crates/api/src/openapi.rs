//! The OpenAPI document's frame; paths and schemas come from the handlers.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Strata API",
        version = "1",
        description = "Managed PostgreSQL: instances, credentials, service events, projects, members and the audit log. \
                       Bearer tokens are JWTs (built-in issuer or the configured OpenID Connect issuer) or personal access tokens. \
                       Errors are application/problem+json (RFC 9457).",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    modifiers(&BearerAuth),
    components(schemas(crate::error::Problem)),
    tags(
        (name = "auth", description = "Tokens and the issuer's discovery documents"),
        (name = "catalog", description = "What can be ordered: versions and plans"),
        (name = "instances", description = "PostgreSQL instances, their credentials and service events"),
        (name = "identity", description = "The caller, users, projects and project members"),
        (name = "tokens", description = "Personal access tokens for automation: one project, one role, shown once"),
        (name = "audit", description = "The hash-chained audit log"),
        (name = "health", description = "Liveness and readiness"),
    )
)]
pub(crate) struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT or personal access token")
                    .build(),
            ),
        );
    }
}

/// The complete OpenAPI document: derived from the handlers, completed by
/// the contract (`api/openapi.json`; `/openapi.json` serves it with the
/// server's own offering, see [`crate::contract::for_offering`]).
pub fn openapi() -> serde_json::Value {
    let derived = crate::routes::api().split_for_parts().1;
    // Serialising the derived document cannot fail (string keys only); a
    // null document would fail the drift check and every client build.
    crate::contract::complete(serde_json::to_value(derived).unwrap_or_default())
}
