//! What `strata serve` makes sure exists on every start: the project
//! `default`, the platform admin `admin`, and a signing key.

use std::path::Path;

use strata_core::Secret;
use strata_store::{Store, StoreError};

use crate::auth::{generate_signing_key, hash_password};
use crate::error::ApiError;

pub const DEFAULT_PROJECT: &str = "default";
pub const ADMIN_USER: &str = "admin";

/// What the first start did that the operator needs to know.
#[derive(Debug, Default)]
pub struct Bootstrapped {
    /// The admin's generated password (only when it was generated just now).
    pub generated_admin_password: Option<Secret>,
}

fn ignore_conflict(r: Result<(), StoreError>) -> Result<(), StoreError> {
    match r {
        Err(StoreError::Conflict(_)) => Ok(()),
        other => other,
    }
}

/// Creates what is missing. `admin_password` comes from `STRATA_ADMIN_PASSWORD`;
/// without it a password is generated and written to `<data_dir>/admin-password`.
pub async fn bootstrap(
    store: &Store,
    data_dir: &Path,
    admin_password: Option<Secret>,
) -> Result<Bootstrapped, ApiError> {
    let mut out = Bootstrapped::default();
    if !store.project_exists(DEFAULT_PROJECT).await? {
        let mut tx = store.begin().await?;
        ignore_conflict(tx.insert_project(DEFAULT_PROJECT).await)?;
        tx.commit().await?;
    }
    if store.user_by_name(ADMIN_USER).await?.is_none() {
        let password = if let Some(p) = admin_password {
            p
        } else {
            let p = crate::random_token(32);
            write_private(
                &data_dir.join("admin-password"),
                &format!("{}\n", p.expose()),
            )
            .map_err(ApiError::internal)?;
            out.generated_admin_password = Some(p.clone());
            p
        };
        let hash = hash_password(password.expose())?;
        let mut tx = store.begin().await?;
        tx.insert_user(ADMIN_USER, &hash, true)
            .await
            .map(|_| ())
            .or_else(|e| ignore_conflict(Err(e)))?;
        tx.commit().await?;
    }
    if store.signing_keys().await?.is_empty() {
        let key = generate_signing_key()?;
        let mut tx = store.begin().await?;
        ignore_conflict(tx.insert_signing_key(&key).await)?;
        tx.commit().await?;
    }
    Ok(out)
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents.as_bytes())
}
