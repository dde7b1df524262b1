//! Users, projects and memberships (project roles).

use sqlx::Row;
use strata_core::Role;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::rows::UserRow;
use crate::{Result, Store, StoreError, Tx, conflict, now_text, parse_time};

/// A project as listed.
#[derive(Debug, Clone)]
pub struct ProjectRow {
    pub name: String,
    pub created_at: OffsetDateTime,
}

/// One member of a project.
#[derive(Debug, Clone)]
pub struct MemberRow {
    pub user_id: Uuid,
    pub username: String,
    pub role: Role,
    pub created_at: OffsetDateTime,
}

fn role(s: &str) -> Result<Role> {
    Role::parse(s).map_err(|_| StoreError::Corrupt(format!("role {s:?}")))
}

impl Store {
    pub async fn user_by_id(&self, id: &str) -> Result<Option<UserRow>> {
        match &self.cache {
            Some(cache) => {
                cache
                    .get_or_load(|m| &m.users, id.to_owned(), self.read_user(id))
                    .await
            }
            None => self.read_user(id).await,
        }
    }

    async fn read_user(&self, id: &str) -> Result<Option<UserRow>> {
        sqlx::query(
            "SELECT id, username, password_hash, is_admin, created_at FROM users WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .map(|r| UserRow::from_row(&r))
        .transpose()
    }

    /// Every user, by name.
    pub async fn users(&self) -> Result<Vec<UserRow>> {
        let rows = sqlx::query(
            "SELECT id, username, password_hash, is_admin, created_at FROM users ORDER BY username",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(UserRow::from_row).collect()
    }

    /// Every project, by name.
    pub async fn project_rows(&self) -> Result<Vec<ProjectRow>> {
        let rows = sqlx::query("SELECT name, created_at FROM projects ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(ProjectRow {
                    name: r.try_get("name")?,
                    created_at: parse_time(&r.try_get::<String, _>("created_at")?)?,
                })
            })
            .collect()
    }

    /// The projects a user has a role in, by project name.
    pub async fn memberships_of(&self, user_id: &str) -> Result<Vec<(ProjectRow, Role)>> {
        let rows = sqlx::query("SELECT p.name, p.created_at, m.role FROM memberships m JOIN projects p ON p.name = m.project WHERE m.user_id = $1 ORDER BY p.name")
            .bind(user_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    ProjectRow {
                        name: r.try_get("name")?,
                        created_at: parse_time(&r.try_get::<String, _>("created_at")?)?,
                    },
                    role(&r.try_get::<String, _>("role")?)?,
                ))
            })
            .collect()
    }

    /// A user's role in a project, if any.
    pub async fn role_in(&self, user_id: &str, project: &str) -> Result<Option<Role>> {
        let row = sqlx::query("SELECT role FROM memberships WHERE user_id = $1 AND project = $2")
            .bind(user_id)
            .bind(project)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| role(&r.try_get::<String, _>("role")?))
            .transpose()
    }

    /// Whether a project exists and, if so, the user's role in it — one
    /// read for the check every project-scoped request makes. `None` when
    /// there is no such project.
    pub async fn project_access(
        &self,
        project: &str,
        user_id: &str,
    ) -> Result<Option<Option<Role>>> {
        match &self.cache {
            Some(cache) => {
                let key = (project.to_owned(), user_id.to_owned());
                cache
                    .get_or_load(|m| &m.access, key, self.read_access(project, user_id))
                    .await
            }
            None => self.read_access(project, user_id).await,
        }
    }

    async fn read_access(&self, project: &str, user_id: &str) -> Result<Option<Option<Role>>> {
        let row = sqlx::query(
            "SELECT p.name, m.role FROM projects p LEFT JOIN memberships m ON m.project = p.name AND m.user_id = $2 WHERE p.name = $1",
        )
        .bind(project)
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            r.try_get::<Option<String>, _>("role")?
                .as_deref()
                .map(role)
                .transpose()
        })
        .transpose()
    }

    /// A project's members, by user name.
    pub async fn members(&self, project: &str) -> Result<Vec<MemberRow>> {
        let rows = sqlx::query("SELECT m.user_id, u.username, m.role, m.created_at FROM memberships m JOIN users u ON u.id = m.user_id WHERE m.project = $1 ORDER BY u.username")
            .bind(project)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let id: String = r.try_get("user_id")?;
                Ok(MemberRow {
                    user_id: Uuid::parse_str(&id)
                        .map_err(|e| StoreError::Corrupt(format!("user id {id:?}: {e}")))?,
                    username: r.try_get("username")?,
                    role: role(&r.try_get::<String, _>("role")?)?,
                    created_at: parse_time(&r.try_get::<String, _>("created_at")?)?,
                })
            })
            .collect()
    }
}

impl Tx {
    /// Deletes a user and its memberships. False when there is no such user.
    pub async fn delete_user(&mut self, username: &str) -> Result<bool> {
        sqlx::query(
            "DELETE FROM memberships WHERE user_id IN (SELECT id FROM users WHERE username = $1)",
        )
        .bind(username)
        .execute(&mut *self.inner)
        .await?;
        let done = sqlx::query("DELETE FROM users WHERE username = $1")
            .bind(username)
            .execute(&mut *self.inner)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Gives a user a role in a project, replacing the one it had. True when
    /// the user was not a member before.
    pub async fn set_membership(
        &mut self,
        user_id: &str,
        project: &str,
        role: Role,
    ) -> Result<bool> {
        let done =
            sqlx::query("UPDATE memberships SET role = $1 WHERE user_id = $2 AND project = $3")
                .bind(role.as_str())
                .bind(user_id)
                .bind(project)
                .execute(&mut *self.inner)
                .await?;
        if done.rows_affected() == 1 {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO memberships (user_id, project, role, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(user_id)
        .bind(project)
        .bind(role.as_str())
        .bind(now_text(OffsetDateTime::now_utc()))
        .execute(&mut *self.inner)
        .await
        .map_err(|e| conflict(e, "membership"))?;
        Ok(true)
    }

    /// Removes a user's role in a project. False when it had none.
    pub async fn delete_membership(&mut self, user_id: &str, project: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM memberships WHERE user_id = $1 AND project = $2")
            .bind(user_id)
            .bind(project)
            .execute(&mut *self.inner)
            .await?;
        Ok(done.rows_affected() == 1)
    }
}
