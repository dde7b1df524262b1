//! Administrative SQL over the instance's private Unix socket, as the
//! bootstrap superuser. Passwords travel only as SCRAM verifiers.

use std::path::Path;
use std::time::Duration;

use strata_core::Secret;
use tokio_postgres::{Client, NoTls};

pub async fn connect(socket_dir: &Path, port: u16) -> Result<Client, tokio_postgres::Error> {
    connect_as(socket_dir, port, "postgres").await
}

/// Connects over the Unix socket in `socket_dir` as `user` (a superuser the
/// socket trusts), to the `postgres` database.
pub async fn connect_as(
    socket_dir: &Path,
    port: u16,
    user: &str,
) -> Result<Client, tokio_postgres::Error> {
    connect_to(socket_dir, port, user, "postgres").await
}

/// Connects over the Unix socket in `socket_dir` as `user` to `database`.
pub async fn connect_to(
    socket_dir: &Path,
    port: u16,
    user: &str,
    database: &str,
) -> Result<Client, tokio_postgres::Error> {
    let mut config = tokio_postgres::Config::new();
    config
        .host_path(socket_dir)
        .port(port)
        .user(user)
        .dbname(database)
        .application_name("strata")
        .connect_timeout(Duration::from_secs(5));
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// `name` as a quoted SQL identifier.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The SCRAM-SHA-256 verifier of `password` (fresh salt): what the server
/// stores, so the plaintext never has to reach it.
pub fn verifier(password: &Secret) -> String {
    postgres_protocol::password::scram_sha_256(password.expose().as_bytes())
}

/// The application role and database every template cluster holds, made
/// before any request and renamed for the instance that claims the cluster.
/// Not a valid instance name (instance names are DNS labels), so no
/// instance can collide with it.
pub const PREPARED: &str = "strata_prepared";

/// Makes the prepared role (no password, no login: nobody can use it before
/// it is claimed) and its database, closed to `PUBLIC`.
pub async fn prepare_role_and_database(client: &Client) -> Result<(), tokio_postgres::Error> {
    let name = ident(PREPARED);
    client
        .batch_execute(&format!(
            "CREATE ROLE {name} NOLOGIN NOSUPERUSER NOCREATEROLE NOREPLICATION"
        ))
        .await?;
    client
        .batch_execute(&format!("CREATE DATABASE {name} OWNER {name}"))
        .await?;
    client
        .batch_execute(&format!("REVOKE ALL ON DATABASE {name} FROM PUBLIC"))
        .await
}

/// Gives the prepared role and database their instance's names, and the
/// role its login and password (as a SCRAM verifier), in one transaction
/// of a session that the server does not log (not even a failed statement).
pub async fn claim_role_and_database(
    client: &Client,
    role: &str,
    database: &str,
    password: &Secret,
) -> Result<(), tokio_postgres::Error> {
    let prepared = ident(PREPARED);
    let (role, database) = (ident(role), ident(database));
    client
        .batch_execute(&format!(
            "{}; BEGIN; \
             ALTER ROLE {prepared} RENAME TO {role}; \
             ALTER ROLE {role} LOGIN PASSWORD '{}'; \
             ALTER DATABASE {prepared} RENAME TO {database}; \
             COMMIT",
            crate::pod::QUIET_SESSION,
            verifier(password)
        ))
        .await
}

/// Sets `role`'s password; only its SCRAM verifier reaches the server.
pub async fn set_password(
    client: &Client,
    role: &str,
    password: &Secret,
) -> Result<(), tokio_postgres::Error> {
    client
        .batch_execute(&format!(
            "ALTER ROLE {} PASSWORD '{}'",
            ident(role),
            verifier(password)
        ))
        .await
}

/// The roles of an instance's pod (see [`crate::pod`]).
#[derive(Debug, Clone)]
pub struct PodRoles<'a> {
    pub tenant: &'a str,
    pub password: &'a Secret,
    pub database: &'a str,
    pub monitor: &'a str,
    pub monitor_password: &'a Secret,
}

async fn role_exists(client: &Client, role: &str) -> Result<bool, tokio_postgres::Error> {
    Ok(client
        .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&role])
        .await?
        .is_some())
}

/// Makes the pod's roles what they must be, whatever they were: the
/// tenant's role (no superuser, owner of its database and of that
/// database's `public` schema) and the monitoring role (`pg_monitor` only),
/// with the passwords of the mounted files. Idempotent; run as the
/// superuser on every start of the server.
pub async fn ensure_pod_roles(
    socket_dir: &Path,
    port: u16,
    roles: &PodRoles<'_>,
) -> Result<(), tokio_postgres::Error> {
    use crate::pod;
    let client = connect_as(socket_dir, port, pod::SUPERUSER).await?;
    client.batch_execute(pod::QUIET_SESSION).await?;
    let exists = role_exists(&client, roles.tenant).await?;
    client
        .batch_execute(&pod::tenant_role(
            roles.tenant,
            exists,
            &verifier(roles.password),
        ))
        .await?;
    let exists = role_exists(&client, roles.monitor).await?;
    for statement in pod::monitor_role(roles.monitor, exists, &verifier(roles.monitor_password)) {
        client.batch_execute(&statement).await?;
    }
    for role in [roles.tenant, roles.monitor] {
        let allowed = pod::allowed_memberships(role, roles.monitor);
        let held = client
            .query(
                "SELECT r.rolname FROM pg_auth_members m \
                 JOIN pg_roles r ON r.oid = m.roleid \
                 JOIN pg_roles u ON u.oid = m.member \
                 WHERE u.rolname = $1",
                &[&role],
            )
            .await?;
        for row in held {
            let of: String = row.get(0);
            if !allowed.contains(&of.as_str()) {
                client
                    .batch_execute(&pod::revoke_membership(&of, role))
                    .await?;
            }
        }
    }
    let exists = client
        .query_opt(
            "SELECT 1 FROM pg_database WHERE datname = $1",
            &[&roles.database],
        )
        .await?
        .is_some();
    for statement in pod::tenant_database(roles.database, roles.tenant, exists) {
        client.batch_execute(&statement).await?;
    }
    drop(client);
    let client = connect_to(socket_dir, port, pod::SUPERUSER, roles.database).await?;
    client
        .batch_execute(&pod::public_schema_owner(roles.tenant))
        .await
}
