//! Users of an external OpenID Connect issuer: the first verified token of
//! an (issuer, subject) pair creates a Strata user for it (recorded in the
//! audit log); its roles come from the token's groups on every request.

use strata_core::{Actor, NewAuditEvent, Outcome, Scope};
use strata_store::{StoreError, UserRow};

use crate::AppState;
use crate::audit::{self, RequestMeta};
use crate::auth::{Caller, token_hash};
use crate::error::ApiError;
use crate::oidc::{self, ExternalIdentity, OidcVerifier};

/// The caller behind a verified external token.
pub(crate) async fn caller(
    st: &AppState,
    oidc: &OidcVerifier,
    identity: ExternalIdentity,
    meta: &RequestMeta,
) -> Result<Caller, ApiError> {
    let (granted_admin, granted) = oidc::grants(&oidc.config().mappings, &identity.groups);
    let user = match st
        .store
        .external_user(&identity.issuer, &identity.subject)
        .await?
    {
        Some(user) => user,
        None => provision(st, oidc, &identity, meta).await?,
    };
    let scope = Scope::Full {
        granted,
        granted_admin,
    };
    Ok(Caller::new(&user, scope, None))
}

/// User names to try for a new external user: the mapped claim, then the
/// same with a suffix derived from issuer and subject.
fn candidate_names(oidc: &OidcVerifier, identity: &ExternalIdentity) -> Vec<String> {
    let prefix = &oidc.config().username_prefix;
    let Some(base) = oidc::username_for(prefix, &identity.name)
        .or_else(|| oidc::username_for(prefix, &identity.subject))
    else {
        return Vec::new();
    };
    let suffix = &token_hash(&format!("{}\n{}", identity.issuer, identity.subject))[..8];
    let mut short = base.clone();
    short.truncate(63 - 9);
    let short = short.trim_end_matches('-');
    vec![base.clone(), format!("{short}-{suffix}")]
}

async fn provision(
    st: &AppState,
    oidc: &OidcVerifier,
    identity: &ExternalIdentity,
    meta: &RequestMeta,
) -> Result<UserRow, ApiError> {
    for name in candidate_names(oidc, identity) {
        let mut tx = st.store.begin().await?;
        // "!" is no password hash: the user cannot sign in with a password.
        let id = match tx.insert_user(&name, "!", false).await {
            Ok(id) => id,
            Err(StoreError::Conflict(_)) => continue,
            Err(e) => return Err(e.into()),
        };
        match tx
            .link_external_identity(&identity.issuer, &identity.subject, &id.to_string())
            .await
        {
            Ok(()) => {}
            // Another request provisioned the same identity meanwhile.
            Err(StoreError::Conflict(_)) => break,
            Err(e) => return Err(e.into()),
        }
        let mut target = audit::target("user", &name);
        target.id = Some(id.to_string());
        tx.append_audit(NewAuditEvent {
            actor: Actor {
                kind: "user".into(),
                id: id.to_string(),
                name: name.clone(),
            },
            source_ip: meta.source_ip.clone(),
            user_agent: meta.user_agent.clone(),
            request_id: meta.request_id.clone(),
            project: None,
            action: "user.provision".into(),
            target,
            outcome: Outcome::of_status(200),
            details: serde_json::json!({ "issuer": identity.issuer, "subject": identity.subject }),
        })
        .await?;
        tx.commit().await?;
        break;
    }
    st.store
        .external_user(&identity.issuer, &identity.subject)
        .await?
        .ok_or_else(|| {
            ApiError::unauthorized(
                "no Strata user name can be derived from the token's claims; ask an administrator",
            )
        })
}
