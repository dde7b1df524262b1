//! Personal access tokens, refresh tokens and external (OIDC) identities.
//! Tokens are kept only as the SHA-256 of the token text; lookups go by
//! that hash, and the caller compares what it needs in constant time.

use sqlx::Row;
use sqlx::any::AnyRow;
use strata_core::Role;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::rows::UserRow;
use crate::{Result, Store, StoreError, Tx, conflict, now_text, parse_time};

/// A personal access token as stored (without the token).
#[derive(Debug, Clone)]
pub struct AccessTokenRow {
    pub id: Uuid,
    pub user_id: Uuid,
    pub name: String,
    pub project: String,
    pub role: Role,
    pub token_hash: String,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub last_used_at: Option<OffsetDateTime>,
    pub revoked_at: Option<OffsetDateTime>,
}

/// A refresh token as stored (without the token).
#[derive(Debug, Clone)]
pub struct RefreshTokenRow {
    pub id: Uuid,
    /// Every token descending from one sign-in shares its family.
    pub family: Uuid,
    pub user_id: Uuid,
    pub token_hash: String,
    pub expires_at: OffsetDateTime,
    pub used_at: Option<OffsetDateTime>,
    pub revoked_at: Option<OffsetDateTime>,
}

const ACCESS_COLUMNS: &str = "id, user_id, name, project, role, token_hash, created_at, expires_at, last_used_at, revoked_at";
const REFRESH_COLUMNS: &str = "id, family, user_id, token_hash, expires_at, used_at, revoked_at";

fn uuid(r: &AnyRow, column: &str) -> Result<Uuid> {
    let s: String = r.try_get(column)?;
    Uuid::parse_str(&s).map_err(|e| StoreError::Corrupt(format!("{column} {s:?}: {e}")))
}

fn opt_time(r: &AnyRow, column: &str) -> Result<Option<OffsetDateTime>> {
    r.try_get::<Option<String>, _>(column)?
        .as_deref()
        .map(parse_time)
        .transpose()
}

fn access_from_row(r: &AnyRow) -> Result<AccessTokenRow> {
    let role: String = r.try_get("role")?;
    Ok(AccessTokenRow {
        id: uuid(r, "id")?,
        user_id: uuid(r, "user_id")?,
        name: r.try_get("name")?,
        project: r.try_get("project")?,
        role: Role::parse(&role).map_err(|_| StoreError::Corrupt(format!("role {role:?}")))?,
        token_hash: r.try_get("token_hash")?,
        created_at: parse_time(&r.try_get::<String, _>("created_at")?)?,
        expires_at: parse_time(&r.try_get::<String, _>("expires_at")?)?,
        last_used_at: opt_time(r, "last_used_at")?,
        revoked_at: opt_time(r, "revoked_at")?,
    })
}

fn refresh_from_row(r: &AnyRow) -> Result<RefreshTokenRow> {
    Ok(RefreshTokenRow {
        id: uuid(r, "id")?,
        family: uuid(r, "family")?,
        user_id: uuid(r, "user_id")?,
        token_hash: r.try_get("token_hash")?,
        expires_at: parse_time(&r.try_get::<String, _>("expires_at")?)?,
        used_at: opt_time(r, "used_at")?,
        revoked_at: opt_time(r, "revoked_at")?,
    })
}

impl Store {
    /// The personal access token with this hash, revoked and expired ones included.
    pub async fn access_token_by_hash(&self, hash: &str) -> Result<Option<AccessTokenRow>> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ACCESS_COLUMNS} FROM access_tokens WHERE token_hash = $1"
        )))
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?
        .map(|r| access_from_row(&r))
        .transpose()
    }

    /// A user's personal access tokens in creation order, after `after`.
    pub async fn access_tokens_of(
        &self,
        user_id: &str,
        after: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<AccessTokenRow>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ACCESS_COLUMNS} FROM access_tokens WHERE user_id = $1 AND id > $2 ORDER BY id LIMIT $3"
        )))
        .bind(user_id)
        .bind(after.map(|a| a.to_string()).unwrap_or_default())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(access_from_row).collect()
    }

    /// How many of a user's tokens are neither revoked nor expired.
    pub async fn active_access_tokens(&self, user_id: &str, now: OffsetDateTime) -> Result<usize> {
        let rows = sqlx::query(
            "SELECT expires_at FROM access_tokens WHERE user_id = $1 AND revoked_at IS NULL",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        let mut active = 0;
        for r in &rows {
            if parse_time(&r.try_get::<String, _>("expires_at")?)? > now {
                active += 1;
            }
        }
        Ok(active)
    }

    /// Notes that a token was used (callers do this coarsely, not per request).
    pub async fn touch_access_token(&self, id: Uuid, now: OffsetDateTime) -> Result<()> {
        sqlx::query("UPDATE access_tokens SET last_used_at = $1 WHERE id = $2")
            .bind(now_text(now))
            .bind(id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The refresh token with this hash, used, revoked and expired ones included.
    pub async fn refresh_token_by_hash(&self, hash: &str) -> Result<Option<RefreshTokenRow>> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {REFRESH_COLUMNS} FROM refresh_tokens WHERE token_hash = $1"
        )))
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?
        .map(|r| refresh_from_row(&r))
        .transpose()
    }

    /// The user linked to an identity of an external issuer.
    pub async fn external_user(&self, issuer: &str, subject: &str) -> Result<Option<UserRow>> {
        sqlx::query(
            "SELECT u.id, u.username, u.password_hash, u.is_admin, u.created_at FROM external_identities e JOIN users u ON u.id = e.user_id WHERE e.issuer = $1 AND e.subject = $2",
        )
        .bind(issuer)
        .bind(subject)
        .fetch_optional(&self.pool)
        .await?
        .map(|r| UserRow::from_row(&r))
        .transpose()
    }
}

impl Tx {
    pub async fn insert_access_token(&mut self, t: &AccessTokenRow) -> Result<()> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO access_tokens ({ACCESS_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        )))
        .bind(t.id.to_string())
        .bind(t.user_id.to_string())
        .bind(&t.name)
        .bind(&t.project)
        .bind(t.role.as_str())
        .bind(&t.token_hash)
        .bind(now_text(t.created_at))
        .bind(now_text(t.expires_at))
        .bind(t.last_used_at.map(now_text))
        .bind(t.revoked_at.map(now_text))
        .execute(&mut *self.inner)
        .await
        .map_err(|e| conflict(e, "access token"))?;
        Ok(())
    }

    /// Revokes a token that is not revoked yet. When `owner` is given, only
    /// a token of that user. The token as it was, or `None`.
    pub async fn revoke_access_token(
        &mut self,
        id: Uuid,
        owner: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<Option<AccessTokenRow>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ACCESS_COLUMNS} FROM access_tokens WHERE id = $1"
        )))
        .bind(id.to_string())
        .fetch_optional(&mut *self.inner)
        .await?
        .map(|r| access_from_row(&r))
        .transpose()?
        .filter(|t| owner.is_none_or(|o| t.user_id.to_string() == o));
        let Some(token) = row else {
            return Ok(None);
        };
        let done = sqlx::query(
            "UPDATE access_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
        )
        .bind(now_text(now))
        .bind(id.to_string())
        .execute(&mut *self.inner)
        .await?;
        Ok((done.rows_affected() == 1).then_some(token))
    }

    pub async fn insert_refresh_token(
        &mut self,
        id: Uuid,
        family: Uuid,
        user_id: &str,
        token_hash: &str,
        created_at: OffsetDateTime,
        expires_at: OffsetDateTime,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO refresh_tokens (id, family, user_id, token_hash, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id.to_string())
        .bind(family.to_string())
        .bind(user_id)
        .bind(token_hash)
        .bind(now_text(created_at))
        .bind(now_text(expires_at))
        .execute(&mut *self.inner)
        .await
        .map_err(|e| conflict(e, "refresh token"))?;
        Ok(())
    }

    /// Marks a refresh token used. False when it was used or revoked
    /// already — by a concurrent request too: only one use wins.
    pub async fn use_refresh_token(&mut self, id: Uuid, now: OffsetDateTime) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE refresh_tokens SET used_at = $1 WHERE id = $2 AND used_at IS NULL AND revoked_at IS NULL",
        )
        .bind(now_text(now))
        .bind(id.to_string())
        .execute(&mut *self.inner)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Revokes every token of a family that is not revoked yet.
    pub async fn revoke_refresh_family(
        &mut self,
        family: Uuid,
        now: OffsetDateTime,
    ) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = $1 WHERE family = $2 AND revoked_at IS NULL",
        )
        .bind(now_text(now))
        .bind(family.to_string())
        .execute(&mut *self.inner)
        .await?;
        Ok(done.rows_affected())
    }

    /// Links an identity of an external issuer to a user.
    pub async fn link_external_identity(
        &mut self,
        issuer: &str,
        subject: &str,
        user_id: &str,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO external_identities (issuer, subject, user_id, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(issuer)
        .bind(subject)
        .bind(user_id)
        .bind(now_text(OffsetDateTime::now_utc()))
        .execute(&mut *self.inner)
        .await
        .map_err(|e| conflict(e, "external identity"))?;
        Ok(())
    }
}
